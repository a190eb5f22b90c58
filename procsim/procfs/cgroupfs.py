"""/sys/fs/cgroup: the cgroup2 filesystem (kernel/cgroup/cgroup.c's
cgroup_base_files and psi files, and each controller's cftypes), one
directory per cgroup from the model, each with the files its controllers
give it (those of a controller appear where its css exists: the parent
enables it in cgroup.subtree_control; the root lacks the NOT_ON_ROOT
ones). A node's arg is its cgroup's id; renders find the cgroup by it
(ENODEV once it is gone, as kernfs answers an open file of a removed
node). Writes go to procsim/cgroup/syscalls.py."""

from __future__ import annotations

import errno
from collections.abc import Callable

from procsim.cgroup import cpu as cgcpu
from procsim.cgroup import io as cgio
from procsim.cgroup import blk_throttle, stat, syscalls
from procsim.procfs import cgctl_files
from procsim.cgroup.core import IMPLICIT, PIDS_MAX, SUBSYS, Cgroup
from procsim.cgroup.memcontrol import PAGE_COUNTER_MAX
from procsim.kernel import Kernel
from procsim.procfs.context import Caller, Ctx
from procsim.procfs import pressure
from procsim.procfs.kinds import DynDir, Node, Show, WriteOnly
from procsim.psi.show import psi_show
from procsim.units import PAGE_SIZE


def _cg(ctx: Ctx) -> Cgroup:
    cg = ctx.kernel.cgroups.by_id(ctx.arg) if ctx.arg >= 0 else ctx.kernel.cgroups.root
    if cg is None:
        raise OSError(errno.ENODEV, "cgroup removed")
    return cg


def _max(pages: int) -> str:
    return "max" if pages >= PAGE_COUNTER_MAX else str(pages * PAGE_SIZE)


def _mask(names) -> bytes:
    """cgroup_print_ss_mask(): the names, a newline only after some."""
    return (" ".join(names) + "\n").encode() if names else b""


def _lines(*rows) -> bytes:
    return "".join(f"{r}\n" for r in rows).encode()


# -- cgroup core ---------------------------------------------------------------

def _procs(k: Kernel, cg: Cgroup) -> bytes:
    return _lines(*sorted(p for p in cg.procs if k.cgroups.live(p)))  # not its zombies


def _threads(k: Kernel, cg: Cgroup) -> bytes:
    tids = []
    for tgid in sorted(cg.procs):
        tg = k.groups.get(tgid)
        if tg is not None:
            tids += [t.pid for t in tg.threads if k.tasks.get(t.pid) is t and not t.dead]
    return _lines(*tids)


def _stat(k: Kernel, cg: Cgroup) -> bytes:
    """cgroup_stat_show(): descendants, then the live css of each
    controller bound to v2 at and below, then the dying ones (none)."""
    below = k.cgroups.descendants(cg)
    live = [s for s in (*SUBSYS[:4], "perf_event", *SUBSYS[4:]) if cg.has_css(s)]
    out = [f"nr_descendants {len(below)}"]
    out += [f"nr_subsys_{s} {sum(1 for c in (cg, *below) if c.has_css(s))}" for s in live]
    out += ["nr_dying_descendants 0"] + [f"nr_dying_subsys_{s} 0" for s in live]
    return _lines(*out)


def _pressure(resource: str) -> Callable[[Kernel, Cgroup], bytes]:
    def render(k: Kernel, cg: Cgroup) -> bytes:
        return psi_show(cg.psi, resource, k.now, cg.parent is None)
    return render


# -- memory --------------------------------------------------------------------

def _memory_events(local: bool) -> Callable[[Kernel, Cgroup], bytes]:
    def render(k: Kernel, cg: Cgroup) -> bytes:
        ev = cg.memcg.events_local if local else cg.memcg.events
        return "".join(f"{n} {v}\n" for n, v in ev.items()).encode()
    return render


def _cpuset_cpus(k: Kernel, cg: Cgroup) -> bytes:
    n = k.config.nr_cpus
    return f"0-{n - 1}\n".encode() if n > 1 else b"0\n"


