"""Traffic at byte rates: a connection that sends `tx_rate` and receives
`rx_rate` bytes per second, stepped as the clock moves (Timekeeping._tick
calls step). The bytes due in [ta, tb) are those of the absolute times,
floor(rate * t), so the counters depend only on the time reached, not on
how the clock got there. The application reads what arrives at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.net import syscalls as S, traffic as T
from procsim.net.sock import TCP_CLOSE_WAIT, TCP_ESTABLISHED, Sock
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.kernel import Kernel

MAX_RATE = 1 << 40  # bytes per second


@dataclass
class Flow:
    sk: Sock
    tx_rate: int
    rx_rate: int
    since: int   # ns: when the rates were set (bytes count from there)

    def sent(self, rate: int, t: int) -> int:
        """Bytes at `rate` from `since` to `t`."""
        return rate * (t - self.since) // NSEC

    def due(self, rate: int, ta: int, tb: int, mss: int) -> tuple[int, int, int]:
        """(bytes, segments, ACKs) of [ta, tb), each counted over the whole
        run (segments of the bytes so far, an ACK per two segments so far)
        so that the sums do not depend on the steps taken."""
        a, b = self.sent(rate, ta), self.sent(rate, tb)
        sa, sb = -(-a // mss), -(-b // mss)
        return b - a, sb - sa, (sb + 1) // 2 - (sa + 1) // 2


def set_flow(k: "Kernel", sk: Sock, tx_rate: int, rx_rate: int) -> None:
    """Start, change (0, 0: stop) the traffic of a connected TCP socket."""
    if not 0 <= tx_rate <= MAX_RATE or not 0 <= rx_rate <= MAX_RATE:
        raise S._err(22, f"rates: 0 to {MAX_RATE} bytes per second")
    if not sk.is_tcp or sk.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
        raise S._err(107, "not a connected TCP socket")  # ENOTCONN
    if not tx_rate and not rx_rate:
        k.net.flows.pop(sk.id, None)
        return
    k.net.flows[sk.id] = Flow(sk, tx_rate, rx_rate, k.now)


def _mss(sk: Sock) -> int:
    r = S._route_of(sk)
    return T.mss(r[0], S.v6(sk)) if r is not None else 1 << 30


def step(k: "Kernel", ta: int, tb: int) -> None:
    for fl in list(k.net.flows.values()):
        sk = fl.sk
        if sk.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
            k.net.flows.pop(sk.id, None)
            continue
        mss = _mss(sk)
        tx, segs, acks = fl.due(fl.tx_rate, ta, tb, mss)
        if tx:
            S.tcp_xmit(k, sk, tx, segs, acks)
            if sk.peer is not None:  # the local reader keeps up
                sk.peer.rx_queue = max(0, sk.peer.rx_queue - tx)
        rx, segs, acks = fl.due(fl.rx_rate, ta, tb, mss)
        if rx:
            if sk.peer is not None:
                S.tcp_xmit(k, sk.peer, rx, segs, acks)
                sk.rx_queue = max(0, sk.rx_queue - rx)
            else:
                S.tcp_rcv(k, sk, rx, segs=segs, acks=acks)
