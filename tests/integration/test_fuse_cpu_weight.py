"""cpu.weight, cpu.idle and cgroup.kill through a real mount: a shell's
echo sets a group's weight and the cgroups' cpu.stat, the tasks' stat and
ps follow the shares; bad input gets the kernel's errno; cgroup.kill kills
a subtree that ps then no longer shows."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.fuse

SCENARIO = """
[machine]
nr_cpus = 2
clock = "manual"

[[cgroup]]
path = "/"
subtree_control = "+cpu"

[[cgroup]]
path = "/a"

[[cgroup]]
path = "/b"

[[process]]
name = "a0"
argv = ["/usr/bin/burn"]
count = 2
cgroup = "/a"
cpus = "0"
state = "R"

[[process]]
name = "a1"
argv = ["/usr/bin/burn"]
count = 2
cgroup = "/a"
cpus = "1"
state = "R"

[[process]]
name = "b0"
argv = ["/usr/bin/spin"]
count = 2
cgroup = "/b"
cpus = "0"
state = "R"

[[process]]
name = "b1"
argv = ["/usr/bin/spin"]
count = 2
cgroup = "/b"
cpus = "1"
state = "R"
"""


def sh(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)


@pytest.fixture
def m(procsim_mount, tmp_path):
    p = tmp_path / "w.toml"
    p.write_text(SCENARIO)
    return procsim_mount(str(p))


def usage(m, cg: str) -> int:
    return int(open(f"{m.sys}/fs/cgroup/{cg}/cpu.stat").read().split("\n")[0].split()[1])


def ticks(m) -> dict[str, int]:
    """utime + stime (clock ticks, /proc/PID/stat) summed by comm."""
    out = {"burn": 0, "spin": 0}
    for p in m.ctl.ps():
        if p["comm"] in out:
            f = open(f"{m.proc}/{p['pid']}/stat").read().rsplit(")", 1)[1].split()
            out[p["comm"]] += int(f[11]) + int(f[12])
    return out


def test_echo_weight_and_cpu_stat(m) -> None:
    d = f"{m.sys}/fs/cgroup"
    r = sh(f"echo 300 > {d}/b/cpu.weight && cat {d}/b/cpu.weight {d}/b/cpu.weight.nice")
    assert r.returncode == 0 and r.stdout == "300\n-5\n", r.stderr
    m.ctl.advance(seconds=0.01)  # the idle CPUs pick their queued tasks
    ua, ub = usage(m, "a"), usage(m, "b")
    t0 = ticks(m)
    m.ctl.advance(seconds=20)
    da, db = usage(m, "a") - ua, usage(m, "b") - ub
    assert da + db == 40_000_000  # two CPUs busy for 20 s
    assert db / da == pytest.approx(3.0, rel=0.01)
    # the tasks' own stat agrees: /b's tasks had three times /a's CPU time (utime+stime ticks)
    t1 = ticks(m)
    burn, spin = t1["burn"] - t0["burn"], t1["spin"] - t0["spin"]
    assert spin / burn == pytest.approx(3.0, rel=0.01) and burn == pytest.approx(1000, abs=8)
    # ps sees all eight runnable
    pids = {p["pid"] for p in m.ctl.ps() if p["comm"] in ("burn", "spin")}
    r = m.run(["ps", "-o", "stat=,comm=", "-p", ",".join(map(str, pids))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sum(1 for ln in r.stdout.splitlines() if ln.split()[0].startswith("R")) == 8


def test_errnos_through_the_mount(m) -> None:
    d = f"{m.sys}/fs/cgroup"
    for buf, msg in (("0", "Numerical result out of range"), ("10001", "Numerical result out of range"),
                     ("abc", "Invalid argument"), ("-5", "Invalid argument")):
        r = sh(f"echo {buf} > {d}/a/cpu.weight")
        assert r.returncode != 0 and msg in r.stderr, (buf, r.stderr)
    assert open(f"{d}/a/cpu.weight").read() == "100\n"
    r = sh(f"echo 2 > {d}/a/cpu.idle")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"echo 1 > {d}/a/cpu.idle && cat {d}/a/cpu.idle {d}/a/cpu.weight; echo 200 > {d}/a/cpu.weight")
    assert r.stdout == "1\n1\n" and "Invalid argument" in r.stderr
    r = sh(f"echo 0 > {d}/a/cgroup.kill")
    assert "Numerical result out of range" in r.stderr
    r = sh(f"cat {d}/a/cgroup.kill")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert sh(f"ls {d}").stdout.split().count("cpu.weight") == 0  # not on the root
    assert "cgroup.kill" not in sh(f"ls {d}").stdout.split()


def test_kill_through_the_mount(m) -> None:
    d = f"{m.sys}/fs/cgroup"
    before = {p["pid"] for p in m.ctl.ps() if p["comm"] == "burn"}
    assert len(before) == 4
    r = sh(f"echo 1 > {d}/a/cgroup.kill; cat {d}/a/cgroup.events {d}/a/cgroup.procs")
    assert r.returncode == 0 and r.stdout == "populated 0\nfrozen 0\n", r.stderr
    assert not {p["pid"] for p in m.ctl.ps() if p["comm"] == "burn"}
    assert len([p for p in m.ctl.ps() if p["comm"] == "spin"]) == 4
