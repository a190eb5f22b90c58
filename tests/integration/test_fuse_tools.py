"""Real procps tools under the namespace runner (MNT/proc bound over /proc
in a private mount namespace), compared with the model's values."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from fusehelpers import model, read, user_name

pytestmark = pytest.mark.fuse

MEMTOTAL_KB = (16 << 20) - (256 << 10)   # default.toml: 16G less the 256 MiB reserved
SWAPTOTAL_KB = (2 << 20) - 4              # 2G less the header page


# pytest exports COLUMNS=80; procps would cut its lines to it. A pipe in a
# shell has no COLUMNS, so ps prints whole lines: give the tools that.
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def run(m, *argv: str, timeout: float = 60) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=timeout, env=ENV)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    assert r.stderr == "", r.stderr
    return r.stdout


def meminfo(m) -> dict[str, int]:
    return {l.split(":")[0]: int(l.split()[1]) for l in read(f"{m.proc}/meminfo").splitlines()}


def thread_states(m, ps) -> dict[int, str]:
    return {tid: m.ctl.task(pid=tid)["state"] for p in ps.values() for tid in p["threads"]}


def command(p: dict) -> str:
    return " ".join(p["cmdline"]) if p["cmdline"] else f"[{p['comm']}]"


def test_ps_aux(machine):
    ps = model(machine)
    lines = run(machine, "ps", "aux").splitlines()
    assert lines[0].split() == ["USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME",
                                "COMMAND"]
    rows = [l.split(None, 10) for l in lines[1:]]
    assert [int(r[1]) for r in rows] == sorted(ps)  # every process once, in pid order; ps itself is not one
    for user, pid, cpu, mem, vsz, rss, tty, st, start, time_, cmd in rows:
        p = ps[int(pid)]
        t = machine.ctl.task(pid=int(pid))
        assert user == user_name(p["uid"], 8)
        assert int(vsz) == t["total_vm"] * 4
        assert int(rss) == p["rss_pages"] * 4
        permille = p["rss_pages"] * 4 * 1000 // MEMTOTAL_KB
        assert mem == f"{permille // 10}.{permille % 10}"
        assert st[0] == p["state"]
        assert ("l" in st) == (len(p["threads"]) > 1)
        # TIME and %CPU from the boot history's CPU time (all threads) and start time
        ts = [machine.ctl.task(pid=tid) for tid in p["threads"]]
        ticks = sum(x["utime"] for x in ts) // 10**7 + sum(x["stime"] for x in ts) // 10**7  # stat's utime + stime
        assert time_ == f"{ticks // 6000}:{ticks // 100 % 60:02d}"
        busy_s = ticks / 100
        elapsed = machine.ctl.now() - t["start_time"] / 1e9
        assert float(cpu) == pytest.approx(100 * busy_s / elapsed, abs=0.15)
        assert cmd == command(p)


def test_ps_eLf(machine):
    ps = model(machine)
    lines = run(machine, "ps", "-eLf").splitlines()
    assert lines[0].split()[:6] == ["UID", "PID", "PPID", "LWP", "C", "NLWP"]
    rows = [l.split(None, 9) for l in lines[1:]]
    assert [(int(r[1]), int(r[3])) for r in rows] == [(pid, tid) for pid in sorted(ps) for tid in ps[pid]["threads"]]
    for uid, pid, ppid, lwp, c, nlwp, stime, tty, time_, cmd in rows:
        p = ps[int(pid)]
        assert uid == user_name(p["uid"], 8)
        assert int(ppid) == p["ppid"]
        assert int(nlwp) == len(p["threads"])
        assert cmd == command(p)


def _top_value(v: str) -> int:
    assert v.isdigit(), f"top scaled a value: {v!r}"
    return int(v)


def test_top_batch(machine):
    ps = model(machine)
    out = run(machine, "top", "-b", "-n", "1", "-w", "512", "-e", "k").splitlines()
    tasks = re.match(r"Tasks: +(\d+) total, +(\d+) running, +(\d+) sleeping, +(\d+) stopped, +(\d+) zombie", out[1])
    assert tasks, out[1]
    total, running, sleeping, stopped, zombie = map(int, tasks.groups())
    assert total == len(ps)
    assert running == sum(1 for p in ps.values() if p["state"] == "R")
    assert zombie == sum(1 for p in ps.values() if p["zombie"])
    assert running + sleeping + stopped + zombie == total
    assert re.match(rf"MiB Mem : +{MEMTOTAL_KB / 1024:.1f} total", out[3]), out[3]
    assert re.match(rf"MiB Swap: +{SWAPTOTAL_KB / 1024:.1f} total, +{SWAPTOTAL_KB / 1024:.1f} free, +0.0 used",
                    out[4]), out[4]
    head = out[6].split()
    assert head[:8] == ["PID", "USER", "PR", "NI", "VIRT", "RES", "SHR", "S"]
    rows = [l.split(None, 11) for l in out[7:] if l.strip()]
    assert sorted(int(r[0]) for r in rows) == sorted(ps)
    for pid, user, pr, ni, virt, res, shr, s, *_ in rows:
        p = ps[int(pid)]
        t = machine.ctl.task(pid=int(pid))
        assert user == user_name(p["uid"], 8)
        assert _top_value(virt) == t["total_vm"] * 4
        assert _top_value(res) == p["rss_pages"] * 4
        assert _top_value(shr) == ((t["rss"][0] + t["rss"][3]) * 4 if t["rss"] else 0)
        assert s == p["state"]


def test_free(machine):
    mi = meminfo(machine)
    out = run(machine, "free").splitlines()
    mem = dict(zip(out[0].split(), map(int, out[1].split()[1:])))
    swap = dict(zip(["total", "used", "free"], map(int, out[2].split()[1:])))
    assert mem["total"] == mi["MemTotal"] == MEMTOTAL_KB
    assert mem["free"] == mi["MemFree"]
    assert mem["shared"] == mi["Shmem"]
    assert mem["buff/cache"] == mi["Buffers"] + mi["Cached"] + mi["SReclaimable"]
    assert mem["available"] == mi["MemAvailable"]
    assert mem["used"] == mem["total"] - mem["available"]  # procps 4.0.2
    assert swap == {"total": SWAPTOTAL_KB, "used": 0, "free": SWAPTOTAL_KB}


def test_vmstat(machine):
    ps = model(machine)
    states = thread_states(machine, ps)
    mi = meminfo(machine)
    out = run(machine, "vmstat", "1", "2", timeout=30).splitlines()
    assert out[1].split() == ["r", "b", "swpd", "free", "buff", "cache", "si", "so", "bi", "bo", "in", "cs",
                              "us", "sy", "id", "wa", "st"]
    assert len(out) == 4
    for line in out[2:]:
        v = dict(zip(out[1].split(), map(int, line.split())))
        assert v["r"] == max(1, sum(1 for s in states.values() if s == "R"))
        assert v["b"] == sum(1 for s in states.values() if s == "D")
        assert v["swpd"] == 0
        assert v["free"] == mi["MemFree"]
        assert v["buff"] == mi["Buffers"]
        assert v["cache"] == mi["Cached"] + mi["SReclaimable"]
    # the clock is manual: nothing happened during the one-second interval
    second = dict(zip(out[1].split(), map(int, out[3].split())))
    assert second["in"] == second["cs"] == second["bi"] == second["bo"] == 0


def test_pgrep(machine):
    ctl = machine.ctl
    a = ctl.spawn(argv=["/usr/local/bin/probe-worker", "--id", "1"], uid=1000, gid=1000)
    b = ctl.spawn(argv=["/usr/local/bin/probe-worker", "--id", "2"])
    try:
        assert run(machine, "pgrep", "-x", "probe-worker").split() == [str(a), str(b)]
        assert run(machine, "pgrep", "-f", "--", "--id 2").split() == [str(b)]
        assert run(machine, "pgrep", "-u", "1000", "-x", "probe-worker").split() == [str(a)]
        ps = model(machine)
        java = sorted(pid for pid, p in ps.items() if p["uid"] == 1001)
        assert run(machine, "pgrep", "-u", "1001").split() == [str(p) for p in java]
        assert run(machine, "pgrep", "-l", "-x", "nginx").splitlines() == [
            f"{pid} nginx" for pid in sorted(ps) if ps[pid]["comm"] == "nginx"]
        ctl.kill(pid=a)  # init is the parent: reaped at once
        assert run(machine, "pgrep", "-x", "probe-worker").split() == [str(b)]
    finally:
        for pid in (a, b):
            try:
                ctl.kill(pid=pid)
            except OSError:
                pass
    r = machine.run(["pgrep", "-x", "probe-worker"], capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 1 and r.stdout == ""  # nothing matches any more


# -- the `procsim run` command end to end ----------------------------------------------


def procsim_run(tmp: str, *argv: str) -> subprocess.CompletedProcess:
    """`procsim run ARGV` with its temporary mount made under `tmp`."""
    return subprocess.run([sys.executable, "-m", "mountd.cli", "run", *argv], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env={**ENV, "TMPDIR": str(tmp)})


def test_procsim_run_ps_aux(tmp_path):
    from procsim import commands, scenario
    k = scenario.load(None, clock="manual")  # the machine `procsim run` builds: default scenario, its seed
    ps = {p["pid"]: p for p in commands.execute(k, "ps", {})}
    r = procsim_run(tmp_path, "--clock", "manual", "--", "ps", "aux")
    assert r.returncode == 0, r.stderr
    rows = [l.split(None, 10) for l in r.stdout.splitlines()[1:]]
    assert [int(x[1]) for x in rows] == sorted(ps)
    for row in rows:
        p = ps[int(row[1])]
        total_vm = commands.execute(k, "task", {"pid": p["pid"]})["total_vm"]
        assert (row[0], int(row[4]), int(row[5])) == (user_name(p["uid"], 8), total_vm * 4, p["rss_pages"] * 4)
    assert os.listdir(tmp_path) == []  # unmounted and cleaned up


@pytest.mark.parametrize("script,status", [("exit 7", 7), ("exit 0", 0), ("kill -TERM $$", 128 + 15)])
def test_procsim_run_exit_status(tmp_path, script, status):
    r = procsim_run(tmp_path, "--clock", "manual", "--", "sh", "-c", script)
    assert r.returncode == status, r.stderr
    assert os.listdir(tmp_path) == []


def test_ps_thread_columns(machine):
    """Thread views (task/TID/stat) through ps -L: each thread's own comm, CPU and state."""
    ps = model(machine)
    java = next(pid for pid, p in ps.items() if p["comm"] == "java")
    out = run(machine, "ps", "-L", "-o", "pid=,lwp=,psr=,stat=,comm=", "-p", str(java)).splitlines()
    rows = [l.split(None, 4) for l in out]
    assert [int(r[1]) for r in rows] == ps[java]["threads"]
    for pid, lwp, psr, st, comm in rows:
        t = machine.ctl.task(pid=int(lwp))
        assert (int(pid), int(psr), st[0], comm) == (java, t["cpu"], t["state"], t["comm"])


