"""cpu.max bandwidth (CFS throttling), cpu.weight(.nice), the v2 freezer and
io.max (blk-throttle): parsing and errnos with nothing changed on bad input,
the mechanism's numbers worked out by hand, and the /proc files of the
tasks agreeing with the cgroup's."""

from __future__ import annotations

import errno
import os

import pytest

from invariants import boot
from procfs_helpers import ROOT, errno_of, read_all
from procsim.cgroup import syscalls as C
from procsim.commands import CommandError, execute
from procsim.errors import KernelError
from procsim.procfs.tree import ProcFS
from procsim.units import NSEC, USER_HZ

CG = "/sys/fs/cgroup"


@pytest.fixture
def box():
    """4 CPUs, /box with the cpu and io controllers, 4 busy processes in it, one per CPU."""
    k = boot(mem_bytes=1 << 30, nr_cpus=4)
    C.write(k, "/", "cgroup.subtree_control", b"+cpu +io")
    C.mkdir(k, "/box")
    pids = [k.spawn(["/usr/bin/burn"]) for _ in range(4)]
    for i, p in enumerate(pids):
        C.attach(k, p, "/box")
        k.run(p, i)
    return k, ProcFS(k), pids


def rd(fs: ProcFS, path: str) -> str:
    return read_all(fs, path).decode()


def wr(fs: ProcFS, path: str, data: bytes) -> int:
    return fs.open(path, os.O_WRONLY, ROOT).write(data, 0)


def cputime(k, pids) -> int:
    return sum(k.task(p).utime + k.task(p).stime for p in pids)


def stat_of(fs, path) -> dict[str, int]:
    return {a: int(b) for a, b in (x.split() for x in rd(fs, path).splitlines())}


# -- cpu.max: parsing ------------------------------------------------------------------

@pytest.mark.parametrize("buf, shown", [
    (b"50000 100000\n", "50000 100000\n"), (b"max\n", "max 100000\n"), (b"max 200000", "max 200000\n"),
    (b"  20000\n", "20000 100000\n"),              # the period kept
    (b"30000abc 100000\n", "30000 100000\n"),      # %llu stops at the first non-digit
    (b"40000 -5\n", "40000 100000\n"),            # a period that does not scan keeps the old one
    (b"18446744073709551615 100000", "max 100000\n"),  # U64_MAX is RUNTIME_INF
    (b"1000 1000", "1000 1000\n"), (b"1000000 1000000", "1000000 1000000\n"),
])
def test_cpu_max_accepts(box, buf, shown) -> None:
    k, fs, _ = box
    wr(fs, f"{CG}/box/cpu.max", buf)
    assert rd(fs, f"{CG}/box/cpu.max") == shown


@pytest.mark.parametrize("buf", [b"", b"\n", b"lots 100000", b"-1 100000", b"+5000 100000", b"999 100000",
                                 b"50000 999", b"50000 1000001", b"max 0", b"17592186044416 100000",
                                 b"99999999999999999999 100000"])
def test_cpu_max_refuses_and_changes_nothing(box, buf) -> None:
    k, fs, _ = box
    wr(fs, f"{CG}/box/cpu.max", b"50000 200000")
    gen = k.generation
    assert errno_of(lambda: wr(fs, f"{CG}/box/cpu.max", buf)) == errno.EINVAL
    assert rd(fs, f"{CG}/box/cpu.max") == "50000 200000\n"
    assert k.generation == gen


def test_cpu_max_burst(box) -> None:
    k, fs, _ = box
    d = f"{CG}/box"
    assert rd(fs, f"{d}/cpu.max.burst") == "0\n"
    wr(fs, f"{d}/cpu.max", b"50000 100000")
    wr(fs, f"{d}/cpu.max.burst", b"20000\n")
    assert rd(fs, f"{d}/cpu.max.burst") == "20000\n"
    assert errno_of(lambda: wr(fs, f"{d}/cpu.max.burst", b"60000")) == errno.EINVAL  # above the quota
    assert errno_of(lambda: wr(fs, f"{d}/cpu.max.burst", b"-1")) == errno.EINVAL
    assert errno_of(lambda: wr(fs, f"{d}/cpu.max.burst", b"99999999999999999999")) == errno.ERANGE
    assert rd(fs, f"{d}/cpu.max.burst") == "20000\n"
    wr(fs, f"{d}/cpu.max", b"max")        # the burst stays, as on Linux (checked against the quota only)
    assert rd(fs, f"{d}/cpu.max.burst") == "20000\n"
    wr(fs, f"{d}/cpu.max.burst", b"900000")  # no quota: nothing to check it against
    assert errno_of(lambda: wr(fs, f"{d}/cpu.max", b"50000")) == errno.EINVAL  # now the burst is too big
    assert rd(fs, f"{d}/cpu.max") == "max 100000\n"


