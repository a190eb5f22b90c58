"""net/netfilter/nf_conntrack_proto_udp.c: a UDP conntrack's timeout:
udp_timeout (30 s) until traffic has flowed both ways and kept going, then
udp_timeout_stream (120 s) and the entry is assured."""

from __future__ import annotations

from procsim.units import NSEC

TIMEOUTS = {"udp_timeout": 30, "udp_timeout_stream": 120}
STREAM_AFTER = 2 * NSEC  # a reply, then a packet more than 2 s after the first: a stream
