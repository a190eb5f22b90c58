"""Group scheduling (cpu.weight, cpu.weight.nice, cpu.idle), cgroup.kill,
the freezer and tasks in D, and PSI of throttled tasks: the shares worked
out by hand from calc_group_shares and compared with cpu.stat, the tasks'
stat, schedstat and sched files; errnos with nothing changed."""

from __future__ import annotations

import errno
import os

import pytest

from invariants import boot
from procfs_helpers import ROOT, errno_of, read_all
from procsim.cgroup import syscalls as C
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS
from procsim.units import NSEC, USER_HZ

CG = "/sys/fs/cgroup"


def rd(fs: ProcFS, path: str) -> str:
    return read_all(fs, path).decode()


def wr(fs: ProcFS, path: str, data: bytes) -> int:
    return fs.open(path, os.O_WRONLY, ROOT).write(data, 0)


def usage(fs: ProcFS, path: str) -> int:
    return int(rd(fs, f"{CG}{path}/cpu.stat").split("\n")[0].split()[1])


def ran(k, pid) -> int:
    t = k.task(pid)
    return t.utime + t.stime


def busy(k, path: str, n: int, cpus: list[int]) -> list[int]:
    """n busy processes in `path`, each run on its CPU (the later ones
    preempt the earlier: all stay runnable there)."""
    pids = [k.spawn(["/usr/bin/burn"]) for _ in range(n)]
    for p, cpu in zip(pids, cpus):
        C.attach(k, p, path)
        k.run(p, cpu, preempt=True)
    return pids


@pytest.fixture
def two():
    """2 CPUs; /a at cpu.weight 100 and /b at 300, 4 busy tasks each, two of each on each CPU."""
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    fs = ProcFS(k)
    C.write(k, "/", "cgroup.subtree_control", b"+cpu")
    for path in ("/a", "/b"):
        C.mkdir(k, path)
    wr(fs, f"{CG}/b/cpu.weight", b"300\n")
    a = busy(k, "/a", 4, [0, 1, 0, 1])
    b = busy(k, "/b", 4, [0, 1, 0, 1])
    return k, fs, a, b


