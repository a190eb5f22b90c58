"""The network model (procsim/net/) and its files (procsim/procfs/net.py,
sysfs_net.py): socket calls with the kernel's errnos and nothing changed,
the sockets' states, counters moved by the traffic, per-namespace views,
and the formats of /proc/net/* against this machine's kernel with a real
socket in the same state."""

from __future__ import annotations

import errno
import os
import re
import socket
import time

import pytest

from hostinfo import requires_host
from procfs_helpers import ROOT, errno_of, read_all
from procsim import Kernel
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS

HOST_618 = requires_host(kernel="6.18", files=("/proc/net/tcp", "/proc/net/unix"))


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    k.create_init()
    return k


@pytest.fixture
def fs(k: Kernel) -> ProcFS:
    return ProcFS(k)


def run(k: Kernel, op: str, **args):
    return execute(k, op, args)


def err(k: Kernel, op: str, **args) -> int:
    gen = k.generation
    with pytest.raises(CommandError) as e:
        execute(k, op, args)
    assert k.generation >= gen
    return e.value.errno


def proc(k: Kernel, uid: int = 0) -> int:
    return k.spawn(["/usr/sbin/server"], uid=uid, gid=uid)


def text(fs: ProcFS, path: str) -> str:
    """A file's text; /proc/net is self/net (the VFS follows that link, the
    ProcFS resolver does not: init's view stands for it)."""
    return read_all(fs, path.replace("/proc/net/", "/proc/1/net/")).decode()


def rows(fs: ProcFS, path: str) -> list[list[str]]:
    return [line.split() for line in text(fs, path).splitlines()[1:]]


def sock(k, pid, family="inet", type="stream") -> int:
    return run(k, "socket", pid=pid, family=family, type=type)


def listener(k, pid, addr="*:8080", accept=False, family="inet") -> int:
    fd = sock(k, pid, family)
    run(k, "bind", pid=pid, fd=fd, addr=addr)
    run(k, "listen", pid=pid, fd=fd, backlog=16, accept=accept)
    return fd


def ino_of(fs: ProcFS, pid: int, fd: int) -> int:
    return int(re.fullmatch(r"socket:\[(\d+)\]", fs.readlink(f"/proc/{pid}/fd/{fd}", ROOT))[1])


# -- the socket calls ------------------------------------------------------------------


def test_listen_connect_accept_and_the_tables_agree_with_the_fd_links(k, fs):
    srv, cli = proc(k), proc(k, 1000)
    lfd = listener(k, srv)
    cfd = sock(k, cli)
    run(k, "connect", pid=cli, fd=cfd, addr="127.0.0.1:8080")
    tcp = rows(fs, "/proc/net/tcp")
    # the listener, then the client's and the server's (not yet accepted: inode 0) ends
    states = [(r[1], r[2], r[3], r[9]) for r in tcp]
    assert states[0] == ("00000000:1F90", "00000000:0000", "0A", str(ino_of(fs, srv, lfd)))
    assert ("0100007F:1F90", "0100007F:8000", "01", "0") in states
    assert ("0100007F:8000", "0100007F:1F90", "01", str(ino_of(fs, cli, cfd))) in states
    assert tcp[0][4] == "00000000:00000001"  # the listener's rx_queue: its accept queue
    afd = run(k, "accept", pid=srv, fd=lfd)
    tcp = rows(fs, "/proc/net/tcp")
    assert ("0100007F:1F90", "0100007F:8000", "01", str(ino_of(fs, srv, afd))) in \
        [(r[1], r[2], r[3], r[9]) for r in tcp]
    assert {r[7] for r in tcp if r[2] != "00000000:0000"} == {"0", "1000"}  # uids
    snmp = text(fs, "/proc/net/snmp").splitlines()
    t = dict(zip(snmp[6].split()[1:], map(int, snmp[7].split()[1:]))) if snmp[6].startswith("Tcp:") else None
    t = t or _mib(fs, "Tcp")
    assert t["ActiveOpens"] == 1 and t["PassiveOpens"] == 1 and t["CurrEstab"] == 2
    assert t["OutSegs"] == t["InSegs"] == 3  # SYN, SYN+ACK, ACK over lo


