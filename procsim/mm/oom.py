"""The OOM killer (mm/oom_kill.c): badness, oom_score, oom_score_adj, and
victim selection, either as one exhaustive scan of precise RSS sums or in two
passes (seed-mechanisms §3.6, "mm: Reduce latency of OOM killer task
selection with 2-pass algorithm"):

  pass 1  for every eligible process, bounds of its badness from the
          approximate sums and their accuracy ranges (O(1) per counter);
          best_lo = the largest lower bound
  pass 2  in the same order, the precise badness (O(nr_cpus) per counter)
          of the processes whose upper bound reaches best_lo; the usual
          rule picks the victim (the highest score, the later process on a tie)

The true maximum's score is >= best_lo and <= its own upper bound, so it
survives pruning, and so does every process tied with it: both passes pick
exactly the process the exhaustive scan picks.

`OomKiller` is what the page allocator calls when a fault cannot get its
frames: it selects, records the event (the kernel's OOM report lines plus
the candidates' bounds and scores), kills the victim (SIGKILL: exit, its mm
torn down and its frames freed at once) and lets the allocation retry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from procsim.mm.counter_tree import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS
from procsim.task import PF_KTHREAD, Task, ThreadGroup
from procsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from procsim.kernel import Kernel

LONG_MIN = -(1 << 63)
OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000
OOM_DISABLE, OOM_ADJUST_MIN, OOM_ADJUST_MAX = -17, -16, 15
CAP_SYS_RESOURCE = 24
# the gfp_mask of a user page fault's folio (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_ZERO)
GFP_USER_FAULT = "0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO)"
MAX_EVENTS = 64


def cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def total_pages(k: "Kernel") -> int:
    """totalram_pages() + total_swap_pages: MemTotal and SwapTotal in pages."""
    mem = k.mem
    return mem.nr_pages - mem.first_free + mem.swap.pages


def oom_unkillable(tg: ThreadGroup) -> bool:
    """oom_unkillable_task(): the global init and kernel threads."""
    return tg.tgid == 1 or bool(tg.leader.flags & PF_KTHREAD)


def _pgtable_pages(tg: ThreadGroup) -> int:
    return tg.mm.pgtable.pgtables_bytes() // PAGE_SIZE


def _base(tg: ThreadGroup, totalpages: int) -> int | None:
    """The part of oom_badness() that is not RSS: page-table pages and
    oom_score_adj in thousandths of totalpages; None when the process must
    never be chosen (unkillable, no mm, adj -1000: LONG_MIN)."""
    if oom_unkillable(tg) or tg.mm is None:
        return None
    adj = tg.oom_score_adj
    if adj == OOM_SCORE_ADJ_MIN:
        return None
    return _pgtable_pages(tg) + adj * (totalpages // 1000)


def _rss_precise(tg: ThreadGroup) -> int:
    """get_mm_rss_sum() + the swap entries: every counter precise, clamped at 0."""
    return sum(max(0, v) for v in tg.mm.rss.precise_all())


def _rss_bounds(tg: ThreadGroup) -> tuple[int, int]:
    """Bounds of _rss_precise() from the approximate sums: each counter's
    precise value is within [approx - over, approx + under], and at least 0."""
    r = tg.mm.rss
    over, under = r.shape.over, r.shape.under
    lo = hi = 0
    for a in r.approx_all():
        lo += max(0, a - over)
        hi += max(0, a + under)
    return lo, hi


def oom_badness(tg: ThreadGroup, totalpages: int) -> int:
    """oom_badness(): rss + swap entries + page-table pages (precise sums,
    get_mm_rss_sum), plus oom_score_adj in thousandths of totalpages;
    LONG_MIN for what must never be chosen (unkillable, no mm, adj -1000)."""
    base = _base(tg, totalpages)
    return LONG_MIN if base is None else _rss_precise(tg) + base


def proc_oom_score(tg: ThreadGroup, totalpages: int) -> int:
    """/proc/PID/oom_score: 0 for LONG_MIN, else the badness scaled into
    0..2000 as proc_oom_score() does: (1000 + badness*1000/totalpages)*2/3."""
    b = oom_badness(tg, totalpages)
    if b == LONG_MIN:
        return 0
    return cdiv((1000 + cdiv(b * 1000, totalpages)) * 2, 3)


def oom_adj_of(score_adj: int) -> int:
    """oom_adj_read(): the legacy scale (-17..15) derived from oom_score_adj."""
    if score_adj == OOM_SCORE_ADJ_MAX:
        return OOM_ADJUST_MAX
    return min(cdiv(score_adj * -OOM_DISABLE, OOM_SCORE_ADJ_MAX), OOM_ADJUST_MAX)


def score_adj_of_oom_adj(oom_adj: int) -> int:
    """oom_adj_write(): a legacy value (already range-checked) on the new scale."""
    if oom_adj == OOM_ADJUST_MAX:
        return OOM_SCORE_ADJ_MAX
    return cdiv(oom_adj * OOM_SCORE_ADJ_MAX, -OOM_DISABLE)


class OomAdjDenied(Exception):
    """__set_oom_adj(): lowering needs CAP_SYS_RESOURCE (EACCES)."""


def set_oom_adj(tg: ThreadGroup, value: int, capable: bool, legacy: bool) -> None:
    """__set_oom_adj(): the new oom_score_adj of the process (`value` on the
    oom_score_adj scale, range-checked). Without CAP_SYS_RESOURCE a writer
    may not go below oom_score_adj_min (oom_score_adj) or, through the
    legacy oom_adj file, below the current value; a privileged write to
    oom_score_adj also sets oom_score_adj_min."""
    floor = tg.oom_score_adj if legacy else tg.oom_score_adj_min
    if value < floor and not capable:
        raise OomAdjDenied(f"oom_score_adj {value} is below {floor} and the writer lacks CAP_SYS_RESOURCE")
    tg.oom_score_adj = value
    if not legacy and capable:
        tg.oom_score_adj_min = value


# -- victim selection --------------------------------------------------------

@dataclass
class Candidate:
    """An eligible process as the selection saw it."""
    pid: int
    comm: str
    oom_score_adj: int
    lo: int                 # pass-1 bounds of its badness
    hi: int
    points: int | None      # precise badness; None if pass 1 pruned it


@dataclass
class Selection:
    chosen: ThreadGroup | None
    points: int
    precise_evals: int      # precise badness computations (O(nr_cpus) each)
    candidates: list[Candidate] = field(default_factory=list)
    best_lo: int | None = None


def select_bad_process(groups: Iterable[ThreadGroup], totalpages: int, two_pass: bool = True,
                       record: bool = False) -> Selection:
    """select_bad_process() over `groups` in task-list (creation) order:
    the process with the highest badness, the later one on a tie
    (oom_evaluate_task() skips only a strictly lower score)."""
    chosen, chosen_points, evals = None, LONG_MIN, 0
    cands: list[Candidate] = []
    if not two_pass:
        for tg in groups:
            base = _base(tg, totalpages)
            if base is None:
                continue
            p = _rss_precise(tg) + base
            evals += 1
            if record:
                cands.append(Candidate(tg.tgid, tg.leader.comm, tg.oom_score_adj, p, p, p))
            if p >= chosen_points:
                chosen, chosen_points = tg, p
        return Selection(chosen, chosen_points, evals, cands)
    eligible = []
    best_lo = LONG_MIN
    for tg in groups:
        base = _base(tg, totalpages)   # mm_pgtables_bytes() and the adj: read once
        if base is None:
            continue
        lo, hi = _rss_bounds(tg)
        lo += base
        eligible.append((tg, base, lo, hi + base))
        if lo > best_lo:
            best_lo = lo
    for tg, base, lo, hi in eligible:
        p = None
        if hi >= best_lo:
            p = _rss_precise(tg) + base
            evals += 1
            if p >= chosen_points:
                chosen, chosen_points = tg, p
        if record:
            cands.append(Candidate(tg.tgid, tg.leader.comm, tg.oom_score_adj, lo, hi, p))
    return Selection(chosen, chosen_points, evals, cands, best_lo if eligible else None)


# -- the OOM killer ------------------------------------------------------------

@dataclass
class TaskDump:
    """A row of dump_tasks() ("Tasks state (memory values in pages)")."""
    pid: int
    uid: int
    tgid: int
    total_vm: int
    rss: int
    rss_anon: int
    rss_file: int
    rss_shmem: int
    pgtables_bytes: int
    swapents: int
    oom_score_adj: int
    comm: str


@dataclass
class OomEvent:
    """One out_of_memory() call: what asked, what was there, who died."""
    time_ns: int                 # printk time (ns since boot)
    trigger_pid: int             # current: the task whose allocation failed
    trigger_comm: str
    trigger_oom_score_adj: int
    order: int
    nr_pages: int                # frames the allocation needed
    free_before: int             # free frames when it failed
    two_pass: bool
    totalpages: int
    tasks: list[TaskDump]
    candidates: list[Candidate]
    precise_evals: int
    best_lo: int | None
    victim: TaskDump | None      # None: no killable process, the allocation fails
    victim_points: int | None = None
    victim_oom_score: int | None = None
    free_after: int | None = None  # free frames once the victim's memory was freed
    constraint: str = "CONSTRAINT_NONE"  # CONSTRAINT_MEMCG: a memory cgroup over memory.max
    oom_memcg: str | None = None   # that memcg's path (None: global_oom)
    task_memcg: str = "/"          # the victim's memcg
    memcg_lines: list[str] = field(default_factory=list)  # mem_cgroup_print_oom_meminfo()

    def as_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


def _dump(tg: ThreadGroup) -> TaskDump:
    mm, r = tg.mm, tg.mm.rss
    return TaskDump(tg.leader.pid, tg.cred.uid, tg.tgid, mm.total_vm, r.rss_precise(), r[MM_ANONPAGES],
                    r[MM_FILEPAGES], r[MM_SHMEMPAGES], mm.pgtable.pgtables_bytes(), r[MM_SWAPENTS],
                    tg.oom_score_adj, tg.leader.comm)


class OomKiller:
    """The kernel's OOM killer. `current` is the task the kernel is faulting
    for (set around faults): allocations outside such a context fail with
    OutOfMemory as before, without killing anything."""

    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.current: Task | None = None
        self.kill_current = False   # current was chosen: the caller kills it once unwound
        self.events: list[OomEvent] = []
        self.nr_events = 0          # every event since boot (events keeps the last MAX_EVENTS)

    def alloc_failed(self, nr_pages: int) -> bool:
        """The page allocator's slow path (MemMap.oom_handler): kill victims
        until `nr_pages` frames are free. False: the allocation fails (no
        victim, or current itself was chosen and must die first)."""
        t = self.current
        if t is None:
            return False
        mem = self.kernel.mem
        while mem.nr_free < nr_pages:
            ev = self.out_of_memory(t, nr_pages)
            if ev.victim is None:
                return False
            if ev.victim.tgid == t.tgid:
                self.kill_current = True
                return False
        return True

    def out_of_memory(self, t: Task, nr_pages: int, order: int = 0, memcg=None) -> OomEvent:
        """out_of_memory(): the victim among every process, or (`memcg`, a
        MemCgroup over memory.max) among those in its subtree, scored
        against its limit (mem_cgroup_get_max) rather than all memory."""
        k = self.kernel
        tp = total_pages(k)
        groups = list(k.groups.values())
        if memcg is not None:
            mc = k.memcg
            groups = [g for g in groups if memcg in mc.memcg_of_path(g.cgroup).ancestors()]
            tp = min(memcg.max, tp) + min(memcg.swap_max, k.mem.swap.pages)
        sel = select_bad_process(groups, tp, k.config.oom_two_pass, record=True)
        tasks = [_dump(g) for g in groups if not oom_unkillable(g) and g.mm is not None]
        victim = sel.chosen
        ev = OomEvent(k.now, t.pid, t.comm, t.tg.oom_score_adj, order, nr_pages, k.mem.nr_free,
                      k.config.oom_two_pass, tp, tasks, sel.candidates, sel.precise_evals, sel.best_lo,
                      _dump(victim) if victim is not None else None)
        if victim is not None:
            ev.victim_points = sel.points
            ev.victim_oom_score = proc_oom_score(victim, tp)
            if getattr(k, "memcg", None) is not None:
                ev.task_memcg = k.memcg.memcg_of_path(victim.cgroup).cgroup.path
        if memcg is not None:
            ev.constraint, ev.oom_memcg = "CONSTRAINT_MEMCG", memcg.cgroup.path
            ev.memcg_lines = k.memcg.oom_meminfo(memcg)
        self.events.append(ev)
        del self.events[:-MAX_EVENTS]
        self.nr_events += 1
        if victim is not None and (t is None or victim is not t.tg):
            k.kill(victim.tgid, 9)
            ev.free_after = k.mem.nr_free
        return ev

    def out_of_memory_memcg(self, t: "Task | None", nr_pages: int, memcg) -> OomEvent:
        """mem_cgroup_out_of_memory(): `t` charged (None: a write to
        memory.max); the victim is killed unless it is the task faulting
        now (it dies as its fault unwinds, kill_current) or `t` in a
        syscall with no fault to unwind (killed here)."""
        trigger = t if t is not None else self.kernel.tasks.get(1)
        ev = self.out_of_memory(trigger, nr_pages, memcg=memcg) if t is not None else \
            self._memcg_write_oom(trigger, nr_pages, memcg)
        if ev.victim is not None and t is not None and ev.victim.tgid == t.tgid:
            if self.current is t:
                self.kill_current = True
            else:
                self.kernel.kill(t.tgid, 9)
        return ev

    def _memcg_write_oom(self, trigger: Task, nr_pages: int, memcg) -> OomEvent:
        # the writer of memory.max is a host process, not a task: every victim is killed
        prev, self.current = self.current, None
        try:
            return self.out_of_memory(trigger, nr_pages, memcg=memcg)
        finally:
            self.current = prev
