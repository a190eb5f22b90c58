"""/sys/block's files (procsim/procfs/sysfs_block.py) against this host's
6.18 where the host has the same device in the same state, and the
sysfs stores (procsim/block/blk_sysfs.py): each rule and errno as the
host's loop0 and vda answered them (by hand: the suite never writes the
host's sysfs), a refused write changing nothing."""

from __future__ import annotations

import errno
import os

import pytest

import tomllib

from procfs_helpers import ROOT, errno_of, read_all
from procsim import scenario
from procsim.block.blk_sysfs import queue_snapshot
from procsim.kernel import Kernel
from procsim.procfs.tree import ProcFS


def load_scenario(text: str) -> Kernel:
    return scenario.build(tomllib.loads(text))

HOST = "/sys/block"


def _host(rel: str) -> bytes | None:
    try:
        with open(os.path.join(HOST, rel), "rb") as f:
            return f.read()
    except OSError:
        return None


def _reference_vda() -> bool:
    """The host is the reference VM: a 256 GiB virtio disk vda, 254:0."""
    return _host("vda/dev") == b"254:0\n" and _host("vda/size") == b"536870912\n"


# what the default machine's vda shows as the host's does (not the counters, diskseq, mq's cpu_list: the
# machine's CPUs, nor the elevator's tunables, trace/ and serial, which the model leaves out)
VDA_FILES = ("alignment_offset", "cache_type", "capability", "dev", "discard_alignment", "events", "events_async",
             "events_poll_msecs", "ext_range", "hidden", "partscan", "range", "removable", "ro", "size",
             "mq/0/nr_tags", "mq/0/nr_reserved_tags", "power/control", "power/runtime_active_time",
             "power/runtime_status", "power/runtime_suspended_time")
# queue attributes Linux can write that the model keeps constant: 0444 here, 0644 on Linux
UNSTORED = {"add_random", "io_poll", "io_poll_delay", "iostats", "iostats_passthrough", "nomerges", "rq_affinity",
            "stable_writes", "wbt_lat_usec", "write_zeroes_unmap_max_bytes"}


@pytest.fixture(scope="module")
def fs() -> ProcFS:
    return ProcFS(Kernel())


def test_default_vda_files_as_the_hosts(fs) -> None:
    if not _reference_vda():
        pytest.skip("the host is not the reference VM (no 256 GiB vda at 254:0)")
    for rel in VDA_FILES:
        assert read_all(fs, f"/sys/block/vda/{rel}") == _host(f"vda/{rel}"), rel
    for a in fs.readdir("/sys/block/vda/queue", ROOT):
        host = _host(f"vda/queue/{a}")
        if host is not None:
            assert read_all(fs, f"/sys/block/vda/queue/{a}") == host, a
    # the uevent's lines but DISKSEQ (the host's loops took the first numbers)
    assert read_all(fs, "/sys/block/vda/uevent").split(b"\n")[:4] == _host("vda/uevent").split(b"\n")[:4]
    assert fs.readdir("/sys/block/vda/holders", ROOT) == os.listdir(f"{HOST}/vda/holders") == []
    assert fs.readdir("/sys/block/vda/slaves", ROOT) == os.listdir(f"{HOST}/vda/slaves") == []


def test_modes_as_the_hosts(fs) -> None:
    if not _reference_vda():
        pytest.skip("the host is not the reference VM")
    checked = 0
    for sub in ("", "queue/", "power/", "mq/0/"):
        for a in fs.readdir(f"/sys/block/vda/{sub}".rstrip("/"), ROOT):
            try:
                host = os.lstat(f"{HOST}/vda/{sub}{a}").st_mode & 0o7777
            except OSError:
                continue
            if os.path.islink(f"{HOST}/vda/{sub}{a}") or (sub == "queue/" and a in UNSTORED):
                continue
            mode = fs.getattr(f"/sys/block/vda/{sub}{a}", ROOT).mode & 0o7777
            assert mode == host, f"{sub}{a}: {mode:o} != {host:o}"
            checked += 1
    assert checked > 60


