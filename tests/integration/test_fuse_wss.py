"""Working-set estimation through a real mount: examples/wss.py's three
methods (clear_refs + smaps, page_idle bitmap + pagemap, idle_bitmap)
against the simulator's ground truth, for every workload pattern."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mountd.pytest_plugin import Machine, mount_machine

pytestmark = pytest.mark.fuse

WSS = str(Path(__file__).resolve().parents[2] / "examples" / "wss.py")
MB = 1 << 20

# Five processes, one pattern each, every page of their heap written first
# (so that every page the workload touches is a private anonymous page that
# all three methods can see).
SCENARIO = """
[machine]
nr_cpus = 2
mem = "2G"
clock = "manual"
seed = 5

[[process]]
name = "hotcold"
argv = ["/usr/bin/hotcold"]
maps = [{ name = "heap", size = "64M", touch = "all" }]
workloads = [{ pattern = "hot_cold", rate = 40000, map = "heap", hot = "8M", hot_prob = 0.9, write = 0.2 }]

[[process]]
name = "uniform"
argv = ["/usr/bin/uniform"]
maps = [{ name = "heap", size = "64M", touch = "all" }]
workloads = [{ pattern = "uniform", rate = 10000, map = "heap" }]

[[process]]
name = "zipf"
argv = ["/usr/bin/zipf"]
maps = [{ name = "heap", size = "64M", touch = "all" }]
workloads = [{ pattern = "zipf", rate = 20000, map = "heap", exponent = 1.1, write = 0.5 }]

[[process]]
name = "scan"
argv = ["/usr/bin/scan"]
maps = [{ name = "heap", size = "64M", touch = "all" }]
workloads = [{ pattern = "scan", rate = 6000, map = "heap" }]

[[process]]
name = "phases"
argv = ["/usr/bin/phases"]
maps = [{ name = "heap", size = "64M", touch = "all" }]

[[process.workloads]]
pattern = "phases"
rate = 30000
map = "heap"
phases = [{ pattern = "hot_cold", duration = 1, hot = "4M", hot_prob = 1.0 },
          { pattern = "hot_cold", duration = 1, hot = "16M", hot_offset = "32M", hot_prob = 1.0 }]
"""
PATTERNS = ("hotcold", "uniform", "zipf", "scan", "phases")


def mount(scenario: str = SCENARIO, clock: str = "manual") -> tuple[Machine, str]:
    top = tempfile.mkdtemp(prefix="wss-it-")
    return mount_machine(os.path.join(top, "mnt"), scenario, seed=None, clock=clock), top


@pytest.fixture(scope="module")
def m() -> Iterator[Machine]:
    machine, top = mount()
    try:
        yield machine
    finally:
        machine.umount()
        if not os.path.ismount(machine.mnt):
            shutil.rmtree(top, ignore_errors=True)


def pid_of(m: Machine, name: str) -> int:
    return next(p["pid"] for p in m.ctl.ps() if p["comm"] == name)


def wss(root: str, pid: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, WSS, "--root", root, str(pid), *args], capture_output=True, text=True,
                          timeout=300, env=env)


def samples(m: Machine, pid: int, *args: str) -> dict[str, dict]:
    r = wss(m.proc, pid, "--json", *args)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        s = json.loads(line)
        out.setdefault(s["method"], s)
    return out


# -- each pattern, each method ----------------------------------------------------------

@pytest.mark.parametrize("name", PATTERNS)
def test_every_method_matches_the_truth(m, name):
    """refs (PTE young or page referenced) and idle_bitmap (PTE A bits) see
    exactly the pages touched; the global bitmap also counts the two vDSO
    pages, kernel pages that read 0 (not idle) whatever happens."""
    pid = pid_of(m, name)
    got = samples(m, pid, "--interval", "0.5")
    for method in ("refs", "global", "pid"):
        s = got[method]
        assert s["error"] == "", s
        assert s["truth"] > 0 and s["end"] - s["start"] == pytest.approx(0.5)
    assert got["refs"]["pages"] == got["refs"]["truth"]
    assert got["pid"]["pages"] == got["pid"]["truth"]
    g = got["global"]
    assert g["truth"] <= g["pages"] <= g["truth"] + 2


def test_the_truth_is_the_patterns_working_set(m):
    """Independently of the estimators: a scan of 6000 pages/s over 0.5 s
    touches exactly 3000 pages; a 4 MiB hot set at 30000/s is all of it; a
    16 MiB one gets the birthday share of its 4096 pages, all inside it."""
    got = samples(m, pid_of(m, "scan"), "--interval", "0.5", "--methods", "pid")
    assert got["pid"]["truth"] == got["pid"]["pages"] == 3000
    ph = pid_of(m, "phases")
    now = m.ctl.now()
    t0 = m.ctl.workloads(pid=ph)[0]["start"]
    into = (now - t0) % 2.0                                 # where in the 2 s cycle we are
    m.ctl.advance(seconds=(2.0 - into) % 2.0)               # to the start of phase 1
    got = samples(m, ph, "--interval", "0.5", "--methods", "pid")
    assert got["pid"]["truth"] == got["pid"]["pages"] == 1024
    m.ctl.advance(seconds=0.5)                              # phase 2 begins at 1.0
    got = samples(m, ph, "--interval", "0.5", "--methods", "refs")
    expected = 4096 * (1 - (1 - 1 / 4096) ** 15000)         # ~3991 (sd ~ 6)
    assert got["refs"]["truth"] == got["refs"]["pages"]
    assert abs(got["refs"]["pages"] - expected) < 60
    heap = m.ctl.workloads(pid=ph)[0]["ranges"][0][0]
    runs = m.ctl.wss_truth(pid=ph, since=got["refs"]["start"], until=got["refs"]["end"], ranges=True)["ranges"]
    assert heap + 32 * MB <= runs[0][0] and runs[-1][1] <= heap + 48 * MB


def test_reads_of_never_written_memory_hit_the_zero_page(m):
    """Loads of untouched anonymous memory map the shared zero page: not a
    page of the process for smaps or the global bitmap (the estimates see
    nothing), but each PTE's accessed bit is set, so idle_bitmap sees them."""
    pid = pid_of(m, "uniform")
    addr = m.ctl.mmap(pid=pid, length=16 * MB)
    wid = m.ctl.workload_start(pid=pid, pattern="uniform", rate=4000, addr=addr, length=16 * MB)
    m.ctl.workload_stop(id=1 + PATTERNS.index("uniform"))    # the heap workload
    try:
        got = samples(m, pid, "--interval", "0.5")
        assert got["pid"]["pages"] == got["pid"]["truth"] > 1500
        assert got["refs"]["pages"] == 0
        assert got["global"]["pages"] <= 3                    # the zero page and the vDSO
    finally:
        m.ctl.workload_stop(id=wid)


