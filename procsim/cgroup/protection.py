"""memory.min and memory.low as reclaim sees them (mm/memcontrol.c
mem_cgroup_calculate_protection, mm/page_counter.c
page_counter_calculate_protection and effective_protection).

Each memcg's effective protection is relative to the root of the reclaim
(the whole machine, or the memcg over its limit): the root itself and the
root memcg are never protected; a child of the root has its own settings;
deeper down, a memcg gets min(usage, its setting), scaled down by its
parent's effective protection over what all its siblings claim
(children_min_usage / children_low_usage: the sum of their min(usage,
setting)) when they claim more than the parent has. (memory_recursiveprot
is off: a v2 mount without the option.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.cgroup.memcontrol import MemCgroup
    from procsim.kernel import Kernel


def effective_protection(usage: int, setting: int, parent_effective: int, siblings_protected: int) -> int:
    protected = min(usage, setting)
    if siblings_protected > parent_effective:
        return protected * parent_effective // siblings_protected
    return protected


def calculate(k: "Kernel", root: "MemCgroup") -> dict["MemCgroup", tuple[int, int]]:
    """(emin, elow) in pages of every memcg in root's subtree, root first."""
    kids: dict[int, list[MemCgroup]] = {}
    for m in k.memcg.by_id.values():
        if m.parent is not None:
            kids.setdefault(m.parent.id, []).append(m)
    out: dict[MemCgroup, tuple[int, int]] = {root: (0, 0)}
    todo = [root]
    while todo:
        parent = todo.pop()
        children = kids.get(parent.id, [])
        pmin, plow = out[parent]
        cmin = sum(min(c.usage, c.min) for c in children)
        clow = sum(min(c.usage, c.low) for c in children)
        for c in sorted(children, key=lambda c: c.id):
            if not c.usage:
                out[c] = (0, 0)
            elif parent is root:
                out[c] = (c.min, c.low)
            else:
                out[c] = (effective_protection(c.usage, c.min, pmin, cmin),
                          effective_protection(c.usage, c.low, plow, clow))
            todo.append(c)
    return out
