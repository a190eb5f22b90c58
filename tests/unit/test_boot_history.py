"""The boot history: a world loaded from a scenario has been up for
boot_uptime seconds, and its files say so consistently (start times, CPU
time, context switches, load average, run queue)."""

from __future__ import annotations

import pytest

from procsim import scenario
from procsim.kernel import Kernel
from procsim.procfs.tree import ProcFS
from procsim.scenario import ScenarioError

from procfs_helpers import read_all

NSEC = 10**9
# kernel/sched/loadavg.c and include/linux/sched/loadavg.h
FSHIFT, FIXED_1 = 11, 1 << 11
EXP_1, EXP_5, EXP_15 = 1884, 2014, 2037


def calc_load(load: int, exp: int, active: int) -> int:
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return newload // FIXED_1


@pytest.fixture(scope="module")
def traced() -> tuple[Kernel, list[tuple[int, int]]]:
    """The default world, with the number of R and D tasks after every change
    of the history, counted here from the task table."""
    trace: list[tuple[int, int]] = []
    orig = Kernel.__init__

    def init(self, *a, **kw) -> None:
        orig(self, *a, **kw)
        self.observers.append(lambda what, info: trace.append(
            (self.now, sum(1 for t in self.tasks.values() if not t.dead and t.state in ("R", "D")))))

    mp = pytest.MonkeyPatch()
    mp.setattr(Kernel, "__init__", init)
    try:
        k = scenario.load()
    finally:
        mp.undo()
    return k, trace


def _fields(fs: ProcFS, path: str) -> list[str]:
    s = read_all(fs, path).decode()
    return s[s.rindex(")") + 2:].split()


def _starttime(fs: ProcFS, pid: int) -> int:
    return int(_fields(fs, f"/proc/{pid}/stat")[22 - 3])


def _global(fs: ProcFS, name: str) -> str:
    return read_all(fs, f"/proc/{name}").decode()


def test_start_times_follow_the_boot(traced) -> None:
    k, _ = traced
    fs = ProcFS(k)
    pid = scenario.names(k).process
    up = float(_global(fs, "uptime").split()[0]) * 100
    init = _starttime(fs, 1)
    kthreads = [_starttime(fs, g.tgid) for g in k.thread_groups() if g.kthread]
    services = [_starttime(fs, pid(n)) for n in ("journald", "udevd", "dbus", "logind", "cron", "rsyslogd", "sshd")]
    sessions = [_starttime(fs, pid(n)) for n in ("sshd-alice", "bash", "bash-2", "top", "python")]
    assert 0 < init <= min(kthreads) and max(kthreads) < min(services)
    assert max(services) < min(sessions) and max(sessions) < up
    assert sessions == sorted(sessions)  # created in the order declared
    assert sessions[0] == 420 * 100  # the scenario's `start = 420`
    assert len(set(services)) == len(services)  # staggered, not one instant
    # pids are handed out in creation order: start times never go down with the pid
    starts = [_starttime(fs, g.tgid) for g in k.thread_groups()]
    assert starts == sorted(starts)


def test_task_cpu_time_adds_up_to_the_cpus_busy_time(traced) -> None:
    k, _ = traced
    fs = ProcFS(k)
    cpu = [int(x) for x in _global(fs, "stat").splitlines()[0].split()[1:]]
    busy = cpu[0] + cpu[1] + cpu[2]  # user nice system (no irq/softirq time modelled)
    groups = k.thread_groups()
    tasks = 0
    for g in groups:
        f = _fields(fs, f"/proc/{g.tgid}/stat")
        tasks += int(f[14 - 3]) + int(f[15 - 3])
    # Each process's utime and stime are truncated to ticks (< 2 ticks lost
    # per process); the cpu line truncates each column once (< 3 ticks). No
    # process exited before the start, so no time went to cutime/cstime.
    assert 0 <= busy - tasks < 2 * len(groups) + 3, (busy, tasks)
    assert busy > 100 * 100  # the running tasks and the bursts used real CPU time
    # all CPU time is accounted: busy + idle is nr_cpus x uptime
    up = float(_global(fs, "uptime").split()[0])
    assert sum(cpu) / 100 == pytest.approx(k.config.nr_cpus * up, abs=0.1)
    assert int(_global(fs, "stat").split("ctxt ")[1].split()[0]) > 0


