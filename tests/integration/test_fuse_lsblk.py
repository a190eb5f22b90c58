"""util-linux lsblk and findmnt, unmodified, against a mounted machine with
several disks: partitions, a read-only disk, a rotational SATA disk, a
mounted partition, a swap partition. Every value lsblk prints is compared
with the model (the `disks` query) and with what the scenario asked for;
the sysfs stores' errnos go through the real mount, and lsblk sees the
writes that succeed."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile

import pytest

pytestmark = pytest.mark.fuse

LSBLK = shutil.which("lsblk")
FINDMNT = shutil.which("findmnt")
if LSBLK is None:
    pytest.skip("no lsblk (util-linux) on this machine", allow_module_level=True)

SCENARIO = """
[machine]
mem = "4G"
swap = "1G"

[[disk]]
name = "vda"
size = "32G"
  [[disk.partition]]
  size = "1G"
  mount = "/boot"
  [[disk.partition]]
  size = "2G"
  swap = true
  [[disk.partition]]
  mount = "/"

[[disk]]
name = "vdb"
size = "8G"
ro = true
  [[disk.partition]]
  mount = "/srv/ro"

[[disk]]
name = "sda"
size = "2T"
scheduler = "bfq"
removable = true
  [[disk.partition]]
  size = "1T"
  mount = "/backup"
  [[disk.partition]]
  ro = true

