"""/sys/block, /sys/dev/block and /sys/class/block (block/genhd.c's
disk_attrs, block/partitions/core.c's part_attrs, block/blk-sysfs.c's
queue attributes, block/blk-mq-sysfs.c's mq/, block/holder.c's holders/
and slaves/), rendered from procsim/block/'s gendisks; writes go to
procsim/block/blk_sysfs.py's stores.

Layout: on Linux /sys/block/DEV is a symlink to the disk's device under
/sys/devices (../devices/pci0000:00/0000:00:02.0/virtio1/block/vda). Here
/sys/block/DEV is that directory itself, and /sys/dev/block/MAJ:MIN and
/sys/class/block/NAME link to it (a partition: its directory inside its
disk's), so `procsim run` can bind MNT/sys/block, dev/block and
class/block over the host's without the host's /sys/devices: every link
resolves inside what is bound. A tool that walks the device chain
(lsblk's HCTL, TRAN, SUBSYSTEMS, VENDOR, MODEL) finds no device/ link.
CONFIG_BLK_DEV_IO_TRACE's trace/ and the elevator's queue/iosched/ are
left out (a kernel without blktrace, an elevator without tunables shown).
"""

from __future__ import annotations

import errno

from procsim.block.genhd import DISK_MAX_PARTS, BlockDevice, bdev_read_only, get_disk_ro
from procsim.block.syscalls import sysfs_store
from procsim.errors import KernelError
from procsim.kernel import Kernel
from procsim.procfs.block import inflight_show, part_stat_show
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import Dir, DynDir, Link, Node, Show

_RO = dict(write_open_errno=errno.EACCES)


def _bdev(ctx: Ctx, name: str) -> BlockDevice:
    b = ctx.kernel.block.by_name.get(name)
    if b is None:
        raise OSError(errno.ENOENT, name)
    return b


def _attr(fname: str, name: str, fn) -> Show:
    return Show(fname, lambda ctx: (str(fn(_bdev(ctx, name))) + "\n").encode(), **_RO)


def _store(name: str, attr: str):
    """The write of attribute `attr` of block device `name`."""
    def write(ctx: Ctx, data: bytes) -> int:
        try:
            sysfs_store(ctx.kernel, name, attr, data)
        except KernelError as e:
            raise OSError(e.errno, e.strerror) from None
        return len(data)
    return write


def _rw(fname: str, name: str, fn, attr: str | None = None) -> Show:
    return Show(fname, _attr(fname, name, fn).render, 0o644, _store(name, attr or fname))


def _uevent(b: BlockDevice) -> str:
    """The uevent's environment (block/genhd.c's block_uevent, part_uevent)."""
    env = f"MAJOR={b.dev[0]}\nMINOR={b.dev[1]}\nDEVNAME={b.name}"
    if b.is_partition:
        return env + f"\nDEVTYPE=partition\nPARTN={b.partno}"
    return env + f"\nDEVTYPE=disk\nDISKSEQ={b.disk.diskseq}"


def _eio(ctx: Ctx) -> bytes:
    raise OSError(errno.EIO, "autosuspend_delay_ms: no autosuspend (use_autosuspend is off)")


def _power_dir(name: str) -> Dir:
    """power/ (drivers/base/power/sysfs.c): runtime PM is not in use on a
    block device, so its status is "unsupported" and the delay unreadable."""
    return Dir("power", (Show("autosuspend_delay_ms", _eio, 0o644, lambda ctx, data: _eio(ctx)),
                         _rw("control", name, lambda b: b.rpm_control, "power/control"),
                         Show("runtime_active_time", lambda ctx: b"0\n", **_RO),
                         Show("runtime_status", lambda ctx: b"unsupported\n", **_RO),
                         Show("runtime_suspended_time", lambda ctx: b"0\n", **_RO)), 0o755)


