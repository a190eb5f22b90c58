"""One swap area (swap_info_struct): a use count per slot and the slot
allocator.

Slot 0 holds the swap header and is never handed out, so a 64 MiB area has
16383 usable slots (SwapTotal 65532 kB). A slot's count is the number of
swap entries, over all page tables, that refer to it (the kernel's
swap_map[] without SWAP_HAS_CACHE: there is no swap cache in this model).

Allocation is next-fit: a cursor moves forward and wraps, so offsets keep
growing while there is room, as the cluster allocator hands them out (on
6.18 the first pages paged out got offsets 1, 2, 3...; later ones carried on
where the previous process stopped, even after those slots were freed).
"""

from __future__ import annotations

import numpy as np

from procsim.units import PAGE_SIZE



class SwapDevice:
    def __init__(self, nbytes: int) -> None:
        nr = nbytes // PAGE_SIZE
        # a size too small for a header and one slot is no swap at all
        self.nr_slots = nr if nr >= 2 else 0
        self.swap_map = np.zeros(self.nr_slots, np.int32)
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

    def alloc(self, n: int) -> np.ndarray:
        """Up to n free slots (fewer when the area fills up), each with count 1."""
        n = min(n, self.nr_free)
        if n <= 0:
            return np.zeros(0, np.int64)
        c = self._cursor
        got = np.flatnonzero(self.swap_map[c:] == 0)[:n] + c
        if len(got) < n:  # wrap around to the first usable slot
            more = np.flatnonzero(self.swap_map[1:c] == 0)[: n - len(got)] + 1
            got = np.concatenate([got, more])
        got = got.astype(np.int64)
        self.swap_map[got] = 1
        self.inuse_pages += len(got)
        nxt = int(got[-1]) + 1
        self._cursor = nxt if nxt < self.nr_slots else 1
        return got

    def duplicate(self, offsets: np.ndarray) -> None:
        """swap_duplicate(): one more entry refers to each slot (fork)."""
        assert (self.swap_map[offsets] > 0).all(), "duplicating a free swap slot"
        np.add.at(self.swap_map, offsets, 1)

    def free(self, offsets: np.ndarray) -> None:
        """swap_free(): one entry fewer for each slot; a slot at 0 is free."""
        if not len(offsets):
            return
        np.subtract.at(self.swap_map, offsets, 1)
        u = np.unique(offsets)
        assert (self.swap_map[u] >= 0).all(), "swap slot freed more often than used"
        self.inuse_pages -= int(np.count_nonzero(self.swap_map[u] == 0))

    def count(self, offsets: np.ndarray) -> np.ndarray:
        """swp_swapcount(): the entries that refer to each slot."""
        return self.swap_map[offsets]
