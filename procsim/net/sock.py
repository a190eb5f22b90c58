"""struct sock and its protocol parts (include/net/sock.h, inet_sock.h,
tcp.h, af_unix.h): one slotted object per socket, whichever family, with
the fields /proc/net/{tcp,udp,unix} and sockstat print.

An inet socket's addresses are ints in host order (IPv4: 32 bits; IPv6:
128, a v4 peer of an AF_INET6 socket as ::ffff:a.b.c.d)."""

from __future__ import annotations

# include/net/tcp_states.h
(TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_TIME_WAIT, TCP_CLOSE,
 TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_LISTEN, TCP_CLOSING, TCP_NEW_SYN_RECV) = range(1, 13)
TCP_STATE_NAMES = {TCP_ESTABLISHED: "ESTABLISHED", TCP_SYN_SENT: "SYN_SENT", TCP_SYN_RECV: "SYN_RECV",
                   TCP_FIN_WAIT1: "FIN_WAIT1", TCP_FIN_WAIT2: "FIN_WAIT2", TCP_TIME_WAIT: "TIME_WAIT",
                   TCP_CLOSE: "CLOSE", TCP_CLOSE_WAIT: "CLOSE_WAIT", TCP_LAST_ACK: "LAST_ACK",
                   TCP_LISTEN: "LISTEN", TCP_CLOSING: "CLOSING"}
# socket types (include/linux/net.h)
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
TYPES = {"stream": SOCK_STREAM, "dgram": SOCK_DGRAM, "seqpacket": SOCK_SEQPACKET}
# struct socket's state (SS_*), as /proc/net/unix prints it
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED, SS_DISCONNECTING = 1, 2, 3, 4
__SO_ACCEPTCON = 1 << 16
IPPROTO_TCP, IPPROTO_UDP = 6, 17
V4MAPPED = 0xFFFF << 32

# remote peers' behaviour (what the host at the other end does)
PEER_OPEN = "open"      # answers, acknowledges, closes when we close
PEER_HALF = "half"      # acknowledges our FIN but keeps its side open (we sit in FIN_WAIT2)
PEER_MUTE = "mute"      # completes the handshake, then acknowledges nothing
PEER_DROP = "drop"      # never answers the SYN (SYN_SENT)
PEER_REFUSE = "refuse"  # answers the SYN with a RST (ECONNREFUSED)
PEERS = (PEER_OPEN, PEER_HALF, PEER_MUTE, PEER_DROP, PEER_REFUSE)


class Sock:
    """A socket. `ino`: its sockfs inode (0 while it has none: a connection
    not yet accepted, an orphan after close); `peer`: the local socket at
    the other end (None for a remote host); `queue`: a listener's accept
    queue (established children) and `syn_queue` its request socks."""

    __slots__ = ("id", "net", "family", "type", "protocol", "state", "ino", "uid", "laddr", "lport", "raddr",
                 "rport", "bound", "peer", "peer_mode", "rx_queue", "tx_queue", "backlog", "queue", "syn_queue",
                 "parent", "path", "expires", "file", "bytes_sent", "bytes_received", "segs_out", "segs_in",
                 "drops", "err", "shut", "autoaccept", "v6only", "owner_cpu", "owner", "active")

    def __init__(self, id_: int, net: object, family: int, type_: int, uid: int) -> None:
        self.id = id_
        self.net = net
        self.family, self.type = family, type_
        self.protocol = 0
        self.state = TCP_CLOSE
        self.ino = 0
        self.uid = uid
        self.laddr = self.lport = self.raddr = self.rport = 0
        self.bound = False
        self.peer: Sock | None = None
        self.peer_mode = PEER_OPEN
        self.rx_queue = self.tx_queue = 0
        self.backlog = 0
        self.queue: list[Sock] = []
        self.syn_queue: list[Sock] = []
        self.parent: Sock | None = None
        self.path: str | None = None      # a unix socket's bound name (@name: abstract)
        self.expires = 0                  # ns: when a TIME_WAIT or orphaned FIN_WAIT2 socket goes
        self.file = None                  # the OpenFile of its struct socket (None: no fd holds it)
        self.bytes_sent = self.bytes_received = self.segs_out = self.segs_in = self.drops = 0
        self.err = 0
        self.shut = False
        self.autoaccept = False           # a listener whose process accepts every connection at once
        self.v6only = False
        self.owner_cpu = 0
        self.owner = 0                    # a listener's process (who accepts)
        self.active = False               # made by connect (an active open)

    @property
    def is_tcp(self) -> bool:
        return self.protocol == IPPROTO_TCP

    @property
    def is_udp(self) -> bool:
        return self.protocol == IPPROTO_UDP

    @property
    def is_unix(self) -> bool:
        return self.protocol == 0

    def unix_state(self) -> int:
        """struct socket's SS_* as unix_seq_show prints it."""
        if self.state == TCP_LISTEN:
            return SS_UNCONNECTED
        if self.parent is not None:
            return SS_CONNECTING  # a server-side sock not accepted yet
        if self.state == TCP_ESTABLISHED:
            return SS_CONNECTED
        return SS_DISCONNECTING if self.shut else SS_UNCONNECTED