def _mib(fs: ProcFS, group: str, path: str = "/proc/net/snmp") -> dict[str, int]:
    lines = [line.split() for line in text(fs, path).splitlines() if line.startswith(group + ":")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def test_bind_errnos_change_nothing(k, fs):
    a, b = proc(k), proc(k, 1000)
    fd = sock(k, a)
    run(k, "bind", pid=a, fd=fd, addr="127.0.0.1:5000")
    fd2 = sock(k, a)
    before = text(fs, "/proc/net/tcp"), k.net.net(k.init_ns["net"]).binds.copy()
    assert err(k, "bind", pid=a, fd=fd2, addr="127.0.0.1:5000") == errno.EADDRINUSE
    assert err(k, "bind", pid=a, fd=fd2, addr="*:5000") == errno.EADDRINUSE
    assert err(k, "bind", pid=a, fd=fd, addr="127.0.0.1:5001") == errno.EINVAL   # bound already
    assert err(k, "bind", pid=a, fd=fd2, addr="192.0.2.77:0") == errno.EADDRNOTAVAIL
    assert err(k, "bind", pid=a, fd=fd2, addr="[::1]:80") == errno.EAFNOSUPPORT
    assert err(k, "bind", pid=a, fd=fd2, addr="nonsense") == errno.EINVAL
    assert err(k, "bind", pid=a, fd=99, addr="*:1") == errno.EBADF
    assert err(k, "bind", pid=a, fd=_file(k, a), addr="*:1") == errno.ENOTSOCK
    bfd = sock(k, b)
    assert err(k, "bind", pid=b, fd=bfd, addr="*:80") == errno.EACCES  # below 1024, not root
    assert (text(fs, "/proc/net/tcp"), k.net.net(k.init_ns["net"]).binds) == before


def _file(k, pid) -> int:
    return k.open(pid, "/etc/hostname")


def test_connect_errnos(k, fs):
    a = proc(k)
    fd = sock(k, a)
    assert err(k, "connect", pid=a, fd=fd, addr="127.0.0.1:9") == errno.ECONNREFUSED
    assert rows(fs, "/proc/net/tcp") == []  # nothing stays behind
    t = _mib(fs, "Tcp")
    assert (t["ActiveOpens"], t["AttemptFails"], t["OutRsts"]) == (1, 1, 1)
    assert err(k, "connect", pid=a, fd=fd, addr="203.0.113.9:443", peer="refuse") == errno.ECONNREFUSED
    lfd = listener(k, a, "*:7000")
    assert err(k, "connect", pid=a, fd=lfd, addr="127.0.0.1:7000") == errno.EISCONN
    run(k, "connect", pid=a, fd=fd, addr="127.0.0.1:7000")
    assert err(k, "connect", pid=a, fd=fd, addr="127.0.0.1:7000") == errno.EISCONN
    assert err(k, "listen", pid=a, fd=fd) == errno.EINVAL
    assert err(k, "connect", pid=a, fd=fd, addr="127.0.0.1:7000", peer="bogus") == errno.EINVAL
    u = sock(k, a, type="dgram")
    assert err(k, "listen", pid=a, fd=u) == errno.EOPNOTSUPP
    assert err(k, "accept", pid=a, fd=u) == errno.EOPNOTSUPP
    assert err(k, "accept", pid=a, fd=sock(k, a)) == errno.EINVAL
    lfd2 = listener(k, a, "*:7001")
    assert err(k, "accept", pid=a, fd=lfd2) == errno.EAGAIN
    assert err(k, "send", pid=a, fd=sock(k, a), length=10) == errno.EPIPE
    assert err(k, "send", pid=a, fd=u, length=10) == errno.EDESTADDRREQ
    assert err(k, "send", pid=a, fd=u, length=70000, to="127.0.0.1:53") == errno.EMSGSIZE
    assert err(k, "socket", pid=a, family="inet", type="seqpacket") == errno.ESOCKTNOSUPPORT


def test_a_new_network_namespace_sees_only_its_lo_down(k, fs):
    a = proc(k)
    listener(k, a, "*:8080")
    run(k, "unshare", pid=a, flags="net")
    assert rows(fs, f"/proc/{a}/net/tcp") == []
    dev = text(fs, f"/proc/{a}/net/dev").splitlines()[2:]
    assert [line.split(":")[0].strip() for line in dev] == ["lo"]
    assert text(fs, f"/proc/{a}/net/route").count("\n") == 1
    assert text(fs, f"/proc/{a}/net/if_inet6") == ""
    fd = sock(k, a)
    assert err(k, "connect", pid=a, fd=fd, addr="127.0.0.1:8080") == errno.ENETUNREACH  # lo is down
    assert err(k, "bind", pid=a, fd=fd, addr="127.0.0.1:1") == errno.EADDRNOTAVAIL
    run(k, "ip_link", pid=a, name="lo", up=True)
    assert text(fs, f"/proc/{a}/net/if_inet6") == "00000000000000000000000000000001 01 80 10 80       lo\n"
    assert err(k, "connect", pid=a, fd=fd, addr="127.0.0.1:8080") == errno.ECONNREFUSED  # not init's listener
    assert len(rows(fs, "/proc/1/net/tcp")) == 1  # init's namespace still has it
    assert err(k, "ip_link", pid=a, name="eth0", up=True) == errno.ENODEV


def test_close_walks_the_states_and_time_wait_expires(k, fs):
    a = proc(k)
    lfd = listener(k, a, "*:9000", accept=True)
    c = sock(k, a)
    run(k, "connect", pid=a, fd=c, addr="127.0.0.1:9000")
    served = max(fd for fd, _ in k.task(a).files.items())
    run(k, "close_fd", pid=a, fd=c)   # the client closes first
    st = {r[1]: r[3] for r in rows(fs, "/proc/net/tcp")}
    assert st["0100007F:8000"] == "05" and st["00000000:2328"] == "0A"
    assert [r[3] for r in rows(fs, "/proc/net/tcp") if r[2] == "0100007F:8000"] == ["08"]  # CLOSE_WAIT
    assert text(fs, "/proc/net/sockstat").splitlines()[1].split()[4] == "1"  # an orphan
    run(k, "close_fd", pid=a, fd=served)
    tw = [r for r in rows(fs, "/proc/net/tcp") if r[3] == "06"]
    assert len(tw) == 1 and tw[0][1] == "0100007F:8000" and tw[0][9] == "0" and tw[0][5].startswith("03:")
    assert "tw 1" in text(fs, "/proc/net/sockstat")
    k.advance(61)
    assert [r[3] for r in rows(fs, "/proc/net/tcp")] == ["0A"]
    assert "tw 0" in text(fs, "/proc/net/sockstat")
    assert _mib(fs, "TcpExt", "/proc/net/netstat")["TW"] == 1
    run(k, "close_fd", pid=a, fd=lfd)
    assert rows(fs, "/proc/net/tcp") == []


def test_remote_peers_states(k, fs):
    a = proc(k)
    fds = {}
    for peer in ("open", "half", "mute", "drop"):
        fds[peer] = sock(k, a)
        run(k, "connect", pid=a, fd=fds[peer], addr="198.51.100.7:443", peer=peer)
    st = {r[1].split(":")[1]: r[3] for r in rows(fs, "/proc/net/tcp")}
    assert sorted(st.values()) == ["01", "01", "01", "02"]
    run(k, "send", pid=a, fd=fds["mute"], length=5000)
    line = next(r for r in rows(fs, "/proc/net/tcp") if r[4].startswith("00001388"))
    assert line[5].startswith("01:")  # retransmit timer
    for peer in ("open", "half", "mute"):
        run(k, "close_fd", pid=a, fd=fds[peer])
    assert sorted(r[3] for r in rows(fs, "/proc/net/tcp")) == ["02", "04", "05", "06"]
    srv = listener(k, a, "*:443")
    run(k, "net_incoming", pid=a, fd=srv, src="203.0.113.5:40000", complete=False)
    run(k, "net_incoming", pid=a, fd=srv, src="203.0.113.6:40001")
    afd = run(k, "accept", pid=a, fd=srv)
    run(k, "net_peer_close", pid=a, fd=afd)
    st = [r[3] for r in rows(fs, "/proc/net/tcp")]
    assert "03" in st and "08" in st and "0A" in st
    arp = text(fs, "/proc/net/arp").splitlines()
    assert arp[1].split()[0] == "10.0.2.2" and arp[1].split()[-1] == "eth0"  # the gateway, resolved by traffic


def test_traffic_moves_the_device_and_protocol_counters(k, fs):
    a = proc(k)
    fd = sock(k, a)
    run(k, "connect", pid=a, fd=fd, addr="198.51.100.7:80")
    base = _dev(fs)["eth0"]
    run(k, "send", pid=a, fd=fd, length=14480)   # 10 segments of 1448
    eth = _dev(fs)["eth0"]
    assert eth[10] - base[10] == 10 and eth[2] - base[2] == 5   # tx packets; the peer's ACKs in
    assert eth[9] - base[9] == 14480 + 10 * (52 + 14)
    s = text(fs, "/sys/class/net/eth0/statistics/tx_packets") if False else \
        read_all(fs, "/sys/devices/virtual/net/eth0/statistics/tx_packets").decode()
    assert int(s) == eth[10]
    run(k, "net_flow", pid=a, fd=fd, tx_rate=1448 * 100, rx_rate=0)
    k.advance(2)
    assert _dev(fs)["eth0"][10] - eth[10] == 200
    t = _mib(fs, "Tcp")
    assert t["OutSegs"] == _mib(fs, "Ip")["OutRequests"]
    udp = sock(k, a, type="dgram")
    run(k, "send", pid=a, fd=udp, length=100, to="127.0.0.1:9999")
    assert _mib(fs, "Udp")["NoPorts"] == 1 and _mib(fs, "Icmp")["OutDestUnreachs"] == 1
    assert "IcmpMsg: InType3 OutType3\nIcmpMsg: 1 1\n" in text(fs, "/proc/net/snmp")
    u2 = sock(k, a, type="dgram")
    run(k, "bind", pid=a, fd=u2, addr="127.0.0.1:9999")
    run(k, "send", pid=a, fd=udp, length=100, to="127.0.0.1:9999")
    assert _mib(fs, "Udp")["InDatagrams"] == 1
    assert run(k, "recv", pid=a, fd=u2, length=4096) == 100
    assert err(k, "recv", pid=a, fd=u2, length=4096) == errno.EAGAIN
    for _ in range(5):  # nobody reads: the fifth overflows the 208 KiB receive buffer
        run(k, "send", pid=a, fd=udp, length=50000, to="127.0.0.1:9999")
    u = _mib(fs, "Udp")
    assert (u["InDatagrams"], u["RcvbufErrors"], u["InErrors"]) == (5, 1, 1)
    assert [r[-1] for r in rows(fs, "/proc/net/udp")].count("1") == 1  # its drops column
    assert err(k, "net_flow", pid=a, fd=udp, tx_rate=1) == errno.ENOTCONN


def _dev(fs: ProcFS) -> dict[str, list[int]]:
    out = {}
    for line in text(fs, "/proc/net/dev").splitlines()[2:]:
        name, rest = line.split(":")
        out[name.strip()] = [0] + list(map(int, rest.split()))  # 1-based like the columns
    return out


def test_unix_sockets(k, fs):
    a = proc(k)
    lfd = sock(k, a, "unix")
    assert err(k, "listen", pid=a, fd=lfd) == errno.EINVAL   # unbound
    run(k, "bind", pid=a, fd=lfd, addr="/run/app.sock")
    run(k, "listen", pid=a, fd=lfd)
    c = sock(k, a, "unix")
    assert err(k, "connect", pid=a, fd=c, addr="/run/none.sock") == errno.ENOENT
    assert err(k, "send", pid=a, fd=c, length=1) == errno.ENOTCONN
    run(k, "connect", pid=a, fd=c, addr="/run/app.sock")
    pair = run(k, "socketpair", pid=a, type="seqpacket")
    lines = text(fs, "/proc/net/unix").splitlines()
    assert lines[0] == "Num       RefCount Protocol Flags    Type St Inode Path"
    by_ino = {line.split()[6]: line for line in lines[1:]}
    assert by_ino[str(ino_of(fs, a, lfd))].split()[1:] == ["00000002", "00000000", "00010000", "0001", "01",
                                                           str(ino_of(fs, a, lfd)), "/run/app.sock"]
    assert by_ino[str(ino_of(fs, a, c))].split()[1:6] == ["00000003", "00000000", "00000000", "0001", "03"]
    assert by_ino["0"].split()[5:] == ["02", "0", "/run/app.sock"]   # the server's end, not yet accepted
    assert by_ino[str(ino_of(fs, a, pair[0]))].split()[4:6] == ["0005", "03"]
    other = sock(k, a, "unix")
    assert err(k, "bind", pid=a, fd=other, addr="/run/app.sock") == errno.EADDRINUSE


# -- formats against the host -------------------------------------------------------------


def _shape(line: str) -> str:
    """A line with each value replaced by "x" (the spacing of fixed-width
    columns kept) and its length: the padding to TMPSZ."""
    return f"{re.sub(r'[0-9A-Fa-f]+', 'x', line.strip())} [{len(line)}]"  # (sl is %4d: its spaces vary)


@HOST_618
def test_tcp_lines_have_the_hosts_shape(k, fs):
    a = proc(k)
    lfd = listener(k, a, "127.0.0.1:8080")
    c = sock(k, a)
    run(k, "connect", pid=a, fd=c, addr="127.0.0.1:8080")
    afd = run(k, "accept", pid=a, fd=lfd)
    run(k, "send", pid=a, fd=c, length=100)
    c2 = sock(k, a)
    run(k, "connect", pid=a, fd=c2, addr="127.0.0.1:8080")
    ours = text(fs, "/proc/net/tcp").splitlines(keepends=True)
    hl = socket.socket()
    hl.bind(("127.0.0.1", 0))
    hl.listen(16)
    port = hl.getsockname()[1]
    hc = socket.create_connection(("127.0.0.1", port))
    hs, _ = hl.accept()
    hc.send(b"x" * 100)
    hc2 = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.05)
    with open("/proc/net/tcp") as f:
        host = [line for line in f if f":{port:04X} " in line]
    head = open("/proc/net/tcp").readline()
    assert ours[0] == head
    want = {_shape(line) for line in host}
    got = {_shape(line) for line in ours[1:]}
    assert got == want, (got ^ want)
    # sk_refcnt by role, as the host counts it: the listener, the accepted end, the active openers
    def refs(lines: list[str], port: int) -> list[tuple[str, str, str]]:
        out = []
        for line in lines:
            f = line.split()
            if f[3] in ("0A", "01"):
                role = "listen" if f[3] == "0A" else "accepted" if f[1].endswith(f":{port:04X}") else "active"
                out.append((role, f[3], f[10]))
        return sorted(out)
    assert refs(ours[1:], 8080) == refs(host, port)   # one child waits in the accept queue
    hs2, _ = hl.accept()
    run(k, "accept", pid=a, fd=lfd)
    with open("/proc/net/tcp") as f:
        host = [line for line in f if f":{port:04X} " in line]
    assert refs(text(fs, "/proc/net/tcp").splitlines()[1:], 8080) == refs(host, port)   # and none
    hs2.close()
    for s in (hl, hc, hs, hc2):
        s.close()
    assert ino_of(fs, a, afd) > 0


