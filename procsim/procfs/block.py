"""The block layer's files: /proc/diskstats (diskstats_show), /proc/partitions
(show_partition), /proc/swaps (swap_show), /proc/filesystems, and the
counters of /sys/block/DEV/stat and inflight (block/genhd.c), from
procsim/block/; the rest of /sys/block is procsim/procfs/sysfs_block.py."""

from __future__ import annotations

import errno

from procsim.block.genhd import STAT_DISCARD, STAT_FLUSH, STAT_READ, STAT_WRITE, BlockDevice, DiskStats
from procsim.block.swapfile import SWAPS_HEADER, swap_show
from procsim.kernel import Kernel
from procsim.procfs.context import Ctx

MS = 1_000_000


def _ms(ns: int) -> int:
    return (ns // MS) & 0xFFFFFFFF  # (unsigned int)div_u64(nsecs, NSEC_PER_MSEC)


def _fields(s: DiskStats, inflight: int) -> tuple:
    r, w, d, f = STAT_READ, STAT_WRITE, STAT_DISCARD, STAT_FLUSH
    return (s.ios[r], s.merges[r], s.sectors[r], _ms(s.nsecs[r]),
            s.ios[w], s.merges[w], s.sectors[w], _ms(s.nsecs[w]),
            inflight, _ms(s.io_ticks), _ms(s.nsecs[r] + s.nsecs[w] + s.nsecs[d] + s.nsecs[f]),
            s.ios[d], s.merges[d], s.sectors[d], _ms(s.nsecs[d]),
            s.ios[f], _ms(s.nsecs[f]))


def diskstats_lines(k: Kernel) -> list[str]:
    out = []
    blk = k.block
    for disk in blk.disks:
        for b in disk.parts:
            if b.is_partition and not b.nr_sects:
                continue
            out.append(f"{b.dev[0]:4d} {b.dev[1]:7d} {b.name} " + "%d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d"
                       % _fields(blk.stats(b, k.now), sum(blk.in_flight(b, k.now))) + "\n")
    return out


def diskstats(ctx: Ctx) -> bytes:
    return "".join(diskstats_lines(ctx.kernel)).encode()


def partitions(ctx: Ctx) -> bytes:
    out = ["major minor  #blocks  name\n\n"]
    for disk in ctx.kernel.block.disks:
        if not disk.capacity or disk.hidden:
            continue
        for b in disk.parts:
            if b.nr_sects:
                out.append(f"{b.dev[0]:4d}  {b.dev[1]:7d} {b.nr_sects >> 1:10d} {b.name}\n")
    return "".join(out).encode()


def swaps(ctx: Ctx) -> bytes:
    k = ctx.kernel
    area = k.block.swap
    body = swap_show(area, k.mem.swap) if area is not None and k.mem.swap.pages else ""
    return (SWAPS_HEADER + body).encode()


# register_filesystem() order of the reference kernel (this host's /proc/filesystems)
FILESYSTEMS = ("nodev\tsysfs", "nodev\ttmpfs", "nodev\tproc", "nodev\tcgroup", "nodev\tcgroup2", "nodev\tcpuset",
               "nodev\tdevtmpfs", "nodev\tbinfmt_misc", "nodev\tdebugfs", "nodev\ttracefs", "nodev\tsecurityfs",
               "nodev\tsockfs", "nodev\tbpf", "nodev\tpipefs", "nodev\tramfs", "nodev\thugetlbfs", "nodev\tdevpts",
               "\text3", "\text2", "\text4", "\tsquashfs", "\tfuseblk", "nodev\tfuse", "nodev\tfusectl",
               "nodev\toverlay", "\txfs", "\terofs", "nodev\tmqueue", "\tbtrfs", "nodev\tpstore")


def filesystems(ctx: Ctx) -> bytes:
    return "".join(line + "\n" for line in FILESYSTEMS).encode()


# -- /sys/block ---------------------------------------------------------------------

def _bdev(ctx: Ctx, name: str) -> BlockDevice:
    b = ctx.kernel.block.by_name.get(name)
    if b is None:
        raise OSError(errno.ENOENT, name)
    return b


def part_stat_show(ctx: Ctx, name: str) -> bytes:
    b = _bdev(ctx, name)
    k = ctx.kernel
    return (("%8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d %8d\n")
            % _fields(k.block.stats(b, k.now), sum(k.block.in_flight(b, k.now)))).encode()


def inflight_show(ctx: Ctx, name: str) -> bytes:
    """part_inflight_show(): "%8u %8u\n", reads and writes in flight."""
    k = ctx.kernel
    return b"%8d %8d\n" % k.block.in_flight(_bdev(ctx, name), k.now)
