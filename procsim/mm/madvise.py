"""madvise(2) (mm/madvise.c): MADV_DONTNEED zaps, MADV_FREE makes pages
lazily freeable, MADV_HUGEPAGE/NOHUGEPAGE change VMA flags, MADV_PAGEOUT
reclaims (mm/vmscan.py)."""

from __future__ import annotations

import errno

import numpy as np

from procsim.errors import KernelError
from procsim.mm import huge_memory, memory, page_alloc as M, vmscan
from procsim.mm.hugetlb import HPAGE_SIZE
from procsim.mm.mm import MM, MM_SWAPENTS, ZERO_PFN, Flush, MMError
from procsim.mm.mmap import check_split, isolate, vma_merge
from procsim.mm.mmap_lock import vma_start_write, write_locked
from procsim.mm.pagetable import (PMD_SHIFT, PMD_SIZE, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, is_swap_pte, pte_pfn,
                                  swp_offset)
from procsim.mm.vma import VM_HUGEPAGE, VM_HUGETLB, VM_IO, VM_LOCKED, VM_NOHUGEPAGE, VM_PFNMAP

MADV_NORMAL, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_NOHUGEPAGE = 0, 4, 8, 14, 15
MADV_PAGEOUT = 21
MADVISE_NAMES = {"normal": MADV_NORMAL, "dontneed": MADV_DONTNEED, "free": MADV_FREE,
                 "hugepage": MADV_HUGEPAGE, "nohugepage": MADV_NOHUGEPAGE, "pageout": MADV_PAGEOUT}


def do_madvise(mm: MM, start: int, end: int, advice: int) -> Flush | None:
    """madvise(2) over [start, end), mapped and page aligned (the syscall
    checked), with a modelled `advice`; returns the TLB flush to send."""
    vmas = mm.vmas.overlapping(start, end)
    if advice == MADV_DONTNEED:
        return madvise_dontneed(mm, start, end)
    if advice == MADV_PAGEOUT:
        # can_madv_lru_vma(): locked, PFN-map and hugetlb VMAs are
        # refused (6.18: EINVAL on an mlocked range and on hugetlb)
        if any(v.flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB) for v in vmas):
            raise KernelError(errno.EINVAL, "MADV_PAGEOUT on locked, PFN-map or hugetlb memory")
        vmscan.pageout(mm, start, end)
        return Flush(start, end)
    if advice == MADV_FREE:
        # madvise_dontneed_free_valid_vma() + vma_is_anonymous()
        if any(not v.is_anon or v.flags & (VM_LOCKED | VM_PFNMAP) for v in vmas):
            raise KernelError(errno.EINVAL, "MADV_FREE needs private anonymous, unlocked memory")
        madvise_free(mm, start, end)
        return Flush(start, end)
    if advice in (MADV_HUGEPAGE, MADV_NOHUGEPAGE):
        # hugepage_madvise(): each clears the other, in every VMA (6.18 showed
        # `ht hg` on hugetlb, `pf io de dd hg` on [vvar], `de hg` on [vdso])
        on, off = (VM_HUGEPAGE, VM_NOHUGEPAGE) if advice == MADV_HUGEPAGE else (VM_NOHUGEPAGE, VM_HUGEPAGE)
        check_split(mm, start, end, lambda v: (v.flags & ~off) | on != v.flags)
        madvise_update_vma(mm, start, end, on, off)
    return None


def madvise_dontneed(mm: MM, start: int, end: int) -> Flush | None:
    """madvise(MADV_DONTNEED). In a hugetlb VMA the start must be 2 MiB
    aligned (EINVAL) and the end is rounded up to a huge page, as
    madvise_dontneed_free_valid_vma() does (checked on 6.18: a 4 KiB
    DONTNEED at an aligned start dropped the 2 MiB page)."""
    vmas = mm.vmas.overlapping(start, end)
    for v in vmas:
        if v.flags & (VM_LOCKED | VM_IO):
            raise MMError(errno.EINVAL, "cannot discard locked or I/O mappings")
        if v.is_hugetlb and max(start, v.start) & (HPAGE_SIZE - 1):
            raise MMError(errno.EINVAL, "MADV_DONTNEED inside a huge page")
    mm.update_hiwater_rss()
    n = 0
    for v in vmas:
        lo, hi = max(start, v.start), min(end, v.end)
        if v.is_hugetlb:
            hi = min((hi + HPAGE_SIZE - 1) & ~(HPAGE_SIZE - 1), v.end)
        n += memory.zap_vma(mm, v, lo, hi, close=False)
    return Flush(start, end) if n else None


