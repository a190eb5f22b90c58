"""Workingset detection (mm/workingset.c, without MGLRU): shadow entries
and refault distances.

  nonresident_age  per lruvec (here: per memcg, the node has one), the
               count of evictions and activations; an increment ages the
               lruvec and every ancestor's (workingset_age_nonresident), as
               a cgroup's LRU order is part of each ancestor's. Evictions
               (workingset_eviction), activations of inactive folios
               (folio_mark_accessed's workingset_activation, reclaim's
               move_folios_to_lru of active folios) and refault activations
               age it.
  shadow       reclaim that frees a clean page-cache folio (__remove_mapping)
               leaves in its page-cache slot the eviction's memcg (the
               reclaim target's, the root for global reclaim), the
               target's nonresident_age before the eviction, and
               PG_workingset; a swap-cache folio leaves it in its swap slot
               (6.18's swap table). `File.shadow` and `SwapCache.shadow`
               hold them, 0 where none.
  refault      a page-cache miss (read, fault; not a write, __GFP_WRITE) or
               a swap-in that finds a shadow: workingset_refault_<type> in
               the new folio's memcg; the distance (refault - eviction) of
               the eviction memcg's age, at most its workingset size
               (active file, plus inactive file for anon, plus the anon
               lists while the memcg may swap: workingset_test_recent),
               activates the new folio (workingset_activate_<type>, no
               pgactivate: it joins the active list directly); a shadow of a
               PG_workingset folio is also a restore
               (workingset_restore_<type>, PG_workingset set,
               lru_note_cost_refault). A shadow whose memcg is gone counts
               as a refault only.
  shadow nodes the page cache's xarray nodes (64 slots: XA_CHUNK_SHIFT 6)
               that hold shadows and no page (workingset_update_node):
               workingset_nodes. The shadow shrinker (count_shadow_nodes,
               seeks 0: half of the excess a pass) frees the oldest of them
               past node_present_pages >> 3 after each reclaim pass:
               workingset_nodereclaim, each node's shadows gone.
  truncation   truncate_inode_pages_range() removes the shadows of the range
               with its pages; the final iput of an unlinked inode all of
               them.

The events count in vm_events by their /proc/vmstat names and in each
memcg's memory.stat (hierarchical, as memcg lruvec stats are).
Simplifications: the swap-cache shadows use no xarray nodes (6.18's swap
table), so workingset_nodes counts the page cache only; nodereclaim counts
in the root memcg only (the kernel counts it in the memcg that allocated
the node); whether a memcg may swap is free swap on the machine and a
non-zero memory.swap.max up the tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from procsim.mm import page_alloc as M

if TYPE_CHECKING:
    from procsim.cgroup.memcontrol import MemCgroup
    from procsim.kernel import Kernel
    from procsim.mm.vma import File

XA_CHUNK_SHIFT = 6
MEMCG_ID_BITS = 16   # MEM_CGROUP_ID_SHIFT
_WS_BIT = 1


def pack_shadow(memcg_id: int, eviction: np.ndarray, workingset: np.ndarray) -> np.ndarray:
    """The shadow entry: eviction age, memcg id, PG_workingset (never 0: ids start at 1)."""
    return ((eviction.astype(np.int64) << MEMCG_ID_BITS | memcg_id) << _WS_BIT) | workingset.astype(np.int64)


def unpack_shadow(shadows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(memcg ids, eviction ages, workingset bits) of shadow entries."""
    ws = (shadows & 1) != 0
    rest = shadows >> _WS_BIT
    return rest & ((1 << MEMCG_ID_BITS) - 1), rest >> MEMCG_ID_BITS, ws


