"""What PSI counts, per CPU and group, as the clock moves (psi.c's
psi_group_change and get_recent_times). A task is

  running   in state R (NR_RUNNING; NR_ONCPU if it is its CPU's current)
  iowait    in D, waiting on I/O (NR_IOWAIT), or waiting on a page read
            from a file (a major fault's read, the model's I/O stall)
  memstall  stalled on memory (NR_MEMSTALL): in reclaim, throttled over
            memory.high, or waiting for a swap-in; the mm model reports
            these as stall time (`add_stall`), spent from the next tick on

and each group (a cgroup, and the system: the root cgroup's) counts the
tasks of its subtree on each CPU. On each CPU a group is in

  some  cpu: a runnable task waits (running > oncpu); memory: a task is in
        memstall; io: a task is in iowait
  full  cpu: runnable tasks and none on the CPU; memory: memstall and
        nothing running; io: iowait and nothing running

and a group's stall time is each CPU's time in a state weighted by the
CPU's non-idle time (collect_percpu_times: a stall on one busy CPU of an
idle machine is full pressure, not 1/nr_cpus of it). The weights are ns,
where psi.c uses jiffies of its 2 s window (the model's spans may be
shorter than a jiffy).

The averages' work runs psi_period after a group's first activity and
reschedules itself while the group is busy (psi_avgs_work); a quiet
group's averages decay at the next update, by the periods it missed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.psi.group import PsiGroup
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel
    from procsim.task import Task

# per-CPU counts: running, oncpu, iowait, memstall
_R, _ON, _IO, _MEM = range(4)


def _states(c: list[int]) -> tuple[bool, ...]:
    """test_state() for each of STATES, and NONIDLE, from one CPU's counts."""
    run, on, io, mem = c
    return (io > 0, io > 0 and not run, mem > 0, mem > 0 and not run, run > on, run > 0 and not on,
            bool(run or io or mem))