def test_autosuspend_delay_is_eio_as_on_the_host(fs) -> None:
    path = "/sys/block/vda/power/autosuspend_delay_ms"
    assert errno_of(read_all, fs, path) == errno.EIO
    if os.path.exists(f"{HOST}/vda/power/autosuspend_delay_ms"):
        with pytest.raises(OSError) as e:
            open(f"{HOST}/vda/power/autosuspend_delay_ms").read()
        assert e.value.errno == errno.EIO


LOOP_ZRAM = """
[[disk]]
name = "vda"
size = "8G"
mount = "/"

[[disk]]
name = "loop0"
size = "1G"

[[disk]]
name = "zram0"
size = "1G"
"""


@pytest.fixture(scope="module")
def lz() -> ProcFS:
    return ProcFS(load_scenario(LOOP_ZRAM))


@pytest.mark.parametrize("dev, rel", [
    (d, r) for d in ("loop0", "zram0") for r in (
        "range", "ext_range", "partscan", "removable", "ro", "hidden", "capability", "events_poll_msecs",
        "queue/logical_block_size", "queue/physical_block_size", "queue/max_hw_sectors_kb", "queue/max_sectors_kb",
        "queue/rotational", "queue/nr_requests", "queue/scheduler", "queue/read_ahead_kb", "mq/0/nr_tags")] +
    [("zram0", r) for r in ("queue/discard_granularity", "queue/discard_max_bytes", "queue/write_cache")])
def test_loop_and_zram_as_the_hosts(lz, dev, rel) -> None:
    """The host's unbound loop0 and its zram0 (size 0: what does not depend on a backing file)."""
    if not os.path.isdir(f"{HOST}/{dev}"):
        pytest.skip(f"the host has no {dev}")
    host = _host(f"{dev}/{rel}")
    if host is None:  # not there on the host (zram is bio-based: no nr_requests, scheduler, mq/): nor here
        assert errno_of(read_all, lz, f"/sys/block/{dev}/{rel}") == errno.ENOENT
    else:
        assert read_all(lz, f"/sys/block/{dev}/{rel}") == host


def test_partition_files_and_read_only() -> None:
    k = load_scenario("""
[[disk]]
name = "sda"
size = "64G"
removable = true
  [[disk.partition]]
  size = "1G"
  mount = "/boot"
  [[disk.partition]]
  ro = true
  mount = "/"

[[disk]]
name = "vdb"
size = "8G"
ro = true
mount = "/srv"
""")
    fs = ProcFS(k)
    assert sorted(fs.readdir("/sys/block/sda/sda2", ROOT)) == [
        "alignment_offset", "dev", "discard_alignment", "holders", "inflight", "partition", "power", "ro", "size",
        "start", "stat", "subsystem", "uevent"]
    assert read_all(fs, "/sys/block/sda/sda2/ro") == b"1\n" and read_all(fs, "/sys/block/sda/sda1/ro") == b"0\n"
    assert read_all(fs, "/sys/block/sda/ro") == b"0\n"  # a partition's BLKROSET is its own
    assert read_all(fs, "/sys/block/vdb/ro") == b"1\n"
    assert read_all(fs, "/sys/block/sda/removable") == b"1\n"
    assert read_all(fs, "/sys/block/sda/events") == b"media_change\n"  # sd's removable media
    assert read_all(fs, "/sys/block/sda/sda2/uevent") == b"MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nPARTN=2\n"
    assert read_all(fs, "/sys/block/vdb/uevent").endswith(b"DISKSEQ=2\n")  # registration order
    mi = read_all(fs, "/proc/1/mountinfo").decode()
    srv = next(line for line in mi.splitlines() if " /srv " in line)
    assert " ro,relatime " in srv and srv.endswith(" /dev/vdb ro")  # a read-only disk mounts read-only
    assert fs.readdir("/sys/class/block", ROOT) == ["sda", "sda1", "sda2", "vdb"]
    assert fs.readlink("/sys/class/block/sda1", ROOT) == "../../block/sda/sda1"
    assert fs.readlink("/sys/block/sda/subsystem", ROOT) == "../../class/block"