def _common(name: str) -> list:
    return [_attr("alignment_offset", name, lambda b: 0), _attr("dev", name, lambda b: f"{b.dev[0]}:{b.dev[1]}"),
            _attr("discard_alignment", name, lambda b: 0), Dir("holders", (), 0o755),
            Show("inflight", lambda ctx: inflight_show(ctx, name), **_RO), _power_dir(name),
            Show("stat", lambda ctx: part_stat_show(ctx, name), **_RO),
            _rw("uevent", name, _uevent)]


def _scheduler_show(b: BlockDevice) -> str:
    return " ".join(b.disk.queue.scheduler) + " "


# queue/ attributes: a constant, or a value of the request_queue
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
              "discard_max_hw_bytes": lambda q: q.discard_max_hw_bytes,
              "hw_sector_size": lambda q: q.logical_block_size,
              "logical_block_size": lambda q: q.logical_block_size,
              "max_hw_sectors_kb": lambda q: q.max_hw_sectors_kb, "max_sectors_kb": lambda q: q.max_sectors_kb,
              "minimum_io_size": lambda q: q.physical_block_size, "nr_requests": lambda q: q.nr_requests,
              "physical_block_size": lambda q: q.physical_block_size, "read_ahead_kb": lambda q: q.read_ahead_kb,
              "rotational": lambda q: q.rotational, "write_cache": lambda q: q.write_cache}
# the modes this host's 6.18 gives them: 0644 for those with a store (the
# stores the model has, procsim/block/blk_sysfs.py; the others' writes get EACCES... at open)
_QUEUE_WRITABLE = ("discard_max_bytes", "max_sectors_kb", "nr_requests", "read_ahead_kb", "rotational", "scheduler",
                   "write_cache")
_MQ_ONLY = ("nr_requests", "rq_affinity", "scheduler", "wbt_lat_usec")


def _queue_dir(name: str, mq: bool) -> Dir:
    rows = []
    for a in sorted(set(_QUEUE_FIXED) | set(_QUEUE_DYN) | {"scheduler"}):
        if a in _MQ_ONLY and not mq:
            continue
        if a == "scheduler":
            fn = _scheduler_show
        elif a in _QUEUE_DYN:
            fn = (lambda g: lambda b: g(b.disk.queue))(_QUEUE_DYN[a])
        else:
            fn = (lambda v: lambda b: v)(_QUEUE_FIXED[a])
        rows.append(_rw(a, name, fn, f"queue/{a}") if a in _QUEUE_WRITABLE else _attr(a, name, fn))
    return Dir("queue", tuple(rows), 0o755)


def _mq_dir(name: str, nr_cpus: int) -> Dir:
    """mq/0: the one hardware queue every CPU maps to (blk_mq_hw_sysfs)."""
    hctx = Dir("0", tuple(sorted([Dir(f"cpu{c}", (), 0o755) for c in range(nr_cpus)]
                                 + [Show("cpu_list", lambda ctx: (", ".join(map(str, range(nr_cpus))) + "\n").encode(),
                                         **_RO),
                                    _attr("nr_reserved_tags", name, lambda b: 0),
                                    _attr("nr_tags", name, lambda b: b.disk.queue.queue_depth)],
                                 key=lambda e: e.name)), 0o755)
    return Dir("mq", (hctx,), 0o755)


def _part_dir(name: str) -> Dir:
    rows = _common(name) + [_attr("partition", name, lambda b: b.partno),
                            _attr("ro", name, lambda b: int(bdev_read_only(b))),
                            _attr("size", name, lambda b: b.nr_sects), _attr("start", name, lambda b: b.start_sect),
                            Link("subsystem", lambda ctx: "../../../class/block")]
    return Dir(name, tuple(sorted(rows, key=lambda e: e.name)), 0o755)


def _events_show(name: str, async_: bool):
    """disk_events_show(): nothing at all for a disk without events (no
    newline either: the host's vda gives 0 bytes); the event names the disk
    raises. events_async: always empty (disk_events_async_show returns 0)."""
    def render(ctx: Ctx) -> bytes:
        d = _bdev(ctx, name).disk
        return b"media_change\n" if d.events and not async_ else b""
    return render


_DISK_DIRS: dict[tuple, Dir] = {}


