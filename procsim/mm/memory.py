"""Physical memory: an array-backed mem_map indexed by PFN, and the frame allocator.

No Python object per page: every per-frame field is one numpy array. numpy
arrays made with zeros() are backed by untouched anonymous memory, so a
large machine costs nothing until its frames are used.
"""

from __future__ import annotations

import numpy as np

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


class OutOfMemory(Exception):
    """No free frame left (the OOM killer is a later issue)."""


class MemMap:
    """struct page[] for the whole machine, as parallel arrays."""

    def __init__(self, nr_pages: int, reserved_pages: int) -> None:
        self.nr_pages = nr_pages
        self.flags = np.zeros(nr_pages, np.uint32)
        # Number of page-table entries mapping the frame, over all mms.
        self.mapcount = np.zeros(nr_pages, np.int32)
        # Frames below first_free are the kernel's own (never handed out).
        self.first_free = max(1, min(reserved_pages, nr_pages))
        self.flags[: self.first_free] = PG_RESERVED
        self._next = self.first_free        # bump pointer over never-used frames
        self._freed: list[np.ndarray] = []  # freed frames, reused first
        self.nr_free = nr_pages - self.first_free
        # vmstat-style counters, kept at alloc/free so reads are O(1).
        self.nr_flag = {PG_ANON: 0, PG_FILE: 0, PG_SHMEM: 0}
        self.nr_mapped_file = 0  # page-cache frames mapped at least once (Mapped)

    def alloc(self, n: int, flags: int) -> np.ndarray:
        """n free frames (int64 PFNs), their flags set and mapcount 0."""
        if n > self.nr_free:
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
            parts.append(np.arange(self._next, self._next + need, dtype=np.int64))
            self._next += need
        pfns = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.nr_free -= n
        self.flags[pfns] = flags
        for f in self.nr_flag:
            if flags & f:
                self.nr_flag[f] += n
        self.mapcount[pfns] = 0
        return pfns

    def free(self, pfns: np.ndarray) -> None:
        if not len(pfns):
            return
        pfns = np.asarray(pfns, dtype=np.int64)
        fl = self.flags[pfns]
        for f in self.nr_flag:
            self.nr_flag[f] -= int(np.count_nonzero(fl & f))
        self.flags[pfns] = 0
        self.mapcount[pfns] = 0
        self._freed.append(pfns.copy())
        self.nr_free += len(pfns)

    # -- mapcount (rmap) ----------------------------------------------------

    def map_pages(self, pfns: np.ndarray) -> None:
        """One more page-table mapping of each frame (frames are distinct)."""
        if not len(pfns):
            return
        before = self.mapcount[pfns]
        self.mapcount[pfns] = before + 1
        newly = pfns[before == 0]
        if len(newly):
            self.nr_mapped_file += int(np.count_nonzero(self.flags[newly] & (PG_FILE | PG_SHMEM)))

    def unmap_pages(self, pfns: np.ndarray) -> None:
        """One mapping fewer; anonymous frames nobody maps any more are freed."""
        if not len(pfns):
            return
        after = self.mapcount[pfns] - 1
        self.mapcount[pfns] = after
        gone = pfns[after == 0]
        if len(gone):
            fl = self.flags[gone]
            self.nr_mapped_file -= int(np.count_nonzero(fl & (PG_FILE | PG_SHMEM)))
            self.free(gone[(fl & PG_ANON) != 0])
