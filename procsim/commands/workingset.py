"""The workingset query (procsim/mm/workingset.py): each memcg's
nonresident age, the shadow entries per file and swap area, the shadow
nodes, and the workingset events as /proc/vmstat counts them."""

from __future__ import annotations

import numpy as np

from procsim.commands.core import query
from procsim.kernel import Kernel


def c_workingset(k: Kernel) -> dict:
    """nonresident_age by cgroup path, shadow entries by file path (files
    that have any), swap-slot shadows, workingset_nodes and the events."""
    ws = k.mem.workingset
    ages = {m.cgroup.path: ws.nonresident_age.get(m.id, 0) for m in k.memcg.by_id.values()}
    files = {f.path: int(np.count_nonzero(f.shadow)) for f in k.vfs.files.values()
             if f.shadow is not None and f.shadow.any()}
    ev = {name: n for name, n in sorted(k.mem.vm_events.reclaim.items()) if name.startswith("workingset_")}
    return {"nonresident_age": dict(sorted(ages.items())), "file_shadows": dict(sorted(files.items())),
            "swap_shadows": int(np.count_nonzero(k.mem.swap_cache.shadow)), "nodes": ws.nr_nodes,
            "events": ev}


COMMANDS = (
    query("workingset", c_workingset),
)
