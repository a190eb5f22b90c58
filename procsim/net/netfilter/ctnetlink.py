"""What `conntrack` (ctnetlink, net/netfilter/nf_conntrack_netlink.c)
and the rulesets that need tracking do to a namespace's table: enable the
hooks (nf_ct_netns_get/put), create an entry (-I: EEXIST for a tuple in
the table, ENOMEM when it is full), delete (-D: ENOENT), set the mark
(-U), flush (-F). Every argument is checked before anything changes."""

from __future__ import annotations

import errno
import ipaddress
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.net.netfilter import nf_conntrack_proto_tcp as tcp
from procsim.net.netfilter.nf_conntrack_core import IPS_ASSURED, IPS_SEEN_REPLY, ConntrackNet, NfConn
from procsim.net.netfilter.nf_conntrack_tuple import (IPPROTO_TCP, IPPROTO_UDP, NFPROTO_IPV4, NFPROTO_IPV6,
                                                      Tuple)
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.kernel import Kernel

PROTOS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
STATUS = {"ASSURED": IPS_ASSURED, "SEEN_REPLY": IPS_SEEN_REPLY}


def table_of(k: "Kernel", pid: int | None) -> ConntrackNet:
    """The table of `pid`'s network namespace (None: the initial one; ESRCH: no such process)."""
    if pid is None:
        return k.netfilter.ct(k.net.net(k.init_ns["net"]))
    t = k.task(pid)
    if t.nsproxy is None:
        raise KernelError(errno.ESRCH, f"process {pid} has exited")
    return k.netfilter.ct(k.net.net(t.nsproxy.net))


def parse_tuple(proto: str, src: str, dst: str, sport: int, dport: int) -> Tuple:
    if proto not in PROTOS:
        raise KernelError(errno.EINVAL, f"proto: one of {', '.join(PROTOS)}")
    try:
        a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    except ValueError:
        raise KernelError(errno.EINVAL, f"{src} -> {dst}: not IP addresses") from None
    if a.version != b.version:
        raise KernelError(errno.EINVAL, "src and dst of one family")
    if not (0 < sport <= 65535 and 0 < dport <= 65535):
        raise KernelError(errno.EINVAL, "ports 1-65535")
    return Tuple(NFPROTO_IPV4 if a.version == 4 else NFPROTO_IPV6, int(a), int(b), PROTOS[proto], sport, dport)


def enable(k: "Kernel", pid: int | None, on: bool = True) -> None:
    """A ruleset that needs conntrack is loaded (or its last one removed)
    in `pid`'s namespace; the entries stay until their timeouts."""
    if on and "nf_conntrack" not in k.modules.by_name:
        raise KernelError(errno.ENOENT, "nf_conntrack is not loaded")
    table_of(k, pid).enabled = on
    k._changed("netfilter", pid=pid)


def create(k: "Kernel", pid: int, t: Tuple, timeout: int, state: str | None, status: str, mark: int,
           zone: int) -> NfConn:
    """ctnetlink_create_conntrack()."""
    c = table_of(k, pid)
    c.gc(k.now)
    if timeout <= 0:
        raise KernelError(errno.EINVAL, "a timeout in seconds (CTA_TIMEOUT)")
    if t.protonum == IPPROTO_TCP:
        st = tcp.NAMES.index(state) if state in tcp.NAMES else -1
        if st <= tcp.NONE:
            raise KernelError(errno.EINVAL, f"state: one of {', '.join(tcp.NAMES[1:])}")
    elif state is not None:
        raise KernelError(errno.EINVAL, "a state is only for tcp")
    bits = 0
    for name in filter(None, status.split(",")):
        if name not in STATUS:
            raise KernelError(errno.EINVAL, f"status: of {', '.join(STATUS)}")
        bits |= STATUS[name]
    if not 0 <= mark < 1 << 32 or not 0 <= zone < 1 << 16:
        raise KernelError(errno.EINVAL, "mark: u32, zone: u16")
    if c.find(t) is not None or c.find(t.invert()) is not None:
        raise KernelError(errno.EEXIST, "an entry with that tuple exists")
    ct = c.alloc(t, k.task(pid).cpu)
    if ct is None:
        raise KernelError(errno.ENOMEM, "the conntrack table is full")
    ct.status |= bits
    ct.mark, ct.zone = mark, zone
    if t.protonum == IPPROTO_TCP:
        ct.state = st
    c.refresh(ct, k.now, timeout * NSEC)
    c.insert(ct)
    k._changed("netfilter", pid=pid)
    return ct


def lookup(k: "Kernel", pid: int, t: Tuple) -> tuple[ConntrackNet, NfConn]:
    c = table_of(k, pid)
    c.gc(k.now)
    found = c.find(t)
    if found is None:
        raise KernelError(errno.ENOENT, "no such entry")
    return c, found[0]


def delete(k: "Kernel", pid: int, t: Tuple) -> None:
    c, ct = lookup(k, pid, t)
    c.kill(ct)
    k._changed("netfilter", pid=pid)


def set_mark(k: "Kernel", pid: int, t: Tuple, mark: int) -> None:
    if not 0 <= mark < 1 << 32:
        raise KernelError(errno.EINVAL, "mark: u32")
    lookup(k, pid, t)[1].mark = mark
    k._changed("netfilter", pid=pid)


def flush(k: "Kernel", pid: int) -> int:
    n = table_of(k, pid).flush()
    k._changed("netfilter", pid=pid)
    return n


def entries(k: "Kernel", pid: int) -> list[dict]:
    c = table_of(k, pid)
    out = []
    for ct in c.walk():
        if ct.timeout <= k.now:
            continue
        o = ct.orig
        fam = ipaddress.IPv4Address if o.l3num == NFPROTO_IPV4 else ipaddress.IPv6Address
        out.append({"proto": "tcp" if o.protonum == IPPROTO_TCP else "udp", "src": str(fam(o.src)),
                    "dst": str(fam(o.dst)), "sport": o.sport, "dport": o.dport,
                    "state": tcp.NAMES[ct.state] if o.protonum == IPPROTO_TCP else None,
                    "timeout": (ct.timeout - k.now) // NSEC, "assured": ct.assured(),
                    "seen_reply": bool(ct.status & IPS_SEEN_REPLY), "mark": ct.mark, "zone": ct.zone})
    return out
