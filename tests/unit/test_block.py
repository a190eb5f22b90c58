"""Block devices (procsim/block/): /proc/diskstats, /proc/partitions,
/proc/swaps, /proc/filesystems and /sys/block in 6.18's formats (checked
byte for byte against this host's files where it has them), and the
counters' agreement with the memory model: pgpgin/pgpgout are the disks'
sectors halved, a disk's read sectors are the read_bytes of the I/O that
went to it, pswpin/pswpout are the swap device's I/O; writeback by the
flusher, sync and fsync; scenarios' disks and their errors."""

from __future__ import annotations

import errno
import os
import re
import time

import pytest

from hostinfo import requires_host
from procfs_helpers import ROOT, errno_of, read_all
from procsim import scenario
from procsim.block.blk_core import BlockState
from procsim.block.genhd import STAT_DISCARD, STAT_WRITE, make_disk
from procsim.block.swapfile import SwapArea, swap_show
from procsim.commands import CommandError, execute
from procsim.config import KernelConfig
from procsim.kernel import MADV_PAGEOUT, Kernel
from procsim.mm.swap import SwapDevice
from procsim.procfs import block as pblock
from procsim.procfs.tree import ProcFS
from procsim.scenario import ScenarioError

PAGE = 4096
NS = 10 ** 9

DISKS = {
    "machine": {"mem": "2G", "swap": "256M"},
    "disk": [
        {"name": "vda", "size": "16G", "partition": [
            {"size": "512M", "mount": "/boot"},
            {"size": "1G", "swap": True},
            {"mount": "/"}]},
        {"name": "vdb", "size": "64G", "mount": "/data", "fstype": "xfs"},
        {"name": "nvme0n1", "size": "32G", "partition": [{"mount": "/srv"}]},
    ],
    "swap": {"priority": 10},
}


def machine(doc: dict = DISKS) -> Kernel:
    return scenario.build(doc)


def diskstats(fs: ProcFS) -> dict[str, list[int]]:
    return {ln.split()[2]: [int(x) for x in ln.split()[3:]] for ln in read_all(fs, "/proc/diskstats").decode().splitlines()}


def vmstat(fs: ProcFS) -> dict[str, int]:
    return {a: int(b) for a, b in (ln.split() for ln in read_all(fs, "/proc/vmstat").decode().splitlines())}


def whole_disks(k: Kernel) -> list[str]:
    return [d.disk_name for d in k.block.disks]


# -- formats -------------------------------------------------------------------------


def _host_block_state() -> tuple[BlockState, str]:
    """The host's disks as the model's, with the host's counters (in_flight
    0: every request of the model completes at once), and the diskstats
    text they must render to."""
    text = open("/proc/diskstats").read()
    disks, want = [], []
    for ln in text.splitlines():
        f = ln.split()
        major, minor, name, v = int(f[0]), int(f[1]), f[2], [int(x) for x in f[3:]]
        v[8] = 0
        want.append(re.sub(r"^(\s*\d+\s+\d+ \S+(?: \d+){8}) \d+", r"\1 0", ln))
        size = int(open(f"/sys/class/block/{name}/size").read())
        if os.path.exists(f"/sys/class/block/{name}/partition"):
            d = disks[-1]
            start = int(open(f"/sys/class/block/{name}/start").read())
            from procsim.block.genhd import BlockDevice
            d.parts.append(BlockDevice(name, (major, minor), len(d.parts), start, size, d))
            b = d.parts[-1]
        else:
            d = make_disk("vda", size * 512, 0, major=major, first_minor=minor)
            d.disk_name = d.parts[0].name = name
            disks.append(d)
            b = d.parts[0]
        _load(b.stats, v)
    blk = BlockState(disks, disks[0].parts[0].dev, lambda: 0)
    blk.journal = False  # no journal trickle: the counters are the host's
    return blk, "".join(w + "\n" for w in want)


