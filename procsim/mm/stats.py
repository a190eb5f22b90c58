"""What /proc computes from the memory model: smaps' mem_size_stats per VMA,
pagemap entries, kpagecount and kpageflags. Everything is vectorised over
page-table spans (512 entries at most), never a Python step per page, and
follows the configured mapcount model (CONFIG_PAGE_MAPCOUNT or
CONFIG_NO_PAGE_MAPCOUNT, seed-mechanisms §5.2)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from procsim.mm import memory as M
from procsim.mm.hugetlb import HPAGE_NR, HPAGE_SIZE
from procsim.mm.mm import MM, ZERO_PFN
from procsim.mm.pagetable import (PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT,
                                  PTE_SOFT_DIRTY, is_swap_pte, pte_pfn, swp_offset)
from procsim.mm.vma import VM_LOCKED, VM_PFNMAP, VM_SOFTDIRTY, VMA

PSS_SHIFT = 12
PM_PFRAME_MASK = (1 << 55) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
MAX_SWAPFILES_SHIFT = 5  # pagemap swap frame: type in bits 0-4, offset above

# kpageflags bits (spec §13.3)
KPF_LOCKED, KPF_REFERENCED, KPF_UPTODATE, KPF_DIRTY, KPF_LRU, KPF_ACTIVE = 0, 2, 3, 4, 5, 6
KPF_BUDDY, KPF_MMAP, KPF_ANON, KPF_SWAPBACKED, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 10, 11, 12, 14, 15, 16
KPF_HUGE = 17
KPF_UNEVICTABLE, KPF_THP, KPF_ZERO_PAGE, KPF_RESERVED, KPF_MLOCKED, KPF_OWNER_2 = 18, 22, 24, 32, 33, 34


@dataclass
class MemSizeStats:
    """struct mem_size_stats: bytes, PSS values in bytes << PSS_SHIFT."""
    resident: int = 0
    pss: int = 0
    pss_dirty: int = 0
    pss_anon: int = 0
    pss_file: int = 0
    pss_shmem: int = 0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    referenced: int = 0
    anonymous: int = 0
    ksm: int = 0
    lazyfree: int = 0
    anonymous_thp: int = 0
    shmem_thp: int = 0
    file_thp: int = 0
    shared_hugetlb: int = 0
    private_hugetlb: int = 0
    swap: int = 0
    swap_pss: int = 0
    pss_locked: int = 0

    def add(self, other: "MemSizeStats") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _accumulate(st: MemSizeStats, mem: M.MemMap, pfns: np.ndarray, young: np.ndarray, dirty: np.ndarray,
                locked: bool, special_mapcount: int) -> None:
    """smaps_account() for PTE-mapped pages (one page per entry) and PMD-mapped
    folios (their 512 entries: the per-page loop of the compound case gives
    the same sums)."""
    n = len(pfns)
    if not n:
        return
    fl = mem.flags[pfns]
    reserved = (fl & M.PG_RESERVED) != 0  # vDSO text: a normal page mapped by every process
    anon = (fl & M.PG_ANON) != 0
    dirty = dirty | ((fl & M.PG_DIRTY) != 0)
    young = young | ((fl & M.PG_REFERENCED) != 0)
    st.resident += n * PAGE_SIZE
    st.anonymous += int(anon.sum()) * PAGE_SIZE
    st.lazyfree += int((anon & ((fl & M.PG_SWAPBACKED) == 0) & ~dirty).sum()) * PAGE_SIZE
    st.referenced += int(young.sum()) * PAGE_SIZE
    refcount = np.where(reserved, special_mapcount + 1, mem.folio_mapcount(pfns))
    if mem.mapcount_model == "page":
        mapcount = mem.precise_page_mapcount(pfns)
        private = mapcount < 2
    else:
        mapcount = mem.average_page_mapcount(pfns)
        private = ~mem.maybe_mapped_shared(pfns)
    mapcount = np.where(reserved, special_mapcount, mapcount)
    private = np.where(reserved, special_mapcount < 2, private)
    one = refcount == 1  # the fast path: mapped exactly once, wholly private
    private = one | private
    full = np.int64(PAGE_SIZE << PSS_SHIFT)
    pss = np.where(one | (mapcount < 2), full, full // np.maximum(mapcount, 1).astype(np.int64))
    st.pss += int(pss.sum())
    swapbacked = (fl & M.PG_SWAPBACKED) != 0
    st.pss_anon += int(pss[anon].sum())
    st.pss_shmem += int(pss[~anon & swapbacked].sum())
    st.pss_file += int(pss[~anon & ~swapbacked].sum())
    if locked:
        st.pss_locked += int(pss.sum())
    st.pss_dirty += int(pss[dirty].sum())
    st.private_dirty += int((dirty & private).sum()) * PAGE_SIZE
    st.shared_dirty += int((dirty & ~private).sum()) * PAGE_SIZE
    st.private_clean += int((~dirty & private).sum()) * PAGE_SIZE
    st.shared_clean += int((~dirty & ~private).sum()) * PAGE_SIZE


def _account_swap(st: MemSizeStats, mem: M.MemMap, ents: np.ndarray) -> None:
    """smaps_pte_entry() for swap entries: Swap 4 KiB each, SwapPss the 4 KiB
    divided among the entries that share the slot (swp_swapcount; full when
    it is 1)."""
    st.swap += len(ents) * PAGE_SIZE
    count = mem.swap.count(swp_offset(ents)).astype(np.int64)
    full = np.int64(PAGE_SIZE << PSS_SHIFT)
    st.swap_pss += int(np.where(count >= 2, full // np.maximum(count, 1), full).sum())


def _smaps_hugetlb(st: MemSizeStats, mm: MM, v: VMA) -> None:
    """smaps_hugetlb_range(): nothing in Rss, Pss and the like; each mapped
    huge page adds 2 MiB to Shared_Hugetlb when mapped more than once
    (folio_maybe_mapped_shared), else to Private_Hugetlb."""
    mem = mm.mem
    for idx in mm.pgtable.hugetlb_in(v.start, v.end):
        head = mm.pgtable.hugetlb[idx] >> PAGE_SHIFT
        if mem.large_mapcount[head] > 1:
            st.shared_hugetlb += HPAGE_SIZE
        else:
            st.private_hugetlb += HPAGE_SIZE


def smaps_vma(mm: MM, v: VMA, special_mapcount: int = 2) -> MemSizeStats:
    """The smaps numbers of one VMA. `special_mapcount`: how many mms map the
    vDSO pages (the simulator keeps no mapcount for kernel pages).
    For a hugetlb VMA (v.is_hugetlb) only Shared_/Private_Hugetlb count, and
    its KernelPageSize and MMUPageSize are 2048 kB."""
    st = MemSizeStats()
    if v.flags & VM_PFNMAP:  # vm_normal_page() is NULL: nothing counts
        return st
    if v.is_hugetlb:
        _smaps_hugetlb(st, mm, v)
        return st
    mem = mm.mem
    locked = bool(v.flags & VM_LOCKED)
    huge = set(mm.pgtable.huge_in(v.start, v.end))
    for va, sl in mm.pgtable.spans(v.start, v.end):
        present = (sl & PTE_PRESENT) != 0
        swapped = is_swap_pte(sl)
        if swapped.any():
            _account_swap(st, mem, sl[swapped])
        if not present.any():
            continue
        ptes = sl[present]
        pfns = pte_pfn(ptes)
        normal = pfns != ZERO_PFN  # the shared zero page is not a normal page
        ptes, pfns = ptes[normal], pfns[normal]
        _accumulate(st, mem, pfns, (ptes & PTE_ACCESSED) != 0, (ptes & PTE_DIRTY) != 0, locked,
                    special_mapcount)
        if (va >> PMD_SHIFT) in huge:
            st.anonymous_thp += len(pfns) * PAGE_SIZE
    return st


def smaps_rollup(mm: MM, special_mapcount: int = 2) -> MemSizeStats:
    st = MemSizeStats()
    for v in mm.vmas:
        st.add(smaps_vma(mm, v, special_mapcount))
    return st


def _pagemap_hugetlb(out: np.ndarray, mm: MM, lo: int, hi: int, start: int, show_pfn: bool) -> None:
    """pagemap_hugetlb_range(): every 4 KiB slot of a mapped huge page is
    present with PFN head + index, exclusive when the folio is mapped once,
    PM_FILE when it is not anonymous (a shared mapping's page-cache page).
    Observed on 6.18: private 0x81..., shared 0xa1..., both 0x80/0xa0 when
    a second process maps the page."""
    mem = mm.mem
    for idx in mm.pgtable.hugetlb_in(lo, hi):
        head = mm.pgtable.hugetlb[idx] >> PAGE_SHIFT
        flags = PM_PRESENT
        if not mem.flags[head] & M.PG_ANON:
            flags |= PM_FILE
        if mem.large_mapcount[head] == 1:
            flags |= PM_MMAP_EXCLUSIVE
        base = idx << PMD_SHIFT
        a, b = max(lo, base), min(hi, base + HPAGE_SIZE)
        first = (a - base) >> PAGE_SHIFT
        e = np.full((b - a) >> PAGE_SHIFT, flags, np.uint64)
        if show_pfn:
            e |= np.arange(head + first, head + first + len(e), dtype=np.uint64)
        i = (a - start) >> PAGE_SHIFT
        out[i: i + len(e)] |= e


def pagemap_entries(mm: MM, start: int, end: int, show_pfn: bool = True) -> np.ndarray:
    """pagemap u64 entries for the pages of [start, end) (spec §10.1). Swap
    entries read as PM_SWAP with the type and offset (type | offset << 5)
    when show_pfn, flags only otherwise; never exclusive nor PM_FILE
    (observed 0x4000000000000020 for offset 1)."""
    out = np.zeros((end - start) >> PAGE_SHIFT, np.uint64)
    mem = mm.mem
    for v in mm.vmas.overlapping(start, end):
        lo, hi = max(start, v.start), min(end, v.end)
        i0 = (lo - start) >> PAGE_SHIFT
        if v.flags & VM_SOFTDIRTY:
            out[i0: i0 + ((hi - lo) >> PAGE_SHIFT)] |= np.uint64(PM_SOFT_DIRTY)
        if v.flags & VM_PFNMAP:
            continue  # PFN maps read as holes
        if v.is_hugetlb:
            _pagemap_hugetlb(out, mm, lo, hi, start, show_pfn)
            continue
        for va, sl in mm.pgtable.spans(lo, hi):
            present = (sl & PTE_PRESENT) != 0
            i = (va - start) >> PAGE_SHIFT
            swapped = is_swap_pte(sl)
            if swapped.any():
                ents = sl[swapped]
                e = np.full(len(ents), PM_SWAP, np.uint64)
                if show_pfn:  # swap type 0
                    e |= swp_offset(ents).astype(np.uint64) << np.uint64(MAX_SWAPFILES_SHIFT)
                e[(ents & PTE_SOFT_DIRTY) != 0] |= np.uint64(PM_SOFT_DIRTY)
                seg = out[i: i + len(sl)]
                seg[swapped] |= e
            if not present.any():
                continue
            ptes = sl[present]
            pfns = pte_pfn(ptes)
            e = np.full(len(pfns), PM_PRESENT, np.uint64)
            if show_pfn:
                e |= pfns.astype(np.uint64)
            e[(ptes & PTE_SOFT_DIRTY) != 0] |= np.uint64(PM_SOFT_DIRTY)
            page = pfns != ZERO_PFN
            fl = mem.flags[pfns]
            e[page & ((fl & M.PG_ANON) == 0)] |= np.uint64(PM_FILE)
            excl = page & ((fl & M.PG_RESERVED) == 0) & mem.page_mapped_exclusively(pfns)
            e[excl] |= np.uint64(PM_MMAP_EXCLUSIVE)
            seg = out[i: i + len(sl)]
            seg[present] |= e
    return out


def kpagecount(mem: M.MemMap, lo: int, hi: int) -> np.ndarray:
    """/proc/kpagecount entries for PFNs [lo, hi)."""
    pfns = np.arange(lo, hi, dtype=np.int64)
    c = mem.kpagecount(pfns).astype(np.int64)
    c[(mem.flags[pfns] & M.PG_RESERVED) != 0] = 0
    return np.maximum(c, 0).astype(np.uint64)


def kpageflags(mem: M.MemMap, lo: int, hi: int) -> np.ndarray:
    """/proc/kpageflags entries for PFNs [lo, hi) (the modelled subset of §13.3)."""
    pfns = np.arange(lo, hi, dtype=np.int64)
    fl = mem.flags[pfns].astype(np.uint64)
    out = np.zeros(len(pfns), np.uint64)

    def put(mask, bit):
        out[mask] |= np.uint64(1 << bit)

    free = fl == 0
    reserved = (fl & M.PG_RESERVED) != 0
    put(free, KPF_BUDDY)
    put(reserved, KPF_RESERVED)
    put(pfns == ZERO_PFN, KPF_ZERO_PAGE)
    used = ~free & ~reserved
    put(used, KPF_UPTODATE)
    put((fl & M.PG_LRU) != 0, KPF_LRU)
    put((fl & M.PG_ACTIVE) != 0, KPF_ACTIVE)
    put(((fl & M.PG_REFERENCED) != 0) & used, KPF_REFERENCED)
    put((fl & M.PG_DIRTY) != 0, KPF_DIRTY)
    anon = (fl & M.PG_ANON) != 0
    put(anon, KPF_ANON)
    put((fl & M.PG_SWAPBACKED) != 0, KPF_SWAPBACKED)
    put((fl & M.PG_MLOCKED) != 0, KPF_MLOCKED)
    mapped = used & (mem.kpagecount(pfns) > 0)
    put(mapped, KPF_MMAP)
    hugetlb = (fl & M.PG_HUGETLB) != 0
    # bit 34 aliases PageAnonExclusive: kept for hugetlb pages, which lose it
    # at fork (6.18: 0x400029808 before, 0x29818 after); others: any mapped page
    put(mapped & (~hugetlb | ((fl & M.PG_ANON_EXCLUSIVE) != 0)), KPF_OWNER_2)
    heads, order = mem.folio_head(pfns)
    large = used & (order > 0)
    put(large & (heads == pfns), KPF_COMPOUND_HEAD)
    put(large & (heads != pfns), KPF_COMPOUND_TAIL)
    put(large & ~hugetlb, KPF_THP)
    put(hugetlb, KPF_HUGE)
    # a pool page is UPTODATE once it has been used (6.18: fresh pool pages
    # 0x28000 head / 0x30000 tail, after use and munmap 0x28018)
    fresh = hugetlb & ((fl & (M.PG_ANON | M.PG_DIRTY)) == 0)
    out[fresh] &= ~np.uint64(1 << KPF_UPTODATE)
    return out
