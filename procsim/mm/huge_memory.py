"""Transparent huge pages (mm/huge_memory.c): anonymous huge PMDs and mTHP
folios on write faults, their write-protect faults, zapping, and the
PMD split that turns one PMD mapping into 512 PTE mappings."""

from __future__ import annotations

import numpy as np

from procsim.mm.mm import ANON_NEW, MM, MM_ANONPAGES
from procsim.mm.pagetable import (PAGE_SHIFT, PMD_SHIFT, PMD_SIZE, PTE_ACCESSED, PTE_DIRTY, PTE_RW,
                                  PTE_SOFT_DIRTY, PTRS_PER_TABLE, mk_pte)
from procsim.mm.rmap import AnonVma
from procsim.mm.vma import VMA


def huge_head(mm: MM, idx: int) -> int:
    """The head PFN of the folio a huge PMD maps."""
    return int(mm.pgtable.tables[idx][0] >> np.uint64(PAGE_SHIFT))


def split_huge_pmd(mm: MM, idx: int) -> None:
    """__split_huge_pmd(): the PMD becomes 512 PTEs with its bits; the folio
    stays whole (one PMD mapping becomes 512 PTE mappings)."""
    head = huge_head(mm, idx)
    mm.pgtable.huge.discard(idx)
    mm.mem.map_pages(np.arange(head, head + PTRS_PER_TABLE, dtype=np.int64), mm.mm_id)
    mm.mem.unmap_pmd(head, mm.mm_id)
    mm.mem.split_pmds += 1


def split_huge_pmds(mm: MM, start: int, end: int) -> None:
    """split_huge_pmd() of every huge PMD in [start, end)."""
    for idx in mm.pgtable.huge_in(start, end):
        split_huge_pmd(mm, idx)


def zap_huge_pmds(mm: MM, start: int, end: int) -> int:
    """zap_huge_pmd() for huge PMDs inside [start, end), splitting those the
    range only partly covers. The deposited table goes with the PMD, so
    the next fault there may get a THP again."""
    n = 0
    for idx in mm.pgtable.huge_in(start, end):
        base = idx << PMD_SHIFT
        if start <= base and base + PMD_SIZE <= end:
            head = huge_head(mm, idx)
            del mm.pgtable.tables[idx]
            mm.pgtable.huge.discard(idx)
            mm.mem.unmap_pmd(head, mm.mm_id)
            mm.rss.add(MM_ANONPAGES, -PTRS_PER_TABLE)
            n += PTRS_PER_TABLE
        else:
            split_huge_pmd(mm, idx)
    return n


def sync_huge_bits(mm: MM, start: int, end: int) -> None:
    """A huge PMD has one young, dirty and soft-dirty bit: keep the 512
    copies of it equal after a partial access."""
    bits = PTE_ACCESSED | PTE_DIRTY | PTE_SOFT_DIRTY
    for idx in mm.pgtable.huge_in(start, end):
        t = mm.pgtable.tables[idx]
        t |= np.bitwise_or.reduce(t & bits)


def fault_large(mm: MM, v: VMA, lo: int, hi: int, orders: int) -> int:
    """Anonymous write faults that get a large folio: do_huge_pmd_anonymous_page
    where the PMD is still none (no page table at all) and the aligned
    2 MiB lies inside the VMA, else alloc_anon_folio's highest enabled
    order whose aligned block is inside the VMA and wholly pte_none.
    Pages left missing are order-0 faults for the caller. Returns the
    faults taken (one per folio)."""
    mem, pt = mm.mem, mm.pgtable
    flags = ANON_NEW
    small_orders = [o for o in range(8, 1, -1) if orders >> o & 1]
    faults = 0
    for idx in range(lo >> PMD_SHIFT, ((hi - 1) >> PMD_SHIFT) + 1):
        base = idx << PMD_SHIFT
        t = pt.tables.get(idx)
        if orders >> 9 & 1 and t is None and v.start <= base and base + PMD_SIZE <= v.end:
            head = mem.alloc_folio(9, flags)
            if head >= 0:
                pt.tables[idx] = mk_pte(np.arange(head, head + PTRS_PER_TABLE, dtype=np.int64), True, True)
                pt.mark_young(idx)
                pt.huge.add(idx)
                mem.map_pmd(head, mm.mm_id)
                mm.rss.add(MM_ANONPAGES, PTRS_PER_TABLE)
                v.anon_vma = v.anon_vma or AnonVma()
                mem.thp_fault_alloc += 1
                faults += 1
                continue
        if not small_orders:
            continue
        none = np.ones(PTRS_PER_TABLE, bool) if t is None else t == 0
        touched = np.zeros(PTRS_PER_TABLE, bool)
        touched[(max(lo, base) - base) >> PAGE_SHIFT: (min(hi, base + PMD_SIZE) - base) >> PAGE_SHIFT] = True
        inside = np.zeros(PTRS_PER_TABLE, bool)
        inside[(max(v.start, base) - base) >> PAGE_SHIFT: (min(v.end, base + PMD_SIZE) - base) >> PAGE_SHIFT] = True
        got: list[tuple[int, int, int]] = []  # (slot, head, order)
        for o in small_orders:
            nr = 1 << o
            ok = (none & inside).reshape(-1, nr).all(1) & (touched & none).reshape(-1, nr).any(1)
            for b in np.nonzero(ok)[0].tolist():
                head = mem.alloc_folio(o, flags)
                if head < 0:
                    break  # no block of this order: lower orders for the rest
                got.append((b * nr, head, o))
                none[b * nr: (b + 1) * nr] = False
                mem.mthp_fault_alloc[o] += 1
        if not got:
            continue
        if t is None:
            pt.tables[idx] = np.zeros(PTRS_PER_TABLE, np.uint64)
            t = pt.tables[idx]
        pt.mark_young(idx)
        pfns = []
        for slot, head, o in got:
            p = np.arange(head, head + (1 << o), dtype=np.int64)
            t[slot: slot + len(p)] = mk_pte(p, True, True)
            pfns.append(p)
        allp = np.concatenate(pfns)
        mem.map_pages(allp, mm.mm_id)
        mm.rss.add(MM_ANONPAGES, len(allp))
        v.anon_vma = v.anon_vma or AnonVma()
        faults += len(got)
    return faults


def do_huge_pmd_wp_page(mm: MM, lo: int, hi: int) -> int:
    """do_huge_pmd_wp_page(): a write to a read-only huge PMD reuses the
    folio if this PMD is its only mapping, else splits the PMD and lets
    the PTE-level fault copy the written pages."""
    faults = 0
    for idx in mm.pgtable.huge_in(lo, hi):
        t = mm.pgtable.tables[idx]
        if t[0] & PTE_RW:
            continue
        head = huge_head(mm, idx)
        if mm.mem.large_mapcount[head] == 1:
            t |= PTE_RW | PTE_DIRTY
            faults += 1
        else:
            split_huge_pmd(mm, idx)
    return faults

