"""psutil pointed at the mount (psutil.PROCFS_PATH = MNT/proc), compared
with the model's values from the control client."""

from __future__ import annotations

import sys

import psutil
import pytest

from fusehelpers import PAGE, model, psutil_procfs, user_name

pytestmark = pytest.mark.fuse

STATUS = {"R": psutil.STATUS_RUNNING, "S": psutil.STATUS_SLEEPING, "D": psutil.STATUS_DISK_SLEEP,
          "I": psutil.STATUS_IDLE, "Z": psutil.STATUS_ZOMBIE, "T": psutil.STATUS_STOPPED}


@pytest.fixture
def procfs(machine):
    with psutil_procfs(machine) as m:
        yield m


def test_pids(procfs):
    assert psutil.pids() == sorted(model(procfs))


def test_process_fields(procfs):
    ps = model(procfs)
    for pid, p in ps.items():
        proc = psutil.Process(pid)
        t = procfs.ctl.task(pid=pid)
        mi = proc.memory_info()
        assert mi.rss == p["rss_pages"] * PAGE
        assert mi.vms == t["total_vm"] * PAGE
        assert mi.shared == (t["rss"][0] + t["rss"][3]) * PAGE if t["rss"] else mi.shared == 0
        assert proc.num_threads() == len(p["threads"])
        assert sorted(th.id for th in proc.threads()) == sorted(p["threads"])
        argv = [] if p["kthread"] else p["cmdline"]
        # a title rewritten in place and padded with NULs to the argv area's end
        # (nginx, postgres): psutil splits the padding into empty strings
        pad = max(0, p["arg_len"] - len("".join(a + "\0" for a in argv).encode())) if argv else 0
        if pad:
            argv = argv + [""] * pad
        elif len(argv) == 1 and " " in argv[0]:  # psutil's rule for rewritten titles (sshd: ...)
            argv = argv[0].split(" ")
        assert proc.cmdline() == argv
        assert proc.status() == STATUS[p["state"]]
        assert proc.ppid() == p["ppid"]
        assert proc.uids().effective == p["uid"]
        assert proc.username() == user_name(p["uid"])
        # psutil completes a comm cut at 15 characters from argv[0]
        full = p["cmdline"][0].split("/")[-1] if p["cmdline"] else ""
        name = full if len(p["comm"]) >= 15 and full.startswith(p["comm"]) else p["comm"]
        assert proc.name() == name
        ct = proc.cpu_times()
        # the boot history's CPU time, in USER_HZ ticks, summed over the threads
        ts = [procfs.ctl.task(pid=tid) for tid in p["threads"]]
        assert ct.user == sum(x["utime"] for x in ts) // 10**7 / 100
        assert ct.system == sum(x["stime"] for x in ts) // 10**7 / 100


def test_virtual_memory_and_swap(procfs):
    vm = psutil.virtual_memory()
    assert vm.total == ((16 << 30) - (256 << 20))  # scenario mem less the reserved 256 MiB
    assert 0 < vm.available <= vm.total and 0 < vm.free <= vm.total
    assert vm.used == vm.total - vm.available  # psutil 7's definition
    sw = psutil.swap_memory()
    assert sw.total == (2 << 30) - PAGE and sw.used == 0


def test_cpu_count_and_times(procfs):
    ncpu = len(procfs.ctl.cpus())
    assert ncpu == 8
    assert len(psutil.cpu_times(percpu=True)) == ncpu
    # psutil.cpu_count() asks the host (sysconf) unless /sys is the machine's too:
    # run it in the namespace with both /proc and /sys bound.
    r = procfs.run([sys.executable, "-c", "import psutil; print(psutil.cpu_count())"],
                   bind_sys=True, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == ncpu
    assert psutil.boot_time() == 1767225600  # KernelConfig default btime (the scenario keeps it)


QUIET = """
description = "one process, nothing scheduled: only what the test does happens"
[machine]
nr_cpus = 2
mem = "512M"
kernel_reserved = "32M"
[[process]]
name = "worker"
pid = 200
argv = ["/usr/bin/worker"]
maps = [{ name = "buf", size = "8M", touch = "4M" }]
"""


def test_cpu_times_after_running(procsim_mount):
    """A process alone on a CPU for 10 s of virtual time has used 10 s of CPU
    more than the boot history gave it."""
    m = procsim_mount(scenario=QUIET)
    boot = m.ctl.now()
    old = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = m.proc
    try:
        ct0, per_cpu0 = psutil.Process(200).cpu_times(), psutil.cpu_times(percpu=True)
    finally:
        psutil.PROCFS_PATH = old
    m.ctl.run(tid=200, cpu=1)
    m.ctl.advance(seconds=10)
    late = m.ctl.spawn(argv=["/usr/bin/late"])
    psutil.PROCFS_PATH = m.proc
    try:
        # create_time = btime + start: the scenario's process at its start in
        # the boot history, the spawned one at the clock's time of the spawn
        btime = psutil.boot_time()
        assert btime == 1767225600  # KernelConfig default btime
        start = m.ctl.task(pid=200)["start_time"] / 1e9
        assert 0 < start < boot and psutil.Process(200).create_time() == pytest.approx(btime + start, abs=0.01)
        assert psutil.Process(late).create_time() == btime + boot + 10
        ct = psutil.Process(200).cpu_times()
        per_cpu = psutil.cpu_times(percpu=True)
        assert psutil.Process(200).status() == psutil.STATUS_RUNNING
    finally:
        psutil.PROCFS_PATH = old
    # ticks truncate: each delta is within one tick per counter of the exact 10 s and 1 s
    assert (ct.user + ct.system) - (ct0.user + ct0.system) == pytest.approx(10.0, abs=0.021)
    assert ct.system - ct0.system == pytest.approx(1.0, abs=0.011)  # the model charges a tenth as system time
    busy1 = (per_cpu[1].user + per_cpu[1].system) - (per_cpu0[1].user + per_cpu0[1].system)
    assert busy1 == pytest.approx(10.0, abs=0.021)
    assert per_cpu[0].user + per_cpu[0].system == per_cpu0[0].user + per_cpu0[0].system
    assert per_cpu[0].idle - per_cpu0[0].idle == pytest.approx(10.0, abs=0.011)
