"""The page cache (mm/filemap.c), the one home of "the pages of a file
range": read(2), write(2) and file faults (mm/memory.py) look pages up by
index, read from disk on a miss (pgpgin and the reader's
read_bytes, as submit_bio counts them together), dirtied by writes
(write_bytes once per page that was clean, folio_account_dirtied).

Reads and writeback go to the file's disk through submit_pages
(procsim/block/blk_core.py); writeback itself is procsim/block/writeback.py,
which finds dirtied inodes on the b_dirty list inode_dirtied() keeps."""

from __future__ import annotations

import numpy as np

from procsim.block.blk_core import STAT_READ, submit_pages
from procsim.mm import page_alloc as M
from procsim.mm.rmap import set_file_rmap
from procsim.mm.vma import File
from procsim.units import PAGE_SHIFT, PAGE_SIZE


def pages_of(offset: int, count: int) -> np.ndarray:
    """The page indices of bytes [offset, offset + count)."""
    if count <= 0:
        return np.zeros(0, np.int64)
    return np.arange(offset >> PAGE_SHIFT, ((offset + count - 1) >> PAGE_SHIFT) + 1, dtype=np.int64)


def find_or_create(mem: M.MemMap, file: File, pgoffs: np.ndarray, read: np.ndarray | None = None,
                   write: bool = False) -> int:
    """The page-cache pages of `file` at `pgoffs`, allocated where absent
    (first: an allocation that fails changes nothing); those also in `read`
    (a mask, all of them when None) are read from disk. A slot that held a
    shadow entry is a refault (filemap_add_folio -> workingset_refault),
    unless the page is added for a write (__GFP_WRITE: it is about to be
    overwritten); the shadow goes either way. Returns the bytes read from
    disk."""
    if not len(pgoffs):
        return 0
    file.ensure(int(pgoffs.max()) + 1)
    absent = file.cache[pgoffs] == 0
    if not absent.any():
        return 0
    kind = M.PG_SHMEM | M.PG_LRU if file.shmem else M.PG_FILE | M.PG_LRU
    new = mem.alloc(int(absent.sum()), kind)
    at = pgoffs[absent]
    file.cache[at] = new
    set_file_rmap(mem, file, new, at)
    ws = mem.workingset
    if ws is not None and file.shadow is not None:
        shadows = ws.take_file(file, at)
        if not write:
            ws.refault(new, shadows, file=True)
        ws.update_nodes(file, at)
    if file.shmem:  # tmpfs pages start zeroed: no I/O
        return 0
    sel = absent if read is None else absent & read
    nread = int(sel.sum())
    submit_pages(mem, file.dev, STAT_READ, pgoffs[sel])
    return nread * PAGE_SIZE


def cache_pages(mem: M.MemMap, file: File, pgoffs: np.ndarray) -> tuple[np.ndarray, int]:
    """filemap_fault()'s lookup: the page-cache frames of `file` at `pgoffs`,
    read in (or, shmem, zero-filled) where absent (find_or_create), and how
    many pages had to be read from disk: those faults are major
    (VM_FAULT_MAJOR, pgmajfault)."""
    nread = find_or_create(mem, file, pgoffs) // PAGE_SIZE
    return file.cache[pgoffs], nread


def account_dirtied(mem: M.MemMap, pfns: np.ndarray) -> int:
    """folio_mark_dirty() of page-cache pages: the clean ones become dirty;
    those of files with writeback (not shmem) count in NR_FILE_DIRTY and
    NR_DIRTIED (folio_account_dirtied). Returns the bytes so accounted: the
    dirtier's write_bytes (a store through a shared mapping is charged by
    Kernel._charge_faults from the NR_DIRTIED it moved)."""
    if not len(pfns):
        return 0
    fl = mem.flags[pfns]
    clean = pfns[(fl & M.PG_DIRTY) == 0]
    mem.flags[clean] |= np.uint32(M.PG_DIRTY)
    n = int(np.count_nonzero(mem.flags[clean] & (M.PG_FILE | M.PG_SHMEM) == M.PG_FILE))
    mem.nr_file_dirty += n
    mem.nr_dirtied += n
    return n * PAGE_SIZE


def truncate_pages(mem: M.MemMap, file: File, first: int) -> int:
    """truncate_inode_pages_range() from page `first` on, once nothing maps
    those pages: they leave the page cache and are freed; dirty ones were
    never written back (folio_account_cleaned). Returns those bytes: the
    truncating task's cancelled_write_bytes."""
    if first >= len(file.cache):
        return 0
    tail = file.cache[first:]
    gone = np.flatnonzero(tail) + first
    pfns = tail[tail != 0]
    fl = mem.flags[pfns]
    cancelled = 0 if file.shmem else int(np.count_nonzero(fl & M.PG_DIRTY)) * PAGE_SIZE
    mem.free(pfns)
    tail[:] = 0
    if mem.workingset is not None:
        mem.workingset.clear_file(file, first)  # the range's shadow entries go too
        mem.workingset.update_nodes(file, gone)
    return cancelled


def mark_dirty(mem: M.MemMap, file: File, pgoffs: np.ndarray) -> int:
    """A write(2) dirties cached pages of `file`; returns the bytes newly dirtied."""
    if not len(pgoffs):
        return 0
    n = account_dirtied(mem, np.unique(file.cache[pgoffs]))
    if n:
        inode_dirtied(mem, file)
    return n


def inode_dirtied(mem: M.MemMap, file: File) -> None:
    """__mark_inode_dirty(): a file that gets dirty pages joins its
    writeback list (b_dirty) with dirtied_when now, unless it is on it."""
    blk = mem.block
    if blk is not None and not file.shmem and id(file) not in blk.b_dirty:
        blk.b_dirty[id(file)] = (file, blk.issue_time())
