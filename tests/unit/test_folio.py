"""Folios: THP/mTHP at anonymous write faults, PMD mappings, fork/COW, partial
unmap (PMD split, deferred split), MADV_FREE, clear_refs."""

from __future__ import annotations

import numpy as np
import pytest

from procsim.kernel import MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_NOHUGEPAGE
from procsim.mm.pagetable import PAGE_SHIFT, PMD_SIZE
from procsim.mm import stats
from invariants import boot, check_world

MiB = 1 << 20


def thp_area(k, pid, size=4 * MiB, advise=True):
    addr = k.mmap(pid, size + PMD_SIZE)
    addr = (addr + PMD_SIZE - 1) & ~(PMD_SIZE - 1)  # a 2 MiB aligned range inside the VMA
    if advise:
        k.madvise(pid, addr, size, MADV_HUGEPAGE)
    return addr


@pytest.fixture
def k():
    k = boot()
    k.spawn(["/usr/bin/bash"], pid=100)
    return k


def test_thp_off_by_default_gives_small_pages(k):
    a = thp_area(k, 100, advise=False)
    k.touch(100, a, 4096)
    mm = k.task(100).mm
    assert mm.rss[1] and not mm.pgtable.huge and k.mem.nr_anon_thps == 0
    check_world(k)


def test_madv_hugepage_gives_pmd_thp(k):
    a = thp_area(k, 100)
    rss0 = k.task(100).mm.rss_pages
    faults = k.touch(100, a, 4096)
    mm = k.task(100).mm
    assert faults == 1 and mm.rss_pages - rss0 == 512
    assert (a >> 21) in mm.pgtable.huge and k.mem.nr_anon_thps == 512
    v = mm.vmas.lookup(a)
    st = stats.smaps_vma(mm, v)
    assert st.anonymous_thp == 2 * MiB and st.private_dirty == 2 * MiB and st.pss >> 12 == 2 * MiB
    pm = stats.pagemap_entries(mm, a, a + PMD_SIZE)
    assert (pm & np.uint64(stats.PM_MMAP_EXCLUSIVE) != 0).all()
    pfn0 = int(pm[0]) & stats.PM_PFRAME_MASK
    assert (pm & np.uint64(stats.PM_PFRAME_MASK) == pfn0 + np.arange(512)).all() and pfn0 % 512 == 0
    assert (stats.kpagecount(k.mem, pfn0, pfn0 + 512) == 1).all()
    fl = stats.kpageflags(k.mem, pfn0, pfn0 + 2)
    assert fl[0] >> stats.KPF_COMPOUND_HEAD & 1 and fl[1] >> stats.KPF_COMPOUND_TAIL & 1 and fl[0] >> stats.KPF_THP & 1
    check_world(k)


def test_nohugepage_and_unaligned_vma_fall_back(k):
    a = thp_area(k, 100)
    k.madvise(100, a, PMD_SIZE, MADV_NOHUGEPAGE)
    k.touch(100, a, 4096)
    assert not k.task(100).mm.pgtable.huge
    small = k.mmap(100, 16 << 10)  # too small for 2 MiB: THPeligible 0
    k.madvise(100, small, 16 << 10, MADV_HUGEPAGE)
    v = k.task(100).mm.vmas.lookup(small)
    assert not k.mem.thp.thp_eligible(v)
    check_world(k)


def test_mthp_orders_fill_the_largest_empty_aligned_block(k):
    k.set_thp(size_kb=64, mode="always")
    k.set_thp(size_kb=16, mode="always")
    a = k.mmap(100, 256 << 10)  # anon VMA; mTHP 'always' needs no madvise
    mm = k.task(100).mm
    base = (a + (64 << 10) - 1) & ~((64 << 10) - 1)
    k.touch(100, base + 4096, 4096)
    pfn = int(mm.pgtable.read(base, base + 4096)[0]) >> PAGE_SHIFT
    assert k.mem.order[pfn] == 4 and mm.pgtable.count_present(base, base + (64 << 10)) == 16
    assert k.mem.mthp_fault_alloc[4] == 1
    check_world(k)


