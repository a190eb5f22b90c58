"""[sysctl]: sysctls set at boot, before any process exists (as
/etc/sysctl.d does, early): `"vm.overcommit_memory" = 2` and the like. The
same ranges as a write to /proc/sys (procsim/mm/sysctl_vm.py and the
kernel.* tables); a value out of range is a scenario error naming it."""

from __future__ import annotations

import difflib
from typing import Any

from procsim.errors import KernelError
from procsim.kallsyms import set_kernel_sysctl
from procsim.mm.sysctl_vm import VM_SYSCTLS, set_vm_sysctl
from procsim.scenario.schema import ScenarioError, _is_int

# kernel.* sysctls a scenario may set: name -> (min, max)
KERNEL_SYSCTLS = {"kptr_restrict": (0, 2), "perf_event_paranoid": (-(1 << 31), (1 << 31) - 1)}
NAMES = sorted([f"vm.{n}" for n in VM_SYSCTLS] + [f"kernel.{n}" for n in KERNEL_SYSCTLS])


class SysctlBuilder:
    """Mixed into the scenario builder (procsim/scenario/builder.py)."""

    def _sysctls(self, table: dict[str, Any]) -> None:
        for name, v in table.items():
            where = f"sysctl {name!r}"
            if name not in NAMES:
                close = difflib.get_close_matches(name, NAMES, 1, 0.75)
                hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(NAMES)
                raise ScenarioError(f"{where}: unknown sysctl ({hint})")
            if not _is_int(v):
                raise ScenarioError(f"{where}: expected an integer, got {v!r}")
            group, _, short = name.partition(".")
            if group == "vm":
                try:
                    set_vm_sysctl(self.k, short, v)
                except KernelError:
                    _, lo, hi = VM_SYSCTLS[short]
                    raise ScenarioError(f"{where}: {v} out of range {lo}..{hi}") from None
            else:
                lo, hi = KERNEL_SYSCTLS[short]
                if not lo <= v <= hi:
                    raise ScenarioError(f"{where}: {v} out of range {lo}..{hi}")
                set_kernel_sysctl(self.k, short, v)
