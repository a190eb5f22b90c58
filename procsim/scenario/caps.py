"""Scenario keys of a process's capabilities and seccomp state: `caps`,
`no_new_privs`, `seccomp`, `seccomp_filters` (procsim/capability.py), and its
speculation controls, `speculation = {store_bypass = "disable", indirect_branch
= "force-disable"}` as prctl(PR_SET_SPECULATION_CTRL) sets them (procsim/arch/bugs.py)."""
from __future__ import annotations

from procsim import capability
from procsim.arch import bugs
from procsim.scenario.schema import ScenarioError


def parse_capset(v: object, what: str) -> int:
    """A set as /proc/PID/status prints it ("000001ffffffffff"), with 0x or
    not, or an integer."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            return int(v, 16)
        except ValueError:
            pass
    raise ScenarioError(f"{what}: expected a hex capability set (\"0x...\"), got {v!r}")


class CapsBuilder:
    def _caps(self, pid: int, v: dict, where: str) -> None:
        k = self.k
        if "caps" in v:
            sets = {}
            for key, val in v["caps"].items():
                if key not in capability.CAP_SETS:
                    raise ScenarioError(f"{where}: caps.{key}: unknown set (one of {', '.join(capability.CAP_SETS)})")
                sets[key] = parse_capset(val, f"{where}: caps.{key}")
            self._call(f"{where}: caps", capability.set_caps, k, pid, **sets)
        if any(key in v for key in ("no_new_privs", "seccomp", "seccomp_filters")):
            mode = v.get("seccomp", 0)
            filters = v.get("seccomp_filters", 1 if mode == 2 else 0)
            for tid in [t.pid for t in k.group(pid).threads]:
                self._call(where, capability.set_seccomp, k, tid, v.get("no_new_privs", False), mode, filters)
        if "speculation" in v:
            which = {"store_bypass": bugs.PR_SPEC_STORE_BYPASS, "indirect_branch": bugs.PR_SPEC_INDIRECT_BRANCH}
            for key, ctrl in v["speculation"].items():
                if key not in which or ctrl not in bugs.CTRLS:
                    raise ScenarioError(f"{where}: speculation.{key} = {ctrl!r}: expected store_bypass or "
                                        f"indirect_branch = one of {', '.join(bugs.CTRLS)}")
                for tid in [t.pid for t in k.group(pid).threads]:
                    self._call(f"{where}: speculation.{key}", bugs.spec_ctrl_set, k, tid, which[key],
                               bugs.CTRLS[ctrl])
