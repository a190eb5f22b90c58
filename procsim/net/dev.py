"""Device configuration (net/core/dev.c's dev_change_flags, dev_set_mtu;
devinet's address add) and frames from the wire that reach no socket,
each recorded as a change. Addressed by a task (its network namespace)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.net.netdevice import STATS, NetDevice, parse_cidr
from procsim.net.netns import Net

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def net_of_task(k: "Kernel", pid: int) -> Net:
    t = k.task(pid)
    if t.nsproxy is None:
        raise KernelError(errno.ESRCH, f"{pid} has exited")
    return k.net.net(t.nsproxy.net)


def device(k: "Kernel", pid: int, name: str) -> NetDevice:
    d = net_of_task(k, pid).device(name)
    if d is None:
        raise KernelError(errno.ENODEV, f"no device {name!r} in {pid}'s network namespace")
    return d


def _check_mtu(d: NetDevice, mtu: int) -> None:
    if not 68 <= mtu <= (65536 if d.loopback else 65535):
        raise KernelError(errno.EINVAL, f"mtu {mtu}: 68 to {65536 if d.loopback else 65535}")


def link_set(k: "Kernel", pid: int, name: str, up: bool | None = None, mtu: int | None = None) -> NetDevice:
    """`ip link set NAME up|down mtu N`."""
    with k.lock:
        d = device(k, pid, name)
        if mtu is not None:
            _check_mtu(d, mtu)
        if up is not None:
            net_of_task(k, pid).set_up(d, up)
        if mtu is not None:
            d.mtu = mtu
        k._changed("netdev", dev=name)
        return d


def set_mtu(k: "Kernel", ifindex: int, mtu: int) -> None:
    """A write to /sys/class/net/IF/mtu (the initial namespace's device)."""
    with k.lock:
        d = k.net.net(k.init_ns["net"]).devices.get(ifindex)
        if d is None:
            raise KernelError(errno.ENODEV, f"no device {ifindex}")
        _check_mtu(d, mtu)
        d.mtu = mtu
        k._changed("netdev", dev=d.name)


def addr_add(k: "Kernel", pid: int, name: str, addr: str) -> None:
    """`ip addr add ADDR/PLEN dev NAME` (EEXIST for an address it has)."""
    with k.lock:
        d = device(k, pid, name)
        try:
            version, a, plen = parse_cidr(addr)
        except ValueError:
            raise KernelError(errno.EINVAL, f"addr: expected ADDRESS/PREFIX, got {addr!r}") from None
        if any(x[0] == a for x in (d.ipv4 if version == 4 else d.ipv6)):
            raise KernelError(errno.EEXIST, f"{addr} is on {name}")
        net_of_task(k, pid).add_address(d, version, a, plen)
        k._changed("netdev", dev=name)


def rx_frames(k: "Kernel", pid: int, name: str, packets: int = 0, nbytes: int = 0, multicast: int = 0,
              errors: int = 0, dropped: int = 0) -> dict[str, int]:
    """Frames from the wire that reach no socket (broadcasts, multicast, bad
    frames, drops): the device's counters and softnet move."""
    with k.lock:
        d = device(k, pid, name)
        if min(packets, nbytes, multicast, errors, dropped) < 0 or multicast > packets:
            raise KernelError(errno.EINVAL, "counts: non-negative, multicast at most packets")
        d.count("rx", packets, nbytes, multicast)
        d.stats["rx_errors"] += errors
        d.stats["rx_crc_errors"] += errors
        d.stats["rx_dropped"] += dropped
        net_of_task(k, pid).softnet[0] += packets
        k._changed("netdev", dev=name)
        return {n: d.stats[n] for n in STATS}