def _load(s, v: list[int]) -> None:
    """Counters of a diskstats/stat line into disk_stats (ms as ns)."""
    for g, (ios, mer, sec, ms) in enumerate(((v[0], v[1], v[2], v[3]), (v[4], v[5], v[6], v[7]),
                                            (v[11], v[12], v[13], v[14]), (v[15], 0, 0, v[16]))):
        s.ios[g], s.merges[g], s.sectors[g], s.nsecs[g] = ios, mer, sec, ms * 1_000_000
    # time_in_queue is the ms of the summed ns: spread the rest below 1 ms a group
    extra = (v[10] - (v[3] + v[7] + v[14] + v[16])) * 1_000_000
    for g in range(4):
        add = min(max(extra, 0), 999_999)
        s.nsecs[g] += add
        extra -= add
    s.io_ticks = v[9] * 1_000_000


class _K:
    def __init__(self, blk: BlockState) -> None:
        self.block, self.now = blk, 0


@requires_host(kernel="6.18", files=("/proc/diskstats",))
def test_diskstats_partitions_and_stat_byte_exact_against_the_host() -> None:
    blk, want = _host_block_state()
    k = _K(blk)
    assert "".join(pblock.diskstats_lines(k)) == want

    class Ctx:
        kernel = k
    got_parts = pblock.partitions(Ctx).decode()
    assert got_parts == open("/proc/partitions").read()
    # /sys/block/DEV/stat: the same counters, %8 columns
    for d in blk.disks:
        host = open(f"/sys/block/{d.disk_name}/stat").read().split()
        v = [int(x) for x in host]
        if v[8] or v[10] - (v[3] + v[7] + v[14] + v[16]) > 3:
            continue  # I/O in flight right now (the model shows none), or a sum no spread reaches
        _load(d.part0.stats, v)
        assert pblock.part_stat_show(type("C", (), {"kernel": k})(), d.disk_name) == \
            open(f"/sys/block/{d.disk_name}/stat").read().encode()


@requires_host(kernel="6.18")
def test_filesystems_as_the_host() -> None:
    fs = ProcFS(Kernel())
    assert read_all(fs, "/proc/filesystems") == open("/proc/filesystems", "rb").read()


def test_swaps_line_as_swap_show_prints_it() -> None:
    """mm/swapfile.c swap_show(): "%*s%s\\t%lu\\t%s%lu\\t%s%d\\n", the name
    padded to 40, "file\\t" or "partition", a second tab below 10000000 kB."""
    si = SwapDevice(2 << 30)
    d = make_disk("vda", 16 << 30, 0, [(2048, 8 << 21)])
    assert swap_show(SwapArea("/swapfile", False, d.part0), si) == \
        "/swapfile" + " " * 31 + "file\t\t2097148\t\t0\t\t-2\n"
    si.alloc(10)
    assert swap_show(SwapArea("/dev/vda1", True, d.parts[1], 5), si) == \
        "/dev/vda1" + " " * 31 + "partition\t2097148\t\t40\t\t5\n"
    big = SwapDevice(16 << 30)
    assert swap_show(SwapArea("/dev/" + "x" * 45, True, d.parts[1], -2), big) == \
        "/dev/" + "x" * 45 + " partition\t16777212\t0\t\t-2\n"
    assert pblock.SWAPS_HEADER == "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


@requires_host(kernel="6.18", features=("active-swap",))
def test_swaps_as_the_host() -> None:
    lines = open("/proc/swaps").read().splitlines(keepends=True)
    name, typ, size, used, prio = lines[1].split()
    si = SwapDevice((int(size) + 4) * 1024)
    si.inuse_pages = int(used) // 4
    d = make_disk("vda", 1 << 40, 0, [(2048, 1 << 30)])
    area = SwapArea(name, typ == "partition", d.parts[1], int(prio))
    assert pblock.SWAPS_HEADER + swap_show(area, si) == lines[0] + lines[1]


def test_default_machine_disk_and_swap() -> None:
    k = Kernel(KernelConfig(swap_bytes=1 << 30))
    fs = ProcFS(k)
    assert read_all(fs, "/proc/partitions") == b"major minor  #blocks  name\n\n 254        0  268435456 vda\n"
    assert read_all(fs, "/sys/block/vda/size") == b"536870912\n"
    assert read_all(fs, "/sys/block/vda/dev") == b"254:0\n"
    assert read_all(fs, "/sys/block/vda/queue/scheduler") == b"none [mq-deadline] kyber \n"
    assert read_all(fs, "/sys/block/vda/queue/logical_block_size") == b"512\n"
    assert read_all(fs, "/sys/block/vda/inflight") == b"       0        0\n"
    assert read_all(fs, "/proc/swaps").decode().splitlines()[1].split() == ["/swapfile", "file", "1048572", "0", "-2"]
    assert fs.readdir("/sys/block", ROOT) == ["vda"]
    # the journal's commits: the idle trickle of pgpgout, on the root disk
    k.advance(100)
    st = diskstats(fs)["vda"]
    assert st[6] == vmstat(fs)["pgpgout"] * 2 and st[4] == k.now // (5 * NS) == st[15]


