"""The address-space side of /proc/PID/clear_refs (fs/proc/task_mmu.c's
clear_refs_write); the write itself is parsed in procsim/procfs/clear_refs.py."""

from __future__ import annotations

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.mm import MM, ZERO_PFN
from procsim.mm.mmap_lock import vma_start_write, write_locked
from procsim.mm.pagetable import PTE_ACCESSED, PTE_RW, PTE_SOFT_DIRTY, pte_pfn, pte_present
from procsim.mm.vma import VM_MAYSHARE, VM_PFNMAP, VM_SOFTDIRTY


@write_locked
def clear_refs(mm: MM, value: int) -> None:
    """Write to /proc/PID/clear_refs (spec §11.2); value already checked 1..5."""
    if value == 5:
        mm.hiwater_rss = mm.rss_pages
        return
    mem = mm.mem
    for v in mm.vmas:
        if value == 4:
            vma_start_write(mm.mmap_lock, v)
            v.flags &= ~VM_SOFTDIRTY
            for _, sl in mm.pgtable.spans(v.start, v.end):
                # write-protect so that the next write faults and sets it
                # again (swap entries only lose the bit)
                had = (sl & PTE_SOFT_DIRTY) != 0
                sl[had & pte_present(sl)] &= ~(PTE_RW if not v.flags & VM_MAYSHARE else np.uint64(0))
                sl[had] &= ~PTE_SOFT_DIRTY
            continue
        if v.flags & VM_PFNMAP or (value == 2 and v.file is not None) or (value == 3 and v.file is None):
            continue
        for _, sl in mm.pgtable.spans(v.start, v.end):
            present = pte_present(sl)
            if not present.any():
                continue
            sl[present] &= ~PTE_ACCESSED
            pfns = pte_pfn(sl[present])
            mem.flags[pfns[pfns != ZERO_PFN]] &= ~np.uint32(M.PG_REFERENCED | M.PG_YOUNG)