def disk_dir(b: BlockDevice, nr_cpus: int) -> Dir:
    """The directory of disk `b` (memoised by its shape: the rows only
    name the disk; renders find it in the kernel that asks)."""
    d = b.disk
    mq = d.queue.mq
    virtio = d.disk_name.startswith("vd")
    key = (d.disk_name, tuple(p.name for p in d.parts[1:]), mq, nr_cpus, virtio)
    got = _DISK_DIRS.get(key)
    if got is not None:
        return got
    name = d.disk_name
    rows = _common(name) + [
        _attr("capability", name, lambda b: 0), _attr("diskseq", name, lambda b: b.disk.diskseq),
        Show("events", _events_show(name, False), **_RO), Show("events_async", _events_show(name, True), **_RO),
        _rw("events_poll_msecs", name, lambda b: b.disk.events_poll_msecs),
        _attr("ext_range", name, lambda b: 1 if b.disk.no_part else DISK_MAX_PARTS),
        _attr("hidden", name, lambda b: int(b.disk.hidden)),
        _attr("partscan", name, lambda b: int(b.disk.part_scan and not b.disk.no_part)),
        _attr("range", name, lambda b: b.disk.minors), _attr("removable", name, lambda b: b.disk.removable),
        _attr("ro", name, lambda b: int(get_disk_ro(b.disk))), _attr("size", name, lambda b: b.nr_sects),
        Dir("slaves", (), 0o755), Link("subsystem", lambda ctx: "../../class/block"),
        _queue_dir(name, mq), *(_part_dir(p.name) for p in d.parts[1:])]
    if mq:
        rows.append(_mq_dir(name, nr_cpus))
    if virtio:  # virtblk_attr_groups: the cache mode the device negotiated (read-only without CONFIG_WCE)
        rows.append(_attr("cache_type", name,
                          lambda b: "write back" if b.disk.queue.write_cache_feature else "write through"))
    got = _DISK_DIRS[key] = Dir(name, tuple(sorted(rows, key=lambda e: e.name)), 0o755)
    return got


def _block_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    b = kernel.block.by_name.get(name)
    if b is None or b.is_partition:
        raise OSError(errno.ENOENT, name)
    return Node("dir", disk_dir(b, kernel.config.nr_cpus)), False


def _block_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return sorted(d.disk_name for d in kernel.block.disks)


SYS_BLOCK = DynDir("block", (), 0o755, lookup=_block_lookup, readdir=_block_readdir)


def _target(b: BlockDevice, up: str) -> str:
    return f"{up}block/{b.disk.disk_name}" + (f"/{b.name}" if b.is_partition else "")


_LINKS: dict[tuple[str, str], Link] = {}


def _link(name: str, target: str, parent: Node, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    link = _LINKS.get((name, target))
    if link is None:
        link = _LINKS[(name, target)] = Link(name, lambda ctx, t=target: t)
    return link.node(parent, caller, kernel)


# /sys/dev/block/MAJ:MIN: a link per block device to its directory
def _dev_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    major, _, minor = name.partition(":")
    b = kernel.block.bdevs.get((int(major), int(minor))) if major.isdigit() and minor.isdigit() else None
    if b is None or f"{b.dev[0]}:{b.dev[1]}" != name:
        raise OSError(errno.ENOENT, name)
    return _link(name, _target(b, "../../"), parent, caller, kernel)


def _dev_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return [f"{b.dev[0]}:{b.dev[1]}" for d in kernel.block.disks for b in d.parts]


SYS_DEV_BLOCK = DynDir("block", (), 0o755, lookup=_dev_lookup, readdir=_dev_readdir)


# /sys/class/block/NAME: every disk and partition (block_class's devices)
def _class_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    b = kernel.block.by_name.get(name)
    if b is None:
        raise OSError(errno.ENOENT, name)
    return _link(name, _target(b, "../../"), parent, caller, kernel)


def _class_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return sorted(b.name for d in kernel.block.disks for b in d.parts)


SYS_CLASS_BLOCK = DynDir("block", (), 0o755, lookup=_class_lookup, readdir=_class_readdir)

