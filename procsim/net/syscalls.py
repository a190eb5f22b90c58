"""The socket calls (net/socket.c and the protocols' connect, listen,
accept, sendmsg, recvmsg, release: net/ipv4/af_inet.c, tcp*.c, udp.c,
net/unix/af_unix.c), module functions taking the kernel. Each checks
everything first and raises the kernel's errno with nothing changed; the
caller (a Kernel.syscall) records the change.

The other end of a connection is a socket of this machine (over lo) or a
remote host whose behaviour the connect names (procsim/net/sock.py's
PEER_*): it accepts, acknowledges and closes when we close, or keeps its
half open, or goes mute, or never answers, or refuses."""

from __future__ import annotations

import errno
import ipaddress
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.fs import file as F
from procsim.fs.mount import SOCKFS
from procsim.net import traffic as T
from procsim.net.netfilter import hooks as nf
from procsim.net.netns import EPHEMERAL, Net
from procsim.net.sock import (IPPROTO_TCP, IPPROTO_UDP, PEER_DROP, PEER_HALF, PEER_MUTE, PEER_OPEN, PEER_REFUSE,
                              PEERS, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM, TCP_CLOSE,
                              TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK,
                              TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT, V4MAPPED, Sock)
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import Task

TCP_TIMEWAIT_LEN = 60 * NSEC     # TIME_WAIT lasts 60 s
TCP_FIN_TIMEOUT = 60 * NSEC      # net.ipv4.tcp_fin_timeout: an orphan's FIN_WAIT2
SOMAXCONN = 4096                 # net.core.somaxconn
UDP_MAX = 65507                  # the largest IPv4 UDP payload
UDP_RCVBUF = 212992              # net.core.rmem_default
PROT_SOCK = 1024                 # net.ipv4.ip_unprivileged_port_start


def call(k: "Kernel", pid: int, fn, *args):
    """A socket call by task `pid` under the lock: the due timers first,
    the kernel's errno on failure, the change recorded on success."""
    with k.lock:
        k.net.reap(k.now)
        r = k._errors(fn, k, pid, *args)
        k._changed("net", pid=pid)
        return r


def _err(e: int, msg: str) -> KernelError:
    return KernelError(e, msg)


def v6(sk: Sock) -> bool:
    return sk.family == F.AF_INET6


# -- creation and release ----------------------------------------------------------


def sock_create(k: "Kernel", t: "Task", family: int, type_: int) -> Sock:
    """__sock_create(): the protocol a family and type select (ESOCKTNOSUPPORT
    for a type the family does not have); the sock joins its namespace."""
    net = k.net.net(t.nsproxy.net)
    if family in (F.AF_INET, F.AF_INET6):
        if type_ not in (SOCK_STREAM, SOCK_DGRAM):
            raise _err(errno.ESOCKTNOSUPPORT, f"socket type {type_} in family {family}")
    elif family == F.AF_UNIX:
        if type_ == SOCK_RAW:
            type_ = SOCK_DGRAM  # unix_create(): SOCK_RAW is taken as SOCK_DGRAM
        if type_ not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
            raise _err(errno.ESOCKTNOSUPPORT, f"socket type {type_} in family unix")
    elif type_ not in (SOCK_DGRAM, SOCK_RAW):
        raise _err(errno.ESOCKTNOSUPPORT, f"netlink socket type {type_}")
    sk = Sock(k.net.new_id(), net, family, type_, t.tg.cred.euid)
    if family in (F.AF_INET, F.AF_INET6):
        sk.protocol = IPPROTO_TCP if type_ == SOCK_STREAM else IPPROTO_UDP
    elif family == F.AF_NETLINK:
        sk.protocol = -1
    sk.owner_cpu = t.cpu
    k.net.register(sk)
    if family == F.AF_UNIX:
        net.unix[sk.id] = sk
    return sk


def _unbind(net: Net, sk: Sock) -> None:
    if sk.bound and sk.protocol in (IPPROTO_TCP, IPPROTO_UDP):
        lst = net.binds.get((sk.protocol, sk.lport), [])
        if sk in lst:
            lst.remove(sk)
        if not lst:
            net.binds.pop((sk.protocol, sk.lport), None)
    sk.bound = False


def _free(k: "Kernel", sk: Sock) -> None:
    """sk_free(): out of every table."""
    net: Net = sk.net
    net.tcp_listen.pop(sk.id, None)
    net.tcp_ehash.pop(sk.id, None)
    net.udp.pop(sk.id, None)
    net.unix.pop(sk.id, None)
    if sk.path is not None and net.unix_names.get(sk.path) is sk:
        del net.unix_names[sk.path]
    _unbind(net, sk)
    k.net.unregister(sk)
    k.net.flows.pop(sk.id, None)


