"""Physical memory: an array-backed mem_map indexed by PFN, folios, the rmap
mapcounts (per page and per folio, with MM-ID owner tracking) and the frame
allocator.

No Python object per page: every per-frame field is one numpy array. numpy
arrays made with zeros() are backed by untouched anonymous memory, so a
large machine costs nothing until its frames are used.
"""

from __future__ import annotations

import weakref

import numpy as np

from procsim.mm.swap import SwapDevice
from procsim.mm.thp import THPSettings
from procsim.mm.vmstat import VmEvents
from procsim.mm.zone import alloc_zone

# Page flags kept per frame (a subset of the kernel's PG_* and KPF_* bits).
PG_ANON = 1 << 0        # anonymous (PageAnon)
PG_FILE = 1 << 1        # in a file's page cache
PG_SHMEM = 1 << 2       # shmem / shared anonymous (swap-backed page cache)
PG_DIRTY = 1 << 3
PG_REFERENCED = 1 << 4
PG_LRU = 1 << 5
PG_ACTIVE = 1 << 6
PG_RESERVED = 1 << 7    # kernel memory, PFN 0, the zero page
PG_MLOCKED = 1 << 8
PG_SWAPBACKED = 1 << 9  # anon and shmem; MADV_FREE clears it on anon (LazyFree)
# Kept on the head page only: the folio's "maybe mapped shared" bit of the MM-ID
# tracking (FOLIO_MM_IDS_SHARED_BIT in folio->_mm_ids).
PG_MAYBE_SHARED = 1 << 10
# A frame of the hugetlb pool (PageHuge: free in the pool or in use). Such
# folios never reach the LRU, the vmstat page counters or the rmap of
# map_pages(); hugetlb.py keeps their mapcounts.
PG_HUGETLB = 1 << 11
# PageAnonExclusive, kept for hugetlb pages only (kpageflags bit 34 of a
# private hugetlb page; fork clears it). Other anonymous pages derive it.
PG_ANON_EXCLUSIVE = 1 << 12
# Idle page tracking (the page_ext bits of 64-bit kernels): PG_IDLE set by a
# write of the page_idle bitmap and cleared by an access found through the
# rmap; PG_YOUNG remembers an accessed bit that idle tracking cleared, so
# reclaim and smaps Referenced still see the access.
PG_IDLE = 1 << 13
PG_YOUNG = 1 << 14
# In the swap cache (PG_swapcache): an order-0 anonymous folio that holds a
# swap slot's data (procsim/mm/swapcache.py); unmapping it does not free it.
PG_SWAPCACHE = 1 << 15

HPAGE_PMD_ORDER = 9
MAX_FOLIO_ORDER = HPAGE_PMD_ORDER  # anonymous folios: order 0 and 2..9
MAPCOUNT_MODELS = ("page", "no_page")


class OutOfMemory(Exception):
    """No free frame left, and the OOM killer could not free enough."""


def _i64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