def madvise_free(mm: MM, start: int, end: int) -> None:
    """madvise(MADV_FREE) on private anonymous VMAs: pages only this mm maps
    become clean and not swap-backed (LazyFree) until written again. Huge
    PMDs partly covered are split; large folios partly covered, or maybe
    shared, are split if they can be and skipped otherwise, as
    madvise_free_pte_range() does. Swap entries in the range are freed:
    the data is not needed any more (6.18: SwapFree grew by the range),
    with the cached folios only they kept (free_swap_and_cache). A page
    the swap cache holds leaves it first, if no swap entry still needs
    its slot, and is skipped otherwise (madvise_free_pte_range())."""
    mem = mm.mem
    for idx in mm.pgtable.huge_in(start, end):
        base = idx << PMD_SHIFT
        if not (start <= base and base + PMD_SIZE <= end):
            huge_memory.split_huge_pmd(mm, idx)
    for va, sl in mm.pgtable.spans(start, end):
        swp = is_swap_pte(sl)
        if swp.any():
            mem.swap_cache.free_swap_and_cache(swp_offset(sl[swp]))
            mm.rss.add(MM_SWAPENTS, -int(swp.sum()))
            sl[swp] = 0
        present = np.nonzero(sl & PTE_PRESENT)[0]
        if not len(present):
            continue
        pfns = pte_pfn(sl[present])
        ok = (pfns != ZERO_PFN) & ((mem.flags[pfns] & M.PG_ANON) != 0)
        heads, order = mem.folio_head(pfns)
        for h in np.unique(heads[ok & (order > 0)]).tolist():
            if (va >> PMD_SHIFT) in mm.pgtable.huge:
                continue  # wholly covered huge PMD: handled as one folio below
            nr = 1 << int(mem.order[h])
            sel = heads == h
            if mem.maybe_mapped_shared(np.array([h]))[0] or int(sel.sum()) < nr:
                mem.split_folio(h)
        heads, order = mem.folio_head(pfns)
        excl = ok & (mem.folio_mapcount(pfns) == 1)
        if (va >> PMD_SHIFT) in mm.pgtable.huge:
            excl = ok & (mem.large_mapcount[heads] == 1)
        else:
            excl |= ok & (order > 0) & ~mem.maybe_mapped_shared(pfns)
        sc = excl & mem.swap_cache.cached(pfns)
        if sc.any():
            excl[sc] = mem.swap_cache.folio_free_swap(pfns[sc])
        p = pfns[excl]
        mem.flags[p] &= ~np.uint32(M.PG_DIRTY | M.PG_SWAPBACKED | M.PG_REFERENCED)
        sl[present[excl]] &= ~(PTE_DIRTY | PTE_ACCESSED)


@write_locked
def madvise_update_vma(mm: MM, start: int, end: int, set_bits: int, clear_bits: int) -> None:
    """Change VMA flags over [start, end) (madvise HUGEPAGE/NOHUGEPAGE):
    split where they change, merge where they now match."""
    check_split(mm, start, end, lambda v: (v.flags & ~clear_bits) | set_bits != v.flags)
    ranges = [(max(start, v.start), min(end, v.end)) for v in mm.vmas.overlapping(start, end)
              if (v.flags & ~clear_bits) | set_bits != v.flags]
    vmas = [v for lo, hi in ranges for v in isolate(mm, lo, hi)]
    for v in vmas:
        vma_start_write(mm.mmap_lock, v)
        v.flags = (v.flags & ~clear_bits) | set_bits
    for v in vmas:
        if v in mm.vmas._v:
            vma_merge(mm, v)
