"""Idle page tracking: the per-process, VA-indexed walk behind
/proc/PID/idle_bitmap (the 2018 RFC, seed-mechanisms §2.2) and the
PFN-indexed page_idle bitmap (mm/page_idle.c, §2.3).

Per process: a page-table walk in address order that tests and clears
accessed bits. Upper levels carry accessed bits too (PageTable.old and
old_pud keep the cleared ones), so a PUD (1 GiB) or PMD (2 MiB) whose bit
is clear is reported idle in one step; a hole (no PTE table, no VMA) costs
nothing at all: the walk only visits the tables that exist. The tables the
walk must descend are gathered into one 2-D array and tested at once.

Global: per PFN, the head page of a user (LRU) folio has an idle flag; the
rmap (rmap.py) finds the PTEs that map it to test and clear their bits.
"""

from __future__ import annotations

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.pagetable import (PAGE_SHIFT, PMD_SHIFT, POOL_ROWS, PTE_ACCESSED, PTE_PRESENT, PTRS_PER_TABLE,
                                  PageTable)
from procsim.mm.rmap import clear_young

PUD_SHIFT = PMD_SHIFT + 9
_PMDS_PER_PUD = 1 << (PUD_SHIFT - PMD_SHIFT)
_YOUNG = PTE_PRESENT | PTE_ACCESSED
_NOT_A = ~PTE_ACCESSED
_HPTE_YOUNG = int(_YOUNG)
_HPTE_NOT_A = ~int(PTE_ACCESSED)
_YOUNG_BYTE = np.uint8(int(_YOUNG))          # both bits live in an entry's low byte
_NOT_A_BYTE = np.uint8(0xFF & ~int(PTE_ACCESSED))
_PMD_BYTES = PTRS_PER_TABLE // 8