def _w(fs: ProcFS, path: str, data: bytes) -> int:
    h = fs.open(path, os.O_WRONLY, ROOT)
    try:
        return h.write(data, 0)
    finally:
        h.release()


def _q(fs: ProcFS, disk: str, attr: str) -> bytes:
    return read_all(fs, f"/sys/block/{disk}/queue/{attr}")


TWO = """
[[disk]]
name = "vda"
size = "8G"
mount = "/"

[[disk]]
name = "loop0"
size = "1G"
"""


# (disk, attribute, written, errno or what reads back) as this host's 6.18 answered on loop0 and vda
STORES = [
    ("loop0", "nr_requests", b"0", b"4\n"), ("loop0", "nr_requests", b"3", b"4\n"),
    ("loop0", "nr_requests", b"64\n", b"64\n"), ("loop0", "nr_requests", b"0128", b"128\n"),
    ("loop0", "nr_requests", b"129", errno.EINVAL), ("loop0", "nr_requests", b"-1", errno.EINVAL),
    ("loop0", "nr_requests", b" 64", errno.EINVAL), ("loop0", "nr_requests", b"64 ", errno.EINVAL),
    ("loop0", "nr_requests", b"0x40", errno.EINVAL), ("loop0", "nr_requests", b"abc", errno.EINVAL),
    ("vda", "nr_requests", b"2048", b"2048\n"), ("vda", "nr_requests", b"2049", errno.EINVAL),
    ("loop0", "read_ahead_kb", b"0", b"0\n"), ("loop0", "read_ahead_kb", b"7", b"4\n"),
    ("loop0", "read_ahead_kb", b"99999999", b"99999996\n"), ("loop0", "read_ahead_kb", b"4294967296", errno.EINVAL),
    ("loop0", "read_ahead_kb", b"-1", errno.EINVAL), ("loop0", "read_ahead_kb", b"0x80", errno.EINVAL),
    ("loop0", "max_sectors_kb", b"4", b"4\n"), ("loop0", "max_sectors_kb", b"3", errno.EINVAL),
    ("loop0", "max_sectors_kb", b"999999999", b"1280\n"), ("loop0", "max_sectors_kb", b"2000", b"1280\n"),
    ("loop0", "max_sectors_kb", b"abc", errno.EINVAL),
    ("loop0", "rotational", b"2", b"1\n"), ("loop0", "rotational", b"-1", errno.EINVAL),
    ("loop0", "rotational", b"y", errno.EINVAL),
    ("loop0", "discard_max_bytes", b"1", errno.EINVAL), ("loop0", "discard_max_bytes", b"abc", errno.EINVAL),
    ("loop0", "discard_max_bytes", b"99999999999999999999", errno.EINVAL),
    ("vda", "discard_max_bytes", b"4097", errno.EINVAL), ("vda", "discard_max_bytes", b"8192", b"8192\n"),
    ("loop0", "scheduler", b"bogus", errno.EINVAL), ("loop0", "scheduler", b" kyber ", b"none mq-deadline [kyber] \n"),
    ("loop0", "write_cache", b"bogus", errno.EINVAL),
]


@pytest.mark.parametrize("disk, attr, data, want", STORES)
def test_queue_store_rules(disk, attr, data, want) -> None:
    k = load_scenario(TWO)
    fs = ProcFS(k)
    q = k.block.by_name[disk].disk.queue
    before = queue_snapshot(q)
    if isinstance(want, int):
        assert errno_of(_w, fs, f"/sys/block/{disk}/queue/{attr}", data) == want
        assert queue_snapshot(q) == before
    else:
        assert _w(fs, f"/sys/block/{disk}/queue/{attr}", data) == len(data)
        assert _q(fs, disk, attr) == want