[[disk]]
name = "nvme0n1"
size = "500G"
rotational = false
logical_block_size = 4096
physical_block_size = 4096
discard_granularity = 4096
mount = "/var/lib/db"
fstype = "xfs"
"""

COLS = "NAME,MAJ:MIN,SIZE,RO,RM,TYPE,MOUNTPOINTS,ROTA,LOG-SEC,PHY-SEC,DISC-GRAN,SCHED"
# every column lsblk takes from the model (not FSAVAIL and the like: the host's statvfs of the mountpoint path)
MODEL_COLS = ("NAME,KNAME,PATH,MAJ:MIN,SIZE,RO,RM,TYPE,MOUNTPOINTS,FSROOTS,ROTA,LOG-SEC,PHY-SEC,MIN-IO,OPT-IO,"
              "ALIGNMENT,DISC-ALN,DISC-GRAN,DISC-MAX,DISC-ZERO,RA,RQ-SIZE,SCHED,PKNAME,START,ZONED,DAX,WSAME,"
              "HOTPLUG,SUBSYSTEMS")
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"LC_ALL": "C"}


@pytest.fixture(scope="module")
def m():
    from mountd.pytest_plugin import mount_machine
    top = tempfile.mkdtemp(prefix="procsim-lsblk-")
    os.chmod(top, 0o755)
    machine = mount_machine(os.path.join(top, "mnt"), SCENARIO)
    try:
        yield machine
    finally:
        machine.umount()
        shutil.rmtree(top, ignore_errors=True)


def lsblk(m, *args: str) -> str:
    r = subprocess.run([LSBLK, "--sysroot", m.mnt, *args], capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def flat(tree: list[dict]) -> dict[str, dict]:
    out = {}
    for d in tree:
        out[d["name"]] = d
        out.update(flat(d.get("children", [])))
    return out


def expected(m) -> dict[str, dict]:
    """What lsblk should print for every device, from the model."""
    out = {}
    for d in m.ctl.disks():
        part = d["partition"] != 0
        mounts = [d["mount"]] if d["mount"] else ["[SWAP]"] if d["swap"] else [None]
        out[d["name"]] = {"name": d["name"], "maj:min": d["dev"], "size": d["sectors"] * 512, "ro": d["ro"],
                          "rm": d["removable"], "type": "part" if part else "disk", "mountpoints": mounts,
                          "rota": d["rotational"], "log-sec": d["logical_block_size"],
                          "phy-sec": d["physical_block_size"], "disc-gran": d["discard_granularity"],
                          "sched": d["scheduler"]}
    return out


def test_lsblk_json_every_value_is_the_models(m) -> None:
    got = flat(json.loads(lsblk(m, "-J", "-b", "-o", COLS))["blockdevices"])
    want = expected(m)
    assert set(got) == set(want) == {"vda", "vda1", "vda2", "vda3", "vdb", "vdb1", "sda", "sda1", "sda2", "nvme0n1"}
    for name, w in want.items():
        g = {k: v for k, v in got[name].items() if k != "children"}
        assert g == w, name


def test_lsblk_values_are_what_the_scenario_asked_for(m) -> None:
    got = flat(json.loads(lsblk(m, "-J", "-b", "-o", COLS))["blockdevices"])
    assert got["vda2"]["mountpoints"] == ["[SWAP]"] and got["vda3"]["mountpoints"] == ["/"]
    assert got["vdb"]["ro"] and got["vdb1"]["ro"] and got["vdb1"]["mountpoints"] == ["/srv/ro"]
    assert not got["sda1"]["ro"] and got["sda2"]["ro"] and not got["sda"]["ro"]  # BLKROSET on one partition
    assert got["sda"]["rm"] and got["sda"]["rota"] and got["sda"]["sched"] == "bfq"
    assert got["nvme0n1"]["log-sec"] == 4096 and not got["nvme0n1"]["rota"] and got["nvme0n1"]["sched"] == "none"
    assert got["nvme0n1"]["mountpoints"] == ["/var/lib/db"] and got["nvme0n1"]["size"] == 500 << 30
    assert got["vda1"]["size"] == 1 << 30 and got["vda"]["maj:min"] == "254:0" and got["vdb"]["maj:min"] == "254:16"


def test_lsblk_tree_and_pairs(m) -> None:
    tree = lsblk(m, "-i", "-o", "NAME,MAJ:MIN,TYPE,MOUNTPOINTS").splitlines()  # -i: an ASCII tree
    assert tree[0].split() == ["NAME", "MAJ:MIN", "TYPE", "MOUNTPOINTS"]
    rows = {r.split()[0].lstrip("|`- "): r.split() for r in tree[1:]}
    assert rows["vda1"] == ["|-vda1", "254:1", "part", "/boot"] and rows["vda3"] == ["`-vda3", "254:3", "part", "/"]
    assert rows["vda2"] == ["|-vda2", "254:2", "part", "[SWAP]"] and rows["vdb"] == ["vdb", "254:16", "disk"]
    pairs = [dict(kv.split("=", 1) for kv in line.replace('"', "").split())
             for line in lsblk(m, "-P", "-b", "-o", "NAME,SIZE,RO,TYPE").splitlines()]
    model = {d["name"]: d for d in m.ctl.disks()}
    assert {p["NAME"]: (int(p["SIZE"]), p["RO"] == "1") for p in pairs} == \
        {n: (d["sectors"] * 512, d["ro"]) for n, d in model.items()}


def test_lsblk_under_procsim_run(m) -> None:
    """procsim run binds MNT/sys/block, dev/block and class/block over the
    host's: lsblk without --sysroot sees the model's disks."""
    r = m.run([LSBLK, "-J", "-b", "-o", COLS], capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0, r.stderr
    got = flat(json.loads(r.stdout)["blockdevices"])
    want = expected(m)
    assert set(got) == set(want)
    for name, w in want.items():
        assert {k: v for k, v in got[name].items() if k != "children"} == w, name


def _write(path: str, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def _errno(path: str, data: bytes) -> int:
    with pytest.raises(OSError) as e:
        _write(path, data)
    return e.value.errno


@pytest.mark.parametrize("attr, bad, err", [
    ("scheduler", b"cfq", errno.EINVAL), ("nr_requests", b"99999", errno.EINVAL),
    ("nr_requests", b" 64", errno.EINVAL), ("read_ahead_kb", b"-1", errno.EINVAL),
    ("read_ahead_kb", b"4294967296", errno.EINVAL), ("max_sectors_kb", b"3", errno.EINVAL),
    ("discard_max_bytes", b"1", errno.EINVAL), ("rotational", b"y", errno.EINVAL),
    ("write_cache", b"bogus", errno.EINVAL)])
def test_bad_queue_writes_get_the_errno_and_change_nothing(m, attr, bad, err) -> None:
    q = os.path.join(m.sys, "block", "sda", "queue")
    before = {a: open(os.path.join(q, a)).read() for a in os.listdir(q)}
    lsblk_before = lsblk(m, "-J", "-b", "-o", MODEL_COLS)
    assert _errno(os.path.join(q, attr), bad) == err
    assert {a: open(os.path.join(q, a)).read() for a in os.listdir(q)} == before
    assert lsblk(m, "-J", "-b", "-o", MODEL_COLS) == lsblk_before


def test_read_only_files_refuse_writers(m) -> None:
    for rel in ("block/sda/size", "block/sda/ro", "block/sda/sda1/start", "block/sda/queue/logical_block_size"):
        with pytest.raises(OSError) as e:
            os.open(os.path.join(m.sys, rel), os.O_WRONLY)
        assert e.value.errno == errno.EACCES, rel
    assert _errno(os.path.join(m.sys, "block/vda/events_poll_msecs"), b"1000") == errno.ENODEV  # no media events
    assert _errno(os.path.join(m.sys, "block/vda/uevent"), b"bogus") == errno.EINVAL


def test_good_writes_show_in_lsblk(m) -> None:
    q = os.path.join(m.sys, "block", "vdb", "queue")
    sched0, rot0 = open(os.path.join(q, "scheduler")).read(), open(os.path.join(q, "rotational")).read()
    try:
        assert _write(os.path.join(q, "scheduler"), b"kyber\n") == 6
        assert _write(os.path.join(q, "rotational"), b"0") == 1
        assert _write(os.path.join(q, "read_ahead_kb"), b"7") == 1  # kept in pages: 4
        got = flat(json.loads(lsblk(m, "-J", "-o", "NAME,SCHED,ROTA,RA,RQ-SIZE"))["blockdevices"])
        assert got["vdb"]["sched"] == "kyber" and got["vdb"]["rota"] is False and got["vdb"]["ra"] == 4
        assert got["vdb"]["rq-size"] == 256  # an elevator switch: 2 x min(depth 128, 128)
        assert got["vdb1"]["sched"] == "kyber"  # a partition shows its disk's queue
        assert {d["name"]: d for d in m.ctl.disks()}["vdb"]["scheduler"] == "kyber"
    finally:
        _write(os.path.join(q, "scheduler"), sched0.split("[")[1].split("]")[0].encode())
        _write(os.path.join(q, "rotational"), rot0.encode())


def test_sys_class_block_and_dev_block_links(m) -> None:
    cls = os.path.join(m.sys, "class", "block")
    names = {d["name"] for d in m.ctl.disks()}
    assert set(os.listdir(cls)) == names
    assert os.readlink(os.path.join(cls, "sda2")) == "../../block/sda/sda2"
    assert open(os.path.join(cls, "sda2", "partition")).read() == "2\n"
    assert open(os.path.join(cls, "vda", "uevent")).read().startswith("MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n")
    assert open(os.path.join(m.sys, "dev", "block", "8:2", "uevent")).read() == \
        "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nPARTN=2\n"
    assert os.listdir(os.path.join(m.sys, "block", "sda", "holders")) == []
    assert os.listdir(os.path.join(m.sys, "block", "sda", "slaves")) == []


@pytest.mark.skipif(FINDMNT is None, reason="no findmnt")
def test_findmnt_tab_file_is_the_models_mount_table(m) -> None:
    r = subprocess.run([FINDMNT, "--tab-file", os.path.join(m.proc, "self", "mountinfo"), "-J", "-l",
                        "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN"], capture_output=True, text=True, env=ENV,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    got = {f["target"]: f for f in json.loads(r.stdout)["filesystems"]}
    for d in m.ctl.disks():
        if d["mount"] is None:
            continue
        f = got[d["mount"]]
        assert (f["source"], f["fstype"], f["maj:min"]) == (f"/dev/{d['name']}", d["fstype"], d["dev"])
        assert f["options"].split(",")[0] == ("ro" if d["ro"] else "rw")
    # under procsim run, findmnt reads /proc/self/mountinfo, which is the model's
    r = m.run([FINDMNT, "-J", "-l", "-o", "TARGET,SOURCE"], capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0, r.stderr
    ran = {f["target"]: f["source"] for f in json.loads(r.stdout)["filesystems"]}
    assert ran["/srv/ro"] == "/dev/vdb1" and ran["/"] == "/dev/vda3" and ran["/var/lib/db"] == "/dev/nvme0n1"
