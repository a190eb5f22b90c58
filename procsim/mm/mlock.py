"""mlock(2), mlock2(MLOCK_ONFAULT), munlock (mm/mlock.c): VM_LOCKED and
VM_LOCKONFAULT on the VMAs of the range, then population (mm/memory.py)."""

from __future__ import annotations

import numpy as np

from procsim.mm import memory
from procsim.mm.mm import MM, VM_SPECIAL
from procsim.mm.mmap import isolate, vma_merge
from procsim.mm.mmap_lock import vma_start_write, write_locked
from procsim.mm.vma import VM_LOCKED, VM_LOCKONFAULT


@write_locked
def do_mlock(mm: MM, start: int, end: int, on: bool, onfault: bool = False,
         special_pages: np.ndarray | None = None) -> int:
    """mlock/mlock2/munlock; returns the faults taken populating."""
    # apply_vma_lock_flags(): the new lock bits replace the old ones (mlock
    # after mlock2(ONFAULT) drops lf)
    bits = (VM_LOCKED | (VM_LOCKONFAULT if onfault else 0)) if on else 0
    mask = VM_LOCKED | VM_LOCKONFAULT
    # mlock_fixup() leaves VM_SPECIAL VMAs (vvar, vdso) and unchanged ones
    # alone: no flag, no split
    ranges = [(max(start, v.start), min(end, v.end)) for v in mm.vmas.overlapping(start, end)
              if not v.flags & VM_SPECIAL and v.flags & mask != bits]
    vmas = [v for lo, hi in ranges for v in isolate(mm, lo, hi)]
    for v in vmas:
        mm.vm_stat_account(v, -1)
        vma_start_write(mm.mmap_lock, v)
        v.flags = (v.flags & ~mask) | bits
        mm.vm_stat_account(v, +1)
    for v in vmas:
        if v in mm.vmas._v:
            vma_merge(mm, v)
    if on and not onfault:
        return memory.populate(mm, start, end, special_pages)
    return 0
