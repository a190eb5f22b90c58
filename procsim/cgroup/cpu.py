"""The cpu controller's time and limits (kernel/cgroup/rstat.c
cgroup_base_stat, kernel/sched/core.c cpu_max/cpu_weight): CPU time is
charged to the cgroup of the task that ran and its ancestors as the clock
moves; the root's cpu.stat is the whole machine's (root_cgroup_cputime:
every CPU's user, nice, system, irq and softirq time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.kstrtox import strstrip

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel

CGROUP_WEIGHT_MIN, CGROUP_WEIGHT_MAX = 1, 10000
MIN_CFS_PERIOD_US, MAX_CFS_PERIOD_US = 1000, 1000000   # 1 ms .. 1 s
MIN_CFS_QUOTA_US = 1000
MAX_CFS_QUOTA_US = (1 << 44) // 1000                   # max_cfs_runtime, in us


def snapshot(k: "Kernel") -> list[tuple[object, int, int]]:
    """Each CPU's current task and its times, before the clock moves."""
    return [(c.curr, c.curr.utime, c.curr.stime) for c in k.sched.cpus if c.curr is not None]


def charge(k: "Kernel", before: list[tuple[object, int, int]]) -> None:
    """What the running tasks were charged since `before` (update_curr ->
    cgroup_account_cputime), up their cgroups."""
    for t, ut, st in before:
        du, ds = t.utime - ut, t.stime - st
        if du <= 0 and ds <= 0:
            continue
        cg = k.cgroups.cgroups.get(t.tg.cgroup, k.cgroups.root)
        for a in cg.ancestors():
            a.usage_user += du
            a.usage_system += ds
            if t.nice > 0:
                a.usage_nice += du


def cputime(k: "Kernel", cg: "Cgroup") -> tuple[int, int, int]:
    """(user, system, nice) ns."""
    if cg.parent is None:
        user = sum(c.user + c.nice for c in k.sched.cpus)
        system = sum(c.system + c.irq + c.softirq for c in k.sched.cpus)
        return user, system, sum(c.nice for c in k.sched.cpus)
    return cg.usage_user, cg.usage_system, cg.usage_nice


def cpu_stat(k: "Kernel", cg: "Cgroup") -> bytes:
    user, system, nice = cputime(k, cg)
    out = (f"usage_usec {(user + system) // 1000}\nuser_usec {user // 1000}\n"
           f"system_usec {system // 1000}\nnice_usec {nice // 1000}\n")
    if cg.parent is not None and cg.has_css("cpu"):  # cpu_extra_stat_show(): no throttling modelled
        out += "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n"
    return out.encode()


def parse_cpu_max(buf: bytes, period: int) -> tuple[int | None, int]:
    """cpu_period_quota_parse(): "$MAX [$PERIOD]", MAX "max" or us; EINVAL
    for what does not parse or is out of range."""
    import errno
    parts = strstrip(buf).split()
    if not parts or len(parts) > 2:
        raise KernelError(errno.EINVAL, "cpu.max: \"$MAX [$PERIOD]\"")
    try:
        if len(parts) == 2:
            period = int(parts[1])
        quota = None if parts[0] == b"max" else int(parts[0])
    except ValueError:
        raise KernelError(errno.EINVAL, "cpu.max: not a number") from None
    if not MIN_CFS_PERIOD_US <= period <= MAX_CFS_PERIOD_US:
        raise KernelError(errno.EINVAL, f"cpu.max: period {period} out of 1000..1000000")
    if quota is not None and not MIN_CFS_QUOTA_US <= quota <= MAX_CFS_QUOTA_US:
        raise KernelError(errno.EINVAL, f"cpu.max: quota {quota} out of range")
    return quota, period


def cpu_max(cg: "Cgroup") -> bytes:
    q, period = cg.cpu_max
    return f"{'max' if q is None else q} {period}\n".encode()
