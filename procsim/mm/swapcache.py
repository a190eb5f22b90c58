"""The swap cache (mm/swap_state.c): which swap slot's data an order-0
anonymous folio holds, while both exist.

Reclaim (MADV_PAGEOUT) adds each folio to the cache before it unmaps it and
writes it out; written back, the folio stays in the cache, unmapped, until
a later reclaim pass frees it (6.18: SwapCached grew by the 8 MiB paged
out). A swap-in finds the folio there (a minor fault) or reads it into a
new folio it adds to the cache (a major fault). A read fault leaves the
folio in the cache and the slot allocated; a write fault frees the slot
(folio_free_swap). The cache holds a slot with SWAP_HAS_CACHE in its
swap_map value (procsim/mm/swap.py), and a folio with PG_SWAPCACHE.

Writeback is instantaneous here, so a cached folio that is not mapped is
always clean. A cached folio is never unmapped with no swap entries left
(free_swap_and_cache() and free_swap_cache() free it then): the kernel
invariants check it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from procsim.mm.page_flags import PG_DIRTY, PG_SWAPCACHE

if TYPE_CHECKING:
    from procsim.mm.page_alloc import MemMap


class SwapCache:
    """The swap cache of the one swap area (swapper_spaces), as two arrays:
    slot -> PFN (the cache's xarray) and PFN -> slot (folio->swap)."""

    def __init__(self, mem: MemMap) -> None:
        self.mem = mem
        self.folio = np.zeros(0, np.int64)             # per slot: the cached PFN, 0: none
        self.slot = np.zeros(mem.nr_pages, np.int32)   # per PFN: its slot while cached
        self.held = np.zeros(0, np.int64)              # folios a fault holds a reference to
        self.nr_swapcached = 0                         # NR_SWAPCACHE: SwapCached, nr_swapcached
        # per slot: the shadow entry reclaim left when it freed the slot's
        # folio (6.18 keeps them in the swap table; procsim/mm/workingset.py)
        self.shadow = np.zeros(0, np.int64)

    def _folios(self) -> np.ndarray:
        n = self.mem.swap.nr_slots
        if len(self.folio) != n:  # the kernel set the swap area up (before any page went out)
            assert not self.nr_swapcached
            self.folio = np.zeros(n, np.int64)
        return self.folio

    def pfns(self) -> np.ndarray:
        """Every cached folio."""
        if not self.nr_swapcached:  # no scan of the slots (millions on a large area)
            return np.zeros(0, np.int64)
        f = self._folios()
        return f[f != 0]

    def lookup(self, offsets: np.ndarray) -> np.ndarray:
        """swap_cache_get_folio(): the PFN cached for each slot, 0 where none."""
        return self._folios()[offsets]

    def add(self, offsets: np.ndarray, pfns: np.ndarray) -> None:
        """add_to_swap_cache(): distinct slots, already held with
        SWAP_HAS_CACHE (folio_alloc_swap, swapcache_prepare), now hold `pfns`."""
        if not len(offsets):
            return
        f = self._folios()
        assert not f[offsets].any() and self.mem.swap.has_cache(offsets).all()
        if len(self.shadow):
            self.shadow[offsets] = 0  # a folio takes the slot: its shadow (read by now) goes
        f[offsets] = pfns
        self.slot[pfns] = offsets
        self.mem.flags[pfns] |= np.uint32(PG_SWAPCACHE)
        self.nr_swapcached += len(pfns)

    def delete(self, pfns: np.ndarray) -> None:
        """delete_from_swap_cache() + put_swap_folio(): the folios leave the
        cache (their frames stay, the caller frees or keeps them); their
        slots lose SWAP_HAS_CACHE and are free if no swap entry is left."""
        if not len(pfns):
            return
        offsets = self.slot[pfns].astype(np.int64)
        assert (self._folios()[offsets] == pfns).all(), "folio not in the swap cache"
        self.folio[offsets] = 0
        self.slot[pfns] = 0
        self.mem.flags[pfns] &= ~np.uint32(PG_SWAPCACHE)
        self.nr_swapcached -= len(pfns)
        self.mem.swap.put_cache(offsets)

    def store_shadows(self, offsets: np.ndarray, shadows: np.ndarray) -> None:
        """__swap_cache_del_folio(shadow): slots that swap entries still use
        keep the evicted folio's shadow entry (a freed slot keeps none)."""
        if not len(offsets):
            return
        if len(self.shadow) != self.mem.swap.nr_slots:
            self.shadow = np.zeros(self.mem.swap.nr_slots, np.int64)
        used = self.mem.swap.count(offsets) > 0
        self.shadow[offsets[used]] = shadows[used]

    def shadows(self, offsets: np.ndarray) -> np.ndarray:
        """The shadow entries of slots (0: none)."""
        if not len(self.shadow):
            return np.zeros(len(offsets), np.int64)
        return self.shadow[offsets]

    def cached(self, pfns: np.ndarray) -> np.ndarray:
        """folio_test_swapcache() of each frame."""
        return (self.mem.flags[pfns] & PG_SWAPCACHE) != 0

    def swapped(self, pfns: np.ndarray) -> np.ndarray:
        """folio_swapped(): swap entries still refer to each cached folio's slot."""
        return self.mem.swap.count(self.slot[pfns].astype(np.int64)) > 0

    def folio_free_swap(self, pfns: np.ndarray, while_full: bool = False) -> np.ndarray:
        """folio_free_swap(): the cached folios among `pfns` whose slot no
        swap entry uses any more leave the cache, dirty (their only copy is
        now in memory); returns which did. `while_full`: one after the other,
        only while swap stays more than half full (each fault of a batch
        asks vm_swap_full() again)."""
        ok = self.cached(pfns)
        ok[ok] = ~self.swapped(pfns[ok])
        if while_full:
            swap = self.mem.swap
            budget = max(0, (swap.pages - 2 * swap.nr_free + 1) // 2)  # frees until nr_free * 2 >= pages
            ok[np.flatnonzero(ok)[budget:]] = False
        p = pfns[ok]
        self.delete(p)
        self.mem.flags[p] |= np.uint32(PG_DIRTY)
        return ok

    def free_swap_cache(self, pfns: np.ndarray) -> None:
        """free_swap_cache() after an unmap: a cached folio nobody maps and
        no swap entry needs is freed with its slot."""
        if not self.nr_swapcached:
            return
        pfns = pfns[self.cached(pfns)]
        if not len(pfns):
            return
        pfns = np.unique(pfns)
        gone = pfns[(self.mem.mapcount[pfns] == 0) & ~self.swapped(pfns)]
        self.delete(gone)
        self.mem.free(gone)

    def free_swap_and_cache(self, offsets: np.ndarray) -> None:
        """free_swap_and_cache_nr(): swap entries go (zap, MADV_FREE); a slot
        left to the cache alone is reclaimed when its folio is not mapped
        (the folio is freed) or swap is more than half full (the folio stays
        mapped, dirty, out of the cache): __try_to_reclaim_swap(TTRS_UNMAPPED
        | TTRS_FULL)."""
        if not len(offsets):
            return
        swap = self.mem.swap
        swap.free(offsets)
        u = np.unique(offsets)
        only_cache = u[swap.has_cache(u) & (swap.count(u) == 0)]
        if not len(only_cache):
            return
        pfns = self._folios()[only_cache]
        unmapped = self.mem.mapcount[pfns] == 0
        self.delete(pfns[unmapped])
        self.mem.free(pfns[unmapped])
        self.folio_free_swap(pfns[~unmapped], while_full=True)

    def shrink(self) -> int:
        """A later reclaim pass over the cache (memory pressure, or the
        `shrink_swapcache` command): folios nobody maps, written back long
        ago, are freed (__remove_mapping(): their slots keep their swap
        entries and lose SWAP_HAS_CACHE). Mapped folios stay: reclaim would
        have to unmap them first (that is pageout, MADV_PAGEOUT), except that
        when swap is more than half full the slots that only the cache holds
        are freed and their folios stay mapped, dirty (folio_free_swap() on
        reclaim's activate path). Returns the frames freed."""
        pfns = self.pfns()
        if not len(pfns):
            return 0
        unmapped = (self.mem.mapcount[pfns] == 0) & ~np.isin(pfns, self.held)
        gone = pfns[unmapped]
        self.delete(gone)
        self.mem.free(gone)
        self.folio_free_swap(pfns[~unmapped], while_full=True)
        return len(gone)
