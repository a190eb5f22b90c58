"""Writeback of dirty page cache (fs/fs-writeback.c, mm/page-writeback.c).

Inodes join their writeback list (b_dirty, in dirtied_when order) when
they first get dirty pages (procsim/mm/filemap.py inode_dirtied). They are
written:
  - by the flusher, which wakes every dirty_writeback_centisecs (5 s) and
    writes the inodes dirtied more than dirty_expire_centisecs (30 s) ago
    (wb_kupdate), at the instant it wakes;
  - by sync(2): every dirty inode, then a cache flush on every disk with
    a volatile write cache that holds a mounted filesystem;
  - by fsync(2) of one file: its dirty pages and one flush on its disk;
  - by reclaim that met only dirty page cache (wakeup_flusher_threads):
    every dirty inode, at that instant.
A written folio reclaim marked PG_reclaim rotates to the inactive list as
its writeback ends (folio_rotate_reclaimable: pgrotated).
Writing an inode writes its dirty pages (runs of contiguous pages as bios,
procsim/block/blk_core.py), clears their dirty bit, and counts them in
nr_written and pgpgout; NR_FILE_DIRTY drops by as many (meminfo Dirty).
Its bios are charged to the cgroup that dirtied it (procsim/cgroup/io.py).
(The background threshold, dirty_background_ratio, is not modelled: a
machine writes more than its dirty limit only as fast as the flusher
expires it. A page mapped shared and written back keeps its writable PTE:
folio_mkclean is not modelled.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from procsim.block.blk_core import STAT_WRITE, submit_pages
from procsim.mm import lru
from procsim.mm import page_alloc as M
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.mm.vma import File

DIRTY_WRITEBACK_NS = 5 * NSEC   # vm.dirty_writeback_centisecs = 500
DIRTY_EXPIRE_NS = 30 * NSEC     # vm.dirty_expire_centisecs = 3000


def writeback_inode(mem: M.MemMap, f: "File") -> int:
    """Write `f`'s dirty pages; the pages written."""
    blk = mem.block
    if blk is not None:
        blk.b_dirty.pop(id(f), None)
    n = min(len(f.cache), f.npages) if not f.shmem else 0
    if not n:
        return 0
    pfns = f.cache[:n]
    has = pfns != 0
    dirty = has.copy()
    dirty[has] = (mem.flags[pfns[has]] & (M.PG_DIRTY | M.PG_FILE)) == (M.PG_DIRTY | M.PG_FILE)
    idx = np.flatnonzero(dirty)
    if not len(idx):
        return 0
    mem.flags[pfns[idx]] &= ~np.uint32(M.PG_DIRTY)
    mem.nr_file_dirty -= len(idx)
    # folio_end_writeback(): a folio reclaim wanted gone rotates to the inactive list
    lru.rotate_reclaimable(mem, pfns[idx])
    mem.nr_written += len(idx)
    # the inode's wb: the memcg that dirtied it (inode_attach_wb), its first dirty page's
    owner = int(mem.memcg[pfns[idx[0]]]) if mem.memcg is not None else None
    submit_pages(mem, f.dev, STAT_WRITE, idx, memcg=owner)
    return len(idx)


def wb_tick(k: "Kernel", t0: int, t1: int) -> None:
    """The flusher's wake-ups in (t0, t1]: each writes the inodes expired by then."""
    blk = k.block
    while blk.b_dirty:
        f, when = next(iter(blk.b_dirty.values()))
        wake = -(-(when + DIRTY_EXPIRE_NS) // DIRTY_WRITEBACK_NS) * DIRTY_WRITEBACK_NS
        wake = max(wake, (t0 // DIRTY_WRITEBACK_NS + 1) * DIRTY_WRITEBACK_NS)
        if wake > t1:
            return
        blk.when = wake
        try:
            for f, dirtied in list(blk.b_dirty.values()):
                if dirtied + DIRTY_EXPIRE_NS > wake:
                    break
                writeback_inode(k.mem, f)
        finally:
            blk.when = None
        blk.nr_writeback_runs += 1


def wakeup_flusher_threads(k: "Kernel") -> int:
    """wakeup_flusher_threads(WB_REASON_VMSCAN): reclaim found only dirty
    page cache; the flusher writes every dirty inode (wb_start_writeback:
    all dirty pages, WB_SYNC_NONE, no cache flush), at once here. The pages
    written."""
    n = 0
    for f, _ in list(k.block.b_dirty.values()):
        n += writeback_inode(k.mem, f)
    return n


def sync(k: "Kernel") -> int:
    """sync(2): every dirty inode written, then a flush on each disk with a
    mounted filesystem (sync_fs -> blkdev_issue_flush). The pages written."""
    n = 0
    blk = k.block
    for f, _ in list(blk.b_dirty.values()):
        n += writeback_inode(k.mem, f)
    for bdev in mounted_bdevs(k):
        blk.flush(bdev)
    return n


def fsync(k: "Kernel", f: "File") -> int:
    """fsync(2) of inode `f`: its dirty pages, then a flush on its disk."""
    n = writeback_inode(k.mem, f)
    k.block.flush(k.block.bdev_of(f.dev))
    return n


def mounted_bdevs(k: "Kernel") -> list:
    """The block devices the initial namespace's mounts are on, once each."""
    seen: dict[int, object] = {}
    for m in k.mnt_ns_table(k.init_ns["mnt"]).mounts:
        b = k.block.bdevs.get(m.dev)
        if b is not None:
            seen.setdefault(id(b), b)
    return list(seen.values())