@HOST_618
def test_udp_and_unix_lines_have_the_hosts_shape(k, fs):
    a = proc(k)
    u = sock(k, a, type="dgram")
    run(k, "bind", pid=a, fd=u, addr="127.0.0.1:0")
    hu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hu.bind(("127.0.0.1", 0))
    port = hu.getsockname()[1]
    with open("/proc/net/udp") as f:
        lines = f.readlines()
    host = [line for line in lines if f":{port:04X} " in line]
    ours = text(fs, "/proc/net/udp").splitlines(keepends=True)
    assert ours[0] == lines[0]
    # the slot (sl) is the port's hash bucket: its width varies, the rest does not
    assert _shape(ours[1]).lstrip() == _shape(host[0]).lstrip()
    assert len(ours[1]) == len(host[0]) == 128
    hs = socket.socket(socket.AF_UNIX)
    hs.bind("\0procsim-test-%d" % os.getpid())
    hs.listen(1)
    ino = os.fstat(hs.fileno()).st_ino
    hline = next(line for line in open("/proc/net/unix") if f" {ino} " in line)
    lfd = sock(k, a, "unix")
    run(k, "bind", pid=a, fd=lfd, addr="@procsim-test-%d" % os.getpid())
    run(k, "listen", pid=a, fd=lfd)
    mine = next(line for line in text(fs, "/proc/net/unix").splitlines(keepends=True) if "@procsim" in line)
    assert mine.split()[1:5] == hline.split()[1:5]
    assert len(mine.split(":", 1)[0]) == len(hline.split(":", 1)[0]) == 16
    hu.close()
    hs.close()
    u6 = sock(k, a, "inet6", "dgram")
    run(k, "bind", pid=a, fd=u6, addr="[::1]:0")
    try:
        h6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        h6.bind(("::1", 0))
    except OSError:
        return
    port6 = h6.getsockname()[1]
    with open("/proc/net/udp6") as f:
        lines6 = f.readlines()
    host6 = next(line for line in lines6 if f":{port6:04X} " in line)
    ours6 = text(fs, "/proc/net/udp6").splitlines(keepends=True)
    assert ours6[0] == lines6[0]
    assert _shape(ours6[1]).split("[")[0] == _shape(host6).split("[")[0]
    h6.close()