def _time_wait(k: "Kernel", sk: Sock) -> None:
    """tcp_time_wait(): the full sock goes, an inet_timewait_sock stays 60 s."""
    sk.state = TCP_TIME_WAIT
    k.net.arm(sk, k.now + TCP_TIMEWAIT_LEN)
    sk.rx_queue = sk.tx_queue = 0
    _unbind(sk.net, sk)
    k.net.unregister(sk)
    k.net.flows.pop(sk.id, None)


def _route_of(sk: Sock):
    fam = 6 if v6(sk) else 4
    return sk.net.route(fam, sk.raddr)


def _segs(k: "Kernel", sk: Sock, out: int, inn: int, out_bytes: int = 0, in_bytes: int = 0) -> None:
    """Segments of `sk`'s connection: over lo (a local peer) or its route's device."""
    r = _route_of(sk)
    if r is None:
        return
    dev, gw = r
    nexthop = gw or (sk.raddr & 0xFFFFFFFF if not v6(sk) or sk.raddr & ~0xFFFFFFFF == V4MAPPED else 0)
    cpu = sk.owner_cpu
    T.tcp_segments(sk.net, dev, v6(sk), out, inn, out_bytes, in_bytes, cpu, nexthop)


def sock_release(k: "Kernel", sk: Sock) -> None:
    """The last fd is closed (inet_release, tcp_close, unix_release)."""
    sk.file = None
    net: Net = sk.net
    if sk.is_unix:
        peer = sk.peer
        if peer is not None:
            peer.peer = None
            peer.shut = True
        for child in sk.queue:
            if child.peer is not None:
                child.peer.peer = None
                child.peer.shut = True
            _free(k, child)
        _free(k, sk)
        return
    if not sk.is_tcp:
        _free(k, sk)
        return
    tcp, ext = net.mib["Tcp"], net.mib["TcpExt"]
    st = sk.state
    if st == TCP_LISTEN:
        for child in sk.queue + sk.syn_queue:   # inet_csk_listen_stop(): reset what was not accepted
            if child.state == TCP_ESTABLISHED:
                tcp["EstabResets"] += 1
            tcp["OutRsts"] += 1
            ext["TCPAbortOnClose"] += 1
            _segs(k, child, 1, 0)
            nf.tcp_segs(k, child, "R>")
            if child.peer is not None:
                _reset(k, child.peer)
            _free(k, child)
        _free(k, sk)
        return
    if st in (TCP_CLOSE, TCP_SYN_SENT):
        _free(k, sk)
        return
    if st == TCP_ESTABLISHED:
        if sk.rx_queue:  # unread data: tcp_close() sends a RST, not a FIN
            tcp["EstabResets"] += 1
            tcp["OutRsts"] += 1
            ext["TCPAbortOnClose"] += 1
            _segs(k, sk, 1, 0)
            nf.tcp_segs(k, sk, "R>")
            if sk.peer is not None:
                _reset(k, sk.peer)
            _free(k, sk)
            return
        peer = sk.peer
        if peer is not None:             # FIN, ACK over lo: we FIN_WAIT2, it CLOSE_WAIT
            _segs(k, sk, 2, 0)
            nf.tcp_segs(k, sk, "F> A<")
            sk.state = TCP_FIN_WAIT2
            k.net.arm(sk, k.now + TCP_FIN_TIMEOUT)
            peer.state = TCP_CLOSE_WAIT
            return
        mode = sk.peer_mode
        if mode == PEER_OPEN:            # FIN, FIN+ACK, ACK
            _segs(k, sk, 2, 1)
            nf.tcp_segs(k, sk, "F> F< A>")
            _time_wait(k, sk)
        elif mode == PEER_HALF:          # FIN, ACK
            _segs(k, sk, 1, 1)
            nf.tcp_segs(k, sk, "F> A<")
            sk.state = TCP_FIN_WAIT2
            k.net.arm(sk, k.now + TCP_FIN_TIMEOUT)
        else:                            # FIN unanswered
            _segs(k, sk, 1, 0)
            nf.tcp_segs(k, sk, "F>")
            sk.state = TCP_FIN_WAIT1
            k.net.arm(sk, k.now + TCP_FIN_TIMEOUT)
        return
    if st == TCP_CLOSE_WAIT:
        peer = sk.peer
        if peer is not None:             # FIN, ACK: we are done, the peer waits in TIME_WAIT
            _segs(k, sk, 2, 0)
            nf.tcp_segs(k, sk, "F> A<")
            _free(k, sk)
            peer.peer = None
            _time_wait(k, peer)
        elif sk.peer_mode == PEER_MUTE:
            _segs(k, sk, 1, 0)
            nf.tcp_segs(k, sk, "F>")
            sk.state = TCP_LAST_ACK
            k.net.arm(sk, k.now + TCP_FIN_TIMEOUT)
        else:
            _segs(k, sk, 1, 1)
            nf.tcp_segs(k, sk, "F> A<")
            _free(k, sk)
        return
    _free(k, sk)


