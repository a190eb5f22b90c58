"""The worlds tests build and the invariants they check, shared by the unit
tests (their fixtures are in conftest.py; procfs read helpers in
procfs_helpers.py; host gates in tests/hostinfo.py).

Worlds: `boot` (a machine with init and kthreadd, 4 CPUs and 1 GiB unless
told otherwise), `small` (examples/ci-small.toml on the manual clock).

Invariants, checked against the mappings read from the page tables
(`Mappings`), not against the counters they are computed from:
`check_world` (each mm's VMAs sorted, disjoint, aligned and maximally
merged, counters equal to what the VMAs and page tables say; no frame
leaked, freed while mapped, or mapped more often than counted;
kpagecount, meminfo, swap, hugetlb, tasks and mm_cpumask),
`check_smaps` (smaps/smaps_rollup/status/statm), `check_pagemap`,
`check_smaps_swap_hugetlb`. `snapshot` is everything a failed syscall
must leave alone; `fingerprint` everything a reader of a machine could see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from procsim import Kernel, KernelConfig, arch, scenario
from procsim.commands import execute
from procsim.mm import page_alloc as M
from procsim.mm import stats
from procsim.mm.mm import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, TASK_SIZE, ZERO_PFN
from procsim.mm.pagetable import (PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE, PTE_PRESENT, PTE_RW, PTE_SOFT_DIRTY,
                                  PTRS_PER_TABLE, is_swap_pte, pte_pfn, swp_offset)
from procsim.mm.vma import VM_ACCOUNT, VM_EXEC, VM_LOCKED, VM_MAYSHARE, VM_PFNMAP, VM_SHARED, VM_SOFTDIRTY, VM_STACK, VM_WRITE
from procsim.mm import show_mem
from procsim.mm.swap import SWAP_HAS_CACHE, swap_count
from procsim.mm import zone
from procsim.procfs import meminfo as meminfo_f
from procsim.procfs import pagemap as PM
from procsim.procfs import pid as P
from procsim.procfs import smaps as SM
from procsim.procfs import vmstat as VS
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.tree import ProcFS


PAGE = PAGE_SIZE


# -- worlds ----------------------------------------------------------------------


def boot(kthreadd: bool = True, **kw) -> Kernel:
    """A booted machine: init (pid 1) and kthreadd (pid 2, unless kthreadd=False);
    4 CPUs and 1 GiB unless kw says otherwise (other KernelConfig defaults)."""
    kw.setdefault("nr_cpus", 4)
    kw.setdefault("mem_bytes", 1 << 30)
    k = Kernel(KernelConfig(**kw))
    k.create_init()
    if kthreadd:
        k.kthread("kthreadd", pid=2)
    return k


def small() -> Kernel:
    """examples/ci-small.toml on the manual clock."""
    return scenario.load("examples/ci-small.toml", clock="manual")


# -- invariants ------------------------------------------------------------------


def live_mms(k: Kernel) -> list:
    out = {}
    for tg in k.groups.values():
        if tg.mm is not None:
            assert not tg.zombie, f"zombie {tg.tgid} still has an mm"
            out[id(tg.mm)] = tg.mm
    return list(out.values())


def vm_counters(mm) -> dict[str, int]:
    """total/data/exec/stack/locked_vm recomputed from the VMAs (spec §2.1),
    and committed_vm (the VM_ACCOUNT pages meminfo's Committed_AS sums)."""
    c = dict(total_vm=0, data_vm=0, exec_vm=0, stack_vm=0, locked_vm=0, committed_vm=0)
    for v in mm.vmas:
        n, f = v.npages, v.flags
        c["total_vm"] += n
        if f & (VM_EXEC | VM_WRITE | VM_STACK) == VM_EXEC:
            c["exec_vm"] += n
        elif f & VM_STACK:
            c["stack_vm"] += n
        elif f & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE:
            c["data_vm"] += n
        if f & VM_LOCKED:
            c["locked_vm"] += n
        if f & VM_ACCOUNT:
            c["committed_vm"] += n
    return c


def fmt(v) -> str:
    name = v.file.path if v.file else v.special or ""
    return f"{v.start:#x}-{v.end:#x} {v.perms()} flags={v.flags:#x} pgoff={v.pgoff:#x} {name}"


class Tally(NamedTuple):
    """What one page table maps (check_mm), for the machine-wide checks."""
    pfns: np.ndarray        # normal frames mapped by PTEs (not the zero page, not kernel pages)
    writers: np.ndarray     # of those, writable anon PTEs
    mm_id: int
    pmd_heads: list         # folios mapped by this table's huge PMD
    swap: np.ndarray        # swap slot offsets of its swap entries
    kernel: np.ndarray      # kernel (vDSO) frames mapped outside PFN maps


def check_mm(k: Kernel, mm, tally: list, may_be_unmerged: bool = False) -> None:
    mem = k.mem
    prev = None
    for v in mm.vmas:
        assert v.start % PAGE == 0 and v.end % PAGE == 0, fmt(v)
        assert 0 < v.start < v.end <= TASK_SIZE, fmt(v)
        if prev is not None:
            assert prev.end <= v.start, f"overlap {fmt(prev)} {fmt(v)}"
            assert may_be_unmerged or not prev.can_merge(v), f"unmerged neighbours {fmt(prev)} {fmt(v)}"
        assert mm.vmas.lookup(v.start) is v and mm.vmas.lookup(v.end - 1) is v
        prev = v
    # the lock-free readers' snapshot, rebuilt piecewise at each write cycle,
    # is the tree as it is between cycles
    vmas = tuple(mm.vmas)
    assert mm.vmas.rcu == (vmas, tuple(v.end for v in vmas)), "published VMA snapshot differs from the tree"
    assert {n: getattr(mm, n) for n in vm_counters(mm)} == vm_counters(mm)
    # mm_pgtables_bytes (memoised per table set): PTE tables, and the PMD and PUD tables above them
    upper = list(mm.pgtable.tables) + list(mm.pgtable.hugetlb)
    assert mm.pgtable.pgtables_bytes() == PAGE * (len(mm.pgtable.tables) + len({i >> 9 for i in upper})
                                                  + len({i >> 18 for i in upper}))
    # every page maps what the VMA says: file pages are the file's own page at
    # pgoff + index, shared mappings only map the cache, anonymous VMAs never do
    for v in mm.vmas:
        for va, sl in mm.pgtable.spans(v.start, v.end):
            nz = np.nonzero(sl & PTE_PRESENT)[0]
            if not len(nz):
                continue
            pf = pte_pfn(sl[nz])
            fl = mem.flags[pf]
            cache = (fl & (M.PG_FILE | M.PG_SHMEM)) != 0
            if v.file is None:
                assert not cache.any(), f"page-cache page in non-file VMA {fmt(v)}"
                continue
            want = v.file.cache[np.minimum(v.pgoff + ((va - v.start) >> PAGE_SHIFT) + nz, len(v.file.cache) - 1)]
            assert (pf[cache] == want[cache]).all(), f"wrong file page mapped in {fmt(v)}"
            if v.flags & VM_MAYSHARE:
                assert cache.all(), f"private page in shared VMA {fmt(v)}"

    rss = [0, 0, 0, 0]
    empty = np.zeros(0, np.int64)
    for idx, table in mm.pgtable.tables.items():
        assert len(table) == PTRS_PER_TABLE
        base = idx << PMD_SHIFT
        covered = np.zeros(PTRS_PER_TABLE, bool)
        pfnmap = np.zeros(PTRS_PER_TABLE, bool)
        writable = np.zeros(PTRS_PER_TABLE, bool)
        shared = np.zeros(PTRS_PER_TABLE, bool)
        for v in mm.vmas.overlapping(base, base + PMD_SIZE):
            lo = (max(v.start, base) - base) >> PAGE_SHIFT
            hi = (min(v.end, base + PMD_SIZE) - base) >> PAGE_SHIFT
            covered[lo:hi] = True
            pfnmap[lo:hi] = bool(v.flags & VM_PFNMAP)
            writable[lo:hi] = bool(v.flags & VM_WRITE)
            shared[lo:hi] = bool(v.flags & VM_MAYSHARE)
        used = table != 0
        stray = used & ~covered
        assert not stray.any(), f"PTE outside any VMA at {base + int(np.argmax(stray)) * PAGE:#x}"
        present = (table & PTE_PRESENT) != 0
        swapped = is_swap_pte(table)
        assert (used == present | swapped).all(), "a PTE neither present nor a swap entry"
        # swap entries: private anonymous memory paged out (MADV_PAGEOUT)
        assert not (swapped & (shared | pfnmap)).any(), "swap entry in a shared or PFN-map VMA"
        offsets = swp_offset(table[swapped])
        rss[MM_SWAPENTS] += len(offsets)
        ptes = table[present]
        pfns = pte_pfn(ptes)
        rw = (ptes & PTE_RW) != 0
        assert not (rw & ~writable[present]).any(), "writable PTE in a VMA without VM_WRITE"
        zero = pfns == ZERO_PFN
        assert not (zero & rw).any(), "writable zero page"
        fl = mem.flags[pfns]
        reserved = ((fl & M.PG_RESERVED) != 0) & ~zero
        real = ~zero & ~reserved
        assert not ((fl[real] == 0).any()), "PTE maps a free frame"
        anon = real & ((fl & M.PG_ANON) != 0)
        shmem = real & ((fl & M.PG_SHMEM) != 0)
        cache = real & ((fl & (M.PG_FILE | M.PG_SHMEM)) != 0)
        assert not (cache & rw & ~shared[present]).any(), "private mapping writes into the page cache"
        rss[MM_ANONPAGES] += int(anon.sum())
        rss[MM_SHMEMPAGES] += int(shmem.sum())
        # file: page cache pages, plus kernel pages of special mappings that are
        # not PFN maps (the vDSO); vvar-style PFN maps are not counted.
        rss[MM_FILEPAGES] += int((real & ~anon & ~shmem).sum()) + int((reserved & ~pfnmap[present]).sum())
        if idx in mm.pgtable.huge:
            # a huge PMD: 512 consecutive frames of one order-9 anon folio, in
            # one private anonymous VMA, with one set of bits
            head = int(pfns[0])
            assert present.all() and (pfns == head + np.arange(PTRS_PER_TABLE)).all(), "bad huge PMD"
            assert head % PTRS_PER_TABLE == 0 and mem.order[head] == 9 and anon.all()
            vs = mm.vmas.overlapping(base, base + PMD_SIZE)
            assert len(vs) == 1 and vs[0].start <= base and base + PMD_SIZE <= vs[0].end and vs[0].is_anon
            assert len(np.unique(ptes & np.uint64(0xFFF))) == 1, "huge PMD entries disagree"
            tally.append(Tally(empty, np.zeros(0, bool), mm.mm_id, [head], empty, empty))
            continue
        tally.append(Tally(pfns[real], rw[real] & anon[real], mm.mm_id, [], offsets,
                           pfns[reserved & ~pfnmap[present]]))
    assert mm.rss == rss, (mm.rss, rss)


@dataclass
class Mappings:
    """Who maps each frame, from the page tables alone: the truth the kernel's
    mapcounts and the /proc numbers are checked against. Kernel pages (the
    zero page, the vDSO) are not in it: the simulator keeps no mapcount for
    them and /proc treats them specially."""
    pte: np.ndarray         # per PFN: PTE mappings, over all live mms
    pmd: np.ndarray         # per PFN, at folio heads: PMD mappings (the entire mapcount)
    anon_pages: dict        # AnonPages in pages, as each mapcount model defines it
    swap: np.ndarray        # per swap slot: the swap entries referring to it
    kernel: np.ndarray      # per PFN: PTE mappings of kernel (vDSO) pages, outside PFN maps
    swapcache: np.ndarray   # per swap slot: the swap cache holds a folio for it
    _cs: np.ndarray | None = None

    @property
    def swap_used(self) -> np.ndarray:
        """Slots in use: referred to by swap entries or held by the swap cache."""
        return (self.swap > 0) | self.swapcache

    def precise(self, mem: M.MemMap, pfns: np.ndarray) -> np.ndarray:
        """CONFIG_PAGE_MAPCOUNT's page mapcount: PTEs of the page + PMDs of its folio."""
        heads, order = mem.folio_head(pfns)
        return self.pte[pfns] + np.where(order > 0, self.pmd[heads], 0)

    def folio_total(self, mem: M.MemMap, pfns: np.ndarray) -> np.ndarray:
        """The folio's total ("large") mapcount: every PTE of any of its pages
        plus every PMD (a PMD counts once); a small folio's own mapcount."""
        if self._cs is None:
            self._cs = np.concatenate(([0], np.cumsum(self.pte, dtype=np.int64)))
        heads, order = mem.folio_head(pfns)
        nr = np.int64(1) << order
        return np.where(order > 0, self._cs[heads + nr] - self._cs[heads] + self.pmd[heads], self.pte[pfns])

    def average(self, mem: M.MemMap, pfns: np.ndarray) -> np.ndarray:
        """folio_average_page_mapcount() written from seed-mechanisms §5.2:
        small folio -> its mapcount; large: m <= 0 -> 0, m <= e -> e, else
        max(floor((m - e + nr/2) / nr) + e, 1)."""
        heads, order = mem.folio_head(pfns)
        nr = np.int64(1) << order
        m = self.folio_total(mem, pfns)
        e = np.where(order > 0, self.pmd[heads], 0)
        avg = np.maximum((m - e + nr // 2) // nr + e, 1)
        return np.where(order == 0, m, np.where(m <= 0, 0, np.where(m <= e, e, avg)))

    def mapped_pfns(self, mem: M.MemMap) -> np.ndarray:
        """Every normal page mapped at least once (all pages of PMD-mapped folios)."""
        pfns = np.flatnonzero(self.pte)
        heads = np.flatnonzero(self.pmd)
        if len(heads):
            pages = [np.arange(h, h + (1 << int(mem.order[h])), dtype=np.int64) for h in heads.tolist()]
            pfns = np.union1d(pfns, np.concatenate(pages))
        return pfns

    def maybe_shared(self, mem: M.MemMap, pfns: np.ndarray) -> np.ndarray:
        """folio_maybe_mapped_shared() (§5.1): small -> mapcount > 1; large ->
        total mapcount > 1 and the folio's sticky maybe-shared flag."""
        heads, order = mem.folio_head(pfns)
        flag = (mem.flags[heads] & M.PG_MAYBE_SHARED) != 0
        return np.where(order > 0, (self.folio_total(mem, pfns) > 1) & flag, self.pte[pfns] > 1)


def check_memory(k: Kernel, mms: list, tally: list) -> Mappings:
    mem = k.mem
    n = mem.nr_pages
    if tally:
        all_pfns = np.concatenate([t[0] for t in tally])
        writers = np.concatenate([t[0][t[1]] for t in tally])
    else:
        all_pfns = writers = np.zeros(0, np.int64)
    counted = np.bincount(all_pfns, minlength=n)
    bad = np.nonzero(counted != mem.mapcount)[0]
    assert not len(bad), (f"mapcount of PFN {bad[0]} is {mem.mapcount[bad[0]]}, "
                          f"{counted[bad[0]]} PTEs map it")
    pmd_heads = np.array([h for t in tally for h in t.pmd_heads], np.int64)
    swap = mem.swap
    slots = np.concatenate([t.swap for t in tally] + [np.zeros(0, np.int64)])
    assert ((slots >= 1) & (slots < max(swap.nr_slots, 1))).all(), "swap entry outside the swap area (or slot 0)"
    users = np.bincount(slots, minlength=swap.nr_slots)
    bad = np.flatnonzero(users != swap_count(swap.swap_map))
    assert not len(bad), f"swap slot {bad[0]} has count {swap.swap_map[bad[0]]}, {users[bad[0]]} entries use it"
    incache = check_swap_cache(k)
    assert swap.inuse_pages == int(np.count_nonzero((users > 0) | incache)), swap.inuse_pages
    kernel = np.bincount(np.concatenate([t.kernel for t in tally] + [np.zeros(0, np.int64)]), minlength=n)
    maps = Mappings(counted.astype(np.int64), np.bincount(pmd_heads, minlength=n).astype(np.int64),
                    check_folios(k, tally), users.astype(np.int64), kernel.astype(np.int64), incache)
    # a writable PTE of an anon page means the page is exclusive (COW done)
    assert (mem.precise_page_mapcount(writers) == 1).all(), "writable PTE of a shared anon page"
    assert not mem.mapcount[: mem.first_free].any(), "kernel pages carry mapcounts"
    fl = mem.flags[mem.first_free:]
    used = int(np.count_nonzero(fl))
    assert mem.nr_free + used == n - mem.first_free, (mem.nr_free, used)
    freed = mem.free_pfns()
    assert len(freed) == mem.nr_free
    assert np.bincount(freed, minlength=n).max(initial=0) <= 1, "a frame was freed twice"
    assert not mem.flags[freed].any() and not mem.flags[mem._next:].any()
    assert not mem.mapcount[freed].any() and not mem.order[freed].any()
    # every used frame is owned: anon frames by a mapping (of any page of
    # their folio), cache frames by a file
    # hugetlb pool frames are outside the page counters (checked by check_hugetlb)
    # (or by the swap cache, check_swap_cache)
    anon = ((mem.flags & M.PG_ANON) != 0) & ((mem.flags & M.PG_HUGETLB) == 0)
    anon[: mem.first_free] = False
    owners = mem.folio_mapcount(np.nonzero(anon)[0]) + ((mem.flags[anon] & M.PG_SWAPCACHE) != 0)
    assert (owners > 0).all(), "anonymous folio nobody maps (leaked)"
    files = {id(f): f for f in k.vfs.files.values()}
    for mm in mms:
        for v in mm.vmas:
            if v.file is not None:
                files[id(v.file)] = v.file
    owned = np.zeros(n, np.int32)
    for f in files.values():
        if f.hugetlb:
            continue
        c = f.cache[f.cache != 0]
        np.add.at(owned, c, 1)
        kinds = mem.flags[c] & (M.PG_FILE | M.PG_SHMEM)
        assert (kinds == (M.PG_SHMEM if f.shmem else M.PG_FILE)).all(), f.path
    assert owned.max(initial=0) <= 1, "a frame is in two page caches"
    cached = ((mem.flags & (M.PG_FILE | M.PG_SHMEM)) != 0)
    cached[: mem.first_free] = False
    orphans = np.nonzero(cached & (owned == 0))[0]
    assert not len(orphans), f"{len(orphans)} page-cache frames belong to no live file (leaked)"
    assert mem.nr_flag[M.PG_ANON] == int(anon.sum())
    assert mem.nr_flag[M.PG_FILE] == int(np.count_nonzero(mem.flags[mem.first_free:] & M.PG_FILE))
    assert mem.nr_flag[M.PG_SHMEM] == int(np.count_nonzero(mem.flags[mem.first_free:] & M.PG_SHMEM))
    assert mem.nr_mapped_file == int(np.count_nonzero(cached & (mem.mapcount > 0)))
    return maps


def check_swap_cache(k: Kernel) -> np.ndarray:
    """The swap cache: its two maps (slot -> folio, folio -> slot) agree
    with each other, with PG_SWAPCACHE and with SWAP_HAS_CACHE in swap_map;
    its folios are order-0, anonymous and swap-backed; nr_swapcached is its
    size; no fault holds a folio between calls; and no cached folio is both
    unmapped and needed by no swap entry (it would be leaked: Linux frees
    it at once). Returns, per slot, whether the cache holds it."""
    mem, swap, sc = k.mem, k.mem.swap, k.mem.swap_cache
    has = (swap.swap_map & SWAP_HAS_CACHE) != 0
    folio = sc.folio if len(sc.folio) == swap.nr_slots else np.zeros(swap.nr_slots, np.int64)
    slots = np.flatnonzero(folio)
    assert (np.flatnonzero(has) == slots).all() and len(slots) == int(has.sum()), \
        "SWAP_HAS_CACHE and the swap cache disagree"
    pfns = folio[slots]
    assert sc.nr_swapcached == len(pfns) == len(np.unique(pfns)), (sc.nr_swapcached, len(pfns))
    assert (sc.slot[pfns] == slots).all(), "folio->swap is not the slot that caches the folio"
    flagged = np.flatnonzero((mem.flags & M.PG_SWAPCACHE) != 0)
    assert (np.sort(pfns) == flagged).all() and len(flagged) == len(pfns), "PG_SWAPCACHE off the swap cache"
    assert not sc.slot[np.setdiff1d(np.flatnonzero(sc.slot), pfns)].any()
    fl = mem.flags[pfns]
    assert (fl & (M.PG_ANON | M.PG_SWAPBACKED) == M.PG_ANON | M.PG_SWAPBACKED).all()
    assert not (fl & M.PG_HUGETLB).any() and not mem.order[pfns].any(), "a large or hugetlb folio in the swap cache"
    assert not len(sc.held)
    leaked = (mem.mapcount[pfns] == 0) & (swap_count(swap.swap_map[slots]) == 0)
    assert not leaked.any(), f"swap-cache folio {pfns[leaked][0]} neither mapped nor swapped (leaked)"
    # an unmapped one was written back: clean
    assert not (fl[mem.mapcount[pfns] == 0] & M.PG_DIRTY).any(), "an unmapped swap-cache folio is dirty"
    return has


def check_folios(k: Kernel, tally: list) -> dict[str, int]:
    """Large folios: aligned, their large/entire mapcounts and MM-ID slots
    agree with the page tables, "maybe shared" is never a false exclusive,
    AnonPages counters match both models' definitions."""
    mem = k.mem
    used = np.nonzero((mem.flags != 0) & ((mem.flags & M.PG_HUGETLB) == 0))[0]
    used = used[used >= mem.first_free]
    heads, order = mem.folio_head(used)
    large_heads = np.unique(heads[order > 0])
    per_mm: dict[int, dict[int, int]] = {}   # head -> {mm_id: mappings}
    entire: dict[int, int] = {}
    for pfns, _, mm_id, pmd_heads, _, _ in tally:
        if len(pfns):
            h, o = mem.folio_head(pfns)
            for head, c in zip(*np.unique(h[o > 0], return_counts=True)):
                d = per_mm.setdefault(int(head), {})
                d[mm_id] = d.get(mm_id, 0) + int(c)
        for head in pmd_heads:
            d = per_mm.setdefault(head, {})
            d[mm_id] = d.get(mm_id, 0) + 1
            entire[head] = entire.get(head, 0) + 1
    precise_mapped = folio_mapped = 0
    for head in large_heads.tolist():
        nr = 1 << int(mem.order[head])
        assert head % nr == 0 and (mem.order[head: head + nr] == mem.order[head]).all(), "folio not aligned"
        d = per_mm.get(head, {})
        total = sum(d.values())
        assert mem.large_mapcount[head] == total, (head, mem.large_mapcount[head], d)
        assert mem.entire_mapcount[head] == entire.get(head, 0)
        shared = bool(mem.flags[head] & M.PG_MAYBE_SHARED)
        if len(d) > 1:
            assert shared, f"folio {head:#x} mapped by {len(d)} mms but not maybe-shared"
        for slot_id, slot_cnt in ((mem.mm_id0[head], mem.mm_cnt0[head]), (mem.mm_id1[head], mem.mm_cnt1[head])):
            if slot_id:
                assert d.get(int(slot_id), 0) >= slot_cnt > 0, (head, int(slot_id), int(slot_cnt), d)
        if total:
            precise_mapped += int(np.count_nonzero(mem.mapcount[head: head + nr] + mem.entire_mapcount[head] > 0))
            folio_mapped += nr
    small = used[(order == 0) & ((mem.flags[used] & M.PG_ANON) != 0)]
    nsmall = int(np.count_nonzero(mem.mapcount[small] > 0))
    assert mem.nr_anon_mapped_page == precise_mapped + nsmall, (mem.nr_anon_mapped_page, precise_mapped, nsmall)
    assert mem.nr_anon_mapped_folio == folio_mapped + nsmall
    assert mem.nr_anon_thps == 512 * sum(1 for h in large_heads.tolist() if mem.entire_mapcount[h])
    # AnonPages by each model's definition (seed-mechanisms §5.2): pages with a
    # mapping, or whole large folios as soon as any page is mapped
    return {"page": precise_mapped + nsmall, "no_page": folio_mapped + nsmall}


# -- memory accounting as /proc shows it -----------------------------------------------

ROOT_CALLER = Caller(0, 0, 0)
USER_CALLER = Caller(0, 1000, 1000)  # no CAP_SYS_ADMIN: pagemap without PFNs
FULL_PSS = PAGE << stats.PSS_SHIFT  # one page's PSS in the fixed point of smaps
SMAPS_FIELDS = tuple(f.name for f in fields(stats.MemSizeStats))
FIELD = {name: i for i, name in enumerate(SMAPS_FIELDS)}
# accumulated as bytes << PSS_SHIFT and printed as (x >> 12) >> 10 (spec §4)
PSS_FIELDS = ("pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem", "swap_pss", "pss_locked")
IS_PSS = np.array([name in PSS_FIELDS for name in SMAPS_FIELDS])
# the fields the mapcount model decides; no other may depend on it
SHARING = PSS_FIELDS + ("shared_clean", "shared_dirty", "private_clean", "private_dirty")
MODEL_FREE = np.array([name not in SHARING for name in SMAPS_FIELDS])
# smaps labels (spec §4, §5) of the MemSizeStats fields
LABELS = {"resident": "Rss", "pss": "Pss", "pss_dirty": "Pss_Dirty", "pss_anon": "Pss_Anon",
          "pss_file": "Pss_File", "pss_shmem": "Pss_Shmem", "shared_clean": "Shared_Clean",
          "shared_dirty": "Shared_Dirty", "private_clean": "Private_Clean", "private_dirty": "Private_Dirty",
          "referenced": "Referenced", "anonymous": "Anonymous", "ksm": "KSM", "lazyfree": "LazyFree",
          "anonymous_thp": "AnonHugePages", "shmem_thp": "ShmemPmdMapped", "file_thp": "FilePmdMapped",
          "shared_hugetlb": "Shared_Hugetlb", "private_hugetlb": "Private_Hugetlb", "swap": "Swap",
          "swap_pss": "SwapPss", "pss_locked": "Locked"}
ROLLUP_ONLY = ("pss_anon", "pss_file", "pss_shmem")
ARRAY_COLS = [stats.COL[name] for name in SMAPS_FIELDS]  # smaps_array's columns, in SMAPS_FIELDS order
_VMA_LINE = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ", re.M)
_KB_LINE = re.compile(r"^([^:\n]+):\s+(\d+) kB$", re.M)


def smaps_kb(a: np.ndarray) -> np.ndarray:
    """smaps' kB of MemSizeStats rows: bytes >> 10, PSS-type (x >> 12) >> 10 (spec §4)."""
    return np.where(IS_PSS, a >> (stats.PSS_SHIFT + 10), a >> 10)


def as_rows(sts: list) -> np.ndarray:
    """MemSizeStats as an int64 matrix (one row each, SMAPS_FIELDS columns)."""
    return np.array([[getattr(st, f) for f in SMAPS_FIELDS] for st in sts], np.int64).reshape(
        len(sts), len(SMAPS_FIELDS))


def smaps_table(mm, vmas: list, special_mapcount: int) -> dict[str, np.ndarray]:
    """Per mapcount model, the MemSizeStats of every VMA as an int64 matrix.
    Both models are computed on the same MemMap: the simulator keeps every
    mapcount either kernel would need, and `mapcount_model` only picks what
    /proc reports (restored afterwards)."""
    mem = mm.mem
    boot_model = mem.mapcount_model
    out = {}
    try:
        for model in M.MAPCOUNT_MODELS:
            mem.mapcount_model = model
            out[model] = stats.smaps_array(mm, vmas, special_mapcount)[:, ARRAY_COLS]
    finally:
        mem.mapcount_model = boot_model
    return out


def kb_lines(text: str) -> dict[str, int]:
    """`Label:   value kB` (or without unit) lines of a /proc text file."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^([^:\n]+):\s+(\d+)(?: kB)?$", text, re.M)}


def mm_ctx(k: Kernel, mm, caller: Caller = ROOT_CALLER) -> Ctx:
    """What an open of /proc/TID/{smaps,pagemap,...} by `caller` gives for mm."""
    t = next(t for tg in k.groups.values() if tg.mm is mm for t in tg.threads if not t.dead)
    return Ctx(k, caller, t, thread_view=True, mm=mm)


def rendered_rss(k: Kernel, mm) -> list[tuple[int, int, int, int, int, int]]:
    """(VmRSS, RssAnon, RssFile + RssShmem, VmSwap in kB; statm resident,
    shared in pages) as /proc/TID/status and statm render them, for every
    live thread of mm."""
    out = []
    for tg in k.groups.values():
        if tg.mm is not mm:
            continue
        for t in tg.threads:
            if t.dead:
                continue
            ctx = Ctx(k, ROOT_CALLER, t, thread_view=True)
            st = kb_lines(P.status(ctx).decode())
            statm = [int(x) for x in P.statm(ctx).split()]
            out.append((st["VmRSS"], st["RssAnon"], st["RssFile"] + st["RssShmem"], st["VmSwap"], statm[1],
                        statm[2]))
    return out


def check_rendered_smaps(k: Kernel, mm, a: np.ndarray, total: np.ndarray) -> None:
    """/proc/PID/smaps and smaps_rollup as rendered (spec §4, §5, issue
    invariant 3): each VMA block shows its row in kB; the rollup is the
    field-wise sum in bytes / fixed point, converted once, so each rollup
    field is >= the sum of the blocks' kB and above it by less than the
    number of VMAs contributing (one truncation each); byte fields are page
    multiples and lose nothing."""
    ctx = mm_ctx(k, mm)
    text = SM.smaps(ctx).decode()
    nblocks = len(_VMA_LINE.findall(text))
    gate = arch.get(k.config.arch).gate_vma is not None
    assert nblocks == len(a) + gate, "one smaps block per VMA (+ the gate VMA)"
    column: dict[str, list[int]] = {}
    for label, value in _KB_LINE.findall(text):
        column.setdefault(label, []).append(int(value))
    kb = smaps_kb(a)
    for name, label in LABELS.items():
        if name in ROLLUP_ONLY:
            continue
        shown = column[label]
        assert len(shown) == nblocks, f"smaps: {len(shown)} {label} lines in {nblocks} blocks"
        assert (np.array(shown[: len(a)], np.int64) == kb[:, FIELD[name]]).all(), \
            f"smaps {label} is not the VMA's {name} in kB"
    roll = kb_lines(SM.smaps_rollup(ctx).decode())
    want = smaps_kb(total)
    summed = kb.sum(0)
    contributing = (a != 0).sum(0)
    for name, label in LABELS.items():
        i = FIELD[name]
        assert roll[label] == want[i], f"smaps_rollup {label}: {roll[label]} kB, fields sum to {want[i]} kB"
        assert summed[i] <= roll[label] <= summed[i] + max(int(contributing[i]) - 1, 0), (label, roll[label], summed[i])
        if not IS_PSS[i]:
            assert roll[label] == summed[i], f"{label}: a byte field lost something in kB"
    assert roll["Rss"] == roll["Shared_Clean"] + roll["Shared_Dirty"] + roll["Private_Clean"] + roll["Private_Dirty"]


def check_smaps(k: Kernel, maps: Mappings | None = None) -> None:
    """smaps arithmetic, for the configured mapcount model and for both where
    the spec relates them (issue invariants 1-5):

    1. Rss = Shared_Clean + Shared_Dirty + Private_Clean + Private_Dirty per
       VMA and in the rollup; Pss = Pss_Anon + Pss_File + Pss_Shmem; Locked
       is the Pss of VM_LOCKED VMAs; the fields the mapcount model does not
       decide are the same under both models.
    2. The VMAs' Rss add up to VmRSS and statm's resident (as pid.py renders
       them, for every thread), their Anonymous to RssAnon, the rest to
       RssFile + RssShmem = statm's shared; AnonHugePages to the huge PMDs.
    3. smaps_rollup is the field-wise sum of the VMAs' MemSizeStats (bytes,
       PSS in bytes << 12); rendered, see check_rendered_smaps (one mm per
       step, as is one VMA computed alone against the whole-list walk).
    4. CONFIG_PAGE_MAPCOUNT, summed over every live mm once: a page with
       precise mapcount c contributes c * ((4096 << 12) // c) to Pss, so the
       world's Pss is exactly sum(c * (FULL // c)) over the mapped normal
       pages: n * FULL - sum(c - 1) <= Pss <= n * FULL (the per-page
       truncation loses FULL % c < c). Private = 4096 per page with c == 1,
       Shared = 4096 * c per page with c >= 2, Rss = 4096 * sum(c); the vDSO
       pages included, with their mappings counted from the page tables.
       SwapPss likewise: a slot used by u swap entries gives u * (FULL // u).
    5. CONFIG_NO_PAGE_MAPCOUNT never over-reports USS: per VMA its
       Private_Clean and Private_Dirty are <= those of CONFIG_PAGE_MAPCOUNT.
    """
    if maps is None:
        maps = check_world(k)
    mem = k.mem
    boot_model = mem.mapcount_model
    special = k.vdso_mapcount
    world_pss = world_private = world_shared = world_rss = world_swap_pss = 0
    mms = live_mms(k)
    c = FIELD
    for n, mm in enumerate(mms):
        vmas = list(mm.vmas)
        tab = smaps_table(mm, vmas, special)
        a, pg, npg = tab[boot_model], tab["page"], tab["no_page"]
        # 1. per VMA
        sharing = a[:, [c["shared_clean"], c["shared_dirty"], c["private_clean"], c["private_dirty"]]].sum(1)
        assert (a[:, c["resident"]] == sharing).all(), "Rss != Shared + Private in a VMA"
        assert (a[:, c["pss"]] <= a[:, c["resident"]] << stats.PSS_SHIFT).all(), "Pss > Rss"
        assert (a[:, c["pss"]] == a[:, c["pss_anon"]] + a[:, c["pss_file"]] + a[:, c["pss_shmem"]]).all(), \
            "Pss != Pss_Anon + Pss_File + Pss_Shmem"
        assert (a[:, c["pss_dirty"]] <= a[:, c["pss"]]).all(), "Pss_Dirty > Pss"
        assert (a[:, c["anonymous_thp"]] <= a[:, c["anonymous"]]).all(), "AnonHugePages > Anonymous"
        assert (a[:, c["anonymous"]] <= a[:, c["resident"]]).all(), "Anonymous > Rss"
        assert (a[:, c["lazyfree"]] <= a[:, c["anonymous"]]).all(), "LazyFree > Anonymous"
        assert (a[:, c["referenced"]] <= a[:, c["resident"]]).all(), "Referenced > Rss"
        locked = np.array([bool(v.flags & VM_LOCKED) for v in vmas], bool)
        assert (a[:, c["pss_locked"]] == np.where(locked, a[:, c["pss"]], 0)).all(), \
            "Locked is not the Pss of locked VMAs"
        assert (pg[:, MODEL_FREE] == npg[:, MODEL_FREE]).all(), \
            "a field outside sharing/PSS depends on the mapcount model"
        # 5. USS: no_page may call private pages shared, never the reverse
        for f in ("private_clean", "private_dirty"):
            worse = npg[:, c[f]] > pg[:, c[f]]
            assert not worse.any(), (f"no_page over-reports {f} in {fmt(vmas[int(np.argmax(worse))])}: "
                                     f"{npg[worse, c[f]][0]} > {pg[worse, c[f]][0]}")
        # 2. what status and statm render
        total = a.sum(0)
        rss, anon = int(total[c["resident"]]), int(total[c["anonymous"]])
        assert rss == mm.rss_pages * PAGE, (rss, mm.rss_pages)
        assert int(total[c["anonymous_thp"]]) == len(mm.pgtable.huge) * PMD_SIZE
        swap = int(total[c["swap"]])
        assert swap == mm.rss[MM_SWAPENTS] * PAGE, (swap, mm.rss[MM_SWAPENTS])
        for vmrss_kb, anon_kb, file_kb, swap_kb, resident, shared in rendered_rss(k, mm):
            assert vmrss_kb << 10 == rss and resident * PAGE == rss, (vmrss_kb, resident, rss)
            assert anon_kb << 10 == anon and (file_kb << 10) == shared * PAGE == rss - anon
            assert swap_kb << 10 == swap, "VmSwap is not the VMAs' Swap"
        # 3. the rollup, the rendered files, and one VMA computed on its own
        # (each a whole walk again): for one mm per step
        if n == k.generation % len(mms):
            roll = as_rows([stats.smaps_rollup(mm, special)])[0]
            assert (roll == total).all(), {SMAPS_FIELDS[i]: (int(roll[i]), int(total[i]))
                                           for i in np.flatnonzero(roll != total)}
            assert (as_rows(stats.smaps_vmas(mm, vmas, special)) == a).all(), "smaps_vmas differs from smaps_array"
            check_rendered_smaps(k, mm, a, total)
            if vmas:
                i = k.generation % len(vmas)
                alone = as_rows([stats.smaps_vma(mm, vmas[i], special)])[0]
                assert (alone == a[i]).all(), f"smaps of {fmt(vmas[i])} alone differs from it in the list"
        # 4. page-model sums over the world
        world_pss += int(pg[:, c["pss"]].sum())
        world_private += int(pg[:, c["private_clean"]].sum() + pg[:, c["private_dirty"]].sum())
        world_shared += int(pg[:, c["shared_clean"]].sum() + pg[:, c["shared_dirty"]].sum())
        world_rss += int(pg[:, c["resident"]].sum())
        world_swap_pss += int(pg[:, c["swap_pss"]].sum())
    # every mapped page's mapcount: normal pages', and the vDSO's counted
    # from the page tables as smaps is told them (Kernel.vdso_mapcount)
    cnt = np.concatenate((maps.precise(mem, maps.mapped_pfns(mem)), maps.kernel[maps.kernel > 0]))
    assert (cnt > 0).all()
    users = maps.swap[maps.swap > 0]
    assert world_swap_pss == int((users * (FULL_PSS // users)).sum()), "SwapPss does not add up over the slots"
    npages = len(cnt)
    exact = int((cnt * (FULL_PSS // cnt)).sum())
    assert world_pss == exact, f"page model: the world's Pss is {world_pss}, sum(c * (FULL // c)) = {exact}"
    assert npages * FULL_PSS - int((cnt - 1).sum()) <= world_pss <= npages * FULL_PSS
    assert world_rss == int(cnt.sum()) * PAGE, "page model: the world's Rss is not 4096 * mappings"
    assert world_private == int((cnt == 1).sum()) * PAGE, \
        f"page model: the world's Private is {world_private}, {int((cnt == 1).sum())} pages are mapped once"
    assert world_shared == int(cnt[cnt >= 2].sum()) * PAGE, \
        "page model: the world's Shared is not 4096 * the mappings of shared pages"


def check_kpagecount(k: Kernel, maps: Mappings) -> None:
    """/proc/kpagecount (spec §13.2, seed-mechanisms §5.2, issue invariant 6)
    as rendered, for the low kernel frames (PFN 0, the zero page, the vDSO)
    and every frame from the first allocatable one to a few past the last
    used: the precise page mapcount (PTEs + the folio's PMDs) with
    CONFIG_PAGE_MAPCOUNT; the folio's average page mapcount, recomputed
    here from the page tables, with CONFIG_NO_PAGE_MAPCOUNT (>= 1 for every
    page of a mapped folio); 0 for free and reserved frames in both."""
    mem = k.mem
    used = np.flatnonzero(mem.flags[mem.first_free:])
    hi = min(mem.nr_pages, mem.first_free + (int(used[-1]) + 1 if len(used) else 0) + 64)
    low = min(64, mem.first_free)
    ctx = Ctx(k, ROOT_CALLER)
    got = np.concatenate([np.frombuffer(PM.kpagecount(ctx, (b - a) * 8, a * 8), "<u8")
                          for a, b in ((0, low), (mem.first_free, hi))]).astype(np.int64)
    pfns = np.concatenate((np.arange(low, dtype=np.int64), np.arange(mem.first_free, hi, dtype=np.int64)))
    if mem.mapcount_model == "page":
        want = maps.precise(mem, pfns)
    else:
        want = maps.average(mem, pfns)
        mapped = maps.folio_total(mem, pfns) > 0
        mapped[: low] = False
        assert (got[mapped] >= 1).all(), "a page of a mapped folio has kpagecount 0 under no_page"
    fl = mem.flags[pfns]
    want[(fl & M.PG_RESERVED) != 0] = 0
    # hugetlb: the folio's total mapcount under both models (seed-mechanisms §5.2)
    huge = (fl & M.PG_HUGETLB) != 0
    want[huge] = mem.large_mapcount[mem.folio_head(pfns[huge])[0]]
    assert not want[fl == 0].any(), "a free frame is mapped"
    bad = np.flatnonzero(got != want)
    assert not len(bad), (f"kpagecount of PFN {pfns[bad[0]]} is {got[bad[0]]}, expected {want[bad[0]]} "
                          f"({mem.mapcount_model}, order {mem.order[pfns[bad[0]]]})")
    # kpageflags: SWAPCACHE (and PG_owner_priv_1, bit 37, its alias) exactly
    # on the swap cache's folios, always with ANON and SWAPBACKED
    kf = np.frombuffer(PM.kpageflags(ctx, (hi - mem.first_free) * 8, mem.first_free * 8), "<u8")
    incache = np.isin(np.arange(mem.first_free, hi), mem.swap_cache.pfns())
    bits = np.uint64((1 << stats.KPF_SWAPCACHE) | (1 << stats.KPF_OWNER_PRIVATE))
    assert ((kf & bits) == np.where(incache, bits, 0)).all(), "kpageflags SWAPCACHE is not the swap cache"
    both = np.uint64((1 << stats.KPF_ANON) | (1 << stats.KPF_SWAPBACKED))
    assert ((kf[incache] & both) == both).all()


def check_meminfo(k: Kernel, maps: Mappings) -> None:
    """/proc/meminfo as rendered (spec §15.2, mem_snapshot's docstring,
    issue invariant 7): totals equal the sum of their parts, the parts equal
    what the frames say, AnonPages is each model's own definition, and the
    memoised snapshot is not stale."""
    mem = k.mem
    assert show_mem.mm_totals(k) == show_mem._mm_totals(k), "meminfo's memoised per-mm totals are stale"
    assert show_mem.mem_snapshot(k) == show_mem._mem_snapshot(k), "meminfo's memoised snapshot is stale"
    mi = kb_lines(meminfo_f.meminfo(Ctx(k, ROOT_CALLER)).decode())
    fl = mem.flags[mem.first_free:]
    fl = fl[(fl & M.PG_HUGETLB) == 0]  # the hugetlb pool is on no LRU list and in no page cache count
    n_anon = int(np.count_nonzero(fl & M.PG_ANON))
    n_file = int(np.count_nonzero(fl & M.PG_FILE))
    n_shmem = int(np.count_nonzero(fl & M.PG_SHMEM))
    kb = PAGE >> 10
    assert mi["MemTotal"] == (k.config.mem_bytes - k.config.kernel_reserved_bytes) >> 10
    assert mi["Active"] == mi["Active(anon)"] + mi["Active(file)"]
    assert mi["Inactive"] == mi["Inactive(anon)"] + mi["Inactive(file)"]
    # the LRU lists hold every anon and page-cache frame (shmem on the anon
    # lists) and the buffers; mlocked ones on the unevictable list
    assert mi["Active"] + mi["Inactive"] + mi["Unevictable"] == (n_anon + n_file + n_shmem) * kb + mi["Buffers"]
    assert mi["Active(anon)"] + mi["Inactive(anon)"] <= (n_anon + n_shmem) * kb
    assert mi["Mlocked"] <= mi["Unevictable"]
    assert mi["Shmem"] == n_shmem * kb
    assert mi["Cached"] == (n_file + n_shmem) * kb and mi["Cached"] >= mi["Shmem"], "Cached must include Shmem"
    assert mi["AnonPages"] == maps.anon_pages[mem.mapcount_model] * kb <= n_anon * kb
    assert mi["AnonHugePages"] == int(np.count_nonzero(maps.pmd)) * 512 * kb <= mi["AnonPages"]
    cache = ((mem.flags & (M.PG_FILE | M.PG_SHMEM)) != 0) & (maps.pte > 0)
    assert mi["Mapped"] == int(np.count_nonzero(cache[mem.first_free:])) * kb <= mi["Cached"]
    assert mi["Slab"] == mi["SReclaimable"] + mi["SUnreclaim"] and mi["KReclaimable"] >= mi["SReclaimable"]
    # a swap area loses its header page (spec §15.2: 64 MiB -> 65532 kB)
    swap_pages = k.config.swap_bytes // PAGE
    assert mi["SwapTotal"] == (swap_pages - 1 if swap_pages >= 2 else 0) * kb
    assert mi["SwapFree"] == mi["SwapTotal"] - int(np.count_nonzero(maps.swap_used)) * kb <= mi["SwapTotal"]
    # SwapCached: the swap cache's folios (NR_SWAPCACHE), mapped or not; they
    # are anonymous (in the anon LRU count above), not in Cached
    n_swapcached = int(np.count_nonzero(maps.swapcache))
    assert mi["SwapCached"] == n_swapcached * kb == k.mem.swap_cache.nr_swapcached * kb
    vm = VS.vmstat_values(k)
    assert vm["nr_swapcached"] == n_swapcached
    # NR_FILE_PAGES holds the swap cache; meminfo's Cached is it less the
    # swap cache and the buffers (meminfo_proc_show)
    assert vm["nr_file_pages"] * kb == mi["Cached"] + mi["SwapCached"] + mi["Buffers"]
    # (MemTotal - hugetlb pool) * overcommit_ratio / 100 + SwapTotal
    assert mi["CommitLimit"] == (mi["MemTotal"] - mi["Hugetlb"]) // kb * zone.OVERCOMMIT_RATIO // 100 * kb \
        + mi["SwapTotal"]
    assert mi["MemFree"] <= mi["MemTotal"] and mi["MemAvailable"] <= mi["MemTotal"]
    # mem_snapshot's identity, plus the anon frames AnonPages leaves out
    # (unmapped pages of partially mapped large folios)
    parts = (mi["MemFree"] + mi["Buffers"] + mi["Cached"] + mi["AnonPages"] + mi["Slab"] + mi["KernelStack"]
             + mi["PageTables"] + mi["Percpu"] + mi["VmallocUsed"] - mi["KernelStack"] + mi["Hugetlb"]
             + (n_anon * kb - mi["AnonPages"]))
    assert mi["MemTotal"] == parts, (mi["MemTotal"], parts)


def _runs(mm, gap: int) -> list[tuple[int, int]]:
    """Ranges of adjacent VMAs, widened by up to `gap` pages of the holes
    around them (never into the next run)."""
    runs: list[list[int]] = []
    for v in mm.vmas:
        if runs and runs[-1][1] == v.start:
            runs[-1][1] = v.end
        else:
            runs.append([v.start, v.end])
    out = []
    for i, (a, b) in enumerate(runs):
        lo = max(a - gap * PAGE, runs[i - 1][1] if i else 0)
        hi = min(b + gap * PAGE, runs[i + 1][0] if i + 1 < len(runs) else TASK_SIZE)
        out.append((lo, hi))
    return out


def read_pagemap(ctx: Ctx, lo: int, hi: int) -> np.ndarray:
    """/proc/PID/pagemap entries of [lo, hi), read as a tool does."""
    data = PM.pagemap(ctx, ((hi - lo) >> PAGE_SHIFT) * 8, (lo >> PAGE_SHIFT) * 8)
    return np.frombuffer(data, "<u8")


def check_pagemap(k: Kernel, maps: Mappings) -> None:
    """/proc/PID/pagemap as rendered (spec §10.1, issue invariant 8), over
    every VMA and a few pages of the holes around them: holes read 0; a swap
    entry reads PM_SWAP | offset << 5 (type 0); a present page reads
    PM_PRESENT | PFN, PM_FILE when it is a page but not
    anonymous (the vDSO too, never the zero page), soft-dirty from the PTE
    or VM_SOFTDIRTY, and PM_MMAP_EXCLUSIVE for normal pages iff the precise
    mapcount is 1 (PAGE_MAPCOUNT) / the folio is not maybe mapped shared
    (NO_PAGE_MAPCOUNT, which then never calls a page exclusive that is
    mapped twice). A reader without CAP_SYS_ADMIN gets the same flags and
    PFN 0 (checked for one mm per step)."""
    mem = k.mem
    page_model = mem.mapcount_model == "page"
    mms = live_mms(k)
    for n, mm in enumerate(mms):
        ctx = mm_ctx(k, mm)
        chosen = n == k.generation % len(mms)
        user = mm_ctx(k, mm, USER_CALLER) if chosen else None
        for lo, hi in _runs(mm, 4):
            if not chosen and not any(True for _ in mm.pgtable.spans(lo, hi)):
                continue  # no page table: all holes (read for one mm per step)
            got = read_pagemap(ctx, lo, hi)
            covered = np.zeros(len(got), bool)
            pfnmap = np.zeros(len(got), bool)
            sd = np.zeros(len(got), bool)
            for v in mm.vmas.overlapping(lo, hi):
                i, j = (max(v.start, lo) - lo) >> PAGE_SHIFT, (min(v.end, hi) - lo) >> PAGE_SHIFT
                covered[i:j] = True
                pfnmap[i:j] = bool(v.flags & VM_PFNMAP)
                sd[i:j] = bool(v.flags & VM_SOFTDIRTY)
            assert not got[~covered].any(), f"pagemap of a hole in {lo:#x}-{hi:#x} is not 0"
            ptes = mm.pgtable.read(lo, hi)
            present = ((ptes & PTE_PRESENT) != 0) & ~pfnmap
            pfn = np.where(present, pte_pfn(ptes), 0)
            fl = mem.flags[pfn]
            normal = np.flatnonzero(present & ((fl & M.PG_RESERVED) == 0))
            if page_model:
                excl = maps.precise(mem, pfn[normal]) == 1
            else:
                excl = ~maps.maybe_shared(mem, pfn[normal])
                assert (maps.precise(mem, pfn[normal][excl]) == 1).all(), "no_page: exclusive page mapped twice"
            want = np.where(present, np.uint64(stats.PM_PRESENT) | pfn.astype(np.uint64), np.uint64(0))
            # swap entries: PM_SWAP, type (0) in bits 0-4 and the offset from bit 5
            swapped = is_swap_pte(ptes) & ~pfnmap
            want[swapped] = np.uint64(stats.PM_SWAP) | (swp_offset(ptes[swapped]).astype(np.uint64) << np.uint64(5))
            want[present & (pfn != ZERO_PFN) & ((fl & M.PG_ANON) == 0)] |= np.uint64(stats.PM_FILE)
            want[sd | ((present | swapped) & ((ptes & PTE_SOFT_DIRTY) != 0))] |= np.uint64(stats.PM_SOFT_DIRTY)
            want[normal[excl]] |= np.uint64(stats.PM_MMAP_EXCLUSIVE)
            # hugetlb pages live outside the PTE tables: each 4 KiB slot is
            # present, PFN head + index, exclusive when the folio is mapped
            # once, PM_FILE when not anonymous (shared hugetlb) (spec §10.1)
            for idx in mm.pgtable.hugetlb_in(lo, hi):
                head = int(mm.pgtable.hugetlb[idx]) >> PAGE_SHIFT
                base = idx << PMD_SHIFT
                a, b = max(lo, base), min(hi, base + PMD_SIZE)
                e = np.uint64(stats.PM_PRESENT) | np.arange(head + ((a - base) >> PAGE_SHIFT),
                                                            head + ((b - base) >> PAGE_SHIFT), dtype=np.uint64)
                if not mem.flags[head] & M.PG_ANON:
                    e |= np.uint64(stats.PM_FILE)
                if mem.large_mapcount[head] == 1:
                    e |= np.uint64(stats.PM_MMAP_EXCLUSIVE)
                want[(a - lo) >> PAGE_SHIFT:(b - lo) >> PAGE_SHIFT] = e
            bad = np.flatnonzero(got != want)
            assert not len(bad), (f"pagemap at {lo + int(bad[0]) * PAGE:#x}: {int(got[bad[0]]):#x}, "
                                  f"expected {int(want[bad[0]]):#x} ({mem.mapcount_model})")
            if not k.config.mem_soft_dirty:
                assert not (got & np.uint64(stats.PM_SOFT_DIRTY)).any(), "soft-dirty without CONFIG_MEM_SOFT_DIRTY"
            if user is not None:
                flags_only = got & ~np.uint64(stats.PM_PFRAME_MASK)
                assert (read_pagemap(user, lo, hi) == flags_only).all(), "pagemap without CAP_SYS_ADMIN"


def check_swap(k: Kernel, mms: list) -> None:
    """The swap area: every slot's count is the number of swap entries that
    refer to it over all page tables; the header slot is never used; free
    and used slots add up to SwapTotal."""
    swap = k.mem.swap
    counts = np.zeros(swap.nr_slots, np.int64)
    for mm in mms:
        for table in mm.pgtable.tables.values():
            sw = is_swap_pte(table)
            if sw.any():
                offs = swp_offset(table[sw])
                assert ((offs >= 1) & (offs < swap.nr_slots)).all(), "swap entry beyond the area"
                np.add.at(counts, offs, 1)
    bad = np.nonzero(counts != swap_count(swap.swap_map))[0]
    assert not len(bad), f"slot {bad[0]}: swap_map {swap.swap_map[bad[0]]}, {counts[bad[0]]} entries"
    assert swap.inuse_pages == int(np.count_nonzero(swap.swap_map))
    cached = np.flatnonzero(swap.swap_map & SWAP_HAS_CACHE)
    assert swap.inuse_pages == int(np.count_nonzero(counts)) + int(np.count_nonzero(counts[cached] == 0)), \
        "a slot in use is neither in a page table nor in the swap cache"
    assert swap.nr_free + swap.inuse_pages == swap.pages and swap.nr_free >= 0


def check_hugetlb(k: Kernel, mms: list) -> None:
    """The hugetlb pool: free + in use = total, 0 <= Rsvd <= Free and equal
    to the reservations the VMAs and files hold; mapcounts and
    hugetlb_usage equal the huge PTEs; private VMAs map anonymous pages,
    shared ones their file's page at the right index; every page in use is
    mapped or in a live file (no leak); hugetlb stays out of RSS."""
    mem = k.mem
    pool = mem.hugetlb
    hfl = (mem.flags & M.PG_HUGETLB) != 0
    hp = np.nonzero(hfl)[0]
    heads = hp[hp % PTRS_PER_TABLE == 0]
    assert len(hp) == PTRS_PER_TABLE * len(heads) == PTRS_PER_TABLE * pool.nr_huge_pages
    assert (mem.order[hp] == 9).all() and (mem.mapcount[hp] == 0).all()
    free = set(pool._free)
    assert len(free) == len(pool._free) == pool.free_huge_pages and free <= set(heads.tolist())
    assert 0 <= pool.resv_huge_pages <= pool.free_huge_pages <= pool.nr_huge_pages
    for h in free:
        assert mem.large_mapcount[h] == 0 and not mem.flags[h] & M.PG_ANON
    tally: dict[int, int] = {}
    files: dict[int, object] = {}
    resvs: dict[int, object] = {}
    for mm in mms:
        nent = 0
        hdata = 0
        for v in mm.vmas:
            if not v.is_hugetlb:
                continue
            assert v.start % PMD_SIZE == 0 and v.end % PMD_SIZE == 0 and v.file is not None and v.file.hugetlb
            if v.flags & VM_WRITE and not v.flags & VM_SHARED:
                hdata += v.npages
            files[id(v.file)] = v.file
            if v.resv is not None:
                assert not v.flags & VM_MAYSHARE
                resvs[id(v.resv)] = v.resv
        assert mm.hugetlb_data_vm == hdata
        for idx, e in mm.pgtable.hugetlb.items():
            base = idx << PMD_SHIFT
            v = mm.vmas.lookup(base)
            assert v is not None and v.is_hugetlb and v.end >= base + PMD_SIZE, f"stray huge PTE at {base:#x}"
            head = e >> PAGE_SHIFT
            assert head not in free and mem.flags[head] & M.PG_HUGETLB and head % PTRS_PER_TABLE == 0
            i = (v.pgoff + ((base - v.start) >> PAGE_SHIFT)) >> 9
            if v.flags & VM_MAYSHARE:
                assert not mem.flags[head] & M.PG_ANON and v.file.cache[i] == head, "shared huge PTE off its file"
            else:
                assert mem.flags[head] & M.PG_ANON, "private huge PTE maps a non-anonymous page"
                if e & int(PTE_RW):
                    assert mem.large_mapcount[head] == 1, "writable huge PTE of a shared private page"
            tally[head] = tally.get(head, 0) + 1
            nent += 1
        assert mm.hugetlb_usage == nent * PTRS_PER_TABLE, (mm.hugetlb_usage, nent)
    cached = set()
    for f in files.values():
        c = f.cache[f.cache != 0].tolist()
        assert not set(c) & free and not set(c) & cached
        cached |= set(c)
    for h in heads.tolist():
        assert mem.large_mapcount[h] == mem.entire_mapcount[h] == tally.get(h, 0), (h, tally.get(h))
    assert set(tally) | cached == set(heads.tolist()) - free, "hugetlb page in use but neither mapped nor cached"
    held = sum(len(r.reserved) for r in resvs.values()) + sum(len(f.resv) for f in files.values())
    assert held == pool.resv_huge_pages, (held, pool.resv_huge_pages)


def check_smaps_swap_hugetlb(k: Kernel) -> None:
    """smaps Swap, SwapPss and *_Hugetlb against the model: per mm the
    VMAs' Swap is VmSwap; over all mms SwapPss adds up to every used slot's
    4 KiB split among its users (exactly, with the per-entry rounding);
    each huge PTE is 2 MiB of Private_ or Shared_Hugetlb (HugetlbPages), and
    a hugetlb VMA has no Rss."""
    from procsim.mm import stats
    swap_pss = 0
    for mm in live_mms(k):
        # (check_smaps already walks every VMA; mms with neither swap
        # entries nor hugetlb VMAs have nothing to add here)
        if not mm.rss[MM_SWAPENTS] and not any(v.is_hugetlb for v in mm.vmas):
            continue
        sw = hp = 0
        for v in mm.vmas:
            s = stats.smaps_vma(mm, v)
            sw += s.swap
            swap_pss += s.swap_pss
            hp += s.shared_hugetlb + s.private_hugetlb
            if v.is_hugetlb:
                assert s.resident == s.pss == s.swap == 0
            else:
                assert s.shared_hugetlb == s.private_hugetlb == 0
        assert sw == mm.rss[MM_SWAPENTS] * PAGE, (sw, mm.rss)
        assert hp == mm.hugetlb_usage * PAGE
    full = PAGE << 12
    c = swap_count(k.mem.swap.swap_map)
    c = c[c > 0]
    want = int(np.where(c >= 2, c * (full // np.maximum(c, 1)), full).sum())
    assert swap_pss == want, (swap_pss, want)


def check_tasks(k: Kernel) -> None:
    sets_bits = k.sched.cpumask_model.sets_bits
    for tid, t in k.tasks.items():
        assert t.pid == tid and t in t.tg.threads
        assert k.groups.get(t.tgid) is t.tg
        if t.on_cpu:
            assert k.sched.cpus[t.cpu].curr is t
    for tg in k.groups.values():
        assert tg.leader.pid == tg.tgid, "the leader's pid is the tgid"
        for t in tg.threads:
            assert k.tasks.get(t.pid) is t
        if tg.zombie:
            assert all(t.dead for t in tg.threads) and len(tg.threads) == 1
        elif not tg.kthread:
            assert any(not t.dead for t in tg.threads), f"{tg.tgid}: no live thread but not a zombie"
            if tg.mm is not None:
                assert tg.mm.users == len(tg.threads), (tg.tgid, tg.mm.users, len(tg.threads))
        if tg.parent is not None and tg.tgid in k.groups:
            assert tg in tg.parent.children or tg.parent.tgid not in k.groups
    assert sum(c.irq_tlb_count for c in k.sched.cpus) == k.sched.tlb.remote_flush_received
    for cpu in k.sched.cpus:
        if cpu.loaded_mm is not None and sets_bits:
            # a CPU keeps its bit in the mm it has loaded, lazily or not
            assert cpu.loaded_mm.cpumask >> cpu.id & 1, f"CPU {cpu.id} lost its bit in its loaded mm"
        t = cpu.curr
        if t is None:
            continue
        assert t.on_cpu and t.cpu == cpu.id and not t.dead and k.tasks.get(t.pid) is t
        assert t.cpus_allowed >> cpu.id & 1
        if t.mm is not None:
            assert cpu.loaded_mm is t.mm and not cpu.is_lazy
            if not sets_bits:
                assert t.mm.cpumask == 0
            else:
                assert t.mm.cpumask >> cpu.id & 1, f"CPU {cpu.id} runs {t.pid} but is not in its mm_cpumask"


def check_mappings(k: Kernel, unmerged_ok=()) -> tuple[list, Mappings]:
    """Each live mm (check_mm) and the frames they all map (check_memory):
    the live mms and the mappings read from their page tables."""
    mms = live_mms(k)
    tally: list = []
    for mm in mms:
        check_mm(k, mm, tally, any(mm is m for m in unmerged_ok))
    return mms, check_memory(k, mms, tally)


def check_block(k: Kernel) -> None:
    """The block layer's counters against the memory model's: every kB of
    pgpgin was read from a disk and every kB of pgpgout (beyond the journal
    trickle) written to one (submit_bio counts both); a disk counts at least
    what its partitions do; the swap device wrote every swapped-out page;
    every file with dirty page-cache pages is on the flusher's list."""
    from procsim.block.genhd import STAT_READ, STAT_WRITE
    blk, ev = k.block, k.mem.vm_events
    disks = [d.part0.stats for d in blk.disks]
    assert ev.pgpgin * 2 == sum(s.sectors[STAT_READ] for s in disks), "pgpgin is not the disks' reads"
    assert ev.pgpgout * 2 == sum(s.sectors[STAT_WRITE] for s in disks), "pgpgout is not the disks' writes"
    for d in blk.disks:
        for g in range(4):
            assert d.part0.stats.sectors[g] >= sum(p.stats.sectors[g] for p in d.parts[1:])
            assert d.part0.stats.ios[g] >= sum(p.stats.ios[g] for p in d.parts[1:])
    if blk.swap is not None:
        assert blk.swap.bdev.stats.sectors[STAT_WRITE] >= k.mem.swap.pswpout * 8
        assert blk.swap.bdev.stats.sectors[STAT_READ] >= k.mem.swap.pswpin * 8
    for f in k.vfs.files.values():
        if f.shmem or not len(f.cache):
            continue
        pf = f.cache[f.cache != 0]
        if (k.mem.flags[pf] & (M.PG_DIRTY | M.PG_FILE) == (M.PG_DIRTY | M.PG_FILE)).any():
            assert id(f) in blk.b_dirty, f"{f.path} has dirty pages and is not on b_dirty"


def check_world(k: Kernel, unmerged_ok=(), meminfo: bool = True) -> Mappings:
    """unmerged_ok: mms forked from one with mlocked VMAs. Linux clears VM_LOCKED
    in the child without merging, so neighbours that differed only in it stay apart.
    meminfo=False leaves out meminfo's MemTotal identity, which cannot hold once
    user pages leave less than the kernel's own pools (a fault with no victim to
    kill fills memory to the last frame)."""
    mms, maps = check_mappings(k, unmerged_ok)
    check_kpagecount(k, maps)
    if meminfo:
        check_meminfo(k, maps)
    check_swap(k, mms)
    check_hugetlb(k, mms)
    check_tasks(k)
    check_block(k)
    return maps


def snapshot(k: Kernel):
    """Everything a failed syscall must leave alone."""
    groups = []
    for pid in sorted(k.groups):
        tg = k.groups[pid]
        mm = tg.mm
        entry = [pid, tg.zombie, tuple((t.pid, t.dead, t.state, t.cpu, t.on_cpu, t.cpus_allowed)
                                       for t in tg.threads), tuple(c.tgid for c in tg.children)]
        if mm is not None:
            entry.append(tuple((v.start, v.end, v.flags, v.pgoff, id(v.file), v.special) for v in mm.vmas))
            entry.append(tuple(mm.rss))
            entry.append(tuple(vm_counters(mm).values()))
            entry.append((mm.brk, mm.start_brk, mm.cpumask, mm.total_vm, mm.locked_vm))
            entry.append(tuple((i, t.tobytes()) for i, t in mm.pgtable.tables.items()))
            entry.append(tuple(mm.pgtable.huge))
            entry.append((tuple(mm.pgtable.hugetlb.items()), mm.hugetlb_usage))
        groups.append(tuple(entry))
    cpus = tuple((c.curr.pid if c.curr else None, id(c.loaded_mm), c.is_lazy, c.irq_tlb_count)
                 for c in k.sched.cpus)
    files = tuple((path, f.size, f.writable, f.nr_mappings) for path, f in sorted(k.vfs.files.items()))
    mem = k.mem
    pool = mem.hugetlb
    return (tuple(groups), cpus, files, mem.nr_free, mem.mapcount.tobytes(), mem.flags.tobytes(),
            mem.order.tobytes(), mem.large_mapcount.tobytes(), (mem.thp.enabled, tuple(mem.thp.per_order.items())),
            mem.swap.swap_map.tobytes(), mem.swap_cache.folio.tobytes(), (pool.nr_huge_pages, pool.resv_huge_pages, tuple(pool._free)))


READER = Caller(pid=10**7, uid=0, gid=0)  # a root reader that is no simulated task


def fingerprint(k) -> tuple:
    """Everything a reader could see: the model's tables and the files that sum them."""
    fs = ProcFS(k)

    def read(path: str) -> bytes:
        return fs.open(path, 0, READER).read(1 << 20, 0)

    ps = execute(k, "ps", {})
    vmas = {p["pid"]: execute(k, "vmas", {"pid": p["pid"]}) for p in ps if not p["zombie"]}
    files = tuple(read(f"/proc/{f}") for f in ("meminfo", "stat", "loadavg", "interrupts", "vmstat"))
    status = tuple(read(f"/proc/{p['pid']}/status") for p in ps)
    fds = {p["pid"]: execute(k, "fds", {"pid": p["pid"]}) for p in ps}
    vfs = (sorted(k.vfs.files), sorted(k.files.removed), read("/proc/sys/fs/file-nr"))
    return repr(ps), repr(vmas), files, status, k.now, len(k.tasks), repr(fds), vfs