@HOST_618
def test_headers_and_mib_names_are_the_hosts(k, fs):
    for name in ("snmp", "netstat"):
        host = [line.split() for line in open(f"/proc/net/{name}")]
        ours = [line.split() for line in text(fs, f"/proc/net/{name}").splitlines()]
        hn = [h for h in host if not h[1].lstrip("-").isdigit() and not h[0].startswith("IcmpMsg")]
        on = [o for o in ours if not o[1].lstrip("-").isdigit() and not o[0].startswith("IcmpMsg")]
        assert on == hn
    h6 = [line.split()[0] for line in open("/proc/net/snmp6") if "Type" not in line]
    o6 = [line.split()[0] for line in text(fs, "/proc/net/snmp6").splitlines() if "Type" not in line]
    assert o6 == h6
    assert all(re.fullmatch(r"\S+ *\t\d+", line) and line.index("\t") == 32
               for line in text(fs, "/proc/net/snmp6").splitlines())
    for name in ("dev", "route", "arp", "tcp6", "udp6", "unix"):
        with open(f"/proc/net/{name}") as f:
            assert text(fs, f"/proc/net/{name}").splitlines(keepends=True)[0] == f.readline(), name
    assert [line.split()[0] for line in text(fs, "/proc/net/sockstat").splitlines()] == \
        [line.split()[0] for line in open("/proc/net/sockstat")]
    assert [line.split()[0] for line in text(fs, "/proc/net/sockstat6").splitlines()] == \
        [line.split()[0] for line in open("/proc/net/sockstat6")]
    n = len(open("/proc/net/softnet_stat").readline().split())
    assert {len(line.split()) for line in text(fs, "/proc/net/softnet_stat").splitlines()} == {n}
    route = text(fs, "/proc/net/route").splitlines(keepends=True)
    assert {len(line) for line in route} == {len(line) for line in open("/proc/net/route")}


