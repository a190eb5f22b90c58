"""The disks of a capture: `[[disk]]` and `[[disk.partition]]` from
/proc/partitions, /sys/block/DEV (partition starts, queue attributes,
removable, ro), /proc/diskstats as each device's starting counters
(`stat`), the filesystems on them from init's mountinfo, and `[swap]`
from /proc/swaps."""

from __future__ import annotations

import os

from procsim.capture.source import Source

MODELLED = ("vd", "sd", "nvme")   # loop and zram devices are set up at run time, not disks of the machine
QUEUE_INT = ("nr_requests", "read_ahead_kb", "logical_block_size", "physical_block_size", "max_sectors_kb",
             "max_hw_sectors_kb")
DEFAULT_PRIORITY = -2


def _partitions(src: Source) -> dict[str, tuple[int, int, int]]:
    """name -> (major, minor, 1 KiB blocks)."""
    out = {}
    for line in (src.read("partitions", quiet=True) or "").splitlines()[1:]:
        w = line.split()
        if len(w) == 4 and w[0].isdigit() and w[1].isdigit() and w[2].isdigit():
            out[w[3]] = (int(w[0]), int(w[1]), int(w[2]))
    return out


def _diskstats(src: Source) -> dict[str, list[int]]:
    out = {}
    for line in (src.read("diskstats", quiet=True) or "").splitlines():
        w = line.split()
        if len(w) >= 14 and all(x.isdigit() for x in w[3:]):
            out[w[2]] = [int(x) for x in w[3:20]]
    return out


def _mounts(src: Source) -> dict[tuple[int, int], tuple[str, str, str]]:
    """dev_t -> (mountpoint, fstype, superblock options) of init's first
    mount of each block device (a bind mount of the same device after it
    is not a filesystem of its own)."""
    out: dict[tuple[int, int], tuple[str, str, str]] = {}
    for line in (src.read("1/mountinfo", quiet=True) or "").splitlines():
        pre, sep, post = line.partition(" - ")
        w, v = pre.split(), post.split()
        if not sep or len(w) < 5 or len(v) < 3 or w[3] != "/":
            continue
        try:
            major, minor = (int(x) for x in w[2].split(":"))
        except ValueError:
            continue
        if major and (major, minor) not in out:
            out[(major, minor)] = (w[4].replace("\\040", " "), v[0], v[2])
    return out


def _sys(src: Source, rel: str) -> str | None:
    text = src.read(f"block/{rel}", sysfs=True, quiet=True)
    return None if text is None else text.strip()


def _queue(src: Source, name: str, d: dict) -> None:
    for key in QUEUE_INT:
        v = _sys(src, f"{name}/queue/{key}")
        if v is not None and v.isdigit():
            d[key] = int(v)
    depth = _sys(src, f"{name}/mq/0/nr_tags")  # the tag set's depth: what bounds nr_requests without an elevator
    if depth is not None and depth.isdigit() and int(depth):
        d["queue_depth"] = int(depth)
    rot = _sys(src, f"{name}/queue/rotational")
    if rot in ("0", "1"):
        d["rotational"] = rot == "1"
    sched = _sys(src, f"{name}/queue/scheduler")
    if sched and "[" in sched:
        d["scheduler"] = sched[sched.index("[") + 1:sched.index("]")]
    wc = _sys(src, f"{name}/queue/write_cache")
    if wc in ("write back", "write through"):
        d["write_cache"] = wc
    for key in ("removable", "ro"):
        if _sys(src, f"{name}/{key}") == "1":
            d[key] = True


def capture_disks(src: Source, swap_size: int = 0) -> tuple[list[dict], dict | None]:
    """[[disk]] entries and [swap]; ([], None) when no modelled disk holds
    the root filesystem (a container's /proc: the model's default disk)."""
    parts = _partitions(src)
    stats = _diskstats(src)
    mounts = _mounts(src)
    swaps = _swaps(src)
    disks = []
    for name, (major, minor, blocks) in parts.items():
        if not name.startswith(MODELLED) or not os.path.isdir(src.path(f"block/{name}", sysfs=True)):
            continue  # a partition (not in /sys/block), or a kind the model has no disk for
        d: dict = {"name": name, "size": blocks * 1024, "major": major, "minor": minor}
        _queue(src, name, d)
        where = mounts.get((major, minor))
        if where is not None:
            d |= {"mount": where[0], "fstype": where[1], "options": where[2]}
        if name in stats:
            d["stat"] = stats[name]
        subs = []
        for pname, (pmaj, pmin, pblocks) in parts.items():
            if pname == name or not pname.startswith(name):
                continue
            start = _sys(src, f"{name}/{pname}/start")
            if start is None or not start.isdigit():
                src.warn(f"{src.path(f'block/{name}/{pname}/start', sysfs=True)}: unreadable, {pname} not captured")
                continue
            p: dict = {"start": int(start), "size": pblocks * 1024}
            where = mounts.get((pmaj, pmin))
            if where is not None:
                p |= {"mount": where[0], "fstype": where[1], "options": where[2]}
            elif f"/dev/{pname}" in swaps:
                p["swap"] = True
            if pname in stats:
                p["stat"] = stats[pname]
            subs.append(p)
        if subs:
            d.pop("mount", None), d.pop("fstype", None), d.pop("options", None)
            d["partition"] = sorted(subs, key=lambda p: p["start"])
        disks.append(d)
    if not any(d.get("mount") == "/" or any(p.get("mount") == "/" for p in d.get("partition", []))
               for d in disks):
        if disks:
            src.warn(f"{src.path('1/mountinfo')}: the root filesystem is on no disk the model has; "
                     f"disks not captured")
        return [], None
    swap = None
    files = [(n, prio) for n, (kind, prio) in swaps.items() if kind == "file"]
    if files:
        swap = {"on": files[0][0], "priority": files[0][1]}
    else:
        parts_on = [(n, prio) for n, (kind, prio) in swaps.items() if kind == "partition"]
        if parts_on and parts_on[0][1] != DEFAULT_PRIORITY:
            swap = {"priority": parts_on[0][1]}
    if len(swaps) > 1:
        src.warn(f"{src.path('swaps')}: {len(swaps)} swap areas; the model has one (the first)")
    return disks, swap


def _swaps(src: Source) -> dict[str, tuple[str, int]]:
    out = {}
    for line in (src.read("swaps", quiet=True) or "").splitlines()[1:]:
        w = line.split()
        if len(w) >= 5 and w[-1].lstrip("-").isdigit():
            out[w[0].replace("\\040", " ")] = (w[1], int(w[-1]))
    return out