def test_no_swap_no_swaps_line() -> None:
    fs = ProcFS(Kernel())
    assert read_all(fs, "/proc/swaps") == b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


# -- scenarios ------------------------------------------------------------------------


def test_scenario_disks_partitions_mounts_and_swap() -> None:
    k = machine()
    fs = ProcFS(k)
    parts = read_all(fs, "/proc/partitions").decode().splitlines()[2:]
    assert [ln.split() for ln in parts] == [
        ["254", "0", "16777216", "vda"], ["254", "1", "524288", "vda1"], ["254", "2", "1048576", "vda2"],
        ["254", "3", str((16 * 2 ** 21 - 34 - 2048 - 3 * 2 ** 20) // 2048 * 2048 // 2), "vda3"],
        ["254", "16", "67108864", "vdb"], ["259", "0", "33554432", "nvme0n1"],
        ["259", "1", str((32 * 2 ** 21 - 34 - 2048) // 2048 * 2048 // 2), "nvme0n1p1"]]
    assert read_all(fs, "/sys/block/vda/vda2/start") == b"%d\n" % (2048 + 2 ** 20)
    assert read_all(fs, "/sys/block/vda/vda2/partition") == b"2\n"
    assert read_all(fs, "/sys/block/nvme0n1/nvme0n1p1/dev") == b"259:1\n"
    assert read_all(fs, "/sys/block/nvme0n1/queue/rotational") == b"0\n"
    assert fs.readdir("/sys/block", ROOT) == ["nvme0n1", "vda", "vdb"]
    # the mounts sit on their devices, as mountinfo shows them (df's view)
    mi = {ln.split()[4]: ln.split() for ln in read_all(fs, "/proc/1/mountinfo").decode().splitlines()}
    assert mi["/"][2] == "254:3" and mi["/"][-3:-1] == ["ext4", "/dev/vda3"]
    assert mi["/boot"][2] == "254:1" and mi["/data"][2] == "254:16" and mi["/srv"][2] == "259:1"
    assert mi["/data"][-3:-1] == ["xfs", "/dev/vdb"]
    for mp, dev in (("/boot", "vda1"), ("/data", "vdb"), ("/srv", "nvme0n1p1")):
        disk = dev[:3] if dev.startswith("vd") else "nvme0n1"
        sub = "" if dev == disk else f"/{dev}"
        assert read_all(fs, f"/sys/block/{disk}{sub}/dev").decode().strip() == mi[mp][2]
    assert read_all(fs, "/proc/swaps").decode().splitlines()[1].split() == [
        "/dev/vda2", "partition", "262140", "0", "10"]


@pytest.mark.parametrize("change, msg", [
    (lambda d: d["disk"][0]["partition"][2].pop("mount"), "no disk or partition has mount"),
    (lambda d: d["disk"][1].update(name="xyz"), "expected vdX"),
    (lambda d: d["disk"][1].update(name="vda"), "named twice"),
    (lambda d: d["disk"][0]["partition"][0].update(start=1, size="20G"), "does not fit"),
    (lambda d: d["disk"][0]["partition"][1].update(size="128M"), "smaller than the swap area"),
    (lambda d: d["disk"][1].update(mount="/boot"), "not a free absolute mountpoint"),
    (lambda d: d["disk"][0].update(scheduler="cfq"), "scheduler"),
    (lambda d: d["disk"][0].update(size=1000), "multiple of 512"),
    (lambda d: d["swap"].update(on="/dev/vdz"), "swap is on partition"),
    (lambda d: d["disk"][0].update(color=1), "unknown key"),
])
def test_scenario_disk_errors(change, msg) -> None:
    import copy
    doc = copy.deepcopy(DISKS)
    change(doc)
    with pytest.raises(ScenarioError, match=msg):
        scenario.build(doc)


def test_swap_on_an_unknown_device() -> None:
    import copy
    doc = copy.deepcopy(DISKS)
    doc["disk"][0]["partition"][1].pop("swap")
    doc["swap"]["on"] = "/dev/vdz"
    with pytest.raises(ScenarioError, match="no block device"):
        scenario.build(doc)


# -- the counters and the memory model -------------------------------------------------------


def test_reads_land_on_the_files_disk_and_agree_with_read_bytes_and_pgpgin() -> None:
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["reader"])
    k.advance(0.05)  # its exec's reads complete
    d0, v0 = diskstats(fs), vmstat(fs)
    io0 = k.io_accounting(p)["read_bytes"]
    k.read(p, "/data/table", 1 << 20, 0)         # 256 KiB file: 64 pages from vdb
    k.read(p, "/srv/www/index.html", 8192, 0)      # 2 pages from nvme0n1p1
    k.read(p, "/data/table", 4096, 0)             # cached: nothing
    assert diskstats(fs)["vdb"][8] == 1 and read_all(fs, "/sys/block/vdb/inflight") == b"       1        0\n"
    k.advance(0.05)  # the requests complete
    d1, v1 = diskstats(fs), vmstat(fs)
    assert d1["vdb"][8] == 0 and read_all(fs, "/sys/block/vdb/inflight") == b"       0        0\n"
    delta = {n: [a - b for a, b in zip(d1[n], d0[n])] for n in d1}
    assert delta["vdb"][2] * 512 == 256 << 10 and delta["vdb"][0] == 1   # one request, no merges
    assert delta["nvme0n1p1"][2] * 512 == 8192 and delta["nvme0n1"][2] == delta["nvme0n1p1"][2]
    assert delta["vda"][2] == 0
    assert k.io_accounting(p)["read_bytes"] - io0 == (delta["vdb"][2] + delta["nvme0n1"][2]) * 512
    assert (v1["pgpgin"] - v0["pgpgin"]) * 2 == sum(delta[n][2] for n in whole_disks(k))
    # a read has ticks: the service model (latency plus transfer) of its disk
    q = k.block.by_name["vdb"].disk.queue
    assert delta["vdb"][3] == q.service_ns(512) // 1_000_000 and delta["vdb"][9] == delta["vdb"][3]


def test_vmstat_pgpgin_pgpgout_are_all_disks_sectors_halved() -> None:
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["writer"])
    for i in range(8):
        k.write(p, f"/data/f{i}", 1 << 20, 0)
        k.read(p, f"/boot/img{i}", 1 << 16, 0)
    execute(k, "sync", {})
    k.advance(60)
    d, v = diskstats(fs), vmstat(fs)
    disks = whole_disks(k)
    assert v["pgpgin"] * 2 == sum(d[n][2] for n in disks)
    assert v["pgpgout"] * 2 == sum(d[n][6] for n in disks)
    # and a disk's counters are those of its partitions (no I/O to vda itself)
    parts = ["vda1", "vda2", "vda3"]
    for col in (0, 2, 4, 6, 15):
        assert d["vda"][col] == sum(d[x][col] for x in parts)


def test_flusher_writes_expired_inodes_every_5_seconds() -> None:
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["writer"])
    k.write(p, "/data/log", 4 << 20, 0)
    d0, v0 = diskstats(fs), vmstat(fs)
    assert v0["nr_dirty"] == 1024
    k.advance(29)
    assert vmstat(fs)["nr_dirty"] == 1024 and diskstats(fs)["vdb"][4] == d0["vdb"][4]
    k.advance(6)   # dirty_expire 30 s, at the next 5 s wake-up
    d1, v1 = diskstats(fs), vmstat(fs)
    assert v1["nr_dirty"] == 0 and v1["nr_written"] - v0["nr_written"] == 1024
    assert (d1["vdb"][6] - d0["vdb"][6]) * 512 == 4 << 20
    assert d1["vdb"][4] - d0["vdb"][4] == 1 and d1["vdb"][5] - d0["vdb"][5] == 3  # 4 bios, 1 request
    assert b"Dirty:                 0 kB" in read_all(fs, "/proc/meminfo")


def test_sync_and_fsync_write_and_flush() -> None:
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["db"])
    k.write(p, "/data/a", 64 << 10, 0)
    k.write(p, "/srv/b", 32 << 10, 0)
    d0 = diskstats(fs)
    gen = k.generation
    assert execute(k, "fsync", {"pid": p, "path": "/data/a"}) == 16
    assert k.generation > gen
    k.advance(0.05)
    d1 = diskstats(fs)
    assert d1["vdb"][6] - d0["vdb"][6] == 128 and d1["vdb"][15] - d0["vdb"][15] == 1
    assert d1["nvme0n1p1"][6] == d0["nvme0n1p1"][6]
    assert execute(k, "sync", {}) == 8
    k.advance(0.05)
    d2 = diskstats(fs)
    assert d2["nvme0n1p1"][6] - d1["nvme0n1p1"][6] == 64
    for dev in ("vda1", "vda3", "vdb", "nvme0n1p1"):   # every mounted device flushed once
        assert d2[dev][15] - d1[dev][15] == 1, dev
    assert d2["vda2"][15] == d1["vda2"][15]            # swap is not a filesystem
    assert vmstat(fs)["nr_dirty"] == 0
    assert execute(k, "sync", {}) == 0


def test_fsync_and_disks_errnos() -> None:
    k = machine()
    p = k.spawn(["x"])
    for args, err in (({"pid": p, "path": "/nope"}, errno.ENOENT), ({"pid": 999, "path": "/data/a"}, errno.ESRCH),
                      ({"pid": p}, errno.EINVAL)):
        with pytest.raises(CommandError) as e:
            execute(k, "fsync", args)
        assert e.value.errno == err
    gen = k.generation
    with pytest.raises(CommandError) as e:
        execute(k, "disks", {"name": "sdq"})
    assert e.value.errno == errno.ENOENT
    assert k.generation == gen
    info = execute(k, "disks", {"name": "vda2"})
    assert info["swap"] and info["dev"] == "254:2" and info["mount"] is None
    assert [d["name"] for d in execute(k, "disks", {})] == ["vda", "vda1", "vda2", "vda3", "vdb", "nvme0n1",
                                                             "nvme0n1p1"]


def test_swap_io_goes_to_the_swap_partition() -> None:
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["anon"])
    a = k.mmap(p, 4 << 20)
    k.touch(p, a, 4 << 20)
    d0, v0 = diskstats(fs), vmstat(fs)
    root0 = k.block.by_name["vda3"].stats.sectors[STAT_WRITE]
    k.madvise(p, a, 4 << 20, MADV_PAGEOUT)
    k.advance(0.5)
    d1, v1 = diskstats(fs), vmstat(fs)
    out = v1["pswpout"] - v0["pswpout"]
    assert out == 1024
    assert (d1["vda2"][6] - d0["vda2"][6]) == out * 8 and k.block.by_name["vda3"].stats.sectors[STAT_WRITE] == root0
    # slots are contiguous: one bio a page, merged into max_sectors_kb requests
    reqs = d1["vda2"][4] - d0["vda2"][4]
    assert reqs >= 1024 * 4 // 4096 and d1["vda2"][5] - d0["vda2"][5] == 1024 - reqs
    assert k.shrink_swap_cache() == 1024  # reclaim frees the clean swap-cache folios: no I/O
    d1b = diskstats(fs)
    assert d1b["vda2"][6] == d1["vda2"][6]
    k.touch(p, a, 1 << 20, write=False)
    k.advance(0.5)
    d2, v2 = diskstats(fs), vmstat(fs)
    inn = v2["pswpin"] - v1["pswpin"]
    assert inn > 0 and (d2["vda2"][2] - d1["vda2"][2]) == inn * 8
    assert (v2["pgpgin"] - v1["pgpgin"]) * 2 == d2["vda"][2] - d1["vda"][2] + 0
    assert (v1["pgpgout"] - v0["pgpgout"]) * 2 == sum(d1[n][6] - d0[n][6] for n in whole_disks(k))


