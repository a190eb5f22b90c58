"""The memory controller (mm/memcontrol.c, mm/page_counter.c) of cgroup v2.

Every frame a task allocates is charged to a memcg: `MemMap.memcg` holds
the id of the memcg each frame is charged to (folio->memcg_data), 0 for
the kernel's own frames. The charge is made where Linux makes it, at the
allocation of an anonymous or page-cache folio, to the memcg of the task
that faults or reads (`charging`, set around faults and file I/O; frames
allocated outside any task's context go to the root), and taken back when
the frame is freed. A page stays charged to the memcg it was charged to
when its task moves (v2 does not move charges); a memcg that goes away
(rmdir, or its parent disables the controller) hands its charges to its
parent's (memcg_reparent_objcgs, as the pages end up accounted there).

Each memcg has hierarchical page counters (usage, max, high, low, min,
the peak; swap the same), its events (memory.events and .local) and the
reclaim and fault counts memory.stat ends with. A charge over memory.max
of the memcg or an ancestor reclaims from the one over its limit
(try_to_free_mem_cgroup_pages: clean unmapped page cache, then anonymous
memory to swap), and after MAX_RECLAIM_RETRIES fruitless passes calls the
memcg OOM killer on it (mm/oom.py with CONSTRAINT_MEMCG). Over memory.high
the charging task is throttled (mem_cgroup_handle_over_high: the penalty
of calculate_high_delay, a memory stall PSI sees)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from procsim.mm import page_alloc as M
from procsim.units import NSEC, PAGE_SIZE

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel
    from procsim.task import Task

PAGE_COUNTER_MAX = ((1 << 63) - 1) // PAGE_SIZE  # LONG_MAX / PAGE_SIZE: "max"
MAX_RECLAIM_RETRIES = 16
SWAPPINESS_ANON_ONLY = 201  # memory.reclaim's swappiness=max: anonymous memory only
MEMCG_CHARGE_BATCH = 64
MEMCG_DELAY_PRECISION_SHIFT = 20
MEMCG_DELAY_SCALING_SHIFT = 14
EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")
# what a reclaimed page costs the task that waits for it (the model's
# stand-in for the time reclaim runs), and a page read back from swap
RECLAIM_NS_PER_PAGE = 2_000
SWAPIN_NS = 100_000
RECLAIM_BATCH = 32 * PAGE_SIZE  # SWAP_CLUSTER_MAX pages


@dataclass(eq=False)
class MemCgroup:
    id: int
    cgroup: "Cgroup"
    parent: "MemCgroup | None"
    usage: int = 0                 # pages charged here and below (page_counter)
    max: int = PAGE_COUNTER_MAX
    high: int = PAGE_COUNTER_MAX
    low: int = 0
    min: int = 0
    watermark: int = 0             # memory.peak
    swap_max: int = PAGE_COUNTER_MAX
    oom_group: int = 0
    events: dict = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))        # hierarchical
    events_local: dict = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))
    # memcg_events(): pgfault pgmajfault pgscan_direct pgsteal_direct... (hierarchical)
    vm_events: dict = field(default_factory=dict)

    def ancestors(self) -> Iterator["MemCgroup"]:
        m: MemCgroup | None = self
        while m is not None:
            yield m
            m = m.parent

    def count_event(self, name: str, n: int = 1) -> None:
        for m in self.ancestors():
            m.vm_events[name] = m.vm_events.get(name, 0) + n

    def memory_event(self, name: str) -> None:
        """memcg_memory_event(): local here, hierarchical up to (not into) the root."""
        self.events_local[name] += 1
        for m in self.ancestors():
            if m.parent is None:
                break
            m.events[name] += 1


class MemcgState:
    """The kernel's memcgs by id and the charging context."""

    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.by_id: dict[int, MemCgroup] = {}
        self._next = 1
        mem = k.mem
        mem.memcg = np.zeros(mem.nr_pages, np.int32)
        mem.memcg_charge = self.try_charge
        mem.memcg_uncharge = self.uncharge
        root = k.cgroups.root
        self.root = root.memcg = self._new(root, None)
        self.active: MemCgroup | None = None    # set_active_memcg(): whom allocations charge
        self.active_task: "Task | None" = None
        k.cgroups.on_css_online.append(self.css_online)
        k.cgroups.on_css_offline.append(self.css_offline)

    def _new(self, cg: "Cgroup", parent: MemCgroup | None) -> MemCgroup:
        m = MemCgroup(self._next, cg, parent)
        self._next += 1
        self.by_id[m.id] = m
        return m

    # -- css lifetime ---------------------------------------------------------

    def css_online(self, cg: "Cgroup", ss: str | None) -> None:
        if ss in (None, "memory") and cg.memcg is None and cg.has_css("memory"):
            # (its descendants have no memory css yet: their controllers are a subset of its own)
            cg.memcg = self._new(cg, self.memcg_of_path(cg.parent.path))

    def css_offline(self, cg: "Cgroup", ss: str | None) -> None:
        """The memcg goes: its charges (frames, swap slots) become its parent's."""
        if ss not in (None, "memory") or cg.memcg is None:
            return
        if ss == "memory" and cg.has_css("memory"):
            return
        m, mem = cg.memcg, self.k.mem
        up = m.parent
        gone = mem.memcg == m.id
        mem.memcg[gone] = up.id
        mem.swap.memcg[mem.swap.memcg == m.id] = up.id
        del self.by_id[m.id]
        cg.memcg = None

    # -- lookup -----------------------------------------------------------------

    def memcg_of_path(self, path: str) -> MemCgroup:
        return self.k.cgroups.css_of(path, "memory").memcg or self.root

    def memcg_of(self, t: "Task") -> MemCgroup:
        """mem_cgroup_from_task()."""
        return self.memcg_of_path(t.tg.cgroup)

    def subtree_ids(self, m: MemCgroup) -> np.ndarray:
        return np.array([x.id for x in self.by_id.values() if m in x.ancestors()], np.int32)

    @contextmanager
    def charging(self, t: "Task | None") -> Iterator[None]:
        """What `t` allocates inside is charged to its memcg; on the way out
        (the operation done, its page tables and page cache consistent) the
        limits it went over are enforced: reclaim, then the memcg OOM
        killer for memory.max, throttling for memory.high."""
        prev = self.active, self.active_task, self.pending
        self.active = self.memcg_of(t) if t is not None and t.mm is not None else None
        self.active_task = t
        self.pending = 0
        ok = False
        try:
            yield
            ok = True
        finally:
            try:
                if self.pending and self.active is not None:
                    try:
                        self.enforce(self.active, self.pending)
                    except M.OutOfMemory:
                        if ok:
                            raise
                self.k.reclaim.after_alloc(t)  # below the watermarks: direct reclaim, kswapd
            finally:
                self.active, self.active_task, self.pending = prev

    pending = 0  # pages charged over a limit in the current operation

    # -- charge and uncharge -----------------------------------------------------

    def try_charge(self, n: int, flags: int, may_oom: bool = True) -> int:
        """The MemMap's hook before it hands out n frames: charge them to the
        active memcg (and its ancestors); returns the id to stamp them with.
        Over memory.max or memory.high the charge is made and the limit
        enforced when the operation ends (charging()): reclaim in the middle
        of a fault would change the page tables and page cache under it. A
        large folio (not `may_oom`) over memory.max fails at once: the fault
        falls back to small pages."""
        if flags & M.PG_HUGETLB:
            return 0  # hugetlb is not charged (no memory_hugetlb_accounting)
        m = self.active or self.root
        over_max = any(a.parent is not None and a.usage + n > a.max for a in m.ancestors())
        if over_max and not may_oom:
            raise M.OutOfMemory(f"memory cgroup {m.cgroup.path}: over memory.max")
        for a in m.ancestors():
            a.usage += n
            a.watermark = max(a.watermark, a.usage)
        if over_max or any(a.parent is not None and a.usage > a.high for a in m.ancestors()):
            self.pending += n
        return m.id

    def enforce(self, m: MemCgroup, n: int) -> None:
        """try_charge_memcg()'s slow path for the n pages charged over a limit:
        for each memcg over memory.max, reclaim, then the memcg OOM killer
        until it is under (OutOfMemory: nothing left to kill, or the
        charging task itself chosen); then memory.high's throttling."""
        for over in list(m.ancestors()):
            if over.parent is None or over.usage <= over.max:
                continue
            over.memory_event("max")
            retries = MAX_RECLAIM_RETRIES
            while over.usage > over.max:
                need = over.usage - over.max
                got = self.reclaim(over, need)
                if got >= need or over.usage <= over.max:
                    break
                # try_charge_memcg(): MAX_RECLAIM_RETRIES reclaims (each
                # ages the lists further: a first pass may only activate
                # the young frames it finds), then the OOM killer
                if retries:
                    retries -= 1
                    continue
                retries = MAX_RECLAIM_RETRIES
                self.out_of_memory(over, n)
        self._over_high(m, n)

    def out_of_memory(self, over: MemCgroup, n: int) -> None:
        """mem_cgroup_oom() -> out_of_memory() with oc->memcg: a victim in
        over's subtree dies. None killable, or the charging task chosen
        (it dies as the fault unwinds): the charge fails (ENOMEM)."""
        over.memory_event("oom")
        t = self.active_task
        ev = self.k.oom.out_of_memory_memcg(t, n, over)
        if ev.victim is None:
            raise M.OutOfMemory(f"memory cgroup {over.cgroup.path}: no killable process")
        over.memory_event("oom_kill")
        if t is not None and ev.victim.tgid == t.tgid:
            raise M.OutOfMemory(f"memory cgroup {over.cgroup.path}: the OOM killer chose the charging task")

    def _over_high(self, m: MemCgroup, n: int) -> None:
        """mem_cgroup_handle_over_high(): reclaim the excess, then throttle
        the charging task by the worst overage of m and its ancestors."""
        worst = 0
        for a in m.ancestors():
            if a.parent is None or a.usage <= a.high:
                continue
            a.memory_event("high")
            self.reclaim(a, a.usage - a.high)
            if a.usage > a.high:
                worst = max(worst, ((a.usage - a.high) << MEMCG_DELAY_PRECISION_SHIFT) // max(a.high, 1))
        t = self.active_task
        if not worst or t is None:
            return
        hz = self.k.config.hz
        jiffies = worst * worst * hz >> MEMCG_DELAY_PRECISION_SHIFT >> MEMCG_DELAY_SCALING_SHIFT
        jiffies = min(jiffies * n // MEMCG_CHARGE_BATCH, 2 * hz)  # MEMCG_MAX_HIGH_DELAY_JIFFIES
        if jiffies > hz // 100:
            self.add_stall(t, jiffies * NSEC // hz)

    def add_stall(self, t: "Task", ns: int) -> None:
        """psi_memstall_enter/leave around `ns` of t's time (reclaim, throttle, swap-in)."""
        self.k.psi.add_stall(t, "memory", ns)

    def uncharge(self, ids: np.ndarray) -> None:
        """Frames freed: each one's memcg (and ancestors) gives back its page."""
        ids = ids[ids != 0]
        if not len(ids):
            return
        for mid, cnt in zip(*np.unique(ids, return_counts=True)):
            m = self.by_id.get(int(mid))
            for a in (m.ancestors() if m is not None else ()):
                a.usage -= int(cnt)

    # -- reclaim -------------------------------------------------------------------

    def proactive_reclaim(self, m: MemCgroup, nr_to_reclaim: int, swappiness: int | None) -> None:
        """user_proactive_reclaim() of a write to memory.reclaim: batches of a
        quarter of what is left (at least SWAP_CLUSTER_MAX each, as reclaim
        enforces), until done; EAGAIN after MAX_RECLAIM_RETRIES batches
        that reclaimed nothing (what was reclaimed stays reclaimed)."""
        from procsim.errors import KernelError
        from procsim.mm.vmscan_node import SWAP_CLUSTER_MAX
        reclaimed, retries = 0, MAX_RECLAIM_RETRIES
        while reclaimed < nr_to_reclaim:
            batch = (nr_to_reclaim - reclaimed) // 4
            got = self.k.reclaim.try_to_free_pages(max(batch, SWAP_CLUSTER_MAX), "proactive", m, swappiness)
            if not got:
                if not retries:
                    raise KernelError(errno.EAGAIN, f"memory.reclaim: {reclaimed} of {nr_to_reclaim} pages")
                retries -= 1
            reclaimed += got

    def reclaim(self, m: MemCgroup, want: int, kind: str = "direct") -> int:
        """try_to_free_mem_cgroup_pages(): at least SWAP_CLUSTER_MAX frames
        asked of m's subtree through the node's LRU reclaim
        (procsim/mm/vmscan_node.py: protection, the anon/file balance of
        vm.swappiness, swap only while there is free swap); returns the
        frames freed. The charging task waits for it (a memory stall)."""
        if want <= 0:
            return 0
        from procsim.mm.vmscan_node import SWAP_CLUSTER_MAX
        before = m.usage
        self.k.reclaim.try_to_free_pages(max(want, SWAP_CLUSTER_MAX), kind, m)
        freed = max(before - m.usage, 0)
        t = self.active_task
        if freed > 0 and t is not None and kind != "proactive":
            self.add_stall(t, freed * RECLAIM_NS_PER_PAGE)
        return freed

    def oom_meminfo(self, m: MemCgroup) -> list[str]:
        """mem_cgroup_print_oom_meminfo(): usage and limit lines, then memory.stat."""
        from procsim.cgroup import stat
        swap = self.swap_usage(m)
        return [f"memory: usage {_kb(m.usage)}kB, limit {_kb(m.max)}kB, failcnt {m.events['max']}",
                f"swap: usage {_kb(swap)}kB, limit {_kb(m.swap_max)}kB, failcnt 0",
                f"Memory cgroup stats for {m.cgroup.path}:",
                *stat.memory_stat(self.k, m).decode().splitlines()]

    def swap_usage(self, m: MemCgroup) -> int:
        """memory.swap.current in pages: the swap slots in use charged here and below."""
        sw = self.k.mem.swap
        if not sw.nr_slots:
            return 0
        return int(np.count_nonzero(np.isin(sw.memcg, self.subtree_ids(m)) & (sw.swap_map != 0)))

    def _drop_swapcache(self, ids: np.ndarray) -> None:
        """Swap-cache folios charged to these memcgs that nobody maps are freed
        (their slots keep the data): SwapCache.shrink() for one memcg."""
        mem = self.k.mem
        sc = mem.swap_cache
        if not sc.nr_swapcached:
            return
        pfns = sc.pfns()
        gone = pfns[np.isin(mem.memcg[pfns], ids) & (mem.mapcount[pfns] == 0) & ~np.isin(pfns, sc.held)]
        if len(gone):
            sc.delete(gone)
            mem.free(gone)

    def set_limit(self, m: MemCgroup, which: str, pages: int) -> None:
        """memory_max_write()/memory_high_write(): the new limit, then reclaim
        down to it; over max after that, the memcg OOM killer until under
        (or nothing is left to kill)."""
        setattr(m, which, pages)
        if which == "high":
            self.reclaim(m, m.usage - pages)
        elif which == "max":
            while m.usage > pages:
                if self.reclaim(m, m.usage - pages):
                    continue
                m.memory_event("oom")
                ev = self.k.oom.out_of_memory_memcg(None, 0, m)
                if ev.victim is None:
                    break
                m.memory_event("oom_kill")


def _kb(pages: int) -> int:
    return pages * (PAGE_SIZE // 1024)


def memparse(s: bytes) -> tuple[int, bytes]:
    """lib/cmdline.c memparse(): simple_strtoull(base 0) and a K/M/G/T/P/E
    suffix; returns (bytes, the rest)."""
    i, base = 0, 10
    if s[:2].lower() == b"0x" and len(s) > 2 and s[2:3].lower() in b"0123456789abcdef":
        i, base = 2, 16
    elif s[:1] == b"0":
        base = 8
    digits = b"0123456789abcdef"[:base]
    j = i
    while j < len(s) and s[j:j + 1].lower() in digits:
        j += 1
    v = int(s[i:j], base) if j > i else 0
    rest = s[j:]
    shift = {b"k": 10, b"m": 20, b"g": 30, b"t": 40, b"p": 50, b"e": 60}.get(rest[:1].lower())
    if shift is not None:
        v <<= shift
        rest = rest[1:]
    return v & ((1 << 64) - 1), rest


def page_counter_memparse(buf: bytes, max_word: bytes = b"max") -> int:
    """page_counter_memparse(): "max" or bytes (memparse) -> pages; ValueError: EINVAL."""
    from procsim.kstrtox import strstrip
    buf = strstrip(buf)
    if buf == max_word:
        return PAGE_COUNTER_MAX
    v, rest = memparse(buf)
    if rest:
        raise ValueError(f"{buf!r}: not a size")
    return min(v // PAGE_SIZE, PAGE_COUNTER_MAX)