def test_table_output_has_estimate_truth_and_times(m):
    r = wss(m.proc, pid_of(m, "hotcold"), "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["method", "estimate", "truth", "error", "set", "ms", "read", "ms"]
    assert [ln.split()[0] for ln in lines[1:]] == ["refs", "global", "pid"]
    for ln in lines[1:]:
        assert "MiB)" in ln and ln.count("%") == 1


def test_plot_writes_a_png(m, tmp_path):
    out = tmp_path / "wss.png"
    r = wss(m.proc, pid_of(m, "phases"), "--plot", str(out), "--samples", "3", "--interval", "0.5")
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
    assert len(r.stdout.splitlines()) == 1 + 9 + 1          # header, 3 rounds of 3, wrote


def test_plot_without_matplotlib_says_so(m, tmp_path):
    fake = tmp_path / "nomatplotlib" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))
    r = wss(m.proc, pid_of(m, "scan"), "--plot", str(tmp_path / "x.png"), "--samples", "1",
            "--interval", "0.1", env=env)
    assert r.returncode != 0
    assert "--plot needs matplotlib" in r.stderr and "pip install" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_bad_arguments_and_missing_pid(m):
    r = wss(m.proc, 99999)
    assert r.returncode == 1 and "no process 99999" in r.stderr
    r = wss(m.proc, 1, "--methods", "refs,bogus")
    assert r.returncode == 2 and "--methods" in r.stderr


def test_same_seed_same_estimates_and_truth():
    runs = []
    for _ in range(2):
        machine, top = mount()
        try:
            got = samples(machine, pid_of(machine, "zipf"), "--interval", "0.5")
            runs.append({k: (v["pages"], v["truth"], v["start"]) for k, v in got.items()})
        finally:
            machine.umount()
            shutil.rmtree(top, ignore_errors=True)
    assert runs[0] == runs[1]


def test_wall_clock_machine_sleeps_and_still_scores():
    """With the clock following real time the estimator sleeps; the truth
    covers from just before the marking to just after the reading, so it
    may hold a few accesses the estimate missed, never fewer pages."""
    machine, top = mount(SCENARIO.replace('clock = "manual"', 'clock = "wall"'), clock="wall")
    try:
        got = samples(machine, pid_of(machine, "scan"), "--interval", "0.5", "--methods", "refs,pid")
        for s in got.values():
            assert s["error"] == ""
            assert s["end"] - s["start"] >= 0.5
            assert 0 < s["pages"] <= s["truth"] <= s["pages"] + 6000 * 0.5  # at most ~0.5 s of extra scan
            assert s["pages"] >= 6000 * 0.5 * 0.9
    finally:
        machine.umount()
        shutil.rmtree(top, ignore_errors=True)