def test_proc_net_is_self_net_and_sysfs(k, fs):
    assert fs.readlink("/proc/net", ROOT) == "self/net"
    assert "net" in fs.readdir("/proc/1", ROOT) and "net" in fs.readdir("/proc/1/task/1", ROOT)
    assert fs.readdir("/sys/class/net", ROOT) == ["lo", "eth0"]
    assert fs.readlink("/sys/class/net/eth0", ROOT) == "../../devices/virtual/net/eth0"
    d = "/sys/devices/virtual/net/"
    assert read_all(fs, d + "lo/operstate") == b"unknown\n" and read_all(fs, d + "eth0/operstate") == b"up\n"
    assert read_all(fs, d + "lo/mtu") == b"65536\n" and read_all(fs, d + "lo/type") == b"772\n"
    assert read_all(fs, d + "lo/flags") == b"0x9\n" and read_all(fs, d + "eth0/flags") == b"0x1003\n"
    assert errno_of(read_all, fs, d + "lo/speed") == errno.EINVAL
    assert errno_of(fs.open, d + "eth0/ifindex", os.O_WRONLY, ROOT) == errno.EACCES
    assert errno_of(read_all, fs, d + "eth1/mtu") == errno.ENOENT
    h = fs.open(d + "eth0/mtu", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"20\n", 0) == errno.EINVAL
    h.write(b"9000\n", 0)
    assert read_all(fs, d + "eth0/mtu") == b"9000\n"
    run(k, "ip_link", name="eth0", up=False)
    assert read_all(fs, d + "eth0/operstate") == b"down\n"
    assert errno_of(read_all, fs, d + "eth0/carrier") == errno.EINVAL