def _reset(k: "Kernel", sk: Sock) -> None:
    """A RST arrived: the connection is gone (ECONNRESET at the next call)."""
    sk.peer = None
    sk.err = errno.ECONNRESET
    sk.state = TCP_CLOSE
    sk.rx_queue = sk.tx_queue = 0
    sk.expires = 0
    net: Net = sk.net
    net.tcp_ehash.pop(sk.id, None)
    k.net.flows.pop(sk.id, None)
    if sk.file is None:
        _free(k, sk)


# -- addresses ------------------------------------------------------------------------


def parse_inet(sk: Sock, text: str) -> tuple[int, int]:
    """'10.0.0.5:5432', '[::1]:80', '*:80' or ':80' -> (address, port) for
    `sk`'s family (an IPv4 address of an AF_INET6 socket: v4-mapped)."""
    if not isinstance(text, str) or ":" not in text:
        raise _err(errno.EINVAL, f"address {text!r}: expected HOST:PORT")
    host, _, port_s = text.rpartition(":")
    if not port_s.isdigit() or int(port_s) > 65535:
        raise _err(errno.EINVAL, f"address {text!r}: port 0-65535")
    host = host.strip("[]")
    if host in ("", "*"):
        return 0, int(port_s)
    try:
        a = ipaddress.ip_address(host)
    except ValueError:
        raise _err(errno.EINVAL, f"address {text!r}: not an IP address") from None
    if a.version == 6 and sk.family == F.AF_INET:
        raise _err(errno.EAFNOSUPPORT, f"{host}: an IPv6 address for an AF_INET socket")
    if a.version == 4 and sk.family == F.AF_INET6:
        return V4MAPPED | int(a), int(port_s)
    return int(a), int(port_s)


def _fam(sk: Sock, addr: int) -> tuple[int, int]:
    """(4, v4 address) or (6, address) of an address of `sk`'s."""
    if v6(sk) and addr & ~0xFFFFFFFF == V4MAPPED:
        return 4, addr & 0xFFFFFFFF
    return (6 if v6(sk) else 4), addr


def _covers(sk: Sock, laddr: int) -> dict[int, int | None]:
    """The families (4, 6) a bind of `sk` to `laddr` takes, each with its
    address (None: the wildcard); an AF_INET6 wildcard takes IPv4 too
    unless IPV6_V6ONLY."""
    if not v6(sk):
        return {4: laddr or None}
    if laddr == 0:
        return {6: None} if sk.v6only else {4: None, 6: None}
    fam, a = _fam(sk, laddr)
    return {fam: a}


def _overlap(a: Sock, sk: Sock, laddr: int) -> bool:
    """inet_csk_bind_conflict(): the two binds share a family and an address (or a wildcard)."""
    mine, theirs = _covers(sk, laddr), _covers(a, a.laddr)
    return any(f in theirs and (x is None or theirs[f] is None or x == theirs[f]) for f, x in mine.items())


def _bind_inet(k: "Kernel", t: "Task", sk: Sock, laddr: int, port: int) -> None:
    net: Net = sk.net
    if sk.bound:
        raise _err(errno.EINVAL, "socket already bound")
    if laddr and not net.is_local(*_fam(sk, laddr)):
        raise _err(errno.EADDRNOTAVAIL, "address is not one of this namespace's")
    if 0 < port < PROT_SOCK and t.tg.cred.euid != 0:
        raise _err(errno.EACCES, f"port {port} < {PROT_SOCK} needs CAP_NET_BIND_SERVICE")
    if port == 0:
        port = _ephemeral(net, sk.protocol, laddr)
    elif any(_overlap(o, sk, laddr) for o in net.binds.get((sk.protocol, port), [])):
        raise _err(errno.EADDRINUSE, f"port {port} is in use")
    sk.laddr, sk.lport, sk.bound = laddr, port, True
    net.binds.setdefault((sk.protocol, port), []).append(sk)
    if sk.is_udp:
        net.udp[sk.id] = sk


