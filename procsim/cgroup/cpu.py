"""The cpu controller's time and limits (kernel/cgroup/rstat.c
cgroup_base_stat, kernel/sched/core.c cpu.max/cpu.max.burst parsing and
checks, cpu.weight/cpu.weight.nice conversions; the bandwidth mechanism is
cfs_bandwidth.py): CPU time is
charged to the cgroup of the task that ran and its ancestors as the clock
moves; the root's cpu.stat is the whole machine's (root_cgroup_cputime:
every CPU's user, nice, system, irq and softirq time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.cgroup.cfs_bandwidth import cfs_b_of
from procsim.errors import KernelError
from procsim.sched_fair import SCHED_PRIO_TO_WEIGHT

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel

CGROUP_WEIGHT_MIN, CGROUP_WEIGHT_MAX = 1, 10000
U64_MAX = (1 << 64) - 1
RUNTIME_INF = U64_MAX                                  # "max": no quota
MIN_BW_US, MAX_BW_PERIOD_US = 1000, 1000000            # min_bw_quota_period_us, max_bw_quota_period_us
MAX_BW_RUNTIME_US = (1 << (64 - 20)) - 1               # max_bw_runtime_us = MAX_BW (BW_SHIFT 20)


def charge(k: "Kernel", ran: list) -> None:
    """What the tasks that ran were charged (update_curr ->
    cgroup_account_cputime), up their cgroups: (task, cpu, user, system) ns."""
    for t, _cpu, du, ds in ran:
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
    if cg.parent is not None and cg.has_css("cpu"):  # cpu_extra_stat_show(): the group's own cfs_b
        b = cfs_b_of(cg)
        out += (f"nr_periods {b.nr_periods}\nnr_throttled {b.nr_throttled}\n"
                f"throttled_usec {b.throttled_time // 1000}\nnr_bursts {b.nr_burst}\n"
                f"burst_usec {b.burst_time // 1000}\n")
    return out.encode()


def cpu_stat_local(k: "Kernel", cg: "Cgroup") -> bytes:
    """cpu_local_stat_show(): the time its cfs_rqs were throttled, by it or above."""
    if cg.parent is None or not cg.has_css("cpu"):
        return b""
    return f"throttled_usec {cfs_b_of(cg).throttled_self_time // 1000}\n".encode()


def _scanf_u64(s: bytes) -> tuple[int, int] | None:
    """vsscanf's %llu: leading blanks skipped, then decimal digits (simple_strntoull,
    wrapping at 2^64); None when no digit starts it (a sign is no digit)."""
    i = len(s) - len(s.lstrip(b" \t\n\v\f\r"))
    j = i
    while j < len(s) and s[j:j + 1].isdigit():
        j += 1
    if j == i:
        return None
    return int(s[i:j]) % (1 << 64), j


def parse_cpu_max(buf: bytes, period_us: int) -> tuple[int, int]:
    """cpu_period_quota_parse(): sscanf(buf, "%20s %llu", tok, &period);
    then tok as %llu, else "max" (RUNTIME_INF). A period that does not
    scan keeps the current one. Returns (quota_us or RUNTIME_INF, period_us)."""
    import errno
    s = buf.split(b"\0", 1)[0]
    rest = s.lstrip(b" \t\n\v\f\r")
    n = 0
    while n < len(rest) and n < 20 and not rest[n:n + 1].isspace():
        n += 1
    if not n:
        raise KernelError(errno.EINVAL, "cpu.max: \"$MAX [$PERIOD]\"")
    tok, rest = rest[:n], rest[n:]
    p = _scanf_u64(rest)
    if p is not None:
        period_us = p[0]
    q = _scanf_u64(tok)
    if q is not None:
        quota = q[0]
    elif tok == b"max":
        quota = RUNTIME_INF
    else:
        raise KernelError(errno.EINVAL, f"cpu.max: {tok!r} is neither a number nor max")
    return quota, period_us


def check_bandwidth(period_us: int, quota_us: int, burst_us: int) -> None:
    """tg_set_bandwidth()'s checks, in us (RUNTIME_INF: no quota): EINVAL."""
    import errno
    max_usec = U64_MAX // 1000
    inf = quota_us == RUNTIME_INF
    if period_us > max_usec or (not inf and quota_us > max_usec) or burst_us > max_usec:
        raise KernelError(errno.EINVAL, "cpu.max: does not survive translation to ns")
    if quota_us < MIN_BW_US or period_us < MIN_BW_US:
        raise KernelError(errno.EINVAL, "cpu.max: quota and period are at least 1000 us")
    if period_us > MAX_BW_PERIOD_US:
        raise KernelError(errno.EINVAL, "cpu.max: period at most 1000000 us")
    if not inf and quota_us > MAX_BW_RUNTIME_US:
        raise KernelError(errno.EINVAL, "cpu.max: quota too large")
    if not inf and (burst_us > quota_us or burst_us + quota_us > MAX_BW_RUNTIME_US):
        raise KernelError(errno.EINVAL, "cpu.max.burst: at most the quota")


def bandwidth_us(cg: "Cgroup") -> tuple[int, int, int]:
    """tg_bandwidth(): (period, quota or RUNTIME_INF, burst) in us."""
    b = cfs_b_of(cg)
    return b.period // 1000, RUNTIME_INF if b.quota is None else b.quota // 1000, b.burst // 1000


def cpu_max(cg: "Cgroup") -> bytes:
    """cpu_period_quota_print()."""
    period, quota, _ = bandwidth_us(cg)
    return f"{'max' if quota == RUNTIME_INF else quota} {period}\n".encode()


def cpu_max_burst(cg: "Cgroup") -> bytes:
    return f"{bandwidth_us(cg)[2]}\n".encode()


# cgroup weights (kernel/sched/sched.h): shares are the nice-0 1024 scale
CGROUP_WEIGHT_DFL = 100


def weight_to_cgroup(shares: int) -> int:
    """sched_weight_to_cgroup(): DIV_ROUND_CLOSEST(shares * 100, 1024), 1..10000."""
    return max(CGROUP_WEIGHT_MIN, min(CGROUP_WEIGHT_MAX, (shares * CGROUP_WEIGHT_DFL + 512) // 1024))


def weight_from_cgroup(w: int) -> int:
    """sched_weight_from_cgroup(): DIV_ROUND_CLOSEST(w * 1024, 100)."""
    return (w * 1024 + CGROUP_WEIGHT_DFL // 2) // CGROUP_WEIGHT_DFL


def weight_nice(shares: int) -> int:
    """cpu_weight_nice_read_s64(): the nice whose weight is closest (the first on a tie)."""
    last = None
    prio = 0
    for prio, w in enumerate(SCHED_PRIO_TO_WEIGHT):
        d = abs(w - shares)
        if last is not None and d >= last:
            break
        last = d
    else:
        prio += 1
    return prio - 1 - 20
