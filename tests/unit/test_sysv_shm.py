"""System V shared memory (procsim/ipc/shm.py): segments made, attached,
touched, forked, detached and removed by commands; their pages in Shmem;
/proc/sysvipc/shm and the /SYSV maps line as this host prints them."""

from __future__ import annotations

import ctypes
import errno
import os
import re

import pytest

from invariants import boot
from procfs_helpers import read_all
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS


def run(k, command, **args):
    return execute(k, command, args)


def err(k, command, **args) -> int:
    with pytest.raises(CommandError) as e:
        execute(k, command, args)
    return e.value.errno


def shm_rows(fs) -> list[list[str]]:
    return [l.split() for l in read_all(fs, "/proc/sysvipc/shm").decode().splitlines()[1:]]


def meminfo(fs) -> dict[str, int]:
    return {l.split(":")[0]: int(l.split()[1]) for l in read_all(fs, "/proc/meminfo").decode().splitlines()}


@pytest.fixture
def w():
    k = boot()
    return k, ProcFS(k), k.spawn(["/usr/bin/postgres"], uid=1000, gid=1000)


def test_segment_life_and_shmem(w):
    k, fs, a = w
    base = meminfo(fs)
    sid = run(k, "shmget", pid=a, key=0x5432, size=4 << 20, mode=0o600)
    addr = run(k, "shmat", pid=a, shmid=sid)
    run(k, "touch", pid=a, addr=addr, length=1 << 20)
    mi = meminfo(fs)
    assert mi["Shmem"] - base["Shmem"] == 1024 and mi["MemFree"] < base["MemFree"]
    (row,) = shm_rows(fs)
    assert row[:7] == [str(0x5432), str(sid), "600", str(4 << 20), str(a), str(a), "1"]
    assert row[7:11] == ["1000", "1000", "1000", "1000"] and row[14] == str(1 << 20) and row[15] == "0"
    child = k.fork(a)
    assert shm_rows(fs)[0][6] == "2"  # the child's copy is an attach (shm_open)
    k.kill(child)
    assert shm_rows(fs)[0][6] == "1"
    run(k, "shm_rmid", pid=a, shmid=sid)
    row = shm_rows(fs)[0]
    assert row[0] == "0" and row[2] == "1600"  # IPC_PRIVATE, SHM_DEST: still attached
    assert meminfo(fs)["Shmem"] - base["Shmem"] == 1024
    run(k, "shmdt", pid=a, addr=addr)
    assert shm_rows(fs) == [] and meminfo(fs)["Shmem"] == base["Shmem"]


def test_segment_outlives_its_attaches_until_removed(w):
    k, fs, a = w
    sid = run(k, "shmget", pid=a, key=7, size=1 << 20)
    addr = run(k, "shmat", pid=a, shmid=sid)
    run(k, "touch", pid=a, addr=addr, length=1 << 20)
    k.kill(a)
    (row,) = shm_rows(fs)
    assert row[6] == "0" and row[14] == str(1 << 20)  # detached, its pages kept
    b = k.spawn(["/bin/sh"], uid=1000, gid=1000)
    assert run(k, "shmget", pid=b, key=7, size=4096, create=False) == sid
    run(k, "shm_rmid", pid=b, shmid=sid)
    assert shm_rows(fs) == []


def test_errnos_change_nothing(w):
    k, fs, a = w
    sid = run(k, "shmget", pid=a, key=9, size=8192, mode=0o600)
    before = read_all(fs, "/proc/sysvipc/shm")
    assert err(k, "shmget", pid=a, key=10, size=4096, create=False) == errno.ENOENT
    assert err(k, "shmget", pid=a, key=9, size=4096, excl=True) == errno.EEXIST
    assert err(k, "shmget", pid=a, key=9, size=1 << 20) == errno.EINVAL      # larger than the segment
    assert err(k, "shmget", pid=a, key=11, size=0) == errno.EINVAL
    assert err(k, "shmat", pid=a, shmid=sid + 1) == errno.EINVAL
    assert err(k, "shmdt", pid=a, addr=0x10000) == errno.EINVAL
    other = k.spawn(["/bin/sh"], uid=2000, gid=2000)
    assert err(k, "shmat", pid=other, shmid=sid) == errno.EACCES
    assert err(k, "shm_rmid", pid=other, shmid=sid) == errno.EPERM
    assert read_all(fs, "/proc/sysvipc/shm") == before


def test_ids_and_maps_line(w):
    k, fs, a = w
    s1 = run(k, "shmget", pid=a, size=4096)
    s2 = run(k, "shmget", pid=a, size=4096)
    assert (s1, s2) == (0, 32768 + 1)  # index, plus the sequence times IPCMNI
    addr = run(k, "shmat", pid=a, shmid=s2, readonly=True)
    line = next(l for l in read_all(fs, f"/proc/{a}/maps").decode().splitlines() if "SYSV" in l)
    assert re.fullmatch(rf"{addr:x}-{addr + 4096:x} r--s 00000000 00:01 {s2} +/SYSV00000000 \(deleted\)", line)


def _host_segment() -> tuple[str, str] | None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    sid = libc.shmget(0x4D49, 1 << 20, 0o1000 | 0o640)
    if sid < 0:
        return None
    try:
        a = libc.shmat(sid, None, 0)
        ctypes.memset(a, 1, 8192)
        with open("/proc/sysvipc/shm") as f:
            row = next(l for l in f.read().splitlines()[1:] if l.split()[1] == str(sid))
        with open("/proc/self/maps") as f:
            maps = next(l for l in f if "SYSV" in l).rstrip("\n")
        libc.shmdt(ctypes.c_void_p(a))
        return row, maps
    finally:
        libc.shmctl(sid, 0, None)


@pytest.mark.skipif(not os.path.exists("/proc/sysvipc/shm"), reason="host has no /proc/sysvipc/shm")
def test_host_format_of_the_same_segment():
    host = _host_segment()
    if host is None:
        pytest.skip("host shmget failed")
    k = boot()
    fs = ProcFS(k)
    a = k.spawn(["/bin/sh"])
    sid = run(k, "shmget", pid=a, key=0x4D49, size=1 << 20, mode=0o640)
    addr = run(k, "shmat", pid=a, shmid=sid)
    run(k, "touch", pid=a, addr=addr, length=8192)
    row = read_all(fs, "/proc/sysvipc/shm").decode().splitlines()[1]
    # right-aligned fixed-width fields: every field ends in the same column
    ends = lambda l: [m.end() for m in re.finditer(r"\S+", l)]  # noqa: E731
    assert ends(row) == ends(host[0])
    assert row.split()[0] == host[0].split()[0] and row.split()[2:4] == host[0].split()[2:4]
    assert row.split()[14:] == host[0].split()[14:]  # rss 8192, swap 0
    ours_maps = next(l for l in read_all(fs, f"/proc/{a}/maps").decode().splitlines() if "SYSV" in l)
    assert ours_maps.split()[1:4] == host[1].split()[1:4] and ours_maps.split()[5:] == host[1].split()[5:]
