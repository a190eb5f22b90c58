"""blk-throttle (block/blk-throttle.c): io.max, per-cgroup, per-disk limits
of read and write bytes and I/Os per second, and the io.weight file
(block/blk-iocost.c's, whose per-device weights need io.cost enabled on
the disk, which no disk here has).

A cgroup's throtl_grp on a disk holds rbps, wbps, riops, wiops (U64_MAX /
UINT_MAX: no limit). A bio submitted by a task of the cgroup (or charged to
it as its pages' owner) waits in the group until the limits of the group
and of each ancestor's group on the way up let it go (tg_may_dispatch at
each level, then the parent's queue), and only then reaches the disk:
blk_core.py serves it at its dispatch instant, and io.stat, diskstats
and the disk's timing see it there.

The budget is blk-throttle's: bytes and I/Os dispatched against bps and
iops times the time since the slice started, with the unused budget of an
idle group capped at one slice (throtl_slice, 100 ms: a group that waited
long gets no more than a slice's burst). The model keeps it as the next
instant each direction is free (a virtual finish time: each bio moves it
by bytes/bps and ios/iops, whichever is later), which gives the same long
run rate.

A task reading through the page cache waits for its throttled reads
(blk_core.BlockState.throttled_until), so a workload's reads run at the
limit, and /proc/PID/io read_bytes, io.stat rbytes and diskstats grow at
it. Writeback of a cgroup's dirty pages is throttled the same way at the
disk (its requests start later), but the flusher does not leave the pages
dirty for later (not modelled): diskstats count written sectors when the
flusher submits them, and dirtying tasks are not slowed (balance_dirty_pages).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.cgroup import io as cgio
from procsim.errors import KernelError
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.block.genhd import Gendisk
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel

U64_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1
THROTL_SLICE_NS = NSEC // 10   # DFL_THROTL_SLICE: HZ / 10
KEYS = ("rbps", "wbps", "riops", "wiops")
READ, WRITE = 0, 1


@dataclass
class ThrotlGrp:
    """struct throtl_grp of a cgroup on one disk: limits and each direction's next free instant."""
    bps: tuple[int, int] = (U64_MAX, U64_MAX)
    iops: tuple[int, int] = (UINT_MAX, UINT_MAX)
    free_at: tuple[int, int] = (0, 0)       # ns: when the budget has room again
    nr_throttled: tuple[int, int] = (0, 0)  # bios that had to wait

    @property
    def limited(self) -> bool:
        return self.bps != (U64_MAX, U64_MAX) or self.iops != (UINT_MAX, UINT_MAX)

    def dispatch(self, rw: int, nbytes: int, nios: int, at: int) -> int:
        """tg_may_dispatch()/tg_dispatch_one_bio(): when a bio of the
        direction issued at `at` may go on, and its cost charged."""
        bps, iops = self.bps[rw], self.iops[rw]
        if bps == U64_MAX and iops == UINT_MAX:
            return at
        cost = 0
        if bps != U64_MAX:
            cost = max(cost, -(-nbytes * NSEC // bps))
        if iops != UINT_MAX:
            cost = max(cost, -(-nios * NSEC // iops))
        # an idle group's unused budget carries over one slice at most
        end = max(self.free_at[rw], at - THROTL_SLICE_NS) + cost
        free = list(self.free_at)
        free[rw] = end
        self.free_at = (free[0], free[1])
        go = max(at, end)
        if go > at:
            n = list(self.nr_throttled)
            n[rw] += 1
            self.nr_throttled = (n[0], n[1])
        return go


def _tg(cg: "Cgroup", dev: str) -> ThrotlGrp | None:
    return cg.throtl.get(dev)


def dispatch_at(cg: "Cgroup | None", disk: "Gendisk", rw: int, nbytes: int, nios: int, at: int) -> int:
    """The instant a bio of cgroup `cg` may reach the disk: its group's
    limits, then each ancestor's (the bio climbs the throtl_qnodes)."""
    if cg is None:
        return at
    dev = cgio.disk_name(disk)
    t = at
    for a in cg.ancestors():
        if a.parent is None:
            break
        tg = _tg(a, dev)
        if tg is not None and tg.limited:
            t = tg.dispatch(rw, nbytes, nios, t)
    return t


# -- io.max -----------------------------------------------------------------------

def _scan_u64(s: bytes) -> int | None:
    """sscanf(p, "%llu"): leading blanks, digits (wrapping at 2^64); None without one."""
    s = s.lstrip()
    n = 0
    while n < len(s) and s[n:n + 1].isdigit():
        n += 1
    return int(s[:n]) % (1 << 64) if n else None


def open_bdev(k: "Kernel", buf: bytes) -> tuple[str, bytes]:
    """blkg_conf_open_bdev(): "%u:%u" then a blank (EINVAL), a whole disk
    that exists (ENODEV for a partition or none). Returns ("MAJ:MIN", body)."""
    s = buf.split(b"\0", 1)[0]
    head = s.lstrip()
    i = 0
    nums = []
    for _ in range(2):
        j = i
        while j < len(head) and head[j:j + 1].isdigit():
            j += 1
        if j == i:
            raise KernelError(errno.EINVAL, "io: \"MAJ:MIN ...\"")
        nums.append(int(head[i:j]))
        i = j
        if len(nums) == 1:
            if head[i:i + 1] != b":":
                raise KernelError(errno.EINVAL, "io: \"MAJ:MIN ...\"")
            i += 1
    if nums[0] >= 1 << 32 or nums[1] >= 1 << 32:
        raise KernelError(errno.EINVAL, "io: device number out of range")
    if not head[i:i + 1].isspace():
        raise KernelError(errno.EINVAL, "io: a blank after MAJ:MIN")
    if k.block is None:
        raise KernelError(errno.ENODEV, "no such disk")
    bdev = k.block.bdevs.get((nums[0], nums[1]))
    if bdev is None or bdev.is_partition:
        raise KernelError(errno.ENODEV, f"{nums[0]}:{nums[1]}: not a disk")
    return cgio.disk_name(bdev.disk), head[i:].lstrip()


def parse_limit(k: "Kernel", buf: bytes, cg: "Cgroup") -> tuple[str, tuple[int, int, int, int]]:
    """tg_set_limit(): "MAJ:MIN" then key=value tokens (rbps wbps riops
    wiops; a number or max). EINVAL for a token without "=", a value that is
    neither, or an unknown key; ERANGE for 0. Keys not given keep theirs."""
    dev, body = open_bdev(k, buf)
    tg = cg.throtl.get(dev) or ThrotlGrp()
    v = [tg.bps[READ], tg.bps[WRITE], tg.iops[READ], tg.iops[WRITE]]
    for tok in body.split():
        tok = tok[:26]  # "%26s": a longer word is read in pieces
        key, eq, val = tok.partition(b"=")
        if not eq:
            raise KernelError(errno.EINVAL, f"io.max: {tok!r} is not key=value")
        n = _scan_u64(val)
        if n is None:
            if val != b"max":
                raise KernelError(errno.EINVAL, f"io.max: {val!r}")
            n = U64_MAX
        if not n:
            raise KernelError(errno.ERANGE, "io.max: a limit of 0")
        if key not in [x.encode() for x in KEYS]:
            raise KernelError(errno.EINVAL, f"io.max: no key {key!r}")
        i = KEYS.index(key.decode())
        v[i] = n if i < 2 else min(n, UINT_MAX)
    return dev, (v[0], v[1], v[2], v[3])


def set_limit(k: "Kernel", cg: "Cgroup", dev: str, v: tuple[int, int, int, int]) -> None:
    """The limits set (tg_conf_updated: a new slice), the blkg made for the
    cgroup and its ancestors as blkg_conf_prep() does."""
    tg = cg.throtl.setdefault(dev, ThrotlGrp())
    tg.bps, tg.iops = (v[0], v[1]), (v[2], v[3])
    tg.free_at = (0, 0)
    for a in reversed(list(cg.ancestors())):
        if a.parent is not None and dev not in a.io:
            a.io[dev] = [0] * len(cgio.FIELDS)


def _fmt(n: int, inf: int) -> str:
    return "max" if n == inf else str(n)


def io_max(k: "Kernel", cg: "Cgroup") -> bytes:
    """tg_prfill_limit(): a line per blkg with a limit, newest blkg first."""
    out = []
    for dev in reversed(list(cg.io)):
        tg = cg.throtl.get(dev)
        if tg is None or not tg.limited:
            continue
        out.append(f"{dev} rbps={_fmt(tg.bps[READ], U64_MAX)} wbps={_fmt(tg.bps[WRITE], U64_MAX)} "
                   f"riops={_fmt(tg.iops[READ], UINT_MAX)} wiops={_fmt(tg.iops[WRITE], UINT_MAX)}\n")
    return "".join(out).encode()


# -- io.weight (blk-iocost) ----------------------------------------------------------

CGROUP_WEIGHT_DFL, CGROUP_WEIGHT_MIN, CGROUP_WEIGHT_MAX = 100, 1, 10000


def parse_weight(k: "Kernel", buf: bytes) -> tuple[str, int | None]:
    """ioc_weight_write(): without a ':' "default N" or "N" (EINVAL outside
    1..10000); "MAJ:MIN ..." needs iocost on that disk: EOPNOTSUPP here."""
    s = buf.split(b"\0", 1)[0]
    if b":" not in s:
        body = s.lstrip()
        n = _scan_u64(body[len(b"default"):]) if body.startswith(b"default") else None
        if n is None:
            n = _scan_u64(body)
        if n is None or not CGROUP_WEIGHT_MIN <= n <= CGROUP_WEIGHT_MAX:
            raise KernelError(errno.EINVAL, "io.weight: \"default N\", N in 1..10000")
        return "default", n
    open_bdev(k, buf)
    raise KernelError(errno.EOPNOTSUPP, "io.weight: io.cost is not enabled on the disk")


def io_weight(k: "Kernel", cg: "Cgroup") -> bytes:
    return f"default {cg.io_weight.get('default', CGROUP_WEIGHT_DFL)}\n".encode()
