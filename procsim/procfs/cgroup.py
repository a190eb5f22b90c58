"""/proc/PID/cgroup (proc_cgroup_show) and /proc/PID/cpuset
(proc_cpuset_show) for a cgroup v2 only machine: one line `0::PATH` with
the path relative to the reader's cgroup namespace root (a real reader's:
the initial one), and the path of the cpuset css the task uses."""

from __future__ import annotations

import errno

from procsim import cgroup as C
from procsim.procfs.context import Ctx


def _reader_root(ctx: Ctx) -> str:
    reader = ctx.kernel.tasks.get(ctx.caller.pid)  # a simulated reader: its own namespace
    if reader is not None and reader.nsproxy is not None:
        return reader.nsproxy.cgroup.cgroup_root
    return "/"


def cgroup(ctx: Ctx) -> bytes:
    tg = ctx.task.tg
    return f"0::{C.path_from(_reader_root(ctx), tg.cgroup)}\n".encode()


def cpuset(ctx: Ctx) -> bytes:
    if ctx.task.dead or ctx.task.tg.zombie:
        raise OSError(errno.ESRCH, "cpuset")
    path = ctx.kernel.cgroups.cpuset_path(ctx.task.tg.cgroup)
    return f"{C.path_from(_reader_root(ctx), path)}\n".encode()
