"""Empty PTE tables as a restore leaves them: a process keeps page tables
where no page is mapped any more (a file page reclaimed, a MADV_DONTNEED
of less than a table, a partial munmap whose range a neighbouring VMA
still touches: free_pgtables() frees a table only when no VMA covers its
2 MiB), which VmPTE counts and no /proc file locates. A captured
process's VmPTE is remade by keeping that many empty tables in its
VMAs: real tables of the model's page-table state (PageTable.tables
rows with no entry), which munmap of their range or exit frees as any
other (mmap.py's do_munmap -> free_empty, exit_mmap)."""

from __future__ import annotations

import numpy as np

from procsim.mm.pagetable import PMD_SHIFT, PTRS_PER_TABLE
from procsim.units import PAGE_SIZE


def _uppers(pt) -> tuple[set[int], set[int]]:
    """The PMD and PUD tables there are (by their index: PTE-table index >> 9, >> 18)."""
    pmds = {k >> 9 for k in pt.tables.keys()} | {k >> 9 for k in pt.hugetlb.keys()}
    return pmds, {p >> 9 for p in pmds}


def _free_slots(mm, pt, pmds: set[int]):
    """PMD indices inside the VMAs (not hugetlb ones) with no table yet:
    first those under a PMD table there is, then the others VMA by VMA."""
    for p in sorted(pmds):
        base = p << 9
        for v in mm.vmas.overlapping(base << PMD_SHIFT, (base + 512) << PMD_SHIFT):
            if v.is_hugetlb:
                continue
            lo, hi = max(base, v.start >> PMD_SHIFT), min(base + 511, (v.end - 1) >> PMD_SHIFT)
            for idx in range(lo, hi + 1):
                if idx not in pt.tables and idx not in pt.hugetlb:
                    yield idx
    for v in mm.vmas:
        if v.is_hugetlb:
            continue
        first, last = v.start >> PMD_SHIFT, (v.end - 1) >> PMD_SHIFT
        idx = first
        for have in pt.tables.irange(first, last):  # the tables are sparse: skip past each
            if have > idx:
                yield from range(idx, have)
            idx = have + 1
        yield from range(idx, last + 1)


def keep_empty_tables(mm, nbytes: int) -> int:
    """Allocate empty PTE tables in `mm`'s VMAs until mm_pgtables_bytes is
    `nbytes` (the cheapest first: under PMD tables that exist); the pages
    added. Fewer when the VMAs have no room or the rest is less than a
    table would add; none when the tables already reach `nbytes` (tables
    that hold entries are not taken away)."""
    pt = mm.pgtable
    want = (nbytes - pt.pgtables_bytes()) // PAGE_SIZE
    added = 0
    while want > 0:
        pmds, puds = _uppers(pt)
        best = None  # (pages it adds: the PTE table, and a new PMD and PUD table above it), index
        for idx in _free_slots(mm, pt, pmds):
            c = 1 if idx >> 9 in pmds else 2 if idx >> 18 in puds else 3
            if c <= want and (best is None or c < best[0]):
                best = (c, idx)
                if c <= 2:  # the slots under existing PMD tables come first
                    break
        if best is None:
            break
        pt.tables[best[1]] = np.zeros(PTRS_PER_TABLE, np.uint64)
        want -= best[0]
        added += best[0]
    return added
