"""/proc/PID and /proc/PID/task/TID (fs/proc/base.c's tgid_base_stuff and
tid_base_stuff): one row per file, link or subdirectory, listed in table
order. A directory node carries its task; its rows are looked up with it.
"""

from __future__ import annotations

import errno

from procsim.kernel import Kernel
from procsim.procfs import (cgroup as cg, clear_refs, fd, identity as I, idle_bitmap, io, limits, maps, mounts,
                            net, ns as NS, numa_maps, oom, pagemap, pid as P, procmap_query, sched, smaps)
from procsim.procfs.context import Caller, ptrace_may_read
from procsim.procfs.kinds import Bin, Dir, DynDir, Link, Node, PtraceShow, Seq, Show, WriteOnly

_MM_FILE = dict(ptrace_open=True, binds_mm=True)

# The files of both a process and each of its threads, in name order (the
# order they are listed in).
COMMON_ENTRIES = (
    I.ATTR_DIR,
    Show("cgroup", cg.cgroup),
    WriteOnly("clear_refs", clear_refs.write),
    Show("cmdline", P.cmdline),
    Show("comm", P.comm, 0o644, P.comm_write),
    Show("cpuset", cg.cpuset),
    Link("cwd", fd.cwd, ptrace=True),
    Show("environ", P.environ, 0o400, ptrace_open=True),
    Link("exe", fd.exe, ptrace=True),
    fd.FD_DIR,
    fd.FDINFO_DIR,
    Show("gid_map", NS.gid_map, 0o644, NS.gid_map_write),
    Bin("idle_bitmap", idle_bitmap.pid_read, 0o600, idle_bitmap.pid_write, needs_mm=True, **_MM_FILE),
    PtraceShow("io", io.proc_io, 0o400, may_read=ptrace_may_read),
    Show("limits", limits.proc_pid_limits),
    Show("loginuid", I.loginuid, 0o644, I.loginuid_write),
    Seq("maps", maps.MapsSeq, ioctl=procmap_query.maps_ioctl, **_MM_FILE),
    Show("mountinfo", mounts.mountinfo, records=True, open_check=mounts.mounts_open),
    Show("mounts", mounts.mounts, records=True, open_check=mounts.mounts_open),
    net.NET_DIR,
    NS.NS_DIR,
    Seq("numa_maps", numa_maps.NumaMapsSeq, **_MM_FILE),
    Show("oom_adj", oom.oom_adj, 0o644, oom.oom_adj_write),
    Show("oom_score", oom.oom_score),
    Show("oom_score_adj", oom.oom_score_adj, 0o644, oom.oom_score_adj_write),
    Bin("pagemap", pagemap.pagemap, needs_mm=True, ioctl_errno=errno.EINVAL, **_MM_FILE),
    Show("personality", sched.personality, 0o400, ptrace_open=True),
    Show("projid_map", NS.projid_map, 0o644, NS.projid_map_write),
    Link("root", fd.root, ptrace=True),
    Show("rss_counters", oom.rss_counters, needs_mm=True),  # [ext]
    Show("sched", sched.sched, 0o644, sched.sched_write),
    Show("schedstat", sched.schedstat),
    Show("sessionid", I.sessionid),
    Show("setgroups", NS.setgroups, 0o644, NS.setgroups_write),
    Seq("smaps", smaps.SmapsSeq, **_MM_FILE),
    Show("smaps_rollup", smaps.smaps_rollup, needs_mm=True, **_MM_FILE),
    Show("stack", sched.stack, 0o400, ptrace_open=True),
    Show("stat", P.stat),
    Show("statm", P.statm),
    Show("status", P.status),
    Show("syscall", sched.syscall, 0o400, ptrace_open=True),
    Show("wchan", sched.wchan),
    Show("uid_map", NS.uid_map, 0o644, NS.uid_map_write),
)
# what only a thread (tid_base_stuff) or only a process (tgid_base_stuff) has
TID_ONLY = (Show("children", sched.children),)
TGID_ONLY = (Show("autogroup", sched.autogroup, 0o644, sched.autogroup_write), fd.MAP_FILES_DIR,
             Show("mountstats", mounts.mountstats, 0o400, records=True, open_check=mounts.mounts_open),
             Show("timens_offsets", NS.timens_offsets, 0o644, NS.timens_offsets_write),
             Show("timerslack_ns", sched.timerslack_ns, 0o666, sched.timerslack_ns_write))


def _by_name(*rows):
    return tuple(sorted(rows, key=lambda e: e.name))


TID_ENTRIES = _by_name(*COMMON_ENTRIES, *TID_ONLY)
TID_DIR = Dir("TID", TID_ENTRIES)


def _tid_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    if name.isdigit():
        for t in parent.task.tg.threads:
            if str(t.pid) == name:
                return Node("dir", TID_DIR, t, True), False
    raise OSError(errno.ENOENT, name)


def _tid_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return [str(t.pid) for t in parent.task.tg.threads]


def _task_nlink(parent: Node) -> int:
    return 2 + len(parent.task.tg.threads)


TASK = DynDir("task", lookup=_tid_lookup, readdir=_tid_readdir, links=_task_nlink)
TGID_ENTRIES = _by_name(*COMMON_ENTRIES, *TGID_ONLY, TASK)
TGID_DIR = Dir("PID", TGID_ENTRIES)
