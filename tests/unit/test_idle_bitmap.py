"""Idle page tracking without FUSE: /proc/PID/idle_bitmap (spec §12, seed
§2.2 and §2.6 items 1-5) and /sys/kernel/mm/page_idle/bitmap (spec §14,
seed §2.6 item 6), the rmap behind the global bitmap across fork, shared
mappings, mremap, munmap and exit, and the flags kpageflags and smaps show."""

from __future__ import annotations

import errno
import os
import struct

import numpy as np
import pytest

from procsim.kernel import MADV_DONTNEED, MREMAP_FIXED, MREMAP_MAYMOVE
from procsim.mm import page_alloc as M
from procsim.mm.pagetable import PMD_SIZE, PTE_ACCESSED, pte_pfn
from procsim.mm.task_mmu import clear_refs
from procsim.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from procsim.procfs.idle_bitmap import IDLE_BITMAP_END
from procsim.procfs.tree import ProcFS
from procfs_helpers import NOBODY, ROOT, errno_of
from invariants import boot, check_world

PAGE = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
FILE = "/srv/data/blob.bin"
VA = 0x10000000        # seed §2.6 item 1: vpn 0x10000, word aligned
OFF = VA // 32768      # 0x2000
ONES = (1 << 64) - 1
GBASE = 0x4000000000   # 256 GiB: 1 GiB aligned, free in every layout


@pytest.fixture
def k():
    k = boot()
    yield k
    check_world(k)


@pytest.fixture
def fs(k) -> ProcFS:
    return ProcFS(k)


@pytest.fixture
def p(k) -> int:
    return k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)


