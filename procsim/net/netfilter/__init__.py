"""Netfilter (net/netfilter/): connection tracking. NetfilterState holds
what is global (nf_conntrack_max, the hash size and its seed) and one
ConntrackNet per network namespace (nf_conntrack_core.py); hooks.py is
where the socket model's segments and datagrams pass the conntrack hooks;
ctnetlink.py is what `conntrack -I/-D/-F` and enabling tracking do."""

from __future__ import annotations

from procsim.kstrtox import INT_MAX
from procsim.net.netfilter import nf_conntrack_proto_tcp as tcp, nf_conntrack_proto_udp as udp
from procsim.net.netfilter.nf_conntrack_core import ConntrackNet, NfConn
from procsim.net.netfilter.nf_conntrack_tuple import Tuple
from procsim.units import PAGE_SIZE

__all__ = ["ConntrackNet", "NetfilterState", "NfConn", "Tuple", "default_htable_size"]

HLIST_HEAD = 8  # sizeof(struct hlist_nulls_head)
GIB = 1 << 30


def default_htable_size(totalram_pages: int) -> int:
    """nf_conntrack_init_start(): the hash size from the machine's memory
    (nf_conntrack_max is the same number: max_factor 1)."""
    size = totalram_pages * PAGE_SIZE // 16384 // HLIST_HEAD
    if totalram_pages > 4 * GIB // PAGE_SIZE:
        size = 262144
    elif totalram_pages > GIB // PAGE_SIZE:
        size = 65536
    return max(size, 1024)


def roundup_buckets(n: int) -> int:
    """nf_ct_alloc_hashtable(): a whole number of pages of bucket heads."""
    per_page = PAGE_SIZE // HLIST_HEAD
    return -(-n // per_page) * per_page


class NetfilterState:
    """The machine's netfilter: conntrack's global settings and each
    namespace's table (made at first use, as nf_conntrack_pernet_init)."""

    def __init__(self, totalram_pages: int, nr_cpus: int, seed: int) -> None:
        self.htable_size = default_htable_size(totalram_pages)
        self.nf_conntrack_max = self.htable_size
        self.seed = seed
        self.nr_cpus = nr_cpus
        self.next_seq = 0
        self.nets: dict[object, ConntrackNet] = {}

    def ct(self, net: object) -> ConntrackNet:
        c = self.nets.get(net)
        if c is None:
            c = self.nets[net] = ConntrackNet(self, self.nr_cpus)
        return c

    def bucket(self, t: Tuple) -> int:
        """hash_conntrack(): a seeded hash of the tuple (ints only: the same
        in every run) scaled to the table."""
        return hash((self.seed, *t)) % self.htable_size

    def full(self, count: int) -> bool:
        return bool(self.nf_conntrack_max) and count > self.nf_conntrack_max

    def set_max(self, value: int) -> None:
        if not 0 <= value <= INT_MAX:
            raise ValueError("nf_conntrack_max: 0 to INT_MAX")
        self.nf_conntrack_max = value

    def resize(self, value: int) -> None:
        """nf_conntrack_hash_resize(): every entry moves to its new bucket."""
        if value <= 0:
            raise ValueError("nf_conntrack_buckets: more than 0")
        self.htable_size = roundup_buckets(value)
        for c in self.nets.values():
            for ct in c.entries.values():
                ct.bucket = self.bucket(ct.orig)

    def gc(self, now: int) -> None:
        for c in self.nets.values():
            if c.timers:
                c.gc(now)


TCP_TIMEOUTS, UDP_TIMEOUTS = tcp.TIMEOUTS, udp.TIMEOUTS
