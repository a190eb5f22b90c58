"""/sys/fs/cgroup files of the freezer (kernel/cgroup/cgroup.c
cgroup_events_show, cgroup_freeze_show, cgroup_core_local_stat_show) over
procsim/cgroup/freezer.py."""

from __future__ import annotations

from procsim.cgroup import freezer
from procsim.cgroup.core import Cgroup
from procsim.kernel import Kernel


def cgroup_events(k: Kernel, cg: Cgroup) -> bytes:
    return (f"populated {int(k.cgroups.populated(cg))}\n"
            f"frozen {int(freezer.is_frozen(k, cg))}\n").encode()


def cgroup_freeze(k: Kernel, cg: Cgroup) -> bytes:
    """Its own request, not the effective state (a child of a frozen cgroup shows 0)."""
    return b"1\n" if cg.freezer is not None and cg.freezer.freeze else b"0\n"


def cgroup_stat_local(k: Kernel, cg: Cgroup) -> bytes:
    """cgroup_core_local_stat_show(): frozen_usec (not on the root)."""
    return f"frozen_usec {freezer.frozen_usec(k, cg)}\n".encode()
