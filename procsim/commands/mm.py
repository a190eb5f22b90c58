"""Commands of memory: mmap and the other mm syscalls, THP and hugetlb knobs, swap, RSS counters,
the OOM killer; queries of VMAs and smaps numbers."""

from __future__ import annotations

import dataclasses
import errno

from procsim.commands.core import ADDR, LENGTH, PID, CommandError, cmd, p, query
from procsim.kernel import MADVISE_NAMES, MREMAP_FIXED, MREMAP_MAYMOVE, Kernel
from procsim.mm import oom, stats
from procsim.mm.counter_tree import NR_MM_COUNTERS, RSS_NAMES
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGETLB,
                            MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED)
from procsim.params import BOOL, INT, KB, PROT, SIZE, STR


def c_mmap(k: Kernel, pid, length, prot, shared, path, offset, addr, fixed, noreplace, growsdown, locked,
           noreserve, writable, hugetlb) -> int:
    """mmap; returns the address. `hugetlb`: MAP_HUGETLB (anonymous only; the
    length is rounded up to 2 MiB and taken from the hugetlb pool, see the
    `hugepages` command). `writable`: a file opened for writing."""
    flags = (MAP_SHARED if shared else MAP_PRIVATE) | (0 if path else MAP_ANONYMOUS)
    flags |= (MAP_FIXED if fixed else 0) | (MAP_FIXED_NOREPLACE if noreplace else 0)
    flags |= (MAP_GROWSDOWN if growsdown else 0) | (MAP_LOCKED if locked else 0)
    flags |= (MAP_NORESERVE if noreserve else 0) | (MAP_HUGETLB if hugetlb else 0)
    return k.mmap(pid, length, prot, flags, addr, path, offset, writable)


def c_mremap(k: Kernel, pid, addr, old_length, new_length, maymove, new_addr) -> int:
    """mremap; `new_addr` implies MREMAP_MAYMOVE|MREMAP_FIXED. Returns the address."""
    flags = MREMAP_MAYMOVE if maymove or new_addr is not None else 0
    flags |= MREMAP_FIXED if new_addr is not None else 0
    return k.mremap(pid, addr, old_length, new_length, flags, new_addr or 0)


def c_madvise(k: Kernel, pid, addr, length, advice) -> None:
    """madvise with a modelled advice (`dontneed`, `pageout`, `hugepage`, ...)."""
    name = advice.lower().removeprefix("madv_")
    if name not in MADVISE_NAMES:
        raise CommandError(errno.EINVAL, f"advice {advice!r} is not modelled ({', '.join(MADVISE_NAMES)})")
    k.madvise(pid, addr, length, MADVISE_NAMES[name])


def c_hugepages(k: Kernel, nr) -> dict:
    """Set vm.nr_hugepages (`nr`, optional) and return the pool as
    /proc/meminfo's HugePages_* lines count it."""
    if nr is not None:
        k.set_nr_hugepages(nr)
    pool = k.mem.hugetlb
    return {"total": pool.nr_huge_pages, "free": pool.free_huge_pages, "rsvd": pool.resv_huge_pages,
            "surp": 0, "size_kb": 2048}


def c_swap(k: Kernel) -> dict:
    """The swap area, in pages (SwapTotal/SwapFree, the swap cache's SwapCached)
    and the pswpin/pswpout counts."""
    sw = k.mem.swap
    return {"total": sw.pages, "free": sw.nr_free, "used": sw.inuse_pages,
            "cached": k.mem.swap_cache.nr_swapcached, "pswpin": sw.pswpin, "pswpout": sw.pswpout}


def c_rss_counters(k: Kernel, pid) -> dict | None:
    """A process's RSS counters (pages): the counter kind and accuracy, and
    per counter the precise and approximate sums and the range [min, max]
    the approximation allows for the precise value. None without an mm."""
    mm = k.group(pid).mm
    if mm is None:
        return None
    r, s = mm.rss, mm.rss.shape
    counters = {}
    for i in range(NR_MM_COUNTERS):
        lo, hi = r.range(i)
        counters[RSS_NAMES[i]] = {"precise": r.precise(i), "approx": r.approx(i), "min": lo, "max": hi}
    return {"kind": s.kind, "nr_cpus": s.nr_cpus, "batch": s.batch, "levels": s.levels,
            "under": s.under, "over": s.over, "counters": counters}


def c_oom_score_adj(k: Kernel, pid, value) -> dict:
    """Set oom_score_adj (as a writer with CAP_SYS_RESOURCE: -1000..1000, it
    also sets the floor for unprivileged writers) and/or read the process's
    oom_score_adj, oom_adj and oom_score."""
    tg = k.group(pid)
    if value is not None:
        if not oom.OOM_SCORE_ADJ_MIN <= value <= oom.OOM_SCORE_ADJ_MAX:
            raise CommandError(errno.EINVAL, f"value: oom_score_adj takes -1000 to 1000, got {value}")
        k.set_oom_score_adj(tg.tgid, value, capable=True)
    return {"oom_score_adj": tg.oom_score_adj, "oom_score_adj_min": tg.oom_score_adj_min,
            "oom_adj": oom.oom_adj_of(tg.oom_score_adj), "oom_score": oom.proc_oom_score(tg, oom.total_pages(k))}


def c_oom(k: Kernel) -> list[dict]:
    """The OOM killer's events (the last 64), oldest first: trigger, task
    dump, candidates with their pass-1 bounds and precise scores, victim."""
    return [ev.as_dict() for ev in k.oom.events]


