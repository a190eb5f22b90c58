"""The command vocabulary shared by scenario activity, live control and the
Python client: a name, a kernel call, and argument checking.

Every command validates its arguments before the kernel is touched, and the
kernel validates the world before changing it, so a bad command changes
nothing.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable
from typing import Any

from procsim.bitmap import parse_list
from procsim.kernel import MADVISE_NAMES, MREMAP_FIXED, MREMAP_MAYMOVE, Kernel, KernelError
from procsim.mm import oom, stats
from procsim.mm.counter_tree import NR_MM_COUNTERS, RSS_NAMES
from procsim.mm.memory import OutOfMemory
from procsim.mm.mm import MMError
from procsim.mm.access_log import ranges as vpn_ranges
from procsim.workload import WorkloadError
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGETLB,
                            MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED)


class CommandError(Exception):
    def __init__(self, err: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = err
        self.msg = msg


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool):
        raise CommandError(errno.EINVAL, f"{name}: expected an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            pass
        units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
        s = v.strip().lower().removesuffix("ib").removesuffix("b")
        if s and s[-1] in units:
            try:
                return int(float(s[:-1]) * units[s[-1]])
            except ValueError:
                pass
    raise CommandError(errno.EINVAL, f"{name}: expected an integer, got {v!r}")


def _prot(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        if v in ("none", "---", ""):
            return 0
        bits = {"r": 1, "w": 2, "x": 4, "-": 0}
        if all(c in bits for c in v):
            return sum(bits[c] for c in set(v))
    raise CommandError(errno.EINVAL, f"prot: expected 'rwx' letters or an integer, got {v!r}")


def _str_list(v: Any, name: str) -> list[str]:
    if isinstance(v, str):
        return v.split()
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    raise CommandError(errno.EINVAL, f"{name}: expected a list of strings")


def _bool(v: Any, name: str) -> bool:
    """A flag: a boolean, 0 or 1 (not any truthy value: "no" is no yes)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise CommandError(errno.EINVAL, f"{name}: expected true or false, got {v!r}")


def _str(v: Any, name: str) -> str | None:
    """An optional text argument (a comm, a path, a state letter)."""
    if v is None or isinstance(v, str):
        return v
    raise CommandError(errno.EINVAL, f"{name}: expected a string, got {v!r}")


def _cpus(v: Any, k: Kernel) -> int:
    if isinstance(v, list):
        v = ",".join(str(_int(x, "cpus")) for x in v)
    try:
        return parse_list(str(v), k.config.nr_cpus)
    except ValueError as e:
        raise CommandError(errno.EINVAL, f"cpus: {e}") from None


def c_spawn(k: Kernel, argv, parent=1, uid=None, gid=None, pid=None, exe=None, env=None) -> int:
    return k.spawn(_str_list(argv, "argv"), parent=_int(parent, "parent"),
                   uid=None if uid is None else _int(uid, "uid"), gid=None if gid is None else _int(gid, "gid"),
                   pid=None if pid is None else _int(pid, "pid"), exe=_str(exe, "exe"),
                   env=None if env is None else _str_list(env, "env"))


def c_exec(k: Kernel, pid, path, argv=None, env=None, layout=None, build_ids=None) -> None:
    """exec; `layout`: the text of a real /proc/PID/maps to replay exactly
    (procsim/layout.py), `build_ids`: {name: hex} for its files."""
    k.exec(_int(pid, "pid"), _str(path, "path") or "", _str_list(argv or [path], "argv"),
           None if env is None else _str_list(env, "env"), _str(layout, "layout"), _str_dict(build_ids, "build_ids"))


def _str_dict(v: Any, name: str) -> dict[str, str] | None:
    if v is None:
        return None
    if isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
        return v
    raise CommandError(errno.EINVAL, f"{name}: expected an object of strings")


