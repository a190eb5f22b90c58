"""Compact page tables: 512-entry PTE tables made on first touch.

A table covers one PMD (2 MiB); an untouched PMD costs nothing and an empty
one is skipped whole. Entries use x86 PTE bits: the PFN above bit 12,
present, write, accessed (young) and dirty below.

An entry is one of: none (0), present (bit 0 set), or a swap entry: present
clear, the software bit _PAGE_SWP_ENTRY set, the swap type above bit 58 and
the slot offset in bits 12..57 stored inverted, as x86 has stored them since
L1TF. The inversion also means that a forgotten present check, taking a swap
entry for a PFN, indexes far beyond mem_map and fails loudly.

hugetlb pages are mapped by huge PTEs at PMD level, kept apart from the PTE
tables (`PageTable.hugetlb`): code that walks `spans()` never meets them.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np
from sortedcontainers import SortedDict, SortedSet

from procsim.units import PAGE_SHIFT, PAGE_SIZE

PTRS_PER_TABLE = 512
PMD_SHIFT = PAGE_SHIFT + 9
PMD_SIZE = 1 << PMD_SHIFT

_PRESENT = 1 << 0
_RW = 1 << 1
_USER = 1 << 2
_ACCESSED = 1 << 5
_DIRTY = 1 << 6
_PSE = 1 << 7          # a huge (PMD-level) entry
_SWP_ENTRY = 1 << 10   # software bit: a non-present entry that holds a swap entry
_SOFT_DIRTY = 1 << 11  # x86 _PAGE_SOFT_DIRTY (software bit 11); swap entries keep it too
PTE_PRESENT = np.uint64(_PRESENT)
PTE_RW = np.uint64(_RW)
PTE_USER = np.uint64(_USER)
PTE_ACCESSED = np.uint64(_ACCESSED)
PTE_DIRTY = np.uint64(_DIRTY)
PTE_SOFT_DIRTY = np.uint64(_SOFT_DIRTY)
PTE_PSE = np.uint64(_PSE)
PTE_SWP_ENTRY = np.uint64(_SWP_ENTRY)
PTE_FLAGS_MASK = np.uint64(PAGE_SIZE - 1)
SWP_OFFSET_BITS = 46  # bits 12..57; the type (always 0: one swap area) sits above
SWP_OFFSET_MASK = np.uint64((1 << SWP_OFFSET_BITS) - 1)
SWP_TYPE_SHIFT = 58


def mk_pte(pfns: np.ndarray, write: bool, dirty: bool) -> np.ndarray:
    bits = _PRESENT | _USER | _ACCESSED | (_RW if write else 0) | (_DIRTY if dirty else 0)
    return (pfns.astype(np.uint64) << np.uint64(PAGE_SHIFT)) | np.uint64(bits)


def pte_pfn(ptes: np.ndarray) -> np.ndarray:
    return (ptes >> np.uint64(PAGE_SHIFT)).astype(np.int64)


def pte_present(ptes: np.ndarray) -> np.ndarray:
    return (ptes & PTE_PRESENT) != 0


def is_swap_pte(ptes: np.ndarray) -> np.ndarray:
    """Non-present entries that hold a swap entry (is_swap_pte(): not none,
    not present)."""
    return (ptes & (PTE_PRESENT | PTE_SWP_ENTRY)) == PTE_SWP_ENTRY


def swp_entry_pte(offsets: np.ndarray, soft_dirty: np.ndarray | None = None) -> np.ndarray:
    """Swap entries of type 0 for slot `offsets`; `soft_dirty` (bool per
    entry) carries the PTE soft-dirty bit over, as pte_swp_mksoft_dirty()."""
    inv = ~offsets.astype(np.uint64) & SWP_OFFSET_MASK
    out = (inv << np.uint64(PAGE_SHIFT)) | PTE_SWP_ENTRY
    if soft_dirty is not None:
        out[soft_dirty] |= PTE_SOFT_DIRTY
    return out


def swp_offset(ptes: np.ndarray) -> np.ndarray:
    """Slot offsets of swap entries."""
    return (~(ptes >> np.uint64(PAGE_SHIFT)) & SWP_OFFSET_MASK).astype(np.int64)


POOL_ROWS = 1024  # PTE tables per pool block (4 MiB, committed as used)


def _pool_block() -> np.ndarray:
    """A zeroed block of POOL_ROWS tables, in anonymous memory of its own:
    its pages are committed as rows are used (a row is one page) and it is
    unmapped when the last view goes. (np.zeros takes a 4 MiB block from
    the malloc heap once glibc's mmap threshold has grown past it, and then
    clears and commits all of it: 8 ms per new mm, and 4 MiB of RSS each.)"""
    buf = mmap.mmap(-1, POOL_ROWS * PTRS_PER_TABLE * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buf, np.uint64).reshape(POOL_ROWS, PTRS_PER_TABLE)


class TableDict(SortedDict):
    """PMD index -> PTE table, where every table is a row of a 2-D pool
    block: a scan of many tables (the idle bitmap walk) reads and clears
    runs of consecutive rows as one array instead of one object per table.
    Storing an array copies it into the index's row (a table object is
    always the row view); deleting frees the row. `rows` maps each index to
    its global row number (block * POOL_ROWS + row)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[np.ndarray] = []
        self.rows: dict[int, int] = {}
        self._free: list[int] = []
        self.version = 0  # moves when an index is added or deleted (pgtables_bytes' memo)

    def __setitem__(self, idx: int, table: np.ndarray) -> None:
        g = self.rows.get(idx)
        if g is not None:
            row = self.row(g)
            if row is not table:
                row[:] = table
            return
        if self._free:
            g = self._free.pop()
        else:
            g = len(self.blocks) * POOL_ROWS
            self.blocks.append(_pool_block())
            self._free.extend(range(g + POOL_ROWS - 1, g, -1))
        row = self.row(g)
        row[:] = table
        self.rows[idx] = g
        self.version += 1
        super().__setitem__(idx, row)

    def __delitem__(self, idx: int) -> None:
        super().__delitem__(idx)
        g = self.rows.pop(idx)
        self.row(g)[:] = 0
        self._free.append(g)
        self.version += 1

    def row(self, g: int) -> np.ndarray:
        return self.blocks[g // POOL_ROWS][g % POOL_ROWS]

    def pop(self, *a):  # not used: would bypass the row bookkeeping
        raise NotImplementedError

    popitem = clear = update = setdefault = pop


class PageTable:
    """The user page tables of one mm."""

    __slots__ = ("tables", "huge", "hugetlb", "old", "old_pud", "walk_steps", "_pgt_memo")

    def __init__(self) -> None:
        self.tables: TableDict = TableDict()  # PMD index -> np.uint64[512] (a pool row)
        self._pgt_memo: tuple[int, int] | None = None  # (tables.version, pgtables_bytes) without hugetlb
        # PMD indices mapped by one huge PMD (an order-9 folio). Their table
        # is the page table the kernel deposits for a THP (and counts in
        # mm_pgtables_bytes): it holds the 512 translations in PTE form, with
        # the PMD's young/dirty/write bits copied to every entry, so readers
        # (pagemap, smaps) walk it like any table. Mapcounts differ: a huge
        # PMD is one mapping of the folio (entire mapcount), not 512.
        self.huge: SortedSet = SortedSet()
        # PMD index -> huge PTE (int, x86 bits with _PAGE_PSE) mapping one 2 MiB
        # hugetlb page: no PTE table below it, as for a real huge PTE.
        self.hugetlb: SortedDict = SortedDict()
        # Upper-level accessed bits (seed-mechanisms §2.2: hardware sets the A
        # bit of every level it walks). Kept inverted, as the PMD and PUD
        # indices whose A bit an idle scan cleared: a table not listed is
        # young, so anything that may set a PTE A bit (mark_young) only has
        # to forget the index. An idle PMD or PUD is skipped whole.
        self.old: set[int] = set()
        self.old_pud: set[int] = set()
        self.walk_steps = 0  # entries the idle_bitmap walk examined (seed §2.6 item 5)

    def spans(self, start: int, end: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """(va of first entry, slice of the table) for every existing table
        overlapping [start, end); the slice is a view."""
        if start >= end:
            return
        first, last = start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT
        for idx in self.tables.irange(first, last):
            base = idx << PMD_SHIFT
            lo = max(start, base)
            hi = min(end, base + PMD_SIZE)
            t = self.tables[idx]
            yield lo, t[(lo - base) >> PAGE_SHIFT : (hi - base) >> PAGE_SHIFT]

    def has_tables(self, start: int, end: int) -> bool:
        """Does any PTE table overlap [start, end)?"""
        if start >= end:
            return False
        return next(iter(self.tables.irange(start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT)), None) is not None

    def mark_young(self, idx: int) -> None:
        """The hardware walked PMD `idx` (and its PUD) to set a PTE A bit."""
        if self.old:
            self.old.discard(idx)
        if self.old_pud:
            self.old_pud.discard(idx >> 9)

    def read(self, start: int, end: int) -> np.ndarray:
        """All entries of [start, end) as one flat array (zeros for holes)."""
        out = np.zeros((end - start) >> PAGE_SHIFT, np.uint64)
        for va, sl in self.spans(start, end):
            i = (va - start) >> PAGE_SHIFT
            out[i : i + len(sl)] = sl
        return out

    def write(self, start: int, ptes: np.ndarray) -> None:
        """Store entries from `start`, making tables where a non-zero entry lands."""
        n = len(ptes)
        i = 0
        while i < n:
            va = start + (i << PAGE_SHIFT)
            idx = va >> PMD_SHIFT
            off = (va >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)
            k = min(PTRS_PER_TABLE - off, n - i)
            chunk = ptes[i : i + k]
            self.mark_young(idx)
            t = self.tables.get(idx)
            if t is None:
                if chunk.any():
                    self.tables[idx] = np.zeros(PTRS_PER_TABLE, np.uint64)
                    self.tables[idx][off : off + k] = chunk
            else:
                t[off : off + k] = chunk
            i += k

    def take(self, start: int, end: int) -> np.ndarray:
        """Clear [start, end) and return the entries that were there, present
        ones and swap entries alike (every non-none entry)."""
        got = []
        for _, sl in self.spans(start, end):
            nz = sl[sl != 0]
            if len(nz):
                got.append(nz)
                sl[:] = 0
        return np.concatenate(got) if got else np.zeros(0, np.uint64)

    def free_empty(self, start: int, end: int, keep) -> bool:
        """Drop the tables in [start, end) that hold no entry and whose 2 MiB
        span `keep(lo, hi)` says no VMA still covers; True if any was freed."""
        freed = False
        first, last = start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT
        for idx in list(self.tables.irange(first, last)):
            base = idx << PMD_SHIFT
            if not self.tables[idx].any() and not keep(base, base + PMD_SIZE):
                del self.tables[idx]
                freed = True
        return freed

    def huge_in(self, start: int, end: int) -> list[int]:
        """PMD indices mapped huge that overlap [start, end)."""
        if start >= end or not self.huge:
            return []
        return list(self.huge.irange(start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT))

    def count_present(self, start: int, end: int) -> int:
        return sum(int(np.count_nonzero(sl & PTE_PRESENT)) for _, sl in self.spans(start, end))

    def count_swap(self, start: int, end: int) -> int:
        return sum(int(np.count_nonzero(is_swap_pte(sl))) for _, sl in self.spans(start, end))

    def take_hugetlb(self, start: int, end: int) -> dict[int, int]:
        """Remove the huge PTEs of [start, end) (mremap moving them); by PMD index."""
        return {idx: self.hugetlb.pop(idx) for idx in self.hugetlb_in(start, end)}

    def put_hugetlb(self, entries: dict[int, int], shift: int) -> None:
        """Install huge PTEs taken by take_hugetlb `shift` PMDs away."""
        for idx, e in entries.items():
            self.hugetlb[idx + shift] = e

    def hugetlb_in(self, start: int, end: int) -> list[int]:
        """PMD indices of hugetlb entries overlapping [start, end)."""
        if start >= end or not self.hugetlb:
            return []
        return list(self.hugetlb.irange(start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT))

    def copy(self) -> "PageTable":
        pt = PageTable()
        for k, v in self.tables.items():
            pt.tables[k] = v
        pt.huge = SortedSet(self.huge)
        pt.hugetlb = SortedDict(self.hugetlb)
        return pt

    def pgtables_bytes(self) -> int:
        """mm_pgtables_bytes: PTE tables plus the PMD and PUD tables above
        them (hugetlb entries live in PMD tables and need no PTE table).
        Kept until a table comes or goes: Linux keeps it as a counter, and
        meminfo sums it over every mm."""
        memo = self._pgt_memo
        if memo is not None and memo[0] == self.tables.version and not self.hugetlb:
            return memo[1]
        keys = self.tables.keys()
        upper = list(keys) + list(self.hugetlb.keys()) if self.hugetlb else keys
        pmds = len({k >> 9 for k in upper})
        puds = len({k >> 18 for k in upper})
        n = (len(keys) + pmds + puds) * PAGE_SIZE
        if not self.hugetlb:
            self._pgt_memo = (self.tables.version, n)
        return n
