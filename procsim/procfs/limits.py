"""/proc/PID/limits and /proc/PID/task/TID/limits (fs/proc/base.c
proc_pid_limits): the thread group's 16 rlimits, one line each, in the
kernel's column widths. Mode 0444: anyone may read them."""

from __future__ import annotations

from procsim.procfs.context import Ctx
from procsim.resource import LNAMES, RLIM_INFINITY

HEADER = "Limit                     Soft Limit           Hard Limit           Units     \n"


def _value(v: int, width: int) -> str:
    return f"{'unlimited' if v == RLIM_INFINITY else v:<{width}} "


def proc_pid_limits(ctx: Ctx) -> bytes:
    """The header, then `%-25s %-20s %-20s %-10s` per limit (the unit column
    left out, the line ended after the hard limit's blank, where a limit has
    no unit)."""
    out = [HEADER]
    for (name, unit), lim in zip(LNAMES, ctx.task.tg.rlim):
        out.append(f"{name:<25} {_value(lim.cur, 20)}{_value(lim.max, 20)}")
        out.append(f"{unit:<10}\n" if unit else "\n")
    return "".join(out).encode()
