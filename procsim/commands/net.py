"""Commands of the network (procsim/net/): bind, listen, connect, accept,
send, recv, socketpair on a process's socket fds (close_fd closes them);
what a remote host does (net_incoming, net_peer_close); traffic at byte
rates (net_flow); devices (ip_link, ip_addr, netdev_rx); queries of
sockets and devices. Errnos are the kernel's: EBADF, ENOTSOCK,
EADDRINUSE, EADDRNOTAVAIL, ECONNREFUSED, EISCONN, EINVAL, EOPNOTSUPP..."""

from __future__ import annotations

import errno

from procsim.commands.core import CLOEXEC, FD, NONBLOCK, PID, CommandError, cmd, p, query
from procsim.fs import file as F
from procsim.kernel import Kernel
from procsim.net import dev, flow, syscalls as S
from procsim.net.sock import PEER_OPEN, TCP_STATE_NAMES, TYPES
from procsim.params import BOOL, INT, SIZE, STR


def _fl(cloexec: bool, nonblock: bool) -> int:
    return (F.O_CLOEXEC if cloexec else 0) | (F.O_NONBLOCK if nonblock else 0)


_call = S.call


def c_socketpair(k: Kernel, pid, type, cloexec, nonblock) -> list[int]:
    """socketpair(AF_UNIX, `type`): two connected fds."""
    if type not in TYPES:
        raise CommandError(errno.EINVAL, f"type: one of {', '.join(TYPES)}, got {type!r}")
    return list(_call(k, pid, S.socketpair, TYPES[type], _fl(cloexec, nonblock)))


def c_net_flow(k: Kernel, pid, fd, tx_rate, rx_rate) -> None:
    """Traffic on a connected TCP socket: `tx_rate` bytes per second out,
    `rx_rate` in, as the clock moves (0 and 0: stop)."""
    def run(k: Kernel, pid: int) -> None:
        _, sk = S.sock_of(k, pid, fd)
        flow.set_flow(k, sk, tx_rate, rx_rate)
    _call(k, pid, run)


def c_ip_link(k: Kernel, pid, name, up, mtu) -> dict:
    """`ip link set NAME up|down mtu N` in `pid`'s network namespace (ENODEV
    for an unknown device, EINVAL for an MTU outside 68-65535)."""
    d = dev.link_set(k, pid, name, up, mtu)
    return {"name": d.name, "ifindex": d.ifindex, "operstate": d.operstate, "mtu": d.mtu}


def c_netdev_rx(k: Kernel, pid, name, packets, bytes, multicast, errors, dropped) -> dict:
    """Frames from the wire that reach no socket (broadcasts, multicast,
    bad frames, drops): the device's counters move."""
    return dev.rx_frames(k, pid, name, packets, bytes, multicast, errors, dropped)


def _addr(sk, a: int, port: int) -> str:
    import ipaddress
    if sk.family == F.AF_INET6:
        return f"[{ipaddress.IPv6Address(a)}]:{port}"
    return f"{ipaddress.IPv4Address(a)}:{port}"


def c_sockets(k: Kernel, pid) -> list[dict]:
    """A process's sockets: fd, inode, family, type, state, addresses, queues, bytes."""
    t = k.task(pid)
    if t.files is None:
        return []
    out = []
    fams = {v: n for n, v in F.FAMILIES.items()}
    types = {v: n for n, v in TYPES.items()}
    for fd, f in t.files.items():
        if f.kind != F.SOCK:
            continue
        sk = f.private
        e = {"fd": fd, "ino": f.ino, "family": fams.get(sk.family), "type": types.get(sk.type, "raw"),
             "state": TCP_STATE_NAMES.get(sk.state), "rx_queue": sk.rx_queue, "tx_queue": sk.tx_queue,
             "bytes_sent": sk.bytes_sent, "bytes_received": sk.bytes_received}
        if sk.family in (F.AF_INET, F.AF_INET6):
            e["local"] = _addr(sk, sk.laddr, sk.lport)
            e["remote"] = _addr(sk, sk.raddr, sk.rport)
            e["protocol"] = "tcp" if sk.is_tcp else "udp"
        elif sk.family == F.AF_UNIX:
            e["path"] = sk.path
        out.append(e)
    return out


def c_netdevs(k: Kernel, pid) -> list[dict]:
    """The devices of `pid`'s network namespace with their counters."""
    return [{"name": d.name, "ifindex": d.ifindex, "mtu": d.mtu, "mac": d.mac, "operstate": d.operstate,
             "flags": d.flags, **d.stats} for d in dev.net_of_task(k, pid).devices.values()]


