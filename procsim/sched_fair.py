"""The fair class's per-task state (kernel/sched/fair.c, pelt.c, stats.h):
what /proc/PID/sched and schedstat show, kept where the scheduler runs
tasks, never computed by a read.

  SchedEntity  se.exec_start, se.vruntime, se.nr_migrations, the PELT
               averages (se.avg.*), util_est, and sched_info (run_delay,
               pcount: schedstat's wait time and timeslices)
  CfsRqs       the cfs_rq of each (CPU, task group): the vruntime a task
               is placed at when it is enqueued there (EEVDF with zero lag)

se.sum_exec_runtime is utime + stime: the model charges CPU time in one
place (Sched.account), so the two cannot disagree as they do not on Linux
(cputime_adjust scales utime/stime to sum_exec_runtime).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# kernel/sched/core.c: sched_prio_to_weight[40], nice -20 .. 19
SCHED_PRIO_TO_WEIGHT = (
    88761, 71755, 56483, 46273, 36291,
    29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906,
    3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423,
    335, 272, 215, 172, 137,
    110, 87, 70, 56, 45,
    36, 29, 23, 18, 15,
)
NICE_0_LOAD = 1024
WEIGHT_IDLEPRIO = 3          # SCHED_IDLE
SCHED_FIXEDPOINT_SHIFT = 10  # scale_load(): se.load.weight is weight << 10 on 64-bit
SCHED_CAPACITY_SHIFT = 10
SCHED_IDLE = 5
BASE_SLICE_NS = 700_000      # sysctl_sched_base_slice before scaling by CPU count

# PELT (kernel/sched/pelt.c, sched-pelt.h): y^32 = 1/2, periods of 1024 us
LOAD_AVG_PERIOD = 32
LOAD_AVG_MAX = 47742
RUNNABLE_AVG_YN_INV = tuple(
    int(((1 << 32) - 1) * 0.5 ** (i / LOAD_AVG_PERIOD)) for i in range(LOAD_AVG_PERIOD))
UTIL_EST_WEIGHT_SHIFT = 2


def task_weight(nice: int, policy: int) -> int:
    """set_load_weight(): the load weight (scale_load_down) of a task."""
    if policy == SCHED_IDLE:
        return WEIGHT_IDLEPRIO
    return SCHED_PRIO_TO_WEIGHT[nice + 20]


def base_slice(nr_cpus: int) -> int:
    """sysctl_sched_base_slice after update_sysctl() with the default
    SCHED_TUNABLESCALING_LOG: 0.7 ms times 1 + ilog2(min(ncpus, 8))."""
    return BASE_SLICE_NS * (1 + (min(nr_cpus, 8).bit_length() - 1))


def slice_turn(nr_cpus: int, hz: int) -> int:
    """The length of a turn on a shared CPU: a base slice, ended at the
    tick after it runs out (the tick's update_curr() preempts; no HRTICK)."""
    tick = 1_000_000_000 // hz
    return -(-base_slice(nr_cpus) // tick) * tick


def decay_load(val: int, n: int) -> int:
    if n > LOAD_AVG_PERIOD * 63:
        return 0
    if n >= LOAD_AVG_PERIOD:
        val >>= n // LOAD_AVG_PERIOD
        n %= LOAD_AVG_PERIOD
    return (val * RUNNABLE_AVG_YN_INV[n]) >> 32


@dataclass
class SchedAvg:
    """struct sched_avg of an entity."""
    last_update_time: int = 0
    load_sum: int = 0
    runnable_sum: int = 0
    util_sum: int = 0
    period_contrib: int = 0
    load_avg: int = 0
    runnable_avg: int = 0
    util_avg: int = 0
    util_est: int = 0

    def update(self, now: int, weight: int, on_rq: bool, running: bool, run_ns: int = 1, of_ns: int = 1) -> None:
        """___update_load_sum() and ___update_load_avg(): the entity was
        in the given state since last_update_time (running run_ns of every
        of_ns of it, when it shared its CPU: procsim/sched_group.py)."""
        delta = now - self.last_update_time
        if delta < 0:
            self.last_update_time = now
            return
        delta >>= 10
        if not delta:
            return
        self.last_update_time += delta << 10
        contrib = delta
        delta += self.period_contrib
        periods = delta // 1024
        if periods:
            self.load_sum = decay_load(self.load_sum, periods)
            self.runnable_sum = decay_load(self.runnable_sum, periods)
            self.util_sum = decay_load(self.util_sum, periods)
            delta %= 1024
            if on_rq:  # __accumulate_pelt_segments()
                c1 = decay_load(1024 - self.period_contrib, periods)
                c2 = LOAD_AVG_MAX - decay_load(LOAD_AVG_MAX, periods) - 1024
                contrib = c1 + c2 + delta
        self.period_contrib = delta
        if on_rq:
            self.load_sum += contrib
            self.runnable_sum += contrib << SCHED_CAPACITY_SHIFT
        if running:
            self.util_sum += (contrib << SCHED_CAPACITY_SHIFT) * run_ns // of_ns
        if periods:
            divider = LOAD_AVG_MAX - 1024 + self.period_contrib
            self.load_avg = weight * self.load_sum // divider
            self.runnable_avg = self.runnable_sum // divider
            self.util_avg = self.util_sum // divider

    def util_est_dequeue(self) -> None:
        """util_est_update() when the task sleeps: an EWMA (w = 1/4) of its
        utilization at dequeue, which follows rises at once."""
        dequeued = self.util_avg
        ewma = self.util_est
        if ewma <= dequeued:
            self.util_est = dequeued
            return
        self.util_est = ((ewma << UTIL_EST_WEIGHT_SHIFT) - (ewma - dequeued)) >> UTIL_EST_WEIGHT_SHIFT


@dataclass
class SchedEntity:
    """The task's sched_entity and sched_info."""
    exec_start: int = 0        # rq clock when it last ran or was last charged (ns)
    vruntime: int = 0          # ns of weighted runtime in its cfs_rq
    nr_migrations: int = 0
    run_delay: int = 0         # sched_info: ns spent runnable on a run queue, waiting
    pcount: int = 0            # sched_info: times it got a CPU
    last_queued: int | None = None  # when it began waiting (None: not waiting)
    slice_credit: int = 0      # ns run while sharing its CPU, not yet a whole turn (sched_group.py)
    avg: SchedAvg = field(default_factory=SchedAvg)


class CfsRqs:
    """The vruntime clock of each cfs_rq, keyed (cpu, group): group 0 is the
    root task group, others are autogroups (whose own entity runs in the
    root cfs_rq with the autogroup's nice weight)."""

    def __init__(self) -> None:
        self.vruntime: dict[tuple[int, int], int] = {}

    def charge(self, cpu: int, group: int, group_weight: int, weight: int, delta: int) -> int:
        """delta ns run by an entity of `weight` in (cpu, group): advance
        the cfs_rq's clock (and the root's, for the group entity) and return
        the task's vruntime increment, calc_delta_fair()."""
        dv = delta * NICE_0_LOAD // weight
        key = (cpu, group)
        self.vruntime[key] = self.vruntime.get(key, 0) + dv
        if group:
            root = (cpu, 0)
            self.vruntime[root] = self.vruntime.get(root, 0) + delta * NICE_0_LOAD // group_weight
        return dv

    def place(self, cpu: int, group: int) -> int:
        """place_entity(): a task enqueued with no lag sits at the cfs_rq's
        average vruntime."""
        return self.vruntime.get((cpu, group), 0)


@dataclass(eq=False)
class Autogroup:
    """kernel/sched/autogroup.c: the task group setsid() gives a session;
    id 0 is autogroup_default (the root task group: init, kernel threads)."""
    id: int
    nice: int = 0

    @property
    def weight(self) -> int:
        return SCHED_PRIO_TO_WEIGHT[self.nice + 20]


AUTOGROUP_DEFAULT = Autogroup(0)
