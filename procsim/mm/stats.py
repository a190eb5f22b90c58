"""What /proc computes from the memory model: smaps' mem_size_stats per VMA,
pagemap entries, kpagecount and kpageflags. Everything is vectorised over
page-table spans (512 entries at most), never a Python step per page, and
follows the configured mapcount model (CONFIG_PAGE_MAPCOUNT or
CONFIG_NO_PAGE_MAPCOUNT, seed-mechanisms §5.2)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.hugetlb import HPAGE_SIZE
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
KPF_BUDDY, KPF_MMAP, KPF_ANON, KPF_SWAPCACHE, KPF_SWAPBACKED = 10, 11, 12, 13, 14
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 15, 16
KPF_HUGE = 17
KPF_IDLE = 25
KPF_UNEVICTABLE, KPF_THP, KPF_ZERO_PAGE, KPF_RESERVED, KPF_MLOCKED, KPF_OWNER_2 = 18, 22, 24, 32, 33, 34
KPF_OWNER_PRIVATE = 37


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


def _entries(mm: MM, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """(virtual page numbers, entries) of every non-empty page-table entry in
    [start, end), in address order: one numpy pass per table, so whole-mm
    arithmetic costs what is mapped, not one Python step per VMA or page."""
    vpns, ents = [], []
    for va, sl in mm.pgtable.spans(start, end):
        nz = np.flatnonzero(sl)
        if len(nz):
            vpns.append(nz + (va >> PAGE_SHIFT))
            ents.append(sl[nz])
    if not vpns:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    return np.concatenate(vpns), np.concatenate(ents)


# Columns of the per-VMA smaps array: MemSizeStats' fields in order.
FIELDS = tuple(f.name for f in fields(MemSizeStats))
COL = {name: i for i, name in enumerate(FIELDS)}

# Every counted page gets a 6-bit class; one bincount per VMA and class then
# gives every page-count field through a selector matrix (and a 3-bit class
# for the PSS split), instead of one pass over the pages per field.
_ANON, _SWAPBACKED, _DIRTY, _YOUNG, _HUGE, _PRIVATE = (1 << b for b in range(6))
_C = np.arange(64)
_PAGE_COLS = {
    "resident": _C >= 0, "anonymous": (_C & _ANON) != 0,
    "lazyfree": (_C & (_ANON | _SWAPBACKED | _DIRTY)) == _ANON, "referenced": (_C & _YOUNG) != 0,
    "anonymous_thp": (_C & (_ANON | _HUGE)) == _ANON | _HUGE,
    "private_dirty": (_C & (_DIRTY | _PRIVATE)) == _DIRTY | _PRIVATE,
    "shared_dirty": (_C & (_DIRTY | _PRIVATE)) == _DIRTY,
    "private_clean": (_C & (_DIRTY | _PRIVATE)) == _PRIVATE,
    "shared_clean": (_C & (_DIRTY | _PRIVATE)) == 0,
}
_PAGE_SEL = np.stack(list(_PAGE_COLS.values()), axis=1).astype(np.int64)
_P = np.arange(8)
_PSS_COLS = {"pss": _P >= 0, "pss_anon": (_P & _ANON) != 0, "pss_shmem": (_P & (_ANON | _SWAPBACKED)) == _SWAPBACKED,
             "pss_file": (_P & (_ANON | _SWAPBACKED)) == 0, "pss_dirty": (_P & _DIRTY) != 0}
_PSS_SEL = np.stack(list(_PSS_COLS.values()), axis=1).astype(np.int64)


def _bincount_exact(keys: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Integer sums of int64 weights by key (bincount adds in float64: split
    each weight in two halves so that no sum can lose a bit)."""
    hi = np.bincount(keys, weights=weights >> 12, minlength=n)
    lo = np.bincount(keys, weights=weights & 4095, minlength=n)
    return (hi.astype(np.int64) << 12) + lo.astype(np.int64)


