"""CFS bandwidth control (kernel/sched/fair.c, the CONFIG_CFS_BANDWIDTH
half; cpu.max sets it through kernel/sched/core.c tg_set_cfs_bandwidth).

Each cgroup with the cpu controller is a task group with a cfs_bandwidth:
a quota of runtime per period (None: "max", no limit) and a burst. The
group's global pool (cfs_b->runtime) is refilled by the period timer; each
CPU's cfs_rq of the group takes runtime from the pool a slice (5 ms,
sched_cfs_bandwidth_slice_us) at a time as its tasks run (account_cfs_rq_runtime,
assign_cfs_rq_runtime) and is throttled when its runtime is spent and the
pool is empty: its tasks get no CPU until the timer refills the pool and
hands the throttled cfs_rqs runtime (distribute_cfs_runtime), unthrottling
them. A task runs only while no task group on its way up is throttled on
its CPU, so a child never gets more than an ancestor allows; every level
it runs under pays for the time it runs.

The period timer (sched_cfs_period_timer, do_sched_cfs_period_timer) is an
hrtimer forwarded in whole periods from its last expiry (0 at boot): it
starts when a write enables a quota or a cfs_rq first asks for runtime,
counts nr_periods while active, counts nr_throttled for each period that
ended with throttled cfs_rqs, refills the pool to quota (plus what burst
lets carry over: nr_bursts, burst_time when a period used more than its
quota) and stops after a period in which nothing asked for runtime.

Throttled time: cpu.stat throttled_usec is each cfs_rq's time from throttle
to unthrottle, added at unthrottle (cfs_b->throttled_time); cpu.stat.local
throttled_usec is the time this group's cfs_rqs were throttled by it or an
ancestor (throttled_clock_self_time), counted as the clock moves.

A throttled cfs_rq's tasks are dequeued (6.18's task-based throttle): the
CPU runs the other fair tasks queued there (procsim/sched_group.py shares
it among them) or idles; the task stays TASK_RUNNING (R), out of
nr_running and the load average, but PSI still counts it runnable
(throttle_cfs_rq_work dequeues it through the fair class, bypassing
dequeue_task()'s psi_dequeue()), so its cgroup's cpu.pressure shows the
throttled time. A cfs_rq's runtime runs out at the rate its tasks get
their CPU (Sched.rates), where the clock's span is split.

Not modelled: the slack timer returning a sleeping cfs_rq's runtime to the
pool early, and the 1 ns runtime_remaining distribute_cfs_runtime leaves an
unthrottled cfs_rq with (it asks for a full slice at once here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel
    from procsim.sched import CPU

SLICE_NS = 5_000_000               # sysctl_sched_cfs_bandwidth_slice_us: 5 ms
DEFAULT_PERIOD_US = 100_000        # default_bw_period_us()
NSEC_PER_USEC = 1000


@dataclass
class CfsBandwidth:
    """struct cfs_bandwidth of a task group, and its cfs_rqs' runtime state per CPU."""
    period: int = DEFAULT_PERIOD_US * NSEC_PER_USEC   # ns
    quota: int | None = None                           # ns per period; None: RUNTIME_INF
    burst: int = 0                                     # ns
    runtime: int = 0                                   # the pool
    runtime_snap: int = 0
    period_active: bool = False
    expires: int = 0                                   # the period timer's expiry, ns since boot
    idle: bool = False
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_time: int = 0                            # ns (cpu.stat throttled_usec)
    nr_burst: int = 0
    burst_time: int = 0                                # ns
    throttled_self_time: int = 0                       # ns (cpu.stat.local throttled_usec)
    rq_runtime: dict[int, int] = field(default_factory=dict)      # cpu -> cfs_rq->runtime_remaining
    throttled_at: dict[int, int] = field(default_factory=dict)    # cpu -> throttled_clock (throttled now)

    @property
    def enabled(self) -> bool:
        return self.quota is not None

    def refill(self) -> None:
        """__refill_cfs_bandwidth_runtime(): quota into the pool, capped at
        quota + burst; a period that used more than its quota was a burst."""
        if self.quota is None:
            return
        self.runtime += self.quota
        over = self.runtime_snap - self.runtime
        if over > 0:
            self.burst_time += over
            self.nr_burst += 1
        self.runtime = min(self.runtime, self.quota + self.burst)
        self.runtime_snap = self.runtime

    def start(self, now: int) -> None:
        """start_cfs_bandwidth(): hrtimer_forward_now() then start, if not active."""
        if self.period_active:
            return
        self.period_active = True
        if self.expires <= now:
            self.expires += ((now - self.expires) // self.period + 1) * self.period

    def assign(self, cpu: int, now: int) -> bool:
        """assign_cfs_rq_runtime(): top the cfs_rq up towards a slice from the
        pool; False if it has none left (it is throttled)."""
        rem = self.rq_runtime.get(cpu, 0)
        if self.quota is None:
            return True
        self.start(now)
        if self.runtime > 0:
            amount = min(self.runtime, SLICE_NS - rem)
            self.runtime -= amount
            self.idle = False
            rem += amount
        self.rq_runtime[cpu] = rem
        return rem > 0

    def throttle(self, cpu: int, now: int) -> None:
        self.throttled_at.setdefault(cpu, now)

    def unthrottle(self, cpu: int, now: int) -> None:
        since = self.throttled_at.pop(cpu, None)
        if since is not None:
            self.throttled_time += now - since


def cfs_b_of(cg: "Cgroup") -> CfsBandwidth:
    if cg.cfs_b is None:
        cg.cfs_b = CfsBandwidth()
    return cg.cfs_b


class BandwidthState:
    """The task groups with a quota, and the clock's charging of CPU time
    through them (a Kernel attribute: k.cfs_bw)."""

    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.limited: dict[int, "Cgroup"] = {}   # cgroup id -> cgroup whose cfs_b has a quota or a live timer
        # cgroup path -> chain, while account() runs: the clock moves no task
        # between cgroups and changes no css, so each chain is walked once per
        # call, not once per task per span (a throttled hour is 10^5 spans)
        self._chains: dict[str, list["Cgroup"]] | None = None
        k.sched.is_throttled = self.task_throttled
        k.sched.tg_chain = self.tg_chain
        k.cgroups.on_css_online.append(self._online)
        k.cgroups.on_css_offline.append(self._offline)

    def _online(self, cg: "Cgroup", ss: str | None) -> None:
        if ss is None:  # a new cgroup: born freezing under a freezing parent
            from procsim.cgroup import freezer
            freezer.online(self.k, cg)

    def _offline(self, cg: "Cgroup", ss: str | None) -> None:
        if ss in (None, "cpu"):  # the cgroup, or its cpu css, is gone: so is its bandwidth timer
            self.forget(cg)
            if ss == "cpu":
                cg.cfs_b = None

    # -- which task groups a CPU's task runs under ------------------------------

    def chain(self, t) -> list["Cgroup"]:
        """The task groups (cpu css) of task t, itself first, up to below the root."""
        memo = self._chains
        if memo is None:
            return self._chain_of(t.tg.cgroup)
        chain = memo.get(t.tg.cgroup)
        if chain is None:
            chain = memo[t.tg.cgroup] = self._chain_of(t.tg.cgroup)
        return chain

    def _chain_of(self, path: str) -> list["Cgroup"]:
        cg = self.k.cgroups.css_of(path, "cpu")
        return [a for a in cg.ancestors() if a.parent is not None]

    def _limits(self, t) -> list["Cgroup"]:
        return [a for a in self.chain(t) if a.id in self.limited and a.cfs_b.enabled]

    def tg_chain(self, t) -> tuple:
        """The task's task groups for the fair class (procsim/sched_group.py),
        root side first, with their shares: its cpu css and the ones above
        it, or, in the root cgroup, its autogroup (task_wants_autogroup())."""
        chain = self.chain(t)
        if not chain:
            ag = t.tg.autogroup
            return ((("ag", ag.id), ag.weight),) if ag.id else ()
        return tuple((a.id, a.shares) for a in reversed(chain))

    def task_throttled(self, t) -> bool:
        """t is queued under a cfs_rq throttled on its CPU: dequeued (6.18's
        task-based throttle), no time, not in nr_running; PSI still counts it
        runnable (throttle_cfs_rq_work dequeues through the class, not
        dequeue_task(), so psi_dequeue() never clears TSK_RUNNING)."""
        if not self.limited:
            return False
        return any(t.cpu in a.cfs_b.throttled_at for a in self._limits(t))

    def _queued_by_cpu(self) -> dict[int, list]:
        """Per CPU, the runnable fair tasks whose run queue it is, throttled or not, by pid."""
        k = self.k
        out: dict[int, list] = {c.id: [] for c in k.sched.cpus}
        for t in k.sched.queued():
            q = out.get(t.cpu)
            if q is not None and k.sched._fair(t):
                q.append(t)
        for q in out.values():
            q.sort(key=lambda t: t.pid)
        return out

    # -- tg_set_cfs_bandwidth ------------------------------------------------------

    def set_bandwidth(self, cg: "Cgroup", period: int, quota: int | None, burst: int) -> None:
        """tg_set_cfs_bandwidth() in ns: the new limits, a refill, the timer
        started if a quota is set, every cfs_rq's runtime reset and any
        throttled one unthrottled."""
        now = self.k.now
        b = cfs_b_of(cg)
        b.period, b.quota, b.burst = period, quota, burst
        b.refill()
        if quota is not None:
            b.start(now)
            self.limited[cg.id] = cg
        if b.throttled_at:
            self.k.psi.throttling_changed()
        for cpu in list(b.throttled_at):
            b.unthrottle(cpu, now)
        b.rq_runtime.clear()

    def forget(self, cg: "Cgroup") -> None:
        """The cgroup is gone (or its cpu css): its timer with it."""
        self.limited.pop(cg.id, None)

    # -- the clock -------------------------------------------------------------------

    def account(self, t0: int, t1: int) -> None:
        """Charge [t0, t1) of every CPU to what it runs (Sched.account and
        the cgroups' cputime), split where a cfs_rq runs out of runtime
        (at the rate its tasks get their CPU) or a period timer fires."""
        self._chains = {}
        try:
            self._account(t0, t1)
        finally:
            self._chains = None

    def _account(self, t0: int, t1: int) -> None:
        from procsim.cgroup import cpu as cgcpu
        k = self.k
        now = t0
        while True:
            nxt = t1
            if self.limited:
                sig = self._throttled_sig()
                self._take_runtime(now)
                if self._throttled_sig() != sig:
                    k.psi.throttling_changed()
                nxt = min(nxt, self._exhausted(now))
            for a in self.limited.values():
                if a.cfs_b.period_active:
                    nxt = min(nxt, max(a.cfs_b.expires, now))
            span = nxt - now
            if span > 0:
                if self.limited:
                    self._local_throttled(span)
                ran = k.sched.account(span)
                cgcpu.charge(k, ran)
                if self.limited:
                    for t, cpu, du, ds in ran:
                        for a in self._limits(t):
                            a.cfs_b.rq_runtime[cpu] = a.cfs_b.rq_runtime.get(cpu, 0) - du - ds
                if self.limited:  # PSI sees the span as it was, throttled or not
                    k.psi.tick(now, nxt)
                now = nxt
            sig = self._throttled_sig()
            for a in list(self.limited.values()):
                if a.cfs_b.period_active and a.cfs_b.expires <= now:
                    self._period_timer(a, now)
            if self._throttled_sig() != sig:
                k.psi.throttling_changed()
            if now >= t1:
                break

    def _throttled_sig(self) -> tuple:
        return tuple((a.id, tuple(sorted(a.cfs_b.throttled_at))) for a in self.limited.values())

    def _exhausted(self, now: int) -> int:
        """When the first running cfs_rq with a quota spends its runtime, at
        the share of its CPU its tasks get."""
        unit = 1 << 30
        rate: dict[tuple[int, int], int] = {}  # (cgroup id, cpu) -> ns per unit
        groups = {}
        for (cpu, tid), ns in self.k.sched.rates(unit).items():
            for a in self._limits(self.k.sched.tasks[tid]):
                rate[(a.id, cpu)] = rate.get((a.id, cpu), 0) + ns
                groups[a.id] = a
        out = 1 << 62
        for (gid, cpu), r in rate.items():
            if r:
                rem = max(0, groups[gid].cfs_b.rq_runtime.get(cpu, 0))
                out = min(out, now + max(1, -(-rem * unit // r)) if rem else now + 1)
        return out

    def _take_runtime(self, now: int) -> None:
        """account_cfs_rq_runtime() for the groups of each CPU's queued
        tasks whose cfs_rq ran out: a slice from the pool, or throttle_cfs_rq()."""
        queued = self._queued_by_cpu()
        for c in self.k.sched.cpus:
            done: set[int] = set()
            for t in queued[c.id]:
                for a in self._limits(t):
                    b = a.cfs_b
                    if c.id in b.throttled_at:
                        break  # throttled here: nothing below runs, nothing asks
                    if a.id in done:
                        continue
                    done.add(a.id)
                    if b.rq_runtime.get(c.id, 0) <= 0 and not b.assign(c.id, now):
                        b.throttle(c.id, now)
                        break

    def _local_throttled(self, span: int) -> None:
        """throttled_clock_self_time: each group under which a throttled task waits."""
        queued = self._queued_by_cpu()
        for c in self.k.sched.cpus:
            charged: set[int] = set()
            for t in queued[c.id]:
                chain = self.chain(t)
                for i, a in enumerate(chain):
                    if a.id in self.limited and c.id in a.cfs_b.throttled_at:
                        for below in chain[:i + 1]:
                            if below.id not in charged:
                                charged.add(below.id)
                                cfs_b_of(below).throttled_self_time += span
                        break

    def _period_timer(self, cg: "Cgroup", now: int) -> None:
        """sched_cfs_period_timer() -> do_sched_cfs_period_timer() at its expiry."""
        b = cg.cfs_b
        b.expires += b.period  # hrtimer_forward_now(): one period, overrun 1
        if b.quota is None:
            b.period_active = False
            self.limited.pop(cg.id, None)
            return
        throttled = bool(b.throttled_at)
        b.nr_periods += 1
        b.refill()
        if b.idle and not throttled:
            b.period_active = False
            return
        if not throttled:
            b.idle = True
            return
        b.nr_throttled += 1
        for cpu in sorted(b.throttled_at):  # distribute_cfs_runtime(), in CPU order
            if b.runtime <= 0:
                break
            need = -b.rq_runtime.get(cpu, 0) + 1
            give = min(need, b.runtime)
            b.runtime -= give
            if give == need:  # runtime_remaining > 0: unthrottle_cfs_rq()
                b.rq_runtime[cpu] = 0
                b.unthrottle(cpu, now)
            else:
                b.rq_runtime[cpu] = b.rq_runtime.get(cpu, 0) + give
        b.idle = False


def usec(ns: int) -> int:
    return ns // NSEC_PER_USEC


__all__ = ["BandwidthState", "CfsBandwidth", "cfs_b_of", "SLICE_NS", "NSEC"]