def test_fork_shares_pmd_and_child_exit_makes_it_exclusive_again(k):
    for model in ("page", "no_page"):
        k = boot(mapcount_model=model)
        k.spawn(["/usr/bin/bash"], pid=100)
        a = thp_area(k, 100)
        k.touch(100, a, PMD_SIZE)
        child = k.fork(100)
        for pid in (100, child):
            mm = k.task(pid).mm
            pm = stats.pagemap_entries(mm, a, a + PMD_SIZE)
            assert not (pm & np.uint64(stats.PM_MMAP_EXCLUSIVE)).any(), model
            st = stats.smaps_vma(mm, mm.vmas.lookup(a))
            assert st.anonymous_thp == 2 * MiB
            # the rest of the VMA holds no pages; the 2 MiB are all shared, Pss 1 MiB
            assert st.shared_dirty == 2 * MiB and st.pss >> 12 == MiB, model
        pfn0 = int(stats.pagemap_entries(k.task(100).mm, a, a + 4096)[0]) & stats.PM_PFRAME_MASK
        assert (stats.kpagecount(k.mem, pfn0, pfn0 + 512) == 2).all()
        k.exit_group(child)
        mm = k.task(100).mm
        pm = stats.pagemap_entries(mm, a, a + PMD_SIZE)
        assert (pm & np.uint64(stats.PM_MMAP_EXCLUSIVE) != 0).all()
        free0 = k.mem.nr_free
        k.touch(100, a, 4096)  # write fault on the read-only PMD: reused
        assert k.mem.nr_free == free0 and (a >> 21) in mm.pgtable.huge
        assert int(stats.pagemap_entries(mm, a, a + 4096)[0]) & stats.PM_PFRAME_MASK == pfn0
        check_world(k)


def test_cow_of_shared_pmd_splits_and_copies_one_page(k):
    a = thp_area(k, 100)
    k.touch(100, a, PMD_SIZE)
    child = k.fork(100)
    free0 = k.mem.nr_free
    k.touch(child, a, 4096)
    cmm = k.task(child).mm
    assert (a >> 21) not in cmm.pgtable.huge and k.mem.nr_free == free0 - 1
    assert (a >> 21) in k.task(100).mm.pgtable.huge
    check_world(k)


def test_partial_munmap_splits_pmd_and_defers_the_folio_split(k):
    a = thp_area(k, 100)
    k.touch(100, a, PMD_SIZE)
    mm = k.task(100).mm
    k.munmap(100, a + 4096, PMD_SIZE - 4096)  # one page of the THP stays mapped
    assert not mm.pgtable.huge and mm.rss_pages and k.mem.deferred_split
    head = next(iter(k.mem.deferred_split))
    assert k.mem.nr_anon_mapped_page + 511 == k.mem.nr_anon_mapped_folio  # §5.7.6
    check_world(k)
    freed = k.shrink_deferred_split()
    assert freed == 511 and not k.mem.deferred_split and k.mem.order[head] == 0
    check_world(k)


def test_mprotect_inside_a_thp_splits_the_pmd(k):
    a = thp_area(k, 100)
    k.touch(100, a, PMD_SIZE)
    k.mprotect(100, a + 64 * 4096, 4096, 1)
    mm = k.task(100).mm
    assert not mm.pgtable.huge and k.mem.split_pmds == 1 and not k.mem.deferred_split
    check_world(k)


def test_dontneed_whole_pmd_frees_the_thp_and_refault_gets_one_again(k):
    a = thp_area(k, 100)
    k.touch(100, a, PMD_SIZE)
    free0 = k.mem.nr_free
    k.madvise(100, a, PMD_SIZE, MADV_DONTNEED)
    assert k.mem.nr_free == free0 + 512
    k.touch(100, a, 4096)
    assert (a >> 21) in k.task(100).mm.pgtable.huge
    check_world(k)


def test_madv_free_makes_lazyfree_until_written(k):
    a = k.mmap(100, 8 * 4096)
    k.touch(100, a, 8 * 4096)
    k.madvise(100, a, 4 * 4096, MADV_FREE)
    mm = k.task(100).mm
    v = mm.vmas.lookup(a)
    assert stats.smaps_vma(mm, v).lazyfree == 4 * 4096
    k.touch(100, a, 4096)
    assert stats.smaps_vma(mm, v).lazyfree == 3 * 4096
    check_world(k)


def test_clear_refs(k):
    a = k.mmap(100, 8 * 4096, prot=1)  # read-only: its own VMA
    k.touch(100, a, 8 * 4096, write=False)
    k.mprotect(100, a, 8 * 4096, 3)
    k.touch(100, a, 8 * 4096)
    mm = k.task(100).mm
    v = mm.vmas.lookup(a)
    r0 = stats.smaps_vma(mm, v).referenced
    assert r0 >= 8 * 4096
    k.clear_refs(100, 3)  # file VMAs only
    assert stats.smaps_vma(mm, v).referenced == r0
    k.clear_refs(100, 2)
    assert stats.smaps_vma(mm, v).referenced == 0
    k.touch(100, a, 4096, write=False)
    assert stats.smaps_vma(mm, v).referenced == 4096
    k.munmap(100, a, 8 * 4096)
    assert mm.hiwater_rss > mm.rss_pages
    k.clear_refs(100, 5)
    assert mm.hiwater_rss == mm.rss_pages
    with pytest.raises(OSError):
        k.clear_refs(100, 6)
    check_world(k)