def _ephemeral(net: Net, proto: int, laddr: int) -> int:
    """inet_csk_find_open_port(): the next free port of the local range."""
    lo, hi = EPHEMERAL
    for _ in range(hi - lo + 1):
        p = net.next_port
        net.next_port = lo if p >= hi else p + 1
        if not net.binds.get((proto, p)):
            return p
    raise _err(errno.EADDRNOTAVAIL, "no free local port")


def sock_of(k: "Kernel", pid: int, fd: int) -> tuple["Task", Sock]:
    """The socket an fd holds: EBADF for no fd, ENOTSOCK for another file."""
    t, files = k._files_of(pid)
    f = files.get(fd)
    if f.kind != F.SOCK:
        raise _err(errno.ENOTSOCK, f"fd {fd} is not a socket")
    return t, f.private


def bind(k: "Kernel", pid: int, fd: int, addr: str, v6only: bool = False) -> None:
    """bind(); `v6only`: IPV6_V6ONLY set first (an AF_INET6 socket's wildcard then leaves IPv4 alone)."""
    t, sk = sock_of(k, pid, fd)
    if sk.is_unix:
        if sk.path is not None:
            raise _err(errno.EINVAL, "socket already bound")
        if not addr or len(addr.encode()) > 107:
            raise _err(errno.EINVAL, "unix address: a path of 1 to 107 bytes")
        if addr in sk.net.unix_names:
            raise _err(errno.EADDRINUSE, f"{addr} is bound")
        sk.path = addr
        sk.net.unix_names[addr] = sk
        return
    if sk.protocol < 0:
        raise _err(errno.EOPNOTSUPP, "netlink sockets are not modelled")
    if v6only and not v6(sk):
        raise _err(errno.ENOPROTOOPT, "IPV6_V6ONLY on an AF_INET socket")
    laddr, port = parse_inet(sk, addr)
    old = sk.v6only
    sk.v6only = v6only
    try:
        _bind_inet(k, t, sk, laddr, port)
    except KernelError:
        sk.v6only = old
        raise


def listen(k: "Kernel", pid: int, fd: int, backlog: int = 128, accept: bool = False) -> None:
    """listen(); `accept`: the process accepts each connection as it comes."""
    t, sk = sock_of(k, pid, fd)
    if sk.is_udp or sk.type == SOCK_DGRAM or sk.protocol < 0:
        raise _err(errno.EOPNOTSUPP, "listen on a datagram socket")
    if sk.state not in (TCP_CLOSE, TCP_LISTEN) or sk.peer is not None:
        raise _err(errno.EINVAL, "listen on a connected socket")
    if sk.is_unix and sk.path is None:
        raise _err(errno.EINVAL, "listen on an unbound unix socket")
    backlog = max(0, min(backlog, SOMAXCONN))
    if sk.is_tcp and not sk.bound:
        _bind_inet(k, t, sk, 0, 0)  # inet_autobind
    sk.backlog = backlog
    sk.autoaccept = accept
    sk.owner = pid
    if sk.state != TCP_LISTEN:
        sk.state = TCP_LISTEN
        if sk.is_tcp:
            sk.net.tcp_listen[sk.id] = sk


def _find_listener(net: Net, sk: Sock, addr: int, port: int) -> Sock | None:
    fam, a = _fam(sk, addr)
    for o in net.binds.get((IPPROTO_TCP, port), []):
        if o.state != TCP_LISTEN:
            continue
        ofam, oa = _fam(o, o.laddr) if o.laddr else ((6 if v6(o) else 4), 0)
        if o.laddr == 0 and (v6(o) and not o.v6only or ofam == fam):
            return o
        if ofam == fam and oa == a:
            return o
    return None