class Workingset:
    """The node's nonresident ages (per memcg lruvec) and its shadow nodes."""

    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.nonresident_age: dict[int, int] = {}
        # the shadow_nodes list_lru, oldest first: (id(file), node index) -> file
        self.nodes: dict[tuple[int, int], "File"] = {}

    # -- ages -----------------------------------------------------------------------

    def _memcg(self, mid: int) -> "MemCgroup | None":
        return self.k.memcg.by_id.get(int(mid))

    def age_nonresident(self, m: "MemCgroup", n: int) -> None:
        """workingset_age_nonresident(): m's lruvec and its ancestors' age by n."""
        if n <= 0:
            return
        for a in m.ancestors():
            self.nonresident_age[a.id] = self.nonresident_age.get(a.id, 0) + n

    def age_folios(self, pfns: np.ndarray) -> None:
        """workingset_activation() / move_folios_to_lru() of active folios:
        each folio's own lruvec ages (frames not charged to a memcg do not)."""
        mem = self.k.mem
        if not len(pfns) or mem.memcg is None:
            return
        for mid, n in zip(*np.unique(mem.memcg[pfns], return_counts=True)):
            m = self._memcg(mid)
            if m is not None:
                self.age_nonresident(m, int(n))

    def _count(self, name: str, pfns: np.ndarray) -> None:
        """An lruvec state event of each folio's memcg and the node's."""
        mem = self.k.mem
        mem.vm_events.count(name, len(pfns))
        if mem.memcg is not None and len(pfns):
            for mid, n in zip(*np.unique(mem.memcg[pfns], return_counts=True)):
                m = self._memcg(mid)
                if m is not None:
                    m.count_event(name, int(n))

    # -- eviction and refault ----------------------------------------------------------

    def eviction(self, target: "MemCgroup | None", pfns: np.ndarray) -> np.ndarray:
        """workingset_eviction() of order-0 folios, one after the other: the
        shadow of each (the target lruvec's age before it), each eviction
        ageing the target and its ancestors by one."""
        m = target if target is not None else self.k.memcg.root
        start = self.nonresident_age.get(m.id, 0)
        n = len(pfns)
        ws = (self.k.mem.flags[pfns] & M.PG_WORKINGSET) != 0
        shadows = pack_shadow(m.id, start + np.arange(n, dtype=np.int64), ws)
        self.age_nonresident(m, n)
        return shadows

    def workingset_size(self, m: "MemCgroup", file: bool) -> int:
        """What workingset_test_recent() compares a refault distance with:
        m's (hierarchical) active file list, its inactive file list for an
        anonymous refault, and, while m may swap, its active anon list (and
        inactive anon for a file refault)."""
        sizes = lru_sizes(self.k, m)
        size = sizes["active_file"] + (0 if file else sizes["inactive_file"])
        if self.may_swap(m):
            size += sizes["active_anon"] + (sizes["inactive_anon"] if file else 0)
        return size

    def may_swap(self, m: "MemCgroup") -> bool:
        """mem_cgroup_get_nr_swap_pages() > 0 (see the simplification above)."""
        if self.k.mem.swap.nr_free <= 0:
            return False
        return all(a.swap_max > 0 for a in m.ancestors() if a.parent is not None)

    def refault(self, pfns: np.ndarray, shadows: np.ndarray, file: bool) -> None:
        """workingset_refault() for the new folios `pfns` that found `shadows`
        (not yet on an LRU list: a recent one joins the active list)."""
        sel = shadows != 0
        pfns, shadows = pfns[sel], shadows[sel]
        if not len(pfns):
            return
        typ = "file" if file else "anon"
        self._count(f"workingset_refault_{typ}", pfns)
        ids, evictions, ws = unpack_shadow(shadows)
        recent = np.zeros(len(pfns), bool)
        for mid in np.unique(ids).tolist():
            m = self._memcg(mid)
            if m is None:
                continue  # the eviction's memcg is gone: not recent
            of = ids == mid
            distance = self.nonresident_age.get(m.id, 0) - evictions[of]
            recent[of] = distance <= self.workingset_size(m, file)
        act = pfns[recent]
        if not len(act):
            return
        mem = self.k.mem
        from procsim.mm import lru
        lru.add_active(mem, act)
        self.age_folios(act)
        self._count(f"workingset_activate_{typ}", act)
        restore = pfns[recent & ws]
        if len(restore):
            mem.flags[restore] |= np.uint32(M.PG_WORKINGSET)
            self.k.reclaim.note_cost(typ, len(restore), 0)  # lru_note_cost_refault()
            self._count(f"workingset_restore_{typ}", restore)

    # -- the page cache's shadows ---------------------------------------------------------

    def store_file(self, f: "File", idx: np.ndarray, shadows: np.ndarray) -> None:
        """__filemap_remove_folio(folio, shadow): the evicted slots keep their shadows."""
        if not len(idx):
            return
        if f.shadow is None:
            f.shadow = np.zeros(len(f.cache), np.int64)
        f.ensure(int(idx.max()) + 1)
        f.shadow[idx] = shadows
        self.update_nodes(f, idx)

    def take_file(self, f: "File", idx: np.ndarray) -> np.ndarray:
        """The shadows at `idx` (0: none), removed as pages take their slots."""
        if f.shadow is None or not len(idx):
            return np.zeros(len(idx), np.int64)
        inside = idx < len(f.shadow)
        out = np.zeros(len(idx), np.int64)
        out[inside] = f.shadow[idx[inside]]
        if out.any():
            f.shadow[idx[inside]] = 0
        return out

    def clear_file(self, f: "File", first: int = 0) -> None:
        """truncate_inode_pages_range() from page `first` on: its shadows go."""
        if f.shadow is None or first >= len(f.shadow):
            return
        tail = f.shadow[first:]
        if tail.any():
            idx = np.flatnonzero(tail) + first
            tail[:] = 0
            self.update_nodes(f, idx)

    def update_nodes(self, f: "File", idx: np.ndarray) -> None:
        """workingset_update_node() for the xarray nodes holding `idx`: a node
        with shadows and no page is on the shadow list (workingset_nodes),
        any other is not."""
        if f.shadow is None or not len(idx):
            return
        key = id(f)
        for node in np.unique(idx >> XA_CHUNK_SHIFT).tolist():
            lo, hi = node << XA_CHUNK_SHIFT, (node + 1) << XA_CHUNK_SHIFT
            only_shadows = bool(f.shadow[lo:hi].any()) and not f.cache[lo:hi].any()
            if only_shadows:
                self.nodes.setdefault((key, node), f)
            else:
                self.nodes.pop((key, node), None)

    @property
    def nr_nodes(self) -> int:
        """WORKINGSET_NODES."""
        return len(self.nodes)

    def shrink_shadow_nodes(self) -> int:
        """The mm-shadow shrinker after a reclaim pass: count_shadow_nodes()
        allows node_present_pages >> (XA_CHUNK_SHIFT - 3) nodes; with seeks 0
        a pass frees half of the excess, oldest first (shadow_lru_isolate:
        each node's shadows deleted, workingset_nodereclaim). Returns the
        nodes freed."""
        excess = len(self.nodes) - (self.k.mem.nr_pages >> (XA_CHUNK_SHIFT - 3))
        todo = excess // 2 if excess > 0 else 0
        for _ in range(todo):
            (_, node), f = next(iter(self.nodes.items()))
            del self.nodes[id(f), node]
            f.shadow[node << XA_CHUNK_SHIFT: (node + 1) << XA_CHUNK_SHIFT] = 0
        if todo:
            self.k.mem.vm_events.count("workingset_nodereclaim", todo)
            self.k.memcg.root.count_event("workingset_nodereclaim", todo)
        return todo

    def forget_file(self, f: "File") -> None:
        """The inode goes (truncate_inode_pages_final): all its shadows."""
        self.clear_file(f, 0)
        f.shadow = None


