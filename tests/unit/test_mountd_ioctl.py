"""PROCMAP_QUERY through mountd's raw IOCTL callback (RawPath.ioctl, then
ProcsimOps.ioctl_fh), this process standing for the caller: the struct in a
ctypes buffer as libfuse's out buffer, the name and build ID written into our
own memory with process_vm_writev, as the daemon writes a client's.

What the hot path keeps between calls (a view per libfuse buffer address,
the caller's ProcessMemory) must never give an answer of an earlier call:
buffers alternate here, and every change of the address space (mmap, munmap,
mprotect, unlink, exec) must show in the next answer on the same fd. The
expected answers come from the maps text (maps_line, another renderer).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

from procfs_helpers import read_all
from procsim.commands import execute
from procsim.procfs.tree import ProcFS
from invariants import boot

fsmod = pytest.importorskip("mountd.fs")
import mfusepy  # noqa: E402

PAGE = 4096
CMD = 0xC0686611
NEXT = 0x10
Q = struct.Struct("<QQQQQQQQQIIIIQQ")
PERM_FLAGS = {"r": 1, "w": 2, "x": 4, "s": 8}
LIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"


class Caller:
    """The FUSE side of one maps fd: libfuse's fuse_file_info, two out
    buffers used in turn (malloc may or may not hand the same one back),
    the caller's struct address, and name and build ID buffers."""

    def __init__(self, raw, path: str) -> None:
        self.raw = raw
        self.fi = mfusepy.fuse_file_info()
        self.fi.flags = os.O_RDONLY
        assert raw.open(path.encode(), ctypes.addressof(self.fi)) == 0
        self.bufs = [ctypes.create_string_buffer(Q.size) for _ in range(2)]
        self.turn = 0
        self.arg = ctypes.create_string_buffer(Q.size + 8)  # the caller's struct (and a tail)
        self.name = ctypes.create_string_buffer(4096)
        self.bid = ctypes.create_string_buffer(20)

    def query(self, addr: int, flags: int = NEXT, names: bool = True, size: int = Q.size,
              name_addr: int | None = None) -> tuple[int, tuple, bytes, bytes]:
        """(result, the struct libfuse would send back, name, build ID)."""
        data = self.bufs[self.turn]
        self.turn ^= 1
        na = ctypes.addressof(self.name) if name_addr is None else name_addr
        tail = (4096, 20, na, ctypes.addressof(self.bid)) if names else (0, 0, 0, 0)
        raw = Q.pack(size, flags, addr, *[0xDEAD] * 8, *tail)
        ctypes.memmove(data, raw, Q.size)
        ctypes.memmove(self.arg, raw, Q.size)
        self.name.raw = b"\xff" * 4096
        self.bid.raw = b"\xff" * 20
        r = self.raw.ioctl(None, CMD, ctypes.addressof(self.arg), ctypes.addressof(self.fi), 0,
                           ctypes.addressof(data))
        if r < 0:
            assert data.raw == raw, "the out buffer changed on an error"
        f = Q.unpack(data.raw)
        return r, f, self.name.raw[: max(f[11] - 1, 0)], self.bid.raw[: f[12]]


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(fsmod, "fuse_get_context", lambda: (0, 0, os.getpid()))
    monkeypatch.setattr(fsmod, "_ctx_struct", None)
    k = boot(nr_cpus=2)
    fs = ProcFS(k)
    raw = fsmod.RawPath(fsmod.ProcsimOps(fs))
    pid = k.spawn(["/usr/bin/sleep", "100"])
    return k, fs, raw, pid


def maps(fs: ProcFS, pid: int) -> list[tuple[int, int, int, int, int, int, int, bytes]]:
    """(start, end, vma_flags, offset, major, minor, inode, name) per VMA,
    from the maps text; the gate VMA left out (PROCMAP_QUERY never finds it)."""
    out = []
    for line in read_all(fs, f"/proc/{pid}/maps").decode().splitlines():
        rng, perms, off, dev, ino = line.split()[:5]
        a, b = (int(x, 16) for x in rng.split("-"))
        if a >= 1 << 47:
            continue
        maj, mn = (int(x, 16) for x in dev.split(":"))
        flags = sum(v for c, v in PERM_FLAGS.items() if c in perms)
        out.append((a, b, flags, int(off, 16), maj, mn, int(ino), line[73:].encode() if len(line) > 73 else b""))
    return out


def answer(r: tuple) -> tuple:
    f, name = r[1], r[2]
    return (f[3], f[4], f[5], f[7], f[9], f[10], f[8], name)


