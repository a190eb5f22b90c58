"""The block layer's files: /proc/diskstats (diskstats_show), /proc/partitions
(show_partition), /proc/swaps (swap_show), /proc/filesystems, and
/sys/block/DEV with its partitions and queue/ (block/genhd.c, block/partitions/core.c,
block/blk-sysfs.c), from procsim/block/."""

from __future__ import annotations

import errno

from procsim.block.genhd import STAT_DISCARD, STAT_FLUSH, STAT_READ, STAT_WRITE, BlockDevice, DiskStats
from procsim.block.swapfile import SWAPS_HEADER, swap_show
from procsim.block.syscalls import set_queue_attr
from procsim.errors import KernelError
from procsim.kernel import Kernel
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import Dir, DynDir, Link, Node, Show

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

_RO = dict(write_open_errno=errno.EACCES)


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


def _attr(fname: str, name: str, fn) -> Show:
    return Show(fname, lambda ctx: (str(fn(_bdev(ctx, name))) + "\n").encode(), **_RO)


def _common(name: str) -> list:
    return [_attr("alignment_offset", name, lambda b: 0), _attr("dev", name, lambda b: f"{b.dev[0]}:{b.dev[1]}"),
            _attr("discard_alignment", name, lambda b: 0),
            Show("inflight", lambda ctx: inflight_show(ctx, name), **_RO)]


def _scheduler_show(b: BlockDevice) -> str:
    return " ".join(b.disk.queue.scheduler) + " "


def _queue_write(name: str, attr: str):
    def write(ctx: Ctx, data: bytes) -> int:
        try:
            set_queue_attr(ctx.kernel, name, attr, data.decode(errors="replace").strip())
        except KernelError as e:
            raise OSError(e.errno, e.strerror) from None
        return len(data)
    return write


# queue/ attributes: (name, value of the queue or a constant, writable)
_QUEUE_FIXED = {"add_random": 0, "atomic_write_boundary_bytes": 0, "atomic_write_max_bytes": 0,
                "atomic_write_unit_max_bytes": 0, "atomic_write_unit_min_bytes": 0, "chunk_sectors": 0, "dax": 0,
                "discard_zeroes_data": 0, "dma_alignment": 511, "fua": 0, "io_poll": 0, "io_poll_delay": -1,
                "iostats": 1, "iostats_passthrough": 0, "max_discard_segments": 1, "max_integrity_segments": 0,
                "max_segment_size": 4294967295, "max_segments": 254, "max_write_streams": 0, "nomerges": 0,
                "nr_zones": 0, "optimal_io_size": 0, "rq_affinity": 1, "stable_writes": 0,
                "virt_boundary_mask": 0, "wbt_lat_usec": 75000, "write_same_max_bytes": 0,
                "write_stream_granularity": 0, "write_zeroes_max_bytes": 0, "write_zeroes_unmap_max_bytes": 0,
                "write_zeroes_unmap_max_hw_bytes": 0, "zone_append_max_bytes": 0, "zone_write_granularity": 0,
                "zoned": "none"}
_QUEUE_DYN = {"discard_granularity": lambda q: q.discard_granularity,
              "discard_max_bytes": lambda q: q.discard_max_bytes,
              "discard_max_hw_bytes": lambda q: q.discard_max_bytes,
              "hw_sector_size": lambda q: q.logical_block_size,
              "logical_block_size": lambda q: q.logical_block_size,
              "max_hw_sectors_kb": lambda q: q.max_hw_sectors_kb, "max_sectors_kb": lambda q: q.max_sectors_kb,
              "minimum_io_size": lambda q: q.physical_block_size, "nr_requests": lambda q: q.nr_requests,
              "physical_block_size": lambda q: q.physical_block_size, "read_ahead_kb": lambda q: q.read_ahead_kb,
              "rotational": lambda q: q.rotational, "write_cache": lambda q: q.write_cache}
_QUEUE_WRITABLE = ("nr_requests", "read_ahead_kb", "rotational", "scheduler")
_MQ_ONLY = ("nr_requests", "rq_affinity", "scheduler", "wbt_lat_usec")


