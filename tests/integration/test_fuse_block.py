"""Block devices through a real mount: sysstat's iostat and procps'
vmstat -d under the namespace runner (MNT/proc over /proc, MNT/sys over
/sys), psutil's disk_io_counters, disk_partitions and swap_memory, each
compared with the model's `disks` query and counters."""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import psutil
import pytest

from fusehelpers import psutil_procfs

pytestmark = pytest.mark.fuse

SCENARIO = """
[machine]
mem = "4G"
swap = "512M"

[[disk]]
name = "vda"
size = "32G"
  [[disk.partition]]
  size = "1G"
  mount = "/boot"
  [[disk.partition]]
  size = "1G"
  swap = true
  [[disk.partition]]
  mount = "/"

[[disk]]
name = "vdb"
size = "100G"
mount = "/data"
fstype = "xfs"

[[process]]
name = "db"
argv = ["/usr/lib/postgresql/15/bin/postgres"]
workloads = [{ pattern = "uniform", rate = 100, file = "/data/base/16384", read_rate = "4M", write_rate = "1M", span = "8M" }]
"""

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


@pytest.fixture(scope="module")
def disks_machine():
    from mountd.pytest_plugin import mount_machine
    top = tempfile.mkdtemp(prefix="procsim-blk-")
    os.chmod(top, 0o755)
    m = mount_machine(os.path.join(top, "mnt"), SCENARIO)
    m.ctl.advance(seconds=120)  # the workload reads its file and the flusher writes it back
    try:
        yield m
    finally:
        m.umount()
        shutil.rmtree(top, ignore_errors=True)


