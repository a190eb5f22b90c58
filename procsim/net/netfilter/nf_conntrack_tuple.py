"""struct nf_conntrack_tuple (include/net/netfilter/nf_conntrack_tuple.h):
what identifies one direction of a connection: the layer-3 family, the
source and destination addresses and the layer-4 protocol with its ports.
Addresses are ints in host order (an IPv4 address of an AF_INET6 socket's
v4-mapped peer is tracked as IPv4: the packet on the wire is IPv4)."""

from __future__ import annotations

from typing import NamedTuple

NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17
IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY = 0, 1
L3_NAMES = {NFPROTO_IPV4: "ipv4", NFPROTO_IPV6: "ipv6"}
L4_NAMES = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}


class Tuple(NamedTuple):
    l3num: int
    src: int
    dst: int
    protonum: int
    sport: int
    dport: int

    def invert(self) -> "Tuple":
        """nf_ct_invert_tuple(): the tuple the other direction's packets carry."""
        return Tuple(self.l3num, self.dst, self.src, self.protonum, self.dport, self.sport)
