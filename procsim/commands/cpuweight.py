"""The fair class's group scheduling as a query: each task group's entity
weight and cfs_rq load on each CPU as the run queues stand now (what
/sys/kernel/debug/sched/debug shows as a group's se->load.weight and
cfs_rq .load; procsim/sched_group.py computes them). cpu.weight, cpu.idle
and cgroup.kill themselves are cgroup_write's files."""

from __future__ import annotations

from procsim.commands.core import query
from procsim.kernel import Kernel
from procsim.sched_group import GroupWeights


def c_cpu_shares(k: Kernel) -> dict:
    """Per task group (cgroup path, or autogroup-N): per CPU with queued load,
    its entity's weight and its cfs_rq's load (scale_load units, as Linux
    keeps them), and the tasks queued there with their share of the CPU in ppm."""
    queued, _ = k.sched.runqueues()
    w = GroupWeights({c: q for c, q in queued.items() if q})

    def name(key) -> str:
        if isinstance(key, tuple):
            return f"autogroup-{key[1]}"
        cg = k.cgroups.by_id(key)
        return cg.path if cg is not None else f"#{key}"

    groups: dict[str, dict] = {}
    for (key, cpu), se in sorted(w.se_weight.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        groups.setdefault(name(key), {})[str(cpu)] = {"se_weight": se, "load": w.load[(key, cpu)]}
    tasks = {}
    for cpu, q in queued.items():
        if q:
            parts = w.share(cpu, q, 1_000_000)
            tasks[str(cpu)] = {str(t.pid): ppm for (t, _, _), ppm in zip(q, parts)}
    return {"groups": groups, "cpus": tasks}


COMMANDS = (query("cpu_shares", c_cpu_shares),)
