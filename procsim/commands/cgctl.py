"""Commands of the cgroup controls beyond membership: cpu.max bandwidth,
io.max limits, the freezer, and a query of what they did (throttling,
frozen state). Each goes through the cgroup file write the kernel would
get (procsim/cgroup/syscalls.py), so its errnos are those of the file."""

from __future__ import annotations

from procsim.cgroup import cpu as cgcpu
from procsim.cgroup import freezer
from procsim.cgroup import syscalls as C
from procsim.commands.core import cmd, p, query
from procsim.kernel import Kernel
from procsim.params import BOOL, INT, STR


def c_cpu_max(k: Kernel, path: str, quota: str, period: int | None, burst: int | None) -> None:
    """cpu.max "QUOTA PERIOD" (QUOTA us or max), then cpu.max.burst if given."""
    C.write(k, path, "cpu.max", f"{quota}{'' if period is None else f' {period}'}\n".encode())
    if burst is not None:
        C.write(k, path, "cpu.max.burst", f"{burst}\n".encode())


def c_cgroup_controls(k: Kernel, path: str) -> dict:
    """A cgroup's bandwidth (us), throttling, io.max limits and freezer state."""
    cg = C.lookup(k, path)
    out: dict = {"frozen": freezer.is_frozen(k, cg), "freezing": freezer.freezing(cg),
                 "frozen_usec": freezer.frozen_usec(k, cg)}
    if cg.parent is not None and cg.has_css("cpu"):
        period, quota, burst = cgcpu.bandwidth_us(cg)
        b = cg.cfs_b
        out["cpu"] = {"period_us": period, "quota_us": None if quota == cgcpu.RUNTIME_INF else quota,
                      "burst_us": burst, "nr_periods": b.nr_periods, "nr_throttled": b.nr_throttled,
                      "throttled_usec": b.throttled_time // 1000,
                      "throttled_cpus": sorted(b.throttled_at), "runtime_us": b.runtime // 1000,
                      "weight": cgcpu.weight_to_cgroup(cg.shares)}
    out["io_max"] = {dev: {"rbps": tg.bps[0], "wbps": tg.bps[1], "riops": tg.iops[0], "wiops": tg.iops[1],
                           "throttled_bios": list(tg.nr_throttled)}
                     for dev, tg in cg.throtl.items() if tg.limited}
    return out


COMMANDS = (
    cmd("cpu_max", c_cpu_max, p("path", STR), p("quota", STR), p("period", INT, None), p("burst", INT, None),
        doc="Set a cgroup's CPU bandwidth: QUOTA us (or max) per PERIOD us, and its burst (cpu.max, "
            "cpu.max.burst; EINVAL as the kernel: quota or period below 1000, period above 1000000, "
            "burst above the quota)."),
    cmd("io_max", lambda k, path, dev, limits: C.write(k, path, "io.max", f"{dev} {limits}\n".encode()),
        p("path", STR), p("dev", STR), p("limits", STR),
        doc="io.max of a cgroup on disk DEV (MAJ:MIN): LIMITS \"rbps=N wbps=max riops=N wiops=N\" "
            "(EINVAL for a bad token, ERANGE for 0, ENODEV for no such disk or a partition)."),
    cmd("cgroup_freeze", lambda k, path, freeze: C.write(k, path, "cgroup.freeze", b"1\n" if freeze else b"0\n"),
        p("path", STR), p("freeze", BOOL, True),
        doc="Freeze (or thaw) a cgroup and everything below it: its tasks stop (state S in get_signal)."),
    query("cgroup_controls", c_cgroup_controls, p("path", STR, "/")),
)