def test_loadavg_is_calc_load_over_the_history(traced) -> None:
    k, trace = traced
    hz = k.config.hz
    load_freq = (5 * hz + 1) * NSEC // hz  # LOAD_FREQ = 5 s + 1 jiffy
    avenrun = [0, 0, 0]
    i, active = 0, 0
    t = load_freq
    while t <= k.now:
        while i < len(trace) and trace[i][0] < t:  # a change at the sample's instant comes after it
            active = trace[i][1]
            i += 1
        avenrun = [calc_load(a, e, active * FIXED_1) for a, e in zip(avenrun, (EXP_1, EXP_5, EXP_15))]
        t += load_freq
    assert avenrun == k.avenrun

    def fmt(a: int) -> str:
        a += FIXED_1 // 200
        return f"{a >> FSHIFT}.{((a & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"

    text = _global(ProcFS(k), "loadavg").split()
    assert text[:3] == [fmt(a) for a in avenrun]
    assert float(text[0]) == pytest.approx(active, abs=0.05)  # the run queue has been steady a while


def test_procs_running_is_the_number_of_r_tasks_in_every_file() -> None:
    k = scenario.load()
    for step in (0, 7.3, 13.1):  # the activities after the start move tasks around
        k.advance(step)
        fs = ProcFS(k)
        r = sum(1 for g in k.thread_groups() for t in g.threads
                if _fields(fs, f"/proc/{g.tgid}/task/{t.pid}/stat")[0] == "R")
        stat = _global(fs, "stat")
        assert f"\nprocs_running {r}\n" in stat
        assert _global(fs, "loadavg").split()[3] == f"{r}/{k.nr_threads()}"
        assert r == k.sched.nr_running() and r > 0


def _files(k: Kernel) -> bytes:
    fs = ProcFS(k)
    out = [read_all(fs, f"/proc/{n}") for n in ("stat", "loadavg", "uptime")]
    out += [read_all(fs, f"/proc/{g.tgid}/stat") + read_all(fs, f"/proc/{g.tgid}/status")
            for g in k.thread_groups()]
    return b"".join(out)


def test_the_history_is_deterministic_and_follows_the_seed() -> None:
    a, b, c = scenario.load(seed=3), scenario.load(seed=3), scenario.load(seed=4)
    assert _files(a) == _files(b)
    assert _files(a) != _files(c)
    fa, fc = ProcFS(a), ProcFS(c)
    assert _starttime(fa, 3) != _starttime(fc, 3)  # kthreads created at other instants
    assert _global(fa, "stat").splitlines()[0] != _global(fc, "stat").splitlines()[0]


SMALL = """
[machine]
nr_cpus = 2
mem = "256M"
kernel_reserved = "32M"
boot_uptime = 100
[[process]]
name = "a"
argv = ["/usr/bin/a"]
start = 10
"""


def test_start_key() -> None:
    import tomllib
    k = scenario.build(tomllib.loads(SMALL))
    assert k.task(scenario.names(k).process("a")).start_time == 10 * NSEC
    late = SMALL + '[[process]]\nname = "b"\nargv = ["/usr/bin/b"]\nstart = 5\n'
    with pytest.raises(ScenarioError, match="before the task created before it"):
        scenario.build(tomllib.loads(late))
    with pytest.raises(ScenarioError, match="outside 0..100"):
        scenario.build(tomllib.loads(SMALL.replace("start = 10", "start = 100.5")))
    with pytest.raises(ScenarioError, match="start"):
        scenario.build(tomllib.loads(SMALL.replace("start = 10", 'start = "soon"')))
