"""`[[disk]]` and `[swap]`: the machine's disks, their partitions, the
filesystems mounted on them and where the swap area is
(docs/scenario-format.md, "Disks"), turned into procsim/block/'s tables
before anything runs."""

from __future__ import annotations

import re
from typing import Any

from procsim import restore
from procsim.block import syscalls as B
from procsim.block.blk_sysfs import QUEUE_STORES as STORES
from procsim.block.genhd import Gendisk, kind_of, make_disk
from procsim.errors import KernelError
from procsim.scenario.schema import DISK, PARTITION, SWAP, ScenarioError, _fields

ALIGN = 2048           # sectors: partitions start on 1 MiB boundaries, as parted and fdisk place them
GPT_TAIL = 34          # the backup GPT at the end of the disk
MAX_DISK = 1 << 60
_SUPER_OPTS = {"ext4": "rw", "xfs": "rw,attr2,inode64,logbufs=8,logbsize=32k,noquota", "btrfs": "rw,space_cache=v2",
               "ext2": "rw", "ext3": "rw"}


def _index(name: str, prefix: str) -> int:
    """vdc -> 2, sdaa -> 26, loop3 -> 3, zram0 -> 0; nvme numbers itself."""
    rest = name[len(prefix):]
    if prefix in ("vd", "sd"):
        if not re.fullmatch(r"[a-z]{1,2}", rest):
            raise ValueError(f"disk name {name!r}: expected {prefix} and one or two letters")
        n = 0
        for c in rest:
            n = n * 26 + (ord(c) - 96)
        return n - 1
    if prefix == "nvme":
        if not re.fullmatch(r"\d+n\d+", rest):
            raise ValueError(f"disk name {name!r}: expected nvmeXnY")
        return 0
    if not rest.isdigit():
        raise ValueError(f"disk name {name!r}: expected {prefix}N")
    return int(rest)