def test_scheduler_switch_resets_nr_requests_and_the_same_one_does_not() -> None:
    """On the host: loop0 (depth 128) none -> mq-deadline gives 256, -> kyber
    256, -> none 128; vda none 128, mq-deadline 256."""
    k = load_scenario(TWO)
    fs = ProcFS(k)
    _w(fs, "/sys/block/loop0/queue/nr_requests", b"64")
    _w(fs, "/sys/block/loop0/queue/scheduler", b"none")  # the current one: a no-op
    assert _q(fs, "loop0", "nr_requests") == b"64\n"
    for sched, nr in ((b"mq-deadline", b"256\n"), (b"kyber", b"256\n"), (b"none\n", b"128\n")):
        _w(fs, "/sys/block/loop0/queue/scheduler", sched)
        assert _q(fs, "loop0", "nr_requests") == nr
    _w(fs, "/sys/block/vda/queue/scheduler", b"none")
    assert _q(fs, "vda", "nr_requests") == b"128\n"
    assert _w(fs, "/sys/block/vda/queue/scheduler", b"") == 0  # zero bytes: nothing stored


def test_write_cache_and_other_disk_stores() -> None:
    k = load_scenario(TWO + 'write_cache = "write through"\n')
    fs = ProcFS(k)
    # a device without a volatile cache stays write through (the host's unbound loop0)
    for data in (b"write back", b"write backXYZ", b"none"):
        assert _w(fs, "/sys/block/loop0/queue/write_cache", data) == len(data)
        assert _q(fs, "loop0", "write_cache") == b"write through\n"
    _w(fs, "/sys/block/vda/queue/write_cache", b"write through\n")
    assert _q(fs, "vda", "write_cache") == b"write through\n"
    _w(fs, "/sys/block/vda/queue/write_cache", b"write back")
    assert _q(fs, "vda", "write_cache") == b"write back\n"
    for data, err in ((b"1000", errno.ENODEV), (b"-1", errno.ENODEV), (b"-2", errno.EINVAL), (b"abc", errno.EINVAL)):
        assert errno_of(_w, fs, "/sys/block/loop0/events_poll_msecs", data) == err
    assert _w(fs, "/sys/block/loop0/uevent", b"change") == 6
    assert errno_of(_w, fs, "/sys/block/loop0/uevent", b"bogus") == errno.EINVAL
    assert errno_of(_w, fs, "/sys/block/vda/power/control", b"sometimes") == errno.EINVAL
    assert _w(fs, "/sys/block/vda/power/control", b"on\n") == 3
    assert read_all(fs, "/sys/block/vda/power/control") == b"on\n"


def test_removable_sd_polls_events() -> None:
    k = load_scenario("""
[[disk]]
name = "sda"
size = "8G"
removable = true
mount = "/"
""")
    fs = ProcFS(k)
    assert _w(fs, "/sys/block/sda/events_poll_msecs", b"2000") == 4
    assert read_all(fs, "/sys/block/sda/events_poll_msecs") == b"2000\n"
    assert errno_of(_w, fs, "/sys/block/sda/events_poll_msecs", b"-5") == errno.EINVAL
    assert read_all(fs, "/sys/block/sda/events_poll_msecs") == b"2000\n"


@pytest.mark.parametrize("extra, msg", [
    ('scheduler = "cfq"', "scheduler"), ("nr_requests = 5000", "nr_requests"), ("read_ahead_kb = -1", "read_ahead_kb"),
    ("max_sectors_kb = 2", "max_sectors_kb"), ("queue_depth = 0", "queue_depth"),
    ("physical_block_size = 256", "physical_block_size"), ("discard_granularity = 1000", "discard_granularity")])
def test_scenario_queue_values_follow_the_stores(extra, msg) -> None:
    from procsim.scenario.schema import ScenarioError
    with pytest.raises(ScenarioError, match=msg):
        load_scenario(f'[[disk]]\nname = "vda"\nsize = "8G"\nmount = "/"\n{extra}\n')


def test_scenario_queue_values() -> None:
    k = load_scenario('[[disk]]\nname = "sda"\nsize = "8G"\nmount = "/"\nscheduler = "none"\nqueue_depth = 64\n'
                      'max_sectors_kb = 100000\nread_ahead_kb = 6\n')
    fs = ProcFS(k)
    assert _q(fs, "sda", "nr_requests") == b"64\n" and read_all(fs, "/sys/block/sda/mq/0/nr_tags") == b"64\n"
    assert _q(fs, "sda", "max_sectors_kb") == b"32767\n" and _q(fs, "sda", "read_ahead_kb") == b"4\n"
