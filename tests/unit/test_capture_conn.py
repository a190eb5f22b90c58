"""Connections between captured processes (procsim/capture/conn.py,
unix_diag.py; procsim/scenario/connections.py; procsim/pidfd.py) and the
empty page tables a restore keeps (procsim/mm/pgtable_restore.py)."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from procfs_helpers import read_all
from procsim import Kernel
from procsim.capture.conn import pair, tcp_rows
from procsim.capture.unix_diag import netlink_unix_diag, parse_dump, unix_diag
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS
from procsim.scenario import ScenarioError, build

SERVER = [
    {"kind": "socket", "listen": "127.0.0.1:8080", "ino": 9003, "fd": 3},
    {"kind": "socket", "peer_ino": 9004, "ino": 9005, "fd": 4},
    {"kind": "socket", "family": "unix", "peer_ino": 9010, "ino": 9011, "fd": 7},
    {"kind": "socket", "family": "unix", "listen": "/run/s.sock", "ino": 9014, "fd": 5},
    {"kind": "socket", "family": "unix", "peer_ino": 9012, "ino": 9013, "fd": 6},
]
CLIENT = [
    {"kind": "socket", "bind": "127.0.0.1:51480", "connect": "127.0.0.1:8080", "peer_ino": 9005, "ino": 9004,
     "fd": 3},
    {"kind": "socket", "bind": "127.0.0.1:51484", "connect": "127.0.0.1:8080", "peer_ino": 0, "ino": 9006, "fd": 4},
    {"kind": "socket", "family": "unix", "peer_ino": 9011, "ino": 9010, "fd": 5},
    {"kind": "socket", "family": "unix", "connect": "/run/s.sock", "peer_ino": 9013, "ino": 9012, "fd": 6},
]


def machine(client=CLIENT, server=SERVER) -> Kernel:
    # the client's process comes first: its connects wait for the listener's process
    return build({"process": [{"pid": 100, "argv": ["/usr/bin/client"], "files": client},
                              {"pid": 200, "argv": ["/usr/bin/server"], "files": server}]}, clock="manual")


def rows(k: Kernel, name: str) -> list[list[str]]:
    return [ln.split() for ln in read_all(ProcFS(k), f"/proc/1/net/{name}").decode().splitlines()[1:]]


def test_both_ends_connected_whatever_the_order_the_processes_came_in() -> None:
    k = machine()
    tcp = {(w[1], w[2]): (w[3], w[9]) for w in rows(k, "tcp")}
    assert tcp[("0100007F:1F90", "00000000:0000")] == ("0A", "9003")
    assert tcp[("0100007F:C918", "0100007F:1F90")] == ("01", "9004")      # the client, its captured port
    assert tcp[("0100007F:1F90", "0100007F:C918")] == ("01", "9005")      # its server end, accepted
    assert tcp[("0100007F:C91C", "0100007F:1F90")] == ("01", "9006")
    assert tcp[("0100007F:1F90", "0100007F:C91C")] == ("01", "0")         # waiting in the accept queue
    listener = [w for w in rows(k, "tcp") if w[3] == "0A"][0]
    assert listener[4] == "00000000:00000001"
    unix = {w[6]: (w[5], w[7] if len(w) > 7 else "") for w in rows(k, "unix")}
    assert unix == {"9010": ("03", ""), "9011": ("03", ""), "9012": ("03", ""), "9013": ("03", "/run/s.sock"),
                    "9014": ("01", "/run/s.sock")}
    peers = {e["ino"]: e.get("peer") for e in execute(k, "unix_diag", {})}
    assert peers == {9010: 9011, 9011: 9010, 9012: 9013, 9013: 9012, 9014: None}
    for pid, entries in ((100, CLIENT), (200, SERVER)):  # each at its captured fd, with its inode, nothing else
        assert {fd: f.ino for fd, f in k.task(pid).files.items()} == {e["fd"]: e["ino"] for e in entries}


def test_a_socketpair_handed_to_its_holders_is_one_socket_in_each() -> None:
    both = {"kind": "socket", "family": "unix", "peer_ino": 77, "ino": 76, "fd": 9}
    k = build({"process": [{"pid": 100, "argv": ["/a"], "files": [both, {"kind": "socket", "family": "unix",
                                                                          "peer_ino": 76, "ino": 77, "fd": 3}]},
                           {"pid": 101, "argv": ["/b"], "files": [both]}]}, clock="manual")
    assert k.task(100).files.get(9) is k.task(101).files.get(9)
    assert k.task(100).files.get(9).private.peer is k.task(100).files.get(3).private
    assert sorted(f.refs for f in (k.task(100).files.get(9), k.task(100).files.get(3))) == [1, 2]


@pytest.mark.parametrize("client, server, msg", [
    ([{"kind": "socket", "peer_ino": 5, "ino": 4}], [], "fixed fd"),
    ([{"kind": "socket", "connect": "127.0.0.1:8080", "peer_ino": 55, "ino": 4, "fd": 3}], SERVER[:1],
      "no socket entry is its accepted end"),
    ([{"kind": "socket", "peer_ino": 5, "ino": 4, "fd": 3}], [{"kind": "socket", "peer_ino": 4, "ino": 5, "fd": 3}],
     "only unix ones pair"),
    ([{"kind": "socket", "family": "unix", "peer_ino": 5, "ino": 4, "fd": 3}], [], "other end of a pair"),
    ([{"kind": "socket", "family": "unix", "peer_ino": 4, "ino": 4, "fd": 3}], [], "the other end's inode"),
    ([{"kind": "socket", "connect": "127.0.0.1:9", "peer_ino": 0, "ino": 4, "fd": 3}], [], "nobody listens"),
])
def test_a_connection_that_cannot_be_made_names_its_line(client, server, msg) -> None:
    with pytest.raises(ScenarioError) as e:
        machine(client, server)
    assert msg.lower() in str(e.value).lower() and "process" in str(e.value)


def test_pidfd_getfd() -> None:
    k = Kernel()
    k.create_init()
    a, b = k.spawn(["/a"]), k.spawn(["/b"], uid=1000, gid=1000)
    fd = execute(k, "socket", {"pid": b, "family": "unix"})
    got = execute(k, "pidfd_getfd", {"pid": a, "target": b, "fd": fd})  # root may take another uid's
    assert k.task(a).files.get(got) is k.task(b).files.get(fd)
    assert k.task(a).files.close_on_exec[got]
    tables = [dict(k.task(p).files.items()) for p in (a, b)]
    for args, e in (({"pid": b, "target": a, "fd": 0}, errno.EPERM),  # uid 1000 may not ptrace root's
                    ({"pid": a, "target": b, "fd": 99}, errno.EBADF),
                    ({"pid": a, "target": 4242, "fd": 0}, errno.ESRCH)):
        with pytest.raises(CommandError) as err:
            execute(k, "pidfd_getfd", args)
        assert err.value.errno == e
    assert tables == [dict(k.task(p).files.items()) for p in (a, b)]  # nothing changed


TCP = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
       "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 11 1 0\n"
       "   1: 0100007F:C918 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 12 2 0\n"
       "   2: 0100007F:1F90 0100007F:C918 01 00000000:00000000 00:00000000 00000000     0        0 13 1 0\n"
       "   3: 0100007F:C91C 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 14 2 0\n"
       "   4: 0100007F:1F90 0100007F:C91C 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0\n"
       "   5: 0F02000A:C920 0202000A:0016 01 00000000:00000000 00:00000000 00000000     0        0 15 2 0\n"
       "   6: 0100007F:C924 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 16 2 0\n"
       "   7: 0100007F:1F91 0100007F:C924 01 00000000:00000000 00:00000000 00000000     0        0 17 1 0\n")


def test_tcp_ends_are_paired_by_their_addresses_and_the_holders_fd_tables() -> None:
    assert len(tcp_rows({"tcp": TCP})) == 8
    srv = {"pid": 10, "files": [{"kind": "socket", "listen": "127.0.0.1:8080", "ino": 11, "fd": 3},
                                {"kind": "socket", "ino": 13, "fd": 4}, {"kind": "socket", "ino": 17, "fd": 5}]}
    cli = {"pid": 20, "files": [{"kind": "socket", "ino": 12, "fd": 3}, {"kind": "socket", "ino": 14, "fd": 4},
                                {"kind": "socket", "bind": "10.0.2.15:51488", "connect": "10.0.2.2:22", "ino": 15,
                                 "fd": 5}, {"kind": "socket", "ino": 16, "fd": 6}]}
    assert pair([srv, cli], {"tcp": TCP}, None) == 2
    c = {f["ino"]: f for f in cli["files"]}
    assert c[12] | {} == {"kind": "socket", "ino": 12, "fd": 3, "bind": "127.0.0.1:51480",
                          "connect": "127.0.0.1:8080", "peer_ino": 13}
    assert c[14]["peer_ino"] == 0 and c[14]["connect"] == "127.0.0.1:8080"
    assert "peer_ino" not in c[15]  # another host's end: connects to it as before
    assert "peer_ino" not in c[16]  # its listener (port 8081) is no captured process's
    assert {f["ino"]: f.get("peer_ino") for f in srv["files"]} == {11: None, 13: 12, 17: None}


UNIX = ("Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01    30 /run/s.sock\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03    31\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03    32 /run/s.sock\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03    33\n"
        "0000000000000000: 00000003 00000000 00000000 0001 03    34\n"
        "0000000000000000: 00000002 00000000 00000000 0001 02    35\n")
DIAG = [{"ino": 30, "type": 1, "state": 10, "icons": [35]}, {"ino": 31, "type": 1, "state": 1, "peer": 32},
        {"ino": 32, "type": 1, "state": 1, "peer": 31}, {"ino": 33, "type": 1, "state": 1, "peer": 34},
        {"ino": 34, "type": 1, "state": 1, "peer": 33}, {"ino": 35, "type": 1, "state": 1, "peer": 0}]


def test_unix_ends_are_paired_by_sock_diags_peers() -> None:
    a = {"pid": 10, "files": [{"kind": "socket", "family": "unix", "listen": "/run/s.sock", "ino": 30, "fd": 3},
                              {"kind": "socket", "family": "unix", "ino": 32, "fd": 4},
                              {"kind": "socket", "family": "unix", "ino": 33, "fd": 5}]}
    b = {"pid": 20, "files": [{"kind": "socket", "family": "unix", "ino": i, "fd": i - 28} for i in (31, 34, 35)]}
    assert pair([a, b], {"unix": UNIX}, DIAG) == 3
    got = {f["ino"]: (f.get("connect"), f.get("peer_ino")) for f in a["files"] + b["files"]}
    assert got == {30: (None, None), 31: ("/run/s.sock", 32), 32: (None, 31), 33: (None, 34), 34: (None, 33),
                   35: ("/run/s.sock", 0)}
    untouched = [dict(f) for f in a["files"] + b["files"]]
    for f in untouched:
        f.pop("peer_ino", None), f.pop("connect", None)
    c = {"pid": 10, "files": [dict(f) for f in untouched]}
    assert pair([c], {"unix": UNIX}, None) == 0  # without sock_diag: nothing paired


def test_netlink_answers_this_hosts_unix_peers() -> None:
    a, b = socket.socketpair()
    try:
        try:
            diag = {e["ino"]: e for e in netlink_unix_diag()}
        except OSError as e:
            pytest.skip(f"NETLINK_SOCK_DIAG refused here: {e}")
        ia, ib = os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino
        assert diag[ia]["peer"] == ib and diag[ib]["peer"] == ia
        assert diag[ia]["type"] == socket.SOCK_STREAM
    finally:
        a.close(), b.close()


def test_a_netlink_error_is_an_oserror_and_a_mount_without_a_daemon_has_no_peers(tmp_path) -> None:
    import struct
    err = struct.pack("=IHHII", 20, 2, 0, 1, 0) + struct.pack("=i", -errno.EACCES)
    with pytest.raises(OSError) as e:
        parse_dump(err)
    assert e.value.errno == errno.EACCES
    assert parse_dump(struct.pack("=IHHII", 16, 3, 0, 1, 0)) == ([], True)
    (tmp_path / "proc").mkdir()
    diag, why = unix_diag(str(tmp_path / "proc"))
    assert diag is None and "not this host's /proc" in why


# -- empty page tables ---------------------------------------------------------------

def _pte_kb(k: Kernel, pid: int) -> int:
    status = read_all(ProcFS(k), f"/proc/{pid}/status").decode()
    return int(status.split("VmPTE:")[1].split()[0])


def _meminfo(k: Kernel, key: str) -> int:
    text = read_all(ProcFS(k), "/proc/meminfo").decode()
    return int(text.split(f"\n{key}:")[1].split()[0])


def test_a_restore_keeps_empty_tables_until_vmpte_is_the_captured_one_and_munmap_frees_them() -> None:
    from procsim import restore
    k = Kernel()
    k.create_init()
    pid = k.spawn(["/a"])
    addr = execute(k, "mmap", {"pid": pid, "length": 64 << 20})
    execute(k, "touch", {"pid": pid, "addr": addr, "length": 4096, "write": True})
    before, pt_before = _pte_kb(k, pid), _meminfo(k, "PageTables")
    restore.restore_mm(k, pid, pgtables=before // 4 + 5)
    assert _pte_kb(k, pid) == before + 20
    assert _meminfo(k, "PageTables") == pt_before + 20  # NR_PAGETABLE counts them too
    mm = k.group(pid).mm
    empty = [i for i, t in mm.pgtable.tables.items() if not t.any()]
    assert len(empty) == 5 and all(addr >> 21 <= i < (addr + (64 << 20)) >> 21 for i in empty)
    restore.restore_mm(k, pid, pgtables=1)  # fewer than the pages need: nothing is taken away
    assert _pte_kb(k, pid) == before + 20
    execute(k, "munmap", {"pid": pid, "addr": addr, "length": 64 << 20})
    assert _pte_kb(k, pid) < before  # the VMA went, and its tables with it (its touched one too)


def test_no_room_for_tables_leaves_vmpte_short() -> None:
    from procsim import restore
    from procsim.errors import KernelError
    k = Kernel()  # a process with only its exec'd image: few PMDs for tables
    k.create_init()
    pid = k.spawn(["/a"])
    before = _pte_kb(k, pid)
    nvmas_pmds = {i for v in k.group(pid).mm.vmas for i in range(v.start >> 21, ((v.end - 1) >> 21) + 1)}
    restore.restore_mm(k, pid, pgtables=before // 4 + 10_000)
    assert len(k.group(pid).mm.pgtable.tables) <= len(nvmas_pmds)
    with pytest.raises(KernelError) as e:
        restore.restore_mm(k, pid, pgtables=-1)
    assert e.value.errno == errno.EINVAL
