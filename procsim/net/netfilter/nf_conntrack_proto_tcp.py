"""net/netfilter/nf_conntrack_proto_tcp.c: the TCP connection tracker's
states, its transition table (a packet's direction and flag class to the
next state), and the timeouts (net.netfilter.nf_conntrack_tcp_timeout_*).

Window tracking (sequence numbers) is not modelled: every segment the
socket model sends is in window, so only the flags move the state."""

from __future__ import annotations

from procsim.units import NSEC

# enum tcp_conntrack
(NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE,
 SYN_SENT2) = range(10)
MAX, IGNORE, RETRANS, UNACK = 10, 11, 12, 13
NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT",
         "CLOSE", "SYN_SENT2")

# get_conntrack_index(): the flag classes, RST before SYN before FIN before ACK
SYN, SYNACK, FIN, ACK, RST = range(5)
FLAGS = {"S": SYN, "SA": SYNACK, "F": FIN, "A": ACK, "R": RST}

sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2, sIV, sIG = (NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT,
                                                               CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2,
                                                               MAX, IGNORE)
# [direction][flag class][old state] -> new state (columns sNO .. sS2)
TRANSITIONS = (
    (  # original
        (sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2),   # syn
        (sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR),   # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),   # fin
        (sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV),   # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),   # rst
    ),
    (  # reply
        (sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2),   # syn
        (sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR),   # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),   # fin
        (sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG),   # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),   # rst
    ),
)

# tcp_timeouts[] in seconds, by the sysctl that sets each
TIMEOUTS = {"syn_sent": 120, "syn_recv": 60, "established": 432000, "fin_wait": 120, "close_wait": 60,
            "last_ack": 30, "time_wait": 120, "close": 10, "max_retrans": 300, "unacknowledged": 300}
STATE_TIMEOUT = {SYN_SENT: "syn_sent", SYN_RECV: "syn_recv", ESTABLISHED: "established", FIN_WAIT: "fin_wait",
                 CLOSE_WAIT: "close_wait", LAST_ACK: "last_ack", TIME_WAIT: "time_wait", CLOSE: "close",
                 SYN_SENT2: "syn_sent"}


def new_state(direction: int, flag: int, old: int) -> int:
    return TRANSITIONS[direction][flag][old]


def timeout_ns(timeouts: dict[str, int], state: int, unacked: bool) -> int:
    """nf_conntrack_tcp_packet()'s timeout: the state's, or the shorter
    unacknowledged one while data waits for an ACK."""
    t = timeouts[STATE_TIMEOUT[state]]
    if unacked and t > timeouts["unacknowledged"]:
        t = timeouts["unacknowledged"]
    return t * NSEC


def can_early_drop(state: int) -> bool:
    """tcp_can_early_drop(): a closing connection may go even if assured."""
    return state in (FIN_WAIT, LAST_ACK, TIME_WAIT, CLOSE, CLOSE_WAIT)