class PsiState:
    def __init__(self, k: "Kernel") -> None:
        self.k = k
        hz = k.config.hz
        self.jiffy = NSEC // hz
        # psi_period: jiffies_to_nsecs(PSI_FREQ), PSI_FREQ = 2*HZ+1
        self.period = (2 * hz + 1) * NSEC // hz
        self.stall: dict[str, dict[int, int]] = {"memory": {}, "io": {}}  # tid -> ns not yet spent
        self.work_at: dict[int, int | None] = {}  # cgroup id -> when its averages' work runs next
        k.cgroups.root.psi = PsiGroup.new(k.now, self.period)
        k.cgroups.on_css_online.append(self._online)

    def _online(self, cg: "Cgroup", ss: str | None) -> None:
        if ss is None and cg.psi is None:
            cg.psi = PsiGroup.new(self.k.now, self.period)

    def add_stall(self, t: "Task", resource: str, ns: int) -> None:
        """psi_memstall_enter()/leave() (or an I/O wait) around `ns` of t's time."""
        if ns > 0:
            d = self.stall[resource]
            d[t.pid] = d.get(t.pid, 0) + ns

    # -- as the clock moves -----------------------------------------------------

    def tick(self, start: int, end: int) -> None:
        """Account [start, end): the task states are those of now, the
        stalls reported are spent from `start` on."""
        dt = end - start
        if dt <= 0:
            return
        k = self.k
        mem, io = self.stall["memory"], self.stall["io"]
        # only these can be non-idle: runnable, in D, or with a stall to spend
        tasks = [t for t in k.tasks.values() if t.state in ("R", "D") or t.pid in mem or t.pid in io]
        tasks = [t for t in tasks if not t.dead and not t.tg.zombie]
        cuts = sorted({min(v, dt) for v in (*mem.values(), *io.values()) if v > 0} | {dt})
        oncpu = {cpu.curr.pid for cpu in k.sched.cpus if cpu.curr is not None}
        segments: list[tuple[int, int, dict[int, tuple[list[int], int]]]] = []
        prev = 0
        for cut in cuts:
            segments.append((start + prev, start + cut, self._fractions(k, tasks, oncpu, prev)))
            prev = cut
        for d in (mem, io):
            for tid in list(d):
                d[tid] -= min(d[tid], dt)
                if not d[tid] or tid not in k.tasks:
                    del d[tid]
        busy = set().union(*(fr.keys() for _, _, fr in segments))
        for cg in list(k.cgroups.cgroups.values()):
            if cg.psi is not None and (cg.id in busy or self.work_at.get(cg.id) is not None):
                self._advance(cg, segments, start, end)

    def _fractions(self, k: "Kernel", tasks: list["Task"], oncpu: set[int], at: int):
        """Per group id: (CPUs in each state, non-idle CPUs) for a span in
        which task states hold (the same as last time while nothing moved)."""
        mem, io = self.stall["memory"], self.stall["io"]
        sig = tuple((t.pid, t.state, t.cpu, t.tg.cgroup, t.pid in oncpu, mem.get(t.pid, 0) > at,
                     io.get(t.pid, 0) > at) for t in tasks)
        if self._memo is not None and self._memo[0] == sig and self._memo[1] == k.cgroups.shape_seq:
            return self._memo[2]
        out = self._count(k, tasks, oncpu, at)
        self._memo = (sig, k.cgroups.shape_seq, out)
        return out

    _memo = None

    def _count(self, k: "Kernel", tasks: list["Task"], oncpu: set[int], at: int):
        mem, io = self.stall["memory"], self.stall["io"]
        counts: dict[int, dict[int, list[int]]] = {}
        for t in tasks:
            mstall = mem.get(t.pid, 0) > at
            istall = io.get(t.pid, 0) > at
            running = t.state == "R" and not mstall and not istall
            iowait = t.state == "D" or istall
            if not (running or iowait or mstall):
                continue
            cg = k.cgroups.cgroups.get(t.tg.cgroup, k.cgroups.root)
            on = running and t.pid in oncpu
            for a in cg.ancestors():
                c = counts.setdefault(a.id, {}).setdefault(t.cpu, [0, 0, 0, 0])
                c[_R] += running
                c[_ON] += on
                c[_IO] += iowait
                c[_MEM] += mstall
        out = {}
        for gid, per_cpu in counts.items():
            n = [0] * 6
            nonidle = 0
            for c in per_cpu.values():
                st = _states(c)
                if st[6]:
                    nonidle += 1
                    for s in range(6):
                        n[s] += st[s]
            if nonidle:
                out[gid] = (n, nonidle)
        return out

    def _advance(self, cg: "Cgroup", segments, start: int, end: int) -> None:
        g = cg.psi
        t0 = start
        while True:
            w = self.work_at.get(cg.id)
            if w is None:
                act = next((s0 for s0, s1, fr in segments if cg.id in fr and s1 > t0), None)
                if act is None:
                    return
                w = self.work_at[cg.id] = max(act, t0) + self.period
            if w > end:
                self._accumulate(g, cg.id, segments, t0, end)
                return
            busy = self._accumulate(g, cg.id, segments, t0, w)
            if w >= g.avg_next_update:
                g.update_averages(w)
            # psi_avgs_work reschedules itself only while the group is busy
            self.work_at[cg.id] = g.avg_next_update + self.jiffy if busy or g.total != g.avg_total else None
            t0 = w

    @staticmethod
    def _accumulate(g: PsiGroup, gid: int, segments, a: int, b: int) -> bool:
        busy = False
        for s0, s1, fr in segments:
            o = min(b, s1) - max(a, s0)
            if o <= 0 or gid not in fr:
                continue
            n, nonidle = fr[gid]
            busy = True
            for s in range(6):
                if n[s]:
                    g.total[s] += o * n[s] // nonidle
        return busy
