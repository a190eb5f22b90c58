"""PROCMAP_QUERY on maps fds, without FUSE (spec §6): every check of §6.2 in
order, the VMA selection of §6.3, the output fields of §6.4, what is and is
not written back, the mm bound at open (§1.6); and the layout replay that
mirrors real processes (procsim/layout.py).

The caller's memory is `UserMem`, a few mapped regions; anything else
faults. Calls go through the maps handle the way the kernel's do: the whole
argument is read from and written to that memory (no transport buffer), so
"exactly min(size, 104) bytes written" is observable; `fuse_call` checks the
FUSE-style path, where the first 104 bytes travel in a buffer.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import time
from dataclasses import dataclass

import pytest

from procfs_helpers import ROOT, read_all
from procsim import Kernel
from procsim.commands import CommandError, execute
from procsim.kernel import KernelError
from procsim.mm.vma import (VM_ACCOUNT, VM_GROWSDOWN, VM_HUGETLB, VM_MAYSHARE, VM_MAYWRITE, VM_SHARED)
from procsim.procfs import procmap_query as PQ
from procsim.procfs.procmap_query import PROCMAP_QUERY, ProcmapQuery
from procsim.procfs.tree import Handle, ProcFS
from procsim.vfs import default_build_id
from invariants import boot

PAGE = 4096
HPAGE = 2 << 20
STRUCT_AT, NAME_AT, BID_AT = 0x10000, 0x40000, 0x80000
SENTINEL = 0xDEAD
NEXT, FILE = PQ.PROCMAP_QUERY_COVERING_OR_NEXT_VMA, PQ.PROCMAP_QUERY_FILE_BACKED_VMA
R, W, X, S = (PQ.PROCMAP_QUERY_VMA_READABLE, PQ.PROCMAP_QUERY_VMA_WRITABLE, PQ.PROCMAP_QUERY_VMA_EXECUTABLE,
              PQ.PROCMAP_QUERY_VMA_SHARED)


# -- the caller's memory and the call -------------------------------------------------


class UserMem:
    """A caller's address space: a few mapped regions; everything else faults."""

    def __init__(self) -> None:
        self.regions: dict[int, bytearray] = {}

    def map(self, addr: int, data: bytes) -> None:
        self.regions[addr] = bytearray(data)

    def _region(self, addr: int, n: int) -> tuple[bytearray, int]:
        for base, buf in self.regions.items():
            if base <= addr and addr + n <= base + len(buf):
                return buf, addr - base
        raise OSError(errno.EFAULT, f"{addr:#x}+{n}")

    def read(self, addr: int, n: int) -> bytes:
        buf, off = self._region(addr, n)
        return bytes(buf[off:off + n])

    def write(self, addr: int, data: bytes) -> None:
        buf, off = self._region(addr, len(data))
        buf[off:off + len(data)] = data

    def snapshot(self) -> dict[int, bytes]:
        return {a: bytes(b) for a, b in self.regions.items()}


@dataclass
class Result:
    err: int                # 0 or the errno
    out: ProcmapQuery       # the caller's struct afterwards (first 104 bytes)
    raw: bytes              # ... as bytes
    name: bytes             # the name buffer afterwards
    bid: bytes              # the build ID buffer afterwards

    @property
    def name_str(self) -> bytes:
        return self.name[: self.out.vma_name_size]


def query(h: Handle, addr: int = 0, flags: int = 0, *, size: int = 104, name_size: int = 0,
          bid_size: int = 0, name_addr: int | None = None, bid_addr: int | None = None,
          tail: bytes = b"", region: int | None = None, cmd: int = PROCMAP_QUERY,
          mem: UserMem | None = None) -> Result:
    """One PROCMAP_QUERY as a C caller makes it: output fields preset to
    0xdead, name/build ID buffers of 'A'/'B' (pointers set when their size
    is), `tail` after the 104 bytes, the struct in a region of `region`
    bytes (default: enough for everything). On an error nothing may have
    changed; that is checked here for every call."""
    mem = mem or UserMem()
    na = (NAME_AT if name_size else 0) if name_addr is None else name_addr
    ba = (BID_AT if bid_size else 0) if bid_addr is None else bid_addr
    raw = struct.pack("<QQQQQQQQQIIIIQQ", size, flags, addr, *[SENTINEL] * 6, SENTINEL, SENTINEL,
                      name_size, bid_size, na, ba) + tail
    need = region if region is not None else max(len(raw), min(size, 8192), 104)
    mem.map(STRUCT_AT, raw.ljust(need, b"\0")[:need])
    mem.map(NAME_AT, b"A" * min(max(name_size, 1) + 8, 8192))
    mem.map(BID_AT, b"B" * (max(bid_size, 1) + 8))
    before = mem.snapshot()
    try:
        h.ioctl(cmd, bytearray(), STRUCT_AT, mem)  # no transport buffer: all through mem
        err = 0
    except OSError as e:
        err = e.errno
        assert mem.snapshot() == before, f"{errno.errorcode[err]} but the caller's memory changed"
    after = mem.regions[STRUCT_AT]
    out104 = bytes(after[:104]).ljust(104, b"\0")
    return Result(err, ProcmapQuery.unpack(out104), out104, bytes(mem.regions[NAME_AT]),
                  bytes(mem.regions[BID_AT]))


def fuse_call(h: Handle, raw: bytes, mem: UserMem) -> tuple[int, bytearray]:
    """As mountd does it: the first 104 bytes at STRUCT_AT go in a buffer,
    which goes back only on success."""
    mem.map(STRUCT_AT, raw)
    data = bytearray(mem.read(STRUCT_AT, 104))
    try:
        h.ioctl(PROCMAP_QUERY, data, STRUCT_AT, mem)
    except OSError as e:
        return e.errno, data
    mem.write(STRUCT_AT, bytes(data))
    return 0, data