def test_ten_thousand_sockets_render_fast(k, fs):
    a = proc(k)
    from procsim.resource import RLIMIT_NOFILE, Rlimit
    k.task(a).tg.rlim[RLIMIT_NOFILE] = Rlimit(1 << 20, 1 << 20)
    lfd = listener(k, a, "*:5432", accept=True)
    t0 = time.perf_counter()
    for _ in range(5000):
        c = sock(k, a)
        run(k, "connect", pid=a, fd=c, addr="127.0.0.1:5432")
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    body = read_all(fs, "/proc/1/net/tcp", chunk=1 << 20)
    render = time.perf_counter() - t0
    assert body.count(b"\n") == 1 + 1 + 10000
    assert render < 1.0, render
    assert build < 30, build
    assert ino_of(fs, a, lfd) > 0


# -- process lifetime, determinism, scenarios -----------------------------------------------


def test_fork_shares_and_exit_releases_the_sockets(k, fs):
    a = proc(k)
    lfd = listener(k, a, "*:6000")
    child = k.fork(a)
    assert ino_of(fs, child, lfd) == ino_of(fs, a, lfd)
    k.exit(a)
    assert [r[3] for r in rows(fs, "/proc/net/tcp")] == ["0A"]   # the child still holds it
    k.exit(child)
    assert rows(fs, "/proc/net/tcp") == []
    assert "TCP: inuse 0 orphan 0 tw 0 alloc 0" in text(fs, "/proc/net/sockstat")