def test_on_the_real_proc_it_prints_only_estimates():
    """The same script on this machine's /proc: clear_refs + smaps works; the
    global bitmap (CONFIG_IDLE_PAGE_TRACKING off here) and idle_bitmap (never
    merged) are reported unavailable; no truth column."""
    child = subprocess.Popen([sys.executable, "-c", (
        "import mmap, sys, time\n"
        "m = mmap.mmap(-1, 8 << 20)\n"
        "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
        "while True:\n"
        "    for i in range(0, 8 << 20, 4096): m[i] = 1\n"
        "    time.sleep(0.02)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        # the host is a real machine: its own reclaim may age (clear) accessed
        # bits while we measure, or the child may not be scheduled in the
        # interval (a clean-clone run once saw 1096 pages): the best of three must see it all
        best = 0
        for _ in range(3):
            r = wss("/proc", child.pid, "--json", "--interval", "0.3")
            assert r.returncode == 0, r.stderr
            got = {s["method"]: s for s in map(json.loads, r.stdout.splitlines())}
            assert got["refs"]["truth"] is None and got["refs"]["error"] == ""
            best = max(best, got["refs"]["pages"])
            if best >= 2048:
                break
        assert best >= 2048                  # the 8 MiB it writes over and over
        if not os.path.exists("/sys/kernel/mm/page_idle/bitmap"):
            assert got["global"]["error"].startswith("unavailable")
        assert got["pid"]["error"].startswith("unavailable")
    finally:
        child.kill()
        child.wait()


def ctl(m: Machine, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mountd.cli", "ctl", m.mnt, *args], capture_output=True,
                          text=True, timeout=60)


def test_procsim_ctl_starts_changes_stops_and_scores(m):
    """The same vocabulary from the command line: JSON values, errno names on failure."""
    pid = pid_of(m, "scan")
    addr = m.ctl.mmap(pid=pid, length=4 * MB)
    m.ctl.touch(pid=pid, addr=addr, length=4 * MB)
    m.ctl.advance(seconds=0.5)                                  # the touch is not in the interval below
    r = ctl(m, "workload_start", f"pid={pid}", "pattern=phases", "rate=100", f"addr={addr}", "length=4M",
            'phases=[{"pattern":"scan","duration":1},{"pattern":"scan","duration":1,"offset":"2M"}]')
    assert r.returncode == 0, r.stderr
    wid = json.loads(r.stdout)
    t0 = float(ctl(m, "now").stdout)
    assert ctl(m, "advance", "seconds=1").returncode == 0
    got = json.loads(ctl(m, "wss_truth", f"pid={pid}", f"since={t0}", "ranges=true").stdout)
    mine = [r for r in got["ranges"] if addr <= r[0] < addr + 4 * MB]   # the scan's heap workload runs too
    assert mine == [[addr, addr + 100 * 4096]]
    assert ctl(m, "workload_change", f"id={wid}", "rate=200").returncode == 0
    bad = ctl(m, "workload_change", f"id={wid}", "rate=-1")
    assert bad.returncode != 0 and "EINVAL" in bad.stderr
    assert [w["spec"]["rate"] for w in json.loads(ctl(m, "workloads", f"pid={pid}").stdout)
            if w["id"] == wid] == [200]
    out = json.loads(ctl(m, "workload_stop", f"id={wid}").stdout)
    assert out["state"] == "stopped" and out["accesses"] == 100
    gone = ctl(m, "workload_stop", "id=999")
    assert gone.returncode != 0 and "ENOENT" in gone.stderr


def test_a_sys_root_without_the_global_bitmap(m, tmp_path):
    """--sys elsewhere: the global method is unavailable, the others measure."""
    got = samples(m, pid_of(m, "hotcold"), "--sys", str(tmp_path), "--interval", "0.2")
    assert got["global"]["error"].startswith("unavailable")
    assert got["refs"]["pages"] == got["refs"]["truth"] and got["pid"]["pages"] == got["pid"]["truth"]


THP_SCENARIO = """
[machine]
nr_cpus = 2
mem = "1G"
clock = "manual"
thp_enabled = "always"

[[process]]
name = "thp"
argv = ["/usr/bin/thp"]
maps = [{ name = "heap", size = "64M", touch = "all", addr = 0x40000000, fixed = true }]
workloads = [{ pattern = "scan", rate = 100, map = "heap", offset = "2M" }]
"""


def test_huge_pages_are_seen_whole():
    """A 64 MiB heap of 32 THPs, a scan of 50 pages per 0.5 s interval (150
    over the three, all inside the second THP): the accessed bit is the huge PMD's, so smaps Referenced and
    idle_bitmap count the whole 512 pages; the global bitmap keeps the flag
    on head pages only and reads every tail page as 0, so all 32 x 511 tails
    count as referenced (as wss-v1/v2 would report)."""
    machine, top = mount(THP_SCENARIO)
    try:
        pid = pid_of(machine, "thp")
        got = samples(machine, pid, "--interval", "0.5")
        assert {s["truth"] for s in got.values()} == {50}
        assert got["refs"]["pages"] == got["pid"]["pages"] == 512
        assert 32 * 511 <= got["global"]["pages"] <= 32 * 511 + 1 + 2   # + the head in use, the vDSO
    finally:
        machine.umount()
        shutil.rmtree(top, ignore_errors=True)