def smaps_array(mm: MM, vmas: list[VMA], special_mapcount: int | dict[int, int] = 2) -> np.ndarray:
    """smaps_account() over every page of each VMA in `vmas` (in address
    order), vectorised across all of them: an int64 array, one row per VMA,
    one column per MemSizeStats field (FIELDS). A PMD-mapped THP is walked
    as its 512 entries: the compound case's per-page loop gives the same
    sums. `special_mapcount`: how many page tables map each vDSO page, by
    PFN (Kernel.vdso_mapcount), or one count for all: the simulator keeps
    no mapcount for kernel pages."""
    n = len(vmas)
    out = np.zeros((n, len(FIELDS)), np.int64)
    if not n:
        return out
    mem = mm.mem
    starts = np.array([v.start >> PAGE_SHIFT for v in vmas], np.int64)
    ends = np.array([v.end >> PAGE_SHIFT for v in vmas], np.int64)
    vmflags = np.array([v.flags for v in vmas], np.int64)
    vpn, ptes = _entries(mm, vmas[0].start, vmas[-1].end)
    seg = np.searchsorted(starts, vpn, "right") - 1
    inside = seg >= 0
    inside[inside] &= vpn[inside] < ends[seg[inside]]
    vpn, ptes, seg = vpn[inside], ptes[inside], seg[inside]
    # swap entries: Swap 4 KiB each, SwapPss the 4 KiB shared among the
    # entries that use the slot (swp_swapcount; full when it is 1)
    swapped = is_swap_pte(ptes)
    if swapped.any():
        sseg = seg[swapped]
        count = mem.swap.count(swp_offset(ptes[swapped])).astype(np.int64)
        full = np.int64(PAGE_SIZE << PSS_SHIFT)
        out[:, COL["swap"]] = np.bincount(sseg, minlength=n) * PAGE_SIZE
        out[:, COL["swap_pss"]] = _bincount_exact(sseg, np.where(count >= 2, full // np.maximum(count, 1), full), n)
    for i, v in enumerate(vmas):
        if v.is_hugetlb:
            out[i, COL["shared_hugetlb"]], out[i, COL["private_hugetlb"]] = _smaps_hugetlb(mm, v)
    pfns = pte_pfn(ptes)
    # present normal pages; PFN maps have no normal pages (vm_normal_page()
    # is NULL) and the zero page is not one either
    keep = ((ptes & PTE_PRESENT) != 0) & (pfns != ZERO_PFN)
    keep[keep] &= (vmflags[seg[keep]] & VM_PFNMAP) == 0
    vpn, ptes, pfns, seg = vpn[keep], ptes[keep], pfns[keep], seg[keep]

    fl = mem.flags[pfns]
    reserved = (fl & M.PG_RESERVED) != 0  # vDSO text: a normal page mapped by every process
    special = np.zeros(len(pfns), np.int64)  # the vDSO pages' mapcounts
    if reserved.any():
        special[reserved] = ([special_mapcount.get(p, 1) for p in pfns[reserved].tolist()]
                             if isinstance(special_mapcount, dict) else special_mapcount)
    refcount = np.where(reserved, special + 1, mem.folio_mapcount(pfns))  # + the kernel's own reference
    if mem.mapcount_model == "page":
        mapcount = mem.precise_page_mapcount(pfns)
        private = mapcount < 2
    else:
        mapcount = mem.average_page_mapcount(pfns)
        private = ~mem.maybe_mapped_shared(pfns)
    mapcount = np.where(reserved, special, mapcount)
    private = np.where(reserved, special < 2, private)
    one = refcount == 1  # the fast path: mapped exactly once, wholly private
    private |= one
    full = np.int64(PAGE_SIZE << PSS_SHIFT)
    pss = np.where(one | (mapcount < 2), full, full // np.maximum(mapcount, 1).astype(np.int64))
    huge = np.zeros(len(vpn), bool)
    if mm.pgtable.huge:
        huge = np.isin(vpn >> (PMD_SHIFT - PAGE_SHIFT), np.fromiter(mm.pgtable.huge, np.int64))

    dirty = ((ptes & PTE_DIRTY) != 0) | ((fl & M.PG_DIRTY) != 0)
    cls = ((fl & M.PG_ANON) != 0).astype(np.int64) | ((fl & M.PG_SWAPBACKED) != 0) * _SWAPBACKED \
        | dirty * _DIRTY | (((ptes & PTE_ACCESSED) != 0) | ((fl & (M.PG_REFERENCED | M.PG_YOUNG)) != 0)) * _YOUNG \
        | huge * _HUGE | private * _PRIVATE
    counts = np.bincount(seg * 64 + cls, minlength=n * 64).reshape(n, 64)
    out[:, [COL[c] for c in _PAGE_COLS]] = (counts @ _PAGE_SEL) * PAGE_SIZE
    pss_by = _bincount_exact(seg * 8 + (cls & 7), pss, n * 8).reshape(n, 8)
    out[:, [COL[c] for c in _PSS_COLS]] = pss_by @ _PSS_SEL
    out[:, COL["pss_locked"]] = np.where((vmflags & VM_LOCKED) != 0, out[:, COL["pss"]], 0)
    return out


def to_stats(row: np.ndarray) -> MemSizeStats:
    return MemSizeStats(*row.tolist())


def smaps_vmas(mm: MM, vmas: list[VMA], special_mapcount: int | dict[int, int] = 2) -> list[MemSizeStats]:
    return [to_stats(r) for r in smaps_array(mm, vmas, special_mapcount)]


def _smaps_hugetlb(mm: MM, v: VMA) -> tuple[int, int]:
    """smaps_hugetlb_range(): (Shared_Hugetlb, Private_Hugetlb) bytes; each
    mapped huge page is shared when mapped more than once
    (folio_maybe_mapped_shared), else private. Nothing else counts."""
    shared = private = 0
    for idx in mm.pgtable.hugetlb_in(v.start, v.end):
        head = mm.pgtable.hugetlb[idx] >> PAGE_SHIFT
        if mm.mem.large_mapcount[head] > 1:
            shared += HPAGE_SIZE
        else:
            private += HPAGE_SIZE
    return shared, private


def smaps_vma(mm: MM, v: VMA, special_mapcount: int | dict[int, int] = 2) -> MemSizeStats:
    """The smaps numbers of one VMA."""
    return smaps_vmas(mm, [v], special_mapcount)[0]


def smaps_rollup(mm: MM, special_mapcount: int | dict[int, int] = 2) -> MemSizeStats:
    """The sums over every VMA, in bytes and fixed point (not truncated kB)."""
    return to_stats(smaps_array(mm, list(mm.vmas), special_mapcount).sum(axis=0))


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
    """pagemap u64 entries for the pages of [start, end) (spec §10.1),
    computed over all of the range's page-table entries at once."""
    out = np.zeros((end - start) >> PAGE_SHIFT, np.uint64)
    mem = mm.mem
    vmas = mm.vmas.overlapping(start, end)
    if not vmas:
        return out
    base = start >> PAGE_SHIFT
    vpn, ptes = _entries(mm, start, end)
    swapped = is_swap_pte(ptes)
    if swapped.any():  # PM_SWAP, and the type and offset (type | offset << 5) only with show_pfn
        sw = ptes[swapped]
        e = np.full(len(sw), PM_SWAP, np.uint64)
        if show_pfn:  # swap type 0
            e |= swp_offset(sw).astype(np.uint64) << np.uint64(MAX_SWAPFILES_SHIFT)
        e[(sw & PTE_SOFT_DIRTY) != 0] |= np.uint64(PM_SOFT_DIRTY)
        out[vpn[swapped] - base] = e
    present = (ptes & PTE_PRESENT) != 0
    vpn, ptes = vpn[present], ptes[present]
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
    out[vpn - base] = e
    # what depends on the VMA: PFN maps read as holes, hugetlb pages sit
    # outside the PTE tables, VM_SOFTDIRTY marks every page (rare: only
    # these VMAs cost a step each)
    for v in vmas:
        if v.flags & (VM_PFNMAP | VM_SOFTDIRTY) or v.is_hugetlb:
            lo, hi = max(start, v.start), min(end, v.end)
            i, j = (lo >> PAGE_SHIFT) - base, (hi >> PAGE_SHIFT) - base
            if v.flags & VM_PFNMAP:
                out[i:j] = 0
            if v.is_hugetlb:
                _pagemap_hugetlb(out, mm, lo, hi, start, show_pfn)
            if v.flags & VM_SOFTDIRTY:
                out[i:j] |= np.uint64(PM_SOFT_DIRTY)
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
    if v.is_hugetlb:  # gather_hugetlb_stats(): one "page" per huge page, its folio mapcount
        for idx in mm.pgtable.hugetlb_in(v.start, v.end):
            pte = int(mm.pgtable.hugetlb[idx])
            head = pte >> PAGE_SHIFT
            md.pages += 1
            md.dirty += bool(pte & int(PTE_DIRTY) or mem.flags[head] & M.PG_DIRTY)
            md.anon += bool(mem.flags[head] & M.PG_ANON)
            md.mapcount_max = max(md.mapcount_max, int(mem.large_mapcount[head]))
        return md
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
    # PG_swapcache is PG_owner_priv_1, so the raw bit 37 shows too (6.18: a
    # paged-out folio 0x2000007028, mapped again by a read fault 0x2400007828)
    swapcache = (fl & M.PG_SWAPCACHE) != 0
    put(swapcache, KPF_SWAPCACHE)
    put(swapcache, KPF_OWNER_PRIVATE)
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
    # the folio's idle flag (kept on the head page), shown on every page
    put(used & ((mem.flags[heads] & M.PG_IDLE) != 0), KPF_IDLE)
    # a pool page is UPTODATE once it has been used (6.18: fresh pool pages
    # 0x28000 head / 0x30000 tail, after use and munmap 0x28018)
    fresh = hugetlb & ((fl & (M.PG_ANON | M.PG_DIRTY)) == 0)
    out[fresh] &= ~np.uint64(1 << KPF_UPTODATE)
    return out
