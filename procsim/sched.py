"""CPUs, context switches, mm_cpumask upkeep and TLB-flush IPIs.

How the mask is kept is the configured model's (procsim/mm_cpumask/, after
seed-mechanisms §1.3 and §1.5); this module calls its hooks where switch_mm
and flush_tlb_mm_range touch the mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from procsim import mm_cpumask
from procsim.config import KernelConfig
from procsim.mm.mm import MM, Flush
from procsim.mm_cpumask import CpumaskModel
from procsim.task import Task
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


@dataclass
class Sched:
    config: KernelConfig
    tasks: dict[int, Task] = field(default_factory=dict)  # the kernel's task table, by tid
    cpus: list[CPU] = field(default_factory=list)
    tlb: TLBStats = field(default_factory=TLBStats)
    cpumask_model: CpumaskModel = field(init=False, repr=False)  # how mm_cpumask is kept

    def __post_init__(self) -> None:
        self.cpus = [CPU(i) for i in range(self.config.nr_cpus)]
        self.cpumask_model = mm_cpumask.get(self.config.cpumask_model)

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

    def account(self, dt: int) -> None:
        """Charge dt ns of each CPU to whatever it runs."""
        for cpu in self.cpus:
            t = cpu.curr
            if t is None:
                cpu.idle += dt
                continue
            # a kernel thread runs in kernel mode only; a user task mostly in user mode
            sys = dt if t.mm is None else dt // 10
            t.utime += dt - sys
            t.stime += sys
            if t.nice > 0:
                cpu.nice += dt - sys
            else:
                cpu.user += dt - sys
            cpu.system += sys

    def nr_running(self) -> int:
        """nr_running(): the tasks on run queues, running or waiting for a
        CPU (state R). Whoever reads /proc is a host process, never one of
        them, so nothing is added for the reader."""
        return sum(1 for t in self.tasks.values() if t.state == "R" and not t.dead)

    def nr_uninterruptible(self) -> int:
        """Tasks in D: /proc/stat procs_blocked, and part of the load."""
        return sum(1 for t in self.tasks.values() if t.state == "D" and not t.dead)
