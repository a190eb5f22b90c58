"""The pids controller (kernel/cgroup/pids.c): pids.current is a counter
per cgroup, the tasks (threads, zombies until reaped) here and below. A
task is charged to its cgroup and every one above it when it is made
(pids_can_fork, pids_charge), the charge moves with it on migration
(pids_can_attach), and it is uncharged when it is released (pids_release),
so a fork's check costs the depth of the tree, not the number of tasks.
A fork that would take any cgroup on the way up past its pids.max fails
EAGAIN (pids_try_charge), counted in that cgroup's pids.events max.

Every cgroup keeps the count, not only those with a pids css: a css
counts its subtree, which is the same number (pids.current is shown only
where the css is). The counts are those of membership as cgroup.procs
has it: a member's tasks count where its tgid is listed."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.cgroup.core import PIDS_MAX
from procsim.errors import KernelError

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel
    from procsim.task import Task, ThreadGroup


def can_fork(k: "Kernel", tg: "ThreadGroup") -> None:
    """pids_try_charge() for one more task in tg's cgroup (checked, not yet charged)."""
    cg = k.cgroups.css_of(tg.cgroup, "pids")
    for a in cg.ancestors():
        if a.parent is None:
            break
        if a.pids_max != PIDS_MAX and a.pids_current + 1 > a.pids_max:
            a.pids_events_max += 1
            raise KernelError(errno.EAGAIN, f"pids.max ({a.pids_max}) of {a.path} reached")


def charge(k: "Kernel", t: "Task") -> None:
    """pids_charge(): the new task `t`, in the task table, counts in the
    cgroup its group is a member of and in each one above."""
    tg = t.tg
    cg = k.cgroups.cgroups.get(tg.cgroup)
    if cg is None or tg.tgid not in cg.procs or t.pids_css is not None:
        return  # (a group that is in no cgroup's cgroup.procs counts nowhere)
    t.pids_css = cg
    for a in cg.ancestors():
        a.pids_current += 1


def uncharge(t: "Task") -> None:
    """pids_release() (or the old cgroup's side of a migration)."""
    cg = t.pids_css
    if cg is None:
        return
    t.pids_css = None
    for a in cg.ancestors():
        a.pids_current -= 1


def forked(k: "Kernel", t: "Task") -> None:
    """The fork of `t` is done (it was charged as it entered the task
    table): pids.peak is the most tasks each cgroup on the way up has had."""
    cg = k.cgroups.css_of(t.tg.cgroup, "pids")
    for a in cg.ancestors():
        if a.parent is None:
            break  # (the root has no pids.peak)
        a.pids_peak = max(a.pids_peak, a.pids_current)


def migrated(k: "Kernel", tg: "ThreadGroup") -> None:
    """pids_can_attach(): the group's tasks take their charge to the
    cgroup it now belongs to (pids.max is not checked on migration)."""
    for t in tg.threads:
        uncharge(t)
        if k.tasks.get(t.pid) is t:
            charge(k, t)


def released(k: "Kernel", t: "Task", left: bool) -> None:
    """`t` left the task table (release_task); `left`: its group left its
    cgroup with it (the leader), so no task of the group counts any more."""
    uncharge(t)
    if left:
        for other in t.tg.threads:
            uncharge(other)


def cgroup_removed(k: "Kernel", cg: "Cgroup") -> None:
    """rmdir of `cg` (it has no live member, but may hold zombies): what
    was charged there stops counting above it, as it leaves the tree.
    (Linux keeps a dying cgroup's zombies charged until they are reaped;
    procsim has no dying cgroups, so the tree the files see drops them.)"""
    for tgid in cg.procs:
        tg = k.groups.get(tgid)
        if tg is not None:
            for t in tg.threads:
                if t.pids_css is cg:
                    uncharge(t)