def words(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def bits(*clear: int) -> int:
    w = ONES
    for b in clear:
        w &= ~(1 << b)
    return w


def idle_file(fs, pid, flags=os.O_RDWR, caller=ROOT):
    return fs.open(f"/proc/{pid}/idle_bitmap", flags, caller)


def global_file(fs, flags=os.O_RDWR):
    return fs.open("/sys/kernel/mm/page_idle/bitmap", flags, ROOT)


def pfn_of(k, pid, va) -> int:
    return int(pte_pfn(k.group(pid).mm.pgtable.read(va, va + PAGE))[0])


def gread(fs, pfn) -> int:
    """The global bit of one PFN."""
    h = global_file(fs)
    w = words(h.read(8, pfn // 64 * 8))[0]
    return w >> (pfn % 64) & 1


def gmark(fs, *pfns) -> None:
    h = global_file(fs)
    for pfn in pfns:
        assert h.write(struct.pack("<Q", 1 << (pfn % 64)), pfn // 64 * 8) == 8


# -- /proc/PID/idle_bitmap ----------------------------------------------------------

def test_touched_pages_read_zero_then_one(k, fs, p):
    """Seed §2.6 items 1 and 2."""
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.access(p, VA + PAGE * np.array([0, 5, 63]), write=True)
    h = idle_file(fs, p)
    assert words(h.read(8, OFF)) == [bits(0, 5, 63)]
    assert words(h.read(8, OFF)) == [ONES]  # the read cleared the A bits
    k.access(p, np.array([VA + 5 * PAGE]), write=False)
    assert words(h.read(8, OFF)) == [bits(5)]


def test_present_but_not_accessed_is_idle(k, fs, p):
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 64 * PAGE)
    clear_refs(k.group(p).mm, 1)
    assert words(idle_file(fs, p).read(8, OFF)) == [ONES]


@pytest.mark.parametrize("size,offset", [(8, OFF + 4), (4, OFF), (12, OFF), (9, OFF)])
def test_unaligned_read_and_write_are_einval(k, fs, p, size, offset):
    """Seed §2.6 item 3; nothing changes."""
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, PAGE)
    h = idle_file(fs, p)
    assert errno_of(h.read, size, offset) == errno.EINVAL
    assert errno_of(h.write, b"\xff" * size, offset) == errno.EINVAL
    assert words(h.read(8, OFF)) == [bits(0)]


def test_holes_read_all_ones(k, fs, p):
    """Seed §2.6 item 4: no VMA, or a VMA with no page tables yet."""
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    h = idle_file(fs, p)
    assert h.read(4096, OFF) == b"\xff" * 4096
    assert h.read(64, (1 << 44) // 32768) == b"\xff" * 64


def test_thp_pmd_is_512_bits_and_an_idle_pmd_costs_one_step(fs, p):
    """Seed §2.6 item 5."""
    k = fs.kernel
    k.set_thp(enabled="always")
    k.mmap(p, PMD_SIZE, RW, ANON | MAP_FIXED, GBASE)
    k.touch(p, GBASE, PAGE)
    pt = k.group(p).mm.pgtable
    assert GBASE >> 21 in pt.huge
    h = idle_file(fs, p)
    off = GBASE // 32768
    assert h.read(64, off) == b"\0" * 64          # accessed leaf PMD: 512 zeros
    steps = pt.walk_steps
    assert h.read(64, off) == b"\xff" * 64        # cleared: 512 ones
    assert pt.walk_steps - steps == 1             # the PUD above, in one step
    k.access(p, np.array([GBASE + 100 * PAGE]), write=False)
    assert h.read(64, off) == b"\0" * 64          # one access: the whole PMD


def test_an_idle_pmd_is_skipped_without_its_ptes(fs, p):
    k = fs.kernel
    k.mmap(p, 2 * PMD_SIZE, RW, ANON | MAP_FIXED, GBASE)
    k.touch(p, GBASE, 2 * PMD_SIZE)
    pt = k.group(p).mm.pgtable
    h = idle_file(fs, p)
    off, n = GBASE // 32768, 2 * 64  # two PMDs: 128 bytes, a part of the PUD
    steps = pt.walk_steps
    assert h.read(n, off) == b"\0" * n
    assert pt.walk_steps - steps == 2 * 513       # both PMDs and their 512 PTEs
    k.access(p, np.array([GBASE + PMD_SIZE + 3 * PAGE]), write=False)
    steps = pt.walk_steps
    assert words(h.read(n, off)) == [ONES] * 8 + [bits(3)] + [ONES] * 7
    assert pt.walk_steps - steps == 1 + 513       # the idle PMD in one step
    # a whole 1 GiB read: every PMD idle now, the PUD is left old
    h.read(32768, off)
    steps = pt.walk_steps
    assert h.read(32768, off) == b"\xff" * 32768
    assert pt.walk_steps - steps == 1


def test_a_partial_read_keeps_the_rest_of_the_table(k, fs, p):
    """A read of one word tests and clears only its 64 pages: an access
    elsewhere in the same PTE table is still reported by a later read."""
    k.mmap(p, 128 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.access(p, VA + PAGE * np.array([1, 100]), write=True)
    h = idle_file(fs, p)
    assert words(h.read(8, OFF)) == [bits(1)]
    assert words(h.read(8, OFF + 8)) == [bits(100 - 64)]
    assert words(h.read(16, OFF)) == [ONES, ONES]


def test_a_read_is_seen_by_files_rendered_before(k, fs, p):
    """smaps_rollup rendered before an idle_bitmap read (and cached) must
    not be served after it: the read cleared the accessed bits behind
    Referenced."""
    k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 4 * PAGE)

    def referenced() -> int:
        text = fs.open(f"/proc/{p}/smaps_rollup", os.O_RDONLY, ROOT).read(1 << 20, 0).decode()
        return int(next(line for line in text.splitlines() if line.startswith("Referenced:")).split()[1])

    before = referenced()
    idle_file(fs, p).read(8, OFF)
    assert referenced() == before - 16


def test_writes_or_in_idle_bits(k, fs, p):
    """A 1 bit clears that page's accessed bit, a 0 bit leaves it."""
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 64 * PAGE)
    h = idle_file(fs, p)
    assert h.write(struct.pack("<Q", 1 << 3 | 1 << 9), OFF) == 8
    assert words(h.read(8, OFF)) == [(1 << 3) | (1 << 9)]
    # an all-zero write changes nothing
    k.access(p, np.array([VA]), write=False)
    assert h.write(b"\0" * 8, OFF) == 8
    assert words(h.read(8, OFF)) == [bits(0)]


def test_end_of_user_space(k, fs, p):
    h = idle_file(fs, p)
    assert IDLE_BITMAP_END == 1 << 32
    assert h.read(8, IDLE_BITMAP_END) == b""
    assert len(h.read(64, IDLE_BITMAP_END - 8)) == 8      # clipped
    assert errno_of(h.write, b"\xff" * 8, IDLE_BITMAP_END) == errno.ENXIO
    assert h.write(b"\xff" * 16, IDLE_BITMAP_END - 8) == 8


def test_open_checks_and_mm_gone(k, fs, p):
    assert errno_of(fs.open, f"/proc/{p}/idle_bitmap", os.O_RDONLY, NOBODY) == errno.EACCES
    assert errno_of(fs.open, "/proc/2/idle_bitmap", os.O_RDONLY, ROOT) == errno.ESRCH  # kthread
    assert fs.getattr(f"/proc/{p}/idle_bitmap", ROOT).mode & 0o7777 == 0o600
    assert fs.getattr(f"/proc/{p}/task/{p}/idle_bitmap", ROOT).mode & 0o7777 == 0o600
    c = k.fork(p)
    h = idle_file(fs, c)
    t = fs.open(f"/proc/{c}/task/{c}/idle_bitmap", os.O_RDWR, ROOT)
    k.exit_group(c)
    assert h.read(8, OFF) == b"" and t.read(8, OFF) == b""
    assert errno_of(h.write, b"\xff" * 8, OFF) == errno.ESRCH


def test_hugetlb_entry_is_one_bit_for_2mib():
    k = boot(hugepages=2)
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    MAP_HUGETLB = 0x40000
    k.mmap(p, PMD_SIZE, RW, ANON | MAP_FIXED | MAP_HUGETLB, GBASE)
    k.touch(p, GBASE, PAGE)
    h = idle_file(fs, p)
    off = GBASE // 32768
    assert h.read(64, off) == b"\0" * 64
    assert h.read(64, off) == b"\xff" * 64
    check_world(k)


def test_empty_reservation_costs_nothing(k, fs, p):
    k.mmap(p, 1 << 40, PROT_READ, ANON | MAP_FIXED, 1 << 44)
    pt = k.group(p).mm.pgtable
    h = idle_file(fs, p)
    steps = pt.walk_steps
    assert h.read(1 << 20, (1 << 44) // 32768) == b"\xff" * (1 << 20)
    assert pt.walk_steps == steps


# -- /sys/kernel/mm/page_idle/bitmap -----------------------------------------------------

def test_global_idle_then_access(k, fs, p):
    """Seed §2.6 item 6."""
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 2 * PAGE)
    a, b = pfn_of(k, p, VA), pfn_of(k, p, VA + PAGE)
    gmark(fs, a, b)
    assert gread(fs, a) == 1 and gread(fs, b) == 1
    k.access(p, np.array([VA]), write=False)
    assert gread(fs, a) == 0 and gread(fs, b) == 1
    assert gread(fs, a) == 0  # stays accessed until marked again


def test_global_write_clears_accessed_bits_and_remembers_young(k, fs, p):
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, PAGE)
    pfn = pfn_of(k, p, VA)
    gmark(fs, pfn)
    pte = k.group(p).mm.pgtable.read(VA, VA + PAGE)[0]
    assert not pte & PTE_ACCESSED
    fl = int(k.mem.flags[pfn])
    assert fl & M.PG_IDLE and fl & M.PG_YOUNG
    # smaps still counts the access (young flag); clear_refs forgets it
    smaps = fs.open(f"/proc/{p}/smaps", os.O_RDONLY, ROOT).read(1 << 20, 0).decode()
    block = smaps[smaps.index(f"{VA:08x}-"):]
    assert "Referenced:            4 kB" in block.split("VmFlags")[0]
    # the per-process bitmap no longer sees the access (its A bit is gone)
    assert words(idle_file(fs, p).read(8, OFF))[0] & 1 == 1


def test_global_kpageflags_idle_bit(k, fs, p):
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, PAGE)
    pfn = pfn_of(k, p, VA)
    kpf = fs.open("/proc/kpageflags", os.O_RDONLY, ROOT)
    assert not words(kpf.read(8, pfn * 8))[0] >> 25 & 1
    gmark(fs, pfn)
    assert words(kpf.read(8, pfn * 8))[0] >> 25 & 1


