"""What PSI counts, per CPU and group, as the clock moves (psi.c's
psi_group_change and get_recent_times). A task is

  running   in state R (NR_RUNNING; NR_ONCPU if it is its CPU's current)
  iowait    in D, waiting on I/O (NR_IOWAIT), or waiting on a page read
            from a file (read(2) or a major fault's read: until its block
            requests complete, procsim/block/blk_core.py waiting_reads)
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

The counts are kept as tasks change, as psi_task_change() keeps them: the
kernel's change records name the task that ran, slept, woke, forked or
moved, and only it (and the CPUs' current tasks) is counted again; a change
that names no task recounts them all.

The averages' work runs psi_period after a group's first activity and
reschedules itself while the group is busy (psi_avgs_work); a quiet
group's averages decay at the next update, by the periods it missed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.psi.group import PsiGroup
from procsim.psi.trigger import PsiTriggers
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
        self._anc: dict[tuple[str, int], tuple[int, ...]] = {}  # (path, shape) -> ancestor ids
        k.cgroups.root.psi = PsiGroup.new(k.now, self.period)
        self.triggers = PsiTriggers()  # poll triggers written to pressure files (trigger.py)
        k.cgroups.on_css_online.append(self._online)
        # Each task's contribution to its (cgroup, CPU) counts, kept as
        # changes are recorded (psi_task_change() sees every state change);
        # a change that cannot be placed recounts every task.
        self._contrib: dict[int, tuple[tuple[str, int], tuple[int, int, int]]] = {}
        self._cnt: dict[tuple[int, int], list[int]] = {}   # (group id, cpu) -> running, oncpu, iowait
        self._agg: dict[int, list[int]] = {}  # group id -> CPUs in each state, then the non-idle CPUs
        self._rescan = True
        self._recheck: set[int] = set()
        self._was_on: set[int] = set()  # the CPUs' current tasks at the last count
        self._fr: dict | None = None  # the fractions of the counts as they are (None: to compute)
        self.covered = 0  # the time accounted up to (tick())
        k.observers.append(self._observe)
        k.on_release.append(lambda t: self._recheck.add(t.pid))

    def _online(self, cg: "Cgroup", ss: str | None) -> None:
        if ss is None and cg.psi is None:
            cg.psi = PsiGroup.new(self.k.now, self.period)

    def throttling_changed(self) -> None:
        """A cfs_rq was throttled or unthrottled (cgroup/cfs_bandwidth.py): its
        tasks' oncpu and runnable counts change with no change record."""
        self._rescan = True
        self._fr = None

    def add_stall(self, t: "Task", resource: str, ns: int) -> None:
        """psi_memstall_enter()/leave() (or an I/O wait) around `ns` of t's time."""
        if ns > 0:
            d = self.stall[resource]
            d[t.pid] = d.get(t.pid, 0) + ns

    # -- the counts, as tasks change ------------------------------------------------

    # changes that move no task's state, CPU or cgroup
    _INERT = frozenset(("mm", "files", "cmdline", "chdir", "cred", "audit", "unlink", "setsid", "exec", "tick",
                        "uts", "ns", "oom_score_adj", "sysctl", "workload", "io", "idle", "track", "thp",
                        "timerslack", "rlimit", "autogroup"))

    def _observe(self, what: str, info: dict) -> None:
        if what in self._INERT:
            return
        tid, pid = info.get("tid"), info.get("pid")
        if what in ("sched", "spawn", "clone", "cgroup") and (tid is not None or pid is not None):
            if tid is not None:
                self._recheck.add(tid)
            if pid is not None:
                g = self.k.groups.get(pid)
                if g is not None:
                    self._recheck.update(t.pid for t in g.threads)
                self._recheck.add(pid)
        else:
            self._rescan = True
        self._fr = None

    @staticmethod
    def _state_of(t: "Task", oncpu: set[int]) -> tuple[int, int, int] | None:
        if t.dead or t.tg.zombie:
            return None
        if t.state == "R":
            return (1, int(t.pid in oncpu), 0)
        if t.state == "D":
            return (0, 0, 1)
        return None

    def _set(self, tid: int, new) -> None:
        if self._contrib.get(tid) == new:
            return  # (most rechecks: nothing moved)
        old = self._contrib.pop(tid, None)
        if old is not None:
            self._bump(old[0], old[1], -1)
        if new is not None:
            self._bump(new[0], new[1], 1)
            self._contrib[tid] = new

    def _bump(self, key: tuple[str, int], vec: tuple[int, int, int], sign: int) -> None:
        """A task's counts in or out of its cgroup's and ancestors' counts on its
        CPU, and each group's per-state CPU totals with them (psi_group_change)."""
        path, cpu = key
        for gid in self._ancestor_ids(self.k, path):
            c = self._cnt.get((gid, cpu))
            if c is None:
                c = self._cnt[(gid, cpu)] = [0, 0, 0]
            before = _states([c[0], c[1], c[2], 0])
            c[0] += sign * vec[0]
            c[1] += sign * vec[1]
            c[2] += sign * vec[2]
            after = _states([c[0], c[1], c[2], 0])
            if before == after:
                continue
            agg = self._agg.get(gid)
            if agg is None:
                agg = self._agg[gid] = [0] * 7
            for i in range(7):
                agg[i] += after[i] - before[i]

    def _update(self, k: "Kernel") -> None:
        # a throttled current task is off its CPU for PSI: it idles, the task stays TSK_RUNNING
        oncpu = {cpu.curr.pid for cpu in k.sched.cpus if cpu.curr is not None and not k.sched.is_stalled(cpu)}
        if self._rescan:
            self._contrib.clear()
            self._cnt.clear()
            self._agg.clear()
            todo = list(k.tasks)
            self._rescan = False
        else:
            # (a switch moves its CPU's previous task off it too)
            todo = self._recheck | oncpu | self._was_on
        self._was_on = oncpu
        self._recheck = set()
        for tid in todo:
            t = k.tasks.get(tid)
            st = self._state_of(t, oncpu) if t is not None else None
            self._set(tid, None if st is None else ((t.tg.cgroup, t.cpu), st))

    def _ancestor_ids(self, k: "Kernel", path: str) -> tuple[int, ...]:
        key = (path, k.cgroups.shape_seq)
        ids = self._anc.get(key)
        if ids is None:
            if len(self._anc) > 4096:
                self._anc.clear()
            cg = k.cgroups.cgroups.get(path, k.cgroups.root)
            ids = self._anc[key] = tuple(a.id for a in cg.ancestors())
        return ids

    def _fractions(self, k: "Kernel", at: int) -> dict[int, tuple[list[int], int]]:
        """Per group id: (CPUs in each state, non-idle CPUs), the stalls
        that last beyond `at` counted in."""
        mem, io = self.stall["memory"], self.stall["io"]
        if not mem and not io:
            return {gid: (a[:6], a[6]) for gid, a in self._agg.items() if a[6]}
        cnt = {key: [c[0], c[1], c[2], 0] for key, c in self._cnt.items() if c[0] or c[2]}
        stalled: set[int] = set()
        for d, resource in ((mem, "memory"), (io, "io")):
            for tid, left in d.items():
                t = k.tasks.get(tid)
                if left <= at or t is None or t.dead or t.tg.zombie:
                    continue
                old = self._contrib.get(tid)
                for gid in self._ancestor_ids(k, t.tg.cgroup):
                    c = cnt.setdefault((gid, t.cpu), [0, 0, 0, 0])
                    if old is not None and tid not in stalled and old[0][1] == t.cpu:
                        # stalled, it neither runs nor waits on I/O otherwise
                        c[_R] -= old[1][0]
                        c[_ON] -= old[1][1]
                        c[_IO] -= old[1][2]
                    c[_MEM if resource == "memory" else _IO] += 1
                stalled.add(tid)
        out: dict[int, tuple[list[int], int]] = {}
        for (gid, _cpu), c in cnt.items():
            st = _states(c)
            if not st[6]:
                continue
            n, nonidle = out.get(gid, ([0] * 6, 0))
            out[gid] = ([x + y for x, y in zip(n, st)], nonidle + 1)
        return out

    # -- as the clock moves -----------------------------------------------------

    def tick(self, start: int, end: int) -> None:
        """Account [start, end): the task states are those of now, the
        stalls reported are spent from `start` on."""
        start = max(start, self.covered)  # cpu.max's spans may have been counted already
        dt = end - start
        if dt <= 0:
            return
        self.covered = end
        k = self.k
        mem, io = self.stall["memory"], self.stall["io"]
        if self._rescan or self._recheck:
            self._update(k)
            self._fr = None
        if not mem and not io:
            if self._fr is None:
                self._fr = self._fractions(k, 0)
            self._spend(k, [(start, end, self._fr)], start, end)
            self._rtpoll(k, end)
            return
        cuts = sorted({min(v, dt) for v in (*mem.values(), *io.values()) if v > 0} | {dt})
        segments = []
        prev = 0
        for cut in cuts:
            segments.append((start + prev, start + cut, self._fractions(k, prev)))
            prev = cut
        for d in (mem, io):
            for tid in list(d):
                d[tid] -= min(d[tid], dt)
                if not d[tid] or tid not in k.tasks:
                    del d[tid]
        self._fr = None
        self._spend(k, segments, start, end)
        self._rtpoll(k, end)

    def _rtpoll(self, k: "Kernel", now: int) -> None:
        """The privileged triggers' rtpoll worker, at the end of each tick."""
        if not self.triggers.by_group:
            return
        groups = self._groups(k)
        for gid in list(self.triggers.by_group):
            cg = groups.get(gid)
            if cg is not None:
                self.triggers.rtpoll_update(gid, now, cg.psi.total)

    def _spend(self, k: "Kernel", segments, start: int, end: int) -> None:
        groups = self._groups(k)
        if len(segments) == 1:
            fr = segments[0][2]
            for gid, (n, nonidle) in fr.items():
                cg = groups.get(gid)
                if cg is None:
                    continue
                w = self.work_at.get(gid)
                if w is not None and w > end:  # the common case: no averages due, only totals
                    tot = cg.psi.total
                    dt = end - start
                    for s in range(6):
                        if n[s]:
                            tot[s] += dt * n[s] // nonidle
                else:
                    self._advance(cg, segments, start, end)
            for gid, w in list(self.work_at.items()):
                if w is not None and gid not in fr and gid in groups:
                    self._advance(groups[gid], segments, start, end)
            return
        busy = set().union(*(fr.keys() for _, _, fr in segments))
        for gid in busy | {g for g, w in self.work_at.items() if w is not None}:
            if gid in groups:
                self._advance(groups[gid], segments, start, end)

    def _groups(self, k: "Kernel") -> dict[int, "Cgroup"]:
        """The cgroups by id (memo of the tree's shape)."""
        if self._by_id is None or self._by_id[0] != k.cgroups.shape_seq:
            self._by_id = (k.cgroups.shape_seq, {cg.id: cg for cg in k.cgroups.cgroups.values() if cg.psi is not None})
        return self._by_id[1]

    _by_id = None

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
                if self.triggers.by_group:
                    self.triggers.avgs_update(cg.id, w, g.total)
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
