"""What /proc computes from the memory model: smaps' mem_size_stats per VMA,
pagemap entries, kpagecount and kpageflags. Everything is vectorised over
page-table spans (512 entries at most), never a Python step per page, and
follows the configured mapcount model (CONFIG_PAGE_MAPCOUNT or
CONFIG_NO_PAGE_MAPCOUNT, seed-mechanisms §5.2)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from procsim.mm import memory as M
from procsim.mm.mm import MM, ZERO_PFN
from procsim.mm.pagetable import PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_SOFT_DIRTY, pte_pfn
from procsim.mm.vma import VM_LOCKED, VM_PFNMAP, VM_SOFTDIRTY, VMA

PSS_SHIFT = 12
PM_PFRAME_MASK = (1 << 55) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

# kpageflags bits (spec §13.3)
KPF_LOCKED, KPF_REFERENCED, KPF_UPTODATE, KPF_DIRTY, KPF_LRU, KPF_ACTIVE = 0, 2, 3, 4, 5, 6
KPF_BUDDY, KPF_MMAP, KPF_ANON, KPF_SWAPBACKED, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 10, 11, 12, 14, 15, 16
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


def smaps_vma(mm: MM, v: VMA, special_mapcount: int = 2) -> MemSizeStats:
    """The smaps numbers of one VMA. `special_mapcount`: how many mms map the
    vDSO pages (the simulator keeps no mapcount for kernel pages)."""
    st = MemSizeStats()
    if v.flags & VM_PFNMAP:  # vm_normal_page() is NULL: nothing counts
        return st
    mem = mm.mem
    locked = bool(v.flags & VM_LOCKED)
    huge = set(mm.pgtable.huge_in(v.start, v.end))
    for va, sl in mm.pgtable.spans(v.start, v.end):
        present = (sl & PTE_PRESENT) != 0
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


def pagemap_entries(mm: MM, start: int, end: int, show_pfn: bool = True) -> np.ndarray:
    """pagemap u64 entries for the pages of [start, end) (spec §10.1)."""
    out = np.zeros((end - start) >> PAGE_SHIFT, np.uint64)
    mem = mm.mem
    for v in mm.vmas.overlapping(start, end):
        lo, hi = max(start, v.start), min(end, v.end)
        i0 = (lo - start) >> PAGE_SHIFT
        if v.flags & VM_SOFTDIRTY:
            out[i0: i0 + ((hi - lo) >> PAGE_SHIFT)] |= np.uint64(PM_SOFT_DIRTY)
        if v.flags & VM_PFNMAP:
            continue  # PFN maps read as holes
        for va, sl in mm.pgtable.spans(lo, hi):
            present = (sl & PTE_PRESENT) != 0
            if not present.any():
                continue
            i = (va - start) >> PAGE_SHIFT
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


@dataclass
class NumaMapsStats:
    """struct numa_maps for one VMA: page counts, all on node 0."""
    pages: int = 0
    anon: int = 0
    dirty: int = 0
    active: int = 0
    mapcount_max: int = 0


def numa_vma(mm: MM, v: VMA) -> NumaMapsStats:
    """gather_pte_stats() over one VMA: every present normal page (not the
    zero page, not kernel pages, nothing in PFN maps); a huge PMD counts its
    512 pages with its head page's mapcount. The mapcount is the precise one
    or the folio average, as the mapcount model has it (mapmax=)."""
    md = NumaMapsStats()
    if v.flags & VM_PFNMAP:
        return md
    mem = mm.mem
    huge = set(mm.pgtable.huge_in(v.start, v.end))
    for va, sl in mm.pgtable.spans(v.start, v.end):
        ptes = sl[(sl & PTE_PRESENT) != 0]
        pfns = pte_pfn(ptes)
        fl = mem.flags[pfns]
        ok = (pfns != ZERO_PFN) & ((fl & M.PG_RESERVED) == 0)
        if not ok.any():
            continue
        ptes, pfns, fl = ptes[ok], pfns[ok], fl[ok]
        md.pages += len(pfns)
        md.dirty += int((((ptes & PTE_DIRTY) != 0) | ((fl & M.PG_DIRTY) != 0)).sum())
        md.active += int(((fl & (M.PG_ACTIVE | M.PG_MLOCKED)) != 0).sum())
        md.anon += int(((fl & M.PG_ANON) != 0).sum())
        counted = pfns[:1] if (va >> PMD_SHIFT) in huge else pfns
        count = mem.precise_page_mapcount(counted) if mem.mapcount_model == "page" \
            else mem.average_page_mapcount(counted)
        md.mapcount_max = max(md.mapcount_max, int(count.max()))
    return md


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
    put(mapped, KPF_OWNER_2)
    heads, order = mem.folio_head(pfns)
    large = used & (order > 0)
    put(large & (heads == pfns), KPF_COMPOUND_HEAD)
    put(large & (heads != pfns), KPF_COMPOUND_TAIL)
    put(large, KPF_THP)
    return out
