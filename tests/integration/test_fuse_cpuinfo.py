"""A mounted intel-xeon machine read by real CPU tools: psutil's core count
and frequency (from cpuinfo, as on a VM without cpufreq) and lscpu's
identity fields, against the model's layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.fuse

INTEL = """
[machine]
nr_cpus = 4
mem = "512M"
kernel_reserved = "32M"
cpu = "intel-xeon"
cpu_mhz = 2100.5
pkeys = false
"""
PSUTIL = ("import json, psutil; f = psutil.cpu_freq(); "
          "print(json.dumps([psutil.cpu_count(), psutil.cpu_count(logical=False), f.current, "
          "[c.current for c in psutil.cpu_freq(percpu=True)]]))")


@pytest.fixture(scope="module")
def intel(tmp_path_factory):
    from mountd.pytest_plugin import mount_machine
    m = mount_machine(tmp_path_factory.mktemp("intel") / "mnt", INTEL)
    try:
        yield m
    finally:
        m.umount()


def test_psutil_counts_hyperthreaded_cores(intel) -> None:
    # /proc and /sys of the machine: no cpufreq in its /sys, so psutil reads "cpu MHz"
    r = intel.run([sys.executable, "-c", PSUTIL], bind_sys=True, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    logical, cores, mhz, per_cpu = json.loads(r.stdout)
    assert (logical, cores) == (4, 2)  # two threads per core
    assert mhz == 2100.5 and per_cpu == [2100.5] * 4


def test_cpuinfo_through_the_mount(intel) -> None:
    with open(f"{intel.proc}/cpuinfo") as f:
        text = f.read()
    assert text.count("vendor_id\t: GenuineIntel\n") == 4 and "TLB size" not in text
    assert " pku" not in text and " ospke" not in text  # pkeys = false: the flags follow
    with open(f"{intel.proc}/stat") as f:
        assert [l.split()[0] for l in f if l.startswith("cpu")] == ["cpu", "cpu0", "cpu1", "cpu2", "cpu3"]


@pytest.mark.skipif(not shutil.which("lscpu"), reason="lscpu (util-linux) not installed")
def test_lscpu_reads_the_model(intel) -> None:
    r = subprocess.run(["lscpu", "--json", "--sysroot", str(intel.mnt)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = {row["field"]: row["data"] for row in json.loads(r.stdout)["lscpu"]}
    assert rows["Vendor ID:"] == "GenuineIntel" and rows["CPU family:"] == "6"
    assert rows["Model name:"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert rows["BogoMIPS:"] == "4201.00" and rows["On-line CPU(s) list:"] == "0-3"
    assert rows["Address sizes:"] == "46 bits physical, 48 bits virtual"
    assert "avx512f" in rows["Flags:"].split() and "pku" not in rows["Flags:"].split()