# (name, render, writable, the controller it belongs to (None: core), on the root too)
Row = tuple[str, Callable[[Kernel, Cgroup], bytes] | None, bool, str | None, bool]
FILES: tuple[Row, ...] = (
    ("cgroup.controllers", lambda k, cg: _mask(cg.controllers()), False, None, True),
    ("cgroup.events", cgctl_files.cgroup_events, False, None, False),
    ("cgroup.freeze", cgctl_files.cgroup_freeze, True, None, False),
    ("cgroup.kill", None, True, None, False),
    ("cgroup.max.depth", lambda k, cg: b"max\n", False, None, True),
    ("cgroup.max.descendants", lambda k, cg: b"max\n", False, None, True),
    ("cgroup.pressure", lambda k, cg: b"1\n", False, None, True),
    ("cgroup.procs", _procs, True, None, True),
    ("cgroup.stat", _stat, False, None, True),
    ("cgroup.stat.local", cgctl_files.cgroup_stat_local, False, None, False),
    ("cgroup.subtree_control", lambda k, cg: _mask(cg.subtree_control), True, None, True),
    ("cgroup.threads", _threads, True, None, True),
    ("cgroup.type", lambda k, cg: b"domain\n", False, None, False),
    ("cpu.idle", lambda k, cg: f"{int(cg.sched_idle)}\n".encode(), True, "cpu", False),
    ("cpu.max", lambda k, cg: cgcpu.cpu_max(cg), True, "cpu", False),
    ("cpu.max.burst", lambda k, cg: cgcpu.cpu_max_burst(cg), True, "cpu", False),
    ("cpu.pressure", _pressure("cpu"), False, None, True),
    ("cpu.stat", cgcpu.cpu_stat, False, None, True),
    ("cpu.stat.local", cgcpu.cpu_stat_local, False, None, True),
    ("cpu.weight", lambda k, cg: f"{cgcpu.weight_to_cgroup(cg.shares)}\n".encode(), True, "cpu", False),
    ("cpu.weight.nice", lambda k, cg: f"{cgcpu.weight_nice(cg.shares)}\n".encode(), True, "cpu", False),
    ("cpuset.cpus", lambda k, cg: b"\n", False, "cpuset", False),
    ("cpuset.cpus.effective", _cpuset_cpus, False, "cpuset", True),
    ("cpuset.mems", lambda k, cg: b"\n", False, "cpuset", False),
    ("cpuset.mems.effective", lambda k, cg: b"0\n", False, "cpuset", True),
    ("io.max", blk_throttle.io_max, True, "io", False),
    ("io.pressure", _pressure("io"), False, None, True),
    ("io.stat", cgio.io_stat, False, "io", True),
    ("io.weight", blk_throttle.io_weight, True, "io", False),
    ("memory.current", lambda k, cg: f"{stat.memory_current(k, cg.memcg)}\n".encode(), False, "memory", False),
    ("memory.events", _memory_events(False), False, "memory", False),
    ("memory.events.local", _memory_events(True), False, "memory", False),
    ("memory.high", lambda k, cg: f"{_max(cg.memcg.high)}\n".encode(), True, "memory", False),
    ("memory.low", lambda k, cg: f"{_max(cg.memcg.low)}\n".encode(), True, "memory", False),
    ("memory.max", lambda k, cg: f"{_max(cg.memcg.max)}\n".encode(), True, "memory", False),
    ("memory.min", lambda k, cg: f"{_max(cg.memcg.min)}\n".encode(), True, "memory", False),
    ("memory.oom.group", lambda k, cg: f"{cg.memcg.oom_group}\n".encode(), True, "memory", False),
    ("memory.peak", lambda k, cg: f"{stat.memory_peak(k, cg.memcg)}\n".encode(), False, "memory", False),
    ("memory.pressure", _pressure("memory"), False, None, True),
    ("memory.reclaim", None, True, "memory", True),
    ("memory.stat", lambda k, cg: stat.memory_stat(k, cg.memcg), False, "memory", True),
    ("memory.swap.current", lambda k, cg: f"{k.memcg.swap_usage(cg.memcg) * PAGE_SIZE}\n".encode(),
     False, "memory", False),
    ("memory.swap.max", lambda k, cg: f"{_max(cg.memcg.swap_max)}\n".encode(), True, "memory", False),
    ("pids.current", lambda k, cg: f"{stat.nr_tasks(k, cg)}\n".encode(), False, "pids", False),
    ("pids.events", lambda k, cg: f"max {cg.pids_events_max}\n".encode(), False, "pids", False),
    ("pids.max", lambda k, cg: b"max\n" if cg.pids_max == PIDS_MAX else f"{cg.pids_max}\n".encode(),
     True, "pids", False),
    ("pids.peak", lambda k, cg: f"{cg.pids_peak}\n".encode(), False, "pids", False),
)
assert [r[0] for r in FILES] == sorted(r[0] for r in FILES)


