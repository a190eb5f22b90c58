"""The boot history: what a machine did between boot and the moment its
world starts (boot_uptime seconds later).

The scenario loader creates every task at its start time on a clock that
begins at 0, and this module makes them do what tasks do meanwhile: a new
task runs a start-up burst, a sleeping one wakes now and then for a short
burst, taking an idle CPU or preempting what runs there. All of it goes
through the kernel (run, sleep, advance_to), so CPU time, context switches
and the load average come from the same code as after the start. Only the
burst lengths and wake-up periods are chosen here, from the seed.

At the start (boot_uptime) no burst is in flight: every task is where the
scenario put it, and the world as declared is the world as loaded.
"""

from __future__ import annotations

import random

from procsim.kernel import Kernel
from procsim.task import PF_FORKNOEXEC, Task
from procsim.units import NSEC

MS = NSEC // 1000
INIT_AT = (0.2, 0.4)          # s: the kernel's own start before rest_init()
KTHREAD_GAP = (0.2, 5.0)      # ms between two kthreads created at boot
SERVICES_AT = 2.0             # s: init has exec'd and starts services
SERVICE_GAP = (0.05, 0.5)     # s between two services
CHILD_GAP = (0.005, 0.2)      # s from a process's parent (or the previous process) to it
THREAD_GAP = (1.0, 50.0)      # ms from a process to each of its threads
# kernel threads that wake periodically (the rest sleep until something needs them)
BUSY_KTHREADS = ("kworker/", "ksoftirqd/", "rcu_preempt", "rcu_sched", "kcompactd", "khungtaskd", "kswapd",
                 "jbd2/", "khugepaged", "ksmd", "watchdogd")


class BootHistory:
    def __init__(self, k: Kernel) -> None:
        self.k = k
        # its own stream: layouts keep drawing from k.rng as before
        self.rng = random.Random(f"boot-history/{k.config.seed}")
        self.t0 = int(k.config.boot_uptime * NSEC)
        self.borrowed: dict[int, tuple[int, int | None, str]] = {}  # cpu -> (burst tid, preempted tid, sleep state)

    # -- the clock ---------------------------------------------------------------

    def _ns(self, lo: float, hi: float, unit: int) -> int:
        return int(self.rng.uniform(lo, hi) * unit)

    def default_start(self, what: str, parent_start: int | None = None) -> int:
        """When a task the scenario gives no `start` is created: init
        first, kthreads just after, services once init runs them, a child
        shortly after its parent; never before the clock nor after the start."""
        now = self.k.now
        if what == "init":
            at = self._ns(*INIT_AT, NSEC)
        elif what == "kthread":
            at = now + self._ns(*KTHREAD_GAP, MS)
        elif what == "service":
            at = max(now, int(SERVICES_AT * NSEC)) + self._ns(*SERVICE_GAP, NSEC)
        elif what == "thread":
            at = now + self._ns(*THREAD_GAP, MS)
        else:
            at = max(now, parent_start or 0) + self._ns(*CHILD_GAP, NSEC)
        return min(at, self.t0)

    def enter(self, at: int) -> None:
        """Move the clock to a creation time, running what happens before it."""
        self.k.advance_to(at)

    def finish(self) -> None:
        """Play the rest of the history, up to the world's start."""
        self.k.advance_to(self.t0)
        assert not self.borrowed, "a burst outlived the history"

    # -- what tasks do ------------------------------------------------------------

    def started(self, tid: int) -> None:
        """A task was created and placed. A sleeping one runs its start-up
        (exec: more for a bigger image; init: the most) and then wakes now
        and then; a running one has run since its creation."""
        t = self.k.tasks[tid]
        if t.state not in ("S", "I"):
            return
        if t.tg.kthread:
            startup, period, burst = (0.05, 0.5), (20.0, 120.0), (0.2, 3.0)
            if not t.comm.startswith(BUSY_KTHREADS) or t.comm.startswith("kworker/R-"):  # rescuers wait for memory pressure
                period = None
        elif not t.is_leader:
            startup, period, burst = (1.0, 5.0), (10.0, 120.0), (0.5, 10.0)
        else:
            rss_mib = t.mm.rss_pages >> 8 if t.mm is not None else 0
            base = (2.0, 10.0) if t.flags & PF_FORKNOEXEC else (10.0, 40.0)  # a fork, or an exec
            if t.tgid == 1:
                base = (500.0, 900.0)  # systemd brings the machine up
            startup = (base[0] + rss_mib / 2, base[1] + rss_mib / 2)
            period, burst = (10.0, 120.0), (1.0, 20.0)
        self._burst(tid, self._ns(*startup, MS))
        if period is not None:
            self._wake_later(tid, period, burst)

    def _wake_later(self, tid: int, period: tuple[float, float], burst: tuple[float, float]) -> None:
        at = self.k.now + self._ns(*period, NSEC)
        length = self._ns(*burst, MS)
        if at + length >= self.t0:
            return

        def wake() -> None:
            if tid in self.k.tasks:
                self._burst(tid, length)
                self._wake_later(tid, period, burst)

        self.k.at(at / NSEC, wake)

    def _burst(self, tid: int, length: int) -> None:
        """The task runs for `length` ns on a CPU it may use, then sleeps again."""
        k = self.k
        t = k.tasks.get(tid)
        if t is None or t.dead or t.on_cpu or t.state not in ("S", "I") or k.now + length >= self.t0:
            return
        cpu = self._pick_cpu(t)
        if cpu is None:
            return
        prev = k.sched.cpus[cpu].curr
        back = t.state
        k.run(tid, cpu, preempt=True)  # prev, if any, is preempted and stays runnable
        self.borrowed[cpu] = (tid, prev.pid if prev is not None else None, back)
        k.at((k.now + length) / NSEC, lambda: self.end_burst(cpu))

    def _pick_cpu(self, t: Task) -> int | None:
        cpus = [c for c in self.k.sched.cpus if t.cpus_allowed >> c.id & 1 and c.id not in self.borrowed]
        idle = [c.id for c in cpus if c.curr is None]
        if idle:
            return self.rng.choice(idle)
        return self.rng.choice(cpus).id if cpus else None

    def end_burst(self, cpu: int) -> None:
        """The burst on `cpu` ends (or is cut short because the scenario
        places a task there): its task sleeps again, the task it preempted
        gets the CPU back."""
        rec = self.borrowed.pop(cpu, None)
        if rec is None:
            return
        tid, prev, back = rec
        k = self.k
        t = k.tasks.get(tid)
        if t is not None and not t.dead and t.state in ("R", "S"):
            k.sleep(tid, back)
        p = k.tasks.get(prev) if prev is not None else None
        if p is not None and not p.dead and p.state == "R" and not p.on_cpu and k.sched.cpus[cpu].curr is None:
            k.run(prev, cpu)

    def yield_cpu(self, cpu: int) -> None:
        """The scenario places a task on `cpu`: a burst there ends now."""
        if cpu in self.borrowed:
            self.end_burst(cpu)