def c_mmap(k: Kernel, pid, length, prot="rw", shared=False, path=None, offset=0, addr=0,
           fixed=False, noreplace=False, growsdown=False, locked=False, noreserve=False,
           writable=True, hugetlb=False) -> int:
    """mmap; `hugetlb`: MAP_HUGETLB (anonymous only; the length is rounded
    up to 2 MiB and taken from the hugetlb pool, see the `hugepages` command)."""
    flags = (MAP_SHARED if shared else MAP_PRIVATE) | (0 if path else MAP_ANONYMOUS)
    flags |= (MAP_FIXED if fixed else 0) | (MAP_FIXED_NOREPLACE if noreplace else 0)
    flags |= (MAP_GROWSDOWN if growsdown else 0) | (MAP_LOCKED if locked else 0)
    flags |= MAP_NORESERVE if noreserve else 0
    flags |= MAP_HUGETLB if _bool(hugetlb, "hugetlb") else 0
    return k.mmap(_int(pid, "pid"), _int(length, "length"), _prot(prot), flags, _int(addr, "addr"),
                  _str(path, "path"), _int(offset, "offset"), bool(writable))


def c_mremap(k: Kernel, pid, addr, old_length, new_length, maymove=False, new_addr=None) -> int:
    flags = MREMAP_MAYMOVE if maymove or new_addr is not None else 0
    flags |= MREMAP_FIXED if new_addr is not None else 0
    return k.mremap(_int(pid, "pid"), _int(addr, "addr"), _int(old_length, "old_length"),
                    _int(new_length, "new_length"), flags, _int(new_addr or 0, "new_addr"))


def c_madvise(k: Kernel, pid, addr, length, advice="dontneed") -> None:
    name = str(advice).lower().removeprefix("madv_")
    if name not in MADVISE_NAMES:
        raise CommandError(errno.EINVAL, f"advice {advice!r} is not modelled ({', '.join(MADVISE_NAMES)})")
    k.madvise(_int(pid, "pid"), _int(addr, "addr"), _int(length, "length"), MADVISE_NAMES[name])


def c_hugepages(k: Kernel, nr=None) -> dict:
    """Set vm.nr_hugepages (`nr`, optional) and return the pool as
    /proc/meminfo's HugePages_* lines count it."""
    if nr is not None:
        k.set_nr_hugepages(_int(nr, "nr"))
    pool = k.mem.hugetlb
    return {"total": pool.nr_huge_pages, "free": pool.free_huge_pages, "rsvd": pool.resv_huge_pages,
            "surp": 0, "size_kb": 2048}


def c_swap(k: Kernel) -> dict:
    """The swap area, in pages (SwapTotal/SwapFree) and the pswpin/pswpout counts."""
    sw = k.mem.swap
    return {"total": sw.pages, "free": sw.nr_free, "used": sw.inuse_pages,
            "pswpin": sw.pswpin, "pswpout": sw.pswpout}


def c_rss_counters(k: Kernel, pid) -> dict | None:
    """A process's RSS counters (pages): the counter kind and accuracy, and
    per counter the precise and approximate sums and the range [min, max]
    the approximation allows for the precise value. None without an mm."""
    mm = k.group(_int(pid, "pid")).mm
    if mm is None:
        return None
    r, s = mm.rss, mm.rss.shape
    counters = {}
    for i in range(NR_MM_COUNTERS):
        lo, hi = r.range(i)
        counters[RSS_NAMES[i]] = {"precise": r.precise(i), "approx": r.approx(i), "min": lo, "max": hi}
    return {"kind": s.kind, "nr_cpus": s.nr_cpus, "batch": s.batch, "levels": s.levels,
            "under": s.under, "over": s.over, "counters": counters}


def c_oom_score_adj(k: Kernel, pid, value=None) -> dict:
    """Set oom_score_adj (as a writer with CAP_SYS_RESOURCE: -1000..1000, it
    also sets the floor for unprivileged writers) and/or read the process's
    oom_score_adj, oom_adj and oom_score."""
    tg = k.group(_int(pid, "pid"))
    if value is not None:
        v = _int(value, "value")
        if not oom.OOM_SCORE_ADJ_MIN <= v <= oom.OOM_SCORE_ADJ_MAX:
            raise CommandError(errno.EINVAL, f"value: oom_score_adj takes -1000 to 1000, got {v}")
        oom.set_oom_adj(tg, v, capable=True, legacy=False)
        k._changed("oom_score_adj", pid=tg.tgid)
    return {"oom_score_adj": tg.oom_score_adj, "oom_score_adj_min": tg.oom_score_adj_min,
            "oom_adj": oom.oom_adj_of(tg.oom_score_adj), "oom_score": oom.proc_oom_score(tg, oom.total_pages(k))}