def test_global_non_user_pages_read_zero_and_are_not_marked(k, fs, p):
    k.set_thp(enabled="always")
    k.mmap(p, PMD_SIZE, RW, ANON | MAP_FIXED, GBASE)
    k.touch(p, GBASE, PAGE)
    head = pfn_of(k, p, GBASE)
    h = global_file(fs)
    # mark the whole THP and PFN 0..63 (kernel pages)
    h.write(b"\xff" * 64, head // 64 * 8)
    h.write(b"\xff" * 8, 0)
    assert words(h.read(8, 0)) == [0]
    w = words(h.read(64, head // 64 * 8))
    assert w[0] == 1 and all(x == 0 for x in w[1:])  # only the head page
    assert not k.mem.flags[head + 1] & M.PG_IDLE
    k.access(p, np.array([GBASE + 77 * PAGE]), write=False)  # a tail page, through the PMD
    assert gread(fs, head) == 0


def test_global_errors_and_limits(k, fs):
    max_pfn = k.mem.nr_pages
    h = global_file(fs)
    assert errno_of(h.read, 8, 4) == errno.EINVAL
    assert errno_of(h.read, 4, 0) == errno.EINVAL
    assert errno_of(h.write, b"\xff" * 4, 0) == errno.EINVAL
    assert errno_of(h.write, b"\xff" * 8, 12) == errno.EINVAL
    end = max_pfn // 8
    assert h.read(8, end) == b""
    assert h.read(8, end + 4096) == b""
    assert errno_of(h.write, b"\xff" * 8, end) == errno.ENXIO
    assert len(h.read(1 << 20, 0)) == 4096          # one page per call
    assert h.write(b"\0" * 8192, 0) == 4096
    assert len(h.read(64, end - 8)) == 8            # clipped at max_pfn


def test_global_partial_last_word():
    k = boot(mem_bytes=(1 << 30) + 40 * PAGE)  # max_pfn not a multiple of 64
    fs = ProcFS(k)
    max_pfn = k.mem.nr_pages
    assert max_pfn % 64 == 40
    h = global_file(fs)
    last = max_pfn // 64 * 8
    assert len(h.read(4096, last)) == 8
    assert h.write(b"\xff" * 64, last) == 8
    assert words(h.read(8, last)) == [0]  # past max_pfn: no page, 0


def test_global_dirs(fs):
    assert fs.readdir("/sys/kernel/mm/page_idle", ROOT) == ["bitmap"]
    assert fs.getattr("/sys/kernel/mm/page_idle/bitmap", ROOT).mode & 0o7777 == 0o600


# -- rmap ----------------------------------------------------------------------------

def test_rmap_across_fork_and_cow(k, fs, p):
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 2 * PAGE)
    c = k.fork(p)
    a = pfn_of(k, p, VA)
    assert pfn_of(k, c, VA) == a
    gmark(fs, a)
    for pid in (p, c):  # both PTEs lost their A bit
        assert not k.group(pid).mm.pgtable.read(VA, VA + PAGE)[0] & PTE_ACCESSED
    k.access(c, np.array([VA]), write=False)  # the child reads it
    assert gread(fs, a) == 0
    # COW: the child's write gives it a new page; the parent's stays findable
    k.access(c, np.array([VA + PAGE]), write=True)
    b, cb = pfn_of(k, p, VA + PAGE), pfn_of(k, c, VA + PAGE)
    assert b != cb
    gmark(fs, b, cb)
    k.access(c, np.array([VA + PAGE]), write=False)
    assert gread(fs, b) == 1 and gread(fs, cb) == 0
    k.access(p, np.array([VA + PAGE]), write=False)
    assert gread(fs, b) == 0


def test_rmap_shared_file_page_in_two_processes(k, fs, p):
    q = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    k.mmap(p, PAGE, PROT_READ, MAP_SHARED, VA, path=FILE)
    k.mmap(q, PAGE, PROT_READ, MAP_SHARED, VA + 64 * PAGE, path=FILE)
    k.touch(p, VA, PAGE, write=False)
    k.touch(q, VA + 64 * PAGE, PAGE, write=False)
    pfn = pfn_of(k, p, VA)
    assert pfn_of(k, q, VA + 64 * PAGE) == pfn
    gmark(fs, pfn)
    assert not k.group(p).mm.pgtable.read(VA, VA + PAGE)[0] & PTE_ACCESSED
    assert not k.group(q).mm.pgtable.read(VA + 64 * PAGE, VA + 65 * PAGE)[0] & PTE_ACCESSED
    assert gread(fs, pfn) == 1
    k.access(q, np.array([VA + 64 * PAGE]), write=False)
    assert gread(fs, pfn) == 0


def test_rmap_after_mremap_move(k, fs, p):
    k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 4 * PAGE)
    pfn = pfn_of(k, p, VA + 2 * PAGE)
    dest = VA + (1 << 30)
    assert k.mremap(p, VA, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dest) == dest
    assert pfn_of(k, p, dest + 2 * PAGE) == pfn
    gmark(fs, pfn)
    assert not k.group(p).mm.pgtable.read(dest + 2 * PAGE, dest + 3 * PAGE)[0] & PTE_ACCESSED
    k.access(p, np.array([dest + 2 * PAGE]), write=False)
    assert gread(fs, pfn) == 0


def test_unmapped_and_exited_pages_read_zero(k, fs, p):
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 2 * PAGE)
    a, b = pfn_of(k, p, VA), pfn_of(k, p, VA + PAGE)
    gmark(fs, a, b)
    k.munmap(p, VA, PAGE)
    assert gread(fs, a) == 0 and gread(fs, b) == 1
    k.exit_group(p)
    assert gread(fs, b) == 0