def test_swap_file_io_goes_to_the_root_disk() -> None:
    k = Kernel(KernelConfig(swap_bytes=64 << 20))
    k.create_init()
    p = k.spawn(["anon"])
    a = k.mmap(p, 1 << 20)
    k.touch(p, a, 1 << 20)
    w0 = k.block.root.stats.sectors[STAT_WRITE]
    k.madvise(p, a, 1 << 20, MADV_PAGEOUT)
    assert k.block.in_flight(k.block.root, k.now)[1] > 0
    k.advance(0.05)
    assert k.block.root.stats.sectors[STAT_WRITE] - w0 == 256 * 8
    assert k.block.in_flight(k.block.root, k.now) == (0, 0)
    assert read_all(ProcFS(k), "/proc/swaps").split()[5:7] == [b"/swapfile", b"file"]


def test_truncate_on_a_discard_mount_discards_the_freed_blocks() -> None:
    k = Kernel()
    k.create_init()
    fs = ProcFS(k)
    p = k.spawn(["t"])
    k.write(p, "/var/tmp/big", 1 << 20, 0)
    d0 = diskstats(fs)["vda"]
    k.truncate(p, "/var/tmp/big", 4096)
    k.advance(0.05)
    d1 = diskstats(fs)["vda"]
    assert d1[11] - d0[11] == 1 and d1[13] - d0[13] == 255 * 8   # the root is mounted with discard
    k2 = machine()
    p2 = k2.spawn(["t"])
    k2.write(p2, "/data/big", 1 << 20, 0)
    k2.truncate(p2, "/data/big", 0)
    assert k2.block.by_name["vdb"].stats.ios[STAT_DISCARD] == 0  # xfs mounted without it