def connect(k: "Kernel", pid: int, fd: int, addr: str, peer: str = PEER_OPEN) -> None:
    t, sk = sock_of(k, pid, fd)
    if sk.is_unix:
        return _unix_connect(k, t, sk, addr)
    if sk.protocol < 0:
        raise _err(errno.EOPNOTSUPP, "netlink sockets are not modelled")
    if peer not in PEERS:
        raise _err(errno.EINVAL, f"peer: one of {', '.join(PEERS)}")
    raddr, rport = parse_inet(sk, addr)
    net: Net = sk.net
    if sk.is_tcp:
        if sk.state == TCP_SYN_SENT:
            raise _err(errno.EALREADY, "a connect is in progress")
        if sk.state != TCP_CLOSE:
            raise _err(errno.EISCONN, "socket is connected or listening")
    if rport == 0 and sk.is_tcp:
        raise _err(errno.ECONNREFUSED, "port 0")
    if raddr == 0:  # connect to INADDR_ANY means this host
        raddr = (V4MAPPED | 0x7F000001) if v6(sk) and "." in addr else (1 if v6(sk) else 0x7F000001)
    fam, a = _fam(sk, raddr)
    r = net.route(fam, a)
    if r is None:
        raise _err(errno.ENETUNREACH, f"no route to {addr}")
    dev, _ = r
    local = dev.loopback
    listener = _find_listener(net, sk, raddr, rport) if sk.is_tcp and local else None
    if sk.is_tcp and local and listener is None:
        peer = PEER_REFUSE
    if sk.is_tcp and peer == PEER_REFUSE:  # SYN, RST: nothing stays bound
        tcp = net.mib["Tcp"]
        tcp["ActiveOpens"] += 1
        tcp["AttemptFails"] += 1
        if local:
            tcp["OutRsts"] += 1
        _segs_to(k, sk, raddr, 1, 1)
        raise _err(errno.ECONNREFUSED, f"nobody listens on {addr}")
    if not sk.bound:
        laddr = net.source_address(fam, dev, a)
        if fam == 4 and v6(sk):
            laddr |= V4MAPPED
        _bind_inet(k, t, sk, 0, 0)
        sk.laddr = laddr
    elif sk.laddr == 0:
        laddr = net.source_address(fam, dev, a)
        sk.laddr = laddr | V4MAPPED if fam == 4 and v6(sk) else laddr
    sk.raddr, sk.rport = raddr, rport
    if sk.is_udp:  # ip4_datagram_connect: a destination, no packets
        sk.state = TCP_ESTABLISHED
        return
    tcp = net.mib["Tcp"]
    tcp["ActiveOpens"] += 1
    sk.peer_mode = peer
    sk.active = True
    net.tcp_ehash[sk.id] = sk
    if not nf.tcp_segs(k, sk, "S>"):  # conntrack's table is full: the SYN is dropped, TCP retries
        sk.state, sk.peer_mode = TCP_SYN_SENT, PEER_DROP
        return
    if listener is not None:
        if len(listener.queue) >= max(listener.backlog, 1) and not listener.autoaccept:
            ext = net.mib["TcpExt"]
            ext["ListenOverflows"] += 1
            ext["ListenDrops"] += 1
            _segs(k, sk, 1, 0)
            sk.state, sk.peer_mode = TCP_SYN_SENT, PEER_DROP
            return
        tcp["PassiveOpens"] += 1
        child = _child(k, listener, sk.raddr, sk.rport, sk.laddr, sk.lport)
        child.peer, sk.peer = sk, child
        sk.state = TCP_ESTABLISHED
        _segs(k, sk, 3, 0)  # SYN, SYN+ACK, ACK
        nf.tcp_segs(k, sk, "SA< A>")
        _queue_child(k, listener, child)
        return
    if peer == PEER_DROP:
        _segs(k, sk, 1, 0)
        sk.state = TCP_SYN_SENT
        return
    _segs(k, sk, 2, 1)
    nf.tcp_segs(k, sk, "SA< A>")
    sk.state = TCP_ESTABLISHED


def _segs_to(k: "Kernel", sk: Sock, raddr: int, out: int, inn: int) -> None:
    old = sk.raddr
    sk.raddr = raddr
    _segs(k, sk, out, inn)
    sk.raddr = old


def _child(k: "Kernel", listener: Sock, laddr: int, lport: int, raddr: int, rport: int) -> Sock:
    """inet_csk_clone_lock(): the established child of a listener (inode 0 until accepted)."""
    child = Sock(k.net.new_id(), listener.net, listener.family, listener.type, listener.uid)
    child.protocol = listener.protocol
    child.laddr, child.lport, child.raddr, child.rport = laddr, lport, raddr, rport
    child.state = TCP_ESTABLISHED
    child.parent = listener
    child.owner_cpu = listener.owner_cpu
    k.net.register(child)
    if child.is_tcp:
        listener.net.tcp_ehash[child.id] = child
    else:
        listener.net.unix[child.id] = child
        child.path = listener.path
    return child


def _queue_child(k: "Kernel", listener: Sock, child: Sock) -> None:
    listener.queue.append(child)
    if listener.autoaccept:
        try:
            _accept_one(k, listener.owner, listener, 0)
        except OSError:
            pass  # its process is gone or out of fds: the connection waits in the queue


