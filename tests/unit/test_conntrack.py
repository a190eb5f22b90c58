"""Connection tracking (procsim/net/netfilter/): entries made by the socket
model's connections and datagrams, the TCP tracker's states through the
close sequences, timeouts on the clock, nf_conntrack_max with the drop
and EPERM, ctnetlink's errnos, the sysctls, and the lines against this
machine's kernel with real sockets in a fresh network namespace."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys

import pytest

from procfs_helpers import ROOT, errno_of, read_all
from procsim import Kernel
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS

NF = "/proc/sys/net/netfilter"


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    k.create_init()
    k.modules.load("nf_conntrack", 196608, [], 0)
    execute(k, "conntrack_enable", {})
    return k


@pytest.fixture
def fs(k: Kernel) -> ProcFS:
    return ProcFS(k)


def run(k: Kernel, op: str, **args):
    return execute(k, op, args)


def err(k: Kernel, op: str, **args) -> int:
    before = read_all(ProcFS(k), "/proc/1/net/nf_conntrack")
    with pytest.raises(CommandError) as e:
        execute(k, op, args)
    assert read_all(ProcFS(k), "/proc/1/net/nf_conntrack") == before
    return e.value.errno


def lines(fs: ProcFS) -> list[str]:
    return read_all(fs, "/proc/1/net/nf_conntrack").decode().splitlines()


def entry(fs: ProcFS, dport: int) -> str:
    found = [l for l in lines(fs) if f" dport={dport} " in l.split("src=")[1] + " "]
    assert len(found) == 1, lines(fs)
    return found[0]


def tcp_server(k: Kernel, pid: int, addr: str = "127.0.0.1:5000", accept: bool = True) -> int:
    s = run(k, "socket", pid=pid, family="inet" if "[" not in addr else "inet6", type="stream")
    run(k, "bind", pid=pid, fd=s, addr=addr)
    run(k, "listen", pid=pid, fd=s, accept=accept)
    return s


def tcp_client(k: Kernel, pid: int, addr: str = "127.0.0.1:5000", peer: str = "open") -> int:
    c = run(k, "socket", pid=pid, family="inet" if "[" not in addr else "inet6", type="stream")
    run(k, "connect", pid=pid, fd=c, addr=addr, peer=peer)
    return c


def test_a_local_connection_is_tracked_through_its_close(k, fs):
    pid = k.spawn(["/srv"])
    tcp_server(k, pid)
    c = tcp_client(k, pid)
    line = entry(fs, 5000)
    assert re.fullmatch(r"ipv4     2 tcp      6 432000 ESTABLISHED src=127\.0\.0\.1 dst=127\.0\.0\.1 sport=(\d+) "
                        r"dport=5000 src=127\.0\.0\.1 dst=127\.0\.0\.1 sport=5000 dport=\1 \[ASSURED\] mark=0 zone=0 "
                        r"use=2", line), line
    k.advance(1.5)
    assert " 431998 ESTABLISHED " in entry(fs, 5000)
    run(k, "close_fd", pid=pid, fd=c)  # FIN, ACK: we FIN_WAIT2, the server's socket CLOSE_WAIT
    assert " 60 CLOSE_WAIT " in entry(fs, 5000)
    server_conn = next(s for s in run(k, "sockets", pid=pid) if s["state"] == "CLOSE_WAIT")
    run(k, "close_fd", pid=pid, fd=server_conn["fd"])  # its FIN, our ACK
    assert " 120 TIME_WAIT " in entry(fs, 5000)
    k.advance(119)
    assert " 1 TIME_WAIT " in entry(fs, 5000)
    k.advance(1)
    assert lines(fs) == [] and read_all(fs, f"{NF}/nf_conntrack_count") == b"0\n"


def test_remote_peers_states_and_timeouts(k, fs):
    pid = k.spawn(["/cli"])
    tcp_client(k, pid, "10.0.2.2:1", "drop")  # a SYN unanswered
    assert re.search(r" 120 SYN_SENT src=\S+ dst=10\.0\.2\.2 sport=\d+ dport=1 \[UNREPLIED\] src=10\.0\.2\.2 ",
                     entry(fs, 1))
    c = tcp_client(k, pid, "10.0.2.2:2", "open")
    run(k, "close_fd", pid=pid, fd=c)  # FIN, FIN+ACK, ACK
    assert " 120 TIME_WAIT " in entry(fs, 2) and "[ASSURED]" in entry(fs, 2)
    c = tcp_client(k, pid, "10.0.2.2:3", "half")
    run(k, "close_fd", pid=pid, fd=c)
    assert " 60 CLOSE_WAIT " in entry(fs, 3)
    c = tcp_client(k, pid, "10.0.2.2:4", "mute")
    run(k, "send", pid=pid, fd=c, length=1000)  # unacknowledged data: the shorter timeout
    assert " 300 ESTABLISHED " in entry(fs, 4)
    run(k, "close_fd", pid=pid, fd=c)
    assert " 120 FIN_WAIT " in entry(fs, 4)
    c = tcp_client(k, pid, "10.0.2.2:5", "open")
    run(k, "net_peer_close", pid=pid, fd=c)  # the remote's FIN, our ACK
    assert " 60 CLOSE_WAIT " in entry(fs, 5)
    run(k, "close_fd", pid=pid, fd=c)
    assert " 120 TIME_WAIT " in entry(fs, 5)
    with pytest.raises(CommandError):  # SYN, RST: the entry goes at once (the only reply was a RST)
        tcp_client(k, pid, "10.0.2.2:6", "refuse")
    assert not [l for l in lines(fs) if "dport=6 " in l]


def test_incoming_connections_are_tracked_from_the_remote_side(k, fs):
    pid = k.spawn(["/srv"])
    s = tcp_server(k, pid, "0.0.0.0:80", accept=True)
    run(k, "net_incoming", pid=pid, fd=s, src="10.0.2.2:40000")
    run(k, "net_incoming", pid=pid, fd=s, src="10.0.2.2:40001", complete=False)
    est, syn = entry(fs, 80).split("\n") if False else sorted(lines(fs), key=lambda l: "40001" in l)
    assert re.search(r"432000 ESTABLISHED src=10\.0\.2\.2 dst=10\.0\.2\.15 sport=40000 dport=80 src=10\.0\.2\.15 "
                     r"dst=10\.0\.2\.2 sport=80 dport=40000 \[ASSURED\]", est), est
    assert " 60 SYN_RECV src=10.0.2.2 " in syn and "[ASSURED]" not in syn and "[UNREPLIED]" not in syn


def test_udp_unreplied_replied_and_stream(k, fs):
    pid = k.spawn(["/udp"])
    a = run(k, "socket", pid=pid, family="inet", type="dgram")
    b = run(k, "socket", pid=pid, family="inet", type="dgram")
    run(k, "bind", pid=pid, fd=a, addr="127.0.0.1:6000")
    run(k, "bind", pid=pid, fd=b, addr="127.0.0.1:6001")
    run(k, "send", pid=pid, fd=a, length=1, to="127.0.0.1:6001")
    assert entry(fs, 6001).endswith("[UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=6001 dport=6000 mark=0 zone=0 use=2")
    run(k, "send", pid=pid, fd=b, length=1, to="127.0.0.1:6000")
    line = entry(fs, 6001)
    assert " 30 src=" in line and "[UNREPLIED]" not in line and "[ASSURED]" not in line
    k.advance(3)
    run(k, "send", pid=pid, fd=a, length=1, to="127.0.0.1:6001")  # still going after 2 s: a stream
    assert " 120 src=" in entry(fs, 6001) and "[ASSURED]" in entry(fs, 6001)
    k.advance(120)
    assert lines(fs) == []


def test_ipv6_addresses_are_printed_whole(k, fs):
    pid = k.spawn(["/srv"])
    tcp_server(k, pid, "[::1]:5001")
    tcp_client(k, pid, "[::1]:5001")
    one = "0000:0000:0000:0000:0000:0000:0000:0001"
    assert entry(fs, 5001).startswith(f"ipv6     10 tcp      6 432000 ESTABLISHED src={one} dst={one} sport=")


def test_the_table_full_drops_and_counts(k, fs):
    pid = k.spawn(["/udp"])
    w = fs.open(f"{NF}/nf_conntrack_max", os.O_WRONLY, ROOT)
    w.write(b"2", 0)
    u = run(k, "socket", pid=pid, family="inet", type="dgram")
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:7001")
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:7002")
    udp_out = k.net.net(k.init_ns["net"]).mib["Udp"]["OutDatagrams"]
    with pytest.raises(CommandError) as e:
        run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:7003")
    assert e.value.errno == errno.EPERM  # as sendto(2) gets it: NF_DROP at LOCAL_OUT
    assert k.net.net(k.init_ns["net"]).mib["Udp"]["OutDatagrams"] == udp_out
    c = tcp_client(k, pid, "10.0.2.2:443")  # the SYN is dropped: TCP keeps retrying
    assert [s["state"] for s in run(k, "sockets", pid=pid) if s["fd"] == c] == ["SYN_SENT"]
    stat = read_all(fs, "/proc/1/net/stat/nf_conntrack").decode().splitlines()
    head = stat[0].split()
    drops = sum(int(l.split()[head.index("drop")], 16) for l in stat[1:])
    assert drops == 2 and all(l.startswith("00000002  ") for l in stat[1:])
    assert len(stat) == 1 + k.config.nr_cpus
    assert len(lines(fs)) == 2
    w.write(b"0", 0)  # 0: no limit
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:7003")
    assert len(lines(fs)) == 3


def test_early_drop_takes_an_unassured_entry_of_the_new_ones_buckets(k):
    nf = k.netfilter
    c = nf.ct(k.net.net(k.init_ns["net"]))
    nf.resize(1)  # one page of buckets (512): every entry lies near every other
    nf.htable_size = 1  # one bucket: early_drop's window holds them all
    nf.set_max(2)
    pid = k.spawn(["/udp"])
    u = run(k, "socket", pid=pid, family="inet", type="dgram")
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:7001")
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:7002")
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:7003")  # the newest unassured of the chain goes
    assert sorted(t.dport for t in c.entries) == [7001, 7003]
    assert sum(s["early_drop"] for s in c.stat) == 1 and sum(s["drop"] for s in c.stat) == 0


def test_sysctls_and_their_errnos(k, fs):
    assert read_all(fs, f"{NF}/nf_conntrack_max") == read_all(fs, f"{NF}/nf_conntrack_buckets") == b"262144\n"
    assert read_all(fs, "/proc/sys/net/nf_conntrack_max") == b"262144\n"
    b = fs.open(f"{NF}/nf_conntrack_buckets", os.O_WRONLY, ROOT)
    b.write(b"1500", 0)  # a whole number of pages of bucket heads, as this machine rounds it
    assert read_all(fs, f"{NF}/nf_conntrack_buckets") == b"1536\n"
    assert errno_of(b.write, b"0", 0) == errno.EINVAL
    m = fs.open(f"{NF}/nf_conntrack_max", os.O_WRONLY, ROOT)
    for bad in (b"-5", b"2147483648", b"x"):
        assert errno_of(m.write, bad, 0) == errno.EINVAL
    assert read_all(fs, f"{NF}/nf_conntrack_max") == b"262144\n"
    assert errno_of(lambda: fs.open(f"{NF}/nf_conntrack_count", os.O_WRONLY, ROOT)) in (errno.EACCES, errno.EPERM)
    t = fs.open(f"{NF}/nf_conntrack_tcp_timeout_established", os.O_WRONLY, ROOT)
    t.write(b"100", 0)
    pid = k.spawn(["/c"])
    tcp_client(k, pid, "10.0.2.2:9")
    assert " 100 ESTABLISHED " in entry(fs, 9)
    assert read_all(fs, "/proc/1/net/nf_conntrack")  # root reads; the file is 0440
    assert fs.getattr("/proc/1/net/nf_conntrack", ROOT).mode & 0o777 == 0o440


def test_ctnetlink_create_delete_mark_flush(k, fs):
    args = dict(proto="tcp", src="192.0.2.1", dst="10.0.2.15", sport=1234, dport=22)
    run(k, "conntrack_create", timeout=50, state="ESTABLISHED", status="ASSURED,SEEN_REPLY", mark=7, **args)
    assert lines(fs) == ["ipv4     2 tcp      6 50 ESTABLISHED src=192.0.2.1 dst=10.0.2.15 sport=1234 dport=22 "
                         "src=10.0.2.15 dst=192.0.2.1 sport=22 dport=1234 [ASSURED] mark=7 zone=0 use=2"]
    assert err(k, "conntrack_create", timeout=50, state="ESTABLISHED", **args) == errno.EEXIST
    rev = dict(args, src=args["dst"], dst=args["src"], sport=22, dport=1234)
    assert err(k, "conntrack_create", timeout=50, state="ESTABLISHED", **rev) == errno.EEXIST
    assert err(k, "conntrack_create", timeout=0, state="ESTABLISHED", **dict(args, sport=1)) == errno.EINVAL
    assert err(k, "conntrack_create", timeout=5, state="BOGUS", **dict(args, sport=1)) == errno.EINVAL
    assert err(k, "conntrack_create", timeout=5, **dict(args, proto="sctp")) == errno.EINVAL
    assert err(k, "conntrack_create", timeout=5, state="ESTABLISHED", **dict(args, src="::1")) == errno.EINVAL
    run(k, "conntrack_mark", mark=9, **rev)  # either direction's tuple names it
    assert " mark=9 " in lines(fs)[0]
    assert err(k, "conntrack_delete", **dict(args, sport=1)) == errno.ENOENT
    run(k, "conntrack_delete", **args)
    assert lines(fs) == []
    run(k, "conntrack_create", timeout=5, proto="udp", src="10.0.2.15", dst="10.0.2.3", sport=5353, dport=53)
    assert run(k, "conntrack_flush") == 1 and lines(fs) == []
    k.netfilter.set_max(1)
    run(k, "conntrack_create", timeout=5, proto="udp", src="10.0.2.15", dst="10.0.2.3", sport=5353, dport=53)
    assert err(k, "conntrack_create", timeout=5, proto="udp", src="10.0.2.15", dst="10.0.2.3", sport=5354,
               dport=53) == errno.ENOMEM


def test_namespaces_have_their_own_tables(k, fs):
    pid = k.spawn(["/c"])
    tcp_client(k, pid, "10.0.2.2:9")
    child = k.spawn(["/ns"])
    run(k, "unshare", pid=child, flags="net")
    assert read_all(fs, f"/proc/{child}/net/nf_conntrack") == b""  # its hooks are not registered
    run(k, "conntrack_enable", pid=child)
    run(k, "conntrack_create", pid=child, timeout=5, proto="udp", src="127.0.0.1", dst="127.0.0.1", sport=1,
        dport=2)
    assert len(read_all(fs, f"/proc/{child}/net/nf_conntrack").splitlines()) == 1
    assert len(lines(fs)) == 1


def test_unloading_nf_conntrack_takes_the_tables(k, fs):
    pid = k.spawn(["/c"])
    tcp_client(k, pid, "10.0.2.2:9")
    k.modules.load("nft_ct", 28672, ["nf_conntrack"], k.now)
    assert err(k, "module_unload", name="nf_conntrack") == errno.EWOULDBLOCK
    run(k, "module_unload", name="nft_ct")
    run(k, "module_unload", name="nf_conntrack")
    assert lines(fs) == []
    assert err(k, "conntrack_enable") == errno.ENOENT


def test_the_same_commands_give_the_same_bytes_whatever_was_read(k):
    def world(read_between: bool) -> bytes:
        k = Kernel()
        k.create_init()
        k.modules.load("nf_conntrack", 1, [], 0)
        run(k, "conntrack_enable")
        fs = ProcFS(k)
        pid = k.spawn(["/c"])
        for port in range(1, 40):
            tcp_client(k, pid, f"10.0.2.2:{port}", ("open", "drop", "half")[port % 3])
            if read_between:
                read_all(fs, "/proc/1/net/nf_conntrack")
            k.advance(1)
        return read_all(fs, "/proc/1/net/nf_conntrack")
    assert world(False) == world(True)


# -- against this machine's kernel ------------------------------------------------------

HOST_SCRIPT = r"""
set -e
ip link set lo up
nft add table inet procsim_t
nft add chain inet procsim_t c '{ type filter hook output priority 0; }'
nft add rule inet procsim_t c ct state established accept
exec %s - <<'PY'
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 5000)); s.listen()
c = socket.create_connection(('127.0.0.1', 5000)); a, _ = s.accept()
c2 = socket.create_connection(('127.0.0.1', 5000)); a2, _ = s.accept(); c2.close()
s6 = socket.socket(socket.AF_INET6); s6.bind(('::1', 5001)); s6.listen(); c6 = socket.create_connection(('::1', 5001))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 6000)); u.sendto(b'x', ('127.0.0.1', 9))
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.bind(('127.0.0.1', 6001))
u.sendto(b'x', ('127.0.0.1', 6001)); v.sendto(b'y', ('127.0.0.1', 6000))
try:
    socket.create_connection(('127.0.0.1', 5999))