def test_a_walk_matches_maps_with_alternating_buffers(setup) -> None:
    k, fs, raw, pid = setup
    execute(k, "mmap", dict(pid=pid, length=2 * PAGE, prot="rx", path=LIB, offset=0x3000))
    c = Caller(raw, f"/proc/{pid}/maps")
    got, addr = [], 0
    while True:
        r = c.query(addr)
        if r[0] == -errno.ENOENT:
            break
        assert r[0] == 0
        got.append(answer(r))
        addr = r[1][4]
        f = k.group(pid).mm.vmas.lookup(r[1][3]).file
        assert r[3] == (f.build_id if f is not None and f.build_id else b"")
    assert got == maps(fs, pid)
    assert any(name == LIB.encode() for *_, name in got)


def test_the_next_answer_follows_every_change(setup) -> None:
    """The same fd, the same buffers: each change must show at once (a cache
    of an earlier answer, of a view or of a name would fail here)."""
    k, fs, raw, pid = setup
    c = Caller(raw, f"/proc/{pid}/maps")
    at = execute(k, "mmap", dict(pid=pid, length=4 * PAGE, prot="r", path="/var/lib/app/data.bin",
                                 writable=False, shared=True))
    first = c.query(at, flags=0)
    assert first[0] == 0 and first[2] == b"/var/lib/app/data.bin" and first[1][5] == 1 | 8

    k.mprotect(pid, at, PAGE, 0)  # splits: [at, at+PAGE) is ---s now
    r = c.query(at, flags=0)
    assert (r[1][3], r[1][4], r[1][5]) == (at, at + PAGE, 8)
    assert answer(c.query(at + PAGE, flags=0)) in maps(fs, pid)

    execute(k, "unlink", dict(path="/var/lib/app/data.bin", pid=pid))
    r = c.query(at, flags=0)
    assert r[2] == b"/var/lib/app/data.bin (deleted)"

    k.munmap(pid, at, 4 * PAGE)
    r = c.query(at, flags=0)
    assert r[0] == -errno.ENOENT
    r = c.query(at, flags=NEXT)
    assert r[0] in (0, -errno.ENOENT) and (r[0] or r[1][3] > at)

    anon = execute(k, "mmap", dict(pid=pid, length=2 * PAGE, addr=at, fixed=True))
    r = c.query(anon, flags=0)
    assert r[0] == 0 and (r[1][3], r[1][4], r[1][5], r[2]) == (at, at + 2 * PAGE, 3, b"")
    assert [answer(c.query(v[0], flags=0)) for v in maps(fs, pid)] == maps(fs, pid)

    k.exec(pid, "/usr/bin/true", ["true"])  # the fd keeps the old mm, which is gone
    assert c.query(at, flags=NEXT)[0] == -errno.ESRCH
    c2 = Caller(raw, f"/proc/{pid}/maps")
    walk, addr = [], 0
    while (r := c2.query(addr))[0] == 0:
        walk.append(answer(r))
        addr = r[1][4]
    assert walk == maps(fs, pid) and all(v[0] != at for v in walk)


def test_errors_leave_the_buffers_alone(setup) -> None:
    """The kernel's errnos, as -errno from the callback; the out buffer (the
    caller's struct) unchanged (checked in Caller.query) and no name written."""
    k, fs, raw, pid = setup
    lib = execute(k, "mmap", dict(pid=pid, length=2 * PAGE, prot="rx", path=LIB))
    c = Caller(raw, f"/proc/{pid}/maps")
    assert c.query(lib, flags=0x40)[0] == -errno.EINVAL             # unknown flag
    assert c.query(lib, size=16)[0] == -errno.EINVAL                # shorter than query_addr's end
    assert c.query(lib, size=PAGE + 1)[0] == -errno.E2BIG
    assert c.query(max(v[1] for v in maps(fs, pid)), flags=NEXT)[0] == -errno.ENOENT  # past the last
    ctypes.memset(ctypes.addressof(c.arg) + Q.size, 1, 8)           # a non-zero byte past 104
    assert c.query(lib, size=Q.size + 8)[0] == -errno.E2BIG
    ctypes.memset(ctypes.addressof(c.arg) + Q.size, 0, 8)
    assert c.query(lib, size=Q.size + 8)[0] == 0
    r = c.query(lib, flags=0, name_addr=8)                          # an unmapped name buffer
    assert r[0] == -errno.EFAULT and c.name.raw == b"\xff" * 4096
    r = c.query(lib, flags=0)                                       # and the same fd still answers
    assert r[0] == 0 and r[2] == LIB.encode() and len(r[3]) == 20