# -- the machine ----------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    anon: int        # private anonymous rw, 4 pages
    shanon: int      # shared anonymous rw (/dev/zero (deleted)), 3 pages
    rofile: int      # MAP_SHARED of a data file opened read-only, 2 pages
    lib: int         # private r-x mapping of a shared object at offset 0x3000
    none: int        # PROT_NONE anonymous, 1 page
    huge: int        # private hugetlb, 2 MiB


@pytest.fixture
def k() -> Kernel:
    return boot(nr_cpus=2, hugepages=4)


@pytest.fixture
def fs(k: Kernel) -> ProcFS:
    return ProcFS(k)


@pytest.fixture
def p(k: Kernel) -> Proc:
    pid = k.spawn(["/usr/bin/sleep", "100"])
    anon = k.mmap(pid, 4 * PAGE)
    shanon = execute(k, "mmap", dict(pid=pid, length=3 * PAGE, shared=True))
    rofile = execute(k, "mmap", dict(pid=pid, length=2 * PAGE, prot="r", shared=True, path="/var/lib/app/data.bin",
                                     writable=False))
    lib = execute(k, "mmap", dict(pid=pid, length=2 * PAGE, prot="rx", path="/usr/lib/x86_64-linux-gnu/libz.so.1",
                                  offset=0x3000))
    none = execute(k, "mmap", dict(pid=pid, length=PAGE, prot="none"))
    huge = execute(k, "mmap", dict(pid=pid, length=HPAGE, hugetlb=True))
    return Proc(pid, anon, shanon, rofile, lib, none, huge)


def maps_of(fs: ProcFS, pid: int | str) -> list[tuple[int, int, str, str]]:
    """(start, end, perms, name) per maps line, the gate VMA included."""
    out = []
    for line in read_all(fs, f"/proc/{pid}/maps").decode().splitlines():
        r, perms = line.split()[:2]
        a, b = (int(x, 16) for x in r.split("-"))
        out.append((a, b, perms, line[73:] if len(line) > 73 else ""))
    return out


def maps_fd(fs: ProcFS, pid: int | str, flags: int = os.O_RDONLY) -> Handle:
    return fs.open(f"/proc/{pid}/maps", flags, ROOT)


def vma(k: Kernel, pid: int, addr: int):
    return k.group(pid).mm.vmas.lookup(addr)


def span(k: Kernel, pid: int, addr: int) -> tuple[int, int]:
    """The bounds of the VMA at addr (a new mapping may have merged)."""
    v = vma(k, pid, addr)
    return v.start, v.end


# -- §6.1 / §1.4: which fds, which commands -------------------------------------------


def test_other_commands_and_files_are_enotty(fs: ProcFS, p: Proc) -> None:
    assert query(maps_fd(fs, p.pid), p.anon, cmd=0xC0686612).err == errno.ENOTTY
    assert query(maps_fd(fs, p.pid), p.anon, cmd=0x5401).err == errno.ENOTTY  # TCGETS (isatty)
    for name in ("smaps", "status", "numa_maps", "smaps_rollup", "stat"):
        assert query(fs.open(f"/proc/{p.pid}/{name}", os.O_RDONLY, ROOT), p.anon).err == errno.ENOTTY, name
    assert query(fs.open(f"/proc/{p.pid}/pagemap", os.O_RDONLY, ROOT), p.anon).err == errno.EINVAL
    assert query(fs.open("/proc/meminfo", os.O_RDONLY, ROOT), p.anon).err == errno.ENOTTY


def test_thread_maps_and_write_only_fds_answer(k: Kernel, fs: ProcFS, p: Proc) -> None:
    tid = k.clone_thread(p.pid)
    r = query(fs.open(f"/proc/{p.pid}/task/{tid}/maps", os.O_RDONLY, ROOT), p.anon)
    assert r.err == 0 and (r.out.vma_start, r.out.vma_end) == span(k, p.pid, p.anon)
    assert query(maps_fd(fs, p.pid, os.O_WRONLY), p.anon).err == 0


# -- §6.2: the checks, in order --------------------------------------------------------


@pytest.mark.parametrize("size,err", [(4097, errno.E2BIG), (1 << 40, errno.E2BIG), (0, errno.EINVAL),
                                      (8, errno.EINVAL), (23, errno.EINVAL)])
def test_size_limits(fs: ProcFS, p: Proc, size: int, err: int) -> None:
    assert query(maps_fd(fs, p.pid), p.anon, size=size).err == err


def test_size_is_read_first_and_can_fault(fs: ProcFS, p: Proc) -> None:
    mem = UserMem()  # nothing mapped at STRUCT_AT
    with pytest.raises(OSError) as e:
        maps_fd(fs, p.pid).ioctl(PROCMAP_QUERY, bytearray(), STRUCT_AT, mem)
    assert e.value.errno == errno.EFAULT