def run(m, *argv: str) -> str:
    r = m.run(list(argv), bind_sys=True, capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r.stdout


def model(m) -> dict[str, dict]:
    return {d["name"]: d for d in m.ctl.disks()}


def test_the_model_moved(disks_machine):
    d = model(disks_machine)
    assert d["vdb"]["read_sectors"] > 0 and d["vdb"]["write_sectors"] > 0
    assert d["vda3"]["writes"] > 0  # the root journal


def test_vmstat_d(disks_machine):
    out = run(disks_machine, "vmstat", "-d")
    rows = {f[0]: [int(x) for x in f[1:]] for f in (ln.split() for ln in out.splitlines()[2:])}
    d = model(disks_machine)
    assert set(rows) == {"vda", "vdb"}  # disks only: partitions are not listed
    for name, r in rows.items():
        assert r[0] == d[name]["reads"] and r[2] == d[name]["read_sectors"]
        assert r[4] == d[name]["writes"] and r[5] == d[name]["write_merges"] and r[6] == d[name]["write_sectors"]
        assert r[8] == 0  # IO cur: nothing in flight
        assert r[9] == d[name]["io_ticks_ms"] // 1000


def test_iostat_d_totals(disks_machine):
    out = run(disks_machine, "iostat", "-d", "-k", "-p", "ALL")
    rows = {}
    for ln in out.splitlines():
        f = ln.split()
        if len(f) == 8 and f[0] not in ("Device",) and re.fullmatch(r"[\d.]+", f[5]):
            rows[f[0]] = f
    d = model(disks_machine)
    assert {"vda", "vdb"} <= set(rows)
    for name, f in rows.items():
        assert int(f[5]) == d[name]["read_sectors"] // 2, name
        assert int(f[6]) == d[name]["write_sectors"] // 2, name


def test_iostat_x_1_2(disks_machine):
    out = run(disks_machine, "iostat", "-x", "1", "2")
    reports = [blk for blk in out.split("Device") if "r/s" in blk]
    assert len(reports) == 2
    for rep in reports:
        names = {ln.split()[0] for ln in rep.splitlines()[1:] if ln.strip() and not ln.startswith("avg-cpu")
                 and re.match(r"\S+\s+[\d.]", ln)}
        assert {"vda", "vdb"} <= names


def test_psutil_disk_io_counters(disks_machine):
    d = model(disks_machine)
    with psutil_procfs(disks_machine):
        c = psutil.disk_io_counters(perdisk=True)
    assert set(c) == set(d)
    for name, io in c.items():
        assert io.read_count == d[name]["reads"] and io.write_count == d[name]["writes"]
        assert io.read_bytes == d[name]["read_sectors"] * 512
        assert io.write_bytes == d[name]["write_sectors"] * 512
        assert io.busy_time == d[name]["io_ticks_ms"]


def test_psutil_swap_memory(disks_machine):
    m = disks_machine
    with psutil_procfs(m):
        s = psutil.swap_memory()
    swaps = open(f"{m.proc}/swaps").read().splitlines()
    name, typ, size, used, prio = swaps[1].split()
    assert (name, typ, prio) == ("/dev/vda2", "partition", "-2")
    assert s.total == int(size) * 1024 == (512 << 20) - 4096
    assert s.used == int(used) * 1024
    vm = {a: int(b) for a, b in (ln.split() for ln in open(f"{m.proc}/vmstat"))}
    assert s.sin == vm["pswpin"] * 4096 and s.sout == vm["pswpout"] * 4096


def test_psutil_disk_partitions(disks_machine, tmp_path):
    """psutil reads PROCFS_PATH/filesystems and the mounts of realpath(PROCFS_PATH/self/mounts):
    through the mount, /proc/self is the (unsimulated) reader's own, so a procfs whose
    self is the machine's init stands in for a reader the machine runs."""
    m = disks_machine
    os.symlink(f"{m.proc}/filesystems", tmp_path / "filesystems")
    os.symlink(f"{m.proc}/1", tmp_path / "self")
    old = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(tmp_path)
    try:
        parts = {p.mountpoint: p for p in psutil.disk_partitions()}
    finally:
        psutil.PROCFS_PATH = old
    assert set(parts) == {"/", "/boot", "/data"}  # the block filesystems (no nodev ones)
    assert (parts["/"].device, parts["/"].fstype) == ("/dev/vda3", "ext4")
    assert (parts["/data"].device, parts["/data"].fstype) == ("/dev/vdb", "xfs")
    assert parts["/boot"].device == "/dev/vda1"
    # and the sizes df would put beside them: /sys/block agrees with /proc/partitions
    sizes = {f[3]: int(f[2]) for f in (ln.split() for ln in open(f"{m.proc}/partitions").read().splitlines()[2:])}
    assert int(open(f"{m.sys}/block/vda/vda1/size").read()) == sizes["vda1"] * 2 == 2 << 20
    assert int(open(f"{m.sys}/block/vdb/size").read()) == sizes["vdb"] * 2
    # /sys/dev/block/MAJ:MIN, as the mountinfo dev field names them, leads to the same device
    assert int(open(f"{m.sys}/dev/block/254:1/size").read()) == sizes["vda1"] * 2
    assert open(f"{m.sys}/dev/block/254:16/dev").read() == "254:16\n"


def test_swapon_show(disks_machine):
    out = run(disks_machine, "swapon", "--show", "--bytes", "--raw")
    assert out.splitlines() == ["NAME TYPE SIZE USED PRIO", f"/dev/vda2 partition {(512 << 20) - 4096} 0 -2"]


def test_vmstat_p_and_D(disks_machine):
    m = disks_machine
    d = model(m)
    out = run(m, "vmstat", "-p", "/dev/vda3").splitlines()
    assert out[0].split() == ["vda3", "reads", "read", "sectors", "writes", "requested", "writes"]
    assert [int(x) for x in out[1].split()] == [d["vda3"]["reads"], d["vda3"]["read_sectors"], d["vda3"]["writes"],
                                                d["vda3"]["write_sectors"]]
    summary = {ln.split(None, 1)[1].strip(): int(ln.split()[0]) for ln in run(m, "vmstat", "-D").splitlines()
               if ln.strip()}
    disks = [v for v in d.values() if not v["partition"]]
    assert summary["disks"] == len(disks) and summary["partitions"] == len(d) - len(disks)
    assert summary["total reads"] == sum(v["reads"] for v in disks)
    assert summary["read sectors"] == sum(v["read_sectors"] for v in disks)
    assert summary["writes"] == sum(v["writes"] for v in disks)
    assert summary["merged writes"] == sum(v["write_merges"] for v in disks)
    assert summary["written sectors"] == sum(v["write_sectors"] for v in disks)
