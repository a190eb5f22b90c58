"""Reclaim of anonymous memory (mm/vmscan.c's shrink_folio_list for
MADV_PAGEOUT, with swap-out as add_to_swap + pageout do it): pages go to
the swap area (mm/swap.py) through the swap cache (mm/swapcache.py), clean
lazily-freed pages are dropped. The swap-in side is do_swap_page in
mm/memory.py, as in mm/memory.c."""

from __future__ import annotations

import numpy as np

from procsim.block.blk_core import STAT_WRITE, SWAP_DEV, submit_pages
from procsim.mm import huge_memory
from procsim.mm import page_alloc as M
from procsim.mm.mm import MM, MM_ANONPAGES, MM_SWAPENTS, ZERO_PFN
from procsim.mm.pagetable import PTE_DIRTY, PTE_PRESENT, PTE_SOFT_DIRTY, pte_pfn, swp_entry_pte
from procsim.mm.vma import VM_MAYSHARE


def pageout(mm: MM, start: int, end: int) -> int:
    """madvise(MADV_PAGEOUT) on [start, end) (the caller has refused
    locked, PFN-map and hugetlb VMAs with EINVAL): anonymous pages only
    this mm maps are written to swap and unmapped. Returns the pages
    paged out.

    As madvise_cold_or_pageout_pte_range() + reclaim: huge PMDs and large
    folios only this mm maps are split first (a THP is swapped whole only
    into a free swap cluster; 6.18 split it, thp_swpout_fallback), shared
    ones (after fork, or maybe mapped shared) are skipped, as are the zero
    page, page-cache pages and shared memory (simplification: file and
    shmem reclaim are not modelled). Clean MADV_FREE pages are dropped
    instead (PTE none, no slot), re-dirtied ones become swap-backed again
    and stay. A full swap area leaves the rest resident, no error.

    Each folio goes through the swap cache (shrink_folio_list): a new
    slot, held by the cache (add_to_swap), the PTE made a swap entry
    (try_to_unmap), the folio written and, written back, left in the
    cache unmapped (6.18: SwapCached grew by what went out, MemFree did
    not). A folio the cache holds already (a read fault brought it back)
    keeps its slot: written again if the PTE made it dirty (it stays
    cached), freed at once without I/O if clean (6.18: pswpout 0 and
    SwapCached down by the range)."""
    mem, swap, sc = mm.mem, mm.mem.swap, mm.mem.swap_cache
    out = 0
    for v in mm.vmas.overlapping(start, end):
        if v.flags & VM_MAYSHARE or v.special is not None or v.is_hugetlb:
            continue
        lo, hi = max(start, v.start), min(end, v.end)
        for idx in mm.pgtable.huge_in(lo, hi):
            head = huge_memory.huge_head(mm, idx)
            if mem.large_mapcount[head] == 1:
                huge_memory.split_huge_pmd(mm, idx)
                mem.split_folio(head)
        for _, sl in mm.pgtable.spans(lo, hi):
            pres = np.nonzero(sl & PTE_PRESENT)[0]
            if not len(pres):
                continue
            pfns = pte_pfn(sl[pres])
            anon = (pfns != ZERO_PFN) & ((mem.flags[pfns] & M.PG_ANON) != 0)
            heads, order = mem.folio_head(pfns)
            for h in np.unique(heads[anon & (order > 0)]).tolist():
                if not mem.maybe_mapped_shared(np.array([h], np.int64))[0]:
                    mem.split_folio(h)
            fl = mem.flags[pfns]
            cand = anon & (mem.order[pfns] == 0) & (mem.mapcount[pfns] == 1)
            lazy = cand & ((fl & M.PG_SWAPBACKED) == 0)
            if lazy.any():
                dirty = ((sl[pres] & PTE_DIRTY) != 0) | ((fl & M.PG_DIRTY) != 0)
                mem.flags[pfns[lazy & dirty]] |= np.uint32(M.PG_SWAPBACKED)
                drop = lazy & ~dirty
                sl[pres[drop]] = 0
                mem.unmap_pages(pfns[drop], mm.mm_id)
                mm.rss.add(MM_ANONPAGES, -int(drop.sum()))
                cand &= ~lazy
            incache = cand & sc.cached(pfns)
            ci = np.nonzero(cand & ~incache)[0]
            slots = swap.alloc(len(ci))
            ci = ci[: len(slots)]
            sc.add(slots, pfns[ci])
            if mem.memcg is not None:  # mem_cgroup_swapout(): the slot takes the page's charge
                swap.memcg[slots] = mem.memcg[pfns[ci]]
            hi = np.nonzero(incache)[0]
            ci = np.concatenate([hi, ci])
            if not len(ci):
                continue
            slots = np.concatenate([sc.slot[pfns[hi]].astype(np.int64), slots])
            p, old = pfns[ci], sl[pres[ci]]
            dirty = ((old & PTE_DIRTY) != 0) | ((mem.flags[p] & M.PG_DIRTY) != 0) | ~incache[ci]
            sl[pres[ci]] = swp_entry_pte(slots, (old & PTE_SOFT_DIRTY) != 0)
            swap.duplicate(slots)
            mem.unmap_pages(p, mm.mm_id)
            mm.rss.add(MM_ANONPAGES, -len(ci))
            mm.rss.add(MM_SWAPENTS, len(ci))
            # dirty ones are written and, written back, stay cached clean;
            # clean ones (cached already, unchanged since) are freed at once
            mem.flags[p] &= ~np.uint32(M.PG_DIRTY)
            swap.pswpout += int(dirty.sum())
            mem.vm_events.count("nr_vmscan_write", int(dirty.sum()))  # pageout()'s writeout(): NR_VMSCAN_WRITE
            order = np.argsort(slots[dirty])  # swap_writepage: a bio a page, charged to the page's memcg
            owners = mem.memcg[p[dirty]][order] if mem.memcg is not None else None
            submit_pages(mem, SWAP_DEV, STAT_WRITE, slots[dirty][order], bio_pages=1, memcg=owners)
            clean = p[~dirty]
            if len(clean) and mem.workingset is not None:  # __remove_mapping(): shadows in the slots
                shadows = mem.workingset.eviction(None, clean)
                cslots = sc.slot[clean].astype(np.int64)
                sc.delete(clean)
                mem.free(clean)
                sc.store_shadows(cslots, shadows)
            else:
                sc.delete(clean)
                mem.free(clean)
            out += len(ci)
    return out