def test_cpu_files_are_not_on_the_root(box) -> None:
    k, fs, _ = box
    for name in ("cpu.max", "cpu.max.burst", "cpu.weight", "cpu.weight.nice", "cgroup.freeze", "io.max",
                 "io.weight", "cgroup.stat.local"):
        assert errno_of(lambda: rd(fs, f"{CG}/{name}")) == errno.ENOENT, name


# -- cpu.max: the mechanism -------------------------------------------------------------

def test_four_busy_tasks_get_half_a_cpu(box) -> None:
    k, fs, pids = box
    wr(fs, f"{CG}/box/cpu.max", b"50000 100000")
    before = cputime(k, pids)
    usage0 = stat_of(fs, f"{CG}/box/cpu.stat")["usage_usec"]
    k.advance(10)
    ran = cputime(k, pids) - before
    assert abs(ran - 5 * NSEC) <= 50_000_000  # 0.5 CPU for 10 s, within the first part-period's quota
    st = stat_of(fs, f"{CG}/box/cpu.stat")
    assert abs(st["usage_usec"] - usage0 - ran // 1000) <= 1
    # 100 periods, each one throttling all four cfs_rqs after 12.5 ms of their 100 ms
    assert st["nr_periods"] == 100 and st["nr_throttled"] == 100
    assert abs(st["throttled_usec"] - 100 * 4 * 87_500) <= 4 * 87_500
    assert st["nr_bursts"] == 0 and st["burst_usec"] == 0
    assert abs(stat_of(fs, f"{CG}/box/cpu.stat.local")["throttled_usec"] - st["throttled_usec"]) <= 4 * 87_500
    # each task's own files say the same: stat utime+stime, schedstat's run time
    for p in pids:
        f = rd(fs, f"/proc/{p}/stat").rsplit(")", 1)[1].split()
        assert f[0] == "R"
        ticks = int(f[11]) + int(f[12])
        t = k.task(p)
        assert ticks == (t.utime + t.stime) * USER_HZ // NSEC or abs(ticks - (t.utime + t.stime) * USER_HZ // NSEC) <= 1
        assert int(rd(fs, f"/proc/{p}/schedstat").split()[0]) == t.utime + t.stime


def test_throttled_cpus_are_idle_and_not_running(box) -> None:
    k, fs, pids = box
    wr(fs, f"{CG}/box/cpu.max", b"50000 100000")
    k.advance(1)
    # move to 20 ms into a period: 4 CPUs have used 4 x 12.5 ms, all throttled
    now = k.now
    period = 100_000_000
    k.advance(((now // period + 1) * period + 20_000_000 - now) / NSEC)
    assert all(k.sched.is_stalled(c) for c in k.sched.cpus)
    assert k.sched.nr_running() == 0
    procs_running = [ln for ln in rd(fs, "/proc/stat").splitlines() if ln.startswith("procs_running")][0]
    assert procs_running == "procs_running 0"
    idle0 = sum(c.idle for c in k.sched.cpus)
    k.advance(0.05)  # still throttled until the next period
    assert sum(c.idle for c in k.sched.cpus) - idle0 == 4 * 50_000_000


def test_a_child_gets_no_more_than_its_parent(box) -> None:
    k, fs, pids = box
    C.mkdir(k, "/outer")
    C.write(k, "/outer", "cgroup.subtree_control", b"+cpu")
    C.mkdir(k, "/outer/inner")
    for p in pids:
        C.attach(k, p, "/outer/inner")
    wr(fs, f"{CG}/outer/cpu.max", b"20000 100000")
    wr(fs, f"{CG}/outer/inner/cpu.max", b"300000 100000")  # 3 CPUs: the parent's 0.2 wins
    before = cputime(k, pids)
    k.advance(5)
    assert abs(cputime(k, pids) - before - NSEC) <= 20_000_000
    outer, inner = stat_of(fs, f"{CG}/outer/cpu.stat"), stat_of(fs, f"{CG}/outer/inner/cpu.stat")
    assert outer["nr_throttled"] == 50 and inner["nr_throttled"] == 0
    # the child is throttled by its parent: cpu.stat.local counts that, its cpu.stat does not
    assert inner["throttled_usec"] == 0 and stat_of(fs, f"{CG}/outer/inner/cpu.stat.local")["throttled_usec"] > 0


def test_an_idle_group_counts_two_periods_then_its_timer_stops(box) -> None:
    k, fs, pids = box
    C.mkdir(k, "/quiet")
    wr(fs, f"{CG}/quiet/cpu.max", b"50000 100000")
    k.advance(2)
    st = stat_of(fs, f"{CG}/quiet/cpu.stat")  # as the host's v1 cpu.stat after a write and 0.5 s idle
    assert (st["nr_periods"], st["nr_throttled"]) == (2, 0)


def test_burst_lets_a_period_use_what_earlier_ones_saved(box) -> None:
    k, fs, pids = box
    for p in pids[1:]:
        k.sleep(p)
    k.sleep(pids[0])
    wr(fs, f"{CG}/box/cpu.max", b"50000 100000")
    wr(fs, f"{CG}/box/cpu.max.burst", b"50000")
    k.advance(0.5)  # idle: the pool fills to quota + burst, then the timer stops
    k.run(pids[0], 0)
    k.advance(1)
    st = stat_of(fs, f"{CG}/box/cpu.stat")
    assert st["nr_bursts"] >= 1 and st["burst_usec"] > 0
    assert st["burst_usec"] <= 50000 * st["nr_bursts"]


def test_max_unthrottles_at_once(box) -> None:
    k, fs, pids = box
    wr(fs, f"{CG}/box/cpu.max", b"1000 100000")
    k.advance(0.05)
    assert any(k.sched.is_stalled(c) for c in k.sched.cpus)
    wr(fs, f"{CG}/box/cpu.max", b"max")
    assert not any(k.sched.is_stalled(c) for c in k.sched.cpus)
    before = cputime(k, pids)
    k.advance(1)
    assert cputime(k, pids) - before == 4 * NSEC


def test_cpu_weight_and_nice(box) -> None:
    k, fs, _ = box
    d = f"{CG}/box"
    assert (rd(fs, f"{d}/cpu.weight"), rd(fs, f"{d}/cpu.weight.nice")) == ("100\n", "0\n")
    wr(fs, f"{d}/cpu.weight.nice", b"19")   # weight 15: 15 * 100 / 1024 rounds to 1
    assert (rd(fs, f"{d}/cpu.weight"), rd(fs, f"{d}/cpu.weight.nice")) == ("1\n", "19\n")
    wr(fs, f"{d}/cpu.weight.nice", b"-20")  # 88761 -> 8668
    assert (rd(fs, f"{d}/cpu.weight"), rd(fs, f"{d}/cpu.weight.nice")) == ("8668\n", "-20\n")
    wr(fs, f"{d}/cpu.weight", b"200")       # shares 2048: nearest nice -3 (1991)
    assert (rd(fs, f"{d}/cpu.weight"), rd(fs, f"{d}/cpu.weight.nice")) == ("200\n", "-3\n")
    for name, buf, e in (("cpu.weight.nice", b"20", errno.ERANGE), ("cpu.weight.nice", b"x", errno.EINVAL),
                         ("cpu.weight", b"0", errno.ERANGE), ("cpu.weight", b"10001", errno.ERANGE),
                         ("cpu.weight", b"-1", errno.EINVAL)):
        assert errno_of(lambda: wr(fs, f"{d}/{name}", buf)) == e, (name, buf)
    assert rd(fs, f"{d}/cpu.weight") == "200\n"


# -- the freezer -------------------------------------------------------------------------

@pytest.fixture
def pair():
    """/ice with a busy process on CPU 0 and one asleep in nanosleep."""
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    C.mkdir(k, "/ice")
    busy, sleeper = k.spawn(["/usr/bin/burn"]), k.spawn(["/usr/bin/sleep", "100"])
    for p in (busy, sleeper):
        C.attach(k, p, "/ice")
    k.run(busy, 0)
    k.sleep(sleeper, "S", "nanosleep")
    return k, ProcFS(k), busy, sleeper


def test_freeze_stops_tasks_as_linux_shows_them(pair) -> None:
    k, fs, busy, sleeper = pair
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 1\nfrozen 0\n"
    nvcsw = k.task(busy).nvcsw
    wr(fs, f"{CG}/ice/cgroup.freeze", b"1\n")
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 1\nfrozen 1\n"
    assert rd(fs, f"{CG}/ice/cgroup.freeze") == "1\n"
    for p in (busy, sleeper):  # as the reference host shows a frozen task
        assert rd(fs, f"/proc/{p}/stat").rsplit(")", 1)[1].split()[0] == "S"
        assert "State:\tS (sleeping)\n" in rd(fs, f"/proc/{p}/status")
        assert rd(fs, f"/proc/{p}/wchan") == "get_signal"
        assert rd(fs, f"/proc/{p}/stack").startswith("[<0>] get_signal+0x3b1/0x8a0\n[<0>] arch_do_signal_or_restart")
    assert k.task(busy).nvcsw == nvcsw + 1 and k.sched.cpus[0].curr is None
    assert rd(fs, f"/proc/{sleeper}/syscall").startswith("230 ")       # still in clock_nanosleep
    assert rd(fs, f"/proc/{busy}/syscall").startswith("-1 0x")          # trapped in user mode
    assert len(rd(fs, f"/proc/{busy}/syscall").split()) == 3
    assert "exit_to_user_mode_loop" in rd(fs, f"/proc/{sleeper}/stack")
    assert "asm_sysvec_reschedule_ipi" in rd(fs, f"/proc/{busy}/stack")
    t0 = k.task(busy).utime + k.task(busy).stime
    k.advance(2)
    assert k.task(busy).utime + k.task(busy).stime == t0   # no CPU time while frozen
    assert 2_000_000 <= int(rd(fs, f"{CG}/ice/cgroup.stat.local").split()[1]) < 2_100_000
    wr(fs, f"{CG}/ice/cgroup.freeze", b"0")
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 1\nfrozen 0\n"
    assert k.sched.cpus[0].curr is k.task(busy) and k.task(busy).state == "R"
    assert k.task(sleeper).state == "S" and rd(fs, f"/proc/{sleeper}/wchan") == "hrtimer_nanosleep"
    k.advance(1)
    assert k.task(busy).utime + k.task(busy).stime == t0 + NSEC
    fz = int(rd(fs, f"{CG}/ice/cgroup.stat.local").split()[1])
    k.advance(1)
    assert int(rd(fs, f"{CG}/ice/cgroup.stat.local").split()[1]) == fz  # thawed: no longer counts


def test_freeze_is_hierarchical_and_catches_newcomers(pair) -> None:
    k, fs, busy, sleeper = pair
    C.mkdir(k, "/ice/sub")
    wr(fs, f"{CG}/ice/cgroup.freeze", b"1")
    C.mkdir(k, "/ice/later")
    for sub in ("sub", "later"):  # frozen by the parent; its own cgroup.freeze still 0
        assert rd(fs, f"{CG}/ice/{sub}/cgroup.events") == "populated 0\nfrozen 1\n"
        assert rd(fs, f"{CG}/ice/{sub}/cgroup.freeze") == "0\n"
    outsider = k.spawn(["/usr/bin/worker"])
    k.run(outsider, 1)
    C.attach(k, outsider, "/ice/sub")   # migrated in: it freezes
    assert k.task(outsider).state == "S" and k.sched.cpus[1].curr is None
    child = k.fork(sleeper)             # born in a frozen cgroup: frozen
    assert k.task(child).frozen is not None and rd(fs, f"/proc/{child}/wchan") == "get_signal"
    k.wake(sleeper)                     # it wakes into the trap: still S until the thaw
    assert k.task(sleeper).state == "S"
    C.attach(k, outsider, "/")          # migrated out: thawed, back on its CPU
    assert k.sched.cpus[1].curr is k.task(outsider)
    k.kill(child, 9)                    # a frozen task can be killed
    assert rd(fs, f"{CG}/ice/cgroup.events") == "populated 1\nfrozen 1\n"
    wr(fs, f"{CG}/ice/cgroup.freeze", b"0")
    assert k.task(sleeper).state == "R"  # the wake it got while frozen
    assert rd(fs, f"{CG}/ice/sub/cgroup.events") == "populated 0\nfrozen 0\n"


# the reference host's answers (echo -n VALUE > cgroup.freeze)
@pytest.mark.parametrize("buf, e", [(b"2", errno.ERANGE), (b"-1", errno.ERANGE), (b"yes", errno.EINVAL),
                                    (b"99999999999", errno.ERANGE)])
def test_freeze_refuses_and_changes_nothing(pair, buf, e) -> None:
    k, fs, busy, _ = pair
    gen = k.generation
    assert errno_of(lambda: wr(fs, f"{CG}/ice/cgroup.freeze", buf)) == e
    assert k.generation == gen and k.task(busy).frozen is None and rd(fs, f"{CG}/ice/cgroup.freeze") == "0\n"


def test_frozen_workload_makes_no_faults(pair) -> None:
    k, fs, busy, _ = pair
    execute(k, "workload_start", {"pid": busy, "pattern": "uniform", "rate": 10000})
    k.advance(0.5)
    wr(fs, f"{CG}/ice/cgroup.freeze", b"1")
    flt = k.task(busy).min_flt + k.task(busy).maj_flt
    k.advance(2)
    assert k.task(busy).min_flt + k.task(busy).maj_flt == flt


# -- io.max ------------------------------------------------------------------------------

def test_io_max_parsing(box) -> None:
    k, fs, _ = box
    d = f"{CG}/box"
    assert rd(fs, f"{d}/io.max") == ""
    wr(fs, f"{d}/io.max", b"254:0 rbps=1048576 wiops=120\n")
    assert rd(fs, f"{d}/io.max") == "254:0 rbps=1048576 wbps=max riops=max wiops=120\n"
    wr(fs, f"{d}/io.max", b"254:0 wbps=2097152 rbps=max\n")   # keys not given keep theirs
    assert rd(fs, f"{d}/io.max") == "254:0 rbps=max wbps=2097152 riops=max wiops=120\n"
    wr(fs, f"{d}/io.max", b"254:0 riops=99999999999\n")        # iops clamp at UINT_MAX: max
    assert rd(fs, f"{d}/io.max") == "254:0 rbps=max wbps=2097152 riops=max wiops=120\n"
    wr(fs, f"{d}/io.max", b"254:0\n")                          # nothing to change
    gen = k.generation
    for buf, e in ((b"254:0 rbps=0\n", errno.ERANGE), (b"254:0 rbps\n", errno.EINVAL),
                   (b"254:0 rbps=lots\n", errno.EINVAL), (b"254:0 speed=5\n", errno.EINVAL),
                   (b"254:0", errno.EINVAL), (b"254 rbps=5\n", errno.EINVAL), (b"x:0 rbps=5\n", errno.EINVAL),
                   (b"254:1 rbps=5\n", errno.ENODEV), (b"9:9 rbps=5\n", errno.ENODEV)):
        assert errno_of(lambda: wr(fs, f"{d}/io.max", buf)) == e, buf
    assert k.generation == gen
    assert rd(fs, f"{d}/io.max") == "254:0 rbps=max wbps=2097152 riops=max wiops=120\n"
    wr(fs, f"{d}/io.max", b"254:0 wbps=max wiops=max\n")       # all max: no line
    assert rd(fs, f"{d}/io.max") == ""
    assert rd(fs, f"{d}/io.stat").startswith("254:0")          # blkg_conf_prep made the blkg


def test_io_weight(box) -> None:
    k, fs, _ = box
    d = f"{CG}/box"
    assert rd(fs, f"{d}/io.weight") == "default 100\n"
    wr(fs, f"{d}/io.weight", b"default 300\n")
    assert rd(fs, f"{d}/io.weight") == "default 300\n"
    wr(fs, f"{d}/io.weight", b"50\n")
    assert rd(fs, f"{d}/io.weight") == "default 50\n"
    for buf, e in ((b"0", errno.EINVAL), (b"10001", errno.EINVAL), (b"heavy", errno.EINVAL),
                   (b"254:0 200", errno.EOPNOTSUPP), (b"8:0 200", errno.ENODEV)):
        assert errno_of(lambda: wr(fs, f"{d}/io.weight", buf)) == e, buf
    assert rd(fs, f"{d}/io.weight") == "default 50\n"


def test_io_max_limits_a_readers_rate() -> None:
    k = boot(mem_bytes=1 << 30, nr_cpus=2)
    C.write(k, "/", "cgroup.subtree_control", b"+io")
    C.mkdir(k, "/slow")
    pid = k.spawn(["/usr/bin/reader"])
    C.attach(k, pid, "/slow")
    C.write(k, "/slow", "io.max", b"254:0 rbps=1048576\n")
    k.vfs.file("/data/big", size=1 << 30)
    execute(k, "workload_start", {"pid": pid, "pattern": "uniform", "rate": 10, "file": "/data/big",
                                  "read_rate": "8M", "io_size": "64K"})
    rb0, rios0 = k.task(pid).ioac.read_bytes, k.cgroups.get("/slow").io.get("254:0", [0] * 6)[0]
    k.advance(20)
    rb = k.task(pid).ioac.read_bytes - rb0
    # 8 MiB/s asked, 1 MiB/s allowed: 20 MiB in 20 s (and a slice's burst)
    assert 19 << 20 <= rb <= 21.5 * (1 << 20), rb / (1 << 20)
    assert k.cgroups.get("/slow").io["254:0"][0] - rios0 == rb  # io.stat rbytes: the same bytes


def test_commands(box) -> None:
    k, fs, pids = box
    execute(k, "cpu_max", {"path": "/box", "quota": "20000", "period": 100000, "burst": 10000})
    assert rd(fs, f"{CG}/box/cpu.max") == "20000 100000\n" and rd(fs, f"{CG}/box/cpu.max.burst") == "10000\n"
    with pytest.raises(CommandError) as e:
        execute(k, "cpu_max", {"path": "/box", "quota": "500"})
    assert e.value.errno == errno.EINVAL
    execute(k, "io_max", {"path": "/box", "dev": "254:0", "limits": "wbps=4096"})
    execute(k, "cgroup_freeze", {"path": "/box"})
    q = execute(k, "cgroup_controls", {"path": "/box"})
    assert q["frozen"] and q["cpu"]["quota_us"] == 20000 and q["io_max"]["254:0"]["wbps"] == 4096
    with pytest.raises(CommandError) as e:
        execute(k, "io_max", {"path": "/box", "dev": "254:0", "limits": "wbps=0"})
    assert e.value.errno == errno.ERANGE


def test_scenario_keys(tmp_path) -> None:
    from procsim import scenario
    path = tmp_path / "s.toml"
    path.write_text("""
[machine]
nr_cpus = 4
boot_uptime = 60  # not the default hour: every cpu.max period of it is played, and nothing here looks back
[[cgroup]]
path = "/lim"
cpu_max = "25000 100000"
cpu_max_burst = 5000
cpu_weight_nice = 5
io_max = ["254:0 rbps=1048576"]
io_weight = "default 200"
[[cgroup]]
path = "/cold"
freeze = true
[[process]]
name = "spin"
argv = ["/usr/bin/spin"]
cgroup = "/lim"
run_on = 0
[[process]]
name = "stuck"
argv = ["/usr/bin/stuck"]
cgroup = "/cold"
run_on = 1
""")
    k = scenario.load(str(path), clock="manual")
    fs = ProcFS(k)
    assert rd(fs, f"{CG}/lim/cpu.max") == "25000 100000\n" and rd(fs, f"{CG}/lim/cpu.weight.nice") == "5\n"
    assert rd(fs, f"{CG}/lim/io.max") == "254:0 rbps=1048576 wbps=max riops=max wiops=max\n"
    assert rd(fs, f"{CG}/cold/cgroup.events").endswith("frozen 1\n")
    path.write_text('[[cgroup]]\npath = "/x"\ncpu_max = "1000 100000"\ncpu_max_burst = 5000\n')
    with pytest.raises(scenario.ScenarioError, match="cpu_max_burst"):
        scenario.load(str(path))
