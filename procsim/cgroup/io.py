"""The io controller's statistics (block/blk-cgroup.c): io.stat.

Bios are charged when they are submitted (blk_cgroup_bio_start, called by
submit_bio_noacct_nocheck; procsim/block/blk_core.py calls bio_start) to
the blkcg the bio is associated with:
  - a task's own I/O (read(2), write(2)'s read-modify-write, page faults
    that read a file or swap, fsync's cache flush): the io css of the
    task's cgroup (bio_associate_blkg: blkcg_css() of current). The
    syscall paths mark the span with `issuing(k, t)`;
  - writeback: the cgroup that dirtied the inode. Linux v2 binds an inode
    to the wb of the memcg of the folio that first dirtied it
    (inode_attach_wb) and writeback bios carry that wb's blkcg; the model
    takes the memcg of the first dirty page written, and the io css of
    that memcg's cgroup (foreign-inode wb switching is not modelled);
  - swap-out: each page's memcg (bio_associate_blkg_from_page);
  - anything else (the flusher's wake-ups, sync(2) with no task, jbd2,
    discards at commit): the root, whose counters are the disks' own.
A bio counts its bytes once and one I/O for each piece the queue split it
into (BIO_CGROUP_ACCT); a cache flush is a write of no bytes.

The counters are per whole disk ("MAJ:MIN" of the gendisk, blkg_dev_name)
and summed up the tree at once (the rstat flush io.stat does on read gives
the same sums: a parent shows its descendants' I/O, and keeps it when they
are removed). The root cgroup's io.stat is filled from the disks' own
counters instead (blkcg_fill_root_iostats: completed I/Os and sectors from
diskstats, all of the machine's I/O).

Lines are the cgroup's blkgs, newest first (blkg_create adds at the head
of blkcg->blkg_list): a blkg exists from the first bio the cgroup or a
descendant sent to that disk; the root has one per disk from boot, in
reverse registration order. A blkg with no I/O prints its name alone
("MAJ:MIN \\n": blkcg_print_one_stat prints the counters only when one of
rbytes, wbytes, rios, wios is not zero).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from procsim.block.genhd import STAT_DISCARD, STAT_READ, STAT_WRITE

if TYPE_CHECKING:
    from procsim.block.genhd import Gendisk
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel
    from procsim.task import Task

FIELDS = ("rbytes", "wbytes", "rios", "wios", "dbytes", "dios")
BLKG_IOSTAT_READ, BLKG_IOSTAT_WRITE, BLKG_IOSTAT_DISCARD = 0, 1, 2


def disk_name(disk: "Gendisk") -> str:
    """blkg_dev_name(): the gendisk's dev_t as MAJ:MIN."""
    maj, mn = disk.part0.dev
    return f"{maj}:{mn}"


def io_type(op: int) -> int:
    """blk_cgroup_io_type(): discard, write (flushes too), or read."""
    if op == STAT_DISCARD:
        return BLKG_IOSTAT_DISCARD
    return BLKG_IOSTAT_READ if op == STAT_READ else BLKG_IOSTAT_WRITE


class BlkcgState:
    """Whose bios are being submitted, and the charging of them. The block
    layer calls bio_start for every bio it is handed (k.block.blkcg)."""

    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.current: "Cgroup | None" = None   # the io css bios are associated with now (None: the root)
        if k.block is not None:
            k.block.blkcg = self

    def blkcg_of_memcg(self, memcg_id: int) -> "Cgroup":
        """The io css of a memcg's cgroup (a page's owner: writeback, swap-out)."""
        m = self.k.memcg.by_id.get(int(memcg_id))
        if m is None:
            return self.k.cgroups.root
        return self.k.cgroups.css_of(m.cgroup.path, "io")

    def _blkcg(self, memcg_id: int | None) -> "Cgroup | None":
        return self.blkcg_of_memcg(memcg_id) if memcg_id is not None else self.current

    def throttle(self, disk: "Gendisk", op: int, nbytes: int, nios: int, memcg_id: int | None, at: int) -> int:
        """blk_throtl_bio(): the instant the bios may reach the disk (io.max)."""
        from procsim.cgroup import blk_throttle
        if op not in (STAT_READ, STAT_WRITE):
            return at  # discards and flushes are not throttled by bytes here
        rw = blk_throttle.READ if op == STAT_READ else blk_throttle.WRITE
        return blk_throttle.dispatch_at(self._blkcg(memcg_id), disk, rw, nbytes, nios, at)

    def bio_start(self, disk: "Gendisk", op: int, nbytes: int, nios: int, memcg_id: int | None = None) -> None:
        """blk_cgroup_bio_start() for `nios` bios (after splitting) of
        `nbytes` in all, associated with the page owner `memcg_id`'s blkcg
        when given, else with the current one."""
        cg = self._blkcg(memcg_id)
        if cg is None or cg.parent is None:
            return  # the root's io.stat is the disks' counters
        rwd = io_type(op)
        dev = disk_name(disk)
        for a in cg.ancestors():
            if a.parent is None:
                break
            st = a.io.get(dev)
            if st is None:
                st = a.io[dev] = [0] * len(FIELDS)
            st[rwd] += nbytes
            st[3 + rwd] += nios


@contextmanager
def issuing(k: "Kernel", t: "Task | None") -> Iterator[None]:
    """The bios submitted inside are `t`'s (its cgroup's io css)."""
    bs: BlkcgState | None = getattr(k, "blkcg", None)
    if bs is None:
        yield
        return
    prev = bs.current
    bs.current = k.cgroups.css_of(t.tg.cgroup, "io") if t is not None else None
    try:
        yield
    finally:
        bs.current = prev


def _line(dev: str, st: list[int]) -> str:
    if any(st[:4]):  # rbytes, wbytes, rios, wios
        return f"{dev} " + " ".join(f"{n}={v}" for n, v in zip(FIELDS, st)) + "\n"
    return f"{dev} \n"


def root_iostat(k: "Kernel", disk: "Gendisk") -> list[int]:
    """blkcg_fill_root_iostats(): a disk's diskstats as io.stat counters."""
    s = k.block.stats(disk.part0, k.now)
    return [s.sectors[STAT_READ] << 9, s.sectors[STAT_WRITE] << 9, s.sectors[STAT_DISCARD] << 9,
            s.ios[STAT_READ], s.ios[STAT_WRITE], s.ios[STAT_DISCARD]]


def io_stat(k: "Kernel", cg: "Cgroup") -> bytes:
    """blkcg_print_stat(): a line per blkg, newest first."""
    if cg.parent is None:
        if k.block is None:
            return b""
        rows = [(disk_name(d), root_iostat(k, d)) for d in reversed(k.block.disks)]
    else:
        rows = [(dev, st) for dev, st in reversed(list(cg.io.items()))]
    return "".join(_line(dev, _order(st)) for dev, st in rows).encode()


def _order(st: list[int]) -> list[int]:
    """[r, w, d bytes, r, w, d ios] -> the printed order rbytes wbytes rios wios dbytes dios."""
    return [st[0], st[1], st[3], st[4], st[2], st[5]]