# -- every path that sets an accessed bit makes its PMD young again -------------------

def _scan_twice(h, off, n=8):
    h.read(n, off)
    assert h.read(n, off) == b"\xff" * n  # now idle: the PMD is old


def test_fault_into_an_old_pmd_is_seen(k, fs, p):
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, PAGE)
    h = idle_file(fs, p)
    _scan_twice(h, OFF)
    k.touch(p, VA + 9 * PAGE, PAGE)            # a new page, same PTE table
    assert words(h.read(8, OFF)) == [bits(9)]


def test_mremap_into_an_old_pmd_is_seen(k, fs, p):
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, PAGE)
    other = VA + (1 << 30)
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED, other)
    k.touch(p, other, PAGE)
    h = idle_file(fs, p)
    _scan_twice(h, OFF)
    # the touched page moves into the old table, its A bit with it
    k.access(p, np.array([other]), write=False)
    k.mremap(p, other, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, VA + 20 * PAGE)
    assert words(h.read(8, OFF)) == [bits(20)]


def test_thp_fault_into_an_old_pmd_index_is_seen(fs, p):
    k = fs.kernel
    k.set_thp(enabled="always")
    k.mmap(p, PMD_SIZE, RW, ANON | MAP_FIXED, GBASE)
    k.touch(p, GBASE, PAGE)
    h = idle_file(fs, p)
    off = GBASE // 32768
    _scan_twice(h, off, 64)
    k.madvise(p, GBASE, PMD_SIZE, MADV_DONTNEED)  # the PMD goes
    assert GBASE >> 21 not in k.group(p).mm.pgtable.tables
    k.touch(p, GBASE, PAGE)                     # a new THP at the same index
    assert GBASE >> 21 in k.group(p).mm.pgtable.huge
    assert h.read(64, off) == b"\0" * 64


