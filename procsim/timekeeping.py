"""The clock and timed events of the Kernel (kernel/time/, and
kernel/sched/loadavg.c for the load average): virtual time moves only
through advance(), which runs due events in time order and charges CPU
time, kworker switches, workload accesses and load-average updates for
the spans between them.

A mixin of Kernel: it uses the state Kernel.__init__ sets up (now,
_events, avenrun, load_freq, sched, workloads, generation, lock).
"""

from __future__ import annotations

import errno
import heapq
import time
from collections.abc import Callable

from procsim.block.writeback import wb_tick
from procsim.errors import KernelError
from procsim.mm.mm import MMError
from procsim.mm.page_alloc import OutOfMemory
from procsim.net import flow as net_flow
from procsim.sched import NSEC

FSHIFT, FIXED_1 = 11, 1 << 11
EXP = (1884, 2014, 2037)  # 1/exp(5s/1min), 5min, 15min in fixed point


class Timekeeping:
    @property
    def jiffies(self) -> int:
        return self.now * self.config.hz // NSEC

    def advance(self, seconds: float) -> None:
        """Step the virtual clock, running due activity in time order."""
        if seconds < 0:
            raise KernelError(errno.EINVAL, "time only moves forward")
        self.advance_to(self.now + int(seconds * NSEC))

    def advance_to(self, target: int) -> None:
        with self.lock:
            while self._events and self._events[0][0] <= target:
                at, _, fn = heapq.heappop(self._events)
                self._tick(at)
                try:
                    fn()
                except (KernelError, MMError, OutOfMemory):
                    pass  # activity against a process that is gone: skip, like a failed syscall
            self._tick(target)

    def _tick(self, target: int) -> None:
        """Move the clock to `target` with nothing happening in between: time
        is charged in one go and the load average is recomputed every
        load_freq until it settles (it is a fixed point once the number of
        active tasks stays put), so a long advance costs no more than a short one."""
        if target > self.now:
            if self.workloads.active:  # their accesses in [now, target), stamped now
                self.workloads.step(self.now, target)
            if self.block.b_dirty:  # the flusher's wake-ups (procsim/block/writeback.py)
                wb_tick(self, self.now, target)
            if self.net.flows:  # sockets' traffic at byte rates (procsim/net/flow.py)
                net_flow.step(self, self.now, target)
            if self.netfilter.nets:  # conntrack entries whose timeout comes (procsim/net/netfilter/)
                self.netfilter.gc(target)
            # the time each CPU's task ran, to it and its cgroup, as cpu.max lets it (cfs_bandwidth.py)
            self.cfs_bw.account(self.now, target)
            self.psi.tick(self.now, target)  # the stalls of [now, target) (procsim/psi/)
            # Idle CPUs still switch to kworkers now and then; keeps vmstat cs moving.
            kworker_switches = target // (NSEC // 50) - self.now // (NSEC // 50)
            for cpu in self.sched.cpus:
                cpu.nr_switches += kworker_switches
            if self._next_load <= target:
                n = (target - self._next_load) // self.load_freq + 1
                for _ in range(n):
                    before = list(self.avenrun)
                    self._calc_load()
                    if self.avenrun == before:
                        break
                self._next_load += n * self.load_freq
            self.now = target
        self._changed("tick")

    def _calc_load(self) -> None:
        """calc_global_load(): fold the active tasks into the three averages."""
        active = (self.sched.nr_running() + self.sched.nr_uninterruptible()) * FIXED_1  # calc_load_fold_active()
        for i, e in enumerate(EXP):
            a = self.avenrun[i] * e + active * (FIXED_1 - e)
            a += FIXED_1 - 1 if active >= self.avenrun[i] else 0
            self.avenrun[i] = a // FIXED_1

    def follow_wall(self) -> None:
        """In wall-clock mode, catch the virtual clock up with real time."""
        if self.config.clock != "wall":
            return
        real = time.monotonic()
        if self._wall_origin is None:
            self._wall_origin = real - self.now / NSEC
            self.btime = int(time.time() - self.now / NSEC)
            return
        target = int((real - self._wall_origin) * NSEC)
        if target > self.now:
            self.advance_to(target)

    def at(self, when_s: float, fn: Callable[[], None], every_s: float | None = None,
           count: int | None = None) -> None:
        """Run fn at virtual time `when_s` (seconds since boot), optionally repeating."""
        when = int(when_s * NSEC)

        def run(n: int = 0) -> None:
            fn()
            if every_s and (count is None or n + 1 < count):
                self._push(self.now + int(every_s * NSEC), lambda: run(n + 1))

        self._push(when, run)

    def _push(self, when: int, fn: Callable[[], None]) -> None:
        self._event_seq += 1
        heapq.heappush(self._events, (when, self._event_seq, fn))