except OSError:
    pass
time.sleep(0.3)
print(open('/proc/net/nf_conntrack').read(), end='')
print('--')
print(open('/proc/net/stat/nf_conntrack').read(), end='')
PY
"""


def _host_world() -> tuple[list[str], list[str]] | str:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nft") or not shutil.which("ip"):
        return "needs root, unshare, ip and nft (apt nftables) to track connections in a scratch namespace"
    if not os.path.exists("/proc/net/nf_conntrack"):
        return "the host kernel has no conntrack /proc files (CONFIG_NF_CONNTRACK_PROCFS)"
    r = subprocess.run(["unshare", "--net", "sh", "-c", HOST_SCRIPT % sys.executable], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        return f"cannot track in a scratch namespace: {r.stderr.strip()[:200]}"
    ct, _, stat = r.stdout.partition("--\n")
    return ct.splitlines(), stat.splitlines()


def _norm(line: str) -> str:
    """Ephemeral ports and sub-second timeout rounding aside."""
    line = re.sub(r"port=(3[2-9]\d{3}|[4-6]\d{4})\b", "port=EPH", line)
    return re.sub(r"^(ipv\d +\d+ \w+ +\d+) (\d+)", lambda m: f"{m[1]} {int(m[2]) + 1 if m[2].endswith('9') else m[2]}",
                  line)


def test_lines_equal_the_hosts_for_the_same_sockets(k, fs):
    host = _host_world()
    if isinstance(host, str):
        pytest.skip(host)
    host_ct, host_stat = host
    pid = k.spawn(["/srv"])
    tcp_server(k, pid)
    tcp_client(k, pid)
    c2 = tcp_client(k, pid)
    run(k, "close_fd", pid=pid, fd=c2)
    tcp_server(k, pid, "[::1]:5001", accept=False)
    tcp_client(k, pid, "[::1]:5001")
    u = run(k, "socket", pid=pid, family="inet", type="dgram")
    v = run(k, "socket", pid=pid, family="inet", type="dgram")
    run(k, "bind", pid=pid, fd=u, addr="127.0.0.1:6000")
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:9")
    run(k, "bind", pid=pid, fd=v, addr="127.0.0.1:6001")
    run(k, "send", pid=pid, fd=u, length=1, to="127.0.0.1:6001")
    run(k, "send", pid=pid, fd=v, length=1, to="127.0.0.1:6000")
    with pytest.raises(CommandError):
        tcp_client(k, pid, "127.0.0.1:5999")
    assert sorted(map(_norm, lines(fs))) == sorted(map(_norm, host_ct))
    mine = read_all(fs, "/proc/1/net/stat/nf_conntrack").decode().splitlines()
    assert mine[0] == host_stat[0]
    assert mine[1] == host_stat[1]  # 5 entries, nothing counted (the host's per-CPU lines all agree)
