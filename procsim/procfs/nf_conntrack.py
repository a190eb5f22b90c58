"""/proc/net/nf_conntrack, /proc/net/stat/nf_conntrack and
/proc/sys/net/netfilter/nf_conntrack_* (net/netfilter/
nf_conntrack_standalone.c) over procsim/net/netfilter/: ct_seq_show's
lines with the kernel config's mark= and zone= fields (CONFIG_NF_CONNTRACK_
MARK, _ZONES; no secctx without an LSM's secmark, no packets=/bytes= or
delta-time= while nf_conntrack_acct and _timestamp are 0, their defaults)."""

from __future__ import annotations

import errno
import ipaddress

from procsim.kstrtox import INT_MAX
from procsim.net.netfilter import ConntrackNet, NfConn, Tuple, nf_conntrack_proto_tcp as tcp, sysctl as nf_sysctl
from procsim.net.netfilter.nf_conntrack_core import IPS_ASSURED, IPS_SEEN_REPLY, STAT_FIELDS
from procsim.net.netfilter.nf_conntrack_tuple import IPPROTO_TCP, L3_NAMES, L4_NAMES, NFPROTO_IPV4
from procsim.procfs import sysctl
from procsim.procfs.context import Ctx
from procsim.procfs.kinds import Bin, Dir, Show
from procsim.units import NSEC


def ct_of(ctx: Ctx) -> ConntrackNet:
    from procsim.procfs.net import net_of  # net.py's table has this module's rows
    return ctx.kernel.netfilter.ct(net_of(ctx))


def _addr(l3: int, a: int) -> str:
    if l3 == NFPROTO_IPV4:
        return str(ipaddress.IPv4Address(a))
    h = f"{a:032x}"  # %pI6: eight groups of four digits, never shortened
    return ":".join(h[i:i + 4] for i in range(0, 32, 4))


def _tuple(t: Tuple) -> str:
    return (f"src={_addr(t.l3num, t.src)} dst={_addr(t.l3num, t.dst)} "
            f"sport={t.sport} dport={t.dport} ")


def ct_line(ct: NfConn, now: int) -> str:
    """ct_seq_show() of one entry (its use count plus the reader's reference)."""
    o = ct.orig
    out = [f"{L3_NAMES[o.l3num]:<8} {o.l3num} {L4_NAMES[o.protonum]:<8} {o.protonum} "
           f"{max(ct.timeout - now, 0) // NSEC} "]
    if o.protonum == IPPROTO_TCP:
        out.append(f"{tcp.NAMES[ct.state]} ")
    out.append(_tuple(o))
    if not ct.status & IPS_SEEN_REPLY:
        out.append("[UNREPLIED] ")
    out.append(_tuple(ct.reply))
    if ct.status & IPS_ASSURED:
        out.append("[ASSURED] ")
    out.append(f"mark={ct.mark} zone={ct.zone} use={ct.use + 1}\n")
    return "".join(out)


def nf_conntrack(ctx: Ctx) -> bytes:
    now = ctx.kernel.now
    return "".join(ct_line(ct, now) for ct in ct_of(ctx).walk()).encode()


STAT_HEADER = ("entries  clashres found new invalid ignore delete chainlength insert insert_failed drop "
               "early_drop icmp_error  expect_new expect_create expect_delete search_restart\n")
# the columns 6.18 still counts; the others print 0 (ct_cpu_seq_show)
_COUNTED = {"clash_resolve", "invalid", "chaintoolong", "insert_failed", "drop", "early_drop", "error",
            "expect_new", "expect_create", "expect_delete", "search_restart"}


def stat(ctx: Ctx) -> bytes:
    """ct_cpu_seq_show(): the header, then one line per possible CPU."""
    c = ct_of(ctx)
    out = [STAT_HEADER]
    for st in c.stat:
        v = [st[f] if f in _COUNTED else 0 for f in STAT_FIELDS]
        out.append(f"{c.count:08x}  " + " ".join(f"{x:08x}" for x in v[:12]) + "  "
                   + " ".join(f"{x:08x}" for x in v[12:]) + "\n")
    return "".join(out).encode()


# -- /proc/sys/net/netfilter ----------------------------------------------------------


def _int(fn):
    return lambda ctx: f"{fn(ctx)}\n".encode()


def _store_global(name: str):
    def store(ctx: Ctx, v: int) -> None:
        try:
            nf_sysctl.set_global(ctx.kernel, name, v)
        except ValueError:
            raise OSError(errno.EINVAL, name) from None
    return store


def _timeout_row(name: str, table: str, key: str) -> Bin:
    def read(ctx: Ctx) -> int:
        return getattr(ct_of(ctx), table)[key]

    def store(ctx: Ctx, v: int) -> None:
        from procsim.procfs.net import net_of
        nf_sysctl.set_timeout(ctx.kernel, net_of(ctx), table, key, v)
    # proc_dointvec_jiffies: seconds, kept as jiffies (so at most INT_MAX / HZ)
    return Bin(name, sysctl.dointvec_read(_int(read)), 0o644, sysctl.dointvec_minmax_write(0, INT_MAX // 1000, store))


MAX_ROW = Bin("nf_conntrack_max", sysctl.dointvec_read(_int(lambda ctx: ctx.kernel.netfilter.nf_conntrack_max)),
              0o644, sysctl.dointvec_minmax_write(0, INT_MAX, _store_global("nf_conntrack_max")))

NETFILTER = Dir.of(
    "netfilter",
    Bin("nf_conntrack_buckets", sysctl.dointvec_read(_int(lambda ctx: ctx.kernel.netfilter.htable_size)), 0o644,
        sysctl.dointvec_minmax_write(-INT_MAX - 1, INT_MAX, _store_global("nf_conntrack_buckets"))),
    Show("nf_conntrack_count", _int(lambda ctx: ct_of(ctx).count), deny_write=True),
    MAX_ROW,
    *(_timeout_row(f"nf_conntrack_tcp_timeout_{key}", "tcp_timeouts", key) for key in sorted(tcp.TIMEOUTS)),
    _timeout_row("nf_conntrack_udp_timeout", "udp_timeouts", "udp_timeout"),
    _timeout_row("nf_conntrack_udp_timeout_stream", "udp_timeouts", "udp_timeout_stream"),
)