PRESSURE_FILES = ("cpu.pressure", "io.pressure", "memory.pressure")


def _write(name: str):
    def write(ctx: Ctx, data: bytes) -> int:
        cg = _cg(ctx)
        syscalls.write(ctx.kernel, cg.path, name, data)
        return len(data)
    return write


def _row(name: str, render, writable: bool) -> Show:
    # kernfs: a file without write bits refuses an open for writing (EACCES)
    extra = {} if writable else {"write_open_errno": errno.EACCES}
    return Show(name, lambda ctx: render(ctx.kernel, _cg(ctx)), 0o644 if writable else 0o444,
                _write(name) if writable else None, **extra)


def _pressure_row(name: str, render) -> Show:
    """cgroup_pressure_write(): a trigger on the cgroup's own group (0644)."""
    return pressure.PressureShow(name, lambda ctx: render(ctx.kernel, _cg(ctx)), 0o644, _write(name),
                                 resource=name.split(".")[0], group_of=_cg)


def _write_only_row(name: str) -> WriteOnly:
    """A kernfs file with only ->write (memory.reclaim): 0200, reads EINVAL."""
    return WriteOnly(name, _write(name), 0o200)


ROWS = {name: _pressure_row(name, render) if name in PRESSURE_FILES
        else _write_only_row(name) if render is None else _row(name, render, w)
        for name, render, w, _, _ in FILES}
_SPEC = {r[0]: r for r in FILES}


def files_of(cg: Cgroup) -> list[str]:
    out = []
    for name, _, _, ss, on_root in FILES:
        if cg.parent is None and not on_root:
            continue
        if ss is not None and not (cg.has_css(ss) and (ss not in IMPLICIT)):
            continue
        if ss == "memory" and cg.memcg is None:
            continue
        out.append(name)
    return out


def _lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    cg = kernel.cgroups.by_id(parent.arg) if parent.arg >= 0 else kernel.cgroups.root
    if cg is None:
        raise OSError(errno.ENOENT, name)
    child = cg.children.get(name)
    if child is not None:
        return Node("dir", CGROUP_DIR, arg=child.id), False
    if name in ROWS and name in files_of(cg):
        return Node("file", ROWS[name], arg=cg.id), False
    raise OSError(errno.ENOENT, name)


def _readdir(parent: Node, kernel: Kernel) -> list[str]:
    cg = kernel.cgroups.by_id(parent.arg) if parent.arg >= 0 else kernel.cgroups.root
    if cg is None:
        return []
    return sorted(files_of(cg) + list(cg.children))


CGROUP_DIR = DynDir("cgroup", mode=0o755, lookup=_lookup, readdir=_readdir)


def proc_cgroups(ctx: Ctx) -> bytes:
    """/proc/cgroups (proc_cgroupstats_show) of a v2-only machine: every
    controller in hierarchy 0, num_cgroups its css count."""
    k = ctx.kernel
    out = ["#subsys_name\thierarchy\tnum_cgroups\tenabled"]
    for ss in ("cpuset", "cpu", "cpuacct", "io", "memory", "devices", "freezer", "net_cls", "perf_event",
               "net_prio", "hugetlb", "pids", "rdma", "misc"):
        n = sum(1 for c in k.cgroups.cgroups.values() if c.has_css(ss)) if ss in SUBSYS or ss in IMPLICIT else 1
        out.append(f"{'blkio' if ss == 'io' else ss}\t0\t{n}\t1")  # the legacy names
    return _lines(*out)
