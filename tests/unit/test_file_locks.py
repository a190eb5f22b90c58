"""File locks (procsim/fs/locks.py): flock, POSIX and OFD locks taken by
commands, their conflicts and errnos, their release where Linux releases
them, and /proc/locks and fdinfo's lock lines in the host's format."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct

import pytest

from invariants import boot
from procfs_helpers import read_all
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS

O_RDONLY, O_WRONLY, O_RDWR, O_CREAT = 0, 1, 2, 0o100
LINE = re.compile(r"(\d+): (POSIX |FLOCK |OFDLCK) ADVISORY  (READ|WRITE) (-?\d+) [0-9a-f]{2}:[0-9a-f]{2}:\d+ "
                  r"(\d+) (EOF|\d+)")


@pytest.fixture
def w():
    k = boot()
    a, b = k.spawn(["/bin/sh"]), k.spawn(["/bin/sh"])
    return k, ProcFS(k), a, b


def locks(fs) -> list[str]:
    return read_all(fs, "/proc/locks").decode().splitlines()


def run(k, command, **args):
    return execute(k, command, args)


def err(k, command, **args) -> int:
    with pytest.raises(CommandError) as e:
        execute(k, command, args)
    return e.value.errno


def test_flock_shared_exclusive_and_release(w):
    k, fs, a, b = w
    fa = k.open(a, "/srv/db", O_RDWR | O_CREAT)
    fb = k.open(b, "/srv/db", O_RDONLY)
    run(k, "flock", pid=a, fd=fa, op="sh")
    run(k, "flock", pid=b, fd=fb, op="sh")
    assert err(k, "flock", pid=b, fd=fb, op="ex") == errno.EAGAIN  # a's shared lock is in the way
    assert [LINE.fullmatch(l)[3] for l in locks(fs)] == ["READ", "READ"]
    assert err(k, "flock", pid=a, fd=fa, op="up") == errno.EINVAL
    assert err(k, "flock", pid=a, fd=99, op="ex") == errno.EBADF
    run(k, "flock", pid=b, fd=fb, op="un")
    run(k, "flock", pid=a, fd=fa, op="ex")  # the holder converts its own
    (line,) = locks(fs)
    m = LINE.fullmatch(line)
    assert m and m[2] == "FLOCK " and m[3] == "WRITE" and int(m[4]) == a and (m[5], m[6]) == ("0", "EOF")
    # shared by a fork: the child's copy of the fd is the same open file
    child = k.fork(a)
    k.close(a, fa)
    assert len(locks(fs)) == 1  # the child still holds the file
    k.close(child, fa)
    assert locks(fs) == []  # __fput: gone with the last reference


def test_posix_ranges_split_merge_and_conflict(w):
    k, fs, a, b = w
    fa = k.open(a, "/srv/db", O_RDWR | O_CREAT)
    fb = k.open(b, "/srv/db", O_RDWR)
    run(k, "fcntl_lock", pid=a, fd=fa, type="wr", start=0, len=100)
    run(k, "fcntl_lock", pid=a, fd=fa, type="rd", start=40, len=20)   # splits a's write lock
    spans = sorted((int(m[5]), m[6], m[3]) for m in map(LINE.fullmatch, locks(fs)))
    assert spans == [(0, "39", "WRITE"), (40, "59", "READ"), (60, "99", "WRITE")]
    assert err(k, "fcntl_lock", pid=b, fd=fb, type="rd", start=10, len=1) == errno.EAGAIN
    run(k, "fcntl_lock", pid=b, fd=fb, type="rd", start=45, len=5)    # read beside read
    run(k, "fcntl_lock", pid=b, fd=fb, type="wr", start=100, len=0)   # to EOF, past a's
    run(k, "fcntl_lock", pid=b, fd=fb, type="wr", start=200, len=10)  # inside b's own: merges
    b_spans = sorted((int(m[5]), m[6]) for m in map(LINE.fullmatch, locks(fs)) if int(m[4]) == b)
    assert b_spans == [(45, "49"), (100, "EOF")]
    run(k, "fcntl_lock", pid=a, fd=fa, type="un", start=0, len=0)
    assert all(int(LINE.fullmatch(l)[4]) == b for l in locks(fs))
    # errnos, nothing changed
    before = locks(fs)
    ro = k.open(a, "/srv/db", O_RDONLY)
    assert err(k, "fcntl_lock", pid=a, fd=ro, type="wr") == errno.EBADF
    assert err(k, "fcntl_lock", pid=a, fd=fa, type="xx") == errno.EINVAL
    assert err(k, "fcntl_lock", pid=a, fd=fa, type="rd", start=5, len=-10) == errno.EINVAL
    assert locks(fs) == before


def test_posix_locks_go_with_any_close_and_exit(w):
    k, fs, a, b = w
    f1 = k.open(a, "/srv/db", O_RDWR | O_CREAT)
    f2 = k.open(a, "/srv/db", O_RDONLY)
    run(k, "fcntl_lock", pid=a, fd=f1, type="wr", start=0, len=10)
    k.close(a, f2)  # closing another fd of the inode drops the process's POSIX locks
    assert locks(fs) == []
    run(k, "fcntl_lock", pid=a, fd=f1, type="wr", start=0, len=10)
    fb = k.open(b, "/srv/db", O_RDWR)
    run(k, "fcntl_lock", pid=b, fd=fb, type="rd", start=20, len=10)
    k.kill(a)
    assert [int(LINE.fullmatch(l)[4]) for l in locks(fs)] == [b]


def test_ofd_locks_belong_to_the_open_file(w):
    k, fs, a, b = w
    f1 = k.open(a, "/srv/db", O_RDWR | O_CREAT)
    f2 = k.open(a, "/srv/db", O_RDWR)
    run(k, "fcntl_lock", pid=a, fd=f1, type="wr", start=0, len=10, ofd=True)
    # the same process, another open file: a conflict, unlike POSIX locks
    assert err(k, "fcntl_lock", pid=a, fd=f2, type="wr", start=5, len=1, ofd=True) == errno.EAGAIN
    (line,) = locks(fs)
    m = LINE.fullmatch(line)
    assert m[2] == "OFDLCK" and m[4] == "-1"
    k.close(a, f2)  # not its file: stays
    assert len(locks(fs)) == 1
    k.close(a, f1)
    assert locks(fs) == []


def test_fdinfo_shows_the_fds_own_locks(w):
    k, fs, a, b = w
    f1 = k.open(a, "/srv/db", O_RDWR | O_CREAT)
    f2 = k.open(a, "/srv/other", O_RDWR | O_CREAT)
    run(k, "flock", pid=a, fd=f1, op="ex")
    run(k, "flock", pid=a, fd=f2, op="sh")
    info = read_all(fs, f"/proc/{a}/fdinfo/{f1}").decode()
    (lock,) = [l for l in info.splitlines() if l.startswith("lock:")]
    assert lock.startswith("lock:\t1: FLOCK  ADVISORY  WRITE ")
    assert info.splitlines()[:4] == [l for l in info.splitlines() if not l.startswith("lock:")][:4]
    ino = info.split("ino:\t")[1].split()[0]
    assert lock.endswith(f":{ino} 0 EOF")
    assert [LINE.fullmatch(l)[1] for l in locks(fs)] == ["1", "2"]
    assert "READ" in locks(fs)[0]  # newest first


def test_host_format_of_the_same_locks(tmp_path):
    """The lines this host's kernel prints for the same three locks."""
    paths = [tmp_path / n for n in "abc"]
    files = [open(p, "w") for p in paths]
    try:
        fcntl.flock(files[0], fcntl.LOCK_EX)
        fcntl.flock(files[1], fcntl.LOCK_SH)
        fcntl.fcntl(files[2], fcntl.F_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 10, 5, 0))
        with open("/proc/locks") as f:
            host = [l for l in f.read().splitlines() if f" {os.getpid()} " in l]
    finally:
        for f in files:
            f.close()
    k = boot()
    fs = ProcFS(k)
    pid = k.spawn(["/bin/sh"])
    fds = [k.open(pid, f"/srv/{n}", O_RDWR | O_CREAT) for n in "abc"]
    run(k, "flock", pid=pid, fd=fds[0], op="ex")
    run(k, "flock", pid=pid, fd=fds[1], op="sh")
    run(k, "fcntl_lock", pid=pid, fd=fds[2], type="wr", start=10, len=5)
    mask = lambda l: re.sub(r"\d+ [0-9a-f]{2}:[0-9a-f]{2}:\d+", "PID DEV", re.sub(r"^\d+:", "N:", l))  # noqa: E731
    assert [mask(l) for l in locks(fs)] == [mask(l) for l in host]