COMMANDS = (
    cmd("bind", lambda k, pid, fd, addr, v6only: _call(k, pid, S.bind, fd, addr, v6only), PID, FD, p("addr", STR),
        p("v6only", BOOL, False),
        doc="bind(): an inet socket to \"ADDR:PORT\" (\"*:80\", \"[::1]:8080\"; port 0: an ephemeral one), a unix "
            "socket to a path (\"@name\": abstract); `v6only`: IPV6_V6ONLY first (an inet6 wildcard then leaves "
            "IPv4 to others). EADDRINUSE, EADDRNOTAVAIL, EACCES below port 1024 without root, EINVAL if bound."),
    cmd("listen", lambda k, pid, fd, backlog, accept: _call(k, pid, S.listen, fd, backlog, accept), PID, FD,
        p("backlog", INT, 128), p("accept", BOOL, False),
        doc="listen() (an unbound TCP socket gets an ephemeral port); `accept`: the process accepts each "
            "connection as it arrives (a server's accept loop). EOPNOTSUPP for datagram sockets."),
    cmd("connect", lambda k, pid, fd, addr, peer: _call(k, pid, S.connect, fd, addr, peer), PID, FD,
        p("addr", STR), p("peer", STR, PEER_OPEN),
        doc="connect() to \"ADDR:PORT\" (or a unix path). A local address connects to this machine's listener "
            "(ECONNREFUSED if none); a remote host behaves as `peer` says: open (accepts; closes when we do), "
            "half (keeps its side open: FIN_WAIT2), mute (stops acknowledging), drop (SYN_SENT), refuse "
            "(ECONNREFUSED). EISCONN, ENETUNREACH."),
    cmd("accept", lambda k, pid, fd, cloexec, nonblock: _call(k, pid, S.accept, fd, _fl(cloexec, nonblock)),
        PID, FD, CLOEXEC, NONBLOCK,
        doc="accept4(): the oldest waiting connection's new fd (EAGAIN if none, EINVAL if not listening)."),
    cmd("send", lambda k, pid, fd, length, to: _call(k, pid, S.send, fd, length, to), PID, FD,
        p("length", SIZE), p("to", STR, None),
        doc="sendmsg() of `length` bytes (`to`: a datagram's \"ADDR:PORT\"): segments, ACKs and counters; "
            "EPIPE, ENOTCONN, EDESTADDRREQ, EMSGSIZE."),
    cmd("recv", lambda k, pid, fd, length: _call(k, pid, S.recv, fd, length), PID, FD, p("length", SIZE),
        doc="recvmsg() of up to `length` waiting bytes (EAGAIN if none; 0 once the peer closed)."),
    cmd("socketpair", c_socketpair, PID, p("type", STR, "stream"), CLOEXEC, NONBLOCK),
    cmd("net_incoming", lambda k, pid, fd, src, complete: _call(k, pid, S.incoming, fd, src, complete), PID, FD,
        p("src", STR), p("complete", BOOL, True),
        doc="A remote host at `src` (\"ADDR:PORT\") connects to the listening socket: an established "
            "connection waiting for accept (`complete` false: a SYN_RECV request)."),
    cmd("net_peer_close", lambda k, pid, fd: _call(k, pid, S.peer_close, fd), PID, FD,
        doc="The remote host of a connection closes its side: CLOSE_WAIT."),
    cmd("net_flow", c_net_flow, PID, FD, p("tx_rate", SIZE, 0), p("rx_rate", SIZE, 0)),
    cmd("ip_link", c_ip_link, p("name", STR), p("pid", INT, 1), p("up", BOOL, None), p("mtu", INT, None)),
    cmd("ip_addr", lambda k, name, addr, pid: dev.addr_add(k, pid, name, addr), p("name", STR), p("addr", STR),
        p("pid", INT, 1), doc="`ip addr add ADDR/PREFIX dev NAME` in `pid`'s network namespace."),
    cmd("netdev_rx", c_netdev_rx, p("name", STR), p("pid", INT, 1), p("packets", INT, 0), p("bytes", SIZE, 0),
        p("multicast", INT, 0), p("errors", INT, 0), p("dropped", INT, 0)),
    query("sockets", c_sockets, PID),
    query("netdevs", c_netdevs, p("pid", INT, 1)),
)
