"""Commands of the cgroup v2 hierarchy: mkdir, rmdir, moving processes,
writing a cgroup's control files (limits, subtree_control), and a query of
the tree."""

from __future__ import annotations

from procsim.cgroup import stat
from procsim.cgroup import syscalls as C
from procsim.commands.core import PID, cmd, p, query
from procsim.kernel import Kernel
from procsim.params import BOOL, STR


def c_cgroups(k: Kernel) -> dict:
    """The cgroup hierarchy: {path: [member tgids]}."""
    return {p: sorted(cg.procs) for p, cg in sorted(k.cgroups.cgroups.items())}


def c_cgroup_stat(k: Kernel, path: str) -> dict:
    """One cgroup as its files show it: members, controllers, memory
    (bytes, limits, events), pids and CPU time (us)."""
    cg = C.lookup(k, path)
    out: dict = {"procs": sorted(cg.procs), "subtree_control": list(cg.subtree_control),
                 "pids_current": stat.nr_tasks(k, cg)}
    m = cg.memcg
    if m is not None:
        out["memory"] = {"current": stat.memory_current(k, m), "charged_pages": m.usage,
                         "max": m.max, "high": m.high, "peak_pages": m.watermark, "events": dict(m.events)}
    from procsim.cgroup import cpu
    user, system, _ = cpu.cputime(k, cg)
    out["cpu_usage_usec"] = (user + system) // 1000
    return out


COMMANDS = (
    cmd("cgroup_mkdir", lambda k, path: C.mkdir(k, path), p("path", STR),
        doc="mkdir of a cgroup (\"/system.slice/foo.service\"): EEXIST if there, ENOENT without its parent."),
    cmd("cgroup_rmdir", lambda k, path: C.rmdir(k, path), p("path", STR),
        doc="rmdir of a cgroup: EBUSY while it has processes or children; its charges go to its parent."),
    cmd("cgroup_attach", lambda k, pid, path, create: C.attach(k, pid, path, create), PID, p("path", STR),
        p("create", BOOL, False),
        doc="Write `pid` to PATH/cgroup.procs: its thread group moves (`create`: mkdir -p first). ENOENT "
            "for a cgroup not there, EBUSY for one with controllers enabled for its children."),
    cmd("cgroup_write", lambda k, path, file, value: C.write(k, path, file, value.encode()), p("path", STR),
        p("file", STR), p("value", STR),
        doc="Write VALUE to the cgroup's FILE (memory.max \"512M\", memory.high, cpu.max \"50000 100000\", "
            "cpu.weight, pids.max, cgroup.subtree_control \"+memory -cpu\", cgroup.procs): the errno "
            "the kernel gives that write."),
    query("cgroups", c_cgroups),
    query("cgroup_stat", c_cgroup_stat, p("path", STR, "/")),
)
