"""The command vocabulary shared by scenario activity, live control and the
Python client: a table of commands, each a name, typed parameters
(procsim/params.py) and a kernel call.

Every command's arguments are parsed by the table before the kernel is
touched (unknown, missing and ill-typed parameters are EINVAL, named), and
the kernel validates the world before changing it, so a bad command changes
nothing. A query (marked in the table) only reads: it runs under the kernel
lock and leaves `generation`, and so every render cache, as it was; any
other command runs as a Kernel.syscall, whose kernel calls record what
they change.
"""

from __future__ import annotations

import dataclasses
import errno
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from procsim import nsproxy
from procsim.bitmap import parse_list
from procsim import sched_syscalls
from procsim.kernel import MADVISE_NAMES, MREMAP_FIXED, MREMAP_MAYMOVE, Kernel, KernelError
from procsim.mm import oom, stats
from procsim.mm.counter_tree import NR_MM_COUNTERS, RSS_NAMES
from procsim.mm.page_alloc import OutOfMemory
from procsim.mm.mm import MMError
from procsim import resource
from procsim.fs import file as F
from procsim.fs.syscalls import CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME, EFD_SEMAPHORE
from procsim.params import (BOOL, CPULIST, INT, KB, OPEN_FLAGS, PROT, RAW, REQUIRED, RLIM, SECONDS, SIZE, STR,
                            STR_MAP, STRS, Param, ParamError, Type)
from procsim.mm.access_log import ranges as vpn_ranges
from procsim.workload import WorkloadError
from procsim.workload_io import IO_KEYS
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGETLB,
                            MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED)


