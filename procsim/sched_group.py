"""Group scheduling (kernel/sched/fair.c, the CONFIG_FAIR_GROUP_SCHED half):
how a CPU's time is shared among the fair tasks queued on it.

Each task group (a cgroup with the cpu controller, or an autogroup for a
task of the root cgroup) has a sched entity on each CPU, queued in its
parent's cfs_rq, whose weight is the group's shares spread over the CPUs
by where its load is (calc_group_shares):

    se.load.weight = tg->shares * cfs_rq->load / tg_weight,  in [MIN_SHARES, tg->shares]

with cfs_rq->load the summed weight of the entities queued in the group's
cfs_rq on that CPU and tg_weight that load summed over every CPU. Linux uses
the PELT load averages there (max(load.weight, load_avg), tg->load_avg); the
model uses the queued weight, which is what those averages settle to for
tasks that stay runnable. A task's entity weighs sched_prio_to_weight of
its nice (3 for SCHED_IDLE); a SCHED_IDLE group (cpu.idle) weighs 3.

A CPU's span of time is then split top-down: at every cfs_rq each queued
entity gets the part of its parent's time its weight is of the queue's
(largest remainder, in queue order, so the ns add up exactly). Over a span
the fair class gives every runnable entity of a cfs_rq the same virtual
time, as EEVDF does on average (each turn is a base slice; a heavier entity
gets more turns, not longer ones); the turns themselves are counted
(slice_turn), not played one by one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

MIN_SHARES = 2  # (1UL << 1), in scale_load units
SHIFT = 10      # SCHED_FIXEDPOINT_SHIFT

# a task's chain of task groups, root side first: (key, tg->shares scale_load_down)
Chain = tuple[tuple[Hashable, int], ...]


def split(total: int, weights: Sequence[int]) -> list[int]:
    """total ns in proportion to weights, exact (largest remainder, ties in order)."""
    w = sum(weights)
    if w <= 0:
        return [0] * len(weights)
    parts = [total * x // w for x in weights]
    left = total - sum(parts)
    if left:
        rems = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % w), i))
        for i in rems[:left]:
            parts[i] += 1
    return parts


class GroupWeights:
    """The per-CPU weights of every task group with queued load, from the
    runnable tasks of each CPU (their chains and their own weights)."""

    def __init__(self, queued: dict[int, list[tuple[object, Chain, int]]]) -> None:
        # queued: cpu -> [(task, chain, task weight scale_load_down)]
        self.load: dict[tuple[Hashable, int], int] = {}     # (tg, cpu) -> cfs_rq->load.weight (scaled)
        self.se_weight: dict[tuple[Hashable, int], int] = {}  # (tg, cpu) -> its entity's weight (scaled)
        shares: dict[Hashable, int] = {}
        depth: dict[Hashable, int] = {}
        parent: dict[Hashable, Hashable | None] = {}
        for cpu, tasks in queued.items():
            for _, chain, w in tasks:
                for i, (key, sh) in enumerate(chain):
                    shares[key], depth[key] = sh, i
                    parent[key] = chain[i - 1][0] if i else None
                if chain:
                    k = (chain[-1][0], cpu)
                    self.load[k] = self.load.get(k, 0) + (w << SHIFT)
        # deepest groups first: a group's load includes its child groups' entity weights
        for key in sorted(shares, key=lambda g: -depth[g]):
            cpus = [c for c in queued if (key, c) in self.load]
            tg_weight = sum(self.load[(key, c)] for c in cpus)
            tg_shares = shares[key] << SHIFT
            for c in cpus:
                load = self.load[(key, c)]
                w = tg_shares * load // tg_weight if tg_weight else tg_shares
                w = max(MIN_SHARES, min(tg_shares, w))
                self.se_weight[(key, c)] = w
                up = parent[key]
                if up is not None:
                    self.load[(up, c)] = self.load.get((up, c), 0) + w

    def share(self, cpu: int, tasks: list[tuple[object, Chain, int]], dt: int) -> list[int]:
        """dt ns of `cpu` split among its queued tasks, hierarchically."""
        out = [0] * len(tasks)
        # a tree of cfs_rqs: group key (None: the root) -> [(child key or task index, weight)]
        children: dict[Hashable | None, list[tuple[tuple[str, Hashable], int]]] = {}
        seen: set[Hashable] = set()
        for i, (_, chain, w) in enumerate(tasks):
            up: Hashable | None = None
            for key, _sh in chain:
                if key not in seen:
                    seen.add(key)
                    children.setdefault(up, []).append((("g", key), self.se_weight[(key, cpu)]))
                up = key
            children.setdefault(up, []).append((("t", i), w << SHIFT))
        todo: list[tuple[Hashable | None, int]] = [(None, dt)]
        while todo:
            key, ns = todo.pop()
            ents = children.get(key, [])
            for ((kind, ref), _w), part in zip(ents, split(ns, [w for _, w in ents])):
                if kind == "t":
                    out[ref] = part  # type: ignore[index]
                else:
                    todo.append((ref, part))
        return out
