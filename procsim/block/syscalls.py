"""The block layer's part of the kernel's API (module functions taking the
kernel): the boot-time disk table, a scenario's disks and the mounts on
them, sync(2), fsync(2), the discard a truncate issues, and the `disks`
view."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from procsim.block import blk_sysfs, writeback
from procsim.block.blk_core import BlockState
from procsim.block.genhd import (STAT_DISCARD, STAT_FLUSH, STAT_READ, STAT_WRITE, BlockDevice, Gendisk,
                                 bdev_read_only)
from procsim.block.swapfile import DEFAULT_PRIORITY, DEFAULT_SWAP_FILE, SwapArea
from procsim.cgroup import io as cgroup_io
from procsim.errors import KernelError
from procsim.fs.mount import Mount
from procsim.units import PAGE_SHIFT

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.mm.vma import File


def boot_block(k: "Kernel") -> BlockState:
    """The default machine's disks: vda, the root filesystem, with the swap
    area (if any) a swap file on it."""
    blk = BlockState.default(lambda: k.now)
    k.mem.block = blk
    blk.root.mount, blk.root.fstype = "/", "ext4"
    k.vfs.dev_of = lambda path: inode_dev(k, path)
    if k.mem.swap.pages:
        blk.swap = SwapArea(DEFAULT_SWAP_FILE, False, blk.root)
    return blk


def inode_dev(k: "Kernel", path: str) -> tuple[int, int]:
    """The device a new inode at `path` is on: that of the mount it is
    under when the mount is on a disk, else the root filesystem's (the
    model keeps files of nodev mounts such as tmpfs on the root disk)."""
    dev = k.mnt_ns_table(k.init_ns["mnt"]).lookup(path).dev
    return dev if dev in k.block.bdevs else k.vfs.root_dev


def install_disks(k: "Kernel", disks: list[Gendisk], root: str, mounts: list[tuple[str, str, str, str]],
                  swap: tuple[str, int] | None = None) -> BlockState:
    """A scenario's disks, before anything did I/O: `root` the block device
    (name) of the root filesystem, `mounts` (device, mountpoint, fstype,
    super options) the other filesystems on them, mounted in that order in
    the initial mount namespace; `swap` (device name or swap-file path,
    priority) where the swap area is (a file on the root filesystem by
    default). EINVAL for what names no device or fits nowhere."""
    names: dict[str, BlockDevice] = {}
    for d in disks:
        for p in d.parts:
            if p.name in names:
                raise KernelError(errno.EEXIST, f"disk {p.name}: named twice")
            names[p.name] = p
    devs = [p.dev for p in names.values()]
    if len(set(devs)) != len(devs):
        raise KernelError(errno.EEXIST, "two block devices with the same major:minor")
    if root not in names:
        raise KernelError(errno.ENODEV, f"root: no block device {root!r}")
    blk = BlockState(disks, names[root].dev, lambda: k.now)
    blk.blkcg = k.block.blkcg  # the io controller charges the new disks' bios as it did the old ones'
    ns = k.mnt_ns_table(k.init_ns["mnt"])
    rootm = ns.lookup("/")
    rootm.dev, rootm.source = names[root].dev, f"/dev/{root}"
    k.vfs.root_dev = names[root].dev
    names[root].mount, names[root].fstype = "/", rootm.fstype
    shared = max((int(m.propagation.split(":")[1]) for m in ns.mounts if m.propagation.startswith("shared:")),
                 default=0)
    for dev, mp, fstype, sopts in mounts:
        if dev not in names:
            raise KernelError(errno.ENODEV, f"mount {mp}: no block device {dev!r}")
        b = names[dev]
        if b.mount is not None:
            raise KernelError(errno.EBUSY, f"mount {mp}: {dev} is mounted on {b.mount} already")
        if not mp.startswith("/") or mp == "/" or any(m.mountpoint == mp for m in ns.mounts):
            raise KernelError(errno.EBUSY, f"mount {mp}: not a free absolute mountpoint")
        parent = ns.lookup(mp)
        shared += 1
        mid = max(m.mnt_id for tab in k.files.mnt_ns.values() for m in tab.mounts) + 1
        if bdev_read_only(b):  # a read-only device mounts read-only (the filesystem refuses rw: EACCES)
            opts, sopts = "ro,relatime", ",".join(["ro"] + [o for o in sopts.split(",") if o not in ("rw", "ro")])
        else:
            opts = "rw,relatime"
        ns.mounts.append(Mount(mid, parent.mnt_id, b.dev, "/", mp, opts, fstype, f"/dev/{dev}",
                               sopts, f"shared:{shared}"))
        b.mount, b.fstype = mp, fstype
    if k.mem.swap.pages:
        where, prio = swap if swap is not None else (DEFAULT_SWAP_FILE, DEFAULT_PRIORITY)
        if where.startswith("/") and not where.startswith("/dev/"):
            blk.swap = SwapArea(where, False, blk.bdev_of(ns.lookup(where).dev), prio)
        else:
            name = where.removeprefix("/dev/")
            b = names.get(name)
            if b is None:
                raise KernelError(errno.ENODEV, f"swap: no block device {where!r}")
            if b.mount is not None:
                raise KernelError(errno.EBUSY, f"swap: {name} is mounted on {b.mount}")
            if (b.nr_sects << 9) < (k.mem.swap.nr_slots << PAGE_SHIFT):
                raise KernelError(errno.EINVAL, f"swap: {name} is smaller than the swap area")
            blk.swap = SwapArea(f"/dev/{name}", True, b, prio)
    elif swap is not None:
        raise KernelError(errno.EINVAL, "swap_on: the machine has no swap (machine.swap)")
    k.block = k.mem.block = blk
    return blk


def do_sync(k: "Kernel") -> int:
    """sync(2); the pages written."""
    n = writeback.sync(k)
    k._changed("io", op="sync")
    return n


def do_fsync(k: "Kernel", tid: int, path: str) -> int:
    """fsync(2) of the file at `path` by task `tid`; the pages written.
    ENOENT for a file the machine has not seen, EINVAL for one with no
    writeback (tmpfs, hugetlbfs)."""
    t = k.task(tid)
    if t.dead or t.tg.zombie:
        raise KernelError(errno.ESRCH, f"task {tid} has exited")
    f = k.vfs.files.get(path)
    if f is None:
        raise KernelError(errno.ENOENT, f"fsync: {path}: no such file")
    if f.shmem or f.hugetlb:
        raise KernelError(errno.EINVAL, f"fsync: {path} has no backing device")
    with cgroup_io.issuing(k, t):  # its cache flush is its bio; the pages go as their dirtier's
        n = writeback.fsync(k, f)
    k._changed("io", tid=tid)
    return n


def truncate_discard(k: "Kernel", f: "File", mnt: Mount, old_size: int, new_size: int) -> None:
    """A filesystem mounted with `discard` discards the blocks a truncate
    freed (ext4's online discard at the commit that frees them)."""
    if "discard" not in mnt.super_opts.split(",") or new_size >= old_size:
        return
    freed = ((old_size + 4095) >> 12) - ((new_size + 4095) >> 12)
    b = k.block.bdevs.get(mnt.dev)
    if freed > 0 and b is not None:
        k.block.discard(b, freed << (PAGE_SHIFT - 9))


def sysfs_store(k: "Kernel", name: str, attr: str, data: bytes) -> None:
    """A write of `data` to attribute `attr` of block device `name` (its
    directory's ATTR: `queue/NAME` and the disk's own go to its disk, a
    partition's uevent too): procsim/block/blk_sysfs.py's store for it, which
    refuses bad values with Linux's errno and changes nothing then. ENODEV
    for no such device."""
    b = k.block.by_name.get(name)
    if b is None:
        raise KernelError(errno.ENODEV, f"no block device {name!r}")
    if not data:  # sysfs_kf_write: a zero-length write stores nothing
        return
    group, _, leaf = attr.rpartition("/")
    if attr in blk_sysfs.BDEV_STORES:
        blk_sysfs.BDEV_STORES[attr](b, data)
    else:
        store = (blk_sysfs.QUEUE_STORES if group == "queue" else blk_sysfs.DISK_STORES).get(leaf)
        if store is None:
            raise KernelError(errno.EACCES, f"{attr}: read-only")
        store(b.disk, data)
    k._changed("block", dev=name, attr=attr)


def disks_info(k: "Kernel") -> list[dict[str, Any]]:
    """Every block device with its size, place and counters (the model's
    view, for the `disks` query)."""
    out = []
    for d in k.block.disks:
        for b in d.parts:
            s = k.block.stats(b, k.now)
            q = d.queue
            out.append({"name": b.name, "dev": f"{b.dev[0]}:{b.dev[1]}", "partition": b.partno,
                        "disk": d.disk_name, "ro": bdev_read_only(b), "removable": bool(d.removable),
                        "rotational": bool(q.rotational), "logical_block_size": q.logical_block_size,
                        "physical_block_size": q.physical_block_size, "discard_granularity": q.discard_granularity,
                        "discard_max_bytes": q.discard_max_bytes, "scheduler": q.elevator if q.mq else None,
                        "nr_requests": q.nr_requests if q.mq else None, "read_ahead_kb": q.read_ahead_kb,
                        "start": b.start_sect, "sectors": b.nr_sects, "mount": b.mount, "fstype": b.fstype,
                        "swap": k.block.swap is not None and k.block.swap.bdev is b,
                        "reads": s.ios[STAT_READ], "read_sectors": s.sectors[STAT_READ],
                        "writes": s.ios[STAT_WRITE], "write_sectors": s.sectors[STAT_WRITE],
                        "write_merges": s.merges[STAT_WRITE], "read_merges": s.merges[STAT_READ],
                        "discards": s.ios[STAT_DISCARD], "discard_sectors": s.sectors[STAT_DISCARD],
                        "flushes": s.ios[STAT_FLUSH], "io_ticks_ms": s.io_ticks // 1_000_000})
    return out
