"""procsim capture of the network and the disks, on a fake /proc and /sys:
interfaces, the sockets of each process as bind/listen/connect keys,
disks with partitions, mounts, swap and their counters; the replay's
/proc/net and /proc/diskstats read back the captured lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from procsim import scenario
from procsim.capture import capture, to_toml
from procsim.capture.anonymize import address, endpoint
from procsim.capture.block import capture_disks
from procsim.capture.net import capture_netdevs, parse_sockets, socket_keys
from procsim.capture.source import Source
from procsim.procfs.tree import ProcFS
from procsim.scenario import ScenarioError
from procfs_helpers import ROOT, read_all

# lines as this host's 6.18 prints them
TCP = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
       "   0: 0100007F:B26E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 501 1 "
       "00000000a3531185 100 0 0 10 0\n"
       "   1: 0200000A:D431 22D8B85D:01BB 01 00000000:00000000 00:00000000 00000000     0        0 502 1 "
       "00000000a3531186 20 4 30 10 -1\n")
TCP6 = ("  sl  local_address                         remote_address                        st tx_queue rx_queue "
        "tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000000000000000000000000000:B26E 00000000000000000000000000000000:0000 0A 00000000:00000000 "
        "00:00000000 00000000     0        0 503 1 00000000d81c3993 100 0 0 10 0\n")
UDP = ("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref "
       "pointer drops\n"
       " 8223: 00000000:B270 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 504 2 "
       "00000000e56d2b4f 0\n")
UNIX = ("Num       RefCount Protocol Flags    Type St Inode Path\n"
        "000000006f346fec: 00000002 00000000 00010000 0001 01   505 /run/app.sock\n"
        "00000000c5cef3fe: 00000002 00000000 00000000 0001 01   506\n")
DEV = ("Inter-|   Receive                                                |  Transmit\n"
       " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
       "carrier compressed\n"
       "    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0"
       "       0          0\n"
       "  eth0: 124984073    3891    0    1    0     0          0         0   247195    2347    0    0    0     0"
       "       0          0\n")
FIB = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.0.0/24 2 0 2
        |-- 10.0.0.2
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
"""
ROUTE = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
         "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
         "eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
STAT_VDA = [1000, 10, 80000, 300, 500, 20, 9000, 250, 0, 400, 555, 3, 0, 64, 1, 40, 2]
STAT_VDA1 = [900, 9, 70000, 280, 450, 18, 8000, 240, 0, 380, 520, 0, 0, 0, 0, 0, 0]


