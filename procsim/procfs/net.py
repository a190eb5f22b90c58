"""/proc/PID/net (and /proc/net -> self/net): the files of the task's
network namespace, as net/core/net-procfs.c, net/ipv4/{tcp_ipv4,udp,
proc,fib_trie,arp}.c, net/ipv6/{tcp_ipv6,udp,proc,addrconf}.c and
net/unix/af_unix.c print them. Pure functions of the namespace's state
and the clock (a TIME_WAIT socket whose timer has run is not shown)."""

from __future__ import annotations

import errno

from procsim.fs import file as F
from procsim.net import mib_names as N
from procsim.net.netns import Net
from procsim.net.sock import (TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK,
                              TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT, __SO_ACCEPTCON, Sock)
from procsim.procfs import nf_conntrack as nf_ct
from procsim.procfs.context import Ctx
from procsim.procfs.kinds import Dir, Show
from procsim.units import NSEC

USER_HZ = 100


def net_of(ctx: Ctx) -> Net:
    """get_proc_task_net(): the namespace of the task (ENOENT once it has none)."""
    k = ctx.kernel
    t = ctx.task
    ns = t.nsproxy.net if t is not None and t.nsproxy is not None else None
    if ns is None:
        if t is not None:
            raise OSError(errno.ENOENT, "net")
        ns = k.init_ns["net"]
    return k.net.net(ns)


def _pk(sk_id: int) -> str:
    """%pK of a sock: a hashed pointer (kptr_restrict 0), stable per sock."""
    return f"{(sk_id * 0x9E3779B1 + 0x5BD1E995) & 0xFFFFFFFF:016x}"


def _be32(addr: int) -> str:
    """A __be32 printed with %08X on a little-endian machine."""
    return f"{int.from_bytes(addr.to_bytes(4, 'big'), 'little'):08X}"


def _in6(addr: int) -> str:
    """The four __be32 words of an in6_addr, each %08X."""
    b = addr.to_bytes(16, "big")
    return "".join(f"{int.from_bytes(b[i:i + 4], 'little'):08X}" for i in range(0, 16, 4))


def _clock_t(ns: int) -> int:
    return max(ns, 0) * USER_HZ // NSEC


# -- /proc/net/dev ---------------------------------------------------------------------

DEV_HEADER = ("Inter-|   Receive                                                |  Transmit\n"
              " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo "
              "colls carrier compressed\n")


def dev(ctx: Ctx) -> bytes:
    """dev_seq_show(): one line per device, in registration order."""
    out = [DEV_HEADER]
    for d in net_of(ctx).devices.values():
        s = d.stats
        out.append("%6s: %7d %7d %4d %4d %4d %5d %10d %9d %8d %7d %4d %4d %4d %5d %7d %10d\n" % (
            d.name, s["rx_bytes"], s["rx_packets"], s["rx_errors"], s["rx_dropped"] + s["rx_missed_errors"],
            s["rx_fifo_errors"],
            s["rx_length_errors"] + s["rx_over_errors"] + s["rx_crc_errors"] + s["rx_frame_errors"],
            s["rx_compressed"], s["multicast"], s["tx_bytes"], s["tx_packets"], s["tx_errors"], s["tx_dropped"],
            s["tx_fifo_errors"], s["collisions"],
            s["tx_carrier_errors"] + s["tx_aborted_errors"] + s["tx_window_errors"] + s["tx_heartbeat_errors"],
            s["tx_compressed"]))
    return "".join(out).encode()