def test_traffic_depends_only_on_the_time_reached(k):
    def world(steps: list[float]) -> bytes:
        w = Kernel()
        w.create_init()
        a = proc(w)
        fd = sock(w, a)
        run(w, "connect", pid=a, fd=fd, addr="198.51.100.7:80")
        run(w, "net_flow", pid=a, fd=fd, tx_rate=123457, rx_rate=7654321)
        for s in steps:
            w.advance(s)
        f = ProcFS(w)
        return read_all(f, "/proc/1/net/dev") + read_all(f, "/proc/1/net/snmp") + read_all(f, "/proc/1/net/netstat")
    assert world([10.0]) == world([0.25] * 40) == world([2.5, 7.5, 0.0])


def test_scenario_sockets_and_netdevs(tmp_path):
    from procsim import scenario
    from procsim.scenario import ScenarioError
    text_ = """
[[netdev]]
name = "eth0"
ipv4 = ["192.168.10.5/24"]
gateway = "192.168.10.1"
[[netdev]]
name = "eth1"
mac = "52:54:00:00:00:99"
mtu = 9000
ipv4 = ["10.9.0.2/16"]

[[process]]
name = "srv"
argv = ["/srv"]
files = [{ kind = "socket", listen = "*:443", backlog = 10, accept = true },
         { kind = "socket", type = "dgram", bind = "127.0.0.1:53" }]
[[process]]
name = "cli"
argv = ["/cli"]
files = [{ kind = "socket", connect = "192.168.10.5:443", count = 2, tx_rate = "1K" },
         { kind = "socket", connect = "10.9.7.7:22", peer = "drop" }]
"""
    k = scenario.build(__import__("tomllib").loads(text_))
    fs = ProcFS(k)
    devs = [line.split(":")[0].strip() for line in text(fs, "/proc/net/dev").splitlines()[2:]]
    assert devs == ["lo", "eth0", "eth1"]
    assert read_all(fs, "/sys/devices/virtual/net/eth1/mtu") == b"9000\n"
    assert read_all(fs, "/sys/devices/virtual/net/eth0/ifindex") == b"2\n"
    st = sorted(r[3] for r in rows(fs, "/proc/net/tcp"))
    assert st == ["01", "01", "01", "01", "02", "0A"]
    assert len(rows(fs, "/proc/net/udp")) == 1
    route = [line.split("\t")[:4] for line in text(fs, "/proc/net/route").splitlines()[1:]]
    assert route == [["eth0", "00000000", "010AA8C0", "0003"], ["eth1", "0000090A", "00000000", "0001"],
                     ["eth0", "000AA8C0", "00000000", "0001"]]
    for bad, msg in ((
        '[[process]]\nname = "x"\nargv = ["/x"]\nfiles = [{ kind = "socket", connect = "127.0.0.1:1" }]\n',
        "nobody listens"), (
        '[[process]]\nname = "x"\nargv = ["/x"]\nfiles = [{ kind = "pipe", listen = ":1" }]\n', "for kind socket"), (
        '[[netdev]]\nname = "eth0"\nipv4 = ["10.0.0.300/8"]\n', "not ADDRESS/PREFIX"), (
        '[[netdev]]\nname = "eth0"\nmtu = 20\n', "mtu"), (
        '[[netdev]]\nname = "eth0"\nmacc = "x"\n', "unknown key 'macc'")):
        with pytest.raises(ScenarioError, match=msg):
            scenario.build(__import__("tomllib").loads(bad))


