"""net/netfilter/nf_conntrack_core.c: struct nf_conn, the conntrack table
of one network namespace (its hash of both directions' tuples, its count,
its per-CPU statistics), nf_conntrack_in (a packet: find the entry of its
tuple or make one, run the protocol tracker, refresh the timeout),
allocation against nf_conntrack_max with early_drop, and the expiry of
entries as the clock reaches their timeouts.

The table is ordered as the kernel's hash is walked: by bucket (a seeded
hash of the original tuple modulo nf_conntrack_buckets), the newest entry
of a bucket first (hlist_nulls_add_head_rcu). Expired entries go when the
clock passes their timeout (the kernel's gc worker does it a little later;
the model does it at once so that every read of the same instant agrees)."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from procsim.net.netfilter import nf_conntrack_proto_tcp as tcp, nf_conntrack_proto_udp as udp
from procsim.net.netfilter.nf_conntrack_tuple import (IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY, IPPROTO_TCP,
                                                      IPPROTO_UDP, Tuple)
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.net.netfilter import NetfilterState

# enum ip_conntrack_status bits that /proc/net/nf_conntrack shows
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3
NF_CT_EVICTION_RANGE = 8  # buckets early_drop looks at
# struct ip_conntrack_stat, in /proc/net/stat/nf_conntrack's column order after `entries`
STAT_FIELDS = ("clash_resolve", "found", "new", "invalid", "ignore", "delete", "chaintoolong", "insert",
               "insert_failed", "drop", "early_drop", "error", "expect_new", "expect_create", "expect_delete",
               "search_restart")


class NfConn:
    """struct nf_conn: both tuples, the status bits, the timeout (an
    absolute time in ns), the TCP state, mark, zone and the reference count
    (1: the table's)."""

    __slots__ = ("orig", "reply", "status", "timeout", "state", "mark", "zone", "use", "cpu", "seq",
                 "stream_ts", "bucket")

    def __init__(self, orig: Tuple, cpu: int, seq: int, bucket: int) -> None:
        self.orig, self.reply = orig, orig.invert()
        self.status = IPS_CONFIRMED
        self.timeout = 0
        self.state = tcp.NONE
        self.mark = 0
        self.zone = 0
        self.use = 1
        self.cpu = cpu
        self.seq = seq          # insertion order (the newest is first in its bucket)
        self.stream_ts = 0      # udp: when a replied flow counts as a stream
        self.bucket = bucket

    @property
    def protonum(self) -> int:
        return self.orig.protonum

    def assured(self) -> bool:
        return bool(self.status & IPS_ASSURED)


class ConntrackNet:
    """struct netns_ct and the net's part of the hash: its entries by both
    tuples, the count, the per-CPU stats; `enabled`: a netfilter hook that
    needs conntrack is registered in the namespace (nf_ct_netns_get: a
    ruleset that matches on ct state, NAT, ...)."""

    def __init__(self, state: "NetfilterState", nr_cpus: int) -> None:
        self.state = state
        self.enabled = False
        self.by_tuple: dict[Tuple, tuple[NfConn, int]] = {}
        self.entries: dict[Tuple, NfConn] = {}   # by original tuple
        self.stat = [dict.fromkeys(STAT_FIELDS, 0) for _ in range(nr_cpus)]
        self.timers: list[tuple[int, int, NfConn]] = []
        # the namespace's nf_conntrack_{tcp,udp}_timeout_* sysctls, in seconds
        self.tcp_timeouts = dict(tcp.TIMEOUTS)
        self.udp_timeouts = dict(udp.TIMEOUTS)

    @property
    def count(self) -> int:
        return len(self.entries)

    # -- the hash -------------------------------------------------------------------

    def find(self, t: Tuple) -> tuple[NfConn, int] | None:
        """__nf_conntrack_find_get(): the entry and the direction of `t`."""
        return self.by_tuple.get(t)

    def insert(self, ct: NfConn) -> None:
        self.entries[ct.orig] = ct
        self.by_tuple[ct.orig] = (ct, IP_CT_DIR_ORIGINAL)
        self.by_tuple[ct.reply] = (ct, IP_CT_DIR_REPLY)

    def kill(self, ct: NfConn) -> None:
        """nf_ct_delete(): out of the hash (its timer entry goes stale)."""
        if self.entries.get(ct.orig) is ct:
            del self.entries[ct.orig]
            self.by_tuple.pop(ct.orig, None)
            self.by_tuple.pop(ct.reply, None)

    def flush(self) -> int:
        n = len(self.entries)
        self.entries.clear()
        self.by_tuple.clear()
        self.timers.clear()
        return n

    def walk(self) -> list[NfConn]:
        """ct_get_first/ct_get_next: bucket order, newest first within a bucket."""
        return sorted(self.entries.values(), key=lambda c: (c.bucket, -c.seq))

    # -- timeouts -------------------------------------------------------------------

    def refresh(self, ct: NfConn, now: int, extra: int) -> None:
        """nf_ct_refresh(): the timeout is now + extra."""
        ct.timeout = now + extra
        heapq.heappush(self.timers, (ct.timeout, ct.seq, ct))

    def gc(self, now: int) -> None:
        """gc_worker: the entries whose timeout has passed go."""
        while self.timers and self.timers[0][0] <= now:
            when, _, ct = heapq.heappop(self.timers)
            if ct.timeout == when and self.entries.get(ct.orig) is ct:
                self.kill(ct)

    def stat_inc(self, cpu: int, field: str) -> None:
        self.stat[cpu % len(self.stat)][field] += 1

    # -- allocation ---------------------------------------------------------------

    def _early_drop(self, bucket: int) -> bool:
        """early_drop(): in the NF_CT_EVICTION_RANGE buckets from the new
        entry's, drop one entry that is not assured (or whose protocol
        lets it go: a closing TCP connection); False if none may go."""
        size = self.state.htable_size
        window = {(bucket + i) % size for i in range(NF_CT_EVICTION_RANGE)}
        victims = [c for c in self.entries.values() if c.bucket in window
                   and (not c.assured() or c.protonum == IPPROTO_TCP and tcp.can_early_drop(c.state))]
        if not victims:
            return False
        # each bucket's chain is walked from its head (the newest)
        victim = min(victims, key=lambda c: ((c.bucket - bucket) % size, -c.seq))
        self.kill(victim)
        return True

    def alloc(self, t: Tuple, cpu: int) -> NfConn | None:
        """__nf_conntrack_alloc(): a new entry for `t`, or None when the table
        is full and nothing could be dropped early (the packet is dropped:
        stat drop; the early drops count in early_drop)."""
        st = self.state
        bucket = st.bucket(t)
        if st.full(self.count + 1):
            if not self._early_drop(bucket):
                self.stat_inc(cpu, "drop")
                return None
            self.stat_inc(cpu, "early_drop")
        st.next_seq += 1
        return NfConn(t, cpu, st.next_seq, bucket)

    # -- packets --------------------------------------------------------------------

    def packet(self, t: Tuple, now: int, cpu: int, flag: int = 0, unacked: bool = False,
               create: bool = True) -> bool:
        """nf_conntrack_in() of one packet with tuple `t` (`flag`: a TCP
        segment's flag class): False when the packet is dropped."""
        if not self.enabled:
            return True
        self.gc(now)
        found = self.find(t)
        new = found is None
        if new:
            if not create:
                return True
            if t.protonum == IPPROTO_TCP and tcp.new_state(IP_CT_DIR_ORIGINAL, flag, tcp.NONE) >= tcp.MAX \
                    and flag != tcp.ACK:
                # tcp_new(): a segment that cannot open a connection (loose pickup takes ACKs)
                self.stat_inc(cpu, "invalid")
                return True
            ct = self.alloc(t, cpu)
            if ct is None:
                return False
            direction = IP_CT_DIR_ORIGINAL
            if t.protonum == IPPROTO_UDP:
                ct.stream_ts = now + udp.STREAM_AFTER
        else:
            ct, direction = found
        ok = (self._tcp(ct, direction, flag, now, unacked, new) if t.protonum == IPPROTO_TCP
              else self._udp(ct, now))
        if not ok:
            self.stat_inc(cpu, "invalid")
            return True
        if new:
            self.insert(ct)  # __nf_conntrack_confirm()
        if direction == IP_CT_DIR_REPLY:
            ct.status |= IPS_SEEN_REPLY
        return True

    def _tcp(self, ct: NfConn, direction: int, flag: int, now: int, unacked: bool, new: bool) -> bool:
        """nf_conntrack_tcp_packet(): the next state and its timeout."""
        old = ct.state
        nxt = tcp.new_state(direction, flag, old)
        if new and nxt >= tcp.MAX and flag == tcp.ACK:
            nxt = tcp.ESTABLISHED  # nf_conntrack_tcp_loose: a connection picked up mid-stream
        if nxt == tcp.IGNORE:
            return True
        if nxt >= tcp.MAX:
            return False
        if flag == tcp.RST and not ct.status & IPS_SEEN_REPLY and direction == IP_CT_DIR_REPLY:
            # the only reply is a RST: the connection never was; it goes at once
            self.kill(ct)
            return True
        ct.state = nxt
        if old in (tcp.SYN_RECV, tcp.ESTABLISHED) and nxt == tcp.ESTABLISHED:
            ct.status |= IPS_ASSURED
        self.refresh(ct, now, tcp.timeout_ns(self.tcp_timeouts, nxt, unacked))
        return True

    def _udp(self, ct: NfConn, now: int) -> bool:
        """nf_conntrack_udp_packet()."""
        to = self.udp_timeouts
        if ct.status & IPS_SEEN_REPLY:
            extra = to["udp_timeout"]
            if now > ct.stream_ts:
                extra = to["udp_timeout_stream"]
                ct.status |= IPS_ASSURED
            self.refresh(ct, now, extra * NSEC)
        else:
            self.refresh(ct, now, to["udp_timeout"] * NSEC)
        return True
