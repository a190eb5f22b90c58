"""The types of a scenario's values and the keys of its tables: each
converter checks one TOML value and names the place when it is wrong
(ScenarioError); `_fields` checks a table against a schema."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Any

from procsim.workload_io import IO_KEYS

NAME_RE = re.compile(r"[\w.@/-]+")


class ScenarioError(ValueError):
    """A scenario that cannot be built; the message names the place."""


# -- values -------------------------------------------------------------------

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.I)


def parse_size(v: Any, what: str = "size") -> int:
    """Bytes from an integer, "0x1000", or a number with a binary unit ("16G", "1.5M", "4KiB")."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    if isinstance(v, str):
        s = v.strip()
        if s.lower().startswith("0x"):
            try:
                return int(s, 16)
            except ValueError:
                pass
        m = _SIZE_RE.fullmatch(s)
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ScenarioError(f"{what}: bad size {v!r} (bytes, or a number with K, M, G or T)")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _t_str(v, what):
    if not isinstance(v, str):
        raise ScenarioError(f"{what}: expected a string, got {v!r}")
    return v


def _t_int(v, what):
    if not _is_int(v):
        raise ScenarioError(f"{what}: expected an integer, got {v!r}")
    return v


def _t_num(v, what):
    if not (_is_int(v) or isinstance(v, float)) or v < 0 or not math.isfinite(v):
        raise ScenarioError(f"{what}: expected a non-negative number of seconds, got {v!r}")
    return float(v)


def _t_bool(v, what):
    if not isinstance(v, bool):
        raise ScenarioError(f"{what}: expected true or false, got {v!r}")
    return v


def _t_strs(v, what):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ScenarioError(f"{what}: expected a list of strings, got {v!r}")
    return list(v)


def _t_env(v, what):
    if isinstance(v, dict):
        return [f"{k}={_t_str(x, f'{what}.{k}')}" for k, x in v.items()]
    return _t_strs(v, what)


def _t_any(v, what):
    return v


def _t_table(v, what):
    if not isinstance(v, dict):
        raise ScenarioError(f"{what}: expected a table, got {v!r}")
    return v


def _t_tables(v, what):
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ScenarioError(f"{what}: expected a list of tables, got {v!r}")
    return v


def _t_prot(v, what):
    if _is_int(v) and 0 <= v <= 7:
        return v
    if isinstance(v, str):
        if v in ("none", "---", ""):
            return 0
        if all(c in "rwx-" for c in v):
            return (1 if "r" in v else 0) | (2 if "w" in v else 0) | (4 if "x" in v else 0)
    raise ScenarioError(f"{what}: expected 'rwx' letters, 'none' or 0-7, got {v!r}")


def _t_name(v, what):
    if not isinstance(v, str) or not NAME_RE.fullmatch(v):
        raise ScenarioError(f"{what}: a name is letters, digits and . _ - @ /, got {v!r}")
    return v


def _t_count(v, what):
    if not _is_int(v) or v < 1:
        raise ScenarioError(f"{what}: expected a positive integer, got {v!r}")
    return v


def _t_size(v, what):
    return parse_size(v, what)


def _t_pid(v, what):
    if not _is_int(v) or v < 1:
        raise ScenarioError(f"{what}: expected a positive integer, got {v!r}")
    return v


def _fields(d: Any, schema: dict[str, Callable], where: str, required: tuple[str, ...] = ()) -> dict:
    """Check a table against a schema: known keys, right types; returns converted values."""
    if not isinstance(d, dict):
        raise ScenarioError(f"{where}: expected a table, got {d!r}")
    out = {}
    for key, v in d.items():
        conv = schema.get(key)
        if conv is None:
            close = difflib.get_close_matches(key, list(schema), 1, 0.75)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(sorted(schema))
            raise ScenarioError(f"{where}: unknown key {key!r} ({hint})")
        out[key] = conv(v, f"{where}: {key}")
    for key in required:
        if key not in out:
            raise ScenarioError(f"{where}: missing key {key!r}")
    return out



# -- schemas --------------------------------------------------------------------

TOP = {"description": _t_str, "machine": _t_table, "process": _t_tables, "kthread": _t_tables,
       "activity": _t_tables, "cgroup": _t_tables, "netdev": _t_tables,
       "disk": _t_tables, "swap": _t_table,  # disk, swap: procsim/scenario/block.py
       "sysctl": _t_table,  # procsim/scenario/sysctl.py
       "module": _t_tables, "netfilter": _t_table}  # procsim/scenario/modules.py
# [[cgroup]]: a cgroup made before the processes, its files written as a
# shell would (procsim/scenario/cgroups.py)
CGROUP = {"path": _t_str, "subtree_control": _t_str, "memory_max": _t_any, "memory_high": _t_any,
          "memory_low": _t_any, "memory_min": _t_any, "memory_swap_max": _t_any, "memory_oom_group": _t_bool,
          "cpu_max": _t_str, "cpu_weight": _t_int, "pids_max": _t_any,
          # procsim/scenario/cgctl.py
          "cpu_max_burst": _t_int, "cpu_weight_nice": _t_int, "io_max": _t_any, "io_weight": _t_any, "freeze": _t_bool,
          "cpu_idle": _t_bool}
