"""[[cgroup]] keys of the controls beyond the limits cgroups.py writes:
cpu_max_burst, cpu_weight_nice, io_max (one "MAJ:MIN key=value ..." or a
list of them, a write each), io_weight, freeze and cpu_idle, written through the
cgroup files in that order after the others (a bad value fails the load
with the kernel's reason). A frozen cgroup freezes the processes the
scenario puts in it later as they arrive (cgroup_freezer_migrate_task)."""

from __future__ import annotations

from typing import Any

from procsim.cgroup import syscalls as C
from procsim.scenario.schema import ScenarioError, _is_int

KEYS = ("cpu_max_burst", "cpu_weight_nice", "io_max", "io_weight", "freeze", "cpu_idle")
_FILES = {"cpu_idle": "cpu.idle", "cpu_max_burst": "cpu.max.burst", "cpu_weight_nice": "cpu.weight.nice", "io_max": "io.max",
          "io_weight": "io.weight", "freeze": "cgroup.freeze"}


class CgroupControlBuilder:
    def _cgroup_controls(self, v: dict[str, Any], where: str) -> None:
        for key in KEYS:
            if key not in v:
                continue
            vals = v[key] if key == "io_max" and isinstance(v[key], list) else [v[key]]
            for val in vals:
                if isinstance(val, bool):
                    val = int(val)
                if not (isinstance(val, str) or _is_int(val)):
                    raise ScenarioError(f"{where}: {key}: expected a string or an integer, got {val!r}")
                self._call(f"{where}: {key}", C.write, self.k, v["path"], _FILES[key], str(val).encode())