def test_bytes_past_the_struct_must_be_zero(fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    assert query(h, p.anon, size=112).err == 0
    assert query(h, p.anon, size=112, tail=b"\x01").err == errno.E2BIG
    assert query(h, p.anon, size=4096).err == 0
    assert query(h, p.anon, size=4096, tail=b"\0" * 3990 + b"\x01").err == errno.E2BIG
    # the tail is read from the caller's memory: unmapped there -> EFAULT
    assert query(h, p.anon, size=112, region=104).err == errno.EFAULT
    assert query(h, p.anon, size=104, region=104).err == 0


@pytest.mark.parametrize("flags", [0x40, 0x80, 1 << 32, 1 << 63, 0x7F])
def test_unknown_flags(fs: ProcFS, p: Proc, flags: int) -> None:
    assert query(maps_fd(fs, p.pid), p.anon, flags).err == errno.EINVAL


@pytest.mark.parametrize("kw", [dict(name_size=256, name_addr=0), dict(name_addr=NAME_AT),
                                dict(bid_size=64, bid_addr=0), dict(bid_addr=BID_AT)])
def test_buffer_size_and_address_go_together(fs: ProcFS, p: Proc, kw: dict) -> None:
    assert query(maps_fd(fs, p.pid), p.lib, **kw).err == errno.EINVAL


def test_check_order(k: Kernel, fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    # size before flags, flags before the tail? no: the tail is part of the copy, before flags
    assert query(h, p.anon, 0x40, size=4097).err == errno.E2BIG
    assert query(h, p.anon, 0x40, size=23).err == errno.EINVAL
    assert query(h, p.anon, 0x40, size=112, tail=b"\x01").err == errno.E2BIG
    assert query(h, p.anon, 0x40, size=112, region=104).err == errno.EFAULT
    # buffer pairs before the mm; the mm before the lookup
    gone = maps_fd(fs, p.pid)
    k.exec(p.pid, "/usr/bin/true", ["true"])
    assert query(gone, p.anon, 0x40).err == errno.EINVAL
    assert query(gone, p.anon, name_size=16, name_addr=0).err == errno.EINVAL
    assert query(gone, p.anon, bid_addr=BID_AT).err == errno.EINVAL
    assert query(gone, 0xFFFFFFFFFF600000).err == errno.ESRCH
    # the lookup before the buffers: ENOENT even with bad pointers
    h = maps_fd(fs, p.pid)
    assert query(h, 0x1000, name_size=16, name_addr=8, bid_size=20, bid_addr=8).err == errno.ENOENT
    # sizes before copying: ENAMETOOLONG even with a bad pointer
    assert query(h, 0x1000, NEXT, name_size=2, name_addr=8).err == errno.ENAMETOOLONG
    assert query(h, 0x1000, NEXT, bid_size=4, bid_addr=8).err == errno.ENAMETOOLONG


def test_efault_on_the_buffers_and_the_copy_order(fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    assert query(h, p.lib, name_size=256, name_addr=8).err == errno.EFAULT
    assert query(h, p.lib, bid_size=64, bid_addr=8).err == errno.EFAULT
    # the kernel copies the name, then the build ID, then the struct: a bad
    # build ID pointer fails after the name went out (checked on 6.18), and
    # the struct is not written
    mem = UserMem()
    r = query_raw_on_error(h, mem, p.lib, name_size=256, bid_size=64, bid_addr=8)
    assert r == errno.EFAULT
    name = b"/usr/lib/x86_64-linux-gnu/libz.so.1\0"
    assert bytes(mem.regions[NAME_AT][: len(name) + 1]) == name + b"A"
    assert struct.unpack_from("<Q", mem.regions[STRUCT_AT], 24)[0] == SENTINEL
    # an unnamed VMA or a file without build ID never touches the pointers
    r = query(h, p.anon, name_size=256, name_addr=8, bid_size=64, bid_addr=8)
    assert r.err == 0 and (r.out.vma_name_size, r.out.build_id_size) == (0, 0)


def query_raw_on_error(h: Handle, mem: UserMem, addr: int, **kw) -> int:
    """A query whose error may leave partial output (the name before a bad
    build ID pointer): `query` without its nothing-changed check."""
    na = NAME_AT if kw.get("name_size") else 0
    raw = struct.pack("<QQQQQQQQQIIIIQQ", 104, 0, addr, *[SENTINEL] * 8, kw.get("name_size", 0),
                      kw.get("bid_size", 0), kw.get("name_addr", na), kw.get("bid_addr", 0))
    mem.map(STRUCT_AT, raw)
    mem.map(NAME_AT, b"A" * 300)
    try:
        h.ioctl(PROCMAP_QUERY, bytearray(), STRUCT_AT, mem)
    except OSError as e:
        return e.errno
    return 0


# -- §1.6: the mm bound at open -----------------------------------------------------------


def test_esrch_for_zombie_reaped_kthread_and_exec(k: Kernel, fs: ProcFS, p: Proc) -> None:
    parent = k.spawn(["/usr/bin/bash"])
    c = k.fork(parent)
    at = maps_of(fs, c)[0][0]
    fd = maps_fd(fs, c)
    assert query(fd, at).err == 0
    k.exit_group(c)                               # zombie
    assert query(fd, at).err == errno.ESRCH
    assert query(maps_fd(fs, c), at).err == errno.ESRCH  # opened as a zombie
    k.wait(parent, c)                             # reaped
    assert query(fd, at).err == errno.ESRCH
    assert query(maps_fd(fs, 2), 0, NEXT).err == errno.ESRCH  # kernel thread
    old = maps_fd(fs, p.pid)
    k.exec(p.pid, "/usr/bin/sleep", ["sleep", "1"])   # exec since open
    assert query(old, 0, NEXT).err == errno.ESRCH
    assert query(maps_fd(fs, p.pid), 0, NEXT).err == 0  # a new open sees the new mm


def test_mm_outlives_an_exited_leader(k: Kernel, fs: ProcFS, p: Proc) -> None:
    tid = k.clone_thread(p.pid)
    fd = maps_fd(fs, p.pid)
    k.exit(p.pid)  # the leader goes, the thread keeps the mm
    assert query(fd, p.anon).err == 0
    # opened now, the leader has no mm to give (get_task_mm): ESRCH
    assert query(maps_fd(fs, p.pid), p.anon).err == errno.ESRCH
    assert query(fs.open(f"/proc/{p.pid}/task/{tid}/maps", os.O_RDONLY, ROOT), p.anon).err == 0


def test_second_open_in_a_generation_binds_the_mm_too(k: Kernel, fs: ProcFS, p: Proc) -> None:
    """The open plan is cached per generation; a second caller's handle must
    still hold the mm of its open, not whatever the task has later."""
    from procsim.procfs.context import Caller
    fs.open(f"/proc/{p.pid}/maps", os.O_RDONLY, ROOT)
    other = fs.open(f"/proc/{p.pid}/maps", os.O_RDONLY, Caller(ROOT.pid + 1, 0, 0))
    k.exec(p.pid, "/usr/bin/sleep", ["sleep", "1"])
    assert query(other, 0, NEXT).err == errno.ESRCH
    assert other.read(4096, 0) == b""


# -- §6.3: which VMA -------------------------------------------------------------------


def test_selection_cases(k: Kernel, fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    rows = maps_of(fs, p.pid)
    vmas = rows[:-1]
    assert rows[-1][3] == "[vsyscall]"

    def got(addr: int, flags: int = 0) -> tuple[int, int] | int:
        r = query(h, addr, flags)
        return r.err or (r.out.vma_start, r.out.vma_end)

    first = vmas[0]
    assert got(first[0]) == first[:2] and got(first[0] + 1) == first[:2] and got(first[1] - 1) == first[:2]
    adjacent = next((a, b) for a, b in zip(vmas, vmas[1:]) if a[1] == b[0])
    assert got(adjacent[0][1]) == adjacent[1][:2]          # end of one = start of the next
    gap = next((a, b) for a, b in zip(vmas, vmas[1:]) if a[1] < b[0])
    assert got(gap[0][1]) == errno.ENOENT                   # a gap
    assert got(gap[0][1], NEXT) == gap[1][:2]               # ... or the next VMA
    assert got(0) == errno.ENOENT and got(0, NEXT) == first[:2]
    assert got(vmas[-1][1]) == errno.ENOENT                 # after the last VMA
    assert got(vmas[-1][1], NEXT) == errno.ENOENT           # the gate VMA follows, never returned
    assert got(0xFFFFFFFFFF600000) == errno.ENOENT
    assert got(0xFFFFFFFFFF600000, NEXT) == errno.ENOENT
    assert got((1 << 64) - 1, NEXT) == errno.ENOENT


def test_filters(k: Kernel, fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    vmas = maps_of(fs, p.pid)[:-1]

    def first(pred) -> tuple[int, int]:
        return next(v[:2] for v in vmas if pred(v))

    def got(addr: int, flags: int) -> tuple[int, int] | int:
        r = query(h, addr, flags)
        return r.err or (r.out.vma_start, r.out.vma_end)

    assert got(0, NEXT | W) == first(lambda v: v[2][1] == "w")
    assert got(0, NEXT | X) == first(lambda v: v[2][2] == "x")
    # SHARED is VM_MAYSHARE: the read-only shared file (VM_SHARED clear) counts
    assert not vma(k, p.pid, p.rofile).flags & VM_SHARED
    shared = sorted((span(k, p.pid, p.rofile), span(k, p.pid, p.shanon)))
    assert got(0, NEXT | S) == first(lambda v: v[2][3] == "s") == shared[0]
    assert got(0, NEXT | R | S) == got(0, NEXT | S)
    assert got(0, NEXT | W | S) == span(k, p.pid, p.shanon)
    assert got(0, NEXT | R | W | X | S) == errno.ENOENT
    # FILE_BACKED: from an anonymous VMA to the next file VMA; hugetlb counts as a file
    assert got(p.anon, FILE) == errno.ENOENT
    nxt = first(lambda v: v[0] > p.anon and v[3].startswith("/"))
    assert got(p.anon, NEXT | FILE) == nxt
    assert got(p.huge, FILE) == (p.huge, p.huge + HPAGE)
    # a covering VMA that fails a filter: ENOENT without NEXT, the next match with it
    assert got(p.anon, X) == errno.ENOENT
    assert got(p.none, R) == errno.ENOENT
    assert got(p.none, NEXT | R) == first(lambda v: v[0] > p.none and v[2][0] == "r")


def _oracle(vmas: list[tuple[int, int, str, str]], addr: int, flags: int) -> tuple[int, int] | int:
    """§6.3 as the spec words it, over the maps text."""
    for a, b, perms, name in vmas:
        if b <= addr:
            continue
        ok = (not flags & FILE or name.startswith("/")) and all(
            not flags & bit or perms[i] != "-" and perms[i] != "p"
            for i, bit in enumerate((R, W, X, S)))
        if ok and (flags & NEXT or a <= addr):
            return a, b
        if not flags & NEXT:
            return errno.ENOENT
    return errno.ENOENT


def test_selection_matches_the_spec_for_every_flag_combination(fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    vmas = maps_of(fs, p.pid)[:-1]
    addrs = sorted({0, 0x1000} | {v[0] for v in vmas} | {v[1] for v in vmas} | {v[0] + 1 for v in vmas}
                   | {v[1] - 1 for v in vmas})
    for flags in range(0x40):
        for addr in addrs:
            r = query(h, addr, flags)
            assert (r.err or (r.out.vma_start, r.out.vma_end)) == _oracle(vmas, addr, flags), (hex(addr), flags)


# -- §6.4: the output fields -------------------------------------------------------------


def test_anonymous_vma(k: Kernel, fs: ProcFS, p: Proc) -> None:
    r = query(maps_fd(fs, p.pid), p.anon + 5, name_size=64, bid_size=64)
    o = r.out
    assert r.err == 0
    assert (o.vma_start, o.vma_end, o.vma_flags, o.vma_page_size) == (*span(k, p.pid, p.anon), R | W, PAGE)
    assert (o.vma_offset, o.inode, o.dev_major, o.dev_minor) == (0, 0, 0, 0)
    assert (o.vma_name_size, o.build_id_size) == (0, 0)
    assert r.name == b"A" * 72 and r.bid == b"B" * 72  # untouched
    # the inputs come back unchanged
    assert (o.size, o.query_flags, o.query_addr, o.vma_name_addr, o.build_id_addr) == (104, 0, p.anon + 5,
                                                                                        NAME_AT, BID_AT)


def test_file_vma(k: Kernel, fs: ProcFS, p: Proc) -> None:
    f = vma(k, p.pid, p.lib).file
    r = query(maps_fd(fs, p.pid), p.lib, name_size=256, bid_size=64)
    o = r.out
    assert (o.vma_flags, o.vma_page_size, o.vma_offset) == (R | X, PAGE, 0x3000)
    assert (o.inode, o.dev_major, o.dev_minor) == (f.ino, 0xFE, 0)
    assert r.name_str == b"/usr/lib/x86_64-linux-gnu/libz.so.1\0" and r.name[o.vma_name_size] == ord("A")
    assert o.build_id_size == 20 and r.bid[:20] == default_build_id(f.path) and r.bid[20:] == b"B" * 52


def test_shared_vmas(k: Kernel, fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    shm = vma(k, p.pid, p.shanon).file
    r = query(h, p.shanon, name_size=64, bid_size=20)
    assert (r.out.vma_flags, r.out.dev_major, r.out.dev_minor, r.out.inode) == (R | W | S, 0, 1, shm.ino)
    assert r.name_str == b"/dev/zero (deleted)\0" and r.out.build_id_size == 0  # shmem: no build ID
    r = query(h, p.rofile, name_size=64, bid_size=20)
    assert r.out.vma_flags == R | S                                              # 9, as observed
    assert r.name_str == b"/var/lib/app/data.bin\0" and r.out.build_id_size == 0  # not ELF
    assert query(h, p.none).out.vma_flags == 0


def test_hugetlb_vma(k: Kernel, fs: ProcFS, p: Proc) -> None:
    r = query(maps_fd(fs, p.pid), p.huge + PAGE, name_size=64, bid_size=20)
    o = r.out
    assert (o.vma_start, o.vma_end, o.vma_page_size, o.vma_offset) == (p.huge, p.huge + HPAGE, HPAGE, 0)
    assert (o.dev_major, o.dev_minor, o.inode) == (0, 17, vma(k, p.pid, p.huge).file.ino)
    assert r.name_str == b"/anon_hugepage (deleted)\0" and o.build_id_size == 0


def test_special_heap_and_stack_names(k: Kernel, fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    by_name = {v[3]: v for v in maps_of(fs, p.pid)[:-1] if v[3].startswith("[")}
    assert set(by_name) == {"[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]"}
    for name, (a, b, perms, _) in by_name.items():
        r = query(h, a, name_size=64, bid_size=64)
        assert r.err == 0 and (r.out.vma_start, r.out.vma_end) == (a, b)
        assert r.name_str == name.encode() + b"\0", name
        assert (r.out.inode, r.out.dev_major, r.out.build_id_size, r.out.vma_offset) == (0, 0, 0, 0), name
    assert query(h, by_name["[vdso]"][0]).out.vma_flags == R | X
    assert query(h, by_name["[vvar]"][0]).out.vma_flags == R


def test_exe_and_libraries_have_build_ids(k: Kernel, fs: ProcFS) -> None:
    # an exec'd file is an ELF object whatever its name
    pid = k.spawn(["/opt/tool/run"])
    h = maps_fd(fs, pid)
    first = maps_of(fs, pid)[0]
    r = query(h, first[0], name_size=64, bid_size=20)
    assert r.name_str == b"/opt/tool/run\0" and r.bid[:20] == default_build_id("/opt/tool/run")
    libc = next(v for v in maps_of(fs, pid) if v[3].endswith("libc.so.6") and v[2][2] == "x")
    r = query(h, libc[0], bid_size=20)
    assert r.bid[:20] == default_build_id("/usr/lib/x86_64-linux-gnu/libc.so.6")
    # stable: another machine gives the same IDs
    k2 = boot(nr_cpus=2, kthreadd=False)
    assert k2.vfs.file("/usr/lib/x86_64-linux-gnu/libc.so.6").build_id == r.bid[:20]
    assert default_build_id("/a") != default_build_id("/b")


def test_which_files_look_like_elf(k: Kernel) -> None:
    from procsim.vfs import looks_like_elf
    for path in ("/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/libtinfo.so.6.4", "/x/foo.so",
                 "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/usr/bin/python3.11", "/usr/sbin/sshd",
                 "/usr/libexec/git-core/git"):
        assert looks_like_elf(path), path
    for path in ("/usr/lib/locale/locale-archive", "/var/lib/app/data.bin", "/usr/lib/x/gconv-modules.cache",
                 "/dev/zero", "/memfd:x", "/usr/lib/foo.so.conf", "/binary/data", "/usr/share/x.sox"):
        assert not looks_like_elf(path), path


def test_build_id_buffer_sizes(fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    assert query(h, p.lib, bid_size=4).err == errno.ENAMETOOLONG
    assert query(h, p.lib, bid_size=19).err == errno.ENAMETOOLONG
    r = query(h, p.lib, bid_size=20)
    assert r.err == 0 and r.out.build_id_size == 20 and r.bid[20:] == b"B" * 8
    assert query(h, p.anon, bid_size=4).out.build_id_size == 0     # anonymous: no error
    assert query(h, p.rofile, bid_size=4).out.build_id_size == 0   # not ELF: no error


def test_name_buffer_sizes(k: Kernel, fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    name = b"/usr/lib/x86_64-linux-gnu/libz.so.1"
    assert query(h, p.lib, name_size=5).err == errno.ENAMETOOLONG
    assert query(h, p.lib, name_size=len(name)).err == errno.ENAMETOOLONG
    r = query(h, p.lib, name_size=len(name) + 1)
    assert r.err == 0 and r.out.vma_name_size == len(name) + 1 and r.name[: len(name) + 2] == name + b"\0A"
    r = query(h, p.lib, name_size=1 << 20, name_addr=NAME_AT)  # capped at PATH_MAX: still fine
    assert r.err == 0 and r.name_str == name + b"\0"
    r = query(h, p.lib, name_size=0xFFFFFFFF)
    assert r.err == 0 and r.out.vma_name_size == len(name) + 1


def test_names_longer_than_path_max(k: Kernel, fs: ProcFS, p: Proc) -> None:
    for n, err in ((4095, 0), (4096, errno.ENAMETOOLONG), (5000, errno.ENAMETOOLONG)):
        path = "/" + "d" * (n - 1)
        a = execute(k, "mmap", dict(pid=p.pid, length=PAGE, prot="r", path=path))
        r = query(maps_fd(fs, p.pid), a, name_size=1 << 20)
        assert r.err == err, n
        if not err:
            assert r.name_str == path.encode() + b"\0"


# -- write-back ---------------------------------------------------------------------------


def test_only_min_size_104_bytes_are_written(fs: ProcFS, p: Proc) -> None:
    h = maps_fd(fs, p.pid)
    full = query(h, p.lib).raw
    for size in (24, 40, 56, 103):
        r = query(h, p.lib, size=size)
        assert r.err == 0, size
        unset = struct.pack("<QQQQQQQQQIIIIQQ", size, 0, p.lib, *[SENTINEL] * 8, 0, 0, 0, 0)
        assert r.raw == full[:size].replace(full[:8], struct.pack("<Q", size), 1) + unset[size:], size
    r = query(h, p.lib, size=24)
    assert (r.out.vma_start, r.out.vma_end) == (SENTINEL, SENTINEL)   # nothing useful comes back
    r = query(h, p.lib, size=40)
    assert (r.out.vma_start, r.out.vma_end, r.out.vma_flags) == (p.lib, p.lib + 2 * PAGE, SENTINEL)


def test_fields_past_a_short_size_are_zero(fs: ProcFS, p: Proc) -> None:
    """With size 103 the last byte of build_id_addr is not read: a non-zero
    byte there is no 'address without size', and it is not written back."""
    h = maps_fd(fs, p.pid)
    raw = bytearray(struct.pack("<QQQQQQQQQIIIIQQ", 103, 0, p.lib, *[0] * 10, 0, 0))
    raw[103] = 1
    mem = UserMem()
    err, _ = fuse_call(h, bytes(raw), mem)
    assert err == 0 and mem.regions[STRUCT_AT][103] == 1
    raw[0] = 104
    assert fuse_call(h, bytes(raw), UserMem())[0] == errno.EINVAL


def test_through_a_transport_buffer(fs: ProcFS, p: Proc) -> None:
    """The FUSE path: 104 bytes in a buffer, the tail and the name buffer in
    the caller's memory; bytes past a short size go back as they came."""
    h = maps_fd(fs, p.pid)
    mem = UserMem()
    mem.map(NAME_AT, b"A" * 64)
    raw = struct.pack("<QQQQQQQQQIIIIQQ", 40, 0, p.lib, *[SENTINEL] * 8, 0, 0, 0, 0)
    err, data = fuse_call(h, raw, mem)
    assert err == 0 and data[40:] == raw[40:] and struct.unpack_from("<QQ", data, 24) == (p.lib, p.lib + 2 * PAGE)
    raw = struct.pack("<QQQQQQQQQIIIIQQ", 112, 0, p.lib, *[0] * 8, 64, 0, NAME_AT, 0) + b"\0" * 7 + b"\x01"
    assert fuse_call(h, raw, mem)[0] == errno.E2BIG
    err, data = fuse_call(h, raw[:111] + b"\0", mem)
    assert err == 0 and bytes(mem.regions[NAME_AT][:36]) == b"/usr/lib/x86_64-linux-gnu/libz.so.1\0"


# -- lock-free, and every VMA lock released ---------------------------------------------


def test_vma_locks_pair_and_the_kernel_lock_is_not_taken(monkeypatch, k: Kernel, fs: ProcFS, p: Proc) -> None:
    held: list[object] = []
    real_lock = PQ.lock_next_vma

    def lock(mm, addr):
        v = real_lock(mm, addr)
        if v is not None:
            held.append(v)
        return v

    def unlock(v):
        held.remove(v)

    class NoLock:
        def __enter__(self):
            raise AssertionError("PROCMAP_QUERY took the kernel lock")

        def __exit__(self, *a):
            return False

        acquire = __enter__

    monkeypatch.setattr(PQ, "lock_next_vma", lock)
    monkeypatch.setattr(PQ, "vma_end_read", unlock)
    h = maps_fd(fs, p.pid)
    monkeypatch.setattr(k, "lock", NoLock())
    cases = [dict(addr=p.anon), dict(addr=0, flags=NEXT | R | W | X | S), dict(addr=p.anon, flags=X),
             dict(addr=p.lib, name_size=2), dict(addr=p.lib, bid_size=2), dict(addr=0, flags=NEXT | FILE),
             dict(addr=p.lib, name_size=256, name_addr=8)]
    for kw in cases:
        query(h, **kw)
        assert held == [], kw


# -- the layout replay ---------------------------------------------------------------------


def real_maps() -> list[str]:
    """The maps text of a real sleep and of this Python process."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        for _ in range(100):  # until exec is done
            text = open(f"/proc/{child.pid}/maps").read()
            if "/sleep" in text:
                break
            time.sleep(0.01)
        return [text, open("/proc/self/maps").read()]
    finally:
        child.kill()
        child.wait()


def test_layout_round_trips_real_processes(k: Kernel, fs: ProcFS) -> None:
    pid = k.spawn(["/usr/bin/bash"])
    for text in real_maps():
        k.exec(pid, "/usr/bin/sleep", ["sleep", "30"], layout=text)
        assert read_all(fs, f"/proc/{pid}/maps").decode() == text
        # and what smaps starts its blocks with is the same lines
        heads = [ln for ln in read_all(fs, f"/proc/{pid}/smaps").decode().splitlines() if "-" in ln.split()[0]]
        assert heads == text.splitlines()


def test_layout_through_the_command_without_final_newline(k: Kernel, fs: ProcFS) -> None:
    pid = k.spawn(["/usr/bin/bash"])
    text = real_maps()[0]
    execute(k, "exec", dict(pid=pid, path="/usr/bin/sleep", argv=["sleep"], layout=text.rstrip("\n")))
    assert read_all(fs, f"/proc/{pid}/maps").decode() == text
    assert b"sleep" in read_all(fs, f"/proc/{pid}/cmdline")


ZOO = """\
00400000-00401000 r--p 00000000 fe:00 1234                               /opt/app/bin/app
00401000-00403000 r-xp 00001000 fe:00 1234                               /opt/app/bin/app
00403000-00404000 rw-p 00003000 fe:00 1234                               /opt/app/bin/app
00404000-00406000 rw-p 00000000 00:00 0                                  [heap]
00406000-00407000 ---p 00000000 00:00 0 
7f0000000000-7f0000200000 rw-p 00000000 00:11 4242                       /anon_hugepage (deleted)
7f0000200000-7f0000201000 rw-p 00000000 00:00 0 
7f0000201000-7f0000202000 rw-p 00000000 00:00 0 
7f0000202000-7f0000203000 rw-p 00000000 00:00 0                          [anon:arena]
7f0000203000-7f0000205000 rw-s 00000000 00:01 77                         /dev/zero (deleted)
7f0000205000-7f0000206000 rw-s 00000000 00:01 78                         /memfd:jit (deleted)
7f0000206000-7f0000207000 r--s 00000000 00:01 5                          /SYSV0000abcd (deleted)
7f0000207000-7f0000208000 rw-s 00000000 00:01 79                         [anon_shmem:ring]
7f0000208000-7f000020a000 r--s 00002000 fe:00 555                        /var/cache/data.db
7f000020a000-7f000020b000 r-xp 00000000 fe:00 556                        /tmp/plugin.so (deleted)
7f000020b000-7f000020c000 r--p 00000000 fe:00 557                        /tmp/odd\\012name
7f000020c000-7f000020d000 r--p 00000000 fe:00 556                        /tmp/plugin.so (deleted)
7ffc00000000-7ffc00004000 r--p 00000000 00:00 0                          [vvar]
7ffc00004000-7ffc00006000 r--p 00000000 00:00 0                          [vvar_vclock]
7ffc00006000-7ffc00008000 r-xp 00000000 00:00 0                          [vdso]
7ffc10000000-7ffc10021000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


@pytest.fixture
def zoo(k: Kernel) -> int:
    pid = k.spawn(["/usr/bin/bash"])
    k.exec(pid, "/opt/app/bin/app", ["app"], layout=ZOO,
           build_ids={"/tmp/plugin.so (deleted)": "00112233", "/var/cache/data.db": "ab" * 20})
    return pid


def test_layout_zoo_round_trips(fs: ProcFS, zoo: int) -> None:
    assert read_all(fs, f"/proc/{zoo}/maps").decode() == ZOO


def test_layout_flags(k: Kernel, zoo: int) -> None:
    mm = k.group(zoo).mm
    flags = {v.start: v.flags for v in mm.vmas}
    assert flags[0x7F0000203000] & (VM_SHARED | VM_MAYSHARE) == VM_SHARED | VM_MAYSHARE
    ro = flags[0x7F0000208000]  # a file shared read-only: opened O_RDONLY
    assert ro & VM_MAYSHARE and not ro & (VM_SHARED | VM_MAYWRITE)
    assert flags[0x7FFC10000000] & VM_GROWSDOWN and flags[0x00404000] & VM_ACCOUNT
    assert flags[0x7F0000000000] & VM_HUGETLB
    assert mm.start_brk == 0x404000 and mm.start_stack in range(0x7FFC10000000, 0x7FFC10021000)
    assert (mm.start_code, mm.end_code, mm.end_data) == (0x401000, 0x403000, 0x404000)
    # adjacent anonymous VMAs stay apart, also through later changes
    k.mprotect(zoo, 0x7F0000200000, PAGE, 3)
    assert {0x7F0000200000, 0x7F0000201000} <= {v.start for v in mm.vmas}
    # the same inode in two places is one file
    assert mm.vmas.lookup(0x7F000020A000).file is mm.vmas.lookup(0x7F000020C000).file


def test_layout_zoo_query_answers(k: Kernel, fs: ProcFS, zoo: int) -> None:
    h = maps_fd(fs, zoo)

    def ask(addr: int) -> Result:
        r = query(h, addr, name_size=256, bid_size=20)
        assert r.err == 0
        return r

    r = ask(0x7F0000000000)
    assert (r.out.vma_page_size, r.out.dev_minor, r.out.inode) == (HPAGE, 0x11, 4242)
    assert ask(0x7F0000202000).name_str == b"[anon:arena]\0"
    r = ask(0x7F0000206000)
    assert (r.name_str, r.out.vma_flags, r.out.inode) == (b"/SYSV0000abcd (deleted)\0", R | S, 5)
    assert ask(0x7F0000207000).name_str == b"[anon_shmem:ring]\0"
    assert ask(0x7F0000205000).name_str == b"/memfd:jit (deleted)\0"
    r = ask(0x7F000020A000)
    assert (r.name_str, r.out.build_id_size, r.bid[:5]) == (b"/tmp/plugin.so (deleted)\0", 4, b"\x00\x11\x22\x33B")
    assert ask(0x7F000020B000).name_str == b"/tmp/odd\nname\0"   # raw: a real newline
    r = ask(0x7F0000208000)
    assert (r.out.vma_offset, r.out.build_id_size, r.bid[:20]) == (0x2000, 20, b"\xab" * 20)
    assert ask(0x400000).bid[:20] == default_build_id("/opt/app/bin/app")


def test_layout_build_id_can_be_removed(k: Kernel, fs: ProcFS) -> None:
    pid = k.spawn(["/usr/bin/bash"])
    k.exec(pid, "/opt/app/bin/app", ["app"], layout=ZOO, build_ids={"/opt/app/bin/app": ""})
    assert query(maps_fd(fs, pid), 0x400000, bid_size=20).out.build_id_size == 0


BAD_LAYOUTS = {
    "garbage": "hello\n",
    "empty": "",
    "only vsyscall": ZOO.splitlines()[-1],
    "bad perms": ZOO.replace("r-xp", "r-xq", 1),
    "overlap": ZOO.replace("00401000-00403000", "00400800-00403000", 1),
    "unaligned": ZOO.replace("00403000-00404000", "00403000-00403800", 1),
    "out of order": "\n".join(reversed(ZOO.splitlines()[:3])),
    "above TASK_SIZE": "7ffffffff000-800000000000 rw-p 00000000 00:00 0 \n",
    "unknown special": ZOO.replace("[vdso]", "[vdsx]"),
    "anon with offset": ZOO.replace("00406000-00407000 ---p 00000000", "00406000-00407000 ---p 00001000"),
    "file without a name": "00400000-00401000 r--p 00000000 fe:00 1234 \n",
    "hugetlb unaligned": ZOO.replace("7f0000000000-7f0000200000", "7f0000000000-7f0000001000", 1)
                            .replace("7f0000200000-7f0000201000 rw-p", "7f0000001000-7f0000201000 rw-p", 1),
    "not byte exact (short hex)": "1000000-1001000 rw-p 00000000 00:00 0 \n",
    "not byte exact (padding)": "00400000-00401000 r--p 00000000 fe:00 1234 /opt/app/bin/app\n",
    "bad anon name": ZOO.replace("[anon:arena]", "[anon:a$b]"),
    "shared anonymous without a file": ZOO.replace("00406000-00407000 ---p", "00406000-00407000 ---s"),
}


@pytest.mark.parametrize("name", sorted(BAD_LAYOUTS))
def test_malformed_layout_is_einval_and_changes_nothing(k: Kernel, fs: ProcFS, zoo: int, name: str) -> None:
    before = read_all(fs, f"/proc/{zoo}/maps")
    mm = k.group(zoo).mm
    files = dict(k.vfs.files)
    free = k.mem.nr_free
    with pytest.raises(KernelError) as e:
        k.exec(zoo, "/usr/bin/sleep", ["sleep"], layout=BAD_LAYOUTS[name])
    assert e.value.errno == errno.EINVAL
    assert k.group(zoo).mm is mm and read_all(fs, f"/proc/{zoo}/maps") == before
    assert k.vfs.files == files and k.mem.nr_free == free


@pytest.mark.parametrize("build_ids", [{"/nope": "00"}, {"/opt/app/bin/app": "xyz"},
                                       {"/opt/app/bin/app": "00" * 21}, {"[heap]": "00"}])
def test_bad_build_ids_are_einval_and_change_nothing(k: Kernel, fs: ProcFS, zoo: int, build_ids: dict) -> None:
    before = read_all(fs, f"/proc/{zoo}/maps")
    app = k.vfs.files.get("/opt/app/bin/app")
    bid = app.build_id if app else None
    with pytest.raises(CommandError) as e:
        execute(k, "exec", dict(pid=zoo, path="/opt/app/bin/app", layout=ZOO, build_ids=build_ids))
    assert e.value.errno == errno.EINVAL
    assert read_all(fs, f"/proc/{zoo}/maps") == before
    assert (app.build_id if app else None) == bid


def test_build_ids_need_a_layout(k: Kernel, zoo: int) -> None:
    with pytest.raises(CommandError) as e:
        execute(k, "exec", dict(pid=zoo, path="/usr/bin/sleep", build_ids={"/usr/bin/sleep": "00"}))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(CommandError) as e:
        execute(k, "exec", dict(pid=zoo, path="/usr/bin/sleep", layout=ZOO, build_ids=["x"]))
    assert e.value.errno == errno.EINVAL


def test_layout_process_forks_and_exits_cleanly(k: Kernel, fs: ProcFS, zoo: int) -> None:
    used = k.mem.hugetlb.in_use
    c = k.fork(zoo)
    assert read_all(fs, f"/proc/{c}/maps").decode() == ZOO
    k.touch(c, 0x7F0000203000, 2 * PAGE)
    k.touch(c, 0x7F0000000000, PAGE)  # a hugetlb fault (a fork child has no reservation of its own)
    assert k.mem.hugetlb.in_use == used + 1
    k.exit_group(c)
    k.exit_group(zoo)
    assert k.mem.hugetlb.in_use == used


def test_layout_from_scenario_activity(tmp_path) -> None:
    """`exec` in a scenario takes layout= and build_ids= too (docs/scenario-format.md)."""
    from procsim import scenario
    lines = ZOO.splitlines()[:3] + [ZOO.splitlines()[-2]]
    (tmp_path / "s.toml").write_text(f'''
[machine]
nr_cpus = 2
mem = "1G"

[[process]]
name = "app"
argv = ["/usr/bin/sleep", "100"]

[[activity]]
at = 0
op = "exec"
pid = "app"
path = "/opt/app/bin/app"
layout = """
{chr(10).join(lines)}
"""
build_ids = {{ "/opt/app/bin/app" = "abcd" }}
''')
    k = scenario.load(str(tmp_path / "s.toml"))
    pid = next(g.tgid for g in k.groups.values() if g.leader.comm == "app")
    fs = ProcFS(k)
    assert read_all(fs, f"/proc/{pid}/maps").decode().splitlines()[:-1] == lines
    assert query(maps_fd(fs, pid), 0x400000, bid_size=20).bid[:3] == b"\xab\xcdB"