def _w(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    for name, text in (("tcp", TCP), ("tcp6", TCP6), ("udp", UDP), ("unix", UNIX), ("dev", DEV),
                       ("fib_trie", FIB), ("route", ROUTE),
                       ("if_inet6", "fd000000000000000000000000000002 02 40 00 80     eth0\n"
                                    "fe8000000000000000fc00fffe000001 02 40 20 80     eth0\n")):
        _w(proc / "net" / name, text)
    for name, text in (("address", "02:fc:00:00:00:01"), ("mtu", "1400"), ("ifindex", "2"),
                       ("operstate", "up")):
        _w(sys_ / "class" / "net" / "eth0" / name, text + "\n")
    _w(sys_ / "class" / "net" / "lo" / "mtu", "65536\n")
    _w(sys_ / "class" / "net" / "lo" / "ifindex", "1\n")
    _w(sys_ / "class" / "net" / "lo" / "address", "00:00:00:00:00:00\n")
    _w(proc / "partitions", "major minor  #blocks  name\n\n 254        0   33554432 vda\n"
                            " 254        1   31457280 vda1\n 254        2    2095104 vda2\n")
    _w(proc / "diskstats", f" 254       0 vda {' '.join(map(str, STAT_VDA))}\n"
                           f" 254       1 vda1 {' '.join(map(str, STAT_VDA1))}\n"
                           f" 254       2 vda2 {' '.join(['0'] * 17)}\n")
    _w(proc / "swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                       "/dev/vda2                               partition\t2095100\t\t0\t\t-2\n")
    _w(proc / "1" / "mountinfo", "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
                                 "27 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw,discard\n"
                                 "28 27 254:1 /srv /srv rw,relatime - ext4 /dev/vda1 rw,discard\n")
    q = sys_ / "block" / "vda" / "queue"
    for name, text in (("rotational", "0"), ("scheduler", "[none] mq-deadline kyber"), ("nr_requests", "256"),
                       ("read_ahead_kb", "4096"), ("logical_block_size", "512"), ("physical_block_size", "4096"),
                       ("max_sectors_kb", "1280"), ("write_cache", "write back")):
        _w(q / name, text + "\n")
    _w(sys_ / "block" / "vda" / "mq" / "0" / "nr_tags", "256\n")  # a 256-deep virtqueue: nr_requests 256 with none
    _w(sys_ / "block" / "vda" / "vda1" / "start", "2048\n")
    _w(sys_ / "block" / "vda" / "vda2" / "start", "62916608\n")
    os.makedirs(sys_ / "block" / "loop0")  # set up at run time: not a disk of the machine
    _w(proc / "partitions", (proc / "partitions").read_text() + "   7        0          0 loop0\n")
    return proc, sys_


def test_sockets_become_bind_listen_connect(tree: tuple[Path, Path]) -> None:
    proc, _ = tree
    rows = parse_sockets({n: (proc / "net" / n).read_text() for n in ("tcp", "tcp6", "udp", "unix")})
    own = {"10.0.0.2"}
    assert socket_keys(rows[501], rows, own) == {"listen": "127.0.0.1:45678"}
    # a connection to another host: its local address bound, then connect
    assert socket_keys(rows[502], rows, own) == {"bind": "10.0.0.2:54321", "connect": "93.184.216.34:443"}
    # [::]:45678 beside 127.0.0.1:45678: IPV6_V6ONLY was set
    assert socket_keys(rows[503], rows, own) == {"listen": "[::]:45678", "v6only": True}
    assert socket_keys(rows[504], rows, own) == {"type": "dgram", "bind": "0.0.0.0:45680"}
    assert socket_keys(rows[505], rows, own) == {"listen": "/run/app.sock"}
    assert socket_keys(rows[506], rows, own) == {}  # unbound, connected: not remade


def test_interfaces(tree: tuple[Path, Path]) -> None:
    proc, sys_ = tree
    devs, own = capture_netdevs(Source(str(proc), str(sys_)))
    lo, eth0 = devs
    assert lo == {"name": "lo", "mtu": 65536, "stat": [1000, 10] + [0] * 6 + [1000, 10] + [0] * 6}
    assert eth0["name"] == "eth0" and eth0["mac"] == "02:fc:00:00:00:01" and eth0["mtu"] == 1400
    assert eth0["ipv4"] == ["10.0.0.2/24"] and eth0["gateway"] == "10.0.0.1"
    assert eth0["ipv6"] == ["fd00::2/64"]  # the link-local one follows from the MAC
    assert eth0["stat"][:4] == [124984073, 3891, 0, 1]
    assert own == {"10.0.0.2", "fd00::2"}


def test_disks(tree: tuple[Path, Path]) -> None:
    proc, sys_ = tree
    disks, swap = capture_disks(Source(str(proc), str(sys_)))
    assert [d["name"] for d in disks] == ["vda"] and swap is None  # swap on a partition at the default priority
    vda = disks[0]
    assert vda["size"] == 32 << 30 and vda["rotational"] is False and vda["scheduler"] == "none"
    assert vda["read_ahead_kb"] == 4096 and vda["max_sectors_kb"] == 1280 and vda["stat"] == STAT_VDA
    p1, p2 = vda["partition"]
    assert p1 == {"start": 2048, "size": 31457280 << 10, "mount": "/", "fstype": "ext4", "options": "rw,discard",
                  "stat": STAT_VDA1}
    assert p2["swap"] is True and "mount" not in p2


def test_a_capture_replays_its_network_and_disks(tree: tuple[Path, Path], tmp_path: Path) -> None:
    proc, sys_ = tree
    warnings: list[str] = []
    doc = capture(str(proc), str(sys_), warn=warnings.append)
    assert not [w for w in warnings if "/net/" in w or "block" in w or "partitions" in w or "swaps" in w]
    doc["machine"] = {"nr_cpus": 2, "mem": "4G", "swap": 2095104 << 10, "clock": "manual", "seed": 0}
    doc["process"] = [{"name": "srv", "argv": ["/usr/bin/srv"], "files": [
        {"kind": "socket", "family": "inet", "listen": "127.0.0.1:45678", "ino": 501, "fd": 3},
        {"kind": "socket", "family": "inet", "type": "dgram", "bind": "0.0.0.0:45680", "ino": 504, "fd": 4}]}]
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    k = scenario.load(str(path))
    fs = ProcFS(k)
    pid = next(t.tgid for t in k.tasks.values() if t.comm == "srv")
    tcp = read_all(fs, f"/proc/{pid}/net/tcp").decode().splitlines()
    assert tcp[1].split()[1:4] == ["0100007F:B26E", "00000000:0000", "0A"] and tcp[1].split()[9] == "501"
    udp = read_all(fs, f"/proc/{pid}/net/udp").decode().splitlines()
    assert udp[1].split()[1] == "00000000:B270" and udp[1].split()[9] == "504"
    assert fs.readlink(f"/proc/{pid}/fd/3", ROOT) == "socket:[501]"  # the fd link and the line agree
    assert read_all(fs, "/proc/diskstats").decode().splitlines()[:2] == [
        f" 254       0 vda {' '.join(map(str, STAT_VDA))}", f" 254       1 vda1 {' '.join(map(str, STAT_VDA1))}"]
    dev = read_all(fs, f"/proc/{pid}/net/dev").decode().splitlines()
    assert dev[2] == (proc / "net" / "dev").read_text().splitlines()[2]
    assert dev[3].split()[:5] == ["eth0:", "124984073", "3891", "0", "1"]
    assert "/dev/vda2" in read_all(fs, "/proc/swaps").decode()


@pytest.mark.parametrize("extra, message", [
    ({"stat": [1, 2]}, "disk 'vda': vda: stat: expected the 11 to 17 numbers"),
    ({"stat": [-1] * 17}, "disk 'vda': vda: stat: expected the 11 to 17 numbers"),
])
def test_a_bad_disk_stat_names_the_disk(extra: dict, message: str) -> None:
    doc = {"machine": {"nr_cpus": 1, "mem": "1G"}, "disk": [{"name": "vda", "size": "8G", "mount": "/"} | extra]}
    with pytest.raises(ScenarioError, match=message):
        scenario.build(doc)


def test_a_bad_netdev_stat_and_inherited_fd() -> None:
    with pytest.raises(ScenarioError, match="netdev #1: stat: expected the 16 numbers"):
        scenario.build({"machine": {"nr_cpus": 1, "mem": "1G"}, "netdev": [{"name": "eth0", "stat": [1]}]})
    doc = {"machine": {"nr_cpus": 1, "mem": "1G"},
           "process": [{"name": "a", "argv": ["/bin/a"], "inherit_fds": False, "files": [{"inherited": True, "fd": 9}]}]}
    with pytest.raises(ScenarioError, match="inherited: fd 9 is not one it inherited"):
        scenario.build(doc)


def test_anonymized_addresses() -> None:
    a, b = address("192.0.2.2"), address("192.0.2.1")
    assert a == address("192.0.2.2") and a != "192.0.2.2"
    assert a.rsplit(".", 1)[0] == b.rsplit(".", 1)[0] and a.startswith("10.")  # one subnet stays one
    assert address("127.0.0.1") == "127.0.0.1" and address("::") == "::" and address("fe80::1") == "fe80::1"
    assert endpoint("[fd00::2]:22").startswith("[fd") and endpoint("[fd00::2]:22").endswith("]:22")
    assert endpoint("10.0.0.2/24").endswith("/24") and endpoint("/run/app.sock").endswith(".sock")


def test_own_namespaces_become_clone(tmp_path: Path) -> None:
    from procsim.capture.tasks import TaskCapture
    proc = tmp_path / "proc"
    links = {1: {"pid": 4026531836, "net": 4026531840, "uts": 4026531838, "mnt": 4026531841},
             100: {"pid": 4026532200, "net": 4026532201, "uts": 4026531838, "mnt": 4026532202},   # its own
             101: {"pid": 4026532200, "net": 4026532201, "uts": 4026531838, "mnt": 4026532202},   # its parent's
             102: {"pid": 4026531836, "net": 4026532300, "uts": 4026531838, "mnt": 4026531841}}
    for pid, ns in links.items():
        (proc / str(pid) / "ns").mkdir(parents=True)
        for kind, ino in ns.items():
            os.symlink(f"{kind}:[{ino}]", proc / str(pid) / "ns" / kind)
    src = Source(str(proc), str(tmp_path / "sys"))
    tc = TaskCapture(src)
    tc.uids = {1: 0, 100: 0, 101: 0, 102: 1000}
    got = {}
    for pid, ppid in ((100, 1), (101, 100), (102, 1)):
        p: dict = {}
        tc._namespaces(p, pid, ppid)
        got[pid] = p.get("clone")
    assert got == {100: "mnt|pid|net", 101: None, 102: "net"}
    p = {}
    tc.uids[1] = 1000  # a non-root parent cannot clone without a user namespace: left out, said
    tc._namespaces(p, 102, 1)
    assert "clone" not in p and any("non-root parent" in w for w in src.warnings)
