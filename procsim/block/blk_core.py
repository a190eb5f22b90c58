"""The machine's block layer (block/blk-core.c, blk-mq.c, blk-merge.c as far
as the counters go): the disks in registration order, the bios the memory
model submits and what they count.

submit_bio() counts pgpgin/pgpgout (kB here) for every read/write, as
6.18's submit_bio() counts PGPGIN/PGPGOUT for every bio, so vmstat's
pgpgin + pgpgout are the sectors all disks read and wrote, halved.

A run of contiguous pages is submitted as bios of at most BIO_MAX_VECS
pages (readahead and writeback build such bios; a swap-out or swap-in
submits one bio per page), which the queue merges into requests of up to
max_sectors_kb: merges are the bios that joined a request another bio
started.

The service-time model, per disk: one server, requests served first in,
first out. A request of n sectors takes latency_ns + n*512/bandwidth; it
starts when it is issued or when the disk is done with the ones before it
(busy_until), whichever is later. A request counts (ios, sectors, and its
ticks, the ms fields of diskstats: the time from issue to completion,
queueing included) once it is complete, as blk_account_io_done counts it;
until then it is in flight (diskstats field 9, /sys/block/DEV/inflight).
io_ticks is the time the disk was busy up to the reader's instant: the
requests' service intervals never overlap, so a burst issued at one
instant keeps the disk busy for its whole length and iostat's %util stays
at most 100. The memory model's counters (pgpgin, read_bytes, pswpin) move
when the bios are submitted, so they lead the disks' by the requests in
flight, as on Linux. Merges count when the bios are merged (at issue).

Every bio is charged to a cgroup when it is submitted (blk_cgroup_bio_start,
procsim/cgroup/io.py: io.stat), when the machine has an io controller
(`blkcg`): its bytes once and an I/O for each piece max_sectors_kb split
it into; a cache flush is a write bio of no bytes.

A file's I/O goes to the disk its inode's device names (the device of the
mount the file is on); files on anonymous devices (major 0, such as the
default machine's /tmp, which the model keeps on disk) and unknown
devices go to the root filesystem's disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from procsim.block.genhd import (SECTOR_SHIFT, STAT_DISCARD, STAT_FLUSH, STAT_READ, STAT_WRITE, BlockDevice,
                                 DiskStats, Gendisk, make_disk)
from procsim.units import NSEC, PAGE_SHIFT

BIO_MAX_VECS = 256                 # pages in one bio
PAGE_SECTORS = 1 << (PAGE_SHIFT - SECTOR_SHIFT)
JBD2_COMMIT_NS = 5 * NSEC          # ext4's commit=5: the journal of the root filesystem

SWAP_DEV = (-1, -1)                # "the swap area": submit_pages resolves it to the swap's device


def page_runs(idx: np.ndarray) -> np.ndarray:
    """The lengths of the runs of consecutive values in sorted `idx`."""
    if not len(idx):
        return np.zeros(0, np.int64)
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    edges = np.concatenate([[0], cuts, [len(idx)]])
    return np.diff(edges)


class BlockState:
    """The disks (in the order they were registered: diskstats and
    /proc/partitions order), their block devices by dev_t, the root
    filesystem's and the swap area's device."""

    def __init__(self, disks: list[Gendisk], root: tuple[int, int], clock) -> None:
        self.disks = disks
        self.bdevs: dict[tuple[int, int], BlockDevice] = {}
        self.by_name: dict[str, BlockDevice] = {}
        for d in disks:
            for p in d.parts:
                self.bdevs[p.dev] = p
                self.by_name[p.name] = p
        self.root = self.bdevs[root]
        self.journal = True          # the root filesystem's journal commits (journal_stats)
        self.swap = None             # procsim/block/swapfile.py SwapArea, when there is swap
        self.clock = clock           # () -> ns since boot
        self.when: int | None = None  # the instant I/O is issued at, when not now (the flusher's wake-ups,
                                      # a workload's calls within the span the clock is crossing)
        self.b_dirty: dict[int, tuple[object, int]] = {}  # id(inode) -> (inode, dirtied_when): wb->b_dirty
        self.nr_writeback_runs = 0   # flusher wake-ups so far (the dirty_writeback_centisecs period)
        self.blkcg = None            # procsim/cgroup/io.py BlkcgState: charges each bio to its cgroup
        self.wait_until: int | None = None  # a task waiting on its file reads: when the last completes
        self.last_done = 0           # when the last request served completes
        self.throttled_until: int | None = None  # when the last bio io.max held back completes

    @classmethod
    def default(cls, clock) -> "BlockState":
        """The reference VM's one disk: a 256 GiB virtio disk, vda, the root filesystem."""
        return cls([make_disk("vda", 256 << 30, 0, read_ahead_kb=8192)], (254, 0), clock)

    def issue_time(self) -> int:
        """The instant the I/O being issued happens at (ns since boot)."""
        return self.clock() if self.when is None else self.when

    def bdev_of(self, dev: tuple[int, int]) -> BlockDevice:
        if dev == SWAP_DEV and self.swap is not None:
            return self.swap.bdev
        return self.bdevs.get(dev, self.root)

    # -- submission --------------------------------------------------------------

    def submit(self, bdev: BlockDevice, op: int, runs: np.ndarray, bio_pages: int = BIO_MAX_VECS,
               memcg: int | None = None) -> None:
        """Bios for runs of `runs` contiguous pages each (bio_pages per bio
        at most), merged into requests and served (the module docstring);
        charged to the blkcg of page owner `memcg`, else the submitter's."""
        if not len(runs):
            return
        disk = bdev.disk
        q = disk.queue
        max_pages = max(1, (q.max_sectors_kb << 10) >> PAGE_SHIFT)
        bios = int((-(-runs // bio_pages)).sum())
        if self.blkcg is not None:
            # each bio split at max_pages: full bios of bio_pages, then the rest of each run
            full, rest = runs // bio_pages, runs % bio_pages
            pieces = int((full * -(-bio_pages // max_pages) + -(-rest // max_pages)).sum())
            self.blkcg.bio_start(disk, op, int(runs.sum()) << PAGE_SHIFT, pieces, memcg)
            # blk-throttle (procsim/cgroup/blk_throttle.py): io.max holds the bios back until then
            go = self.blkcg.throttle(disk, op, int(runs.sum()) << PAGE_SHIFT, pieces, memcg, self.issue_time())
        else:
            go = self.issue_time()
        req_sizes = np.concatenate([np.minimum(max_pages, r - np.arange(0, r, max_pages)) for r in runs.tolist()])
        requests = len(req_sizes)
        merges = max(0, bios - requests)
        sectors = int(runs.sum()) * PAGE_SECTORS
        held, when = go > self.issue_time(), self.when
        if held:
            self.when = go
        try:
            self._serve(bdev, op, (req_sizes * PAGE_SECTORS).tolist(), merges, sectors)
        finally:
            self.when = when
        if held:  # the submitter waits for its throttled bios (a reader, synchronously)
            self.throttled_until = max(self.throttled_until or 0, self.last_done)

    def _serve(self, bdev: BlockDevice, op: int, req_sectors: list[int], merges: int, sectors: int) -> None:
        disk = bdev.disk
        q = disk.queue
        now = self.issue_time()
        t = max(now, disk.busy_until)
        busy = wait = 0
        targets = (bdev, disk.part0) if bdev.is_partition else (bdev,)  # part_stat_add: the disk counts it too
        for b in targets:
            if b.pending and b.pending[0][0] <= now:
                b.pending = [r for r in b.pending if r[0] > now]
        for n in req_sectors:
            svc = q.service_ns(n)
            t += svc
            busy += svc
            wait += t - now
            for b in targets:
                b.pending.append((t, op, n, t - now, svc))
        disk.busy_until = self.last_done = t
        for b in targets:
            b.stats.add(op, len(req_sectors), merges, sectors, wait, busy)

    def flush(self, bdev: BlockDevice) -> None:
        """An empty REQ_PREFLUSH (blkdev_issue_flush): a flush on a disk
        with a volatile write cache; nothing on a write-through one."""
        if bdev.disk.queue.write_cache == "write back":
            if self.blkcg is not None:  # REQ_OP_WRITE | REQ_PREFLUSH: a write bio to blk-cgroup
                self.blkcg.bio_start(bdev.disk, STAT_WRITE, 0, 1)
            self._serve(bdev, STAT_FLUSH, [0], 0, 0)

    def discard(self, bdev: BlockDevice, nr_sectors: int) -> None:
        """REQ_OP_DISCARD of `nr_sectors`, split at discard_max_bytes."""
        q = bdev.disk.queue
        if nr_sectors <= 0 or not q.discard_max_bytes:
            return
        step = q.discard_max_bytes >> SECTOR_SHIFT
        reqs = [min(step, nr_sectors - s) for s in range(0, nr_sectors, step)]
        self._serve(bdev, STAT_DISCARD, reqs, 0, nr_sectors)

    # -- reading the counters ----------------------------------------------------------

    def stats(self, bdev: BlockDevice, now: int) -> DiskStats:
        """part_stat_read_all(): the counters, with the root filesystem's
        journal commits (a pure function of the clock, like the pgpgout
        trickle they are: procsim/mm/vmstat.py) on its device and disk."""
        s = bdev.stats
        live = [r for r in bdev.pending if r[0] > now]
        if live:  # in flight at `now`: not counted yet, and their service is still to come
            s = s.plus(DiskStats())
            for done, op, n, lat, svc in live:
                s.add(op, -1, 0, -n, -lat, -min(svc, done - now))
        if self.journal and (bdev is self.root or bdev is self.root.disk.part0):
            s = s.plus(journal_stats(self.root.disk, now))
        return s

    def in_flight(self, bdev: BlockDevice, now: int) -> tuple[int, int]:
        """blk_mq_in_flight_rw(): requests issued and not complete at `now`,
        reads and writes (discards and flushes are writes)."""
        ops = [r[1] for r in bdev.pending if r[0] > now]
        reads = ops.count(STAT_READ)
        return reads, len(ops) - reads


def journal_stats(disk: Gendisk, now: int) -> DiskStats:
    """The journal of an idle ext4 root: a commit every JBD2_COMMIT_NS,
    each a write of the trickle's kB since the last one and a cache flush
    (jbd2's REQ_PREFLUSH); the sectors are pgpgout_kb(now) * 2 exactly."""
    from procsim.mm.vmstat import pgpgout_kb
    commits = now // JBD2_COMMIT_NS
    sectors = pgpgout_kb(now) * 2
    q = disk.queue
    svc = q.service_ns(max(sectors // max(commits, 1), 1))
    s = DiskStats()
    s.add(STAT_WRITE, commits, 0, sectors, commits * svc, commits * svc)
    if q.write_cache == "write back":
        s.add(STAT_FLUSH, commits, 0, 0, commits * q.latency_ns, commits * q.latency_ns)
    return s


def submit_pages(mem, dev: tuple[int, int], op: int, idx: np.ndarray, bio_pages: int = BIO_MAX_VECS,
                 memcg: "np.ndarray | int | None" = None) -> None:
    """submit_bio() of the pages at sorted indices `idx` (file page offsets
    or swap slots) to device `dev`: pgpgin or pgpgout, then the disk's
    counters (when the machine has a block layer: a bare MemMap has none).
    `memcg`: the pages' owner (one id, or one per page) whose blkcg the
    bios are charged to, else the submitting task's; bios of different
    owners are not merged (blk_cgroup_mergeable)."""
    n = len(idx)
    if not n:
        return
    kb = n << (PAGE_SHIFT - 10)
    if op == STAT_READ:
        mem.vm_events.pgpgin += kb
    else:
        mem.vm_events.pgpgout += kb
    blk = getattr(mem, "block", None)
    if blk is None:
        return
    idx = np.asarray(idx)
    if memcg is None or np.ndim(memcg) == 0:
        blk.submit(blk.bdev_of(dev), op, page_runs(idx), bio_pages, None if memcg is None else int(memcg))
        _sync_read_done(blk, dev, op)
        return
    memcg = np.asarray(memcg)
    for m in np.unique(memcg).tolist():
        blk.submit(blk.bdev_of(dev), op, page_runs(idx[memcg == m]), bio_pages, m)
        _sync_read_done(blk, dev, op)


def _sync_read_done(blk: BlockState, dev: tuple[int, int], op: int) -> None:
    if op == STAT_READ and dev != SWAP_DEV and blk.wait_until is not None:
        blk.wait_until = max(blk.wait_until, blk.last_done)


@contextmanager
def waiting_reads(blk: "BlockState | None") -> Iterator[list[int]]:
    """[ns]: how long the task doing the work inside waits for the file
    reads it submits, as the disks serve them (from issue to the last one's
    completion, queueing included): a reader sleeps in D on the locked
    folio until its bio completes (folio_wait_bit, io_schedule), which PSI
    counts as iowait. Swap-ins are the memory model's stall (not here)."""
    out = [0]
    if blk is None:
        yield out
        return
    prev, start = blk.wait_until, blk.issue_time()
    blk.wait_until = start
    try:
        yield out
    finally:
        out[0] = blk.wait_until - start
        blk.wait_until = prev if prev is None else max(prev, blk.wait_until)


__all__ = ["STAT_READ", "STAT_WRITE", "STAT_DISCARD", "STAT_FLUSH", "BlockState", "SWAP_DEV", "submit_pages",
           "page_runs", "waiting_reads"]