QUIET = """
[machine]
nr_cpus = 2
mem = "512M"
kernel_reserved = "32M"
[[process]]
name = "busy"
pid = 200
argv = ["/usr/bin/busy"]
[[process]]
name = "idle"
pid = 210
argv = ["/usr/bin/idle"]
"""


def test_ps_and_top_cpu_after_running(procsim_mount):
    """busy runs alone on CPU 1 for 10 s of virtual time, idle never runs:
    ps's %CPU (cpu time / time since start) is 100.0 and 0.0, TIME 0:10."""
    m = procsim_mount(scenario=QUIET)
    before = m.ctl.task(pid=200)
    m.ctl.run(tid=200, cpu=1)
    m.ctl.advance(seconds=10)
    rows = {int(l.split()[0]): l.split() for l in run(m, "ps", "-o", "pid=,pcpu=,time=,stat=", "-p", "200,210")
            .splitlines()}
    # the boot history gave busy a little CPU time since its start, a few s after boot
    cpu_s = (before["utime"] + before["stime"]) // 10**7 / 100 + 10
    assert rows[200][2:] == ["00:00:10", "R"] and cpu_s < 11
    elapsed = m.ctl.now() - before["start_time"] / 1e9
    assert float(rows[200][1]) == pytest.approx(100 * cpu_s / elapsed, abs=0.15)
    assert rows[210][1:3] == ["0.0", "00:00:00"]
    top = run(m, "top", "-b", "-n", "1", "-w", "512").splitlines()
    assert re.match(r"top - \d\d:\d\d:\d\d up\s+1:00,", top[0]), top[0]  # 3610 s of uptime
    assert re.match(r"Tasks: +\d+ total, +1 running", top[1]), top[1]
    busy = next(l.split() for l in top[7:] if l.split() and l.split()[0] == "200")
    after = m.ctl.task(pid=200)
    hundredths = after["utime"] // 10**7 + after["stime"] // 10**7
    assert busy[7] == "R" and busy[10] == f"0:{hundredths // 100:02d}.{hundredths % 100:02d}"  # S and TIME+