def c_oom_select(k: Kernel, two_pass) -> dict:
    """Which process the OOM killer would choose now (nothing is killed)."""
    sel = oom.select_bad_process(list(k.groups.values()), oom.total_pages(k), two_pass, record=True)
    return {"victim": sel.chosen.tgid if sel.chosen is not None else None,
            "points": sel.points if sel.chosen is not None else None, "precise_evals": sel.precise_evals,
            "best_lo": sel.best_lo, "candidates": [dataclasses.asdict(c) for c in sel.candidates]}


def c_thp(k: Kernel, enabled, size, mode) -> dict:
    """Set THP knobs (`enabled` top level; `size` in kB or "64k" with `mode`)
    and return them all."""
    if (size is None) != (mode is None):
        raise CommandError(errno.EINVAL, "thp: size and mode go together")
    if enabled is not None or size is not None:
        k.set_thp(enabled, size, mode)
    thp = k.mem.thp
    return {"enabled": thp.enabled, "sizes": {f"{4 << o}kB": m for o, m in sorted(thp.per_order.items())}}


def c_vmas(k: Kernel, pid) -> list[dict]:
    """A process's VMAs: range, perms, flags, path, resident/swap/hugetlb pages."""
    mm = k.group(pid).mm
    if mm is None:
        return []
    return [{"start": v.start, "end": v.end, "perms": v.perms(), "flags": v.flags,
             "path": v.file.d_path() if v.file else v.special, "rss_pages": mm.present_pages(v.start, v.end),
             "swap_pages": mm.swap_entries(v.start, v.end),
             "hugetlb_pages": len(mm.pgtable.hugetlb_in(v.start, v.end)) if v.is_hugetlb else 0}
            for v in mm.vmas]


def c_memory(k: Kernel, pid) -> dict:
    """The model's smaps numbers of a process, in bytes (PSS values already
    divided out of their fixed point): per VMA and the rollup, as
    memory-measuring tools would total them."""
    mm = k.group(pid).mm
    if mm is None:
        return {"vmas": [], "rollup": None}
    users = k.vdso_mapcount

    def as_dict(st: stats.MemSizeStats) -> dict:
        d = dataclasses.asdict(st)
        for name in ("pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem", "swap_pss", "pss_locked"):
            d[name] >>= stats.PSS_SHIFT
        return d

    vmas = [dict(start=v.start, end=v.end, **as_dict(stats.smaps_vma(mm, v, users))) for v in mm.vmas]
    return {"vmas": vmas, "rollup": as_dict(stats.smaps_rollup(mm, users))}


COMMANDS = (
    cmd("mmap", c_mmap, PID, LENGTH, p("prot", PROT, "rw"), p("shared", BOOL, False), p("path", STR, None),
         p("offset", SIZE, 0), p("addr", SIZE, 0), p("fixed", BOOL, False), p("noreplace", BOOL, False),
         p("growsdown", BOOL, False), p("locked", BOOL, False), p("noreserve", BOOL, False),
         p("writable", BOOL, True), p("hugetlb", BOOL, False)),
    cmd("munmap", lambda k, pid, addr, length: k.munmap(pid, addr, length), PID, ADDR, LENGTH, doc="munmap()."),
    cmd("mprotect", lambda k, pid, addr, length, prot: k.mprotect(pid, addr, length, prot), PID, ADDR, LENGTH,
         p("prot", PROT), doc="mprotect()."),
    cmd("mlock", lambda k, pid, addr, length, onfault: k.mlock(pid, addr, length, True, onfault), PID, ADDR,
         LENGTH, p("onfault", BOOL, False), doc="mlock(), or mlock2(MLOCK_ONFAULT) with `onfault`."),
    cmd("munlock", lambda k, pid, addr, length: k.mlock(pid, addr, length, False), PID, ADDR, LENGTH,
         doc="munlock()."),
    cmd("madvise", c_madvise, PID, ADDR, LENGTH, p("advice", STR, "dontneed")),
    cmd("clear_refs", lambda k, pid, value: k.clear_refs(pid, value), PID, p("value", INT),
         doc="Write `value` to /proc/PID/clear_refs (1-5)."),
    query("thp", c_thp, p("enabled", STR, None), p("size", KB, None), p("mode", STR, None),
           setters=("enabled", "size", "mode")),
    query("hugepages", c_hugepages, p("nr", INT, None), setters=("nr",)),
    cmd("shrink", lambda k: k.shrink_deferred_split(), doc="Run the deferred-split shrinker (split queued THPs)."),
    cmd("shrink_swapcache", lambda k: k.shrink_swap_cache(),
         doc="A reclaim pass over the swap cache: free the folios nobody maps; returns frames freed."),
    cmd("brk", lambda k, pid, addr: k.brk(pid, addr), PID, ADDR, doc="brk(); returns the new break."),
    cmd("mremap", c_mremap, PID, ADDR, p("old_length", SIZE), p("new_length", SIZE),
         p("maymove", BOOL, False), p("new_addr", SIZE, None)),
    cmd("touch", lambda k, pid, addr, length, write: k.touch(pid, addr, length, write), PID, ADDR, LENGTH,
         p("write", BOOL, True), doc="Access every page of a range (a write unless `write` is false): faults."),
    query("vmas", c_vmas, PID),
    query("memory", c_memory, PID),
    query("swap", c_swap),
    query("rss_counters", c_rss_counters, PID),
    query("oom_score_adj", c_oom_score_adj, PID, p("value", INT, None), setters=("value",)),
    query("oom", c_oom),
    query("oom_select", c_oom_select, p("two_pass", BOOL, True)),
)
