"""struct gendisk, struct block_device and struct disk_stats (block/genhd.c,
include/linux/blkdev.h, include/linux/part_stat.h).

A gendisk is a disk: its name, its major and first minor, its request
queue (the queue/ attributes sysfs shows) and its partition table, whose
entry 0 is the whole disk's block_device. Every block_device has its own
disk_stats; an I/O to a partition counts on it and on the whole disk
(part_stat_add updates both), so a disk's counters are those of all its
partitions plus the I/O addressed to the disk itself.

Counters are kept as Linux keeps them: ios, merges, sectors and nsecs per
STAT_READ/WRITE/DISCARD/FLUSH, io_ticks (here in ns; printed in ms as
jiffies_to_msecs does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAT_READ, STAT_WRITE, STAT_DISCARD, STAT_FLUSH = range(4)
NR_STAT_GROUPS = 4
SECTOR_SHIFT = 9

# The disk kinds the model knows, by name prefix: their major (dynamic
# majors as this machine's 6.18 gave them), minors per disk (partitions
# included) and the queue defaults of the driver (virtio-blk as on the
# reference VM; sd a SATA disk behind libata; nvme; loop; zram).
@dataclass(frozen=True)
class DiskKind:
    major: int
    minors: int
    rotational: int
    scheduler: tuple[str, ...]
    max_hw_sectors_kb: int
    max_sectors_kb: int
    physical_block_size: int
    latency_ns: int       # the service-time model: per request ...
    bandwidth: int        # ... plus bytes / bandwidth (bytes per second)
    write_cache: str = "write back"
    discard: bool = True
    removable: int = 0
    queue_depth: int = 128     # blk_mq_tag_set.queue_depth (0: a bio-based driver, no blk-mq)
    logical_block_size: int = 512
    no_part: bool = False      # GENHD_FL_NO_PART: never partitioned (ext_range 1)
    part_scan: bool = True     # partitions are scanned (loop only with LO_FLAGS_PARTSCAN)
    discard_max_hw_bytes: int = 1 << 30


KINDS = {
    "vd": DiskKind(254, 16, 1, ("none", "[mq-deadline]", "kyber"), 2147483647, 4096, 4096, 200_000, 1_000_000_000),
    "sd": DiskKind(8, 16, 1, ("none", "[mq-deadline]", "kyber", "bfq"), 32767, 1280, 4096, 8_000_000, 150_000_000,
                   queue_depth=32),
    "nvme": DiskKind(259, 0, 0, ("[none]", "mq-deadline", "kyber"), 128, 128, 512, 80_000, 3_000_000_000,
                     queue_depth=1023),
    # max_hw_sectors_kb, write_cache, the block sizes, discard: this host's loop0 and zram0
    "loop": DiskKind(7, 1, 0, ("[none]", "mq-deadline", "kyber"), 1280, 1280, 512, 10_000, 4_000_000_000,
                     "write back", True, part_scan=False),
    "zram": DiskKind(253, 1, 0, (), 124, 124, 4096, 2_000, 8_000_000_000, "write through", True, queue_depth=0,
                     logical_block_size=4096, no_part=True, part_scan=False,
                     discard_max_hw_bytes=0xFFFFFFFF << SECTOR_SHIFT),
}

BLKDEV_MIN_RQ = 4              # nr_requests below it is raised to it
BLKDEV_DEFAULT_RQ = 128
MAX_SCHED_RQ = 2048            # nr_requests with an elevator (this host's 6.18 refuses 2049)
BLK_DEF_MAX_SECTORS_CAP_KB = 4096  # max_sectors_kb when the user sets none (SZ_4M)
DISK_MAX_PARTS = 256


def kind_of(name: str) -> tuple[str, DiskKind]:
    for prefix in ("nvme", "loop", "zram", "vd", "sd"):
        if name.startswith(prefix):
            return prefix, KINDS[prefix]
    raise ValueError(f"disk name {name!r}: expected vdX, sdX, nvmeNnM, loopN or zramN")


@dataclass(slots=True, eq=False)
class DiskStats:
    """struct disk_stats, summed over CPUs."""
    ios: list[int] = field(default_factory=lambda: [0] * NR_STAT_GROUPS)
    merges: list[int] = field(default_factory=lambda: [0] * NR_STAT_GROUPS)
    sectors: list[int] = field(default_factory=lambda: [0] * NR_STAT_GROUPS)
    nsecs: list[int] = field(default_factory=lambda: [0] * NR_STAT_GROUPS)
    io_ticks: int = 0  # ns the device had I/O in flight

    def add(self, op: int, ios: int, merges: int, sectors: int, nsecs: int, busy: int) -> None:
        self.ios[op] += ios
        self.merges[op] += merges
        self.sectors[op] += sectors
        self.nsecs[op] += nsecs
        self.io_ticks += busy

    def plus(self, other: "DiskStats") -> "DiskStats":
        return DiskStats([a + b for a, b in zip(self.ios, other.ios)],
                         [a + b for a, b in zip(self.merges, other.merges)],
                         [a + b for a, b in zip(self.sectors, other.sectors)],
                         [a + b for a, b in zip(self.nsecs, other.nsecs)], self.io_ticks + other.io_ticks)


@dataclass(slots=True)
class RequestQueue:
    """The queue limits and settings /sys/block/DEV/queue shows."""
    logical_block_size: int = 512
    physical_block_size: int = 4096
    rotational: int = 1
    nr_requests: int = 256
    scheduler: tuple[str, ...] = ("none", "[mq-deadline]", "kyber")
    max_sectors_kb: int = 4096
    max_hw_sectors_kb: int = 2147483647
    read_ahead_kb: int = 128
    write_cache: str = "write back"
    discard_granularity: int = 4096
    discard_max_bytes: int = 1 << 30
    discard_max_hw_bytes: int = 1 << 30
    write_cache_feature: bool = True  # BLK_FEAT_WRITE_CACHE: a volatile cache "write back" may enable
    queue_depth: int = 128         # the tag set's: nr_requests without an elevator, mq/0/nr_tags
    latency_ns: int = 200_000
    bandwidth: int = 1_000_000_000

    def service_ns(self, sectors: int) -> int:
        """The service-time model: a fixed cost per request plus the transfer."""
        return self.latency_ns + (sectors << SECTOR_SHIFT) * 1_000_000_000 // self.bandwidth

    @property
    def mq(self) -> bool:
        """A blk-mq queue (a tag set): nr_requests, scheduler and mq/ exist."""
        return self.queue_depth > 0

    @property
    def elevator(self) -> str:
        """The elevator in use (the bracketed one), "none" for none."""
        return next((s.strip("[]") for s in self.scheduler if s.startswith("[")), "none")

    def elevator_default_nr_requests(self) -> int:
        """What nr_requests becomes when an elevator is switched to (blk_mq_init_sched:
        twice the tag depth, at most twice BLKDEV_DEFAULT_RQ) or to none (the depth)."""
        if self.elevator == "none":
            return self.queue_depth
        return 2 * min(self.queue_depth, BLKDEV_DEFAULT_RQ)


@dataclass(slots=True, eq=False)
class BlockDevice:
    """A block_device: the whole disk (partno 0) or one partition."""
    name: str
    dev: tuple[int, int]
    partno: int
    start_sect: int
    nr_sects: int
    disk: "Gendisk"
    stats: DiskStats = field(default_factory=DiskStats)
    mount: str | None = None   # where it is mounted (the scenario's), for the `disks` query
    fstype: str | None = None
    rpm_control: str = "auto"  # power/control: runtime PM allowed ("auto") or kept on
    read_only: bool = False    # BD_READ_ONLY: set by BLKROSET on this device (a partition or part0)
    # requests issued and not yet complete at the last issue: (done ns, op,
    # sectors, ns from issue to done, ns of service); `stats` holds them
    # already, readers take away those still in flight at their instant
    pending: list[tuple[int, int, int, int, int]] = field(default_factory=list)

    @property
    def is_partition(self) -> bool:
        return self.partno != 0


@dataclass(slots=True, eq=False)
class Gendisk:
    disk_name: str
    major: int
    first_minor: int
    minors: int
    queue: RequestQueue
    removable: int = 0
    ro: int = 0                # GD_READ_ONLY: set_disk_ro() by the driver (a write-protected medium)
    hidden: bool = False
    no_part: bool = False      # GENHD_FL_NO_PART
    part_scan: bool = True
    events: bool = False       # media events (disk->ev): a removable SCSI disk's media_change
    events_poll_msecs: int = -1  # the disk's own poll interval (-1: the system default)
    serial: str = ""           # the virtio-blk serial (/sys/block/vdX/serial)
    diskseq: int = 1
    parts: list[BlockDevice] = field(default_factory=list)  # part_tbl: [0] is the whole disk
    busy_until: int = 0    # ns: when the requests issued so far are all served (the model's FIFO)

    @property
    def part0(self) -> BlockDevice:
        return self.parts[0]

    @property
    def capacity(self) -> int:
        """get_capacity(): sectors."""
        return self.part0.nr_sects


def get_disk_ro(disk: Gendisk) -> bool:
    """get_disk_ro(): the whole disk's flag or the driver's."""
    return disk.part0.read_only or bool(disk.ro)


def bdev_read_only(b: BlockDevice) -> bool:
    """bdev_read_only(): a partition is read-only when it or its disk is."""
    return b.read_only or get_disk_ro(b.disk)


def partition_name(disk: str, partno: int) -> str:
    """The name of partition `partno` (disk_name ending in a digit: a 'p' between)."""
    return f"{disk}p{partno}" if disk[-1].isdigit() else f"{disk}{partno}"


def make_disk(name: str, size_bytes: int, index: int, parts: list[tuple[int, int]] | None = None,
              major: int | None = None, first_minor: int | None = None, next_ext_minor: int = 0,
              **queue: object) -> Gendisk:
    """A disk `name` of `size_bytes` (whole sectors) and its partitions,
    each (start sector, sectors). `index`: the disk's number among those of
    its kind (vda 0, vdb 1: first minor index * minors). A kind with no
    minors of its own (nvme) numbers every device from `next_ext_minor`
    on the extended major (blkext), as 6.18 does."""
    _, kind = kind_of(name)
    q = RequestQueue(physical_block_size=kind.physical_block_size, rotational=kind.rotational,
                     scheduler=kind.scheduler, max_sectors_kb=kind.max_sectors_kb,
                     max_hw_sectors_kb=kind.max_hw_sectors_kb, write_cache=kind.write_cache,
                     latency_ns=kind.latency_ns, bandwidth=kind.bandwidth, queue_depth=kind.queue_depth,
                     logical_block_size=kind.logical_block_size,
                     discard_max_bytes=kind.discard_max_hw_bytes, discard_max_hw_bytes=kind.discard_max_hw_bytes)
    if not kind.discard:
        q.discard_granularity = q.discard_max_bytes = q.discard_max_hw_bytes = 0
    for key, v in queue.items():
        if not hasattr(q, key):
            raise ValueError(f"queue attribute {key!r} unknown")
        setattr(q, key, v)
    q.write_cache_feature = q.write_cache == "write back"
    if "nr_requests" not in queue:  # the elevator's (or the tag set's) default
        q.nr_requests = q.elevator_default_nr_requests() if q.mq else 0
    maj = kind.major if major is None else major
    minors = kind.minors
    first = first_minor if first_minor is not None else (index * minors if minors else next_ext_minor)
    d = Gendisk(name, maj, first, minors, q, removable=kind.removable, no_part=kind.no_part,
                part_scan=kind.part_scan)
    d.parts.append(BlockDevice(name, (maj, first), 0, 0, size_bytes >> SECTOR_SHIFT, d))
    for i, (start, n) in enumerate(parts or [], 1):
        minor = first + i if minors else first + i
        if minors and i >= minors:
            raise ValueError(f"{name}: at most {minors - 1} partitions")
        d.parts.append(BlockDevice(partition_name(name, i), (maj, minor), i, start, n, d))
    return d