def idle_read(pt: PageTable, start: int, end: int) -> np.ndarray:
    """Test and clear the accessed bits of [start, end) (multiples of 8
    pages): the idle bits packed little-endian, 1 = idle (not present, a
    hole, or not accessed since the last scan), as uint8. Every
    upper-level entry the range covers whole is left old; a huge leaf
    entry has one bit, cleared however much of it the range covers."""
    n = (end - start) >> PAGE_SHIFT
    lo_pmd, hi_pmd = start >> PMD_SHIFT, ((end - 1) >> PMD_SHIFT) + 1
    # 64 bytes (512 bits) per PMD of the 2 MiB-aligned window, all idle
    out = np.full((hi_pmd - lo_pmd) * _PMD_BYTES, 0xFF, np.uint8)
    packed = out.reshape(-1, _PMD_BYTES)
    idxs = list(pt.tables.irange(lo_pmd, hi_pmd - 1))
    htlb = list(pt.hugetlb.irange(lo_pmd, hi_pmd - 1)) if pt.hugetlb else []
    steps = 0
    if pt.old_pud:
        old_pud = pt.old_pud
        skipped = {i >> 9 for i in idxs if i >> 9 in old_pud} | {i >> 9 for i in htlb if i >> 9 in old_pud}
        steps += len(skipped)
        if skipped:
            idxs = [i for i in idxs if i >> 9 not in skipped]
            htlb = [i for i in htlb if i >> 9 not in skipped]
    old = pt.old
    if old:
        young = [i for i in idxs if i not in old]
        steps += len(idxs) - len(young)
        hyoung = [i for i in htlb if i not in old]
        steps += len(htlb) - len(hyoung)
    else:
        young, hyoung = idxs, htlb
    tables, huge = pt.tables, pt.huge
    leaf = [i for i in young if i in huge] if huge else []
    if leaf:
        leafset = set(leaf)
        young = [i for i in young if i not in leafset]
    # a PTE table the range covers only in part: only its entries in the
    # range are tested and cleared, and its PMD stays young
    c0 = (start >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)
    c1 = ((end - 1) >> PAGE_SHIFT & (PTRS_PER_TABLE - 1)) + 1
    part = {i: (c0 if i == lo_pmd else 0, c1 if i == hi_pmd - 1 else PTRS_PER_TABLE)
            for i in (lo_pmd, hi_pmd - 1) if young and i in (young[0], young[-1])}
    part = {i: c for i, c in part.items() if c != (0, PTRS_PER_TABLE)}
    for i, (a, b) in part.items():
        sub = tables[i][a:b]
        acc = (sub & _YOUNG) == _YOUNG
        if acc.any():
            packed[i - lo_pmd, a >> 3: b >> 3] = np.packbits(~acc, bitorder="little")
            sub[acc] &= _NOT_A
        steps += b - a + 1
    if part:
        young = [i for i in young if i not in part]
    if young:
        # descend: 512 PTEs per table, a run of consecutive pool rows at once
        rows = tables.rows
        g = np.array([rows[i] for i in young], np.int64)
        pos = np.asarray(young, np.int64) - lo_pmd
        cut = np.flatnonzero((np.diff(g) != 1) | (np.diff(g // POOL_ROWS) != 0)) + 1
        for a, b in zip([0, *cut.tolist()], [*cut.tolist(), len(g)]):
            r = int(g[a])
            run = tables.blocks[r // POOL_ROWS][r % POOL_ROWS: r % POOL_ROWS + b - a]
            low = run.view(np.uint8)[:, ::8]  # byte 0 of each entry: present and A
            acc = (low & _YOUNG_BYTE) == _YOUNG_BYTE
            if acc.any():
                packed[pos[a:b]] = np.packbits(~acc, axis=1, bitorder="little")
                np.bitwise_and(low, _NOT_A_BYTE, out=low)
        steps += len(young) * (PTRS_PER_TABLE + 1)
    for i in leaf:  # a leaf huge PMD: one bit for 2 MiB
        t = tables[i]
        steps += 1
        if (t[0] & _YOUNG) == _YOUNG:
            packed[i - lo_pmd] = 0
            np.bitwise_and(t, _NOT_A, out=t)
    for i in hyoung:  # a hugetlb huge PTE at PMD level
        e = pt.hugetlb[i]
        steps += 1
        if e & _HPTE_YOUNG == _HPTE_YOUNG:
            packed[i - lo_pmd] = 0
            pt.hugetlb[i] = e & _HPTE_NOT_A
    # the walk cleared every A bit below the PMDs it examined: they are old,
    # and so is each PUD the range covers whole
    old.update(young)
    old.update(leaf)
    old.update(hyoung)
    first_pud = -(-start >> PUD_SHIFT)
    last_pud = end >> PUD_SHIFT
    for p in {i >> 9 for i in idxs} | {i >> 9 for i in htlb}:
        if first_pud <= p < last_pud:
            pt.old_pud.add(p)
    pt.walk_steps += steps
    off = ((start >> PAGE_SHIFT) - (lo_pmd << (PMD_SHIFT - PAGE_SHIFT))) >> 3
    return out[off: off + (n >> 3)]


def idle_write(pt: PageTable, start: int, idle: np.ndarray) -> None:
    """Mark the pages `idle` (bool per page from `start`) idle: clear the
    accessed bit of each one's PTE (of the whole huge PMD or hugetlb entry
    for a page inside one). Other bits and entries are untouched."""
    pages = np.flatnonzero(idle)
    if not len(pages):
        return
    vpn = (start >> PAGE_SHIFT) + pages
    pmd = vpn >> (PMD_SHIFT - PAGE_SHIFT)
    cut = np.flatnonzero(np.diff(pmd)) + 1
    los = np.concatenate(([0], cut)).tolist()
    his = np.concatenate((cut, [len(vpn)])).tolist()
    tables, huge, htlb = pt.tables, pt.huge, pt.hugetlb
    for lo, hi, i in zip(los, his, pmd[los].tolist()):
        t = tables.get(i)
        if t is not None:
            if hi - lo == PTRS_PER_TABLE or i in huge:
                np.bitwise_and(t, _NOT_A, out=t)
            else:
                t[vpn[lo:hi] & (PTRS_PER_TABLE - 1)] &= _NOT_A
        elif htlb and i in htlb:
            htlb[i] &= _HPTE_NOT_A


# -- the global, PFN-indexed bitmap ------------------------------------------

def _user_folios(mem: M.MemMap, pfns: np.ndarray) -> np.ndarray:
    """page_idle_get_folio(): the PFNs that are the head page of a folio on
    an LRU list (user memory); tails, free and kernel pages are not."""
    heads, _ = mem.folio_head(pfns)
    fl = mem.flags[pfns]
    return pfns[(heads == pfns) & ((fl & M.PG_LRU) != 0) & ((fl & M.PG_HUGETLB) == 0)]


def page_idle_read(mem: M.MemMap, lo: int, hi: int) -> np.ndarray:
    """The bits of PFNs [lo, hi) (hi <= nr_pages): True for a user folio
    whose idle flag survives a test-and-clear of its PTEs' accessed bits;
    a bit found set clears the idle flag and sets the young flag."""
    pfns = np.arange(lo, hi, dtype=np.int64)
    out = np.zeros(hi - lo, bool)
    user = _user_folios(mem, pfns)
    cand = user[(mem.flags[user] & M.PG_IDLE) != 0]
    if not len(cand):
        return out
    young = clear_young(mem, cand)
    y = cand[young]
    mem.flags[y] = (mem.flags[y] & ~np.uint32(M.PG_IDLE)) | np.uint32(M.PG_YOUNG)
    out[cand[~young] - lo] = True
    return out


def page_idle_write(mem: M.MemMap, pfns: np.ndarray) -> None:
    """Set the idle flag of the user folios among `pfns`, after clearing
    the accessed bits of every PTE mapping them (remembered as young)."""
    user = _user_folios(mem, pfns)
    if not len(user):
        return
    young = clear_young(mem, user)
    mem.flags[user[young]] |= np.uint32(M.PG_YOUNG)
    mem.flags[user] |= np.uint32(M.PG_IDLE)
