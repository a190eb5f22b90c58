"""CPUs, context switches, mm_cpumask upkeep and TLB-flush IPIs.

How the mask is kept is the configured model's (procsim/mm_cpumask/, after
seed-mechanisms §1.3 and §1.5); this module calls its hooks where switch_mm
and flush_tlb_mm_range touch the mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from procsim import mm_cpumask
from procsim.config import KernelConfig
from procsim.mm.mm import MM, Flush
from procsim.mm_cpumask import CpumaskModel
from procsim.sched_fair import LOAD_AVG_MAX, CfsRqs, slice_turn, task_weight
from procsim.sched_group import GroupWeights
from procsim.task import SCHED_FIFO, SCHED_RR, Task
from procsim.units import NSEC

TLB_SINGLE_PAGE_FLUSH_CEILING = 33


@dataclass(eq=False)
class CPU:
    id: int
    curr: Task | None = None          # None: the idle task
    loaded_mm: MM | None = None       # None: init_mm
    is_lazy: bool = True
    # /proc/stat times, ns
    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    nr_switches: int = 0
    irq_tlb_count: int = 0   # /proc/interrupts TLB
    irq_call_count: int = 0  # CAL: TLB IPIs arrive through the call-function vector
    irq_resched_count: int = 0


@dataclass
class TLBStats:
    """vmstat nr_tlb_* (CONFIG_DEBUG_TLBFLUSH)."""
    remote_flush: int = 0
    remote_flush_received: int = 0
    local_flush_all: int = 0
    local_flush_one: int = 0


class RqIndex:
    """The tasks on run queues (state R: running or waiting for a CPU) and
    those in D, kept as states change (Task.state's setter), in the order
    they entered. A task released from the task table may linger here until
    the next look (Sched._live drops it)."""

    def __init__(self) -> None:
        self.runnable: dict[Task, None] = {}
        self.blocked: dict[Task, None] = {}

    def moved(self, t: Task, old: str | None, new: str) -> None:
        if old == "R":
            self.runnable.pop(t, None)
        elif old == "D":
            self.blocked.pop(t, None)
        if new == "R":
            self.runnable[t] = None
        elif new == "D":
            self.blocked[t] = None

    def track(self, t: Task) -> None:
        """sched_fork(): from now on t's state changes are followed."""
        if t._rq_index is not self:
            t._rq_index = self
            self.moved(t, None, t.state)


@dataclass
class Sched:
    config: KernelConfig
    tasks: dict[int, Task] = field(default_factory=dict)  # the kernel's task table, by tid
    cpus: list[CPU] = field(default_factory=list)
    tlb: TLBStats = field(default_factory=TLBStats)
    clock: int = 0  # rq clock, ns since boot: moved by account() as the kernel's clock moves
    cfs: CfsRqs = field(default_factory=CfsRqs)
    autogroup_seq: int = 0  # autogroup_seq_nr: the id of the last autogroup made
    autogroup_next: int = 0  # jiffies before which an unprivileged autogroup nice change is EAGAIN
    cpumask_model: CpumaskModel = field(init=False, repr=False)  # how mm_cpumask is kept
    # is this task throttled (procsim/cgroup/cfs_bandwidth.py): dequeued, it gets no time
    is_throttled: Callable[[Task], bool] = field(default=lambda t: False, repr=False)
    # a task's chain of task groups (procsim/sched_group.py), set by the cpu controller
    tg_chain: Callable[[Task], tuple] = field(default=lambda t: (), repr=False)
    group_weights: GroupWeights | None = field(default=None, repr=False)  # the last shared span's
    rq_index: RqIndex = field(default_factory=RqIndex, repr=False)  # who is in R and in D

    def is_stalled(self, cpu: CPU) -> bool:
        """The CPU's task is throttled and nothing else is queued there: the CPU idles."""
        return cpu.curr is not None and self.is_throttled(cpu.curr)

    def __post_init__(self) -> None:
        self.cpus = [CPU(i) for i in range(self.config.nr_cpus)]
        self.cpumask_model = mm_cpumask.get(self.config.cpumask_model)

    # -- the fair class's bookkeeping (procsim/sched_fair.py) -------------------

    @staticmethod
    def _fair(t: Task) -> bool:
        return t.policy not in (SCHED_FIFO, SCHED_RR)

    def _pelt(self, t: Task, on_rq: bool, running: bool) -> None:
        """update_load_avg(): t was in this state since its last update."""
        if self._fair(t):
            t.se.avg.update(self.clock, task_weight(t.nice, t.policy), on_rq, running)

    def sched_fork(self, child: Task, parent: Task | None) -> None:
        """sched_fork() and wake_up_new_task(): the child takes the parent's
        policy, nice and timer slack, starts with the initial load averages
        and is placed in its CPU's cfs_rq."""
        self.rq_index.track(child)
        if parent is not None:
            child.policy, child.rt_priority, child.nice = parent.policy, parent.rt_priority, parent.nice
            child.timer_slack_ns = child.default_timer_slack_ns = parent.timer_slack_ns
            child.personality = parent.personality
        se = child.se
        w = task_weight(child.nice, child.policy)
        a = se.avg  # init_entity_runnable_average(), post_init_entity_util_avg() on an empty cfs_rq
        divider = LOAD_AVG_MAX - 1024
        a.load_avg, a.util_avg = w, 512
        a.runnable_avg = a.util_avg
        a.load_sum = max(1, a.load_avg * divider // w)
        a.util_sum, a.runnable_sum = a.util_avg * divider, a.runnable_avg * divider
        a.last_update_time = self.clock
        se.vruntime = self.cfs.place(child.cpu, child.tg.autogroup.id)

    def reweight(self, t: Task) -> None:
        """reweight_entity() is preceded by update_load_avg(): bring the
        averages up to now before the weight changes."""
        self._pelt(t, t.state == "R", t.on_cpu)

    def set_params(self, t: Task, policy: int, rt_priority: int) -> None:
        """__setscheduler_params(): the averages so far at the old weight,
        then the new policy; an RT task keeps no timer slack."""
        self._pelt(t, t.state == "R", t.on_cpu)
        t.policy, t.rt_priority = policy, rt_priority
        if not self._fair(t):
            t.timer_slack_ns = 0
        elif t.timer_slack_ns == 0:
            t.timer_slack_ns = t.default_timer_slack_ns

    def enqueue(self, t: Task) -> None:
        """A sleeping task wakes on its CPU's run queue and waits there."""
        if t.state == "R":
            return
        self._pelt(t, False, False)
        t.se.vruntime = self.cfs.place(t.cpu, t.tg.autogroup.id)
        t.se.last_queued = self.clock  # sched_info_enqueue()

    def dequeue(self, t: Task) -> None:
        """A runnable task that waits for a CPU leaves the run queue (it
        sleeps or stops): the wait so far counts (sched_info_dequeue())."""
        if t.state != "R" or t.on_cpu:
            return
        self._pelt(t, True, False)
        self._arrive_wait(t)
        t.se.avg.util_est_dequeue()

    def _arrive_wait(self, t: Task) -> None:
        se = t.se
        if se.last_queued is not None:
            se.run_delay += self.clock - se.last_queued
            se.last_queued = None

    def set_task_cpu(self, t: Task, cpu: int) -> None:
        """set_task_cpu(): a task not on a CPU moves to another run queue."""
        if t.cpu != cpu:
            t.se.nr_migrations += 1
            if t.state == "R":
                t.se.vruntime = self.cfs.place(cpu, t.tg.autogroup.id)
            t.cpu = cpu

    def _switch_out(self, prev: Task, preempt: bool) -> None:
        self._pelt(prev, True, True)
        if preempt:
            prev.se.last_queued = self.clock  # still runnable: it waits again
        else:
            prev.se.avg.util_est_dequeue()

    def _switch_in(self, nxt: Task, cpu: int) -> None:
        """Before nxt runs on `cpu`: it woke or waited there, or migrates
        (sched_info_arrive(), set_next_entity())."""
        se = nxt.se
        queued = nxt.state == "R"
        self._pelt(nxt, queued, False)
        if nxt.cpu != cpu:
            se.nr_migrations += 1
        if not queued or nxt.cpu != cpu:
            se.vruntime = self.cfs.place(cpu, nxt.tg.autogroup.id)
        self._arrive_wait(nxt)
        se.pcount += 1
        se.exec_start = self.clock

    @property
    def all_cpus_mask(self) -> int:
        return (1 << self.config.nr_cpus) - 1

    # -- switching ------------------------------------------------------------

    def switch_to(self, cpu: CPU, nxt: Task | None, preempt: bool = False) -> None:
        """context_switch on `cpu` from its current task to `nxt` (None = idle).
        The task switched out sleeps, or stays runnable when preempted."""
        prev = cpu.curr
        if prev is nxt:
            return
        if prev is not None:
            self._switch_out(prev, preempt)
            prev.on_cpu = False
            if preempt:
                prev.nivcsw += 1
            else:
                prev.nvcsw += 1
                if prev.state == "R":
                    prev.state = "S"
        if nxt is not None:
            if nxt.on_cpu:
                self.switch_to(self.cpus[nxt.cpu], None)
            self._switch_in(nxt, cpu.id)
            nxt.on_cpu = True
            nxt.cpu = cpu.id
            nxt.state = "R"
        cpu.curr = nxt
        cpu.nr_switches += 1
        mm = nxt.mm if nxt is not None else None
        if mm is None:
            # enter_lazy_tlb: loaded_mm and its bit stay; a CPU on init_mm
            # does not go lazy (enter_lazy_tlb returns early)
            if cpu.loaded_mm is not None:
                cpu.is_lazy = True
            return
        self._switch_mm(cpu, mm)

    def _switch_mm(self, cpu: CPU, mm: MM) -> None:
        if cpu.loaded_mm is not mm:
            self.cpumask_model.switch_mm(cpu.loaded_mm, mm, 1 << cpu.id)
            cpu.loaded_mm = mm
        cpu.is_lazy = False

    def mm_gone(self, mm: MM) -> None:
        """An mm was torn down: CPUs that still had it loaded drop to init_mm."""
        for cpu in self.cpus:
            if cpu.loaded_mm is mm:
                cpu.loaded_mm = None
                cpu.is_lazy = True

    # -- TLB shootdowns -------------------------------------------------------

    def flush_tlb(self, mm: MM, initiator: int, flush: Flush, jiffies: int) -> None:
        """flush_tlb_mm_range from CPU `initiator`."""
        mm.tlb_gen += 1
        if not self.cpumask_model.ipi_flush:
            return  # broadcast invalidation: no IPI-based shootdowns
        me = 1 << initiator
        if mm.cpumask & ~me:
            trim = self.cpumask_model.trim_due(mm, jiffies, self.config.hz)
            self._flush_multi(mm, initiator, flush, trim)
        elif self.cpus[initiator].loaded_mm is mm:
            self._local_flush(flush)

    def _flush_multi(self, mm: MM, initiator: int, flush: Flush, trim: bool) -> None:
        self.tlb.remote_flush += 1
        targets = []
        for cpu in self.cpus:
            if not mm.cpumask >> cpu.id & 1:
                continue
            if flush.freed_tables or (not cpu.is_lazy and (cpu.loaded_mm is mm or trim)):
                targets.append(cpu)
        for cpu in targets:
            if cpu.id != initiator:
                cpu.irq_tlb_count += 1
                cpu.irq_call_count += 1
                self.tlb.remote_flush_received += 1
            self._flush_func(cpu, mm, flush)

    def _flush_func(self, cpu: CPU, mm: MM, flush: Flush) -> None:
        if cpu.loaded_mm is not mm:
            self.cpumask_model.flush_other_mm(mm, 1 << cpu.id)
            return
        if cpu.is_lazy:
            # switch_mm_irqs_off(NULL, &init_mm) clears is_lazy, so the next
            # trimming flush of mm reaches this CPU and removes its bit; left
            # lazy, only freed-table flushes could ever remove it
            cpu.loaded_mm = None
            cpu.is_lazy = False
            self.cpumask_model.drop_lazy(mm, 1 << cpu.id)
            return
        self._local_flush(flush)

    def _local_flush(self, flush: Flush) -> None:
        if (flush.end - flush.start) >> 12 <= TLB_SINGLE_PAGE_FLUSH_CEILING:
            self.tlb.local_flush_one += (flush.end - flush.start) >> 12
        else:
            self.tlb.local_flush_all += 1

    # -- time -----------------------------------------------------------------

    def account(self, dt: int) -> list[tuple[Task, int, int, int]]:
        """Charge dt ns of each CPU to what it runs (update_curr(): runtime,
        vruntime, exec_start; the tick's load averages). A CPU with several
        runnable fair tasks queued shares the span among them by their
        hierarchical weights (procsim/sched_group.py); one whose current task
        is RT gives it all. Returns (task, cpu, user ns, system ns) of each
        task that ran."""
        queued, weights = self.runqueues(chains=False)
        if weights is not None:
            self.group_weights = weights
        ran: list[tuple[Task, int, int, int]] = []
        for cpu in self.cpus:
            t = cpu.curr
            q = queued[cpu.id]
            if t is not None and not self._fair(t):
                q = []
            elif q and (t is None or all(e[0] is not t for e in q)):
                t = self._pick(cpu, q, weights)  # its task slept or was throttled: the next queued one runs
            if t is None or self.is_stalled(cpu):
                cpu.idle += dt
                continue
            if len(q) > 1:
                parts = weights.share(cpu.id, q, dt)
                self._shared(cpu, q, parts, dt, ran)
                continue
            self._run(cpu, t, dt, dt, ran)
        self.clock += dt
        for cpu in self.cpus:  # exec_start: the rq clock the running task was last charged at
            if cpu.curr is not None and not self.is_stalled(cpu):
                cpu.curr.se.exec_start = self.clock
        return ran

    def runqueues(self, chains: bool = True) -> tuple[dict[int, list], GroupWeights | None]:
        """Each CPU's queued fair tasks, not throttled, with their task-group
        chains and weights, its current task first; and the task groups'
        weights when some CPU has more than one. `chains` False: the chains
        only when some CPU has more than one (no one else looks at them:
        the tick's and cpu.max's callers)."""
        queued: dict[int, list] = {cpu.id: [] for cpu in self.cpus}
        for t in self.queued():
            if self._fair(t) and not self.is_throttled(t):
                queued[t.cpu].append(t)
        weights = None
        shared = any(len(q) > 1 for q in queued.values())
        chains = chains or shared
        for cpu in self.cpus:
            q = queued[cpu.id]
            if len(q) > 1:
                q.sort(key=lambda t, c=cpu.curr: (t is not c, t.pid))
            queued[cpu.id] = [(t, self.tg_chain(t) if chains else (), task_weight(t.nice, t.policy)) for t in q]
        if shared:
            weights = GroupWeights({c: q for c, q in queued.items() if q})
        return queued, weights

    def rates(self, unit: int) -> dict[tuple[int, int], int]:
        """(cpu, tid) -> the ns of every `unit` the task gets on its CPU as
        the queues stand (for cpu.max: when a cfs_rq's runtime runs out)."""
        queued, weights = self.runqueues(chains=False)
        out = {}
        for cpu in self.cpus:
            q = queued[cpu.id]
            if not q or (cpu.curr is not None and not self._fair(cpu.curr)):
                continue
            parts = weights.share(cpu.id, q, unit) if len(q) > 1 else [unit]
            for (t, _, _), ns in zip(q, parts):
                out[(cpu.id, t.pid)] = ns
        return out

    def _pick(self, cpu: CPU, q: list, weights: GroupWeights | None) -> Task:
        """pick_next_task_fair() after the current task left: the queued task
        with the largest share of the CPU (the one most of the time on it),
        lowest pid on a tie."""
        parts = weights.share(cpu.id, q, 1 << 20) if len(q) > 1 else [1]
        t = max(zip(q, parts), key=lambda e: (e[1], -e[0][0].pid))[0][0]
        self.switch_to(cpu, t, preempt=cpu.curr is not None and cpu.curr.state == "R")
        return t

    def _charge(self, cpu: CPU, t: Task, ns: int, ran: list) -> None:
        """update_curr() for ns of t's time on cpu, and the CPU's times."""
        if self._fair(t):
            ag = t.tg.autogroup
            t.se.vruntime += self.cfs.charge(cpu.id, ag.id, ag.weight, task_weight(t.nice, t.policy), ns)
        # a kernel thread runs in kernel mode only; a user task mostly in user mode
        sys = ns if t.mm is None else ns // 10
        t.utime += ns - sys
        t.stime += sys
        if t.nice > 0:
            cpu.nice += ns - sys
        else:
            cpu.user += ns - sys
        cpu.system += sys
        ran.append((t, cpu.id, ns - sys, sys))

    def _run(self, cpu: CPU, t: Task, dt: int, ns: int, ran: list) -> None:
        self._charge(cpu, t, ns, ran)
        if self._fair(t):
            t.se.avg.update(self.clock + dt, task_weight(t.nice, t.policy), True, True)

    def _shared(self, cpu: CPU, q: list, parts: list[int], dt: int, ran: list) -> None:
        """The span shared: each queued task ran its part in turns of a
        slice (pcount, involuntary switches, the CPU's switches), waited the
        rest (run_delay), its load averages running that fraction of the time."""
        end = self.clock + dt
        turn = slice_turn(self.config.nr_cpus, self.config.hz)
        for (t, _, w), ns in zip(q, parts):
            se = t.se
            if se.last_queued is not None:  # the wait before the span
                se.run_delay += self.clock - se.last_queued
            se.run_delay += dt - ns
            if ns:
                self._charge(cpu, t, ns, ran)
                if t.mm is not None:
                    self._switch_mm(cpu, t.mm)
            se.avg.update(end, w, True, True, ns, dt)
            se.slice_credit += ns
            turns = se.slice_credit // turn
            se.slice_credit -= turns * turn
            se.pcount += turns
            t.nivcsw += turns
            cpu.nr_switches += turns
            se.last_queued = None if t is cpu.curr else end
        if cpu.curr is not None and cpu.curr.mm is not None:
            self._switch_mm(cpu, cpu.curr.mm)  # the one on the CPU now is the last loaded

    def _live(self, index: dict[Task, None]) -> list[Task]:
        """The tasks of `index` still in the task table (a released one is dropped)."""
        out = []
        for t in list(index):
            if self.tasks.get(t.pid) is t:
                if not t.dead:
                    out.append(t)
            else:
                del index[t]
        return out

    def queued(self) -> list[Task]:
        """The tasks on run queues (state R, any class, throttled or not), in
        the order they were queued."""
        return self._live(self.rq_index.runnable)

    def nr_running(self) -> int:
        """nr_running(): the tasks on run queues, running or waiting for a
        CPU (state R). Whoever reads /proc is a host process, never one of
        them, so nothing is added for the reader."""
        return sum(1 for t in self.queued() if not self.is_throttled(t))

    def nr_uninterruptible(self) -> int:
        """Tasks in D: /proc/stat procs_blocked, and part of the load."""
        return len(self._live(self.rq_index.blocked))