def incoming(k: "Kernel", pid: int, fd: int, src: str, complete: bool = True) -> None:
    """A remote host connects to the listener: an established child waiting
    in the accept queue (or, `complete` false, a SYN_RECV request sock)."""
    t, sk = sock_of(k, pid, fd)
    if not sk.is_tcp or sk.state != TCP_LISTEN:
        raise _err(errno.EINVAL, "not a listening TCP socket")
    raddr, rport = parse_inet(sk, src)
    if not raddr or not rport:
        raise _err(errno.EINVAL, "a remote address and port")
    net: Net = sk.net
    fam, a = _fam(sk, raddr)
    r = net.route(fam, a)
    if r is None or r[0].loopback:
        raise _err(errno.ENETUNREACH, f"{src}: not a remote host this namespace reaches")
    laddr = sk.laddr or net.source_address(fam, r[0], a) | (V4MAPPED if fam == 4 and v6(sk) else 0)
    t_out = nf.out_tuple(sk.family, IPPROTO_TCP, laddr, sk.lport, raddr, rport)
    if not nf.track(k, net, t_out, "S<", sk.owner_cpu):
        return  # conntrack's table is full: the SYN is dropped before TCP sees it
    if len(sk.queue) + len(sk.syn_queue) >= max(sk.backlog, 1) and not sk.autoaccept:
        ext = net.mib["TcpExt"]
        ext["ListenOverflows"] += 1
        ext["ListenDrops"] += 1
        return
    child = _child(k, sk, laddr, sk.lport, raddr, rport)
    if not complete:
        child.state = TCP_SYN_RECV
        sk.syn_queue.append(child)
        _segs(k, child, 1, 1)  # SYN in, SYN+ACK out
        nf.track(k, net, t_out, "SA>", sk.owner_cpu)
        return
    net.mib["Tcp"]["PassiveOpens"] += 1
    _segs(k, child, 1, 2)
    nf.track(k, net, t_out, "SA> A<", sk.owner_cpu)
    _queue_child(k, sk, child)


def accept(k: "Kernel", pid: int, fd: int, flags: int = 0) -> int:
    t, sk = sock_of(k, pid, fd)
    if sk.is_udp or sk.type == SOCK_DGRAM or sk.protocol < 0:
        raise _err(errno.EOPNOTSUPP, "accept on a datagram socket")
    if sk.state != TCP_LISTEN:
        raise _err(errno.EINVAL, "accept on a socket that does not listen")
    if not sk.queue:
        raise _err(errno.EAGAIN, "no connection waiting (a blocking accept would sleep)")
    if flags & ~(F.O_CLOEXEC | F.O_NONBLOCK):
        raise _err(errno.EINVAL, f"accept4 flags {flags:#o}")
    return _accept_one(k, pid, sk, flags)


def _accept_one(k: "Kernel", pid: int, sk: Sock, flags: int) -> int:
    t, files = k._files_of(pid)
    k._check_room(t, files, 1)
    child = sk.queue.pop(0)
    f = k._new_file(F.SOCK, SOCKFS, F.O_RDWR | flags & F.O_NONBLOCK, ino=k.files.get_next_ino(), private=child)
    child.ino, child.file, child.parent = f.ino, f, None
    child.uid = t.tg.cred.euid
    child.owner_cpu = t.cpu
    nfd = k._install(t, files, f, bool(flags & F.O_CLOEXEC))
    k._fd_changed(t)
    return nfd


def _unix_connect(k: "Kernel", t: "Task", sk: Sock, path: str) -> None:
    net: Net = sk.net
    if sk.peer is not None or sk.state == TCP_LISTEN:
        raise _err(errno.EISCONN, "socket is connected or listening")
    other = net.unix_names.get(path)
    if other is None:
        raise _err(errno.ENOENT, f"{path}: no socket bound there")
    if other.type != sk.type:
        raise _err(errno.EPROTOTYPE, f"{path}: a socket of another type")
    if sk.type == SOCK_DGRAM:
        sk.peer = other
        return
    if other.state != TCP_LISTEN:
        raise _err(errno.ECONNREFUSED, f"{path}: nobody listens")
    if len(other.queue) >= max(other.backlog, 1) and not other.autoaccept:
        raise _err(errno.EAGAIN, f"{path}: the accept queue is full")
    child = _child(k, other, 0, 0, 0, 0)
    child.peer, sk.peer = sk, child
    sk.state = TCP_ESTABLISHED
    _queue_child(k, other, child)


