"""A hypothesis state machine over random syscall sequences that checks the
kernel's invariants after every step: VMAs sorted, disjoint, aligned and
maximally merged; counters equal to what the VMAs and page tables say; no
frame leaked, freed while mapped, or mapped more often than counted; the
running CPUs in their mm_cpumask; and failed syscalls change nothing.

`check_world` is also used by test_mm.py after its scenarios.
"""

from __future__ import annotations

import errno

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from procsim import Kernel, KernelConfig
from procsim.kernel import (MREMAP_FIXED, MREMAP_MAYMOVE, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
                            MADV_NOHUGEPAGE, MADV_PAGEOUT, LIBC)
from procsim.mm import memory as M
from procsim.mm.mm import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, TASK_SIZE, ZERO_PFN
from procsim.mm.pagetable import (PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE, PTE_RW, PTRS_PER_TABLE, is_swap_pte,
                                  pte_pfn, pte_present, swp_offset)
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGETLB, MAP_LOCKED,
                            MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, VM_EXEC, VM_LOCKED, VM_MAYSHARE,
                            VM_PFNMAP, VM_SHARED, VM_STACK, VM_WRITE)

PAGE = PAGE_SIZE


def boot(**kw) -> Kernel:
    kw.setdefault("nr_cpus", 4)
    kw.setdefault("mem_bytes", 1 << 30)
    k = Kernel(KernelConfig(**kw))
    k.create_init()
    k.kthread("kthreadd", pid=2)
    return k


# -- invariants ------------------------------------------------------------------


def live_mms(k: Kernel) -> list:
    out = {}
    for tg in k.groups.values():
        if tg.mm is not None:
            assert not tg.zombie, f"zombie {tg.tgid} still has an mm"
            out[id(tg.mm)] = tg.mm
    return list(out.values())


def vm_counters(mm) -> dict[str, int]:
    """total/data/exec/stack/locked_vm recomputed from the VMAs (spec §2.1)."""
    c = dict(total_vm=0, data_vm=0, exec_vm=0, stack_vm=0, locked_vm=0)
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
    return c


def fmt(v) -> str:
    name = v.file.path if v.file else v.special or ""
    return f"{v.start:#x}-{v.end:#x} {v.perms()} flags={v.flags:#x} pgoff={v.pgoff:#x} {name}"


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
    assert {n: getattr(mm, n) for n in vm_counters(mm)} == vm_counters(mm)
    # every page maps what the VMA says: file pages are the file's own page at
    # pgoff + index, shared mappings only map the cache, anonymous VMAs never do
    for v in mm.vmas:
        for va, sl in mm.pgtable.spans(v.start, v.end):
            nz = np.nonzero(pte_present(sl))[0]
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
        present = pte_present(table)
        swapped = is_swap_pte(table)
        assert not (table[~present & ~swapped] != 0).any(), "non-present entry that is no swap entry"
        assert not (swapped & (~covered | shared)).any(), "swap entry outside a private VMA"
        rss[MM_SWAPENTS] += int(swapped.sum())
        stray = (present | swapped) & ~covered
        assert not stray.any(), f"PTE outside any VMA at {base + int(np.argmax(stray)) * PAGE:#x}"
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
            tally.append((np.zeros(0, np.int64), np.zeros(0, bool), mm.mm_id, [head]))
            continue
        tally.append((pfns[real], rw[real] & anon[real], mm.mm_id, []))
    assert mm.rss == rss, (mm.rss, rss)


def check_memory(k: Kernel, mms: list, tally: list) -> None:
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
    check_folios(k, tally)
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
    anon = ((mem.flags & M.PG_ANON) != 0) & ((mem.flags & M.PG_HUGETLB) == 0)
    anon[: mem.first_free] = False
    assert (mem.folio_mapcount(np.nonzero(anon)[0]) > 0).all(), "anonymous folio nobody maps (leaked)"
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


def check_folios(k: Kernel, tally: list) -> None:
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
    for pfns, _, mm_id, pmd_heads in tally:
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


