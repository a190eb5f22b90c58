"""The VMA index of an mm: sorted by start address, with a sequence count
bumped by every change so that readers can tell a tree changed under them."""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedKeyList

from procsim.mm.vma import VMA


class VMATree:
    __slots__ = ("_v", "seq")

    def __init__(self) -> None:
        self._v = SortedKeyList(key=lambda v: v.start)
        self.seq = 0  # mm_lock_seq: bumped on every write

    def __len__(self) -> int:
        return len(self._v)

    def __iter__(self) -> Iterator[VMA]:
        return iter(self._v)

    def insert(self, vma: VMA) -> None:
        self._v.add(vma)
        self.seq += 1

    def remove(self, vma: VMA) -> None:
        self._v.remove(vma)
        self.seq += 1

    def find(self, addr: int) -> VMA | None:
        """The VMA containing addr, else the first one above it (find_vma)."""
        i = self._v.bisect_key_right(addr)
        if i and self._v[i - 1].end > addr:
            return self._v[i - 1]
        return self._v[i] if i < len(self._v) else None

    def lookup(self, addr: int) -> VMA | None:
        v = self.find(addr)
        return v if v is not None and v.start <= addr else None

    def overlapping(self, start: int, end: int) -> list[VMA]:
        out = []
        i = self._v.bisect_key_right(start)
        if i and self._v[i - 1].end > start:
            i -= 1
        while i < len(self._v) and self._v[i].start < end:
            out.append(self._v[i])
            i += 1
        return out

    def prev(self, vma: VMA) -> VMA | None:
        i = self._v.index(vma)
        return self._v[i - 1] if i else None

    def next(self, vma: VMA) -> VMA | None:
        i = self._v.index(vma) + 1
        return self._v[i] if i < len(self._v) else None

    def last(self) -> VMA | None:
        return self._v[-1] if self._v else None
