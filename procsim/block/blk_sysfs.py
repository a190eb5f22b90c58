"""The stores of /sys/block/DISK's writable attributes (block/blk-sysfs.c's
queue attributes, block/elevator.c's elv_iosched_store, block/disk-events.c,
lib/kobject_uevent.c), on the gendisk and its request_queue.

Each store parses the whole text first and changes the queue only when it
is valid, so a refused write leaves the world as it was. The rules and
errnos are those this host's 6.18 gives (loop0 and vda, checked by hand,
tests/unit/test_blk_sysfs.py):

- numbers are kstrtoul(…, 10) (one '+', one trailing newline; no spaces,
  no 0x); a failure or a value above UINT_MAX is EINVAL (queue_var_store);
- nr_requests: below BLKDEV_MIN_RQ it becomes 4; above the tag set's depth
  without an elevator, or above MAX_SCHED_RQ with one, EINVAL;
- read_ahead_kb: kept in pages (5 reads back as 4);
- max_sectors_kb: 0 is the default (min(max_hw, 4096)); under 4 EINVAL;
  above max_hw_sectors_kb clamped to it, rounded down to the logical block;
- rotational: any non-zero number is 1;
- discard_max_bytes: a multiple of discard_granularity (EINVAL otherwise,
  so any non-zero value on a disk without discard), at most the hardware's;
- scheduler: the name stripped of blanks (at most ELV_NAME_MAX - 1 bytes
  read); one the queue does not offer EINVAL; a switch resets nr_requests
  (2 x min(depth, 128) for an elevator, the depth for none); the current
  one is a no-op;
- write_cache: "write back", "write through" or "none" as prefixes
  (EINVAL otherwise); write back only where the device has a volatile cache;
- events_poll_msecs: ENODEV on a disk without media events, -1 or >= 0;
- uevent: a kobject action (add, change, ...) or EINVAL; it only notifies;
- power/control (any block device): auto or on, EINVAL otherwise.
A zero-length write is a no-op for every attribute (sysfs_kf_write).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from procsim.block.genhd import (BLK_DEF_MAX_SECTORS_CAP_KB, BLKDEV_MIN_RQ, MAX_SCHED_RQ, SECTOR_SHIFT, BlockDevice,
                                 Gendisk, RequestQueue)
from procsim.errors import KernelError
from procsim.kstrtox import kstrtoll, kstrtoull, strstrip
from procsim.units import PAGE_SHIFT

UINT_MAX = 0xFFFFFFFF
ELV_NAME_MAX = 16
KOBJECT_ACTIONS = ("add", "remove", "change", "move", "online", "offline", "bind", "unbind")


def queue_var_store(text: bytes) -> int:
    """kstrtoul(page, 10) with every failure and a value above UINT_MAX EINVAL."""
    try:
        v = kstrtoull(text, 10)
    except OSError:
        raise KernelError(errno.EINVAL, f"{text!r}: not a decimal number") from None
    if v > UINT_MAX:
        raise KernelError(errno.EINVAL, f"{v}: above UINT_MAX")
    return v


def store_nr_requests(disk: Gendisk, text: bytes) -> None:
    q = disk.queue
    nr = max(queue_var_store(text), BLKDEV_MIN_RQ)
    if nr == q.nr_requests:
        return
    top = q.queue_depth if q.elevator == "none" else MAX_SCHED_RQ
    if nr > top:
        raise KernelError(errno.EINVAL, f"nr_requests {nr}: at most {top} with {q.elevator}")
    q.nr_requests = nr


def store_read_ahead_kb(disk: Gendisk, text: bytes) -> None:
    ra_pages = queue_var_store(text) >> (PAGE_SHIFT - 10)  # bdi->ra_pages: whole pages
    disk.queue.read_ahead_kb = ra_pages << (PAGE_SHIFT - 10)


def store_max_sectors_kb(disk: Gendisk, text: bytes) -> None:
    q = disk.queue
    kb = queue_var_store(text)
    user_sectors = (kb << 1) & UINT_MAX  # max_user_sectors is an unsigned int
    if not user_sectors:
        sectors = min(q.max_hw_sectors_kb, BLK_DEF_MAX_SECTORS_CAP_KB) << 1
    elif user_sectors < (4096 >> SECTOR_SHIFT):  # BLK_MIN_SEGMENT_SIZE
        raise KernelError(errno.EINVAL, f"max_sectors_kb {kb}: below 4")
    else:
        sectors = min(q.max_hw_sectors_kb << 1, user_sectors)
    lbs = q.logical_block_size >> SECTOR_SHIFT
    q.max_sectors_kb = (sectors // lbs * lbs) >> 1


def store_rotational(disk: Gendisk, text: bytes) -> None:
    disk.queue.rotational = int(queue_var_store(text) != 0)


def store_discard_max_bytes(disk: Gendisk, text: bytes) -> None:
    q = disk.queue
    try:
        v = kstrtoull(text, 10)
    except OSError:
        raise KernelError(errno.EINVAL, f"{text!r}: not a decimal number") from None
    if v & ((q.discard_granularity - 1) & UINT_MAX):
        raise KernelError(errno.EINVAL, f"discard_max_bytes {v}: not a multiple of {q.discard_granularity}")
    if v >> SECTOR_SHIFT > UINT_MAX:
        raise KernelError(errno.EINVAL, f"discard_max_bytes {v}: too large")
    q.discard_max_bytes = min(q.discard_max_hw_bytes, v >> SECTOR_SHIFT << SECTOR_SHIFT)


def store_scheduler(disk: Gendisk, text: bytes) -> None:
    q = disk.queue
    name = strstrip(text[:ELV_NAME_MAX - 1]).decode(errors="replace")
    names = [s.strip("[]") for s in q.scheduler]
    if name not in names:
        raise KernelError(errno.EINVAL, f"scheduler {name!r}: one of {', '.join(names)}")
    if name == q.elevator:
        return
    q.scheduler = tuple(f"[{s}]" if s == name else s for s in names)
    q.nr_requests = q.elevator_default_nr_requests()


def store_write_cache(disk: Gendisk, text: bytes) -> None:
    q = disk.queue
    if text.startswith(b"write back"):
        if q.write_cache_feature:
            q.write_cache = "write back"
    elif text.startswith(b"write through") or text.startswith(b"none"):
        q.write_cache = "write through"
    else:
        raise KernelError(errno.EINVAL, f"write_cache {text!r}: write back, write through or none")


def store_events_poll_msecs(disk: Gendisk, text: bytes) -> None:
    try:
        intv = kstrtoll(strstrip(text).split(b" ")[0] or b"x", 10)  # sscanf("%ld")
    except OSError:
        raise KernelError(errno.EINVAL, f"{text!r}: not a number") from None
    if intv < 0 and intv != -1:
        raise KernelError(errno.EINVAL, f"events_poll_msecs {intv}: -1 or at least 0")
    if not disk.events:
        raise KernelError(errno.ENODEV, f"{disk.disk_name}: no media events")
    disk.events_poll_msecs = intv


def store_uevent(disk: Gendisk, text: bytes) -> None:
    action = text.split(b"\n")[0].split(b" ")[0].decode(errors="replace")
    if action not in KOBJECT_ACTIONS:
        raise KernelError(errno.EINVAL, f"uevent {action!r}: one of {', '.join(KOBJECT_ACTIONS)}")


def store_rpm_control(b: BlockDevice, text: bytes) -> None:
    """power/control (drivers/base/power/sysfs.c control_store): "auto" or "on"."""
    word = text[:-1] if text.endswith(b"\n") else text
    if word not in (b"auto", b"on"):
        raise KernelError(errno.EINVAL, "power/control: auto or on")
    b.rpm_control = word.decode()


QUEUE_STORES: dict[str, Callable[[Gendisk, bytes], None]] = {
    "discard_max_bytes": store_discard_max_bytes, "max_sectors_kb": store_max_sectors_kb,
    "nr_requests": store_nr_requests, "read_ahead_kb": store_read_ahead_kb, "rotational": store_rotational,
    "scheduler": store_scheduler, "write_cache": store_write_cache}
DISK_STORES: dict[str, Callable[[Gendisk, bytes], None]] = {
    "events_poll_msecs": store_events_poll_msecs, "uevent": store_uevent}
BDEV_STORES: dict[str, Callable[[BlockDevice, bytes], None]] = {"power/control": store_rpm_control}


def queue_snapshot(q: RequestQueue) -> tuple:
    """The queue's settable state, to prove a refused write changed nothing."""
    return (q.nr_requests, q.read_ahead_kb, q.max_sectors_kb, q.rotational, q.discard_max_bytes, q.scheduler,
            q.write_cache)