def socketpair(k: "Kernel", pid: int, type_: int, flags: int = 0) -> tuple[int, int]:
    """socketpair(AF_UNIX): two connected sockets."""
    t, files = k._files_of(pid)
    k._check_room(t, files, 2)
    fds = []
    socks = []
    for _ in range(2):
        sk = sock_create(k, t, F.AF_UNIX, type_)
        f = k._new_file(F.SOCK, SOCKFS, F.O_RDWR | flags & F.O_NONBLOCK, ino=k.files.get_next_ino(), private=sk)
        sk.ino, sk.file = f.ino, f
        socks.append(sk)
        fds.append(k._install(t, files, f, bool(flags & F.O_CLOEXEC)))
    a, b = socks
    a.peer, b.peer = b, a
    a.state = b.state = TCP_ESTABLISHED
    k._fd_changed(t)
    return fds[0], fds[1]


# -- data ------------------------------------------------------------------------------


def send(k: "Kernel", pid: int, fd: int, length: int, to: str | None = None) -> int:
    """sendmsg() of `length` bytes (`to`: a datagram's destination)."""
    t, sk = sock_of(k, pid, fd)
    if length < 0:
        raise _err(errno.EINVAL, "negative length")
    sk.owner_cpu = t.cpu
    if sk.is_unix:
        peer = sk.peer
        if to is not None and sk.type == SOCK_DGRAM:
            peer = sk.net.unix_names.get(to)
            if peer is None:
                raise _err(errno.ENOENT, f"{to}: no socket bound there")
        if peer is None:
            raise _err(errno.EPIPE if sk.shut else errno.ENOTCONN, "not connected")
        peer.rx_queue += length
        sk.bytes_sent += length
        return length
    if sk.protocol < 0:
        raise _err(errno.EOPNOTSUPP, "netlink sockets are not modelled")
    if sk.is_udp:
        return _udp_send(k, t, sk, length, to)
    if sk.err:
        e, sk.err = sk.err, 0
        raise _err(e, "connection reset by peer")
    if sk.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
        raise _err(errno.EPIPE, "not connected")
    tcp_xmit(k, sk, length)
    return length


def tcp_xmit(k: "Kernel", sk: Sock, n: int, segs: int | None = None, acks: int | None = None) -> None:
    """`n` bytes out: data segments, and the peer's ACKs back unless it is
    mute (`segs`, `acks`: as a flow counts them over its whole run)."""
    if n <= 0:
        return
    r = _route_of(sk)
    if r is None:
        return
    dev = r[0]
    if segs is None:
        segs = T.data_segments(dev, v6(sk), n)
    if acks is None:
        acks = (segs + 1) // 2
    ext = sk.net.mib["TcpExt"]
    sk.bytes_sent += n
    sk.segs_out += segs
    if sk.peer is not None:
        _segs(k, sk, segs + acks, 0, n)
        nf.tcp_segs(k, sk, "A> A<")
        sk.peer.rx_queue += n
        sk.peer.bytes_received += n
        sk.peer.segs_in += segs
        ext["TCPOrigDataSent"] += segs
        ext["TCPDelivered"] += segs
        ext["TCPPureAcks"] += acks
        ext["TCPHPAcks"] += acks
        ext["TCPHPHits"] += segs
        ext["DelayedACKs"] += acks
        return
    if sk.peer_mode == PEER_MUTE:
        _segs(k, sk, segs, 0, n)
        nf.tcp_segs(k, sk, "A>", unacked=True)
        sk.tx_queue += n
        ext["TCPOrigDataSent"] += segs
        return
    _segs(k, sk, segs, acks, n)
    nf.tcp_segs(k, sk, "A> A<")
    ext["TCPOrigDataSent"] += segs
    ext["TCPDelivered"] += segs
    ext["TCPPureAcks"] += acks
    ext["TCPHPAcks"] += acks


def tcp_rcv(k: "Kernel", sk: Sock, n: int, consume: bool = True, segs: int | None = None,
            acks: int | None = None) -> None:
    """`n` bytes from the remote host: data segments in, our ACKs out."""
    if n <= 0 or sk.peer is not None or sk.state not in (TCP_ESTABLISHED, TCP_FIN_WAIT2):
        return
    r = _route_of(sk)
    if r is None:
        return
    if segs is None:
        segs = T.data_segments(r[0], v6(sk), n)
    if acks is None:
        acks = (segs + 1) // 2
    _segs(k, sk, acks, segs, 0, n)
    nf.tcp_segs(k, sk, "A< A>")
    sk.bytes_received += n
    sk.segs_in += segs
    if not consume:
        sk.rx_queue += n
    ext = sk.net.mib["TcpExt"]
    ext["TCPHPHits"] += segs
    ext["DelayedACKs"] += acks