def test_fork_child_sees_its_own_accesses(k, fs, p):
    k.mmap(p, 64 * PAGE, RW, ANON | MAP_FIXED, VA)
    k.touch(p, VA, 64 * PAGE)
    h = idle_file(fs, p)
    _scan_twice(h, OFF)
    c = k.fork(p)
    hc = idle_file(fs, c)
    # fork copies the PTEs with their (cleared) A bits
    assert words(hc.read(8, OFF)) == [ONES]
    k.access(c, np.array([VA + 2 * PAGE]), write=False)
    assert words(hc.read(8, OFF)) == [bits(2)]
    assert words(h.read(8, OFF)) == [ONES]      # not the parent's


def test_table_pool_rows_are_reused_clean(k, p):
    pt = k.group(p).mm.pgtable
    k.mmap(p, 4 * PMD_SIZE, RW, ANON | MAP_FIXED, GBASE)
    k.touch(p, GBASE, 4 * PMD_SIZE)
    rows = {i: pt.tables.rows[i] for i in range(GBASE >> 21, (GBASE >> 21) + 4)}
    k.munmap(p, GBASE, 2 * PMD_SIZE)
    assert (GBASE >> 21) not in pt.tables and (GBASE >> 21) not in pt.tables.rows
    k.mmap(p, PMD_SIZE, RW, ANON | MAP_FIXED, GBASE + (1 << 30))
    k.touch(p, GBASE + (1 << 30), PAGE)
    t = pt.tables[(GBASE + (1 << 30)) >> 21]
    assert pt.tables.rows[(GBASE + (1 << 30)) >> 21] in rows.values()  # a freed row, reused
    assert np.count_nonzero(t) == 1
    assert t.base is not None  # a view of a pool block


def test_global_idle_finds_a_copied_vdso_page(k, fs, p):
    """A [vdso] made writable and written holds private anonymous copies
    (wp_page_copy gives the VMA an anon_vma): the rmap walk must reach them
    there, or marking one idle leaves its accessed bit set and a new access
    goes unseen. (The walk used to skip special VMAs.)"""
    mm = k.group(p).mm
    (v,) = [v for v in mm.vmas if v.special == "[vdso]"]
    k.mprotect(p, v.start, v.end - v.start, PROT_READ | PROT_WRITE)
    k.touch(p, v.start, PAGE)
    pfn = pfn_of(k, p, v.start)
    assert k.mem.flags[pfn] & M.PG_ANON
    gmark(fs, pfn)
    assert not mm.pgtable.read(v.start, v.start + PAGE)[0] & PTE_ACCESSED
    assert gread(fs, pfn) == 1
    k.access(p, np.array([v.start]), write=False)
    assert gread(fs, pfn) == 0