class BlockBuilder:
    def _disk_stat(self, bdev: Any, stat: Any, where: str) -> None:
        """A captured device's /proc/diskstats fields, set once the boot
        history has played (restore_disk_stats)."""
        if not (isinstance(stat, list) and 11 <= len(stat) <= 17
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in stat)):
            raise ScenarioError(f"{where}: expected the 11 to 17 numbers of a /proc/diskstats line")
        self.disk_stats = getattr(self, "disk_stats", []) + [(bdev, stat)]

    def _restore_disk_stats(self) -> None:
        for bdev, stat in getattr(self, "disk_stats", []):
            self._call(f"disk {bdev.name}: stat", restore.restore_disk_stats, self.k, bdev, stat)

    def _disks(self, top: dict) -> None:
        disks_doc, swap_doc = top.get("disk"), top.get("swap")
        if disks_doc is None:
            if swap_doc is not None:
                raise ScenarioError("swap: needs the [[disk]] tables it names a place on")
            return
        disks: list[Gendisk] = []
        mounts: list[tuple[str, str, str, str]] = []
        root = None
        swap_part = None
        ext_minor = 0
        for i, d in enumerate(disks_doc):
            where = f"disk #{i + 1}"
            v = _fields(d, DISK, where, ("name", "size"))
            name = v["name"]
            where = f"disk {name!r}"
            try:
                prefix, kind = kind_of(name)
                index = _index(name, prefix)
            except ValueError as e:
                raise ScenarioError(f"{where}: {e}") from None
            size = v["size"]
            if not 0 < size <= MAX_DISK or size % 512:
                raise ScenarioError(f"{where}: size: expected a positive multiple of 512 bytes up to 1 EiB")
            cap = size >> 9
            parts, pmounts = [], []
            nxt, prev_end = ALIGN, GPT_TAIL
            for j, pd in enumerate(v.get("partition", []), 1):
                pw = f"{where}: partition {j}"
                pv = _fields(pd, PARTITION, pw)
                start = pv.get("start", nxt)
                last = j == len(v["partition"])
                if "size" in pv:
                    n = pv["size"] >> 9
                elif last:
                    n = (cap - GPT_TAIL - start) // ALIGN * ALIGN
                else:
                    raise ScenarioError(f"{pw}: size: only the last partition may take the rest of the disk")
                if n <= 0 or start < prev_end or start + n > cap - GPT_TAIL:
                    raise ScenarioError(f"{pw}: does not fit on the disk after the partitions before it")
                parts.append((start, n))
                prev_end = start + n
                nxt = -(-prev_end // ALIGN) * ALIGN
                pmounts.append((j, pv))
            if "mount" in v and parts:
                raise ScenarioError(f"{where}: mount: a partitioned disk is mounted by its partitions")
            # the hardware's limits (what the driver sets up) go to make_disk ...
            queue: dict[str, Any] = {}
            for key in ("logical_block_size", "physical_block_size", "max_hw_sectors_kb", "write_cache",
                        "discard_granularity", "queue_depth"):
                if key in v:
                    queue[key] = v[key]
            if "discard_max_bytes" in v:
                queue["discard_max_bytes"] = queue["discard_max_hw_bytes"] = v["discard_max_bytes"]
            if "rotational" in v:
                queue["rotational"] = int(v["rotational"])
            if "latency_us" in v:
                queue["latency_ns"] = int(v["latency_us"] * 1000)
            if "bandwidth" in v:
                queue["bandwidth"] = v["bandwidth"]
            if queue.get("write_cache", "write back") not in ("write back", "write through"):
                raise ScenarioError(f"{where}: write_cache: \"write back\" or \"write through\"")
            for key in ("bandwidth", "max_hw_sectors_kb"):
                if key in queue and queue[key] <= 0:
                    raise ScenarioError(f"{where}: {key}: expected a positive number")
            if "queue_depth" in queue and not 1 <= queue["queue_depth"] <= 10240:  # BLK_MQ_MAX_DEPTH
                raise ScenarioError(f"{where}: queue_depth: 1 to 10240")
            if not kind.queue_depth and ("queue_depth" in v or "scheduler" in v or "nr_requests" in v):
                raise ScenarioError(f"{where}: {prefix} is not a blk-mq disk: no queue_depth, scheduler, nr_requests")
            if queue.get("logical_block_size", 512) not in (512, 1024, 2048, 4096):
                raise ScenarioError(f"{where}: logical_block_size: 512, 1024, 2048 or 4096")
            pbs = queue.get("physical_block_size", kind.physical_block_size)
            if pbs not in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536) or pbs < queue.get("logical_block_size",
                                                                                              512):
                raise ScenarioError(f"{where}: physical_block_size: a power of two, at least the logical one")
            gran = queue.get("discard_granularity", 0)
            if gran and (gran & (gran - 1) or gran < 512):
                raise ScenarioError(f"{where}: discard_granularity: a power of two, at least 512")
            try:
                disk = make_disk(name, size, index, parts, v.get("major"), v.get("minor"), ext_minor, **queue)
            except ValueError as e:
                raise ScenarioError(f"{where}: {e}") from None
            if not kind.minors:
                ext_minor = disk.parts[-1].dev[1] + 1
            # ... what the administrator sets goes through the sysfs stores, with their rules
            for key in ("scheduler", "nr_requests", "read_ahead_kb", "max_sectors_kb"):
                if key in v:
                    try:
                        STORES[key](disk, str(v[key]).encode())
                    except KernelError as e:
                        raise ScenarioError(f"{where}: {key}: {e.strerror}") from None
            disk.removable = int(v.get("removable", False))
            disk.events = bool(disk.removable) and prefix == "sd"  # sd_probe: media_change on removable media
            disk.ro = int(v.get("ro", False))
            disk.diskseq = i + 1  # inc_diskseq() at each alloc_disk, in registration order
            for j, pv in pmounts:
                disk.parts[j].read_only = bool(pv.get("ro", False))
            disks.append(disk)
            for b, sv in [(disk.part0, v)] + [(disk.parts[j], pv) for j, pv in pmounts]:
                if "stat" in sv:
                    self._disk_stat(b, sv["stat"], f"{where}: {b.name}: stat")
            targets = [(disk.part0.name, v)] if "mount" in v else []
            targets += [(disk.parts[j].name, pv) for j, pv in pmounts if "mount" in pv or pv.get("swap")]
            for dev, tv in targets:
                if tv.get("swap"):
                    if "mount" in tv:
                        raise ScenarioError(f"{where}: {dev}: swap or mount, not both")
                    if swap_part is not None:
                        raise ScenarioError(f"{where}: {dev}: swap is on {swap_part} already")
                    swap_part = dev
                    continue
                mp = tv["mount"]
                if mp == "/":
                    if root is not None:
                        raise ScenarioError(f"{where}: {dev}: the root filesystem is on {root} already")
                    root = dev
                    continue
                fstype = tv.get("fstype", "ext4")
                mounts.append((dev, mp, fstype, tv.get("options", _SUPER_OPTS.get(fstype, "rw"))))
        if root is None:
            raise ScenarioError("disk: no disk or partition has mount = \"/\" (the root filesystem)")
        sv = _fields(swap_doc or {}, SWAP, "swap")
        if swap_part is not None and "on" in sv:
            raise ScenarioError(f"swap: on: swap is on partition {swap_part} (swap = true) already")
        on = sv.get("on", f"/dev/{swap_part}" if swap_part else None)
        swap = (on, sv.get("priority", -2)) if on is not None or "priority" in sv else None
        if swap is not None and swap[0] is None:
            swap = ("/swapfile", swap[1])
        if swap is not None and not -1 <= swap[1] <= 32767 and swap[1] != -2:
            raise ScenarioError("swap: priority: -1 to 32767 (or the default, -2)")
        mounts.sort(key=lambda m: m[1].count("/"))  # a mountpoint after the one it is under
        self._call("disk", B.install_disks, self.k, disks, root, mounts, swap)
