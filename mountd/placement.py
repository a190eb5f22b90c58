"""Where the FUSE thread runs: on the CPU of the client that keeps it busy.

A FUSE request is a synchronous round trip: the client sleeps until the
daemon replies, the daemon sleeps until the next request. Placed by the
scheduler, the two usually sit on different CPUs, so every request wakes
the daemon's idle CPU and every reply the client's: two cross-CPU wake-ups
(an IPI each, a VM exit and entry each in a KVM guest without halt-polling)
per request. On this project's 2-CPU VM that is most of a request's cost:
lsof over 300 processes takes 7.3 s placed by the scheduler and 1.85 s with
lsof and the daemon pinned to one CPU. Nothing in the request is the
daemon's work; what is ours is where the daemon waits.

So the FUSE thread follows its client: while one process sends (nearly)
all the requests of a window of time, the thread's affinity is that
process's current CPU (its `processor` field in the real /proc/PID/stat),
and the round trip becomes a switch between two tasks on one CPU, as
pinned. When callers alternate (several clients at once, as a parallel
scraper), or the client is gone, the thread gets back the CPUs it was
started with. Only the FUSE thread moves (sched_setaffinity of thread 0):
the control channel's thread keeps its placement, so a writer never waits
for a CPU the reader holds. The client itself is never moved.

Per request this costs a counter; the decision (a read of one stat file
and maybe a sched_setaffinity) is taken at most once per window.
"""

from __future__ import annotations

import os
import time

WINDOW_S = 0.02          # how often the placement is reconsidered while requests come
MIN_REQUESTS = 64        # a window with fewer is not worth a decision
MAX_SWITCH_SHARE = 0.05  # callers changing on more than this share of requests: several clients


def task_cpu(pid: int) -> int | None:
    """The CPU `pid` last ran on (field 39 of the real /proc/PID/stat), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    try:
        return int(s[s.rindex(b")") + 2:].split()[36])
    except (ValueError, IndexError):
        return None


class FollowClient:
    """Call `request(pid, switched)` on every request of the FUSE thread
    (on that thread): pid is the caller's, switched whether it differs
    from the previous request's caller."""

    def __init__(self, enabled: bool = True) -> None:
        try:
            self.cpus = frozenset(os.sched_getaffinity(0))
        except OSError:
            self.cpus = frozenset()
        # (one CPU allowed, pinned by the user or a 1-CPU machine: nothing to
        # choose, until someone widens it: see _own_placement)
        self.enabled = enabled
        self.pinned: int | None = None  # the CPU the thread is held on, None: all of self.cpus
        self._n = 0
        self._switches = 0
        self._deadline = 0.0

    def request(self, pid: int, switched: bool) -> None:
        self._n += 1
        if switched:
            self._switches += 1
        if self._n & 63 or not self.enabled:
            return
        now = time.monotonic()
        if now < self._deadline:
            return
        n, sw = self._n, self._switches
        self._n = self._switches = 0
        self._deadline = now + WINDOW_S
        if not self._own_placement():
            return
        if n >= MIN_REQUESTS and sw <= n * MAX_SWITCH_SHARE and pid > 0:
            cpu = task_cpu(pid)
            self._place(cpu if cpu in self.cpus else None)
        else:
            self._place(None)

    def _own_placement(self) -> bool:
        """Is the thread still where we put it? Someone else who moved it
        (taskset -p, a benchmark splitting the daemon's threads) wins: their
        CPUs become the ones we choose from, and with one we never move."""
        try:
            cur = frozenset(os.sched_getaffinity(0))
        except OSError:
            return False
        if cur != (self.cpus if self.pinned is None else frozenset((self.pinned,))):
            self.cpus, self.pinned = cur, None
        return len(self.cpus) > 1

    def _place(self, cpu: int | None) -> None:
        if cpu == self.pinned:
            return
        try:
            os.sched_setaffinity(0, self.cpus if cpu is None else (cpu,))
            self.pinned = cpu
        except OSError:
            self.enabled = False  # not allowed here (a cpuset, a seccomp filter): stay where we are