def _udp_send(k: "Kernel", t: "Task", sk: Sock, length: int, to: str | None) -> int:
    net: Net = sk.net
    if length > UDP_MAX:
        raise _err(errno.EMSGSIZE, f"a datagram of {length} bytes")
    if to is not None:
        raddr, rport = parse_inet(sk, to)
        if rport == 0:
            raise _err(errno.EINVAL, "port 0")
    elif sk.state == TCP_ESTABLISHED:
        raddr, rport = sk.raddr, sk.rport
    else:
        raise _err(errno.EDESTADDRREQ, "no destination")
    fam, a = _fam(sk, raddr or (V4MAPPED | 0x7F000001 if v6(sk) else 0x7F000001))
    r = net.route(fam, a)
    if r is None:
        raise _err(errno.ENETUNREACH, "no route")
    dev, gw = r
    if not sk.bound:
        _bind_inet(k, t, sk, 0, 0)
    if not nf.udp_out(k, sk, raddr or (V4MAPPED | 0x7F000001 if v6(sk) else 0x7F000001), rport, t.cpu):
        raise _err(errno.EPERM, "conntrack's table is full: the datagram is dropped")
    is6 = fam == 6
    pkts = T.udp_datagram_packets(dev, is6, length)
    mib = net.ipv6 if is6 else net.mib["Udp"]
    mib["Udp6OutDatagrams" if is6 else "OutDatagrams"] += 1
    ip_bytes = length + T.UDP_HDR + pkts * T.ip_hdr(is6)
    T.packets_out(net, dev, is6, pkts, ip_bytes, t.cpu, gw or a if fam == 4 else 0)
    sk.bytes_sent += length
    if dev.loopback:
        dst = _udp_lookup(net, sk, a, rport, fam)
        if dst is None:
            mib["Udp6NoPorts" if is6 else "NoPorts"] += 1
            T.icmp_port_unreachable(net, is6)
        elif dst.rx_queue + length > UDP_RCVBUF:  # __udp_queue_rcv_skb(): the receive buffer is full
            mib["Udp6RcvbufErrors" if is6 else "RcvbufErrors"] += 1
            mib["Udp6InErrors" if is6 else "InErrors"] += 1
            dst.drops += 1
        else:
            mib["Udp6InDatagrams" if is6 else "InDatagrams"] += 1
            dst.rx_queue += length
            dst.bytes_received += length
    return length


def _udp_lookup(net: Net, sk: Sock, addr: int, port: int, fam: int) -> Sock | None:
    for o in net.binds.get((IPPROTO_UDP, port), []):
        ofam, oa = _fam(o, o.laddr) if o.laddr else ((6 if v6(o) else 4), 0)
        if (o.laddr == 0 and (v6(o) and not o.v6only or ofam == fam)) or (ofam == fam and oa == addr):
            return o
    return None


def recv(k: "Kernel", pid: int, fd: int, length: int) -> int:
    """recvmsg() of up to `length` bytes waiting in the receive queue (EAGAIN: none)."""
    t, sk = sock_of(k, pid, fd)
    if length < 0:
        raise _err(errno.EINVAL, "negative length")
    if sk.err and sk.is_tcp:
        e, sk.err = sk.err, 0
        raise _err(e, "connection reset by peer")
    if sk.is_tcp and sk.state in (TCP_CLOSE, TCP_LISTEN, TCP_SYN_SENT):
        raise _err(errno.ENOTCONN, "not connected")
    n = min(length, sk.rx_queue)
    if n == 0:
        if sk.state == TCP_CLOSE_WAIT or sk.shut:
            return 0  # end of file: the peer closed
        raise _err(errno.EAGAIN, "nothing to read (a blocking read would sleep)")
    sk.rx_queue -= n
    return n


def peer_close(k: "Kernel", pid: int, fd: int) -> None:
    """The remote host closes its side (a FIN arrives): CLOSE_WAIT."""
    t, sk = sock_of(k, pid, fd)
    if not sk.is_tcp or sk.state != TCP_ESTABLISHED or sk.peer is not None:
        raise _err(errno.EINVAL, "not a connection to a remote host")
    _segs(k, sk, 1, 1)
    nf.tcp_segs(k, sk, "F< A>")
    sk.state = TCP_CLOSE_WAIT
