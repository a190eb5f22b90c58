"""The mm core at the syscall level: VMA split and merge, flags, counters,
brk, mremap, madvise, faults and COW, fork and exit, exec layout, errors."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from procsim import Kernel
from procsim.kernel import (LDSO, LIBC, MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MREMAP_FIXED, MREMAP_MAYMOVE,
                            KernelError)
from procsim.mm.mm import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, ZERO_PFN, MMError
from procsim.mm.pagetable import PMD_SIZE, PTE_RW, pte_pfn
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_LOCKED,
                            MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MNEMONICS, PROT_EXEC, PROT_NONE,
                            PROT_READ, PROT_WRITE)
from procsim.mm import page_alloc as M
from procsim.mm import stats
from procsim.procfs.maps import maps_line, vma_name
from invariants import check_world, snapshot, vm_counters

PAGE = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
SHANON = MAP_SHARED | MAP_ANONYMOUS
BASE = 0x100000000  # 4 GiB: free in every exec layout, 2 MiB aligned
FILE = "/srv/data/blob.bin"


@pytest.fixture
def p(k: Kernel) -> int:
    return k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)


@pytest.fixture(autouse=True)
def _consistent(k: Kernel):
    """Every scenario must leave the world consistent."""
    yield
    check_world(k)


def mm_of(k: Kernel, pid: int):
    return k.group(pid).mm


def vmflags(v) -> str:
    """smaps VmFlags: mnemonics in bit order ('??' for a bit without one)."""
    out = []
    for bit in range(64):
        if v.flags >> bit & 1:
            code = MNEMONICS.get(bit, "??")
            if code:
                out.append(code)
    return " ".join(out)


def layout(mm, lo: int = BASE, hi: int = BASE + (1 << 30)) -> list[tuple[int, int, str]]:
    """(first page, page count, perms) relative to lo of every VMA in [lo, hi)."""
    return [((v.start - lo) // PAGE, v.npages, v.perms()) for v in mm.vmas.overlapping(lo, hi)]


def pfns(mm, addr: int, npages: int) -> np.ndarray:
    """PFN of every page (-1 where nothing is mapped)."""
    ptes = mm.pgtable.read(addr, addr + npages * PAGE)
    out = pte_pfn(ptes)
    out[ptes == 0] = -1
    return out


def writable(mm, addr: int, npages: int) -> np.ndarray:
    return (mm.pgtable.read(addr, addr + npages * PAGE) & PTE_RW) != 0


def file_vmas(mm, path: str) -> list:
    return [v for v in mm.vmas if v.file is not None and v.file.path == path]


def special(mm, name: str):
    (v,) = [v for v in mm.vmas if v.special == name]
    return v


# -- split and merge (spec §3.2) ---------------------------------------------------


def test_mprotect_middle_splits_in_three_and_restoring_merges(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 6 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, a, 6 * PAGE)
    assert layout(mm) == [(0, 6, "rw-p")]
    k.mprotect(p, a + 2 * PAGE, 2 * PAGE, PROT_READ)
    assert layout(mm) == [(0, 2, "rw-p"), (2, 2, "r--p"), (4, 2, "rw-p")]
    assert mm.rss[MM_ANONPAGES] - 6 >= 0
    k.mprotect(p, a + 2 * PAGE, 2 * PAGE, RW)
    assert layout(mm) == [(0, 6, "rw-p")]


def test_mprotect_and_mlock_make_four_lines(k, p):
    # the spec's observed case, with mlock standing in for MADV_DONTDUMP
    mm = mm_of(k, p)
    a = k.mmap(p, 6 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mprotect(p, a + 2 * PAGE, 2 * PAGE, PROT_READ)
    k.mlock(p, a + 4 * PAGE, PAGE)
    assert layout(mm) == [(0, 2, "rw-p"), (2, 2, "r--p"), (4, 1, "rw-p"), (5, 1, "rw-p")]
    assert [vmflags(v) for v in mm.vmas.overlapping(BASE, BASE + 6 * PAGE)] == [
        "rd wr mr mw me ac", "rd mr mw me ac", "rd wr mr mw me lo ac", "rd wr mr mw me ac"]
    k.mlock(p, a + 4 * PAGE, PAGE, on=False)
    k.mprotect(p, a, 6 * PAGE, RW)
    assert layout(mm) == [(0, 6, "rw-p")]


def test_mprotect_spanning_two_vmas_merges_into_the_neighbour(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 4 * PAGE, PROT_READ, ANON | MAP_FIXED, BASE)
    k.mmap(p, 4 * PAGE, PROT_READ | PROT_EXEC, ANON | MAP_FIXED, BASE + 4 * PAGE)
    assert layout(mm) == [(0, 4, "r--p"), (4, 4, "r-xp")]
    # the last page of the first and the first of the second become r-x: the
    # first VMA shrinks and the second grows down (one merge across both)
    k.mprotect(p, BASE + 3 * PAGE, 2 * PAGE, PROT_READ | PROT_EXEC)
    assert layout(mm) == [(0, 3, "r--p"), (3, 5, "r-xp")]


def test_adjacent_anon_mmaps_merge(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, BASE + 2 * PAGE)
    assert layout(mm) == [(0, 6, "rw-p")]
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE - 2 * PAGE)  # below, too
    assert layout(mm, BASE - 2 * PAGE) == [(0, 8, "rw-p")]
    # different flags: no merge
    k.mmap(p, PAGE, PROT_READ, ANON | MAP_FIXED, BASE + 6 * PAGE)
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED | MAP_NORESERVE, BASE + 7 * PAGE)
    assert layout(mm, BASE - 2 * PAGE) == [(0, 8, "rw-p"), (8, 1, "r--p"), (9, 1, "rw-p")]


def test_consecutive_anon_mmaps_are_placed_top_down_and_merge(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 3 * PAGE)
    b = k.mmap(p, 5 * PAGE)
    assert b + 5 * PAGE == a
    assert mm.vmas.lookup(a) is mm.vmas.lookup(b)
    assert mm.vmas.lookup(a).npages >= 8


def test_touched_neighbours_with_different_anon_vmas_do_not_merge(k, p):
    # is_mergeable_anon_vma: both sides have anonymous pages of their own
    mm = mm_of(k, p)
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mmap(p, 2 * PAGE, RW | PROT_EXEC, ANON | MAP_FIXED, BASE + 2 * PAGE)
    k.touch(p, BASE, PAGE)
    k.touch(p, BASE + 2 * PAGE, PAGE)
    k.mprotect(p, BASE + 2 * PAGE, 2 * PAGE, RW)
    assert layout(mm) == [(0, 2, "rw-p"), (2, 2, "rw-p")]
    # while a neighbour without anonymous pages merges
    k.mmap(p, 2 * PAGE, RW | PROT_EXEC, ANON | MAP_FIXED, BASE - 2 * PAGE)
    k.mprotect(p, BASE - 2 * PAGE, 2 * PAGE, RW)
    assert layout(mm, BASE - 2 * PAGE) == [(0, 4, "rw-p"), (4, 2, "rw-p")]
    # an untouched neighbour has no anon_vma yet and merges
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE + 4 * PAGE)
    assert layout(mm, BASE - 2 * PAGE) == [(0, 4, "rw-p"), (4, 4, "rw-p")]


def test_file_mappings_merge_only_with_contiguous_pgoff(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 2 * PAGE, PROT_READ, MAP_PRIVATE, BASE, path=FILE, offset=0)
    k.mmap(p, 2 * PAGE, PROT_READ, MAP_PRIVATE, BASE + 2 * PAGE, path=FILE, offset=2 * PAGE)
    assert layout(mm) == [(0, 4, "r--p")]
    assert mm.vmas.lookup(BASE).pgoff == 0
    # offset 5 pages after a VMA that ends at file page 4: no merge
    k.mmap(p, 2 * PAGE, PROT_READ, MAP_PRIVATE, BASE + 4 * PAGE, path=FILE, offset=5 * PAGE)
    assert layout(mm) == [(0, 4, "r--p"), (4, 2, "r--p")]
    # another file at the right offset: no merge
    k.mmap(p, PAGE, PROT_READ, MAP_PRIVATE, BASE + 6 * PAGE, path="/srv/data/other", offset=7 * PAGE)
    assert len(layout(mm)) == 3
    # a file VMA and an anonymous one never merge
    k.mmap(p, PAGE, PROT_READ, ANON | MAP_FIXED, BASE + 7 * PAGE)
    assert len(layout(mm)) == 4
    line = maps_line(mm, mm.vmas.lookup(BASE + 4 * PAGE))
    assert line.split()[2] == "00005000" and line.rstrip().endswith(FILE)


def test_munmap_middle_splits_and_keeps_file_offsets(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 8 * PAGE, PROT_READ, MAP_PRIVATE, BASE, path=FILE, offset=4 * PAGE)
    k.touch(p, BASE, 8 * PAGE, write=False)
    cache = mm.vmas.lookup(BASE).file.cache
    before = pfns(mm, BASE, 8)
    assert list(before) == list(cache[4:12])  # page i of the VMA is file page 4 + i
    k.munmap(p, BASE + 3 * PAGE, 2 * PAGE)
    assert layout(mm) == [(0, 3, "r--p"), (5, 3, "r--p")]
    assert mm.vmas.lookup(BASE + 5 * PAGE).pgoff == 9
    assert list(pfns(mm, BASE, 8)) == list(before[:3]) + [-1, -1] + list(before[5:])
    # mapping the hole again at the right offset merges all three back
    k.mmap(p, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, BASE + 3 * PAGE, path=FILE, offset=7 * PAGE)
    assert layout(mm) == [(0, 8, "r--p")]


def test_fault_in_the_middle_of_a_file_vma_maps_that_file_page(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 16 * PAGE, PROT_READ, MAP_PRIVATE, BASE, path=FILE, offset=0)
    k.touch(p, BASE + 9 * PAGE, PAGE, write=False)
    k.touch(p, BASE + 2 * PAGE, PAGE, write=False)
    cache = mm.vmas.lookup(BASE).file.cache
    got = pfns(mm, BASE, 16)
    assert got[9] == cache[9] and got[2] == cache[2] and cache[9] != cache[2]
    assert (got[[0, 1, 3, 4, 5, 6, 7, 8] + list(range(10, 16))] == -1).all()


# -- VmFlags per mapping kind (spec §2.3 table) -----------------------------------------


def test_exec_mapping_flags(k, p):
    mm = mm_of(k, p)
    for path in ("/usr/bin/bash", LIBC, LDSO):
        segs = file_vmas(mm, path)
        assert [v.perms() for v in segs] == ["r--p", "r-xp", "r--p", "r--p", "rw-p"], path
        assert [vmflags(v) for v in segs] == [
            "rd mr mw me",            # ELF headers
            "rd ex mr mw me",         # text
            "rd mr mw me",            # rodata
            "rd mr mw me ac",         # RELRO after mprotect
            "rd wr mr mw me ac",      # data
        ], path
    assert vmflags(special(mm, "[vdso]")) == "rd ex mr mw me de"
    assert special(mm, "[vdso]").perms() == "r-xp"
    for name in ("[vvar]", "[vvar_vclock]"):
        assert vmflags(special(mm, name)) == "rd mr pf io de dd"
        assert special(mm, name).perms() == "r--p"
    heap = mm.vmas.lookup(mm.start_brk)
    assert vmflags(heap) == "rd wr mr mw me ac" and vma_name(mm, heap) == "[heap]"
    stack = mm.vmas.lookup(mm.start_stack)
    assert vmflags(stack) == "rd wr mr mw me gd ac" and vma_name(mm, stack) == "[stack]"


@pytest.mark.parametrize("prot, flags, kw, perms, expect", [
    (RW, ANON, {}, "rw-p", "rd wr mr mw me ac"),
    (PROT_NONE, ANON, {}, "---p", "mr mw me"),
    (PROT_WRITE, ANON, {}, "-w-p", "wr mr mw me ac"),
    (PROT_READ, ANON, {}, "r--p", "rd mr mw me"),
    (RW, SHANON, {}, "rw-s", "rd wr sh mr mw me ms"),
    (PROT_READ, MAP_SHARED, dict(path=FILE, writable=True), "r--s", "rd sh mr mw me ms"),
    (RW, MAP_SHARED, dict(path=FILE, writable=True), "rw-s", "rd wr sh mr mw me ms"),
    (PROT_READ, MAP_SHARED, dict(path=FILE, writable=False), "r--s", "rd mr me ms"),
    (RW, MAP_PRIVATE, dict(path=FILE), "rw-p", "rd wr mr mw me ac"),
    (PROT_READ | PROT_EXEC, MAP_PRIVATE, dict(path=FILE), "r-xp", "rd ex mr mw me"),
    (RW, ANON | MAP_GROWSDOWN, {}, "rw-p", "rd wr mr mw me gd ac"),
    (RW, ANON | MAP_NORESERVE, {}, "rw-p", "rd wr mr mw me nr"),
    (PROT_READ, ANON | MAP_NORESERVE, {}, "r--p", "rd mr mw me nr"),
    (RW, SHANON | MAP_NORESERVE, {}, "rw-s", "rd wr sh mr mw me ms nr"),
    (RW, ANON | MAP_LOCKED, {}, "rw-p", "rd wr mr mw me lo ac"),
])
def test_mmap_flags(k, p, prot, flags, kw, perms, expect):
    mm = mm_of(k, p)
    a = k.mmap(p, 3 * PAGE, prot, flags | MAP_FIXED, BASE, **kw)
    v = mm.vmas.lookup(a)
    assert (v.start, v.end) == (a, a + 3 * PAGE)
    assert v.perms() == perms
    assert vmflags(v) == expect


def test_shared_file_mode_is_per_open_not_per_inode(k, p):
    # an earlier O_RDWR mapping of the inode must not make a later O_RDONLY one writable
    mm = mm_of(k, p)
    k.mmap(p, PAGE, PROT_READ, MAP_SHARED, path=FILE, writable=True)
    b = k.mmap(p, PAGE, PROT_READ, MAP_SHARED, path=FILE, offset=8 * PAGE, writable=False)
    assert vmflags(mm.vmas.lookup(b)) == "rd mr me ms"
    with pytest.raises(KernelError) as e:
        k.mprotect(p, b, PAGE, RW)
    assert e.value.errno == errno.EACCES


def test_shared_anon_name_and_device(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 3 * PAGE, RW, SHANON)
    f = maps_line(mm, mm.vmas.lookup(a)).split()
    assert f[1:4] == ["rw-s", "00000000", "00:01"] and f[-2:] == ["/dev/zero", "(deleted)"]


def test_mlock_flags_and_onfault(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 2 * PAGE, RW)
    b = k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, a - 4 * PAGE)
    k.mlock(p, a, 2 * PAGE)
    k.mlock(p, b, 2 * PAGE, onfault=True)
    assert vmflags(mm.vmas.lookup(a)) == "rd wr mr mw me lo ac"
    assert vmflags(mm.vmas.lookup(b)) == "rd wr mr mw me lo lf ac"
    # mlock populates (with write faults: real pages, not the zero page); ONFAULT does not
    assert (pfns(mm, a, 2) > ZERO_PFN).all() and (pfns(mm, b, 2) == -1).all()
    k.mlock(p, b, 2 * PAGE, on=False)
    assert vmflags(mm.vmas.lookup(b)) == "rd wr mr mw me ac"


def test_mlock_replaces_onfault(k, p):
    # apply_vma_lock_flags(): plain mlock after mlock2(MLOCK_ONFAULT) drops lf
    mm = mm_of(k, p)
    a = k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mlock(p, a, 2 * PAGE, onfault=True)
    k.mlock(p, a, PAGE)
    assert [vmflags(v) for v in mm.vmas.overlapping(a, a + 2 * PAGE)] == [
        "rd wr mr mw me lo ac", "rd wr mr mw me lo lf ac"]
    assert mm.locked_vm == 2 and pfns(mm, a, 2)[0] > ZERO_PFN and pfns(mm, a, 2)[1] == -1


def test_unchanged_flags_do_not_split(k, p):
    # mprotect/mlock to the flags a VMA already has leave it whole, even [vdso]
    mm = mm_of(k, p)
    vdso, vvar = special(mm, "[vdso]"), special(mm, "[vvar]")
    n = len(mm.vmas)
    k.mprotect(p, vdso.start, PAGE, PROT_READ | PROT_EXEC)
    k.mprotect(p, vvar.start + PAGE, PAGE, PROT_READ)
    assert len(mm.vmas) == n and special(mm, "[vdso]").npages == 2
    a = k.mmap(p, 4 * PAGE, RW, ANON | MAP_LOCKED | MAP_FIXED, BASE)
    k.mlock(p, a + PAGE, PAGE)
    assert layout(mm) == [(0, 4, "rw-p")]
    # a real change to part of the vDSO would split it: EINVAL, as observed on
    # 6.18 (special_mapping_split; this used to split it for good)
    n = len(mm.vmas)
    with pytest.raises(OSError) as e:
        k.mprotect(p, vdso.start, PAGE, PROT_READ)
    assert e.value.errno == errno.EINVAL
    assert len(mm.vmas) == n and special(mm, "[vdso]").npages == 2


def test_mlock_skips_special_and_inaccessible_vmas(k, p):
    mm = mm_of(k, p)
    vvar = special(mm, "[vvar]")
    before = snapshot(k)
    k.mlock(p, vvar.start, vvar.end - vvar.start)  # VM_SPECIAL: nothing changes, no error
    assert snapshot(k) == before
    a = k.mmap(p, 4 * PAGE, PROT_NONE)
    k.mlock(p, a, 4 * PAGE)  # PROT_NONE: locked, not populated
    assert vmflags(mm.vmas.lookup(a)) == "mr mw me lo" and (pfns(mm, a, 4) == -1).all()
    b = k.mmap(p, 2 * PAGE, PROT_NONE, ANON | MAP_LOCKED)
    assert mm.vmas.lookup(b).npages >= 2 and (pfns(mm, b, 2) == -1).all()


# -- counters (spec §2.1) ---------------------------------------------------------------


def counters(mm) -> dict[str, int]:
    return {n: getattr(mm, n) for n in ("total_vm", "data_vm", "exec_vm", "stack_vm", "locked_vm", "committed_vm")}


def test_counters_follow_vma_sizes(k, p):
    mm = mm_of(k, p)
    c0 = counters(mm)
    assert c0 == vm_counters(mm)

    def delta():
        now = counters(mm)
        assert now == vm_counters(mm)
        return {n: now[n] - c0[n] for n in now if now[n] != c0[n]}

    k.mmap(p, 10 * PAGE, RW)
    assert delta() == {"total_vm": 10, "data_vm": 10, "committed_vm": 10}
    k.mmap(p, 3 * PAGE, RW, SHANON)
    assert delta() == {"total_vm": 13, "data_vm": 10, "committed_vm": 10}  # shmem: charged per object
    k.mmap(p, 4 * PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, path=FILE)
    assert delta() == {"total_vm": 17, "data_vm": 10, "exec_vm": 4, "committed_vm": 10}
    k.mmap(p, 5 * PAGE, RW, ANON | MAP_GROWSDOWN)
    assert delta() == {"total_vm": 22, "data_vm": 10, "exec_vm": 4, "stack_vm": 5, "committed_vm": 15}
    k.mmap(p, 2 * PAGE, PROT_NONE)  # not writable: not accountable
    assert delta() == {"total_vm": 24, "data_vm": 10, "exec_vm": 4, "stack_vm": 5, "committed_vm": 15}
    w = k.mmap(p, 6 * PAGE, RW, MAP_PRIVATE, path=FILE, offset=16 * PAGE)  # private writable file: data
    assert delta() == {"total_vm": 30, "data_vm": 16, "exec_vm": 4, "stack_vm": 5, "committed_vm": 21}
    k.mprotect(p, w, 2 * PAGE, PROT_READ | PROT_EXEC)  # now exec, not data; still charged
    assert delta() == {"total_vm": 30, "data_vm": 14, "exec_vm": 6, "stack_vm": 5, "committed_vm": 21}
    k.munmap(p, w, 6 * PAGE)
    assert delta() == {"total_vm": 24, "data_vm": 10, "exec_vm": 4, "stack_vm": 5, "committed_vm": 15}


def test_locked_vm_counts_vma_size_not_residency(k, p):
    # two mlocked 1-page VMAs, one never touched (mlock2 ONFAULT) => VmLck 8 kB
    mm = mm_of(k, p)
    a = k.mmap(p, PAGE, RW, ANON | MAP_FIXED, BASE)
    b = k.mmap(p, PAGE, PROT_READ, ANON | MAP_FIXED, BASE + 2 * PAGE)
    k.mlock(p, a, PAGE)
    k.mlock(p, b, PAGE, onfault=True)
    assert mm.locked_vm == 2
    assert pfns(mm, b, 1)[0] == -1
    rss = mm.rss_pages
    k.mlock(p, a, PAGE, on=False)
    assert mm.locked_vm == 1 and mm.rss_pages == rss
    k.munmap(p, b, PAGE)
    assert mm.locked_vm == 0


def test_hiwater_vm_and_rss_keep_the_peak(k, p):
    mm = mm_of(k, p)
    total, rss = mm.total_vm, mm.rss_pages
    a = k.mmap(p, 100 * PAGE, RW)
    k.touch(p, a, 100 * PAGE)
    k.munmap(p, a, 100 * PAGE)
    assert mm.total_vm == total and mm.rss_pages == rss
    assert mm.hiwater_vm >= total + 100
    assert mm.hiwater_rss >= rss + 100


def test_rss_counters_by_kind(k, p):
    mm = mm_of(k, p)
    r0 = list(mm.rss)
    a = k.mmap(p, 4 * PAGE, RW)
    k.touch(p, a, 4 * PAGE)
    b = k.mmap(p, 3 * PAGE, RW, SHANON)
    k.touch(p, b, 3 * PAGE)
    c = k.mmap(p, 5 * PAGE, PROT_READ, MAP_PRIVATE, path=FILE)
    k.touch(p, c, 5 * PAGE, write=False)
    assert mm.rss[MM_ANONPAGES] - r0[MM_ANONPAGES] == 4
    assert mm.rss[MM_SHMEMPAGES] - r0[MM_SHMEMPAGES] == 3
    assert mm.rss[MM_FILEPAGES] - r0[MM_FILEPAGES] == 5


def test_vvar_pages_are_not_rss(k, p):
    mm = mm_of(k, p)
    vvar = special(mm, "[vvar]")
    rss = list(mm.rss)
    k.touch(p, vvar.start, vvar.end - vvar.start, write=False)
    assert list(mm.rss) == rss
    assert (pfns(mm, vvar.start, vvar.npages) > 0).all()
    c = k.fork(p)
    assert mm_of(k, c).rss == mm_of(k, c).rss  # counted consistently (check_world)


@pytest.mark.parametrize("name", ["[vvar]", "[vvar_vclock]"])
def test_vvar_refuses_write_and_exec_protection(k, p, name):
    """do_mprotect_pkey(): each asked VM_READ/WRITE/EXEC bit needs its VM_MAY*
    bit; the vDSO data pages only have VM_MAYREAD. Observed on 6.18: PROT_WRITE,
    PROT_EXEC and any mix with them fail with EACCES, PROT_READ and PROT_NONE
    succeed, and a range from [vvar] over [vdso] fails changing nothing.
    (mprotect used to make [vvar] rwx, and a later mlock then write-faulted
    the vDSO pages.)"""
    mm = mm_of(k, p)
    v = special(mm, name)
    vdso = special(mm, "[vdso]")
    before = snapshot(k)
    for prot in (PROT_WRITE, RW, PROT_EXEC, PROT_READ | PROT_EXEC, RW | PROT_EXEC):
        with pytest.raises(KernelError) as e:
            k.mprotect(p, v.start, v.end - v.start, prot)
        assert e.value.errno == errno.EACCES, prot
        assert snapshot(k) == before
    with pytest.raises(KernelError) as e:
        k.mprotect(p, v.start, vdso.end - v.start, RW | PROT_EXEC)
    assert e.value.errno == errno.EACCES
    assert snapshot(k) == before
    k.mprotect(p, v.start, v.end - v.start, PROT_NONE)
    assert special(mm, name).perms() == "---p"
    k.mprotect(p, v.start, v.end - v.start, PROT_READ)
    assert special(mm, name).perms() == "r--p"


@pytest.mark.parametrize("op", ["mprotect", "munmap", "mmap_fixed", "madvise_hugepage", "mremap_shrink",
                                "mremap_move_part", "mremap_fixed_into"])
@pytest.mark.parametrize("name", ["[vvar]", "[vdso]"])
def test_special_mappings_are_never_split(k, p, name, op):
    """special_mapping_split(): [vvar] and [vdso] cannot be cut, whatever the
    alignment; each operation on part of one fails with EINVAL and changes
    nothing (observed on 6.18 for all of these on the 2-page [vdso])."""
    mm = mm_of(k, p)
    v = special(mm, name)
    other = k.mmap(p, 4 * PAGE, RW)
    before = snapshot(k)
    calls = {
        "mprotect": lambda: k.mprotect(p, v.start, PAGE, PROT_NONE),
        "munmap": lambda: k.munmap(p, v.start + PAGE, PAGE),
        "mmap_fixed": lambda: k.mmap(p, PAGE, RW, ANON | MAP_FIXED, v.start),
        "madvise_hugepage": lambda: k.madvise(p, v.start, PAGE, MADV_HUGEPAGE),
        "mremap_shrink": lambda: k.mremap(p, v.start, v.end - v.start, PAGE),
        "mremap_move_part": lambda: k.mremap(p, v.start, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, BASE),
        "mremap_fixed_into": lambda: k.mremap(p, other, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                                              v.start + PAGE),
    }
    with pytest.raises(OSError) as e:
        calls[op]()
    assert e.value.errno == errno.EINVAL
    assert snapshot(k) == before


def test_madvise_hugepage_flags_special_mappings(k, p):
    """hugepage_madvise() sets VM_HUGEPAGE/VM_NOHUGEPAGE on a whole [vvar] or
    [vdso] too (observed on 6.18: `rd mr pf io de dd hg`, `rd ex mr mw me de
    nh`); the THP eligibility stays 0 (VM_SPECIAL)."""
    mm = mm_of(k, p)
    vvar, vdso = special(mm, "[vvar]"), special(mm, "[vdso]")
    k.madvise(p, vvar.start, vvar.end - vvar.start, MADV_HUGEPAGE)
    k.madvise(p, vdso.start, vdso.end - vdso.start, MADV_NOHUGEPAGE)
    assert vmflags(special(mm, "[vvar]")) == "rd mr pf io de dd hg"
    assert vmflags(special(mm, "[vdso]")) == "rd ex mr mw me de nh"
    k.madvise(p, vdso.start, vdso.end - vdso.start, MADV_HUGEPAGE)
    assert vmflags(special(mm, "[vdso]")) == "rd ex mr mw me de hg"


def test_writable_vdso_is_copied_on_write(k, p):
    """The [vdso] has VM_MAYWRITE: mprotect(PROT_WRITE) succeeds, and mlock
    (which leaves the VM_SPECIAL VMA unlocked) write-faults it in: each vDSO
    text page is copied to a new anonymous page (wp_page_copy), the kernel's
    pages are unmapped from this mm. Observed on 6.18 after mprotect(rwx) +
    mlock: `rwxp ... [vdso]`, Rss = Anonymous = Private_Dirty = 8 kB,
    VmFlags "rd wr ex mr mw me de ac". (The model used to drop a mapcount
    the kernel pages never held: -1 in the mem_map, state machine.)"""
    mm = mm_of(k, p)
    v = special(mm, "[vdso]")
    kernel_pages = pfns(mm, v.start, v.npages)
    assert sorted(kernel_pages.tolist()) == k.vdso_pages.tolist()
    users = dict(k.vdso_mapcount)
    rss = list(mm.rss)
    k.mprotect(p, v.start, v.end - v.start, PROT_READ | PROT_WRITE | PROT_EXEC)
    k.mlock(p, v.start, v.end - v.start)
    v = special(mm, "[vdso]")
    assert maps_line(mm, v).endswith(" rwxp 00000000 00:00 0                          [vdso]\n")
    assert vmflags(v) == "rd wr ex mr mw me de ac"
    copies = pfns(mm, v.start, v.npages)
    assert not np.isin(copies, kernel_pages).any()
    assert (k.mem.flags[copies] & M.PG_ANON).all()
    assert (k.mem.mapcount[copies] == 1).all()
    assert not k.mem.mapcount[kernel_pages].any()  # kernel pages: no mem_map mapcount
    assert all(k.vdso_mapcount[pfn] == users[pfn] - 1 for pfn in kernel_pages.tolist())
    assert mm.rss[MM_FILEPAGES] == rss[MM_FILEPAGES] - 2
    assert mm.rss[MM_ANONPAGES] == rss[MM_ANONPAGES] + 2
    st = stats.smaps_vma(mm, v, k.vdso_mapcount)
    assert (st.resident, st.anonymous, st.private_dirty, st.pss >> stats.PSS_SHIFT) == (2 * PAGE,) * 4
    c = k.fork(p)  # the child shares the copies (COW), not the kernel's pages
    assert (pfns(mm_of(k, c), v.start, v.npages) == copies).all()
    assert (k.mem.mapcount[copies] == 2).all()
    k.exit_group(c)
    assert (k.mem.mapcount[copies] == 1).all()


# -- brk ------------------------------------------------------------------------------


def test_brk_grows_and_shrinks_the_heap(k, p):
    mm = mm_of(k, p)
    heap = mm.vmas.lookup(mm.start_brk)
    end0, total0, free0 = heap.end, mm.total_vm, k.mem.nr_free
    assert mm.brk == end0
    assert k.brk(p, mm.brk + 3 * PAGE) == end0 + 3 * PAGE
    assert mm.vmas.lookup(mm.start_brk).end == end0 + 3 * PAGE
    assert mm.vmas.lookup(mm.start_brk) is mm.vmas.lookup(end0)  # one VMA
    assert mm.total_vm == total0 + 3
    anon = mm.rss[MM_ANONPAGES]
    k.touch(p, end0, 3 * PAGE)
    assert mm.rss[MM_ANONPAGES] == anon + 3
    # an unaligned break maps the whole page
    assert k.brk(p, end0 + 5 * PAGE + 10) == end0 + 5 * PAGE + 10
    assert mm.vmas.lookup(mm.start_brk).end == end0 + 6 * PAGE
    # shrink: pages beyond the new break go, and their frames come back
    k.brk(p, end0)
    assert mm.vmas.lookup(mm.start_brk).end == end0 and mm.total_vm == total0
    assert mm.rss[MM_ANONPAGES] == anon and k.mem.nr_free == free0
    # below start_brk: refused, the old break is returned
    assert k.brk(p, mm.start_brk - PAGE) == end0


def test_brk_stops_at_the_next_mapping(k, p):
    mm = mm_of(k, p)
    end0 = mm.brk
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED, end0 + 4 * PAGE)
    before = snapshot(k)
    assert k.brk(p, end0 + 4 * PAGE) == end0  # would leave no guard page
    assert snapshot(k) == before
    assert k.brk(p, end0 + 3 * PAGE) == end0 + 3 * PAGE


# -- mremap ------------------------------------------------------------------------------


def test_mremap_grows_in_place(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, a, 4 * PAGE)
    before = pfns(mm, a, 4)
    assert k.mremap(p, a, 4 * PAGE, 10 * PAGE) == a
    assert layout(mm) == [(0, 10, "rw-p")]
    assert (pfns(mm, a, 4) == before).all()
    k.touch(p, a, 10 * PAGE)


def test_mremap_grows_a_file_vma_in_place(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, BASE, path=FILE, offset=PAGE)
    assert k.mremap(p, BASE, 2 * PAGE, 5 * PAGE) == BASE
    assert layout(mm) == [(0, 5, "r--p")]
    k.touch(p, BASE, 5 * PAGE, write=False)
    assert list(pfns(mm, BASE, 5)) == list(mm.vmas.lookup(BASE).file.cache[1:6])


def test_mremap_moves_pages_with_their_frames(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mmap(p, PAGE, PROT_READ, ANON | MAP_FIXED, BASE + 4 * PAGE)  # blocks growth
    k.touch(p, a, 4 * PAGE)
    before, rss, free, total = pfns(mm, a, 4), list(mm.rss), k.mem.nr_free, mm.total_vm
    with pytest.raises(KernelError) as e:
        k.mremap(p, a, 4 * PAGE, 8 * PAGE)
    assert e.value.errno == errno.ENOMEM
    b = k.mremap(p, a, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE)
    assert b != a and mm.vmas.lookup(a) is None
    assert mm.vmas.lookup(b).start == b and mm.vmas.lookup(b).end == b + 8 * PAGE
    assert (pfns(mm, b, 4) == before).all() and (pfns(mm, b + 4 * PAGE, 4) == -1).all()
    assert list(mm.rss) == rss and k.mem.nr_free == free and mm.total_vm == total + 4
    assert (k.mem.mapcount[before] == 1).all()


def test_mremap_fixed_moves_to_the_address_and_replaces(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 3 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, a, 3 * PAGE)
    before = pfns(mm, a, 3)
    dest = BASE + 64 * PAGE
    k.mmap(p, 8 * PAGE, PROT_READ, ANON | MAP_FIXED, dest)
    assert k.mremap(p, a, 3 * PAGE, 3 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dest) == dest
    assert layout(mm) == [(64, 3, "rw-p"), (67, 5, "r--p")]
    assert (pfns(mm, dest, 3) == before).all()


def test_mremap_moved_anon_vma_keeps_its_pgoff(k, p):
    # a moved anonymous VMA keeps vm_pgoff and anon_vma, so it does not merge
    # with an unrelated neighbour at its new place
    mm = mm_of(k, p)
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE + 100 * PAGE)
    k.touch(p, BASE, PAGE)
    k.mremap(p, BASE, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, BASE + 98 * PAGE)
    assert layout(mm) == [(98, 2, "rw-p"), (100, 2, "rw-p")]
    # moving it back next to nothing it belongs with; growing in place still merges
    assert k.mremap(p, BASE + 100 * PAGE, 2 * PAGE, 4 * PAGE) == BASE + 100 * PAGE
    assert layout(mm) == [(98, 2, "rw-p"), (100, 4, "rw-p")]


@pytest.mark.parametrize("faulted", [False, True])
def test_mremap_moved_never_faulted_anon_vma_takes_the_new_pgoff(k, p, faulted):
    """copy_vma(): an anonymous VMA without anon_vma gets the pgoff of its new
    address and merges with never-faulted neighbours there; a faulted one keeps
    its own. Checked on Linux 6.18 (a page moved into a one-page hole of a
    16-page mapping: one VMA, or three once the page had been written)."""
    mm = mm_of(k, p)
    k.mmap(p, 16 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.munmap(p, BASE + 5 * PAGE, PAGE)
    src = k.mmap(p, PAGE, RW, ANON | MAP_FIXED, BASE + 200 * PAGE)
    if faulted:
        k.touch(p, src, PAGE)
    k.mremap(p, src, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, BASE + 5 * PAGE)
    want = [(0, 5, "rw-p"), (5, 1, "rw-p"), (6, 10, "rw-p")] if faulted else [(0, 16, "rw-p")]
    assert layout(mm) == want


def test_mremap_moves_shared_anonymous_memory(k, p):
    """Moving the only mapping of shared anonymous memory keeps its pages (the
    shmem file lost its last reference half-way and freed them under the
    moved PTEs)."""
    a = k.mmap(p, 4 * PAGE, RW, SHANON)
    k.touch(p, a, 4 * PAGE)
    mm = k.group(p).mm
    before = mm.pgtable.read(a, a + 4 * PAGE).copy()
    b = k.mremap(p, a, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE)
    assert b != a and (mm.pgtable.read(b, b + 4 * PAGE) == before).all()
    assert mm.vmas.lookup(b).file.nr_mappings == 1


def test_mremap_shrinks(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 8 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, a, 8 * PAGE)
    anon, free = mm.rss[MM_ANONPAGES], k.mem.nr_free
    assert k.mremap(p, a, 8 * PAGE, 3 * PAGE) == a
    assert layout(mm) == [(0, 3, "rw-p")]
    assert mm.rss[MM_ANONPAGES] == anon - 5 and k.mem.nr_free == free + 5


def test_mremap_errors(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mmap(p, 2 * PAGE, PROT_READ, ANON | MAP_FIXED, BASE + 2 * PAGE)
    vdso = special(mm, "[vdso]")
    before = snapshot(k)
    for args, err in [
        ((BASE, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE), errno.EFAULT),   # spans two VMAs
        ((BASE + 8 * PAGE, PAGE, 2 * PAGE, MREMAP_MAYMOVE), errno.EFAULT),  # unmapped
        ((BASE + 1, PAGE, 2 * PAGE, 0), errno.EINVAL),
        ((BASE, PAGE, 0, 0), errno.EINVAL),
        ((BASE + PAGE, 0, 2 * PAGE, MREMAP_MAYMOVE), errno.EINVAL),  # old length 0 (private)
        ((BASE, PAGE, PAGE, MREMAP_FIXED, BASE + 64 * PAGE), errno.EINVAL),  # FIXED needs MAYMOVE
        ((BASE, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, BASE + PAGE), errno.EINVAL),  # overlap
        ((vdso.start, vdso.end - vdso.start, 4 * PAGE * vdso.npages, MREMAP_MAYMOVE), errno.EFAULT),
    ]:
        with pytest.raises(KernelError) as e:
            k.mremap(p, *args)
        assert e.value.errno == err, args
        assert snapshot(k) == before, args


# -- madvise ------------------------------------------------------------------------------


def test_madvise_dontneed_frees_anon_pages(k, p):
    mm = mm_of(k, p)
    free0 = k.mem.nr_free
    a = k.mmap(p, 8 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, a, 8 * PAGE)
    anon = mm.rss[MM_ANONPAGES]
    assert k.mem.nr_free == free0 - 8
    k.madvise(p, a + 2 * PAGE, 4 * PAGE, MADV_DONTNEED)
    assert mm.rss[MM_ANONPAGES] == anon - 4 and k.mem.nr_free == free0 - 4
    assert list(pfns(mm, a, 8) == -1) == [False, False, True, True, True, True, False, False]
    assert layout(mm, a, a + 8 * PAGE) == [(0, 8, "rw-p")]  # no split
    # a later read sees zero-filled memory: the zero page
    k.touch(p, a + 2 * PAGE, PAGE, write=False)
    assert pfns(mm, a + 2 * PAGE, 1)[0] == ZERO_PFN


def test_madvise_dontneed_on_file_pages_keeps_the_cache(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 4 * PAGE, PROT_READ, MAP_PRIVATE, path=FILE)
    k.touch(p, a, 4 * PAGE, write=False)
    cached = pfns(mm, a, 4)
    k.madvise(p, a, 4 * PAGE, MADV_DONTNEED)
    assert (pfns(mm, a, 4) == -1).all() and (k.mem.flags[cached] != 0).all()
    k.touch(p, a, 4 * PAGE, write=False)
    assert (pfns(mm, a, 4) == cached).all()


def test_madvise_dontneed_refuses_locked(k, p):
    a = k.mmap(p, 2 * PAGE, RW, ANON | MAP_LOCKED)
    before = snapshot(k)
    with pytest.raises(OSError) as e:
        k.madvise(p, a, 2 * PAGE, MADV_DONTNEED)
    assert e.value.errno == errno.EINVAL and snapshot(k) == before


# -- faults, zero page, COW ----------------------------------------------------------------------


def test_read_fault_maps_the_zero_page(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 4 * PAGE, RW)
    rss, free = list(mm.rss), k.mem.nr_free
    assert k.touch(p, a, 4 * PAGE, write=False) == 4
    assert (pfns(mm, a, 4) == ZERO_PFN).all() and not writable(mm, a, 4).any()
    assert list(mm.rss) == rss and k.mem.nr_free == free
    assert k.touch(p, a, 4 * PAGE, write=False) == 0  # present: no more faults
    assert k.touch(p, a + PAGE, PAGE) == 1            # write: COW from the zero page
    got = pfns(mm, a, 4)
    assert got[1] > ZERO_PFN and (got[[0, 2, 3]] == ZERO_PFN).all()
    assert mm.rss[MM_ANONPAGES] == rss[MM_ANONPAGES] + 1 and k.mem.nr_free == free - 1


def test_write_only_and_exec_only_memory_is_readable_on_x86(k, p):
    a = k.mmap(p, PAGE, PROT_WRITE)
    k.touch(p, a, PAGE, write=False)
    b = k.mmap(p, PAGE, PROT_EXEC)
    k.touch(p, b, PAGE, write=False)
    c = k.mmap(p, PAGE, PROT_NONE)
    with pytest.raises(MMError) as e:
        k.touch(p, c, PAGE, write=False)
    assert e.value.errno == errno.EFAULT


def test_fork_shares_anon_pages_copy_on_write(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 4 * PAGE, RW)
    k.touch(p, a, 4 * PAGE)
    orig = pfns(mm, a, 4)
    free = k.mem.nr_free
    c = k.fork(p)
    cm = mm_of(k, c)
    assert k.mem.nr_free == free  # fork copies no page
    assert (pfns(cm, a, 4) == orig).all()
    assert (k.mem.mapcount[orig] == 2).all()
    assert not writable(mm, a, 4).any() and not writable(cm, a, 4).any()
    assert cm.rss[MM_ANONPAGES] == mm.rss[MM_ANONPAGES]
    # the child writes page 1: it gets a copy, the parent keeps the original
    assert k.touch(c, a + PAGE, PAGE) == 1
    assert k.mem.nr_free == free - 1
    cp = pfns(cm, a, 4)
    assert cp[1] not in orig and (cp[[0, 2, 3]] == orig[[0, 2, 3]]).all()
    assert (pfns(mm, a, 4) == orig).all()
    assert k.mem.mapcount[orig[1]] == 1 and k.mem.mapcount[cp[1]] == 1
    assert (k.mem.mapcount[orig[[0, 2, 3]]] == 2).all()
    # the parent writes page 1 too: its page is now exclusive, so it is reused
    assert k.touch(p, a + PAGE, PAGE) == 1
    assert pfns(mm, a + PAGE, 1)[0] == orig[1] and k.mem.nr_free == free - 1
    # the child exits; the parent's writes reuse every page, no copies
    k.exit(c)
    k.wait(p, c) if c in k.groups else None
    assert (k.mem.mapcount[orig] == 1).all()
    assert k.mem.nr_free == free
    k.touch(p, a, 4 * PAGE)
    assert (pfns(mm, a, 4) == orig).all() and k.mem.nr_free == free
    assert writable(mm, a, 4).all()


def test_fork_of_the_zero_page_and_private_file_pages(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 2 * PAGE, RW)
    k.touch(p, a, 2 * PAGE, write=False)
    f = k.mmap(p, 2 * PAGE, RW, MAP_PRIVATE, path=FILE)
    k.touch(p, f, PAGE)                  # COW copy of file page 0
    k.touch(p, f + PAGE, PAGE, write=False)  # page cache page 1
    c = k.fork(p)
    cm = mm_of(k, c)
    k.touch(c, a, 2 * PAGE)
    assert (pfns(cm, a, 2) > ZERO_PFN).all() and (pfns(mm, a, 2) == ZERO_PFN).all()
    k.touch(c, f, 2 * PAGE)
    cache = mm.vmas.lookup(f).file.cache
    assert pfns(cm, f + PAGE, 1)[0] != cache[1] and pfns(mm, f + PAGE, 1)[0] == cache[1]


def test_shared_anon_memory_is_shared_across_fork(k, p):
    mm = mm_of(k, p)
    a = k.mmap(p, 4 * PAGE, RW, SHANON)
    k.touch(p, a, 4 * PAGE)
    orig = pfns(mm, a, 4)
    free = k.mem.nr_free
    c = k.fork(p)
    cm = mm_of(k, c)
    k.touch(c, a, 4 * PAGE)  # writes: no copy
    assert (pfns(cm, a, 4) == orig).all() and k.mem.nr_free == free
    assert (k.mem.mapcount[orig] == 2).all()
    assert cm.rss[MM_SHMEMPAGES] == 4 and cm.rss[MM_ANONPAGES] == mm_of(k, p).rss[MM_ANONPAGES]
    assert writable(cm, a, 4).all()


def test_shared_anon_memory_is_freed_with_its_last_mapping(k, p):
    free = k.mem.nr_free
    a = k.mmap(p, 4 * PAGE, RW, SHANON)
    k.touch(p, a, 4 * PAGE)
    c = k.fork(p)
    k.touch(c, a, 4 * PAGE, write=False)
    k.mprotect(p, a + PAGE, PAGE, PROT_READ)  # split: three VMAs hold the file
    assert k.mem.nr_free == free - 4
    k.munmap(p, a, 4 * PAGE)
    assert k.mem.nr_free == free - 4  # the child still maps it
    k.exit(c)
    assert k.mem.nr_free == free


def test_file_pages_are_shared_through_the_page_cache(k, p):
    q = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    mp, mq = mm_of(k, p), mm_of(k, q)
    a = k.mmap(p, 4 * PAGE, PROT_READ, MAP_PRIVATE, path=FILE)
    b = k.mmap(q, 4 * PAGE, RW, MAP_SHARED, path=FILE)
    fp0, fq0 = mp.rss[MM_FILEPAGES], mq.rss[MM_FILEPAGES]
    k.touch(p, a, 4 * PAGE, write=False)
    free = k.mem.nr_free
    k.touch(q, b, 4 * PAGE, write=False)
    assert k.mem.nr_free == free  # q found every page in the cache
    assert (pfns(mp, a, 4) == pfns(mq, b, 4)).all()
    assert (k.mem.mapcount[pfns(mp, a, 4)] == 2).all()
    assert mp.rss[MM_FILEPAGES] == fp0 + 4 and mq.rss[MM_FILEPAGES] == fq0 + 4
    # a shared write goes to the cache page itself, which p sees
    k.touch(q, b, PAGE)
    assert pfns(mq, b, 1)[0] == pfns(mp, a, 1)[0]
    # both processes run the same libc text from one set of frames
    tp = [v for v in file_vmas(mp, LIBC) if v.perms() == "r-xp"][0]
    tq = [v for v in file_vmas(mq, LIBC) if v.perms() == "r-xp"][0]
    hp, hq = pfns(mp, tp.start, 4), pfns(mq, tq.start, 4)
    assert (hp == hq).all() and (hp > 0).all()


# -- exec layout --------------------------------------------------------------------------------


def test_exec_layout(k, p):
    mm = mm_of(k, p)
    vmas = list(mm.vmas)
    assert vmas == sorted(vmas, key=lambda v: v.start)
    heap = mm.vmas.lookup(mm.start_brk)
    assert heap is not None and heap.start == mm.start_brk and heap.end == page_up(mm.brk)
    assert heap.file is None and vma_name(mm, heap) == "[heap]"
    stack = mm.vmas.lookup(mm.start_stack)
    assert stack.start <= mm.start_stack < stack.end and stack.flags & (1 << 8)
    assert stack.start <= mm.arg_start < mm.arg_end <= mm.env_start < mm.env_end <= stack.end
    assert vma_name(mm, stack) == "[stack]" and stack is vmas[-1]
    assert pfns(mm, stack.end - PAGE, 1)[0] > ZERO_PFN  # argv and envp are written
    # [vvar] [vvar_vclock] [vdso] adjacent, in that order
    vv, vc, vd = special(mm, "[vvar]"), special(mm, "[vvar_vclock]"), special(mm, "[vdso]")
    assert vv.end == vc.start and vc.end == vd.start
    assert list(pfns(mm, vd.start, vd.npages)) == list(k.vdso_pages)
    # the executable, libc and ld.so: five segments each, consecutive file offsets
    for path in ("/usr/bin/bash", LIBC, LDSO):
        segs = file_vmas(mm, path)
        assert len(segs) == 5
        for x, y in zip(segs, segs[1:]):
            assert x.end == y.start and x.pgoff + x.npages == y.pgoff
        assert segs[0].pgoff == 0
    exe = file_vmas(mm, "/usr/bin/bash")
    assert exe[1].start <= mm.start_code < mm.end_code <= exe[1].end
    assert exe[-1].end <= mm.start_brk
    assert exe[0].start < 0x600000000000 < file_vmas(mm, LIBC)[0].start
    assert mm.total_vm == sum(v.npages for v in vmas)


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def test_exec_replaces_the_mm_and_frees_the_old(k, p):
    free = k.mem.nr_free
    a = k.mmap(p, 16 * PAGE, RW)
    k.touch(p, a, 16 * PAGE)
    k.exec(p, "/usr/bin/bash", ["bash"])
    # the new image re-dirties the same kinds of pages the old one had
    assert abs(k.mem.nr_free - free) < 16
    assert mm_of(k, p).vmas.lookup(a) is None or mm_of(k, p).vmas.lookup(a).start != a


def test_exec_from_a_thread_takes_the_leaders_pid(k, p):
    t = k.clone_thread(p)
    k.exec(t, "/usr/bin/cat", ["cat"])
    tg = k.group(p)
    assert [x.pid for x in tg.threads] == [p] and k.tasks[p].comm == "cat"
    with pytest.raises(KernelError):
        k.task(t)


# -- exit ---------------------------------------------------------------------------------------


def test_exit_frees_every_anon_frame(k, p):
    free = k.mem.nr_free
    c = k.fork(p)
    a = k.mmap(c, 100 * PAGE, RW)
    k.touch(c, a, 100 * PAGE)
    s = k.mmap(c, 10 * PAGE, RW, SHANON)
    k.touch(c, s, 10 * PAGE)
    heap = mm_of(k, c).start_brk
    k.touch(c, heap, 8 * PAGE)  # breaks COW of pages shared with the parent
    assert k.mem.nr_free < free - 110
    k.exit(c)
    assert k.mem.nr_free == free
    assert k.group(c).zombie and k.group(c).mm is None
    assert k.wait(p) == c
    assert c not in k.groups


def test_last_thread_exit_ends_the_group(k, p):
    free_before = k.mem.nr_free
    c = k.fork(p)
    t = k.clone_thread(c)
    k.exit(c)      # the leader first: a zombie thread, the group lives on
    assert not k.group(c).zombie and mm_of(k, c) is not None
    with pytest.raises(KernelError) as e:
        k.exit(c)  # already dead
    assert e.value.errno == errno.ESRCH
    k.exit(t)      # the last thread: now the process is a zombie and its mm is gone
    assert k.group(c).zombie and k.group(c).mm is None
    assert k.mem.nr_free == free_before
    assert k.wait(p) == c


# -- errors leave the world unchanged ----------------------------------------------------------


def expect_error(k: Kernel, err: int, fn, *args, **kw) -> None:
    before = snapshot(k)
    with pytest.raises(OSError) as e:
        fn(*args, **kw)
    assert e.value.errno == err, (fn.__name__, args, e.value)
    assert snapshot(k) == before, f"{fn.__name__}{args} changed the world"


def test_errors_change_nothing(k, p):
    mm = mm_of(k, p)
    k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.mmap(p, 4 * PAGE, PROT_READ, ANON | MAP_FIXED, BASE + 8 * PAGE)
    k.touch(p, BASE, 4 * PAGE)
    ro = k.mmap(p, PAGE, PROT_READ, MAP_SHARED, path=FILE, writable=False)
    E = expect_error
    # EINVAL: unaligned or empty ranges, bad prot and flags
    E(k, errno.EINVAL, k.mmap, p, PAGE, RW, ANON | MAP_FIXED, BASE + 1)
    E(k, errno.EINVAL, k.mmap, p, 0, RW, ANON)
    E(k, errno.EINVAL, k.mmap, p, PAGE, 8, ANON)
    E(k, errno.EINVAL, k.mmap, p, PAGE, RW, MAP_ANONYMOUS)
    E(k, errno.EINVAL, k.mmap, p, PAGE, RW, MAP_PRIVATE, path=FILE, offset=100)
    E(k, errno.EINVAL, k.munmap, p, BASE + 1, PAGE)
    E(k, errno.EINVAL, k.munmap, p, BASE, 0)
    E(k, errno.EINVAL, k.mprotect, p, BASE + 5, PAGE, PROT_READ)
    E(k, errno.EINVAL, k.mprotect, p, BASE, PAGE, 0x10)
    E(k, errno.EINVAL, k.madvise, p, BASE, PAGE, 12345)
    E(k, errno.EINVAL, k.touch, p, BASE + 3, PAGE)
    E(k, errno.EINVAL, k.mlock, p, BASE + 3, PAGE)
    # ENOMEM: ranges with holes
    E(k, errno.ENOMEM, k.mprotect, p, BASE, 12 * PAGE, PROT_READ)
    E(k, errno.ENOMEM, k.mprotect, p, BASE + 4 * PAGE, PAGE, PROT_READ)
    E(k, errno.ENOMEM, k.madvise, p, BASE, 12 * PAGE, MADV_DONTNEED)
    E(k, errno.ENOMEM, k.mlock, p, BASE, 12 * PAGE)
    E(k, errno.ENOMEM, k.mmap, p, 1 << 47, RW, ANON)
    # EFAULT: touching unmapped or forbidden memory, even partly
    E(k, errno.EFAULT, k.touch, p, BASE + 4 * PAGE, PAGE)
    E(k, errno.EFAULT, k.touch, p, BASE + 2 * PAGE, 4 * PAGE)     # runs into the hole
    E(k, errno.EFAULT, k.touch, p, BASE + 8 * PAGE, PAGE)         # write to read-only
    E(k, errno.EFAULT, k.touch, p, BASE, 12 * PAGE, write=False)  # hole in the middle
    # EEXIST: MAP_FIXED_NOREPLACE over a mapping (also together with MAP_FIXED)
    E(k, errno.EEXIST, k.mmap, p, 2 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE, BASE + 3 * PAGE)
    E(k, errno.EEXIST, k.mmap, p, 2 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE | MAP_FIXED, BASE + 3 * PAGE)
    # EACCES: writing a read-only shared file mapping
    E(k, errno.EACCES, k.mprotect, p, ro, PAGE, RW)
    E(k, errno.EACCES, k.mmap, p, PAGE, RW, MAP_SHARED, path=FILE, writable=False)
    # and MAP_FIXED_NOREPLACE into a hole works
    assert k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE, BASE + 4 * PAGE) == BASE + 4 * PAGE
    assert layout(mm, BASE, BASE + 12 * PAGE)[0] == (0, 8, "rw-p")


def test_dead_pids_are_esrch(k, p):
    c = k.fork(p)
    a = k.mmap(c, PAGE, RW)
    k.exit(c)
    for fn, args in [(k.mmap, (c, PAGE)), (k.munmap, (c, a, PAGE)), (k.mprotect, (c, a, PAGE, 1)),
                     (k.touch, (c, a, PAGE)), (k.brk, (c, 0)), (k.fork, (c,)), (k.exit, (c,)),
                     (k.run, (c, 0)), (k.mremap, (c, a, PAGE, 2 * PAGE)), (k.madvise, (c, a, PAGE, 4))]:
        expect_error(k, errno.ESRCH, fn, *args)
    k.wait(p, c)
    for fn, args in [(k.mmap, (c, PAGE)), (k.touch, (c, a, PAGE)), (k.fork, (c,)), (k.exit, (c,)),
                     (k.run, (c, 0)), (k.wait, (c,)), (k.set_affinity, (c, 1)), (k.exec, (c, "/bin/x", []))]:
        expect_error(k, errno.ESRCH, fn, *args)
    expect_error(k, errno.ESRCH, k.touch, 4000, BASE, PAGE)
    expect_error(k, errno.EINVAL, k.touch, 2, BASE, PAGE)  # a kernel thread has no mm
    expect_error(k, errno.ECHILD, k.wait, p, 1)
