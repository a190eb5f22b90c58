"""The VMA index of an mm: sorted by start address. Writers (holding the
mmap write lock) change it in place; lock-free readers see `rcu`, a
read-only snapshot published when the write cycle ends, as RCU readers of
the maple tree see a consistent tree while a writer prepares the next one."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from operator import attrgetter

from sortedcontainers import SortedKeyList

from procsim.mm.mmap_lock import NO_CHANGE, MmapLock, vma_start_write
from procsim.mm.vma import VMA

_END = attrgetter("end")


class VMATree:
    __slots__ = ("_v", "lock", "rcu")
    # rcu: (VMAs, their ends) as of the last write cycle; the ends are kept
    # apart because a writer changes VMA objects in place (write-locked):
    # a lookup must see the range a VMA had in the snapshot, as the maple
    # tree keeps mapping a range to a VMA until the writer stores another

    def __init__(self, lock: MmapLock) -> None:
        self._v = SortedKeyList(key=lambda v: v.start)
        self.lock = lock
        self.rcu: tuple[tuple[VMA, ...], tuple[int, ...]] = ((), ())

    def __len__(self) -> int:
        return len(self._v)

    def __iter__(self) -> Iterator[VMA]:
        return iter(self._v)

    def insert(self, vma: VMA) -> None:
        # a VMA readers can find is write-locked already (removed first, or
        # new: in no snapshot until the cycle ends)
        self._v.add(vma)
        vma.detached = False
        self.lock.changed(vma.start, vma.end)
        self.lock.step()

    def remove(self, vma: VMA) -> None:
        vma_start_write(self.lock, vma)
        self._v.remove(vma)
        vma.detached = True
        self.lock.step()

    def publish(self) -> None:
        """End of a write cycle: readers see the tree as it is now. Only the
        part the cycle changed is rebuilt (the rest of the snapshot is
        shared): a one-page mmap among thousands of VMAs costs a few
        slices, not a copy of the tree."""
        lock = self.lock
        lo, hi = lock.changed_lo, lock.changed_hi
        if hi < 0:
            return
        lock.changed_lo, lock.changed_hi = NO_CHANGE
        vmas, ends = self.rcu
        mid = self.overlapping(lo, hi)
        if mid:  # a VMA grown in place reaches past what was write-locked
            lo, hi = min(lo, mid[0].start), max(hi, mid[-1].end)
        # no VMA outside the changed hull straddles it (VMAs never overlap)
        i, j = bisect_right(ends, lo), bisect_right(ends, hi)
        self.rcu = vmas[:i] + tuple(mid) + vmas[j:], ends[:i] + tuple(map(_END, mid)) + ends[j:]

    def rcu_find(self, addr: int) -> VMA | None:
        """Lock-free find(): the first VMA of the published snapshot with
        end > addr. Its VMAs may be changing: the caller read-locks and checks."""
        vmas, ends = self.rcu
        i = bisect_right(ends, addr)
        return vmas[i] if i < len(vmas) else None

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

    def window(self, vma: VMA, n: int) -> list[VMA]:
        """vma and the VMAs after it, n at most."""
        i = self._v.index(vma)
        return list(self._v.islice(i, i + n))

    def last(self) -> VMA | None:
        return self._v[-1] if self._v else None
