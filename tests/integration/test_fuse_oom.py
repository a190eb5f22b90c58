"""oom_score, oom_score_adj and oom_adj through a real mount with real tools,
an OOM kill triggered through the control channel (the victim leaves the
pid list, its report appears in /proc/procsim/oom_log, MemFree recovers),
and RSS agreement across status, statm, stat, rss_counters and psutil."""

from __future__ import annotations

import os
import re
import stat as S
import subprocess

import psutil
import pytest

from fusehelpers import PAGE, kb, model, psutil_procfs, read, stat_fields, statm, status
from hostinfo import has_cap

pytestmark = pytest.mark.fuse

MiB = 1 << 20
SCENARIO = """
description = "oom test: 1 GiB, 4 CPUs"
[machine]
nr_cpus = 4
mem = "1G"
kernel_reserved = "64M"
[[process]]
name = "small"
argv = ["/usr/bin/small"]
maps = [{ name = "heap", size = "128M", touch = "100M" }]
[[process]]
name = "big"
argv = ["/usr/bin/big"]
maps = [{ name = "heap", size = "512M", touch = "400M" }]
[[process]]
name = "guard"
argv = ["/usr/bin/guard"]
maps = [{ name = "heap", size = "64M", touch = "60M" }]
"""


def sh(cmd: str) -> subprocess.CompletedProcess:
    """bash: dash's echo reports every failed write as "I/O error" (on the real /proc too)."""
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)


def pid_of(m, comm: str) -> int:
    return next(pid for pid, p in model(m).items() if p["comm"] == comm)


def meminfo_kb(m, key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB$", read(f"{m.proc}/meminfo"), re.M)[1])


def expected_oom_score(m, pid: int, adj: int) -> int:
    s = status(m, pid)
    tp = (meminfo_kb(m, "MemTotal") + meminfo_kb(m, "SwapTotal")) // 4
    b = (kb(s["VmRSS"]) + kb(s["VmSwap"]) + kb(s["VmPTE"])) // 4 + adj * (tp // 1000)
    q = abs(b) * 1000 // tp
    return (1000 + (q if b >= 0 else -q)) * 2 // 3


def test_oom_files_with_cat_and_echo(procsim_mount):
    m = procsim_mount(scenario=SCENARIO)
    big = pid_of(m, "big")
    d = f"{m.proc}/{big}"
    for name, mode in (("oom_score", 0o444), ("oom_score_adj", 0o644), ("oom_adj", 0o644),
                       ("rss_counters", 0o444)):
        for path in (f"{d}/{name}", f"{d}/task/{big}/{name}"):
            assert S.S_IMODE(os.stat(path).st_mode) == mode, path
    r = sh(f"cat {d}/oom_score {d}/oom_score_adj {d}/oom_adj")
    assert r.returncode == 0 and r.stdout.split() == [str(expected_oom_score(m, big, 0)), "0", "0"]
    assert sh(f"echo 500 > {d}/oom_score_adj").returncode == 0
    assert read(f"{d}/oom_score_adj") == "500\n" and read(f"{d}/oom_adj") == "8\n"
    assert read(f"{d}/oom_score") == f"{expected_oom_score(m, big, 500)}\n"
    assert m.ctl.oom_score_adj(pid=big)["oom_score_adj"] == 500
    r = sh(f"echo 1001 > {d}/oom_score_adj")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"echo nonsense > {d}/task/{big}/oom_score_adj")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert read(f"{d}/oom_score_adj") == "500\n"
    # below the floor (0): only a writer with CAP_SYS_RESOURCE (a container's root may lack it)
    r = sh(f"echo -5 > {d}/oom_score_adj")
    if has_cap("CAP_SYS_RESOURCE"):  # the shell inherits our capabilities
        assert r.returncode == 0 and read(f"{d}/oom_score_adj") == "-5\n"
    else:
        assert r.returncode != 0 and "Permission denied" in r.stderr
        assert read(f"{d}/oom_score_adj") == "500\n"
    assert sh(f"echo 15 > {d}/oom_adj").returncode == 0
    assert read(f"{d}/oom_score_adj") == "1000\n" and read(f"{d}/oom_adj") == "15\n"
    assert read(f"{m.proc}/1/oom_score") == "0\n"  # init is unkillable