def c_oom(k: Kernel) -> list[dict]:
    """The OOM killer's events (the last 64), oldest first: trigger, task
    dump, candidates with their pass-1 bounds and precise scores, victim."""
    return [ev.as_dict() for ev in k.oom.events]


def c_oom_select(k: Kernel, two_pass=True) -> dict:
    """Which process the OOM killer would choose now (nothing is killed)."""
    sel = oom.select_bad_process(list(k.groups.values()), oom.total_pages(k), _bool(two_pass, "two_pass"),
                                 record=True)
    return {"victim": sel.chosen.tgid if sel.chosen is not None else None,
            "points": sel.points if sel.chosen is not None else None, "precise_evals": sel.precise_evals,
            "best_lo": sel.best_lo, "candidates": [dataclasses.asdict(c) for c in sel.candidates]}


def c_thp(k: Kernel, enabled=None, size=None, mode=None) -> dict:
    """Set THP knobs (`enabled` top level; `size` in kB or "64k" with `mode`)
    and return them all."""
    if (size is None) != (mode is None):
        raise CommandError(errno.EINVAL, "thp: size and mode go together")
    kb = None if size is None else _int(size, "size") // (1024 if isinstance(size, str) and not str(size).isdigit() else 1)
    k.set_thp(enabled, kb, mode)
    thp = k.mem.thp
    return {"enabled": thp.enabled, "sizes": {f"{4 << o}kB": m for o, m in sorted(thp.per_order.items())}}


# Activity runs event by event (a busy scenario costs a few ms per simulated
# second), and the daemon serves nothing while it does: one command may move
# the clock at most an hour, so a typo cannot wedge the mount for days.
MAX_ADVANCE_S = 3600.0


def c_advance(k: Kernel, seconds) -> None:
    s = float(seconds)
    if not 0 <= s <= MAX_ADVANCE_S:  # also NaN
        raise CommandError(errno.EINVAL, f"seconds: expected 0 to {MAX_ADVANCE_S:g}, got {seconds!r}")
    k.advance(s)


def c_ps(k: Kernel) -> list[dict]:
    out = []
    for tg in k.thread_groups():
        out.append({"pid": tg.tgid, "ppid": tg.parent.tgid if tg.parent else 0, "comm": tg.leader.comm,
                    "uid": tg.cred.euid, "state": tg.leader.state, "zombie": tg.zombie,
                    "threads": [t.pid for t in tg.threads], "cmdline": tg.cmdline,
                    "rss_pages": tg.mm.rss_pages if tg.mm else 0, "kthread": tg.mm is None and not tg.zombie})
    return out


def c_vmas(k: Kernel, pid) -> list[dict]:
    mm = k.group(_int(pid, "pid")).mm
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
    mm = k.group(_int(pid, "pid")).mm
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


def c_status(k: Kernel, pid) -> dict:
    t = k.task(_int(pid, "pid"))
    mm = t.mm
    return {"pid": t.pid, "tgid": t.tgid, "comm": t.comm, "state": t.state, "cpu": t.cpu,
            "on_cpu": t.on_cpu, "cpus_allowed": t.cpus_allowed,
            "mm_cpumask": mm.cpumask if mm else None,
            "rss": list(mm.rss) if mm else None, "total_vm": mm.total_vm if mm else 0,
            "hugetlb_pages": mm.hugetlb_usage if mm else 0, "min_flt": t.min_flt, "maj_flt": t.maj_flt,
            "utime": t.utime, "stime": t.stime, "start_time": t.start_time}  # ns


def c_cpus(k: Kernel) -> list[dict]:
    return [{"cpu": c.id, "curr": c.curr.pid if c.curr else None,
             "loaded_mm_pid": next((g.tgid for g in k.groups.values() if g.mm is c.loaded_mm and c.loaded_mm), None),
             "lazy": c.is_lazy, "tlb": c.irq_tlb_count} for c in k.sched.cpus]


# -- workloads and their ground truth (procsim/workload.py, procsim/mm/access_log.py) --

def _wl_args(**given: Any) -> dict:
    """The workload parameters given (None: not given); sizes and names stay
    as they are for procsim.workload to check."""
    return {key: v for key, v in given.items() if v is not None}


