"""Where the socket model's packets pass netfilter's conntrack hooks
(NF_INET_LOCAL_OUT for what a local socket sends, PRE_ROUTING for what
arrives; over lo both hooks see one packet, and the second finds the
entry the first made). The socket calls (procsim/net/syscalls.py) say
which segments a step exchanges, as a string of tokens: a flag class
(S, SA, F, A, R) and a direction (`>`: sent by the socket, `<`: to it),
e.g. "S> SA< A>" for a three-way handshake the socket opens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.net.netfilter import nf_conntrack_proto_tcp as tcp
from procsim.net.netfilter.nf_conntrack_tuple import (IPPROTO_TCP, IPPROTO_UDP, NFPROTO_IPV4, NFPROTO_IPV6,
                                                      Tuple)

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.net.sock import Sock

AF_INET6 = 10
V4MAPPED = 0xFFFF << 32


def _l3(family: int, addr: int) -> tuple[int, int]:
    if family == AF_INET6 and addr & ~0xFFFFFFFF != V4MAPPED:
        return NFPROTO_IPV6, addr
    return NFPROTO_IPV4, addr & 0xFFFFFFFF


def out_tuple(family: int, proto: int, laddr: int, lport: int, raddr: int, rport: int) -> Tuple:
    """The tuple of a packet the socket sends (to a v4-mapped peer: IPv4 on the wire)."""
    l3, dst = _l3(family, raddr)
    src = laddr & 0xFFFFFFFF if l3 == NFPROTO_IPV4 else laddr
    return Tuple(l3, src, dst, proto, lport, rport)


def sock_tuple(sk: "Sock") -> Tuple:
    return out_tuple(sk.family, IPPROTO_TCP if sk.is_tcp else IPPROTO_UDP, sk.laddr, sk.lport, sk.raddr, sk.rport)


def track(k: "Kernel", net: object, t_out: Tuple, segs: str, cpu: int, unacked: bool = False) -> bool:
    """The segments `segs` of the connection whose sent packets carry
    `t_out`; False when the first is dropped (the table is full), and
    then none of the rest is sent."""
    ct = k.netfilter.ct(net)
    if not ct.enabled:
        return True
    t_in = t_out.invert()
    for i, tok in enumerate(segs.split()):
        t = t_out if tok[-1] == ">" else t_in
        if not ct.packet(t, k.now, cpu, tcp.FLAGS[tok[:-1]], unacked) and i == 0:
            return False
    return True


def tcp_segs(k: "Kernel", sk: "Sock", segs: str, unacked: bool = False) -> bool:
    """Segments of a TCP socket's connection."""
    return track(k, sk.net, sock_tuple(sk), segs, sk.owner_cpu, unacked)


def udp_out(k: "Kernel", sk: "Sock", raddr: int, rport: int, cpu: int) -> bool:
    """A datagram the socket sends to raddr:rport (False: dropped, EPERM)."""
    ct = k.netfilter.ct(sk.net)
    if not ct.enabled:
        return True
    t = out_tuple(sk.family, IPPROTO_UDP, sk.laddr or _src_for(sk, raddr), sk.lport, raddr, rport)
    return ct.packet(t, k.now, cpu)


def _src_for(sk: "Sock", raddr: int) -> int:
    """The source address of an unbound-address socket's datagram (inet_select_addr)."""
    fam = 6 if sk.family == AF_INET6 and raddr & ~0xFFFFFFFF != V4MAPPED else 4
    a = raddr & 0xFFFFFFFF if fam == 4 else raddr
    r = sk.net.route(fam, a)
    if r is None:
        return 0
    src = sk.net.source_address(fam, r[0], a)
    return src | V4MAPPED if fam == 4 and sk.family == AF_INET6 else src
