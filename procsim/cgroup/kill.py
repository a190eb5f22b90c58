"""cgroup.kill (kernel/cgroup/cgroup.c cgroup_kill_write, cgroup_kill):
writing 1 sends SIGKILL to every process of the cgroup and the cgroups
below it, pre-order, each by pid order. The processes die through the
ordinary exit path (their parents get SIGCHLD and a zombie to reap, or
init reaps them), a frozen one too (SIGKILL thaws on its way); kernel
threads are skipped (PF_KTHREAD), and so is the machine's init, which a
signal sent by the kernel does not kill (SIGNAL_UNKILLABLE). A zombie has
left its cgroup (cgroup_exit()), so `populated` in cgroup.events goes to 0
once they all died. Other values: ERANGE; not a number: EINVAL (the host
answers so)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.kstrtox import kstrtoint, strstrip

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel

SIGKILL = 9


def parse(buf: bytes) -> None:
    """cgroup_kill_write()'s checks: kstrtoint base 0 of the stripped buffer, then 1 only."""
    try:
        v = kstrtoint(strstrip(buf), 0)
    except OSError as e:
        raise KernelError(e.errno, "cgroup.kill: not a number") from None
    if v != 1:
        raise KernelError(errno.ERANGE, "cgroup.kill: only 1")


def cgroup_kill(k: "Kernel", cg: "Cgroup") -> list[int]:
    """__cgroup_kill() on cg and each descendant; returns the pids killed."""
    killed = []
    for c in (cg, *k.cgroups.descendants(cg)):
        for tgid in sorted(c.procs):
            tg = k.groups.get(tgid)
            if tg is None or tg.zombie or tg.kthread or tgid == 1:
                continue
            k.kill(tgid, SIGKILL)
            killed.append(tgid)
    return killed
