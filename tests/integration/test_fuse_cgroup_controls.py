"""cpu.max, cgroup.freeze and io.max through a real mount: echo and cat on
the files with the kernel's errnos, ps and psutil seeing throttled and
frozen tasks' CPU time as the model charges it."""

from __future__ import annotations

import os
import subprocess

import pytest

from fusehelpers import psutil_procfs

pytestmark = pytest.mark.fuse

SCENARIO = """
[machine]
nr_cpus = 4
# a short boot history: the default hour of four throttled burners is 36,000
# cpu.max periods to play (~20 s a mount); no test here looks back that far
boot_uptime = 60

[[cgroup]]
path = "/box"
cpu_max = "50000 100000"

[[cgroup]]
path = "/ice"

[[process]]
name = "burn"
argv = ["/usr/bin/burn"]
count = 4
cgroup = "/box"
run_on = [0, 1, 2, 3]

[[process]]
name = "napper"
argv = ["/usr/bin/sleep", "1000"]
cgroup = "/ice"
"""

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def sh(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)


@pytest.fixture
def m(procsim_mount, tmp_path):
    p = tmp_path / "box.toml"
    p.write_text(SCENARIO)
    return procsim_mount(str(p))


def burners(m) -> list[int]:
    return [p["pid"] for p in m.ctl.ps() if p["comm"] == "burn"]


def test_cpu_max_with_the_shell(m) -> None:
    d = f"{m.sys}/fs/cgroup/box"
    assert sh(f"cat {d}/cpu.max").stdout == "50000 100000\n"
    r = sh(f"echo 999 > {d}/cpu.max")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"echo '50000 2000000' > {d}/cpu.max")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert sh(f"cat {d}/cpu.max").stdout == "50000 100000\n"
    r = sh(f"echo 10000 > {d}/cpu.max.burst && cat {d}/cpu.max.burst")
    assert r.stdout == "10000\n", r.stderr
    r = sh(f"echo 20 > {d}/cpu.weight.nice")
    assert "Numerical result out of range" in r.stderr


def test_throttled_tasks_cpu_in_ps_and_psutil(m) -> None:
    pids = burners(m)
    assert len(pids) == 4
    before = {p: m.ctl.task(pid=p) for p in pids}
    m.ctl.advance(seconds=20)
    after = {p: m.ctl.task(pid=p) for p in pids}
    ran = sum(after[p]["utime"] + after[p]["stime"] - before[p]["utime"] - before[p]["stime"] for p in pids)
    assert abs(ran / 1e9 - 10.0) < 0.1  # 4 busy tasks under 50000/100000: 0.5 CPU for 20 s
    stat = dict(ln.split() for ln in open(f"{m.sys}/fs/cgroup/box/cpu.stat").read().splitlines())
    assert int(stat["nr_throttled"]) >= 199 and int(stat["throttled_usec"]) > 0
    with psutil_procfs(m):
        import psutil
        for p in pids:
            ct = psutil.Process(p).cpu_times()
            assert abs(ct.user + ct.system - (after[p]["utime"] + after[p]["stime"]) / 1e9) < 0.03
    r = m.run(["ps", "-o", "pid=,stat=,time=", "-p", ",".join(map(str, pids))], capture_output=True, text=True,
              env=ENV)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        pid, st, t = line.split()
        assert st.startswith("R")  # throttled tasks stay runnable
        h, mnt, s = map(int, t.split(":"))
        assert abs(h * 3600 + mnt * 60 + s - (after[int(pid)]["utime"] + after[int(pid)]["stime"]) // 10**9) <= 1


def test_freeze_with_the_shell(m) -> None:
    d = f"{m.sys}/fs/cgroup/ice"
    nap = next(p["pid"] for p in m.ctl.ps() if p["comm"] == "sleep")
    r = sh(f"echo 2 > {d}/cgroup.freeze")
    assert "Numerical result out of range" in r.stderr
    r = sh(f"echo 1 > {d}/cgroup.freeze && cat {d}/cgroup.freeze {d}/cgroup.events")
    assert r.stdout == "1\npopulated 1\nfrozen 1\n", r.stderr
    assert open(f"{m.proc}/{nap}/wchan").read() == "get_signal"
    assert "State:\tS (sleeping)" in open(f"{m.proc}/{nap}/status").read()
    # a busy task moved in freezes: its CPU time stops
    burn = burners(m)[0]
    assert sh(f"echo {burn} > {d}/cgroup.procs").returncode == 0
    t0 = m.ctl.task(pid=burn)
    m.ctl.advance(seconds=2)
    t1 = m.ctl.task(pid=burn)
    assert (t1["utime"], t1["stime"], t1["state"]) == (t0["utime"], t0["stime"], "S")
    r = sh(f"echo 0 > {d}/cgroup.freeze && cat {d}/cgroup.events")
    assert r.stdout == "populated 1\nfrozen 0\n"
    m.ctl.advance(seconds=1)
    assert m.ctl.task(pid=burn)["utime"] > t1["utime"]


def test_io_max_with_the_shell(m) -> None:
    d = f"{m.sys}/fs/cgroup/box"
    r = sh(f"echo '254:0 rbps=1048576 wiops=100' > {d}/io.max && cat {d}/io.max")
    assert r.stdout == "254:0 rbps=1048576 wbps=max riops=max wiops=100\n", r.stderr
    for bad, msg in (("254:0 rbps=0", "Numerical result out of range"), ("254:0 bogus=1", "Invalid argument"),
                     ("254:1 rbps=1", "No such device")):
        r = sh(f"echo '{bad}' > {d}/io.max")
        assert msg in r.stderr, (bad, r.stderr)
    assert sh(f"cat {d}/io.weight").stdout == "default 100\n"
