"""The scheduling files through a real mount, read by real tools: ps's
wchan, policy, rtprio, nice and CPU columns, top's PR and NI, psutil's
num_ctx_switches, cpu_num and children, compared with the model."""

from __future__ import annotations

import os
import re

import psutil
import pytest

from fusehelpers import model, psutil_procfs, read

pytestmark = pytest.mark.fuse

ENV = {**os.environ, "LC_ALL": "C", "COLUMNS": "512"}
POLICY = {0: "TS", 1: "FF", 2: "RR", 3: "B", 5: "IDL"}


def run(m, *argv: str) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0 and r.stderr == "", (argv, r.stderr)
    return r.stdout


def _tasks(m) -> dict[int, dict]:
    return {pid: m.ctl.task(pid=pid) for pid in model(m)}


def test_ps_shows_the_models_wchan_policy_priority_nice_and_cpu(machine) -> None:
    m = machine
    out = run(m, "ps", "-eo", "pid,wchan:40,policy,rtprio,ni,psr").splitlines()
    assert out[0].split() == ["PID", "WCHAN", "POL", "RTPRIO", "NI", "PSR"]
    tasks = _tasks(m)
    seen = 0
    for line in out[1:]:
        pid, wchan, pol, rtprio, ni, psr = line.split()
        t = tasks.get(int(pid))
        if t is None:
            continue  # ps itself
        w = read(f"{m.proc}/{pid}/wchan")
        assert wchan == ("-" if w == "0" else w), pid
        assert pol == POLICY[t["policy"]], pid
        rt = t["policy"] in (1, 2)
        assert rtprio == (str(t["rt_priority"]) if rt else "-"), pid
        assert ni == ("-" if rt else str(t["nice"])), pid
        assert int(psr) == t["cpu"], pid
        seen += 1
    assert seen == len(tasks)
    # what the default world shows: services in epoll, kworkers in worker_thread, RT migration threads
    col = {int(l.split()[0]): l.split()[1] for l in out[1:]}
    comm = {pid: p["comm"] for pid, p in model(m).items()}
    assert {col[p] for p, c in comm.items() if c.startswith("kworker/") and not c.startswith("kworker/R-")
            and tasks[p]["state"] != "R"} == {"worker_thread"}
    assert col[next(p for p, c in comm.items() if c == "nginx")] in ("sigsuspend.isra.0", "-")
    assert any(POLICY[tasks[p]["policy"]] == "FF" for p, c in comm.items() if c.startswith("migration/"))


def test_top_shows_priority_and_nice(machine) -> None:
    m = machine
    out = run(m, "top", "-b", "-n", "1", "-w", "512").splitlines()
    head = next(i for i, l in enumerate(out) if l.split()[:1] == ["PID"])
    cols = out[head].split()
    pr, ni = cols.index("PR"), cols.index("NI")
    tasks = _tasks(m)
    checked = 0
    for line in out[head + 1:]:
        f = line.split()
        t = tasks.get(int(f[0]))
        if t is None:
            continue
        if t["policy"] in (1, 2):
            assert f[pr] == ("rt" if t["rt_priority"] == 99 else str(-1 - t["rt_priority"])), line
        else:
            assert (int(f[pr]), int(f[ni])) == (20 + t["nice"], t["nice"]), line
        checked += 1
    assert checked > 50


def test_psutil_ctx_switches_cpu_and_children(machine) -> None:
    m = machine
    ps = model(m)
    with psutil_procfs(m):
        for pid, p in ps.items():
            if p["zombie"]:
                continue
            proc = psutil.Process(pid)
            ts = [m.ctl.task(pid=tid) for tid in p["threads"]]
            cs = proc.num_ctx_switches()
            assert (cs.voluntary, cs.involuntary) == (sum(t["nvcsw"] for t in ts), sum(t["nivcsw"] for t in ts))
            assert proc.cpu_num() == ts[0]["cpu"]
            # (psutil's nice() is getpriority(2) on the host's pid, not a /proc read: ps's NI above)
            assert sorted(c.pid for c in proc.children()) == sorted(q for q, c in ps.items() if c["ppid"] == pid)


def test_sched_files_agree_through_the_mount(machine) -> None:
    m = machine
    for pid, p in model(m).items():
        if p["zombie"]:
            continue
        d = f"{m.proc}/{pid}/task/{pid}"
        sched = read(f"{d}/sched")
        switches = int(re.search(r"^nr_switches\s+:\s+(\d+)$", sched, re.M)[1])
        status = read(f"{d}/status")
        vol = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)$", status, re.M)[1])
        inv = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)$", status, re.M)[1])
        assert switches == vol + inv
        run_ns = int(read(f"{d}/schedstat").split()[0])
        ms = re.search(r"^se\.sum_exec_runtime\s+:\s+(\d+)\.(\d{6})$", sched, re.M)
        assert int(ms[1]) * 10**6 + int(ms[2]) == run_ns
        # psutil's children() of the leader thread, as the kernel keeps them
        kids = read(f"{d}/children").split()
        assert all(int(c) in model(m) for c in kids)