class CommandError(Exception):
    def __init__(self, err: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = err
        self.msg = msg


def _cpus(v: str, k: Kernel) -> int:
    try:
        return parse_list(v, k.config.nr_cpus)
    except ValueError as e:
        raise CommandError(errno.EINVAL, f"cpus: {e}") from None


def c_spawn(k: Kernel, argv, parent, uid, gid, pid, exe, env) -> int:
    """Start a process: fork `parent` and exec `argv` (`exe`: the program's
    path when it is not argv[0]); returns its pid. uid/gid default to the
    parent's."""
    return k.spawn(argv, parent=parent, uid=uid, gid=gid, pid=pid, exe=exe, env=env)


def c_exec(k: Kernel, pid, path, argv, env, layout, build_ids) -> None:
    """exec; `layout`: the text of a real /proc/PID/maps to replay exactly
    (procsim/layout.py), `build_ids`: {name: hex} for its files."""
    k.exec(pid, path, argv if argv is not None else [path], env, layout, build_ids)


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


def _rlim_json(v: int) -> int | str:
    return "unlimited" if v == resource.RLIM_INFINITY else v


def c_prlimit(k: Kernel, pid, resource_, soft, hard, privileged=False) -> dict:
    """prlimit(2) by process `pid` on itself: with `soft` and/or `hard` (a
    number or "unlimited"; the one not given keeps its value) set the limit
    `resource` (prlimit(1)'s names: nofile, as, data, memlock, nproc, ...),
    as the process may (a raised hard limit needs root; soft above hard is
    EINVAL); `privileged`: as root with CAP_SYS_RESOURCE does it (prlimit
    --pid by an administrator). Returns the limit as it is now and as it
    was; without `resource`, every limit."""
    tg = k.group(pid)
    if resource_ is None:
        if soft is not None or hard is not None:
            raise CommandError(errno.EINVAL, "prlimit: soft and hard need a resource")
        return {name: {"soft": _rlim_json(r.cur), "hard": _rlim_json(r.max)}
                for name, r in zip(resource.NAMES, tg.rlim)}
    try:
        res = resource.resource_index(resource_)
    except ValueError as e:
        raise CommandError(errno.EINVAL, f"prlimit: resource: {e}") from None
    old = tg.rlim[res]
    new = None
    if soft is not None or hard is not None:
        new = resource.Rlimit(old.cur if soft is None else soft, old.max if hard is None else hard)
    k.prlimit(pid, res, new, True if privileged else None)
    now = k.group(pid).rlim[res]
    return {"resource": resource_, "soft": _rlim_json(now.cur), "hard": _rlim_json(now.max),
            "old_soft": _rlim_json(old.cur), "old_hard": _rlim_json(old.max)}


def _path_or_fd(op: str, path: str | None, fd: int | None) -> bool:
    if (path is None) == (fd is None):
        raise CommandError(errno.EINVAL, f"{op}: give path or fd (one of them)")
    return True


def c_io(k: Kernel, pid, read, write, path, offset, thread) -> dict:
    """File I/O by task `pid` on `path` (pread of `read` bytes, then pwrite
    of `write` bytes, at `offset`); returns the task's /proc/PID/io
    counters (`thread`: the thread's own, task/TID/io)."""
    if read:
        k.read(pid, path, read, offset)
    if write:
        k.write(pid, path, write, offset)
    return k.io_accounting(pid, whole=not thread)


def c_sleep(k: Kernel, tid, state, wait) -> None:
    """Put a task to sleep (`state` S, D, T, I); `wait`: the blocking call
    it sleeps in (wchan, stack and syscall show it; omitted: the one it had,
    or its program's usual one)."""
    k.sleep(tid, state, wait)


def c_sched_setscheduler(k: Kernel, tid, policy, priority) -> dict:
    """sched_setscheduler() by the task itself: `policy` a number or
    other/batch/idle/fifo/rr (EINVAL for another, for a priority outside
    1-99 with fifo/rr or not 0 otherwise; EPERM for RT without root or
    RLIMIT_RTPRIO). Returns policy, rt_priority, nice and prio."""
    if isinstance(policy, bool) or not isinstance(policy, (int, str)):
        raise CommandError(errno.EINVAL, f"policy: expected a number or a name, got {policy!r}")
    if isinstance(policy, str):
        name = policy.lower().removeprefix("sched_")
        if name.lstrip("-").isdigit():
            policy = int(name)
        elif name in sched_syscalls.POLICY_NAMES:
            policy = sched_syscalls.POLICY_NAMES[name]
        else:
            raise CommandError(errno.EINVAL, f"policy: {policy!r} is no scheduling policy")
    sched_syscalls.sched_setscheduler(k, tid, policy, priority)
    t = k.task(tid)
    return {"policy": t.policy, "rt_priority": t.rt_priority, "nice": t.nice, "prio": t.prio}


# Activity runs event by event (a busy scenario costs a few ms per simulated
# second), and the daemon serves nothing while it does: one command may move
# the clock at most an hour, so a typo cannot wedge the mount for days.
MAX_ADVANCE_S = 3600.0


def c_advance(k: Kernel, seconds) -> None:
    """Move the clock forward (manual clock): activity and workloads run."""
    if seconds > MAX_ADVANCE_S:
        raise CommandError(errno.EINVAL, f"seconds: expected 0 to {MAX_ADVANCE_S:g}, got {seconds!r}")
    k.advance(seconds)


def c_ps(k: Kernel) -> list[dict]:
    """Every thread group: pid, ppid, comm, uid, state, threads, cmdline, RSS pages."""
    out = []
    for tg in k.thread_groups():
        out.append({"pid": tg.tgid, "ppid": tg.parent.tgid if tg.parent else 0, "comm": tg.leader.comm,
                    "uid": tg.cred.euid, "state": tg.leader.state, "zombie": tg.zombie,
                    "threads": [t.pid for t in tg.threads], "cmdline": tg.cmdline,
                    "rss_pages": tg.mm.rss_pages if tg.mm else 0, "kthread": tg.mm is None and not tg.zombie})
    return out


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


def c_status(k: Kernel, pid) -> dict:
    """One task: scheduling state, cpumasks, RSS counters, faults; utime,
    stime and start_time in nanoseconds."""
    t = k.task(pid)
    mm = t.mm
    return {"pid": t.pid, "tgid": t.tgid, "comm": t.comm, "state": t.state, "cpu": t.cpu,
            "on_cpu": t.on_cpu, "cpus_allowed": t.cpus_allowed,
            "mm_cpumask": mm.cpumask if mm else None,
            "rss": list(mm.rss) if mm else None, "total_vm": mm.total_vm if mm else 0,
            "hugetlb_pages": mm.hugetlb_usage if mm else 0, "min_flt": t.min_flt, "maj_flt": t.maj_flt,
            "utime": t.utime, "stime": t.stime, "start_time": t.start_time,  # ns
            "nvcsw": t.nvcsw, "nivcsw": t.nivcsw, "policy": t.policy, "rt_priority": t.rt_priority,
            "nice": t.nice, "nr_migrations": t.se.nr_migrations, "run_delay": t.se.run_delay,
            "pcount": t.se.pcount, "vruntime": t.se.vruntime}


def c_cpus(k: Kernel) -> list[dict]:
    """Every CPU: the running task, the loaded mm's owner, lazy TLB, TLB IPIs."""
    return [{"cpu": c.id, "curr": c.curr.pid if c.curr else None,
             "loaded_mm_pid": next((g.tgid for g in k.groups.values() if g.mm is c.loaded_mm and c.loaded_mm), None),
             "lazy": c.is_lazy, "tlb": c.irq_tlb_count} for c in k.sched.cpus]


# -- workloads and their ground truth (procsim/workload.py, procsim/mm/access_log.py) --

def _wl(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except WorkloadError as e:
        raise CommandError(e.errno, e.msg) from None


def _given(**spec: Any) -> dict:
    """The workload parameters given (None: not given), for procsim.workload to check."""
    return {key: v for key, v in spec.items() if v is not None}


def c_workload_start(k: Kernel, pid, **spec: Any) -> int:
    """Start an access pattern on task `pid` (procsim/workload.py); returns its id.
    Its address space is tracked from now on (see `wss_truth`)."""
    return _wl(lambda: k.workloads.start(pid, **_given(**spec)))


def c_workload_change(k: Kernel, id, **spec: Any) -> None:
    """Change a running workload from now on: the parameters given replace its own."""
    _wl(lambda: k.workloads.change(id, **_given(**spec)))


def c_workload_stop(k: Kernel, id) -> dict:
    """Stop a workload; returns its final state and counts."""
    return _wl(lambda: k.workloads.stop(id))


def c_workloads(k: Kernel, pid) -> list[dict]:
    """Every workload (of `pid` if given): parameters, state, counts."""
    return k.workloads.list(pid)


def c_track(k: Kernel, pid) -> float:
    """Record which pages pid touches from now on; returns now (seconds)."""
    k.track(pid)
    return k.now / 1e9


MAX_SECONDS = 1e9  # since boot: far beyond any clock the daemon reaches


def c_wss_truth(k: Kernel, pid, since, until, ranges) -> dict:
    """The ground truth: how many pages pid touched in [since, until)
    (seconds since boot, as `now` gives them; until omitted: up to now),
    and with `ranges` the [start, end) address runs of those pages."""
    for name, s in (("since", since), ("until", until)):
        if s is not None and s >= MAX_SECONDS:
            raise CommandError(errno.EINVAL, f"{name}: expected seconds since boot, got {s!r}")
    vpns = k.wss_truth(pid, since, until)
    out = {"pid": pid, "since": since, "until": until, "now": k.now / 1e9,
           "pages": len(vpns), "bytes": len(vpns) << 12}
    if ranges:
        out["ranges"] = vpn_ranges(vpns)
    return out


def c_clock(k: Kernel) -> dict:
    """The clock: its mode (`manual`: moves only by `advance`; `wall`:
    follows real time) and now, in seconds since boot."""
    return {"mode": k.config.clock, "now": k.now / 1e9}


# -- files (procsim/fs/) --------------------------------------------------------------------


def _fl(cloexec: bool, nonblock: bool = False) -> int:
    return (F.O_CLOEXEC if cloexec else 0) | (F.O_NONBLOCK if nonblock else 0)


def c_socket(k: Kernel, pid, family, cloexec, nonblock) -> int:
    """socket(): a socket inode (`socket:[ino]`) of `family` (unix, inet,
    inet6, netlink); its protocol state belongs to the network model. Returns the fd."""
    if family not in F.FAMILIES:
        raise CommandError(errno.EAFNOSUPPORT, f"family: one of {', '.join(F.FAMILIES)}, got {family!r}")
    return k.socket(pid, F.FAMILIES[family], _fl(cloexec, nonblock))


_EPOLL_OPS = {"add": 1, "del": 2, "mod": 3}
_CLOCKS = {"realtime": CLOCK_REALTIME, "monotonic": CLOCK_MONOTONIC, "boottime": CLOCK_BOOTTIME}


def c_epoll_ctl(k: Kernel, pid, epfd, op, fd, events, data) -> None:
    """epoll_ctl(): `op` add, mod or del of `fd` in `epfd`'s interest list
    (`events`: EPOLLIN = 1, EPOLLOUT = 4 ...; `data`: defaults to the fd)."""
    if op not in _EPOLL_OPS:
        raise CommandError(errno.EINVAL, f"op: add, mod or del, got {op!r}")
    k.epoll_ctl(pid, epfd, _EPOLL_OPS[op], fd, events, data)


def c_timerfd(k: Kernel, pid, clock, value, interval, cloexec, nonblock) -> int:
    """timerfd_create() on `clock` (monotonic, realtime, boottime), armed to
    expire in `value` seconds and every `interval` after (0: disarmed). Returns the fd."""
    if clock not in _CLOCKS:
        raise CommandError(errno.EINVAL, f"clock: one of {', '.join(_CLOCKS)}, got {clock!r}")
    with k.lock:
        k.task(pid)
        fd = k.timerfd_create(pid, _CLOCKS[clock], _fl(cloexec, nonblock))
        if value:
            k.timerfd_settime(pid, fd, int(value * 1e9), int(interval * 1e9))
        return fd


def c_lseek(k: Kernel, pid, fd, offset, whence) -> int:
    """lseek(): `whence` set, cur or end; returns the new position."""
    w = {"set": 0, "cur": 1, "end": 2}.get(whence)
    if w is None:
        raise CommandError(errno.EINVAL, f"whence: set, cur or end, got {whence!r}")
    return k.lseek(pid, fd, offset, w)


def c_fds(k: Kernel, pid) -> list[dict]:
    """A process's open fds: kind, what fd/N links to, flags (as fdinfo,
    with O_CLOEXEC), position, mnt_id, inode number."""
    t = k.task(pid)
    files = t.files
    if files is None:
        return []
    return [{"fd": fd, "kind": f.kind, "path": f.d_path(), "cloexec": files.cloexec(fd),
             "flags": f.f_flags | (F.O_CLOEXEC if files.cloexec(fd) else 0), "pos": f.f_pos,
             "mnt_id": f.mnt.mnt_id, "ino": f.ino} for fd, f in files.items()]


def c_mounts(k: Kernel, pid) -> list[dict]:
    """The mount table of `pid`'s mount namespace, in mount order."""
    return [{"mnt_id": m.mnt_id, "parent_id": m.parent_id, "dev": f"{m.dev[0]}:{m.dev[1]}", "root": m.root,
             "mountpoint": m.mountpoint, "opts": m.opts, "fstype": m.fstype, "source": m.source,
             "super_opts": m.super_opts} for m in k.mnt_ns(k.task(pid)).mounts]


def _clone_flags(flags: str | None) -> int:
    if flags is None:
        return 0
    try:
        return nsproxy.parse_flags(flags)
    except ValueError as e:
        raise CommandError(errno.EINVAL, f"flags: {e}") from None


def c_unshare(k: Kernel, pid, flags) -> None:
    """unshare(2) by `pid`: `flags` "CLONE_NEWPID|CLONE_NEWNS" (or short
    names pid, mnt, uts, ipc, net, cgroup, time, user, or a number). EINVAL
    for an unknown flag, EPERM for anything but a user namespace without
    root (euid 0), ESRCH for an exited process. CLONE_NEWPID and
    CLONE_NEWTIME take effect for its children only."""
    k.unshare(pid, _clone_flags(flags))


def c_namespaces(k: Kernel, pid) -> dict:
    """`pid`'s namespaces: {kind: inode number}, and its pid at each level."""
    t = k.task(pid)
    if t.nsproxy is None:
        raise CommandError(errno.ESRCH, f"{pid} has exited")
    n = t.nsproxy
    out = {kind: getattr(n, kind).inum for kind in ("cgroup", "ipc", "mnt", "net", "uts")}
    out.update(pid=nsproxy.task_pid_ns(k, t).inum, pid_for_children=n.pid_for_children.inum,
               time=n.time_ns.inum, time_for_children=n.time_for_children.inum,
               user=nsproxy.user_ns(k, t).inum, nspid=nsproxy.pid_nrs(k, t.pid, nsproxy.task_pid_ns(k, t)))
    return out


def c_cgroups(k: Kernel) -> dict:
    """The cgroup hierarchy: {path: [member tgids]}."""
    return {p: sorted(cg.procs) for p, cg in sorted(k.cgroups.cgroups.items())}


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    call: Callable[..., Any]  # (kernel, **parsed parameters)
    params: tuple[Param, ...]
    doc: str
    # A query reads the kernel and changes nothing: it runs under the lock
    # alone and leaves `generation` (and so every render cache) as it was.
    # `setters`: the parameters that make a query a change when given
    # (hugepages nr=, oom_score_adj value=, thp's knobs).
    query: bool = False
    setters: tuple[str, ...] = ()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def is_query(self, parsed: dict[str, Any]) -> bool:
        """Whether this call of the command (its parsed parameters) only reads."""
        return self.query and all(parsed.get(n) is None for n in self.setters)


def _cmd(name: str, call: Callable[..., Any], *params: Param, doc: str | None = None) -> Command:
    return Command(name, call, params, doc or inspect.getdoc(call) or "")


def _query(name: str, call: Callable[..., Any], *params: Param, doc: str | None = None,
           setters: tuple[str, ...] = ()) -> Command:
    return Command(name, call, params, doc or inspect.getdoc(call) or "", query=True, setters=setters)


def _p(name: str, type_: Type, default: Any = REQUIRED) -> Param:
    return Param(name, type_, default)


PID, TID = _p("pid", INT), _p("tid", INT)
FD, CLOEXEC, NONBLOCK = _p("fd", INT), _p("cloexec", BOOL, False), _p("nonblock", BOOL, False)
ADDR, LENGTH = _p("addr", SIZE), _p("length", SIZE)
# the workload spec (procsim/workload.py checks each key and its range)
_WL = tuple(_p(n, RAW, None) for n in ("pattern", "rate", "write", "addr", "length", "vmas", "seed", "tick",
                                         "hot", "hot_prob", "hot_offset", "exponent", "offset", "phases",
                                         "repeat", *IO_KEYS))
_WL_CHANGE = tuple(p for p in _WL if p.name != "seed")

COMMANDS: dict[str, Command] = {c.name: c for c in (
    _cmd("spawn", c_spawn, _p("argv", STRS), _p("parent", INT, 1), _p("uid", INT, None), _p("gid", INT, None),
         _p("pid", INT, None), _p("exe", STR, None), _p("env", STRS, None)),
    _cmd("fork", lambda k, pid, child, flags: k.fork(pid, child, _clone_flags(flags)), PID, _p("child", INT, None),
         _p("flags", STR, None),
         doc="fork(): a copy of `pid` (COW), optionally with pid `child`; `flags`: clone()'s CLONE_NEW* for "
             "the child (as unshare's); returns the child's pid."),
    _cmd("clone", lambda k, pid, comm, tid: k.clone_thread(pid, comm, tid), PID, _p("comm", STR, None),
         _p("tid", INT, None), doc="A new thread in `pid`'s group (CLONE_VM|CLONE_THREAD); returns its tid."),
    _cmd("exec", c_exec, PID, _p("path", STR), _p("argv", STRS, None), _p("env", STRS, None),
         _p("layout", STR, None), _p("build_ids", STR_MAP, None)),
    _cmd("exit", lambda k, pid, code: k.exit(pid, code), PID, _p("code", INT, 0),
         doc="exit() of one thread (the group exits with its last thread)."),
    _cmd("exit_group", lambda k, pid, code: k.exit_group(pid, code), PID, _p("code", INT, 0),
         doc="exit_group(): every thread of `pid`'s group."),
    _cmd("kill", lambda k, pid, sig: k.kill(pid, sig), PID, _p("sig", INT, 9),
         doc="Send signal `sig` (default SIGKILL) to a process."),
    _cmd("wait", lambda k, pid, child: k.wait(pid, child), PID, _p("child", INT, None),
         doc="wait(): `pid` reaps a zombie child (`child`, or any); returns its pid."),
    _cmd("setuid", lambda k, pid, uid, gid: k.set_cred(pid, uid, uid if gid is None else gid), PID,
         _p("uid", INT), _p("gid", INT, None), doc="Set real, effective, saved and fs ids (gid defaults to uid)."),
    _cmd("mmap", c_mmap, PID, LENGTH, _p("prot", PROT, "rw"), _p("shared", BOOL, False), _p("path", STR, None),
         _p("offset", SIZE, 0), _p("addr", SIZE, 0), _p("fixed", BOOL, False), _p("noreplace", BOOL, False),
         _p("growsdown", BOOL, False), _p("locked", BOOL, False), _p("noreserve", BOOL, False),
         _p("writable", BOOL, True), _p("hugetlb", BOOL, False)),
    _cmd("munmap", lambda k, pid, addr, length: k.munmap(pid, addr, length), PID, ADDR, LENGTH, doc="munmap()."),
    _cmd("mprotect", lambda k, pid, addr, length, prot: k.mprotect(pid, addr, length, prot), PID, ADDR, LENGTH,
         _p("prot", PROT), doc="mprotect()."),
    _cmd("mlock", lambda k, pid, addr, length, onfault: k.mlock(pid, addr, length, True, onfault), PID, ADDR,
         LENGTH, _p("onfault", BOOL, False), doc="mlock(), or mlock2(MLOCK_ONFAULT) with `onfault`."),
    _cmd("munlock", lambda k, pid, addr, length: k.mlock(pid, addr, length, False), PID, ADDR, LENGTH,
         doc="munlock()."),
    _cmd("madvise", c_madvise, PID, ADDR, LENGTH, _p("advice", STR, "dontneed")),
    _cmd("clear_refs", lambda k, pid, value: k.clear_refs(pid, value), PID, _p("value", INT),
         doc="Write `value` to /proc/PID/clear_refs (1-5)."),
    _query("thp", c_thp, _p("enabled", STR, None), _p("size", KB, None), _p("mode", STR, None),
           setters=("enabled", "size", "mode")),
    _query("hugepages", c_hugepages, _p("nr", INT, None), setters=("nr",)),
    _cmd("shrink", lambda k: k.shrink_deferred_split(), doc="Run the deferred-split shrinker (split queued THPs)."),
    _cmd("shrink_swapcache", lambda k: k.shrink_swap_cache(),
         doc="A reclaim pass over the swap cache: free the folios nobody maps; returns frames freed."),
    _cmd("brk", lambda k, pid, addr: k.brk(pid, addr), PID, ADDR, doc="brk(); returns the new break."),
    _cmd("mremap", c_mremap, PID, ADDR, _p("old_length", SIZE), _p("new_length", SIZE),
         _p("maymove", BOOL, False), _p("new_addr", SIZE, None)),
    _cmd("touch", lambda k, pid, addr, length, write: k.touch(pid, addr, length, write), PID, ADDR, LENGTH,
         _p("write", BOOL, True), doc="Access every page of a range (a write unless `write` is false): faults."),
    _cmd("run", lambda k, tid, cpu, preempt: k.run(tid, cpu, preempt), TID, _p("cpu", INT),
         _p("preempt", BOOL, False), doc="Schedule `tid` on `cpu` (`preempt`: take it from its current task)."),
    _cmd("migrate", lambda k, tid, cpu: k.run(tid, cpu, True), TID, _p("cpu", INT),
         doc="Move a running task to another CPU."),
    _cmd("sleep", c_sleep, TID, _p("state", STR, "S"), _p("wait", STR, None)),
    _cmd("wake", lambda k, tid: k.wake(tid), TID, doc="Wake a sleeping task (runnable)."),
    _cmd("idle", lambda k, cpu: k.idle(cpu), _p("cpu", INT), doc="Switch a CPU to its idle task."),
    _cmd("affinity", lambda k, tid, cpus: k.set_affinity(tid, _cpus(cpus, k)), TID, _p("cpus", CPULIST),
         doc="sched_setaffinity()."),
    _cmd("nice", lambda k, tid, nice: k.set_nice(tid, nice), TID, _p("nice", INT), doc="setpriority()."),
    _cmd("prlimit", lambda k, pid, resource, soft, hard, privileged: c_prlimit(k, pid, resource, soft, hard,
                                                                               privileged), PID,
         _p("resource", STR, None), _p("soft", RLIM, None), _p("hard", RLIM, None), _p("privileged", BOOL, False),
         doc=inspect.getdoc(c_prlimit)),
    _cmd("read", lambda k, pid, length, path, fd, offset: k.read(pid, path, length, offset, fd)
         if _path_or_fd("read", path, fd) else 0, PID, LENGTH, _p("path", STR, None), _p("fd", INT, None),
         _p("offset", SIZE, None),
         doc="read(2) of `length` bytes by task `pid` from its open `fd` (at the file position, which moves; "
             "pread at `offset`), or pread of `path` (at `offset`, default 0): the bytes read (io: rchar, syscr, "
             "read_bytes for page-cache misses)."),
    _cmd("write", lambda k, pid, length, path, fd, offset: k.write(pid, path, length, offset, fd)
         if _path_or_fd("write", path, fd) else 0, PID, LENGTH, _p("path", STR, None), _p("fd", INT, None),
         _p("offset", SIZE, None),
         doc="write(2) of `length` bytes by task `pid` to its open `fd` (at the file position, or the end with "
             "O_APPEND; pwrite at `offset`), or pwrite to `path` (io: wchar, syscw, write_bytes for newly "
             "dirtied pages)."),
    _cmd("truncate", lambda k, pid, path, length: k.truncate(pid, path, length), PID, _p("path", STR),
         _p("length", SIZE),
         doc="truncate(2) of `path` to `length` bytes by task `pid`: dirty page cache past the end is "
             "cancelled_write_bytes; mappings of it are unmapped."),
    _cmd("io", c_io, PID, _p("read", SIZE, 0), _p("write", SIZE, 0), _p("path", STR, "/var/lib/app/data"),
         _p("offset", SIZE, 0), _p("thread", BOOL, False)),
    _cmd("sched_setscheduler", c_sched_setscheduler, TID, _p("policy", RAW), _p("priority", INT, 0)),
    _cmd("setsid", lambda k, pid: sched_syscalls.setsid(k, pid), PID,
         doc="setsid(): a new session, process group and autogroup led by `pid`; returns the session id."),
    _cmd("advance", c_advance, _p("seconds", SECONDS)),
    _cmd("workload_start", c_workload_start, PID, *[p if p.name != "pattern" else _p("pattern", RAW)
                                                    for p in _WL]),
    _cmd("workload_change", c_workload_change, _p("id", INT), *_WL_CHANGE),
    _cmd("workload_stop", c_workload_stop, _p("id", INT)),
    _cmd("track", c_track, PID),
    _cmd("open", lambda k, pid, path, flags: k.open(pid, path, flags), PID, _p("path", STR),
         _p("flags", OPEN_FLAGS, "O_RDONLY"),
         doc="open(): `path` (relative to the cwd) with `flags` (\"O_WRONLY|O_APPEND|O_CLOEXEC\"); returns the "
             "fd. Every path exists but those unlinked (ENOENT unless O_CREAT)."),
    # (not "close": the control Client's own close() has that name)
    _cmd("close_fd", lambda k, pid, fd: k.close(pid, fd), PID, FD, doc="close() of a process's fd."),
    _cmd("dup", lambda k, pid, fd, cloexec: k.dup(pid, fd, cloexec), PID, FD, CLOEXEC,
         doc="dup() (`cloexec`: F_DUPFD_CLOEXEC); returns the lowest free fd."),
    _cmd("dup2", lambda k, pid, fd, newfd, cloexec: k.dup2(pid, fd, newfd, F.O_CLOEXEC if cloexec else 0,
                                                         dup3=cloexec),
         PID, FD, _p("newfd", INT), CLOEXEC, doc="dup2(), or dup3(O_CLOEXEC) with `cloexec`; returns newfd."),
    _cmd("cloexec", lambda k, pid, fd, on: k.set_cloexec(pid, fd, on), PID, FD, _p("on", BOOL, True),
         doc="fcntl(F_SETFD): set or clear an fd's close-on-exec bit."),
    _cmd("lseek", c_lseek, PID, FD, _p("offset", INT), _p("whence", STR, "set")),
    _cmd("pipe", lambda k, pid, cloexec, nonblock: list(k.pipe(pid, _fl(cloexec, nonblock))), PID, CLOEXEC,
         NONBLOCK, doc="pipe2(): returns [read fd, write fd] (`pipe:[ino]`)."),
    _cmd("socket", c_socket, PID, _p("family", STR, "inet"), CLOEXEC, NONBLOCK),
    _cmd("eventfd", lambda k, pid, count, cloexec, nonblock, semaphore: k.eventfd(
        pid, count, _fl(cloexec, nonblock) | (EFD_SEMAPHORE if semaphore else 0)),
         PID, _p("count", INT, 0), CLOEXEC, NONBLOCK, _p("semaphore", BOOL, False),
         doc="eventfd2(); returns the fd."),
    _cmd("epoll_create", lambda k, pid, cloexec: k.epoll_create(pid, _fl(cloexec)), PID, CLOEXEC,
         doc="epoll_create1(); returns the fd."),
    _cmd("epoll_ctl", c_epoll_ctl, PID, _p("epfd", INT), FD, _p("op", STR, "add"), _p("events", INT, 1),
         _p("data", INT, None)),
    _cmd("timerfd", c_timerfd, PID, _p("clock", STR, "monotonic"), _p("value", SECONDS, 0.0),
         _p("interval", SECONDS, 0.0), CLOEXEC, NONBLOCK),
    _cmd("signalfd", lambda k, pid, mask, cloexec, nonblock: k.signalfd(pid, mask, _fl(cloexec, nonblock)), PID,
         _p("mask", INT), CLOEXEC, NONBLOCK,
         doc="signalfd4(-1, mask): bit n-1 of `mask` for signal n; returns the fd."),
    _cmd("inotify_init", lambda k, pid, cloexec, nonblock: k.inotify_init(pid, _fl(cloexec, nonblock)), PID,
         CLOEXEC, NONBLOCK, doc="inotify_init1(); returns the fd."),
    _cmd("inotify_add_watch", lambda k, pid, fd, path, mask: k.inotify_add_watch(pid, fd, path, mask), PID, FD,
         _p("path", STR), _p("mask", INT), doc="inotify_add_watch(); returns the watch descriptor."),
    _cmd("memfd_create", lambda k, pid, name, cloexec: k.memfd_create(pid, name, 1 if cloexec else 0), PID,
         _p("name", STR), _p("cloexec", BOOL, True), doc="memfd_create(): `/memfd:NAME (deleted)`; returns the fd."),
    _cmd("chdir", lambda k, pid, path: k.chdir(pid, path), PID, _p("path", STR), doc="chdir()."),
    _cmd("unlink", lambda k, path, pid: k.unlink(path, pid), _p("path", STR), _p("pid", INT, 1),
         doc="unlink() of a file the machine knows (opened, mapped or exec'd): fds, maps and exe that hold it "
             "show ` (deleted)`."),
    _cmd("unshare", c_unshare, PID, _p("flags", STR)),
    _cmd("sethostname", lambda k, name, pid: k.sethostname(name.encode(), pid), _p("name", STR),
         _p("pid", INT, None), doc="sethostname(2) in `pid`'s uts namespace (default: the initial one)."),
    _cmd("cgroup_mkdir", lambda k, path: k.cgroup_mkdir(path), _p("path", STR),
         doc="mkdir of a cgroup (\"/system.slice/foo.service\"): EEXIST if there, ENOENT without its parent."),
    _cmd("cgroup_attach", lambda k, pid, path, create: k.cgroup_attach(pid, path, create), PID, _p("path", STR),
         _p("create", BOOL, False),
         doc="Write `pid` to PATH/cgroup.procs: its thread group moves (`create`: mkdir -p first). ENOENT "
             "for a cgroup not there, EBUSY for one with controllers enabled for its children."),
    _cmd("login", lambda k, pid, uid: k.set_loginuid(pid, uid), PID, _p("uid", INT),
         doc="audit_set_loginuid() (pam_loginuid): `pid`'s loginuid, and a new session id."),
    # queries
    _query("namespaces", c_namespaces, PID),
    _query("cgroups", c_cgroups),
    _query("ps", c_ps),
    _query("vmas", c_vmas, PID),
    _query("memory", c_memory, PID),
    _query("task", c_status, PID),
    _query("cpus", c_cpus),
    _query("swap", c_swap),
    _query("rss_counters", c_rss_counters, PID),
    _query("oom_score_adj", c_oom_score_adj, PID, _p("value", INT, None), setters=("value",)),
    _query("oom", c_oom),
    _query("oom_select", c_oom_select, _p("two_pass", BOOL, True)),
    _query("now", lambda k: k.now / 1e9, doc="The clock, in seconds since boot."),
    _query("clock", c_clock),
    _query("workloads", c_workloads, _p("pid", INT, None)),
    _query("fds", c_fds, PID),
    _query("mounts", c_mounts, _p("pid", INT, 1)),
    _query("wss_truth", c_wss_truth, PID, _p("since", SECONDS), _p("until", SECONDS, None),
           _p("ranges", BOOL, False)),
)}


def _names(xs: list[str]) -> str:
    q = [repr(x) for x in xs]
    return q[0] if len(q) == 1 else f"{', '.join(q[:-1])} and {q[-1]}"


def parse_args(cmd: Command, args: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of `cmd`, parsed from `args` (defaults filled in);
    CommandError(EINVAL) naming the parameter that is unknown, missing or
    does not parse."""
    op = cmd.name
    known = {p.name for p in cmd.params}
    unknown = sorted(set(args) - known)
    if unknown:
        takes = ", ".join(p.name for p in cmd.params) or "no parameters"
        raise CommandError(errno.EINVAL, f"{op}: unknown parameter {_names(unknown)} (takes: {takes})")
    missing = [p.name for p in cmd.params if p.required and p.name not in args]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise CommandError(errno.EINVAL, f"{op}: missing parameter{s} {_names(missing)}")
    out = {}
    for p in cmd.params:
        try:
            out[p.name] = p.parse(args.get(p.name, p.default))
        except ParamError as e:
            raise CommandError(errno.EINVAL, f"{op}: {p.name}: {e}") from None
    return out


def execute(k: Kernel, op: str, args: dict[str, Any]) -> Any:
    """Run one command; every failure is a CommandError with the kernel's errno."""
    cmd = COMMANDS.get(op)
    if cmd is None:
        raise CommandError(errno.EINVAL, f"unknown command {op!r} (known: {', '.join(sorted(COMMANDS))})")
    parsed = parse_args(cmd, args)
    # a query only reads; anything else runs as a syscall, whose failure
    # half-way (out of memory mid-touch) is recorded as a change
    with k.lock if cmd.is_query(parsed) else k.syscall(op):
        try:
            return cmd.call(k, **parsed)
        except (KernelError, MMError) as e:
            raise CommandError(e.errno, f"{op}: {e.strerror}") from None
        except OutOfMemory as e:
            raise CommandError(errno.ENOMEM, f"{op}: {e}") from None
        except (ValueError, OverflowError) as e:
            raise CommandError(errno.EINVAL, f"{op}: {e}") from None
