"""The ground truth of which pages an address space touched, and when.

An `AccessLog` hangs on an mm (`mm.access_log`); `memory.access` reports every
page a user access reaches and `memory.fault` every range it faults in. The log
answers "which pages were touched in [t0, t1)" so that working-set
estimates (smaps Referenced, the page_idle bitmap, idle_bitmap) can be
scored against what really happened.

Time: every record is stamped with the clock when it is made. A workload
step that runs the accesses of the clock interval [ta, tb) makes them at
ta (the kernel steps workloads before it moves the clock), so every instant
at which the world can be observed (a step boundary) splits the history
exactly. Records made at one clock value form one *epoch*.

Representation: no Python object per page. Pages are grouped in chunks of
512 (one PTE table, 2 MiB of address space); a chunk gets a slot on first
touch. Per page the log keeps the epoch of its last access (uint32 in a
[slots, 512] array: 4 bytes per page of a touched chunk), which answers
"touched since t0" exactly for any t0. Each closed epoch also keeps the
512-bit bitmap of every chunk it touched (72 bytes per chunk), which
answers intervals [t0, t1) that end in the past; the oldest epochs are
dropped beyond `history_bytes`, after which an interval reaching back
before them is refused (`HistoryLost`) while "since" queries stay exact.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from procsim.units import PAGE_SHIFT

CHUNK_SHIFT = 9                  # pages per chunk: one PTE table
CHUNK_PAGES = 1 << CHUNK_SHIFT
_WORDS = CHUNK_PAGES // 64       # 8 u64 words of bitmap per chunk
DEFAULT_HISTORY_BYTES = 64 << 20
_CLOSE_BLOCK = 1 << 14           # chunks packed at a time when an epoch closes


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2.4's hash-based np.unique takes seconds
    for millions of page-aligned integers, a sort takes a fraction of one."""
    s = np.sort(x, kind="stable")
    if len(s) < 2:
        return s
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


class HistoryLost(ValueError):
    """An interval query reaches back into epochs already dropped."""


@dataclass(frozen=True)
class Epoch:
    """The pages touched at one clock value: chunk numbers (sorted) and
    their 512-bit bitmaps (bit i of chunk c = page c * 512 + i)."""
    time: int
    chunks: np.ndarray   # int64[n]
    bits: np.ndarray     # uint64[n, 8]

    @property
    def nbytes(self) -> int:
        return self.chunks.nbytes + self.bits.nbytes

    @property
    def pages(self) -> int:
        return int(np.unpackbits(self.bits.view(np.uint8)).sum())