def test_oom_kill_through_the_control_channel(procsim_mount):
    m = procsim_mount(scenario=SCENARIO)
    big, guard = pid_of(m, "big"), pid_of(m, "guard")
    m.ctl.oom_score_adj(pid=guard, value=-1000)
    assert read(f"{m.proc}/{guard}/oom_score") == "0\n"
    big_rss = kb(status(m, big)["VmRSS"])
    free_before = meminfo_kb(m, "MemFree")
    hog = m.ctl.spawn(argv=["/usr/bin/hog"])
    # as on Linux: the default heuristic (0) refuses a mapping larger than RAM at mmap
    with open(f"{m.proc}/sys/vm/overcommit_memory", "w") as f:
        f.write("1\n")
    addr = m.ctl.mmap(pid=hog, length=1 << 30)
    want = free_before + 64 * 1024  # more than is free: the OOM killer must make room
    assert m.ctl.touch(pid=hog, addr=addr, length=want * 1024) == want // 4
    pids = [int(n) for n in os.listdir(m.proc) if n.isdigit()]
    assert big not in pids and hog in pids and guard in pids
    assert not os.path.exists(f"{m.proc}/{big}")
    ps = m.run(["ps", "-e", "-o", "pid="], capture_output=True, text=True)
    assert ps.returncode == 0 and big not in {int(x) for x in ps.stdout.split()}
    log = read(f"{m.proc}/procsim/oom_log")
    assert re.search(rf"^\[ *\d+\.\d{{6}}\] Out of memory: Killed process {big} \(big\) total-vm:\d+kB, "
                     rf"anon-rss:\d+kB, file-rss:\d+kB, shmem-rss:0kB, UID:0 pgtables:\d+kB oom_score_adj:0$",
                     log, re.M), log
    assert re.search(r"^\[ *\d+\.\d{6}\] hog invoked oom-killer: ", log, re.M)
    ev = m.ctl.oom()[-1]
    assert ev["victim"]["tgid"] == big and guard not in {c["pid"] for c in ev["candidates"]}
    assert ev["free_after"] - ev["free_before"] >= big_rss // 4 - 1024
    # MemFree: what was free, less what the hog took, plus what the victim gave back
    hog_rss = kb(status(m, hog)["VmRSS"])
    free_after = meminfo_kb(m, "MemFree")
    assert abs(free_after - (free_before - hog_rss + big_rss)) < 16 * 1024, (free_before, free_after, hog_rss, big_rss)
    assert free_after > 32 * 1024


def test_rss_agrees_across_files_and_psutil(procsim_mount):
    m = procsim_mount(scenario=SCENARIO)
    hog = m.ctl.spawn(argv=["/usr/bin/hog"])
    addr = m.ctl.mmap(pid=hog, length=64 * MiB)
    for cpu in range(4):  # faults on every CPU: the approximation lags, the files must not
        m.ctl.migrate(tid=hog, cpu=cpu)
        m.ctl.touch(pid=hog, addr=addr + cpu * 3 * MiB, length=3 * MiB + 4096 * (cpu + 1))
    m.ctl.munmap(pid=hog, addr=addr, length=1 * MiB)
    with psutil_procfs(m):
        for pid, p in model(m).items():
            if p["kthread"] or p["zombie"]:
                continue
            s = status(m, pid)
            rss_kb = kb(s["VmRSS"])
            assert rss_kb == kb(s["RssAnon"]) + kb(s["RssFile"]) + kb(s["RssShmem"])
            assert statm(m, pid)[1] * 4 == rss_kb == int(stat_fields(m, pid)[23]) * 4 == p["rss_pages"] * 4
            assert psutil.Process(pid).memory_info().rss == rss_kb * 1024
            rows = {f[0]: [int(x) for x in f[1:]] for f in
                    (line.split() for line in read(f"{m.proc}/{pid}/rss_counters").splitlines()[1:])}
            assert (rows["MM_FILEPAGES"][0] + rows["MM_ANONPAGES"][0] + rows["MM_SHMEMPAGES"][0]) * 4 == rss_kb
            assert rows["MM_SWAPENTS"][0] * 4 == kb(s["VmSwap"])
            for precise, approx, lo, hi in rows.values():
                assert lo <= precise <= hi and approx <= precise
    counters = m.ctl.rss_counters(pid=hog)
    anon = counters["counters"]["MM_ANONPAGES"]
    assert anon["precise"] == kb(status(m, hog)["RssAnon"]) // 4 and anon["approx"] < anon["precise"]
    assert (counters["kind"], counters["under"], counters["over"]) == ("tree", 256, 248)