def lru_sizes(k: "Kernel", m: "MemCgroup") -> dict[str, int]:
    """The LRU lists of m's subtree (lruvec_page_state of its lruvec), in pages,
    as memory.stat classifies frames (procsim/cgroup/stat.py)."""
    mem = k.mem
    hi = mem.high_water  # (the frames above it have no flags: on no list)
    fl = mem.flags[:hi]
    if m.parent is not None and mem.memcg is not None:
        lut = np.zeros(max(k.memcg.by_id, default=0) + 2, bool)
        lut[k.memcg.subtree_ids(m)] = True
        fl = fl[lut[np.minimum(mem.memcg[:hi], len(lut) - 1)]]
    lru = (fl & M.PG_LRU) != 0
    lru &= (fl & (M.PG_MLOCKED | M.PG_HUGETLB | M.PG_RESERVED)) == 0
    active = (fl & M.PG_ACTIVE) != 0
    swapbacked = (fl & (M.PG_ANON | M.PG_SHMEM)) != 0
    file = ((fl & M.PG_FILE) != 0) & ~swapbacked
    anon = swapbacked
    return {"active_file": int(np.count_nonzero(lru & file & active)),
            "inactive_file": int(np.count_nonzero(lru & file & ~active)),
            "active_anon": int(np.count_nonzero(lru & anon & active)),
            "inactive_anon": int(np.count_nonzero(lru & anon & ~active))}
