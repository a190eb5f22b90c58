"""/sys/class/net/IF (links to /sys/devices/virtual/net/IF) and the
device's attributes (net/core/net-sysfs.c): of the initial network
namespace, whose sysfs this is. A directory node carries its device's
ifindex (Node.arg)."""

from __future__ import annotations

import errno

from procsim.net import dev as net_dev
from procsim.net.netdevice import STATS, NetDevice
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import Dir, DynDir, Link, Node, Show
from procsim.kernel import Kernel

_RO = dict(write_open_errno=errno.EACCES)
VIRTUAL = "../../devices/virtual/net/"


def _init_net(kernel: Kernel):
    return kernel.net.net(kernel.init_ns["net"])


def _dev(ctx: Ctx) -> NetDevice:
    d = _init_net(ctx.kernel).devices.get(ctx.arg)
    if d is None:
        raise OSError(errno.ENOENT, "device gone")
    return d


def _attr(fn):
    def render(ctx: Ctx) -> bytes:
        return f"{fn(_dev(ctx))}\n".encode()
    return render


def _speed(d: NetDevice) -> int:
    """speed_show(): EINVAL without a running link or an ethtool speed (lo)."""
    if d.loopback or not d.up:
        raise OSError(errno.EINVAL, "speed")
    return d.speed


def _carrier(d: NetDevice) -> int:
    if not d.up:
        raise OSError(errno.EINVAL, "carrier")
    return 1


def _duplex(d: NetDevice) -> str:
    if d.loopback or not d.up:
        raise OSError(errno.EINVAL, "duplex")
    return "unknown"


def mtu_write(ctx: Ctx, data: bytes) -> int:
    """dev_set_mtu(): CAP_NET_ADMIN; 68 to 65535 for Ethernet (EINVAL)."""
    _dev(ctx)
    if not ctx.caller.is_root:
        raise OSError(errno.EPERM, "mtu")
    try:
        v = int(data.strip(), 0)
    except ValueError:
        raise OSError(errno.EINVAL, "mtu") from None
    net_dev.set_mtu(ctx.kernel, ctx.arg, v)
    return len(data)


def _show(name: str, fn, mode: int = 0o444, write=None) -> Show:
    if write is not None:
        return Show(name, _attr(fn), mode, write)
    return Show(name, _attr(fn), mode, **_RO) if mode == 0o444 else Show(name, _attr(fn), mode)


def _stat(name: str) -> Show:
    return Show(name, _attr(lambda d: d.stats[name]), **_RO)


# the attributes served, in name order (kernfs directories are 0755)
DEV_DIR = Dir("IF", (
    _show("addr_assign_type", lambda d: 0),
    _show("addr_len", lambda d: 6),
    _show("address", lambda d: d.mac),
    _show("broadcast", lambda d: "00:00:00:00:00:00" if d.loopback else "ff:ff:ff:ff:ff:ff"),
    _show("carrier", _carrier, 0o644),
    _show("carrier_changes", lambda d: d.carrier_changes),
    _show("dev_id", lambda d: "0x0"),
    _show("dormant", lambda d: 0),
    _show("duplex", _duplex),
    _show("flags", lambda d: f"{d.flags:#x}", 0o644),
    _show("ifindex", lambda d: d.ifindex),
    _show("iflink", lambda d: d.ifindex),
    _show("link_mode", lambda d: 0),
    _show("mtu", lambda d: d.mtu, 0o644, mtu_write),
    _show("name_assign_type", lambda d: d.name_assign_type),
    _show("operstate", lambda d: d.operstate),
    _show("speed", _speed),
    Dir("statistics", tuple(_stat(n) for n in sorted(STATS)), 0o755),
    _show("tx_queue_len", lambda d: d.tx_queue_len, 0o644),
    _show("type", lambda d: d.type),
), 0o755)
_LINK = Link("IF", lambda ctx: "")


def _names(parent: Node, kernel: Kernel) -> list[str]:
    return [d.name for d in _init_net(kernel).devices.values()]


def _find(kernel: Kernel, name: str) -> NetDevice:
    d = _init_net(kernel).device(name)
    if d is None:
        raise OSError(errno.ENOENT, name)
    return d


def _class_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    _find(kernel, name)
    return Node("link", _LINK, None, target=VIRTUAL + name), False


def _virtual_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    d = _find(kernel, name)
    return Node("dir", DEV_DIR, None, arg=d.ifindex), False


CLASS_NET = DynDir("net", lookup=_class_lookup, readdir=_names, mode=0o755)
VIRTUAL_NET = DynDir("net", lookup=_virtual_lookup, readdir=_names, mode=0o755)
