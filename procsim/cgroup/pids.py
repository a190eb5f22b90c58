"""The pids controller (kernel/cgroup/pids.c): pids.current is the tasks
here and below; a fork that would take any cgroup on the way up past its
pids.max fails EAGAIN (pids_can_fork), counted in that cgroup's
pids.events max (and, hierarchically, its ancestors')."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.cgroup import stat
from procsim.cgroup.core import PIDS_MAX
from procsim.errors import KernelError

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import ThreadGroup


def can_fork(k: "Kernel", tg: "ThreadGroup") -> None:
    """pids_try_charge() for one more task in tg's cgroup."""
    cg = k.cgroups.css_of(tg.cgroup, "pids")
    for a in cg.ancestors():
        if a.parent is None:
            break
        if a.pids_max != PIDS_MAX and stat.nr_tasks(k, a) + 1 > a.pids_max:
            a.pids_events_max += 1
            raise KernelError(errno.EAGAIN, f"pids.max ({a.pids_max}) of {a.path} reached")


def forked(k: "Kernel", tg: "ThreadGroup") -> None:
    """pids.peak: the most tasks each cgroup on the way up has had."""
    cg = k.cgroups.css_of(tg.cgroup, "pids")
    for a in cg.ancestors():
        if a.parent is None:
            break  # (the root has no pids.peak)
        a.pids_peak = max(a.pids_peak, stat.nr_tasks(k, a))
