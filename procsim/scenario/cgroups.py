"""[[cgroup]] tables: cgroups made (mkdir -p) before any process, their
controllers enabled and their limits set through the same writes a shell
would make to /sys/fs/cgroup (procsim/cgroup/syscalls.py), so a bad value
fails the load with the kernel's reason."""

from __future__ import annotations

from typing import Any

from procsim.cgroup import syscalls as C
from procsim.scenario.cgctl import CgroupControlBuilder
from procsim.scenario.schema import CGROUP, ScenarioError, _fields, _is_int

# key -> the file it writes, in the order a unit's settings are applied
_FILES = (("subtree_control", "cgroup.subtree_control"), ("memory_min", "memory.min"),
          ("memory_low", "memory.low"), ("memory_high", "memory.high"), ("memory_max", "memory.max"),
          ("memory_swap_max", "memory.swap.max"), ("memory_oom_group", "memory.oom.group"),
          ("cpu_weight", "cpu.weight"), ("cpu_max", "cpu.max"), ("pids_max", "pids.max"))


class CgroupBuilder(CgroupControlBuilder):
    def _cgroups(self, tables: list[Any]) -> None:
        for i, d in enumerate(tables):
            where = f"cgroup #{i + 1}"
            v = _fields(d, CGROUP, where, ("path",))
            where = f"cgroup {v['path']!r}"
            try:
                self.k.cgroups.mkdir_p(v["path"])
            except OSError as e:
                raise ScenarioError(f"{where}: {e.strerror}") from None
            for key, name in _FILES:
                if key not in v:
                    continue
                val = v[key]
                if isinstance(val, bool):
                    val = int(val)
                if not (isinstance(val, str) or _is_int(val)):
                    raise ScenarioError(f"{where}: {key}: expected a string or an integer, got {val!r}")
                self._call(f"{where}: {key}", C.write, self.k, v["path"], name, str(val).encode())
            self._cgroup_controls(v, where)  # procsim/scenario/cgctl.py