def test_workload_io_lands_on_its_disk() -> None:
    import copy
    doc = copy.deepcopy(DISKS)
    doc["process"] = [{"name": "db", "argv": ["postgres"], "workloads": [
        {"pattern": "uniform", "rate": 10, "file": "/data/db", "read_rate": "64K", "write_rate": "128K",
         "span": "1M"}]}]
    k = scenario.build(doc)
    fs = ProcFS(k)
    d0 = diskstats(fs)["vdb"]
    k.advance(100)
    d1 = diskstats(fs)["vdb"]
    assert d1[2] > d0[2] and d1[6] > d0[6]  # read from it, written back to it
    assert d1[6] - d0[6] == (vmstat(fs)["nr_written"]) * 8


def test_queue_attribute_writes_and_their_errnos() -> None:
    k = machine()
    fs = ProcFS(k)
    path = "/sys/block/vdb/queue/scheduler"
    w = fs.open(path, os.O_WRONLY, ROOT)
    assert w.write(b"kyber\n", 0) == 6
    assert read_all(fs, path) == b"none mq-deadline [kyber] \n"
    assert errno_of(w.write, b"cfq", 0) == errno.EINVAL
    assert w.write(b"", 0) == 0  # sysfs_kf_write: nothing to store (the host's 6.18 answers 0 too)
    assert read_all(fs, path) == b"none mq-deadline [kyber] \n"
    nr = fs.open("/sys/block/vdb/queue/nr_requests", os.O_WRONLY, ROOT)
    for bad in (b"x", b"99999"):
        assert errno_of(nr.write, bad, 0) == errno.EINVAL
    assert read_all(fs, "/sys/block/vdb/queue/nr_requests") == b"256\n"
    nr.write(b"1", 0)  # below BLKDEV_MIN_RQ: raised to it
    assert read_all(fs, "/sys/block/vdb/queue/nr_requests") == b"4\n"
    nr.write(b"64", 0)
    assert read_all(fs, "/sys/block/vdb/queue/nr_requests") == b"64\n"
    assert errno_of(fs.open, "/sys/block/vdb/size", os.O_WRONLY, ROOT) == errno.EACCES
    assert errno_of(fs.open, "/sys/block/vda1", os.O_RDONLY, ROOT) == errno.ENOENT


