"""Run-queue schedstats (kernel/sched/stats.h, CONFIG_SCHEDSTATS): the
per-CPU counters /proc/schedstat prints, from the scheduler model's CPU
state: its context switches, busy time and the sched_info of the tasks
that ran there. Sched domains: one level, MC, spanning every CPU (a single
package without SMT siblings; PKG degenerates into it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.kernel import Kernel

SCHEDSTAT_VERSION = 17


@dataclass(frozen=True, slots=True)
class RqStats:
    yld_count: int
    sched_count: int      # schedule() calls
    sched_goidle: int     # of them, switches to the idle task
    ttwu_count: int       # wake-ups targeting this CPU
    ttwu_local: int       # of them, from this CPU
    rq_cpu_time: int      # ns tasks ran here
    run_delay: int        # ns tasks waited here
    pcount: int           # timeslices run here


def rq_stats(k: Kernel) -> list[RqStats]:
    """Each CPU's counters. A context switch is a schedule() that picked
    another task; on a mostly idle server about half of them go to idle and
    each wake-up is followed by one. run_delay and pcount sum the
    sched_info of the live tasks last run on the CPU."""
    delay = [0] * len(k.sched.cpus)
    pcount = [0] * len(k.sched.cpus)
    for t in k.tasks.values():
        if 0 <= t.cpu < len(delay):
            delay[t.cpu] += t.se.run_delay
            pcount[t.cpu] += t.se.pcount
    out = []
    for c in k.sched.cpus:
        sw = c.nr_switches
        busy = c.user + c.nice + c.system + c.irq + c.softirq
        wake = sw // 2
        out.append(RqStats(0, sw + sw // 16, sw // 2, wake, wake * 3 // 4, busy, delay[c.id],
                           max(pcount[c.id], sw - sw // 2)))
    return out


def domains(ncpu: int) -> list[str]:
    """The sched domain levels above each CPU, lowest first."""
    return ["MC"] if ncpu > 1 else []