def _wl(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except WorkloadError as e:
        raise CommandError(e.errno, e.msg) from None


def c_workload_start(k: Kernel, pid, pattern, rate=None, write=None, addr=None, length=None, vmas=None,
                     seed=None, tick=None, hot=None, hot_prob=None, hot_offset=None, exponent=None,
                     offset=None, phases=None, repeat=None) -> int:
    """Start an access pattern on task `pid` (procsim/workload.py); returns its id.
    Its address space is tracked from now on (see `wss_truth`)."""
    spec = _wl_args(pattern=pattern, rate=rate, write=write, addr=addr, length=length, vmas=vmas, seed=seed,
                    tick=tick, hot=hot, hot_prob=hot_prob, hot_offset=hot_offset, exponent=exponent,
                    offset=offset, phases=phases, repeat=repeat)
    return _wl(lambda: k.workloads.start(_int(pid, "pid"), **spec))


def c_workload_change(k: Kernel, id, pattern=None, rate=None, write=None, addr=None, length=None, vmas=None,
                      tick=None, hot=None, hot_prob=None, hot_offset=None, exponent=None, offset=None,
                      phases=None, repeat=None) -> None:
    """Change a running workload from now on: the parameters given replace its own."""
    spec = _wl_args(pattern=pattern, rate=rate, write=write, addr=addr, length=length, vmas=vmas, tick=tick,
                    hot=hot, hot_prob=hot_prob, hot_offset=hot_offset, exponent=exponent, offset=offset,
                    phases=phases, repeat=repeat)
    _wl(lambda: k.workloads.change(_int(id, "id"), **spec))


def c_workload_stop(k: Kernel, id) -> dict:
    """Stop a workload; returns its final state and counts."""
    return _wl(lambda: k.workloads.stop(_int(id, "id")))


def c_workloads(k: Kernel, pid=None) -> list[dict]:
    """Every workload (of `pid` if given): parameters, state, counts."""
    return k.workloads.list(None if pid is None else _int(pid, "pid"))


def c_track(k: Kernel, pid) -> float:
    """Record which pages pid touches from now on; returns now (seconds)."""
    k.track(_int(pid, "pid"))
    return k.now / 1e9


def _seconds(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise CommandError(errno.EINVAL, f"{name}: expected seconds, got {v!r}")
    try:
        s = float(v)
    except ValueError:
        raise CommandError(errno.EINVAL, f"{name}: expected seconds, got {v!r}") from None
    if not 0 <= s < 1e9:  # also NaN and inf
        raise CommandError(errno.EINVAL, f"{name}: expected seconds since boot, got {v!r}")
    return s


def c_wss_truth(k: Kernel, pid, since, until=None, ranges=False) -> dict:
    """The ground truth: how many pages pid touched in [since, until)
    (seconds since boot, as `now` gives them; until omitted: up to now),
    and with `ranges` the [start, end) address runs of those pages."""
    since_s = _seconds(since, "since")
    until_s = None if until is None else _seconds(until, "until")
    want = _bool(ranges, "ranges")
    pid = _int(pid, "pid")
    vpns = k.wss_truth(pid, since_s, until_s)
    out = {"pid": pid, "since": since_s, "until": until_s, "now": k.now / 1e9,
           "pages": len(vpns), "bytes": len(vpns) << 12}
    if want:
        out["ranges"] = vpn_ranges(vpns)
    return out


def c_clock(k: Kernel) -> dict:
    """The clock: its mode (`manual`: moves only by `advance`; `wall`:
    follows real time) and now, in seconds since boot."""
    return {"mode": k.config.clock, "now": k.now / 1e9}


COMMANDS: dict[str, Callable[..., Any]] = {
    "spawn": c_spawn,
    "fork": lambda k, pid, child=None: k.fork(_int(pid, "pid"), None if child is None else _int(child, "child")),
    "clone": lambda k, pid, comm=None, tid=None: k.clone_thread(_int(pid, "pid"), _str(comm, "comm"),
                                                                 None if tid is None else _int(tid, "tid")),
    "exec": c_exec,
    "exit": lambda k, pid, code=0: k.exit(_int(pid, "pid"), _int(code, "code")),
    "exit_group": lambda k, pid, code=0: k.exit_group(_int(pid, "pid"), _int(code, "code")),
    "kill": lambda k, pid, sig=9: k.kill(_int(pid, "pid"), _int(sig, "sig")),
    "wait": lambda k, pid, child=None: k.wait(_int(pid, "pid"), None if child is None else _int(child, "child")),
    "setuid": lambda k, pid, uid, gid=None: k.set_cred(_int(pid, "pid"), _int(uid, "uid"),
                                                      _int(uid if gid is None else gid, "gid")),
    "mmap": c_mmap,
    "munmap": lambda k, pid, addr, length: k.munmap(_int(pid, "pid"), _int(addr, "addr"), _int(length, "length")),
    "mprotect": lambda k, pid, addr, length, prot: k.mprotect(_int(pid, "pid"), _int(addr, "addr"),
                                                             _int(length, "length"), _prot(prot)),
    "mlock": lambda k, pid, addr, length, onfault=False: k.mlock(_int(pid, "pid"), _int(addr, "addr"),
                                                                _int(length, "length"), True, bool(onfault)),
    "munlock": lambda k, pid, addr, length: k.mlock(_int(pid, "pid"), _int(addr, "addr"),
                                                   _int(length, "length"), False),
    "madvise": c_madvise,
    "clear_refs": lambda k, pid, value: k.clear_refs(_int(pid, "pid"), _int(value, "value")),
    "thp": c_thp,
    "hugepages": c_hugepages,
    "shrink": lambda k: k.shrink_deferred_split(),
    "brk": lambda k, pid, addr: k.brk(_int(pid, "pid"), _int(addr, "addr")),
    "mremap": c_mremap,
    "touch": lambda k, pid, addr, length, write=True: k.touch(_int(pid, "pid"), _int(addr, "addr"),
                                                             _int(length, "length"), bool(write)),
    "run": lambda k, tid, cpu, preempt=False: k.run(_int(tid, "tid"), _int(cpu, "cpu"), bool(preempt)),
    "migrate": lambda k, tid, cpu: k.run(_int(tid, "tid"), _int(cpu, "cpu"), True),
    "sleep": lambda k, tid, state="S": k.sleep(_int(tid, "tid"), _str(state, "state")),
    "wake": lambda k, tid: k.wake(_int(tid, "tid")),
    "idle": lambda k, cpu: k.idle(_int(cpu, "cpu")),
    "affinity": lambda k, tid, cpus: k.set_affinity(_int(tid, "tid"), _cpus(cpus, k)),
    "nice": lambda k, tid, nice: k.set_nice(_int(tid, "tid"), _int(nice, "nice")),
    "advance": c_advance,
    "workload_start": c_workload_start,
    "workload_change": c_workload_change,
    "workload_stop": c_workload_stop,
    "track": c_track,
    # queries
    "ps": c_ps,
    "vmas": c_vmas,
    "memory": c_memory,
    "task": c_status,
    "cpus": c_cpus,
    "swap": c_swap,
    "rss_counters": c_rss_counters,
    "oom_score_adj": c_oom_score_adj,
    "oom": c_oom,
    "oom_select": c_oom_select,
    "now": lambda k: k.now / 1e9,
    "clock": c_clock,
    "workloads": c_workloads,
    "wss_truth": c_wss_truth,
}


def execute(k: Kernel, op: str, args: dict[str, Any]) -> Any:
    """Run one command; every failure is a CommandError with the kernel's errno."""
    fn = COMMANDS.get(op)
    if fn is None:
        raise CommandError(errno.EINVAL, f"unknown command {op!r} (known: {', '.join(sorted(COMMANDS))})")
    with k.lock:
        try:
            try:
                return fn(k, **args)
            except BaseException:
                # a command that failed half-way (out of memory mid-touch) may
                # have changed something: renderers' caches must not trust it
                k.generation += 1
                raise
        except TypeError as e:
            raise CommandError(errno.EINVAL, f"{op}: {e}") from None
        except (KernelError, MMError) as e:
            raise CommandError(e.errno, f"{op}: {e.strerror}") from None
        except OutOfMemory as e:
            raise CommandError(errno.ENOMEM, f"{op}: {e}") from None
        except (ValueError, OverflowError) as e:
            raise CommandError(errno.EINVAL, f"{op}: {e}") from None