def test_sixty_four_disks_render_fast() -> None:
    doc = {"machine": {"mem": "1G"}, "disk": [
        {"name": "sd" + (chr(97 + i) if i < 26 else chr(96 + i // 26) + chr(97 + i % 26)), "size": "1T",
         "partition": [{"size": "1G"}, {"size": "100G"}, {"size": "100G"},
                       {"mount": "/" if i == 0 else f"/d{i}"}]} for i in range(64)]}
    k = scenario.build(doc)
    fs = ProcFS(k)
    p = k.spawn(["io"])
    for i in range(1, 64):
        k.write(p, f"/d{i}/x", 1 << 16, 0)
    execute(k, "sync", {})
    assert len(diskstats(fs)) == 64 * 5
    t0 = time.perf_counter()
    for _ in range(20):
        k.advance(1)
        read_all(fs, "/proc/diskstats")
        read_all(fs, "/proc/partitions")
    per = (time.perf_counter() - t0) / 20
    assert per < 0.05, per
    stats = diskstats(fs)
    assert all(stats[f"sd{chr(97 + i)}4"][6] >= 128 for i in range(1, 26))


def test_sys_dev_block_links() -> None:
    k = machine()
    fs = ProcFS(k)
    names = fs.readdir("/sys/dev/block", ROOT)
    assert names == ["254:0", "254:1", "254:2", "254:3", "254:16", "259:0", "259:1"]
    assert fs.readlink("/sys/dev/block/254:0", ROOT) == "../../block/vda"
    assert fs.readlink("/sys/dev/block/259:1", ROOT) == "../../block/nvme0n1/nvme0n1p1"
    for bad in ("254:99", "x", "254:00"):
        assert errno_of(fs.getattr, f"/sys/dev/block/{bad}", ROOT) == errno.ENOENT


def test_example_disks_scenario() -> None:
    k = scenario.load("examples/disks.toml", clock="manual")
    fs = ProcFS(k)
    k.advance(60)
    d = diskstats(fs)
    assert d["nvme0n1"][2] > 0 and d["nvme0n1"][6] > 0 and d["sda1"][6] > 0 and d["sda"][6] == d["sda1"][6]
    assert read_all(fs, "/sys/block/sda/queue/scheduler") == b"none mq-deadline kyber [bfq] \n"
    assert read_all(fs, "/proc/swaps").split()[-5:] == [b"/dev/vda2", b"partition", b"2097148", b"0", b"10"]


def test_in_flight_requests_and_io_ticks_up_to_now() -> None:
    """A burst keeps the disk busy for its length: its requests are in
    flight and count once served; io_ticks never runs ahead of the clock."""
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["dd"])
    k.write(p, "/data/big", 256 << 20, 0)
    t0, d0 = k.now, diskstats(fs)["vdb"]
    execute(k, "fsync", {"pid": p, "path": "/data/big"})
    q = k.block.by_name["vdb"].disk.queue
    reqs = (256 << 10) // q.max_sectors_kb
    busy = reqs * q.service_ns(q.max_sectors_kb * 2) + q.latency_ns  # the writes, then the flush
    seen = []
    while k.now - t0 < busy + 10 ** 8:
        d = diskstats(fs)["vdb"]
        assert d[9] - d0[9] <= (k.now - t0) // 10 ** 6 + 1   # io_ticks (ms) at most the time elapsed
        assert (d[4] - d0[4]) + (d[15] - d0[15]) + d[8] == reqs + 1  # done + in flight
        seen.append(d[8])
        k.advance(0.05)
    d = diskstats(fs)["vdb"]
    assert d[8] == 0 and d[4] - d0[4] == reqs and d[15] - d0[15] == 1 and (d[6] - d0[6]) * 512 == 256 << 20
    assert seen[0] == reqs + 1 and seen == sorted(seen, reverse=True)
    assert d[9] - d0[9] == busy // 10 ** 6


def test_workload_io_is_issued_when_due_not_in_one_burst() -> None:
    """One long advance: each call's requests are issued at the instant its
    bytes fall due, so they do not queue behind each other (await is the
    service time) and io_ticks stays below the time elapsed."""
    import copy
    doc = copy.deepcopy(DISKS)
    doc["process"] = [{"name": "scan", "argv": ["scan"], "workloads": [
        {"pattern": "uniform", "rate": 10, "file": "/data/huge", "read_rate": "1M", "io_size": "64K"}]}]
    k = scenario.build(doc)
    k.vfs.file("/data/huge", size=1 << 30)
    fs = ProcFS(k)
    d0 = diskstats(fs)["vdb"]
    k.advance(100)
    d = [a - b for a, b in zip(diskstats(fs)["vdb"], d0)]
    q = k.block.by_name["vdb"].disk.queue
    assert d[0] >= 1500 and d[2] * 512 == d[0] * (64 << 10)   # 1 MiB/s in 64 KiB reads
    assert d[3] <= d[0] * (q.service_ns(128) // 10 ** 6 + 1)  # no queueing
    assert d[9] < 100_000