class MemMap:
    """struct page[] for the whole machine, as parallel arrays.

    Folios: a folio of order o covers 2**o naturally aligned frames; every
    frame records its folio's order, so the head of any frame is
    `pfn & ~((1 << order) - 1)` without a lookup. Per-folio fields (large
    mapcount, entire mapcount, the two MM-ID slots) live at the head's index of
    their own arrays and are only ever written for large folios, so small
    folios cost nothing there.

    Mapcounts: `mapcount` is the precise number of PTEs mapping each frame
    (CONFIG_PAGE_MAPCOUNT's page->_mapcount + 1; PMD mappings are not in it).
    The simulator always keeps it because it is the truth the invariants are
    checked against; `mapcount_model` only decides what the kernel *can know*
    and therefore what /proc reports, AnonPages and deferred-split detection.
    """

    def __init__(self, nr_pages: int, reserved_pages: int, mapcount_model: str = "page") -> None:
        if mapcount_model not in MAPCOUNT_MODELS:
            raise ValueError(f"mapcount_model must be one of {', '.join(MAPCOUNT_MODELS)}")
        self.nr_pages = nr_pages
        self.mapcount_model = mapcount_model
        self.flags = np.zeros(nr_pages, np.uint32)
        # Number of page-table entries mapping the frame, over all mms.
        self.mapcount = np.zeros(nr_pages, np.int32)
        self.order = np.zeros(nr_pages, np.uint8)
        # per-folio, valid at the head of large folios
        self.large_mapcount = np.zeros(nr_pages, np.int32)   # PTE + PMD mappings
        self.entire_mapcount = np.zeros(nr_pages, np.int32)  # PMD mappings
        self.mm_id0 = np.zeros(nr_pages, np.int32)
        self.mm_id1 = np.zeros(nr_pages, np.int32)
        self.mm_cnt0 = np.zeros(nr_pages, np.int32)
        self.mm_cnt1 = np.zeros(nr_pages, np.int32)
        # rmap (folio->mapping and folio->index, per frame; rmap.py): the
        # anon_vma root or file the page belongs to (0: none yet) and its
        # page index there (linear page index for anon, file pgoff)
        self.rmap_mapping = np.zeros(nr_pages, np.int32)
        self.rmap_index = np.zeros(nr_pages, np.int64)
        self.mms: weakref.WeakSet = weakref.WeakSet()  # every mm, for rmap walks
        # Frames below first_free are the kernel's own (never handed out).
        self.first_free = max(1, min(reserved_pages, nr_pages))
        self.flags[: self.first_free] = PG_RESERVED
        self._next = self.first_free        # bump pointer over never-used frames
        self._freed: list[np.ndarray] = []  # freed order-0 frames, reused first
        # freed whole folios, by order (no buddy merging: fragmentation is not
        # what this simulator is about, and reuse by order keeps large
        # allocations cheap after munmap)
        self._blocks: list[list[int]] = [[] for _ in range(MAX_FOLIO_ORDER + 1)]
        self.nr_free = nr_pages - self.first_free
        # memblock_free_all(): every free frame enters the buddy allocator (pgfree)
        self.vm_events = VmEvents(alloc_zone(self.nr_free), self.nr_free)
        # vmstat-style counters, kept at alloc/free/map so reads are O(1).
        self.nr_flag = {PG_ANON: 0, PG_FILE: 0, PG_SHMEM: 0}
        self.nr_mapped_file = 0  # page-cache frames mapped at least once (Mapped)
        # NR_ANON_MAPPED as each model computes it: pages with a precise
        # mapcount (PAGE_MAPCOUNT), or whole folios as soon as any page is
        # mapped (NO_PAGE_MAPCOUNT)
        self.nr_anon_mapped_page = 0
        self.nr_anon_mapped_folio = 0
        self.nr_anon_thps = 0     # pages of PMD-mapped anon folios (AnonHugePages)
        self.deferred_split: set[int] = set()  # heads of partially mapped folios
        self.thp_fault_alloc = 0
        self.mthp_fault_alloc = [0] * (MAX_FOLIO_ORDER + 1)
        self.split_folios = 0
        self.split_pmds = 0
        self.thp = THPSettings()  # /sys/kernel/mm/transparent_hugepage
        self.soft_dirty = False   # CONFIG_MEM_SOFT_DIRTY: writes set the PTE soft-dirty bit
        self._mm_ids: list[int] = []  # released MM IDs, reused first
        self._next_mm_id = 1
        self.swap = SwapDevice(0)  # no swap until the kernel sets one up
        from procsim.mm.hugetlb import HugetlbPool  # it builds on MemMap
        self.hugetlb = HugetlbPool(self)
        from procsim.mm.swapcache import SwapCache
        self.swap_cache = SwapCache(self)

    @property
    def nr_anon_mapped(self) -> int:
        """AnonPages in pages, as the configured mapcount model reports it."""
        return self.nr_anon_mapped_page if self.mapcount_model == "page" else self.nr_anon_mapped_folio

    # -- MM IDs -------------------------------------------------------------

    def alloc_mm_id(self) -> int:
        """mm_alloc_id(): 1..2^31-1; 0 is MM_ID_DUMMY (a free slot)."""
        if self._mm_ids:
            return self._mm_ids.pop()
        self._next_mm_id += 1
        return self._next_mm_id - 1

    def free_mm_id(self, mm_id: int) -> None:
        if mm_id:
            self._mm_ids.append(mm_id)

    # -- allocator ------------------------------------------------------------

    def _set_new(self, pfns, flags: int, order: int) -> None:
        if flags & (PG_ANON | PG_SHMEM):
            flags |= PG_SWAPBACKED
        self.flags[pfns] = flags
        self.order[pfns] = order
        self.mapcount[pfns] = 0
        self.rmap_mapping[pfns] = 0
        n = len(pfns) if not isinstance(pfns, slice) else pfns.stop - pfns.start
        self.nr_free -= n
        self.vm_events.pgalloc += n
        for f in self.nr_flag:
            if flags & f:
                self.nr_flag[f] += n

    # the OOM killer (the kernel installs it): called with n when fewer than n
    # frames are free; True once it has freed enough (procsim/mm/oom.py)
    oom_handler = None

    def alloc(self, n: int, flags: int) -> np.ndarray:
        """n free order-0 frames (int64 PFNs), their flags set and mapcount 0.
        Short of frames, reclaim first frees the swap cache's unmapped
        folios, then the OOM killer runs."""
        if n > self.nr_free:
            self.swap_cache.shrink()
        if n > self.nr_free and not (self.oom_handler is not None and self.oom_handler(n)):
            raise OutOfMemory(f"cannot allocate {n} frames: {self.nr_free} free")
        parts = []
        need = n
        while need and self._freed:
            chunk = self._freed[-1]
            if len(chunk) <= need:
                parts.append(self._freed.pop())
                need -= len(chunk)
            else:
                parts.append(chunk[-need:])
                self._freed[-1] = chunk[:-need]
                need = 0
        if need:
            k = min(need, self.nr_pages - self._next)
            if k:
                parts.append(np.arange(self._next, self._next + k, dtype=np.int64))
                self._next += k
                need -= k
        while need:  # the rest out of freed folios, smallest first
            o = next(o for o in range(MAX_FOLIO_ORDER + 1) if self._blocks[o])
            head = self._blocks[o].pop()
            block = np.arange(head, head + (1 << o), dtype=np.int64)
            take = min(need, len(block))
            parts.append(block[:take])
            if take < len(block):
                self._freed.append(block[take:])
            need -= take
        pfns = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._set_new(pfns, flags, 0)
        self.vm_events.numa_hit += n  # n order-0 allocations
        return pfns

    def alloc_folio(self, order: int, flags: int) -> int:
        """A naturally aligned folio of 2**order frames; its head PFN, or -1 if
        no aligned block is free (the fault then falls back to a lower order,
        as alloc_anon_folio() does)."""
        nr = 1 << order
        if nr > self.nr_free:
            return -1
        head = -1
        for o in range(order, MAX_FOLIO_ORDER + 1):
            if self._blocks[o]:
                head = self._blocks[o].pop()
                while o > order:  # keep the upper halves for later
                    o -= 1
                    self._blocks[o].append(head + (1 << o))
                break
        if head < 0:
            start = (self._next + nr - 1) & ~(nr - 1)
            if start + nr > self.nr_pages:
                return -1
            if start > self._next:  # the skipped frames stay free, as order-0
                self._freed.append(np.arange(self._next, start, dtype=np.int64))
            self._next = start + nr
            head = start
        self._set_new(slice(head, head + nr), flags, order)
        self.vm_events.numa_hit += 1
        self.large_mapcount[head] = self.entire_mapcount[head] = 0
        self.mm_id0[head] = self.mm_id1[head] = self.mm_cnt0[head] = self.mm_cnt1[head] = 0
        return head

    def _uncount(self, fl: np.ndarray) -> None:
        for f in self.nr_flag:
            self.nr_flag[f] -= int(np.count_nonzero(fl & f))

    def free(self, pfns: np.ndarray) -> None:
        """Free order-0 frames (pages of split folios are order 0 too)."""
        if not len(pfns):
            return
        pfns = np.asarray(pfns, dtype=np.int64)
        self._uncount(self.flags[pfns])
        self.flags[pfns] = 0
        self.mapcount[pfns] = 0
        self.order[pfns] = 0
        self._freed.append(pfns.copy())
        self.nr_free += len(pfns)
        self.vm_events.pgfree += len(pfns)

    def free_folio(self, head: int) -> None:
        order = int(self.order[head])
        if not order:
            self.free(np.array([head], np.int64))
            return
        sl = slice(head, head + (1 << order))
        self._uncount(self.flags[sl])
        self.flags[sl] = 0
        self.mapcount[sl] = 0
        self.order[sl] = 0
        self.large_mapcount[head] = self.entire_mapcount[head] = 0
        self.mm_id0[head] = self.mm_id1[head] = self.mm_cnt0[head] = self.mm_cnt1[head] = 0
        self._blocks[order].append(head)
        self.nr_free += 1 << order
        self.vm_events.pgfree += 1 << order
        self.deferred_split.discard(head)

    def free_pfns(self) -> np.ndarray:
        """Every free frame above the reserved ones (for checks and tests)."""
        parts = list(self._freed) + [np.arange(h, h + (1 << o), dtype=np.int64)
                                     for o, hs in enumerate(self._blocks) for h in hs]
        parts.append(np.arange(self._next, self.nr_pages, dtype=np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    # -- folio geometry -------------------------------------------------------

    def folio_head(self, pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(head PFN, order) of the folio of every frame."""
        order = self.order[pfns].astype(np.int64)
        return pfns & ~((np.int64(1) << order) - 1), order

    # -- MM-ID owner tracking (folio_add/sub_return_large_mapcount) ---------

    def _mm_id_add(self, heads: np.ndarray, n: np.ndarray, mm_id: int, total: np.ndarray) -> None:
        """mm_id adds n mappings to each folio; `total` is the new large mapcount."""
        assert mm_id > 0, "large folios are mapped by mms with an MM ID"
        id0, id1 = self.mm_id0[heads], self.mm_id1[heads]
        own0 = id0 == mm_id
        own1 = (id1 == mm_id) & ~own0
        self.mm_cnt0[heads[own0]] += n[own0].astype(np.int32)
        self.mm_cnt1[heads[own1]] += n[own1].astype(np.int32)
        rest = ~own0 & ~own1
        f0 = rest & (id0 == 0)
        h = heads[f0]
        self.mm_id0[h] = mm_id
        self.mm_cnt0[h] = n[f0]
        # other mms map it already: maybe shared
        self.flags[h[total[f0] != n[f0]]] |= PG_MAYBE_SHARED
        f1 = rest & ~f0 & (id1 == 0)
        h = heads[f1]
        self.mm_id1[h] = mm_id
        self.mm_cnt1[h] = n[f1]
        self.flags[h] |= PG_MAYBE_SHARED  # slot 0 has mappings too
        # neither slot free: mm_id is untracked; the flag is already set

    def _mm_id_sub(self, heads: np.ndarray, n: np.ndarray, mm_id: int, total: np.ndarray) -> None:
        id0, id1 = self.mm_id0[heads], self.mm_id1[heads]
        own0 = id0 == mm_id
        own1 = (id1 == mm_id) & ~own0
        c0 = self.mm_cnt0[heads] - np.where(own0, n, 0)
        c1 = self.mm_cnt1[heads] - np.where(own1, n, 0)
        keep = (own0 & (c0 > 0)) | (own1 & (c1 > 0))
        # a per-MM count that reaches zero (or underflows: some mappings were
        # added while the mm was untracked) frees the slot
        drop0, drop1 = own0 & (c0 <= 0), own1 & (c1 <= 0)
        c0[drop0] = 0
        c1[drop1] = 0
        self.mm_cnt0[heads] = c0
        self.mm_cnt1[heads] = c1
        self.mm_id0[heads[drop0]] = 0
        self.mm_id1[heads[drop1]] = 0
        # untracked, or its slot just went: if one slot owns every remaining
        # mapping the folio is exclusive again (total 0 clears it too)
        excl = ~keep & ((c0 == total) | (c1 == total))
        self.flags[heads[excl]] &= ~np.uint32(PG_MAYBE_SHARED)

    # -- rmap: PTE mappings ---------------------------------------------------

    def _small_mapped(self, pfns: np.ndarray, sign: int) -> None:
        fl = self.flags[pfns]
        self.nr_mapped_file += sign * int(np.count_nonzero(fl & (PG_FILE | PG_SHMEM)))
        na = sign * int(np.count_nonzero(fl & PG_ANON))
        self.nr_anon_mapped_page += na
        self.nr_anon_mapped_folio += na

    def map_pages(self, pfns: np.ndarray, mm_id: int = 0) -> None:
        """One more PTE mapping of each frame (frames are distinct), by mm_id
        (folio_add_{new_,}anon_rmap_ptes / folio_add_file_rmap_ptes)."""
        if not len(pfns):
            return
        before = self.mapcount[pfns]
        self.mapcount[pfns] = before + 1
        order = self.order[pfns]
        large = order != 0
        if not large.any():
            self._small_mapped(pfns[before == 0], +1)
            return
        self._small_mapped(pfns[~large & (before == 0)], +1)
        lp = pfns[large]
        heads, lo = self.folio_head(lp)
        self.nr_anon_mapped_page += int(np.count_nonzero((before[large] == 0) & (self.entire_mapcount[heads] == 0)))
        uh, first, cnt = np.unique(heads, return_index=True, return_counts=True)
        old = self.large_mapcount[uh]
        new = old + cnt
        self.large_mapcount[uh] = new
        self.nr_anon_mapped_folio += int((np.int64(1) << lo[first])[old == 0].sum())
        self._mm_id_add(uh, cnt, mm_id, new)

    def unmap_pages(self, pfns: np.ndarray, mm_id: int = 0) -> None:
        """One PTE mapping fewer; anonymous folios nobody maps any more are
        freed (but those the swap cache holds), partially mapped ones go on
        the deferred split queue."""
        if not len(pfns):
            return
        after = self.mapcount[pfns] - 1
        self.mapcount[pfns] = after
        order = self.order[pfns]
        large = order != 0
        small_gone = pfns[~large & (after == 0)]
        if len(small_gone):
            self._small_mapped(small_gone, -1)
            fl = self.flags[small_gone]
            self.free(small_gone[(fl & (PG_ANON | PG_SWAPCACHE)) == PG_ANON])
        if not large.any():
            return
        lp = pfns[large]
        heads, lo = self.folio_head(lp)
        self.nr_anon_mapped_page -= int(np.count_nonzero((after[large] == 0) & (self.entire_mapcount[heads] == 0)))
        uh, first, cnt = np.unique(heads, return_index=True, return_counts=True)
        new = self.large_mapcount[uh] - cnt
        self.large_mapcount[uh] = new
        self._mm_id_sub(uh, cnt, mm_id, new)
        for h in uh[new == 0].tolist():
            self.nr_anon_mapped_folio -= 1 << int(self.order[h])
            self.free_folio(h)
        self._check_partial(uh[new > 0])

    def _check_partial(self, heads: np.ndarray) -> None:
        """deferred_split_folio() for folios that became partially mapped, as
        each model can tell: exactly (some page unmapped) with page mapcounts,
        by "fewer mappings than pages and no PMD" without (so a folio whose
        remaining pages are mapped twice is missed)."""
        for h in heads.tolist():
            if h in self.deferred_split or self.entire_mapcount[h]:
                continue
            nr = 1 << int(self.order[h])
            if self.mapcount_model == "page":
                partial = not self.mapcount[h: h + nr].all()
            else:
                partial = self.large_mapcount[h] < nr
            if partial:
                self.deferred_split.add(h)

    # -- rmap: PMD mappings ---------------------------------------------------

    def map_pmd(self, head: int, mm_id: int) -> None:
        """folio_add_{new_,}anon_rmap_pmd: one PMD maps the whole folio."""
        nr = 1 << int(self.order[head])
        e, old = int(self.entire_mapcount[head]), int(self.large_mapcount[head])
        self.entire_mapcount[head] = e + 1
        self.large_mapcount[head] = old + 1
        if e == 0:
            self.nr_anon_mapped_page += int(np.count_nonzero(self.mapcount[head: head + nr] == 0))
            self.nr_anon_thps += nr
        if old == 0:
            self.nr_anon_mapped_folio += nr
        h = np.array([head], np.int64)
        self._mm_id_add(h, np.array([1], np.int32), mm_id, np.array([old + 1], np.int32))

    def unmap_pmd(self, head: int, mm_id: int) -> None:
        nr = 1 << int(self.order[head])
        e, new = int(self.entire_mapcount[head]) - 1, int(self.large_mapcount[head]) - 1
        self.entire_mapcount[head] = e
        self.large_mapcount[head] = new
        if e == 0:
            self.nr_anon_mapped_page -= int(np.count_nonzero(self.mapcount[head: head + nr] == 0))
            self.nr_anon_thps -= nr
        h = np.array([head], np.int64)
        self._mm_id_sub(h, np.array([1], np.int32), mm_id, np.array([new], np.int32))
        if new == 0:
            self.nr_anon_mapped_folio -= nr
            self.free_folio(head)
        else:
            self._check_partial(h)

    # -- split ------------------------------------------------------------------

    def split_folio(self, head: int) -> bool:
        """split_folio(): the folio becomes order-0 pages; pages nobody maps are
        freed. A PMD-mapped folio must have its PMDs split first (False)."""
        order = int(self.order[head])
        if not order:
            self.deferred_split.discard(head)
            return True
        if self.entire_mapcount[head]:
            return False
        nr = 1 << order
        pages = np.arange(head, head + nr, dtype=np.int64)
        mapped = self.mapcount[pages] > 0
        if self.large_mapcount[head] > 0:
            # NO_PAGE_MAPCOUNT counted the whole folio; now only mapped pages count
            self.nr_anon_mapped_folio -= nr - int(mapped.sum())
        self.order[pages] = 0
        self.flags[head] &= ~np.uint32(PG_MAYBE_SHARED)
        self.large_mapcount[head] = 0
        self.mm_id0[head] = self.mm_id1[head] = self.mm_cnt0[head] = self.mm_cnt1[head] = 0
        self.deferred_split.discard(head)
        self.free(pages[~mapped])
        self.split_folios += 1
        return True

    def deferred_split_scan(self) -> int:
        """The deferred split shrinker: split every queued folio, freeing
        its unmapped pages. Returns the frames freed."""
        before = self.nr_free
        for h in sorted(self.deferred_split):
            self.split_folio(h)
        return self.nr_free - before

    # -- what the kernel can know, per mapcount model ---------------------------

    def folio_mapcount(self, pfns: np.ndarray) -> np.ndarray:
        """folio_mapcount(): total mappings of each frame's folio (also its
        reference count here, less the swap cache's: no GUP is modelled)."""
        heads, order = self.folio_head(pfns)
        return np.where(order > 0, self.large_mapcount[heads], self.mapcount[pfns])

    def precise_page_mapcount(self, pfns: np.ndarray) -> np.ndarray:
        """folio_precise_page_mapcount(): PTE mappings of the page + PMD ones."""
        heads, order = self.folio_head(pfns)
        return self.mapcount[pfns] + np.where(order > 0, self.entire_mapcount[heads], 0)

    def average_page_mapcount(self, pfns: np.ndarray) -> np.ndarray:
        """folio_average_page_mapcount() (seed-mechanisms §5.2)."""
        heads, order = self.folio_head(pfns)
        m = self.large_mapcount[heads].astype(np.int64)
        e = self.entire_mapcount[heads].astype(np.int64)
        nr = np.int64(1) << order
        avg = np.maximum(((m - e + nr // 2) >> order) + e, 1)
        large = np.where(m <= 0, 0, np.where(m <= e, e, avg))
        return np.where(order > 0, large, self.mapcount[pfns])

    def maybe_mapped_shared(self, pfns: np.ndarray) -> np.ndarray:
        """folio_maybe_mapped_shared(): never a false "exclusive". hugetlb
        folios have no MM-ID slots: shared when mapped more than once."""
        heads, order = self.folio_head(pfns)
        fl = self.flags[heads]
        flag = ((fl & PG_MAYBE_SHARED) != 0) | ((fl & PG_HUGETLB) != 0)
        return np.where(order > 0, (self.large_mapcount[heads] > 1) & flag, self.mapcount[pfns] > 1)

    def kpagecount(self, pfns: np.ndarray) -> np.ndarray:
        """What /proc/kpagecount reports for each frame (spec §13)."""
        if self.mapcount_model == "page":
            return self.precise_page_mapcount(pfns)
        return self.average_page_mapcount(pfns)

    def page_mapped_exclusively(self, pfns: np.ndarray) -> np.ndarray:
        """__folio_page_mapped_exclusively(): pagemap PM_MMAP_EXCLUSIVE."""
        if self.mapcount_model == "page":
            return self.precise_page_mapcount(pfns) == 1
        return ~self.maybe_mapped_shared(pfns)
