"""The LRU lists' active/inactive split (mm/swap.c, include/linux/mm_inline.h):
which frames are on an active list, kept as PG_ACTIVE and counted in
MemMap.nr_active (NR_ACTIVE_ANON, NR_ACTIVE_FILE), the inactive lists being
the rest of the evictable frames.

As on 6.18 without MGLRU: a new folio (anonymous or page cache) starts on
its inactive list (lru_cache_add; on the reference VM Active(anon) was
168 kB of 1.4 GB of anon), a page-cache folio read a second time moves to
the active list (filemap_read's folio_mark_accessed: PG_referenced, then
activation; a fault only sets PG_referenced),
reclaim activates referenced folios it scans (folio_check_references) and
ages the active lists into the inactive ones (shrink_active_list), and a
refault the workingset finds recent joins the active list at once
(procsim/mm/workingset.py). The
order within a list is the frame number (allocation is mostly in PFN
order); the kernel's list order is not modelled beyond that.

Anonymous, shmem and swap-cache frames are on the anon lists, page cache
on the file lists (folio_is_file_lru)."""

from __future__ import annotations

import numpy as np

from procsim.mm import page_alloc as M


def _memcg_count(mem: M.MemMap, name: str, pfns: np.ndarray) -> None:
    """count_memcg_folio_events(): the event in each frame's memcg too."""
    hook = mem.memcg_count
    if hook is not None and mem.memcg is not None:
        hook(name, mem.memcg[pfns])


def is_file_lru(fl: np.ndarray) -> np.ndarray:
    return (fl & M.PG_FILE) != 0


def activate(mem: M.MemMap, pfns: np.ndarray) -> int:
    """folio_activate(): inactive frames move to their active list (PG_ACTIVE,
    PG_referenced cleared). Returns how many moved (pgactivate)."""
    if not len(pfns):
        return 0
    fl = mem.flags[pfns]
    sel = pfns[((fl & M.PG_ACTIVE) == 0) & ((fl & M.PG_LRU) != 0)]
    if not len(sel):
        return 0
    nfile = int(np.count_nonzero(is_file_lru(mem.flags[sel])))
    mem.flags[sel] = (mem.flags[sel] | np.uint32(M.PG_ACTIVE)) & ~np.uint32(M.PG_REFERENCED)
    mem.nr_active["file"] += nfile
    mem.nr_active["anon"] += len(sel) - nfile
    mem.vm_events.pgactivate += len(sel)
    _memcg_count(mem, "pgactivate", sel)
    # workingset_activation(), move_folios_to_lru(): activations age the
    # lruvecs' nonresident_age as evictions do (procsim/mm/workingset.py)
    if mem.workingset is not None:
        mem.workingset.age_folios(sel)
    return len(sel)


def add_active(mem: M.MemMap, pfns: np.ndarray) -> None:
    """folio_set_active() of new folios before folio_add_lru() (a refault
    found recent): they join the active list, no pgactivate."""
    sel = pfns[(mem.flags[pfns] & M.PG_ACTIVE) == 0]
    if not len(sel):
        return
    nfile = int(np.count_nonzero(is_file_lru(mem.flags[sel])))
    mem.flags[sel] |= np.uint32(M.PG_ACTIVE)
    mem.nr_active["file"] += nfile
    mem.nr_active["anon"] += len(sel) - nfile


def deactivate(mem: M.MemMap, pfns: np.ndarray) -> int:
    """shrink_active_list()'s move to the inactive list (pgdeactivate)."""
    if not len(pfns):
        return 0
    sel = pfns[(mem.flags[pfns] & M.PG_ACTIVE) != 0]
    if not len(sel):
        return 0
    nfile = int(np.count_nonzero(is_file_lru(mem.flags[sel])))
    mem.flags[sel] &= ~np.uint32(M.PG_ACTIVE | M.PG_REFERENCED)
    mem.nr_active["file"] -= nfile
    mem.nr_active["anon"] -= len(sel) - nfile
    mem.vm_events.pgdeactivate += len(sel)
    _memcg_count(mem, "pgdeactivate", sel)
    return len(sel)


def mark_accessed(mem: M.MemMap, pfns: np.ndarray) -> None:
    """folio_mark_accessed() of page-cache frames (a read, a file fault):
    an unreferenced one becomes referenced, a referenced inactive one
    active; either way an idle period ends."""
    if not len(pfns):
        return
    fl = mem.flags[pfns]
    again = pfns[((fl & M.PG_REFERENCED) != 0) & ((fl & M.PG_ACTIVE) == 0)]
    mem.flags[pfns] = (fl | np.uint32(M.PG_REFERENCED)) & ~np.uint32(M.PG_IDLE)
    activate(mem, again)


def rotate_reclaimable(mem: M.MemMap, pfns: np.ndarray) -> int:
    """folio_end_writeback() of folios with PG_reclaim: the flag goes and
    each clean, evictable LRU folio moves to the tail of its inactive list
    (folio_rotate_reclaimable -> lru_move_tail: PG_active cleared,
    pgrotated), where reclaim frees it next. Returns how many rotated."""
    if not len(pfns):
        return 0
    pfns = pfns[(mem.flags[pfns] & M.PG_RECLAIM) != 0]
    if not len(pfns):
        return 0
    mem.flags[pfns] &= ~np.uint32(M.PG_RECLAIM)
    fl = mem.flags[pfns]
    ok = pfns[((fl & M.PG_LRU) != 0) & ((fl & (M.PG_DIRTY | M.PG_MLOCKED)) == 0)]
    act = ok[(mem.flags[ok] & M.PG_ACTIVE) != 0]
    if len(act):
        nfile = int(np.count_nonzero(is_file_lru(mem.flags[act])))
        mem.flags[act] &= ~np.uint32(M.PG_ACTIVE)
        mem.nr_active["file"] -= nfile
        mem.nr_active["anon"] -= len(act) - nfile
    mem.vm_events.count("pgrotated", len(ok))
    return len(ok)