def _queue_dir(name: str, mq: bool) -> Dir:
    rows = []
    names = sorted(set(_QUEUE_FIXED) | set(_QUEUE_DYN) | {"scheduler"})
    for a in names:
        if a in _MQ_ONLY and not mq:
            continue
        if a == "scheduler":
            fn = _scheduler_show
        elif a in _QUEUE_DYN:
            fn = (lambda g: lambda b: g(b.disk.queue))(_QUEUE_DYN[a])
        else:
            fn = (lambda v: lambda b: v)(_QUEUE_FIXED[a])
        if a in _QUEUE_WRITABLE:
            render = _attr(a, name, fn).render
            rows.append(Show(a, render, 0o644, _queue_write(name, a)))
        else:
            rows.append(_attr(a, name, fn))
    return Dir("queue", tuple(rows), 0o755)


def _part_dir(name: str) -> Dir:
    rows = _common(name) + [_attr("partition", name, lambda b: b.partno), _attr("ro", name, lambda b: b.disk.ro),
                            _attr("size", name, lambda b: b.nr_sects), _attr("start", name, lambda b: b.start_sect),
                            Show("stat", lambda ctx: part_stat_show(ctx, name), **_RO),
                            _attr("uevent", name, lambda b: f"MAJOR={b.dev[0]}\nMINOR={b.dev[1]}\nDEVNAME={b.name}"
                                                            f"\nDEVTYPE=partition\nPARTN={b.partno}")]
    return Dir(name, tuple(sorted(rows, key=lambda e: e.name)), 0o755)


_DISK_DIRS: dict[tuple, Dir] = {}


def disk_dir(b: BlockDevice) -> Dir:
    """The directory of disk `b` (memoised by its shape: the rows only
    name the disk; renders find it in the kernel that asks)."""
    d = b.disk
    mq = d.disk_name[:4] != "zram"
    key = (d.disk_name, tuple(p.name for p in d.parts[1:]), mq)
    got = _DISK_DIRS.get(key)
    if got is not None:
        return got
    name = d.disk_name
    rows = _common(name) + [
        _attr("capability", name, lambda b: 0), _attr("diskseq", name, lambda b: b.disk.diskseq),
        _attr("events", name, lambda b: ""), _attr("events_async", name, lambda b: ""),
        _attr("events_poll_msecs", name, lambda b: -1),
        _attr("ext_range", name, lambda b: 1 if b.disk.minors == 1 else 256),
        _attr("hidden", name, lambda b: int(b.disk.hidden)),
        _attr("partscan", name, lambda b: int(b.disk.minors != 1)),
        _attr("range", name, lambda b: b.disk.minors), _attr("removable", name, lambda b: b.disk.removable),
        _attr("ro", name, lambda b: b.disk.ro), _attr("size", name, lambda b: b.nr_sects),
        Show("stat", lambda ctx: part_stat_show(ctx, name), **_RO),
        _attr("uevent", name, lambda b: f"MAJOR={b.dev[0]}\nMINOR={b.dev[1]}\nDEVNAME={b.name}\nDEVTYPE=disk"
                                        f"\nDISKSEQ={b.disk.diskseq}"),
        _queue_dir(name, mq), *(_part_dir(p.name) for p in d.parts[1:])]
    got = _DISK_DIRS[key] = Dir(name, tuple(sorted(rows, key=lambda e: e.name)), 0o755)
    return got


def _block_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    b = kernel.block.by_name.get(name)
    if b is None or b.is_partition:
        raise OSError(errno.ENOENT, name)
    return Node("dir", disk_dir(b)), False


def _block_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return sorted(d.disk_name for d in kernel.block.disks)


SYS_BLOCK = DynDir("block", (), 0o755, lookup=_block_lookup, readdir=_block_readdir)


# /sys/dev/block/MAJ:MIN: a link per block device to its directory (a disk's
# under /sys/block, a partition's inside its disk's)
_DEV_LINKS: dict[tuple[str, str], Link] = {}


def _dev_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    major, _, minor = name.partition(":")
    b = kernel.block.bdevs.get((int(major), int(minor))) if major.isdigit() and minor.isdigit() else None
    if b is None or f"{b.dev[0]}:{b.dev[1]}" != name:
        raise OSError(errno.ENOENT, name)
    target = f"../../block/{b.disk.disk_name}" + (f"/{b.name}" if b.is_partition else "")
    link = _DEV_LINKS.get((name, target))
    if link is None:
        link = _DEV_LINKS[(name, target)] = Link(name, lambda ctx, t=target: t)
    return link.node(parent, caller, kernel)


def _dev_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return [f"{b.dev[0]}:{b.dev[1]}" for d in kernel.block.disks for b in d.parts]


SYS_DEV_BLOCK = DynDir("block", (), 0o755, lookup=_dev_lookup, readdir=_dev_readdir)