class AccessLog:
    """Which virtual pages were touched, when. `clock()` gives the time (ns)."""

    def __init__(self, clock: Callable[[], int], history_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        if history_bytes < 0:
            raise ValueError("history_bytes must not be negative")
        self.clock = clock
        self.history_bytes = history_bytes
        self.started = clock()
        self._keys = np.zeros(0, np.int64)    # chunk numbers, sorted
        self._key_slot = np.zeros(0, np.int64)  # their slots
        self._chunk = np.zeros(16, np.int64)  # slot -> chunk number
        self._last = np.zeros((16, CHUNK_PAGES), np.uint32)  # epoch of last access, 0 = never
        self._nslots = 0
        self._times: list[int] = [-1]          # epoch number -> its time (epoch 0: never)
        self._open: list[np.ndarray] = []      # slots touched in the open epoch
        self._history: deque[Epoch] = deque()
        self._history_nbytes = 0
        self._dropped_until: int | None = None  # the newest dropped epoch's time
        self.records = 0                        # calls of record_pages/record_range

    # -- recording --------------------------------------------------------------

    def record_pages(self, vas: np.ndarray) -> None:
        """Pages at the page-aligned addresses `vas` (any order, repeats allowed)."""
        vpns = np.asarray(vas, dtype=np.int64) >> PAGE_SHIFT
        if not len(vpns):
            return
        e = self._epoch()
        chunks = vpns >> CHUNK_SHIFT
        uc = sorted_unique(chunks)
        slots = self._slots_for(uc)
        self._last[slots[np.searchsorted(uc, chunks)], vpns & (CHUNK_PAGES - 1)] = e
        self._open.append(slots)
        self.records += 1

    def record_range(self, start: int, end: int) -> None:
        """Every page of [start, end) (page aligned): a fault or touch of a range."""
        v0, v1 = start >> PAGE_SHIFT, -(-end >> PAGE_SHIFT)
        if v1 <= v0:
            return
        e = self._epoch()
        c0, c1 = v0 >> CHUNK_SHIFT, (v1 - 1) >> CHUNK_SHIFT
        slots = self._slots_for(np.arange(c0, c1 + 1, dtype=np.int64))
        lo, hi = v0 & (CHUNK_PAGES - 1), ((v1 - 1) & (CHUNK_PAGES - 1)) + 1
        if c0 == c1:
            self._last[slots[0], lo:hi] = e
        else:
            self._last[slots[0], lo:] = e
            self._last[slots[-1], :hi] = e
            if len(slots) > 2:
                self._last[slots[1:-1]] = e
        self._open.append(slots)
        self.records += 1

    def _epoch(self) -> int:
        """The number of the epoch records made now belong to."""
        now = self.clock()
        if self._open and self._times[-1] == now:
            return len(self._times) - 1
        if self._open:
            self._close()
        if len(self._times) >= np.iinfo(np.uint32).max:
            raise OverflowError("access log: epoch numbers exhausted")
        self._times.append(now)
        return len(self._times) - 1

    def _slots_for(self, chunks: np.ndarray) -> np.ndarray:
        """Slots of the sorted, distinct chunk numbers, made where missing."""
        keys = self._keys
        pos = np.searchsorted(keys, chunks)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == chunks[found]
        out = np.empty(len(chunks), np.int64)
        out[found] = self._key_slot[pos[found]]
        new = chunks[~found]
        if len(new):
            first = self._nslots
            self._grow(first + len(new))
            slots = np.arange(first, first + len(new), dtype=np.int64)
            self._chunk[slots] = new
            self._nslots += len(new)
            out[~found] = slots
            ins = pos[~found]
            self._keys = np.insert(keys, ins, new)
            self._key_slot = np.insert(self._key_slot, ins, slots)
        return out

    def _grow(self, need: int) -> None:
        cap = len(self._chunk)
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        chunk = np.zeros(cap, np.int64)
        chunk[: self._nslots] = self._chunk[: self._nslots]
        last = np.zeros((cap, CHUNK_PAGES), np.uint32)
        last[: self._nslots] = self._last[: self._nslots]
        self._chunk, self._last = chunk, last

    def _close(self) -> None:
        """Move the open epoch into the history as per-chunk bitmaps."""
        e = len(self._times) - 1
        slots = sorted_unique(np.concatenate(self._open))
        self._open = []
        chunks = self._chunk[slots]
        order = np.argsort(chunks, kind="stable")
        slots, chunks = slots[order], chunks[order]
        bits = np.empty((len(slots), _WORDS), np.uint64)
        for i in range(0, len(slots), _CLOSE_BLOCK):
            rows = self._last[slots[i:i + _CLOSE_BLOCK]] == e
            bits[i:i + _CLOSE_BLOCK] = np.packbits(rows, axis=1, bitorder="little").view("<u8")
        ep = Epoch(self._times[e], chunks, bits)
        self._history.append(ep)
        self._history_nbytes += ep.nbytes
        while self._history_nbytes > self.history_bytes and self._history:
            old = self._history.popleft()
            self._history_nbytes -= old.nbytes
            self._dropped_until = old.time

    # -- queries ----------------------------------------------------------------

    def touched(self, since: int, until: int | None = None) -> np.ndarray:
        """Sorted virtual page numbers touched at times in [since, until)
        (ns; until None: up to now, included)."""
        if until is not None and until <= since:
            return np.zeros(0, np.int64)
        newest = self._times[-1]
        if until is None or until > newest:
            # no epoch at or after `until`: the last access of each page says it
            e0 = bisect.bisect_left(self._times, since, lo=1)
            if e0 >= len(self._times):
                return np.zeros(0, np.int64)
            n = self._nslots
            slot, off = np.nonzero(self._last[:n] >= e0)
            vpns = (self._chunk[slot] << CHUNK_SHIFT) + off
            vpns.sort()
            return vpns
        if self._open:
            self._close()
        if self._dropped_until is not None and self._dropped_until >= since:
            raise HistoryLost(f"access history before {self._dropped_until / 1e9:.9f} s was dropped "
                              f"(history_bytes={self.history_bytes}); ask for an interval ending now")
        eps = [ep for ep in self._history if since <= ep.time < until]
        if not eps:
            return np.zeros(0, np.int64)
        chunks = np.concatenate([ep.chunks for ep in eps])
        bits = np.concatenate([ep.bits for ep in eps])
        order = np.argsort(chunks, kind="stable")
        chunks, bits = chunks[order], bits[order]
        heads = np.flatnonzero(np.concatenate(([True], chunks[1:] != chunks[:-1])))
        merged = np.bitwise_or.reduceat(bits, heads, axis=0)
        rows = np.unpackbits(merged.view(np.uint8), axis=1, bitorder="little")
        i, off = np.nonzero(rows)
        return (chunks[heads][i] << CHUNK_SHIFT) + off

    def count(self, since: int, until: int | None = None) -> int:
        """How many pages were touched in [since, until)."""
        return len(self.touched(since, until))

    def epochs(self) -> list[tuple[int, int]]:
        """(time, pages touched) of the epochs still in the history, the open one last."""
        out = [(ep.time, ep.pages) for ep in self._history]
        if self._open:
            e = len(self._times) - 1
            slots = sorted_unique(np.concatenate(self._open))
            out.append((self._times[e], int((self._last[slots] == e).sum())))
        return out

    @property
    def nbytes(self) -> int:
        """Memory held: the per-page epochs, the chunk index and the history."""
        return (self._last.nbytes + self._chunk.nbytes + self._keys.nbytes + self._key_slot.nbytes
                + self._history_nbytes)


def ranges(vpns: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct page numbers as [start, end) address ranges of runs."""
    if not len(vpns):
        return []
    cut = np.flatnonzero(np.diff(vpns) != 1) + 1
    lo = vpns[np.concatenate(([0], cut))] << PAGE_SHIFT
    hi = (vpns[np.concatenate((cut - 1, [len(vpns) - 1]))] + 1) << PAGE_SHIFT
    return list(zip(lo.tolist(), hi.tolist()))


def bitmap(vpns: np.ndarray, start: int, end: int) -> np.ndarray:
    """The pages of [start, end) as a little-endian bit array (uint8, one bit
    per page, 1 = touched), the layout of idle_bitmap with the sense inverted."""
    v0, v1 = start >> PAGE_SHIFT, -(-end >> PAGE_SHIFT)
    sel = vpns[(vpns >= v0) & (vpns < v1)] - v0
    bits = np.zeros(v1 - v0, np.uint8)
    bits[sel] = 1
    return np.packbits(bits, bitorder="little")
