"""Commands of workloads (procsim/workload.py) and their ground truth (procsim/mm/access_log.py)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from procsim.commands.core import PID, CommandError, cmd, p, query
from procsim.kernel import Kernel
from procsim.mm.access_log import ranges as vpn_ranges
from procsim.params import BOOL, INT, RAW, SECONDS
from procsim.workload import WorkloadError
from procsim.workload_io import IO_KEYS


def _wl(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except WorkloadError as e:
        raise CommandError(e.errno, e.msg) from None


def _given(**spec: Any) -> dict:
    """The workload parameters given (None: not given), for procsim.workload to check."""
    return {key: v for key, v in spec.items() if v is not None}


def c_workload_start(k: Kernel, pid, **spec: Any) -> int:
    """Start an access pattern on task `pid` (procsim/workload.py); returns its id.
    Its address space is tracked from now on (see `wss_truth`)."""
    return _wl(lambda: k.workloads.start(pid, **_given(**spec)))


def c_workload_change(k: Kernel, id, **spec: Any) -> None:
    """Change a running workload from now on: the parameters given replace its own."""
    _wl(lambda: k.workloads.change(id, **_given(**spec)))


def c_workload_stop(k: Kernel, id) -> dict:
    """Stop a workload; returns its final state and counts."""
    return _wl(lambda: k.workloads.stop(id))


def c_workloads(k: Kernel, pid) -> list[dict]:
    """Every workload (of `pid` if given): parameters, state, counts."""
    return k.workloads.list(pid)


def c_track(k: Kernel, pid) -> float:
    """Record which pages pid touches from now on; returns now (seconds)."""
    k.track(pid)
    return k.now / 1e9


MAX_SECONDS = 1e9  # since boot: far beyond any clock the daemon reaches


def c_wss_truth(k: Kernel, pid, since, until, ranges) -> dict:
    """The ground truth: how many pages pid touched in [since, until)
    (seconds since boot, as `now` gives them; until omitted: up to now),
    and with `ranges` the [start, end) address runs of those pages."""
    for name, s in (("since", since), ("until", until)):
        if s is not None and s >= MAX_SECONDS:
            raise CommandError(errno.EINVAL, f"{name}: expected seconds since boot, got {s!r}")
    vpns = k.wss_truth(pid, since, until)
    out = {"pid": pid, "since": since, "until": until, "now": k.now / 1e9,
           "pages": len(vpns), "bytes": len(vpns) << 12}
    if ranges:
        out["ranges"] = vpn_ranges(vpns)
    return out


# the workload spec (procsim/workload.py checks each key and its range)
_WL = tuple(p(n, RAW, None) for n in ("pattern", "rate", "write", "addr", "length", "vmas", "seed", "tick",
                                         "hot", "hot_prob", "hot_offset", "exponent", "offset", "phases",
                                         "repeat", *IO_KEYS))

_WL_CHANGE = tuple(q for q in _WL if q.name != "seed")

COMMANDS = (
    cmd("workload_start", c_workload_start, PID, *[q if q.name != "pattern" else p("pattern", RAW)
                                                    for q in _WL]),
    cmd("workload_change", c_workload_change, p("id", INT), *_WL_CHANGE),
    cmd("workload_stop", c_workload_stop, p("id", INT)),
    cmd("track", c_track, PID),
    query("workloads", c_workloads, p("pid", INT, None)),
    query("wss_truth", c_wss_truth, PID, p("since", SECONDS), p("until", SECONDS, None),
           p("ranges", BOOL, False)),
)