@HOST_618
def test_tcp6_lines_have_the_hosts_shape(k, fs):
    a = proc(k)
    lfd = listener(k, a, "[::1]:8080", family="inet6")
    c = sock(k, a, "inet6")
    run(k, "connect", pid=a, fd=c, addr="[::1]:8080")
    c4 = sock(k, a, "inet6")
    run(k, "connect", pid=a, fd=c4, addr="198.51.100.7:80")   # v4-mapped
    ours = text(fs, "/proc/net/tcp6").splitlines(keepends=True)
    assert ours[1].split()[1] == "00000000000000000000000001000000:1F90"  # ::1, as four __be32 words
    assert ours[-1].split()[2] == "0000000000000000FFFF0000076433C6:0050"
    try:
        hl = socket.socket(socket.AF_INET6)
        hl.bind(("::1", 0))
    except OSError:
        pytest.skip("this host has no ::1")
    hl.listen(4)
    port = hl.getsockname()[1]
    with open("/proc/net/tcp6") as f:
        lines = f.readlines()
    host = next(line for line in lines if f":{port:04X} " in line and " 0A " in line)
    assert ours[0] == lines[0]
    assert _shape(ours[1]).split("[")[0] == _shape(host).split("[")[0]
    hl.close()
    assert ino_of(fs, a, lfd) > 0


def test_an_inet6_wildcard_takes_ipv4_unless_v6only(k, fs):
    a = proc(k)
    v4 = sock(k, a)
    run(k, "bind", pid=a, fd=v4, addr="0.0.0.0:22")
    v6 = sock(k, a, "inet6")
    assert err(k, "bind", pid=a, fd=v6, addr="[::]:22") == errno.EADDRINUSE
    run(k, "bind", pid=a, fd=v6, addr="[::]:22", v6only=True)
    assert err(k, "bind", pid=a, fd=sock(k, a, "inet6"), addr="[::1]:22") == errno.EADDRINUSE
    run(k, "bind", pid=a, fd=sock(k, a, "inet6"), addr="[::ffff:10.0.2.15]:23")
    assert err(k, "bind", pid=a, fd=sock(k, a), addr="10.0.2.15:23") == errno.EADDRINUSE
    assert err(k, "bind", pid=a, fd=sock(k, a), addr="127.0.0.1:24", v6only=True) == errno.ENOPROTOOPT


@requires_host(kernel="6.18", files=("/proc/net/dev",))
def test_dev_lines_are_the_hosts_for_the_same_counters(k):
    """Each host device's line, rebuilt from its numbers by the model's
    dev_seq_printf_stats: byte for byte (wide counters included)."""
    from procsim.net.netdevice import NetDevice
    net = k.net.net(k.init_ns["net"])
    with open("/proc/net/dev") as f:
        host = f.readlines()
    for line in host[2:]:
        name, rest = line.split(":")
        v = list(map(int, rest.split()))
        d = NetDevice(name.strip(), 0)
        s = d.stats
        (s["rx_bytes"], s["rx_packets"], s["rx_errors"], s["rx_dropped"], s["rx_fifo_errors"], s["rx_frame_errors"],
         s["rx_compressed"], s["multicast"], s["tx_bytes"], s["tx_packets"], s["tx_errors"], s["tx_dropped"],
         s["tx_fifo_errors"], s["collisions"], s["tx_carrier_errors"], s["tx_compressed"]) = v
        net.add_device(d)
    ours = text(ProcFS(k), "/proc/net/dev").splitlines(keepends=True)
    assert ours[:2] == host[:2]
    assert ours[-(len(host) - 2):] == host[2:]