def check_smaps(k: Kernel) -> None:
    """smaps arithmetic: Rss = Shared + Private per VMA; the VMAs' Rss add up
    to VmRSS (statm resident); AnonHugePages only from huge PMDs."""
    from procsim.mm import stats
    for mm in live_mms(k):
        total = 0
        for v in mm.vmas:
            s = stats.smaps_vma(mm, v)
            assert s.resident == s.shared_clean + s.shared_dirty + s.private_clean + s.private_dirty
            assert s.pss <= s.resident << 12 and s.anonymous_thp <= s.anonymous <= s.resident
            if not v.flags & VM_PFNMAP:
                total += s.resident
        assert total == mm.rss_pages * PAGE, (total, mm.rss_pages)


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
    bad = np.nonzero(counts != swap.swap_map)[0]
    assert not len(bad), f"slot {bad[0]}: swap_map {swap.swap_map[bad[0]]}, {counts[bad[0]]} entries"
    assert swap.inuse_pages == int(np.count_nonzero(swap.swap_map))
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
    c = k.mem.swap.swap_map.astype(np.int64)
    c = c[c > 0]
    want = int(np.where(c >= 2, c * (full // np.maximum(c, 1)), full).sum())
    assert swap_pss == want, (swap_pss, want)


def check_tasks(k: Kernel) -> None:
    model = k.config.cpumask_model
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
        if cpu.loaded_mm is not None and model != "never_set":
            # a CPU keeps its bit in the mm it has loaded, lazily or not
            assert cpu.loaded_mm.cpumask >> cpu.id & 1, f"CPU {cpu.id} lost its bit in its loaded mm"
        t = cpu.curr
        if t is None:
            continue
        assert t.on_cpu and t.cpu == cpu.id and not t.dead and k.tasks.get(t.pid) is t
        assert t.cpus_allowed >> cpu.id & 1
        if t.mm is not None:
            assert cpu.loaded_mm is t.mm and not cpu.is_lazy
            if model == "never_set":
                assert t.mm.cpumask == 0
            else:
                assert t.mm.cpumask >> cpu.id & 1, f"CPU {cpu.id} runs {t.pid} but is not in its mm_cpumask"


def check_world(k: Kernel, unmerged_ok=()) -> None:
    """unmerged_ok: mms forked from one with mlocked VMAs. Linux clears VM_LOCKED
    in the child without merging, so neighbours that differed only in it stay apart."""
    mms = live_mms(k)
    tally: list = []
    for mm in mms:
        check_mm(k, mm, tally, any(mm is m for m in unmerged_ok))
    check_memory(k, mms, tally)
    check_swap(k, mms)
    check_hugetlb(k, mms)
    check_tasks(k)


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
            mem.swap.swap_map.tobytes(), (pool.nr_huge_pages, pool.resv_huge_pages, tuple(pool._free)))


# -- the machine -------------------------------------------------------------------

FILES = ["/srv/data/a.bin", "/srv/data/b.bin", LIBC]
PROTS = [0, 1, 2, 3, 5, 7]
MAX_GROUPS = 5
MAX_THREADS = 3
EXPECTED = {errno.EINVAL, errno.ENOMEM, errno.EFAULT, errno.ESRCH, errno.EEXIST, errno.EACCES,
            errno.ECHILD, errno.EAGAIN, errno.EPERM, errno.EBADF}

idx = st.integers(0, 1 << 16)


class KernelMachine(RuleBasedStateMachine):

    @initialize(cpus=st.integers(1, 4), arch=st.sampled_from(["x86", "x86", "x86-eager", "arm64", "riscv"]),
                model=st.sampled_from(["page", "no_page"]), thp=st.sampled_from(["madvise", "always", "never"]),
                mthp=st.sampled_from([None, 16, 64]),
                # swap: none, 63 slots (fills up: pages stay resident), 64 MiB
                swap=st.sampled_from([0, 256 << 10, 64 << 20]), huge=st.sampled_from([0, 3, 16]))
    def boot(self, cpus, arch, model, thp, mthp, swap, huge):
        sizes = {mthp: "always"} if mthp else {}
        kw = dict(mapcount_model=model, thp_enabled=thp, thp_sizes=sizes, swap_bytes=swap, hugepages=huge)
        if arch == "x86-eager":
            self.k = boot(nr_cpus=cpus, cpumask_model="eager_clear", **kw)
        else:
            self.k = boot(nr_cpus=cpus, arch=arch, **kw)
        self.k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
        self.errors = 0
        self.unmerged_ok = []

    # -- helpers ------------------------------------------------------------------

    def user_groups(self):
        return [tg for pid, tg in sorted(self.k.groups.items()) if tg.mm is not None and pid != 1]

    def user_tids(self):
        return [t.pid for tg in self.user_groups() for t in tg.threads if not t.dead]

    def pick(self, seq, i):
        return seq[i % len(seq)] if seq else None

    def area(self, mm, i, off, npages, clip=False):
        """[addr, addr+len) near VMA number i: across its edges and beyond
        (clip: inside it)."""
        vmas = list(mm.vmas)
        v = vmas[i % len(vmas)]
        if clip:
            off = off % v.npages
            npages = min(npages, v.npages - off)
        addr = v.start + off * PAGE
        return max(addr, 0x10000), npages * PAGE

    def call(self, fn, *args, **kw):
        before = snapshot(self.k)
        try:
            return fn(*args, **kw)
        except OSError as e:
            assert e.errno in EXPECTED, e
            after = snapshot(self.k)
            assert after == before, f"{fn.__name__}{args} failed with {e} but changed the world"
            self.errors += 1
            return None

    # -- processes ------------------------------------------------------------------

    @precondition(lambda self: len(self.user_groups()) < MAX_GROUPS)
    @rule()
    def spawn(self):
        self.call(self.k.spawn, ["/usr/bin/bash"], uid=1000, gid=1000)

    @precondition(lambda self: len(self.user_groups()) < MAX_GROUPS)
    @rule(i=idx)
    def fork(self, i):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.fork_of(tid)

    def fork_of(self, tid):
        mm = self.k.tasks[tid].mm
        child = self.call(self.k.fork, tid)
        if child is not None and (any(v.flags & VM_LOCKED for v in mm.vmas)
                                  or any(mm is m for m in self.unmerged_ok)):
            self.unmerged_ok.append(self.k.group(child).mm)
        return child

    @rule(i=idx)
    def clone(self, i):
        tid = self.pick(self.user_tids(), i)
        if tid is not None and len(self.k.tasks[tid].tg.threads) < MAX_THREADS:
            self.call(self.k.clone_thread, tid)

    @rule(i=idx)
    def exec(self, i):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.exec, tid, "/usr/bin/cat", ["cat"])

    @rule(i=idx, group=st.booleans())
    def exit(self, i, group):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        if group:
            self.call(self.k.exit_group, tid)
        else:
            self.call(self.k.exit, tid)

    @rule(i=idx)
    def wait(self, i):
        pids = [pid for pid, tg in sorted(self.k.groups.items()) if not tg.zombie]
        self.call(self.k.wait, self.pick(pids, i))

    @rule(tid=st.integers(1, 400))
    def poke_any_pid(self, tid):
        # dead, reaped or never-used pids: ESRCH (or EINVAL for kthreads), nothing changes
        self.call(self.k.touch, tid, 0x10000, PAGE)

    # -- memory -----------------------------------------------------------------------

    @rule(i=idx, kind=st.sampled_from(["anon", "shared", "file", "sfile", "sfile_ro", "growsdown",
                                       "noreserve", "locked"]),
          prot=st.sampled_from(PROTS), npages=st.integers(1, 40), fixed=st.sampled_from([0, 0, 1, 2]),
          j=idx, off=st.integers(-3, 40), fi=idx, foff=st.integers(0, 8))
    def mmap(self, i, kind, prot, npages, fixed, j, off, fi, foff):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        mm = self.k.tasks[tid].mm
        flags = MAP_PRIVATE | MAP_ANONYMOUS
        kw = {}
        if kind == "shared":
            flags = MAP_SHARED | MAP_ANONYMOUS
        elif kind in ("file", "sfile", "sfile_ro"):
            flags = MAP_PRIVATE if kind == "file" else MAP_SHARED
            kw = dict(path=self.pick(FILES, fi), offset=foff * PAGE, writable=kind != "sfile_ro")
        elif kind == "growsdown":
            flags |= MAP_GROWSDOWN
        elif kind == "noreserve":
            flags |= MAP_NORESERVE
        elif kind == "locked":
            flags |= MAP_LOCKED
        addr = 0
        if fixed:
            addr, _ = self.area(mm, j, off, npages)
            flags |= MAP_FIXED if fixed == 1 else MAP_FIXED_NOREPLACE
        self.call(self.k.mmap, tid, npages * PAGE, prot, flags, addr, **kw)

    @rule(i=idx, j=idx, off=st.integers(-3, 40), npages=st.integers(1, 48))
    def munmap(self, i, j, off, npages):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.munmap, tid, *self.area(self.k.tasks[tid].mm, j, off, npages))

    @rule(i=idx, j=idx, off=st.integers(-3, 40), npages=st.integers(1, 48), prot=st.sampled_from(PROTS))
    def mprotect(self, i, j, off, npages, prot):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.mprotect, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), prot)

    @rule(i=idx, j=idx, off=st.integers(-1, 20), npages=st.integers(1, 24), onoff=st.sampled_from(
        ["on", "onfault", "off"]))
    def mlock(self, i, j, off, npages, onoff):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            addr, length = self.area(self.k.tasks[tid].mm, j, off, npages)
            self.call(self.k.mlock, tid, addr, length, onoff != "off", onoff == "onfault")

    @rule(i=idx, j=idx, off=st.integers(0, 20), old=st.integers(0, 24), new=st.integers(0, 48),
          mode=st.sampled_from(["plain", "maymove", "fixed"]), k2=idx, off2=st.integers(-3, 40))
    def mremap(self, i, j, off, old, new, mode, k2, off2):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        mm = self.k.tasks[tid].mm
        addr, old_len = self.area(mm, j, off, old)
        flags, dest = 0, 0
        if mode == "maymove":
            flags = MREMAP_MAYMOVE
        elif mode == "fixed":
            flags = MREMAP_MAYMOVE | MREMAP_FIXED
            dest, _ = self.area(mm, k2, off2, new)
        self.call(self.k.mremap, tid, addr, old_len, new * PAGE, flags, dest)

    @rule(i=idx, delta=st.integers(-40, 40))
    def brk(self, i, delta):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            mm = self.k.tasks[tid].mm
            self.call(self.k.brk, tid, mm.brk + delta * PAGE)

    @rule(i=idx, j=idx, off=st.integers(-3, 40), npages=st.integers(1, 48))
    def madvise(self, i, j, off, npages):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.madvise, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), MADV_DONTNEED)

    @rule(i=idx, j=idx, off=st.integers(-2, 40), npages=st.integers(1, 40), write=st.booleans(),
          clip=st.booleans())
    def touch(self, i, j, off, npages, write, clip):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.touch, tid, *self.area(self.k.tasks[tid].mm, j, off, npages, clip), write)

    @rule(i=idx, j=idx, off=st.integers(-3, 600), npages=st.integers(1, 1100),
          advice=st.sampled_from([MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_FREE, MADV_DONTNEED, MADV_PAGEOUT]))
    def madvise_more(self, i, j, off, npages, advice):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.madvise, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), advice)

    @rule(i=idx, npages=st.integers(512, 2048), touch=st.integers(1, 1024))
    def thp_region(self, i, npages, touch):
        """A big anonymous mapping, advised huge and touched: THPs and mTHPs."""
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            a = self.call(self.k.mmap, tid, npages * PAGE)
            if a is not None:
                self.call(self.k.madvise, tid, a, npages * PAGE, MADV_HUGEPAGE)
                self.call(self.k.touch, tid, a, min(touch, npages) * PAGE)

    @rule(i=idx, j=idx, off=st.integers(-2, 40), npages=st.integers(1, 600))
    def pageout(self, i, j, off, npages):
        """MADV_PAGEOUT near a VMA: swap entries, split THPs, skipped COW pages."""
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.madvise, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), MADV_PAGEOUT)

    @rule(i=idx, npages=st.integers(1, 1100), touch=st.integers(1, 1100), off=st.integers(0, 600),
          nout=st.integers(1, 700), thp=st.booleans(), lazy=st.booleans(),
          fork=st.sampled_from(["no", "before", "after"]), back=st.integers(0, 800), write=st.booleans())
    def swap_region(self, i, npages, touch, off, nout, thp, lazy, fork, back, write):
        """Anonymous memory touched (THPs if advised), perhaps MADV_FREEd,
        partly paged out (before or after a fork), and partly touched back."""
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        a = self.call(self.k.mmap, tid, npages * PAGE)
        if a is None:
            return
        if thp:
            self.call(self.k.madvise, tid, a, npages * PAGE, MADV_HUGEPAGE)
        self.call(self.k.touch, tid, a, min(touch, npages) * PAGE)
        off = off % npages
        if lazy:
            self.call(self.k.madvise, tid, a, npages * PAGE, MADV_FREE)
        if fork == "before" and len(self.user_groups()) < MAX_GROUPS:
            self.fork(i)
        self.call(self.k.madvise, tid, a + off * PAGE, min(nout, npages - off) * PAGE, MADV_PAGEOUT)
        if fork == "after" and len(self.user_groups()) < MAX_GROUPS:
            self.fork(i)
        if back:
            self.call(self.k.touch, tid, a, min(back, npages) * PAGE, write)

    @rule(i=idx, shared=st.booleans(), noreserve=st.booleans(), nhuge=st.integers(1, 3),
          extra=st.sampled_from([0, 0, 4096, 1 << 20]), touch=st.integers(0, 3), write=st.booleans(),
          prot=st.sampled_from([3, 3, 1, 0]))
    def hugetlb_region(self, i, shared, noreserve, nhuge, extra, touch, write, prot):
        """A MAP_HUGETLB mapping (its length rounded up to 2 MiB), partly touched."""
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB
        flags |= MAP_NORESERVE if noreserve else 0
        a = self.call(self.k.mmap, tid, (nhuge << 21) - extra if extra < nhuge << 21 else 4096, prot, flags)
        if a is not None and touch and prot:
            self.call(self.k.touch, tid, a, min(touch, nhuge) << 21, write and bool(prot & 2))

    @rule(i=idx, j=idx, off=st.integers(0, 1100), npages=st.integers(1, 1100), write=st.booleans(),
          fork=st.booleans())
    def touch_swapped_or_hugetlb(self, i, j, off, npages, write, fork):
        """Touch a VMA, of any process, that holds swap entries or hugetlb
        pages (swap-ins, hugetlb COW), perhaps right after a fork."""
        if fork and len(self.user_groups()) < MAX_GROUPS:
            self.fork(i)
        vs = [(t, v) for t in self.user_tids() for v in self.k.tasks[t].mm.vmas
              if v.is_hugetlb or self.k.tasks[t].mm.swap_entries(v.start, v.end)]
        if not vs:
            return
        tid, v = self.pick(vs, j)
        off = off % v.npages
        self.call(self.k.touch, tid, v.start + off * PAGE, min(npages, v.npages - off) * PAGE,
                  write and bool(v.flags & VM_WRITE))

    @rule(i=idx, shared=st.booleans(), nhuge=st.integers(1, 2), first_write=st.booleans(),
          who=st.sampled_from(["parent", "child", "both"]), exit_child=st.booleans())
    def hugetlb_fork(self, i, shared, nhuge, first_write, who, exit_child):
        """hugetlb across fork: private pages shared copy-on-write (then
        copied or reused), shared ones faulted in by the child."""
        tid = self.pick(self.user_tids(), i)
        if tid is None or len(self.user_groups()) >= MAX_GROUPS:
            return
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB
        a = self.call(self.k.mmap, tid, nhuge << 21, 3, flags)
        if a is None:
            return
        self.call(self.k.touch, tid, a, nhuge << 21, first_write)
        child = self.fork_of(tid)
        if child is None:
            return
        for t in {"parent": [tid], "child": [child], "both": [child, tid]}[who]:
            self.call(self.k.touch, t, a, nhuge << 21, True)
        if exit_child:
            self.call(self.k.exit_group, child)

    @rule(nr=st.integers(0, 10))
    def nr_hugepages(self, nr):
        self.k.set_nr_hugepages(nr)

    @rule(i=idx, value=st.integers(0, 6))
    def clear_refs(self, i, value):
        g = self.pick(self.user_groups(), i)
        if g is not None:
            self.call(self.k.clear_refs, g.tgid, value)

    @rule()
    def shrink(self):
        self.k.shrink_deferred_split()

    @rule(size=st.sampled_from([16, 32, 64, 2048]), mode=st.sampled_from(["always", "inherit", "madvise", "never"]))
    def thp_size(self, size, mode):
        self.k.set_thp(size_kb=size, mode=mode)

    # -- scheduling ---------------------------------------------------------------------

    @rule(i=idx, cpu=st.integers(0, 3))
    def run(self, i, cpu):
        tid = self.pick(self.user_tids() + [2], i)
        self.call(self.k.run, tid, cpu % self.k.config.nr_cpus)

    @rule(cpu=st.integers(0, 3))
    def idle(self, cpu):
        self.call(self.k.idle, cpu % self.k.config.nr_cpus)

    @rule(i=idx, mask=st.integers(0, 15))
    def affinity(self, i, mask):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.set_affinity, tid, mask)

    @rule(dt=st.sampled_from([0.01, 0.3, 1.1, 5.0]))
    def advance(self, dt):
        self.k.advance(dt)

    @invariant()
    def consistent(self):
        if hasattr(self, "k"):
            check_world(self.k, self.unmerged_ok)
            check_smaps(self.k)
            check_smaps_swap_hugetlb(self.k)


TestKernelStateMachine = KernelMachine.TestCase
TestKernelStateMachine.settings = settings(max_examples=50, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
