"""Physical memory (mm/page_alloc.c, mm/mm_init.c): an array-backed
mem_map indexed by PFN, folios, their split, and the frame allocator. The
mapcounts (per page and per folio, with MM-ID owner tracking) are kept by
FolioMapcounts (mm/rmap.py), a base of MemMap.

No Python object per page: every per-frame field is one numpy array. numpy
arrays made with zeros() are backed by untouched anonymous memory, so a
large machine costs nothing until its frames are used.
"""

from __future__ import annotations

import weakref

import numpy as np

from procsim.mm.rmap import FolioMapcounts
from procsim.mm.swap import SwapDevice
from procsim.mm.thp import THPSettings
from procsim.mm.vmstat import VmEvents
from procsim.mm.zone import VmSysctl, alloc_zone

from procsim.mm.page_flags import (PG_ANON, PG_FILE, PG_SHMEM, PG_DIRTY, PG_REFERENCED, PG_LRU, PG_ACTIVE, PG_RESERVED, PG_MLOCKED, PG_SWAPBACKED, PG_MAYBE_SHARED, PG_HUGETLB, PG_ANON_EXCLUSIVE, PG_IDLE, PG_YOUNG, PG_SWAPCACHE, PG_RECLAIM, PG_WORKINGSET)  # noqa: F401 (M.PG_*)

HPAGE_PMD_ORDER = 9
MAX_FOLIO_ORDER = HPAGE_PMD_ORDER  # anonymous folios: order 0 and 2..9
MAPCOUNT_MODELS = ("page", "no_page")


class OutOfMemory(Exception):
    """No free frame left, and the OOM killer could not free enough."""


def _i64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


class MemMap(FolioMapcounts):
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
        # frames on the active LRU lists (NR_ACTIVE_ANON/NR_ACTIVE_FILE, procsim/mm/lru.py):
        # PG_ACTIVE is set only there, and a freed frame leaves its list
        self.nr_active = {"anon": 0, "file": 0}
        # dirty page cache of files with writeback (NR_FILE_DIRTY: meminfo Dirty,
        # vmstat nr_dirty; not shmem) and pages ever dirtied (NR_DIRTIED; mm/filemap.py)
        self.nr_file_dirty = 0
        self.nr_dirtied = 0
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
        self.sysctl = VmSysctl()  # /proc/sys/vm
        self.soft_dirty = False   # CONFIG_MEM_SOFT_DIRTY: writes set the PTE soft-dirty bit
        self._mm_ids: list[int] = []  # released MM IDs, reused first
        self._next_mm_id = 1
        self.swap = SwapDevice(0)  # no swap until the kernel sets one up
        self.block = None  # the block layer its I/O goes to (procsim/block/blk_core.py), once a kernel has one
        self.nr_written = 0  # NR_WRITTEN: page-cache pages writeback wrote
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
    # the memory controller (procsim/cgroup/memcontrol.py installs them):
    # memcg_charge(n, flags) charges n frames about to be handed out and
    # returns the memcg id they carry (memcg[]); memcg_uncharge(ids) gives
    # back freed frames' charges
    memcg = None
    memcg_count = None  # count_memcg_events(name, ids) (procsim/mm/vmscan_node.py installs it)
    workingset = None   # the shadow entries' ages (procsim/mm/workingset.py; vmscan_node.py installs it)
    memcg_charge = None
    memcg_uncharge = None

    def _charge(self, n: int, flags: int, may_oom: bool = True) -> int:
        return self.memcg_charge(n, flags, may_oom) if self.memcg_charge is not None else 0

    def _aligned_free(self, order: int) -> bool:
        nr = 1 << order
        return any(self._blocks[o] for o in range(order, MAX_FOLIO_ORDER + 1)) or \
            ((self._next + nr - 1) & ~(nr - 1)) + nr <= self.nr_pages

    def _uncharge(self, pfns) -> None:
        if self.memcg is not None:
            ids = self.memcg[pfns]
            self.memcg[pfns] = 0
            if self.memcg_uncharge is not None:
                self.memcg_uncharge(np.atleast_1d(ids))

    def alloc(self, n: int, flags: int) -> np.ndarray:
        """n free order-0 frames (int64 PFNs), their flags set and mapcount 0."""
        if n > self.nr_free:  # reclaim first frees the swap cache's unmapped folios
            self.swap_cache.shrink()
        if n > self.nr_free and not (self.oom_handler is not None and self.oom_handler(n)):
            raise OutOfMemory(f"cannot allocate {n} frames: {self.nr_free} free")
        memcg = self._charge(n, flags) if n else 0  # first: a failed charge changes no frame
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
        if self.memcg is not None:
            self.memcg[pfns] = memcg
        self.vm_events.numa_hit += n  # n order-0 allocations
        if self.alloc_hook is not None:
            self.alloc_hook()
        return pfns

    def alloc_folio(self, order: int, flags: int) -> int:
        """A naturally aligned folio of 2**order frames; its head PFN, or -1 if
        no aligned block is free (the fault then falls back to a lower order,
        as alloc_anon_folio() does)."""
        nr = 1 << order
        if nr > self.nr_free or not self._aligned_free(order):
            return -1
        try:  # a large folio over its memcg's limit: the fault falls back to a smaller one, no OOM
            memcg = self._charge(nr, flags, order == 0)
        except OutOfMemory:
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
        if self.memcg is not None:
            self.memcg[head: head + nr] = memcg
        self.vm_events.numa_hit += 1
        self.large_mapcount[head] = self.entire_mapcount[head] = 0
        self.mm_id0[head] = self.mm_id1[head] = self.mm_cnt0[head] = self.mm_cnt1[head] = 0
        if self.alloc_hook is not None:
            self.alloc_hook()
        return head

    # told after each allocation (procsim/mm/vmscan_node.py: the watermark check
    # that wakes kswapd or makes the allocating task reclaim)
    alloc_hook = None

    def _uncount(self, fl: np.ndarray) -> None:
        for f in self.nr_flag:
            self.nr_flag[f] -= int(np.count_nonzero(fl & f))
        act = fl[(fl & PG_ACTIVE) != 0]
        if len(act):
            nfile = int(np.count_nonzero(act & PG_FILE))
            self.nr_active["file"] -= nfile
            self.nr_active["anon"] -= len(act) - nfile
        self.nr_file_dirty -= int(np.count_nonzero(fl & (PG_FILE | PG_DIRTY | PG_SHMEM) == PG_FILE | PG_DIRTY))

    def free(self, pfns: np.ndarray) -> None:
        """Free order-0 frames (pages of split folios are order 0 too)."""
        if not len(pfns):
            return
        pfns = np.asarray(pfns, dtype=np.int64)
        self._uncharge(pfns)
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
        self._uncharge(sl)
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

    @property
    def high_water(self) -> int:
        """One past the highest frame ever handed out (the bump pointer):
        every frame from it up is free and was never used, its flags 0, so
        a scan for frames with some flag can stop there."""
        return self._next

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