# -- tcp, tcp6 -----------------------------------------------------------------------

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
TCP6_HEADER = ("  sl  local_address                         remote_address                        st tx_queue "
               "rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
TCP_TMPSZ = 150  # seq_setwidth(TMPSZ - 1): tcp4 lines are padded to 149 columns


def _tcp_socks(net: Net, v6: bool, now: int):
    fam = F.AF_INET6 if v6 else F.AF_INET
    for table in (net.tcp_listen, net.tcp_ehash):
        for sk in table.values():
            if sk.family == fam and (not sk.expires or sk.expires > now):
                yield sk


def _timer(sk: Sock, now: int) -> tuple[int, int, int]:
    """(timer_active, when in clock_t, retransmits) of get_tcp4_sock."""
    st = sk.state
    if st == TCP_SYN_SENT:
        return 1, 100, 0      # the SYN's retransmit timer, TCP_TIMEOUT_INIT
    if sk.tx_queue and st in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
        return 1, 20, 0       # ICSK_TIME_RETRANS
    if st in (TCP_FIN_WAIT1, TCP_LAST_ACK):
        return 1, _clock_t(sk.expires - now), 0
    if st == TCP_FIN_WAIT2 and sk.expires:
        return 2, _clock_t(sk.expires - now), 0   # the FIN_WAIT2 timer is the keepalive timer
    return 0, 0, 0


def _tcp_line(i: int, sk: Sock, now: int, v6: bool) -> str:
    addr = _in6 if v6 else _be32
    local = f"{addr(sk.laddr)}:{sk.lport:04X}"
    remote = f"{addr(sk.raddr)}:{sk.rport:04X}"
    if sk.state == TCP_TIME_WAIT:  # get_timewait4_sock
        return (f"{i:4d}: {local} {remote} 06 00000000:00000000 03:{_clock_t(sk.expires - now):08X} 00000000"
                f"     0        0 0 3 {_pk(sk.id)}")
    if sk.state == TCP_SYN_RECV:   # get_openreq4: a request sock of the listener
        return (f"{i:4d}: {local} {remote} 03 00000000:00000000 01:00000064 00000000 {sk.uid:5d}        0 0 1 "
                f"{_pk(sk.id)}")
    listen = sk.state == TCP_LISTEN
    rx = len(sk.queue) if listen else sk.rx_queue
    tr, when, retr = _timer(sk, now)
    ino = sk.ino if sk.file is not None else 0
    # sk_refcnt (as this host's 6.18 shows it): a listener's grows by one per
    # child in its accept queue; an active opener's socket holds a second one
    refs = 1 + len(sk.queue) if listen else 2 if ino and sk.active else 1
    if listen:
        tail = "100 0 0 10 0"   # rto TCP_TIMEOUT_INIT, no ack state, cwnd 10, fastopen max_qlen 0
    else:                       # rto 200 ms; ato and quick-ack credit once data came in
        tail = "20 4 30 10 -1" if sk.bytes_received else "20 0 0 10 -1"
    return (f"{i:4d}: {local} {remote} {sk.state:02X} {sk.tx_queue:08X}:{rx:08X} {tr:02X}:{when:08X} {retr:08X} "
            f"{sk.uid:5d} {0:8d} {ino} {refs} {_pk(sk.id)} {tail}")


def tcp(ctx: Ctx) -> bytes:
    net, now = net_of(ctx), ctx.kernel.now
    w = TCP_TMPSZ - 1
    out = [TCP_HEADER.ljust(w), "\n"]
    for i, sk in enumerate(_tcp_socks(net, False, now)):
        out.append(_tcp_line(i, sk, now, False).ljust(w))
        out.append("\n")
    return "".join(out).encode()


def tcp6(ctx: Ctx) -> bytes:
    net, now = net_of(ctx), ctx.kernel.now
    out = [TCP6_HEADER]
    for i, sk in enumerate(_tcp_socks(net, True, now)):
        out.append(_tcp_line(i, sk, now, True))
        out.append("\n")
    return "".join(out).encode()


# -- udp, udp6 ---------------------------------------------------------------------

UDP_HEADER = ("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref "
              "pointer drops")
UDP6_HEADER = ("  sl  local_address                         remote_address                        st tx_queue "
               "rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n")


def udp_hash_mask(ctx: Ctx) -> int:
    """udp_table_init(): alloc_large_system_hash("UDP", scale 21): a slot
    per 2 MiB of memory, a power of two from 256 to 65536."""
    n = max(ctx.kernel.config.nr_pages >> 9, 1)
    size = 1 << (n - 1).bit_length()
    return min(max(size, 256), 65536) - 1


def _net_hash_mix(net: Net) -> int:
    """net_hash_mix(): a per-namespace salt of the port hash (stable per namespace)."""
    inum = getattr(net.ns, "inum", 0)
    return (inum * 2654435761) & 0xFFFFFFFF


def _udp_socks(ctx: Ctx, v6: bool) -> list[tuple[int, Sock]]:
    net = net_of(ctx)
    fam = F.AF_INET6 if v6 else F.AF_INET
    mask, mix = udp_hash_mask(ctx), _net_hash_mix(net)
    rows = [((sk.lport + mix) & mask, sk) for sk in net.udp.values() if sk.family == fam]
    rows.sort(key=lambda r: r[0])  # the hash walk: slot by slot (the newest first within one)
    return rows


def _udp_line(slot: int, sk: Sock, v6: bool) -> str:
    addr = _in6 if v6 else _be32
    return (f"{slot:5d}: {addr(sk.laddr)}:{sk.lport:04X} {addr(sk.raddr)}:{sk.rport:04X} {sk.state:02X} "
            f"{0:08X}:{sk.rx_queue:08X} 00:00000000 00000000 {sk.uid:5d} {0:8d} {sk.ino} 2 {_pk(sk.id)} "
            f"{sk.drops}")


def udp(ctx: Ctx) -> bytes:
    w = 127
    out = [UDP_HEADER.ljust(w), "\n"]
    for slot, sk in _udp_socks(ctx, False):
        out.append(_udp_line(slot, sk, False).ljust(w))
        out.append("\n")
    return "".join(out).encode()


def udp6(ctx: Ctx) -> bytes:
    out = [UDP6_HEADER]
    for slot, sk in _udp_socks(ctx, True):
        out.append(_udp_line(slot, sk, True))
        out.append("\n")
    return "".join(out).encode()


# -- unix ------------------------------------------------------------------------------


def unix(ctx: Ctx) -> bytes:
    """unix_seq_show()."""
    out = ["Num       RefCount Protocol Flags    Type St Inode Path\n"]
    for sk in net_of(ctx).unix.values():
        refs = 2 + (sk.peer is not None)
        flags = __SO_ACCEPTCON if sk.state == TCP_LISTEN else 0
        ino = sk.ino if sk.file is not None else 0
        line = f"{_pk(sk.id)}: {refs:08X} {0:08X} {flags:08X} {sk.type:04X} {sk.unix_state():02X} {ino:5d}"
        if sk.path is not None:
            line += " " + sk.path
        out.append(line + "\n")
    return "".join(out).encode()


# -- sockstat, sockstat6 ---------------------------------------------------------------


def _pages(n: int) -> int:
    return -(-n // 4096)


def sockstat(ctx: Ctx) -> bytes:
    """sockstat_seq_show(): this namespace's counts; orphans, alloc and mem are the machine's."""
    k, net, now = ctx.kernel, net_of(ctx), ctx.kernel.now
    used = sum(1 for sk in k.net.socks.values() if sk.net is net and (not sk.expires or sk.expires > now))
    tcp_all = [sk for sk in k.net.socks.values() if sk.is_tcp and (not sk.expires or sk.expires > now)]
    orphans = sum(1 for sk in tcp_all if sk.file is None and sk.parent is None and sk.state != TCP_LISTEN
                  and sk.state in (TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK))
    tcp_mem = sum(_pages(sk.rx_queue + sk.tx_queue) for sk in tcp_all)
    inuse = tw = 0
    for sk in _tcp_socks(net, False, now):
        tw += sk.state == TCP_TIME_WAIT
        inuse += sk.state != TCP_TIME_WAIT and sk.state != TCP_SYN_RECV
    udp_in = sum(1 for sk in net.udp.values() if sk.family == F.AF_INET)
    udp_mem = sum(_pages(sk.rx_queue) for n in k.net.nets.values() for sk in n.udp.values())
    tw6 = sum(1 for sk in _tcp_socks(net, True, now) if sk.state == TCP_TIME_WAIT)
    return (f"sockets: used {used}\n"
            f"TCP: inuse {inuse} orphan {orphans} tw {tw + tw6} alloc {len(tcp_all)} mem {tcp_mem}\n"
            f"UDP: inuse {udp_in} mem {udp_mem}\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n").encode()


def sockstat6(ctx: Ctx) -> bytes:
    net, now = net_of(ctx), ctx.kernel.now
    inuse = sum(1 for sk in _tcp_socks(net, True, now) if sk.state not in (TCP_TIME_WAIT, TCP_SYN_RECV))
    udp_in = sum(1 for sk in net.udp.values() if sk.family == F.AF_INET6)
    return (f"TCP6: inuse {inuse}\nUDP6: inuse {udp_in}\nUDPLITE6: inuse 0\nRAW6: inuse 0\n"
            f"FRAG6: inuse 0 memory 0\n").encode()


# -- snmp, netstat, snmp6 ---------------------------------------------------------------


def _tw_pending(net: Net, now: int) -> int:
    """TIME_WAIT sockets whose timer has run but that no call has reaped yet."""
    return sum(1 for sk in net.tcp_ehash.values() if sk.state == TCP_TIME_WAIT and sk.expires and sk.expires <= now)


def _pair(prefix: str, names: tuple[str, ...], values: dict[str, int]) -> str:
    return (f"{prefix}: " + " ".join(names) + "\n" + f"{prefix}: " + " ".join(str(values[n]) for n in names)
            + "\n")


def _icmpmsg(msgs: dict[int, int]) -> str:
    """icmpmsg_put(): the nonzero types, In (0-255) then Out (0x100 | type), 16 a line."""
    items = sorted((t, v) for t, v in msgs.items() if v)
    out = []
    for i in range(0, len(items), 16):
        chunk = items[i:i + 16]
        out.append("IcmpMsg: " + " ".join(f"{'Out' if t & 0x100 else 'In'}Type{t & 0xFF}" for t, _ in chunk) + "\n")
        out.append("IcmpMsg: " + " ".join(str(v) for _, v in chunk) + "\n")
    return "".join(out)


def snmp(ctx: Ctx) -> bytes:
    net = net_of(ctx)
    m = net.mib
    tcp = dict(m["Tcp"])
    tcp["CurrEstab"] = net.curr_estab()
    out = [_pair("Ip", N.IP, m["Ip"]), _pair("Icmp", N.ICMP, m["Icmp"]), _icmpmsg(net.icmpmsg),
           _pair("Tcp", N.TCP, tcp), _pair("Udp", N.UDP, m["Udp"]), _pair("UdpLite", N.UDPLITE, m["UdpLite"])]
    return "".join(out).encode()


def netstat(ctx: Ctx) -> bytes:
    net = net_of(ctx)
    m = net.mib
    ext = dict(m["TcpExt"])
    ext["TW"] += _tw_pending(net, ctx.kernel.now)
    return (_pair("TcpExt", N.TCPEXT, ext) + _pair("IpExt", N.IPEXT, m["IpExt"])
            + _pair("MPTcpExt", N.MPTCPEXT, m["MPTcpExt"])).encode()


def snmp6(ctx: Ctx) -> bytes:
    """snmp6_seq_show(): Ip6 and Icmp6 counters, the nonzero Icmp6 types, Udp6, UdpLite6."""
    net = net_of(ctx)
    out = []
    types_at = N.IPV6.index("Udp6InDatagrams")
    for i, name in enumerate(N.IPV6):
        if i == types_at:
            for t, v in sorted(net.icmp6msg.items()):
                if v:
                    out.append(f"{'Icmp6%sType%u' % ('Out' if t & 0x100 else 'In', t & 0xFF):<32s}\t{v}\n")
        out.append(f"{name:<32s}\t{net.ipv6[name]}\n")
    return "".join(out).encode()


# -- route, arp, if_inet6, softnet_stat ---------------------------------------------------


def route(ctx: Ctx) -> bytes:
    """fib_route_seq_show(): the main table's routes, lines padded to 127 columns."""
    w = 127
    out = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT".ljust(w), "\n"]
    for r in sorted(net_of(ctx).routes, key=lambda r: (r.dst, -r.plen)):
        line = (f"{r.dev.name}\t{_be32(r.dst)}\t{_be32(r.gw)}\t{r.flags:04X}\t0\t0\t{r.metric}\t{_be32(r.mask)}"
                f"\t0\t0\t0")
        out.append(line.ljust(w))
        out.append("\n")
    return "".join(out).encode()


def _ip4(a: int) -> str:
    return ".".join(str(b) for b in a.to_bytes(4, "big"))


def arp(ctx: Ctx) -> bytes:
    out = ["IP address       HW type     Flags       HW address            Mask     Device\n"]
    for n in net_of(ctx).neighbours:
        out.append(f"{_ip4(n.ip):<16s} 0x{n.dev.type:<10x}0x{n.flags:<10x}{n.mac:<17s}     {'*':<8s} {n.dev.name}\n")
    return "".join(out).encode()


def if_inet6(ctx: Ctx) -> bytes:
    """if6_seq_show(): every IPv6 address (the newest device's first, as the hash walk finds them here)."""
    out = []
    for d in reversed(list(net_of(ctx).devices.values())):
        for addr, plen, scope, flags in d.ipv6:
            out.append(f"{addr:032x} {d.ifindex:02x} {plen:02x} {scope:02x} {flags:02x} {d.name:>8s}\n")
    return "".join(out).encode()


def softnet_stat(ctx: Ctx) -> bytes:
    """softnet_seq_show(): one line per online CPU (softnet_data is per CPU,
    whatever the namespace: every namespace's packets)."""
    nets = ctx.kernel.net.nets.values()
    out = []
    for cpu, processed in enumerate(map(sum, zip(*(n.softnet for n in nets)))):
        out.append(f"{processed:08x} " + "00000000 " * 11 + f"{cpu:08x} 00000000 00000000\n")
    return "".join(out).encode()


# -- the directory ----------------------------------------------------------------------


def _row(name: str, render) -> Show:
    return Show(name, render, records=True, write_errno=errno.EIO)


# the files procsim serves, in name order (proc_dir_entry's rbtree)
NET_DIR = Dir.of("net", _row("arp", arp), _row("dev", dev), _row("if_inet6", if_inet6), _row("netstat", netstat),
                 Show("nf_conntrack", nf_ct.nf_conntrack, 0o440, records=True, write_errno=errno.EIO),
                 _row("route", route), _row("snmp", snmp), _row("snmp6", snmp6), _row("sockstat", sockstat),
                 _row("sockstat6", sockstat6), _row("softnet_stat", softnet_stat),
                 Dir.of("stat", _row("nf_conntrack", nf_ct.stat)), _row("tcp", tcp),
                 _row("tcp6", tcp6), _row("udp", udp), _row("udp6", udp6), _row("unix", unix))


def proc_net_link(ctx: Ctx) -> str:
    """/proc/net -> self/net (proc_net_init)."""
    return "self/net"
