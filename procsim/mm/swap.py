"""One swap area (swap_info_struct): a use count per slot and the slot
allocator.

Slot 0 holds the swap header and is never handed out, so a 64 MiB area has
16383 usable slots (SwapTotal 65532 kB). A slot's swap_map[] value is, as
on Linux, the number of swap entries over all page tables that refer to it
plus SWAP_HAS_CACHE (0x40) while the swap cache holds a folio for it
(procsim/mm/swapcache.py). A slot is in use while its value is not 0, so a
slot only the cache holds still counts as used (SwapFree). Counts past
0x3f carry on in the bits above SWAP_HAS_CACHE (where Linux chains
COUNT_CONTINUED pages): swap_count() reads them back.

Allocation is next-fit: a cursor moves forward and wraps, so offsets keep
growing while there is room, as the cluster allocator hands them out (on
6.18 the first pages paged out got offsets 1, 2, 3...; later ones carried on
where the previous process stopped, even after those slots were freed).
"""

from __future__ import annotations

import numpy as np

from procsim.units import PAGE_SIZE


SWAP_HAS_CACHE = 0x40  # the swap cache holds a folio for the slot
_LOW = SWAP_HAS_CACHE - 1


def swap_count(m: np.ndarray) -> np.ndarray:
    """swap_count(): the swap entries of swap_map values `m`, without SWAP_HAS_CACHE."""
    m = np.asarray(m, np.int64)
    return (m & _LOW) | ((m >> 7) << 6)


def _swap_map_value(count: np.ndarray, cache: np.ndarray) -> np.ndarray:
    count = np.asarray(count, np.int64)
    return ((count & _LOW) | ((count >> 6) << 7) | np.where(cache, SWAP_HAS_CACHE, 0)).astype(np.int32)


class SwapDevice:
    def __init__(self, nbytes: int) -> None:
        nr = nbytes // PAGE_SIZE
        # a size too small for a header and one slot is no swap at all
        self.nr_slots = nr if nr >= 2 else 0
        self.swap_map = np.zeros(self.nr_slots, np.int32)
        self.memcg = np.zeros(self.nr_slots, np.int32)  # the memcg each slot is charged to (swap_cgroup)
        self.inuse_pages = 0
        self._cursor = 1
        self.pswpin = 0   # pages read back (vmstat pswpin)
        self.pswpout = 0  # pages written out (vmstat pswpout)

    @property
    def pages(self) -> int:
        """Usable slots (si->pages): SwapTotal in pages."""
        return max(self.nr_slots - 1, 0)

    @property
    def nr_free(self) -> int:
        """SwapFree in pages."""
        return self.pages - self.inuse_pages

    def vm_swap_full(self) -> bool:
        """vm_swap_full(): more than half of the swap space is in use (then
        faults and zaps free the slots of swap-cache folios eagerly)."""
        return self.nr_free * 2 < self.pages

    def alloc(self, n: int) -> np.ndarray:
        """folio_alloc_swap(): up to n free slots (fewer when the area fills
        up), each held by the swap cache only (SWAP_HAS_CACHE, no entries yet)."""
        n = min(n, self.nr_free)
        if n <= 0:
            return np.zeros(0, np.int64)
        c = self._cursor
        got = np.flatnonzero(self.swap_map[c:] == 0)[:n] + c
        if len(got) < n:  # wrap around to the first usable slot
            more = np.flatnonzero(self.swap_map[1:c] == 0)[: n - len(got)] + 1
            got = np.concatenate([got, more])
        got = got.astype(np.int64)
        self.swap_map[got] = SWAP_HAS_CACHE
        self.inuse_pages += len(got)
        nxt = int(got[-1]) + 1
        self._cursor = nxt if nxt < self.nr_slots else 1
        return got

    def _set(self, offsets: np.ndarray, count: np.ndarray, cache: np.ndarray) -> None:
        """New values for distinct slots; slots that reach 0 are free again."""
        was = self.swap_map[offsets] != 0
        self.swap_map[offsets] = _swap_map_value(count, cache)
        now = self.swap_map[offsets] != 0
        self.inuse_pages += int(np.count_nonzero(now)) - int(np.count_nonzero(was))

    def _add(self, offsets: np.ndarray, delta: int) -> None:
        if not len(offsets):
            return
        u, times = np.unique(np.asarray(offsets, np.int64), return_counts=True)
        m = self.swap_map[u]
        count = swap_count(m) + delta * times
        assert (count >= 0).all(), "swap slot freed more often than used"
        self._set(u, count, (m & SWAP_HAS_CACHE) != 0)

    def duplicate(self, offsets: np.ndarray) -> None:
        """swap_duplicate(): one more entry refers to each slot (fork, and
        try_to_unmap() of a folio the swap cache holds)."""
        assert (self.swap_map[offsets] != 0).all(), "duplicating a free swap slot"
        self._add(offsets, +1)

    def free(self, offsets: np.ndarray) -> None:
        """swap_free(): one entry fewer for each slot; a slot at 0 is free.
        (free_swap_and_cache() in swapcache.py also frees the cached folio
        that only the slot kept.)"""
        self._add(offsets, -1)

    def swapcache_prepare(self, offsets: np.ndarray) -> None:
        """swapcache_prepare(): a swap-in takes distinct used slots into the
        swap cache (SWAP_HAS_CACHE) before it reads them."""
        m = self.swap_map[offsets]
        assert (m != 0).all() and not (m & SWAP_HAS_CACHE).any(), "slot free or cached already"
        self.swap_map[offsets] = m | SWAP_HAS_CACHE

    def put_cache(self, offsets: np.ndarray) -> None:
        """put_swap_folio(): the swap cache lets go of distinct slots."""
        if not len(offsets):
            return
        m = self.swap_map[offsets]
        assert (m & SWAP_HAS_CACHE).all(), "slot not held by the swap cache"
        self._set(offsets, swap_count(m), np.zeros(len(offsets), bool))

    def count(self, offsets: np.ndarray) -> np.ndarray:
        """swp_swapcount(): the entries that refer to each slot."""
        return swap_count(self.swap_map[offsets])

    def has_cache(self, offsets: np.ndarray) -> np.ndarray:
        return (self.swap_map[offsets] & SWAP_HAS_CACHE) != 0