def test_weights_share_the_cpus_one_to_three(two) -> None:
    k, fs, a, b = two
    ua, ub = usage(fs, "/a"), usage(fs, "/b")
    k.advance(10)
    da, db = usage(fs, "/a") - ua, usage(fs, "/b") - ub
    # per CPU: /a's entity weighs 1024 * 2048/4096 = 512, /b's 3072 * 2048/4096 = 1536
    assert (da, db) == (5_000_000, 15_000_000)
    assert da + db == 2 * 10_000_000  # the CPUs never idled
    for p in a:
        assert ran(k, p) == 10 * NSEC // 8  # a quarter of a CPU, shared by two
    for p in b:
        assert ran(k, p) == 3 * 10 * NSEC // 8
    # /proc/PID/stat: utime + stime in clock ticks agree
    for p in a + b:
        f = rd(fs, f"/proc/{p}/stat").rsplit(")", 1)[1].split()
        t = k.task(p)
        assert (int(f[11]), int(f[12])) == (t.utime * USER_HZ // NSEC, t.stime * USER_HZ // NSEC)
        assert t.utime == 9 * ran(k, p) // 10  # a user task: 90% user mode
    # schedstat: run time, then the time it waited runnable (the rest of the 10 s)
    run, wait, slices = map(int, rd(fs, f"/proc/{a[0]}/schedstat").split())
    assert run == ran(k, a[0]) and wait == 10 * NSEC - run and slices > 0
    # /proc/PID/sched: the task's own weight (nice 0: 1024 << 10)
    assert "se.load.weight                               :              1048576" in rd(fs, f"/proc/{a[0]}/sched")
    # the group entities' weights per CPU (kernel state; Linux shows them in debugfs sched/debug)
    gw = k.sched.group_weights
    ida, idb = k.cgroups.get("/a").id, k.cgroups.get("/b").id
    for cpu in (0, 1):
        assert gw.se_weight[(ida, cpu)] == 512 << 10 and gw.se_weight[(idb, cpu)] == 1536 << 10
        assert gw.load[(ida, cpu)] == 2 * 1024 << 10


def test_all_runnable_tasks_are_r_and_counted(two) -> None:
    k, fs, a, b = two
    k.advance(1)
    assert all(k.task(p).state == "R" for p in a + b)
    assert sum(1 for c in k.sched.cpus if c.curr is not None) == 2
    assert "procs_running 8" in rd(fs, "/proc/stat")


def test_weight_change_takes_effect_from_then(two) -> None:
    k, fs, a, b = two
    k.advance(2)
    wr(fs, f"{CG}/a/cpu.weight", b"300\n")
    ua, ub = usage(fs, "/a"), usage(fs, "/b")
    k.advance(4)
    assert usage(fs, "/a") - ua == usage(fs, "/b") - ub == 4_000_000


def test_hierarchy_shares_inside_then_among_siblings() -> None:
    """/p (100) holds /p/x (100) and /p/y (300); /q (100) beside it; one CPU:
    /p and /q half each, and /p's half split 1:3 between x and y."""
    k = boot(mem_bytes=1 << 30, nr_cpus=1)
    fs = ProcFS(k)
    C.write(k, "/", "cgroup.subtree_control", b"+cpu")
    for path in ("/p", "/q"):
        C.mkdir(k, path)
    C.write(k, "/p", "cgroup.subtree_control", b"+cpu")
    C.mkdir(k, "/p/x")
    C.mkdir(k, "/p/y")
    wr(fs, f"{CG}/p/y/cpu.weight", b"300")
    x, y, q = busy(k, "/p/x", 1, [0]), busy(k, "/p/y", 1, [0]), busy(k, "/q", 3, [0, 0, 0])
    k.advance(8)
    assert usage(fs, "/p") == usage(fs, "/q") == 4_000_000
    assert (usage(fs, "/p/x"), usage(fs, "/p/y")) == (1_000_000, 3_000_000)
    assert ran(k, x[0]) == NSEC and ran(k, y[0]) == 3 * NSEC


def test_nice_inside_a_group() -> None:
    k = boot(mem_bytes=1 << 30, nr_cpus=1)
    C.write(k, "/", "cgroup.subtree_control", b"+cpu")
    C.mkdir(k, "/g")
    p, q = busy(k, "/g", 2, [0, 0])
    k.set_nice(q, 5)  # weight 335 against 1024
    k.advance(1359)
    assert (ran(k, p), ran(k, q)) == (1024 * NSEC, 335 * NSEC)


def test_weight_nice_and_idle_weights() -> None:
    """cpu.weight.nice -5 is weight 3121 (cpu.weight 305); an idle group weighs 3."""
    k = boot(mem_bytes=1 << 30, nr_cpus=1)
    fs = ProcFS(k)
    C.write(k, "/", "cgroup.subtree_control", b"+cpu")
    for path in ("/hi", "/lo", "/idle"):
        C.mkdir(k, path)
    wr(fs, f"{CG}/hi/cpu.weight.nice", b"-5\n")
    assert rd(fs, f"{CG}/hi/cpu.weight") == "305\n" and rd(fs, f"{CG}/hi/cpu.weight.nice") == "-5\n"
    hi, lo = busy(k, "/hi", 1, [0]), busy(k, "/lo", 1, [0])
    k.advance(4145)
    assert (usage(fs, "/hi"), usage(fs, "/lo")) == (3121 * 1_000_000, 1024 * 1_000_000)
    assert rd(fs, f"{CG}/idle/cpu.idle") == "0\n"
    wr(fs, f"{CG}/idle/cpu.idle", b"1\n")
    assert rd(fs, f"{CG}/idle/cpu.idle") == "1\n" and rd(fs, f"{CG}/idle/cpu.weight") == "1\n"
    assert rd(fs, f"{CG}/idle/cpu.weight.nice") == "19\n"
    busy(k, "/idle", 1, [0])
    u = usage(fs, "/idle"), usage(fs, "/lo"), usage(fs, "/hi")
    k.advance(4148)  # 3121 + 1024 + 3
    assert (usage(fs, "/idle") - u[0], usage(fs, "/lo") - u[1], usage(fs, "/hi") - u[2]) == (
        3_000_000, 1024_000_000, 3121_000_000)
    wr(fs, f"{CG}/idle/cpu.idle", b"0")
    assert rd(fs, f"{CG}/idle/cpu.weight") == "100\n"


@pytest.mark.parametrize("name, buf, e", [
    ("cpu.weight", b"0\n", errno.ERANGE), ("cpu.weight", b"10001", errno.ERANGE),
    ("cpu.weight", b"-1", errno.EINVAL), ("cpu.weight", b"abc", errno.EINVAL), ("cpu.weight", b"", errno.EINVAL),
    ("cpu.weight", b"18446744073709551616", errno.ERANGE),
    ("cpu.weight.nice", b"20", errno.ERANGE), ("cpu.weight.nice", b"-21", errno.ERANGE),
    ("cpu.weight.nice", b"x", errno.EINVAL),
    ("cpu.idle", b"2", errno.EINVAL), ("cpu.idle", b"-1", errno.EINVAL), ("cpu.idle", b"yes", errno.EINVAL),
    ("cgroup.kill", b"0", errno.ERANGE), ("cgroup.kill", b"2\n", errno.ERANGE), ("cgroup.kill", b"-1", errno.ERANGE),
    ("cgroup.kill", b"abc", errno.EINVAL), ("cgroup.kill", b"1 1", errno.EINVAL),
    ("cgroup.kill", b"4294967297", errno.ERANGE),
])
def test_bad_writes_change_nothing(two, name, buf, e) -> None:
    k, fs, a, b = two
    gen = k.generation
    before = {n: rd(fs, f"{CG}/b/{n}") for n in ("cpu.weight", "cpu.weight.nice", "cpu.idle", "cgroup.events")}
    assert errno_of(lambda: wr(fs, f"{CG}/b/{name}", buf)) == e
    assert k.generation == gen
    assert {n: rd(fs, f"{CG}/b/{n}") for n in before} == before


def test_an_idle_group_refuses_weights(two) -> None:
    k, fs, a, b = two
    wr(fs, f"{CG}/b/cpu.idle", b"1")
    for name, buf in (("cpu.weight", b"200"), ("cpu.weight.nice", b"0")):
        assert errno_of(lambda: wr(fs, f"{CG}/b/{name}", buf)) == errno.EINVAL
    assert rd(fs, f"{CG}/b/cpu.weight") == "1\n"


def test_files_not_on_the_root(two) -> None:
    k, fs, a, b = two
    for name in ("cpu.weight", "cpu.weight.nice", "cpu.idle", "cgroup.kill"):
        assert errno_of(lambda: rd(fs, f"{CG}/{name}")) == errno.ENOENT
    assert fs.getattr(f"{CG}/a/cgroup.kill", ROOT).mode & 0o777 == 0o200
    assert fs.getattr(f"{CG}/a/cpu.idle", ROOT).mode & 0o777 == 0o644
    assert errno_of(lambda: rd(fs, f"{CG}/a/cgroup.kill")) == errno.EINVAL


# -- cgroup.kill -------------------------------------------------------------------------

def test_kill_kills_the_subtree_through_exit() -> None:
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    fs = ProcFS(k)
    C.mkdir(k, "/svc")
    C.mkdir(k, "/svc/sub")
    parent = k.spawn(["/usr/bin/supervisor"])  # outside: it gets the zombies
    kids = [k.fork(parent) for _ in range(2)]
    C.attach(k, kids[0], "/svc")
    C.attach(k, kids[1], "/svc/sub")
    orphan = k.spawn(["/usr/bin/daemon"])  # init's child: reaped at once
    C.attach(k, orphan, "/svc/sub")
    k.run(kids[0], 0)
    other = k.spawn(["/usr/bin/bystander"])
    assert rd(fs, f"{CG}/svc/cgroup.events").startswith("populated 1")
    wr(fs, f"{CG}/svc/cgroup.kill", b"1\n")
    for p in kids:
        assert k.group(p).zombie and k.group(p).exit_code == 9
        assert rd(fs, f"/proc/{p}/stat").split()[2] == "Z"
    assert orphan not in k.groups
    assert k.sched.cpus[0].curr is None
    assert rd(fs, f"{CG}/svc/cgroup.events") == "populated 0\nfrozen 0\n"
    assert rd(fs, f"{CG}/svc/sub/cgroup.procs") == "" and rd(fs, f"{CG}/svc/cgroup.procs") == ""
    assert not k.group(other).zombie and not k.group(parent).zombie
    assert sorted(k.wait(parent) for _ in kids) == sorted(kids)
    C.rmdir(k, "/svc/sub")


def test_kill_reaches_frozen_tasks() -> None:
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    fs = ProcFS(k)
    C.mkdir(k, "/ice")
    p = k.spawn(["/usr/bin/burn"])
    C.attach(k, p, "/ice")
    k.run(p, 1)
    wr(fs, f"{CG}/ice/cgroup.freeze", b"1")
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 1\nfrozen 1\n"
    wr(fs, f"{CG}/ice/cgroup.kill", b"1")
    assert p not in k.groups  # init's child, reaped
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 0\nfrozen 1\n"


def test_kill_command() -> None:
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    C.mkdir(k, "/x")
    p = k.spawn(["/usr/bin/a"])
    C.attach(k, p, "/x")
    execute(k, "cgroup_write", {"path": "/x", "file": "cgroup.kill", "value": "1"})
    assert p not in k.groups
    with pytest.raises(CommandError) as e:
        execute(k, "cgroup_write", {"path": "/x", "file": "cgroup.kill", "value": "0"})
    assert e.value.errno == errno.ERANGE


# -- the freezer and D -------------------------------------------------------------------

def test_a_task_in_d_freezes_only_when_it_leaves_d() -> None:
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    fs = ProcFS(k)
    C.mkdir(k, "/ice")
    d, s = k.spawn(["/usr/bin/writer"]), k.spawn(["/usr/bin/sleep", "100"])
    for p in (d, s):
        C.attach(k, p, "/ice")
    k.sleep(d, "D")
    wr(fs, f"{CG}/ice/cgroup.freeze", b"1")
    assert k.task(s).frozen is not None and k.task(d).frozen is None
    k.advance(1)
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 1\nfrozen 0\n"   # d holds it back
    assert rd(fs, f"/proc/{d}/stat").split()[2] == "D"
    k.wake(d)  # its I/O completes: on the way to user mode it traps
    assert k.task(d).frozen is not None and k.task(d).state == "S"
    assert rd(fs, f"/proc/{d}/wchan") == "get_signal"
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 1\nfrozen 1\n"
    t0 = ran(k, d)
    k.advance(1)
    assert ran(k, d) == t0  # no CPU time while frozen
    wr(fs, f"{CG}/ice/cgroup.freeze", b"0")
    assert k.task(d).state == "R" and k.task(d).frozen is None  # runnable, as the wake left it
    k.advance(1)
    assert ran(k, d) == t0 + NSEC  # its CPU was idle: it ran


def test_d_into_interruptible_sleep_freezes() -> None:
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    fs = ProcFS(k)
    C.mkdir(k, "/ice")
    d = k.spawn(["/usr/bin/writer"])
    C.attach(k, d, "/ice")
    k.sleep(d, "D")
    wr(fs, f"{CG}/ice/cgroup.freeze", b"1")
    assert rd(fs, f"{CG}/ice/cgroup.events").endswith("frozen 0\n")
    k.sleep(d, "S")
    assert k.task(d).frozen is not None
    assert rd(fs, f"{CG}/ice/cgroup.events").endswith("frozen 1\n")


# -- PSI of throttled tasks --------------------------------------------------------------

def _total(fs, path: str, line: str) -> int:
    for row in rd(fs, path).splitlines():
        if row.startswith(line):
            return int(row.rsplit("total=", 1)[1])
    raise AssertionError(path)


def test_throttled_tasks_are_cpu_pressure() -> None:
    """One busy task under cpu.max 50000 100000 on an otherwise idle machine:
    throttled half of each period, still runnable for PSI (6.18's task-based
    throttle dequeues it through the class, not dequeue_task()): cpu some
    half the time, and full for its cgroup (none of its tasks on a CPU)."""
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    fs = ProcFS(k)
    C.write(k, "/", "cgroup.subtree_control", b"+cpu")
    C.mkdir(k, "/lim")
    wr(fs, f"{CG}/lim/cpu.max", b"50000 100000")
    (p,) = busy(k, "/lim", 1, [0])
    k.advance(1)
    s0 = _total(fs, "/proc/pressure/cpu", "some")
    g0 = _total(fs, f"{CG}/lim/cpu.pressure", "some"), _total(fs, f"{CG}/lim/cpu.pressure", "full")
    t0 = ran(k, p)
    k.advance(10)
    assert ran(k, p) - t0 == pytest.approx(5 * NSEC, rel=1e-6)
    assert _total(fs, "/proc/pressure/cpu", "some") - s0 == pytest.approx(5_000_000, rel=0.02)
    assert _total(fs, f"{CG}/lim/cpu.pressure", "some") - g0[0] == pytest.approx(5_000_000, rel=0.02)
    assert _total(fs, f"{CG}/lim/cpu.pressure", "full") - g0[1] == pytest.approx(5_000_000, rel=0.02)
    # not in nr_running while throttled (dequeued): the load average counts it half the time
    assert k.task(p).state == "R"


def test_a_throttled_group_leaves_its_cpu_to_the_others() -> None:
    """/lim (cpu.max 25%) and /free share CPU 0: while /lim is throttled /free
    runs alone, so the CPU never idles and /lim gets its quota."""
    k = boot(mem_bytes=1 << 30, nr_cpus=1)
    fs = ProcFS(k)
    C.write(k, "/", "cgroup.subtree_control", b"+cpu")
    C.mkdir(k, "/lim")
    C.mkdir(k, "/free")
    wr(fs, f"{CG}/lim/cpu.max", b"25000 100000")
    busy(k, "/lim", 2, [0, 0])
    busy(k, "/free", 1, [0])
    k.advance(0.05)
    u = usage(fs, "/lim"), usage(fs, "/free")
    idle0 = k.sched.cpus[0].idle
    k.advance(10)
    assert usage(fs, "/lim") - u[0] == pytest.approx(2_500_000, rel=0.01)
    assert usage(fs, "/free") - u[1] == pytest.approx(7_500_000, rel=0.01)
    assert k.sched.cpus[0].idle == idle0
    st = {a: int(b) for a, b in (x.split() for x in rd(fs, f"{CG}/lim/cpu.stat").splitlines())}
    assert st["nr_throttled"] >= 99


def test_determinism_whatever_is_read(two) -> None:
    def run(read: bool) -> bytes:
        k = boot(mem_bytes=1 << 30, nr_cpus=2)
        fs = ProcFS(k)
        C.write(k, "/", "cgroup.subtree_control", b"+cpu")
        C.mkdir(k, "/a")
        C.mkdir(k, "/b")
        wr(fs, f"{CG}/b/cpu.weight", b"250")
        pids = busy(k, "/a", 3, [0, 1, 0]) + busy(k, "/b", 2, [1, 0])
        for _ in range(7):
            k.advance(0.37)
            if read:
                for p in pids:
                    rd(fs, f"/proc/{p}/sched")
        return b"".join(read_all(fs, f"/proc/{p}/schedstat") + read_all(fs, f"/proc/{p}/stat") for p in pids)
    assert run(False) == run(True)


def test_cpu_shares_query(two) -> None:
    k, fs, a, b = two
    gen = k.generation
    out = execute(k, "cpu_shares", {})
    assert k.generation == gen
    assert out["groups"]["/a"]["0"] == {"se_weight": 512 << 10, "load": 2048 << 10}
    assert out["groups"]["/b"]["1"] == {"se_weight": 1536 << 10, "load": 2048 << 10}
    assert out["cpus"]["0"] == {str(a[0]): 125_000, str(a[2]): 125_000, str(b[0]): 375_000, str(b[2]): 375_000}