# [[netdev]]: procsim/scenario/net.py
NETDEV = {"name": _t_str, "mac": _t_str, "mtu": _t_int, "ipv4": _t_strs, "ipv6": _t_strs, "gateway": _t_str,
          "up": _t_bool, "speed": _t_int, "stat": _t_any}  # stat: a captured machine's /proc/net/dev fields
KTHREAD = {"comm": _t_any, "pid": _t_pid, "cpu": _t_int, "cpus": _t_any, "start": _t_num, "restore": _t_table}
PROCESS = {"name": _t_name, "pid": _t_pid, "parent": _t_any, "fork": _t_bool, "argv": _t_strs, "exe": _t_str,
           "env": _t_env, "uid": _t_int, "gid": _t_int, "groups": _t_any, "nice": _t_int, "cpus": _t_any,
           "run_on": _t_any, "state": _t_str, "count": _t_count, "libs": _t_any, "maps": _t_tables,
           "threads": _t_tables, "ops": _t_tables, "workloads": _t_tables, "start": _t_num,
           "files": _t_tables, "cwd": _t_str, "stdio": _t_str,  # files: procsim/scenario_files.py
           "setsid": _t_bool, "policy": _t_any, "rtprio": _t_int, "limits": _t_table,
           "clone": _t_str, "hostname": _t_str, "cgroup": _t_str, "loginuid": _t_int,  # namespaces, cgroup, audit
           "caps": _t_table, "no_new_privs": _t_bool, "seccomp": _t_int, "seccomp_filters": _t_int}  # caps.py
PROCESS["speculation"] = _t_table  # caps.py: prctl(PR_SET_SPECULATION_CTRL) controls (arch/bugs.py)
# a captured machine's processes (procsim/scenario/captured.py)
PROCESS.update({"layout": _t_str, "resident": _t_tables, "comm": _t_str, "inherit_fds": _t_bool,
                "restore": _t_table, "restore_mm": _t_table, "pgid": _t_int})
THREAD = {"comm": _t_str, "name": _t_name, "tid": _t_pid, "count": _t_count, "cpus": _t_any, "run_on": _t_any,
          "state": _t_str, "nice": _t_int, "stack": _t_size, "restore": _t_table}
MAP = {"name": _t_name, "size": _t_size, "prot": _t_prot, "shared": _t_bool, "path": _t_str, "offset": _t_size,
       "writable": _t_bool, "addr": _t_size, "fixed": _t_bool, "locked": _t_bool, "noreserve": _t_bool,
       "growsdown": _t_bool, "hugetlb": _t_bool, "touch": _t_any, "write": _t_bool, "protect": _t_tables,
       "count": _t_count}
# a process's workloads: the workload_start arguments, and `map` (a mapping's
# name: its start, and its size unless `length` is given) for addr
WORKLOAD = {key: _t_any for key in ("pattern", "rate", "write", "addr", "length", "vmas", "seed", "tick", "hot",
                                    "hot_prob", "hot_offset", "exponent", "offset", "phases", "repeat", "map", *IO_KEYS)}
PROTECT = {"start": _t_size, "size": _t_size, "prot": _t_prot}
LIB = {"path": _t_str, "size": _t_size}
EVENT = {"at": _t_num, "every": _t_num, "count": _t_count, "op": _t_str, "as": _t_str, "cycle": _t_table,
         "random": _t_table}
# block devices (procsim/scenario/block.py): a disk, its queue, its partitions, where swap is
DISK = {"name": _t_str, "size": _t_size, "major": _t_int, "minor": _t_int, "mount": _t_str, "fstype": _t_str,
        "options": _t_str, "partition": _t_tables, "rotational": _t_bool, "scheduler": _t_str,
        "nr_requests": _t_int, "read_ahead_kb": _t_int, "logical_block_size": _t_int,
        "physical_block_size": _t_int, "max_sectors_kb": _t_int, "write_cache": _t_str, "latency_us": _t_num,
        "bandwidth": _t_size, "removable": _t_bool, "ro": _t_bool, "max_hw_sectors_kb": _t_int,
        "discard_granularity": _t_int, "discard_max_bytes": _t_size, "queue_depth": _t_int,
        "stat": _t_any}  # stat: a captured machine's diskstats (procsim/scenario/captured.py)
PARTITION = {"size": _t_size, "start": _t_int, "mount": _t_str, "fstype": _t_str, "options": _t_str,
             "swap": _t_bool, "ro": _t_bool, "stat": _t_any}
SWAP = {"on": _t_str, "priority": _t_int}
STATES = ("R", "S", "D", "T")
