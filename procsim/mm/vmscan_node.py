"""LRU reclaim of the one node (mm/vmscan.c): kswapd, direct reclaim,
memcg and proactive reclaim all go through shrink_node() here, over the
active/inactive lists of procsim/mm/lru.py.

  watermarks   an allocation that leaves fewer free pages than the low
               watermark wakes kswapd; below the min watermark the
               allocating task reclaims itself first (direct reclaim,
               allocstall_<zone>, a memory stall PSI sees). The checks run
               when the operation that allocated ends (memcontrol's
               charging()), as reclaim in the middle of a fault would change
               the page tables under it. kswapd (balance_pgdat) reclaims
               until free pages reach the high watermark (pageoutrun).
  get_scan_count  the anon/file balance: file only without free swap (or,
               for cgroup reclaim, with vm.swappiness 0); at priority 0 with
               swappiness both lists equally; else the fractions
               swappiness : 200 - swappiness weighted by the lists' recent
               reclaim costs (lru_note_cost: a page written to swap costs
               SWAP_CLUSTER_MAX, a rotated one 1; halved as they grow past a
               quarter of the lists).
  priorities   DEF_PRIORITY (12) down to 0, each scanning size >> priority
               of each list in SWAP_CLUSTER_MAX batches until nr_to_reclaim.
  aging        shrink_active_list() moves the oldest active frames to the
               inactive list (pgrefill, pgdeactivate) when inactive_is_low()
               (inactive * int_sqrt(10 * GB) < active).
  aging        shrink_active_list() also gives referenced (young) file
               frames of a VM_EXEC mapping another trip on the active list
               (nr_rotated); the others move to the inactive list with
               PG_workingset set.
  inactive     shrink_inactive_list(): each scanned frame (pgscan_*) is
               checked for references (folio_check_references: the young
               PTEs, counted per mapping and cleared by the check, and
               PG_referenced): young and referenced before, young in more
               than one mapping, or young in a VM_EXEC mapping of a file:
               activated; young once: kept with PG_referenced (a second
               look); not young: reclaimed, a file frame referenced before
               only if clean. Reclaim unmaps mapped page cache from every
               PTE (try_to_unmap: a dirty PTE dirties the folio; the next
               access is a major fault that reads the disk), writes anon to
               swap (procsim/mm/vmscan.py's pageout, nr_vmscan_write) and
               frees clean folios (pgsteal_*), leaving shadow entries
               (procsim/mm/workingset.py). Dirty page cache is not written
               by reclaim (6.18's pageout() writes only shmem and swap
               cache): it is marked PG_reclaim (nr_vmscan_immediate_reclaim)
               and activated; a batch of nothing but dirty file frames wakes
               the flusher (wakeup_flusher_threads, WB_REASON_VMSCAN: every
               dirty inode written through the block layer), whose
               writeback end rotates PG_reclaim folios to the inactive list
               (pgrotated), to be freed by a later scan.
  kswapd       after balance_pgdat, kswapd naps HZ/10 if the node is
               balanced: a wake-up during the nap counts
               kswapd_low_wmark_hit_quickly; a nap that ends below the high
               watermark, or a run that could not balance the node,
               kswapd_high_wmark_hit_quickly.
  protection   memory.min and memory.low (mem_cgroup_calculate_protection,
               procsim/cgroup/protection.py): a memcg at or below its
               effective min is never scanned, at or below its effective low
               only when a whole pass over the others reclaimed nothing
               (memcg_low_reclaim; memory.events `low` counts each such
               breach).

Simplifications: shmem and anon mapped by more than one mm are scanned but
kept (no shmem swap-out); frames of large folios stay (reclaim splits only
through pageout's range walk); the lists' order is the frame number, so a
rotation to the tail is a move to the inactive list; writes to swap are
synchronous (the written folio is freed in the same pass); reclaim's
unmapping sends no TLB-flush IPIs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from procsim.mm import filemap, lru, rmap, vmscan, workingset
from procsim.mm import page_alloc as M
from procsim.mm.pagetable import PAGE_SHIFT, PTE_PRESENT, pte_pfn
from procsim.mm.zone import alloc_zone, zones
from procsim.units import NSEC, PAGE_SIZE

if TYPE_CHECKING:
    from procsim.cgroup.memcontrol import MemCgroup
    from procsim.kernel import Kernel
    from procsim.task import Task

DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32
MAX_SWAPPINESS = 200
MAX_RECLAIM_RETRIES = 16
RECLAIM_NS_PER_PAGE = 2_000  # what a page reclaimed costs the task that waits (memcontrol's too)
KINDS = ("kswapd", "direct", "proactive")


def inactive_is_low(inactive: int, active: int) -> bool:
    gb = (inactive + active) >> (30 - PAGE_SHIFT)
    ratio = math.isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


class ScanControl:
    """struct scan_control: what one reclaim asks and what it did."""

    def __init__(self, nr_to_reclaim: int, kind: str, root: "MemCgroup | None", swappiness: int) -> None:
        self.nr_to_reclaim = nr_to_reclaim
        self.kind = kind
        self.root = root              # the memcg reclaimed (None: the whole node)
        self.swappiness = swappiness
        self.priority = DEF_PRIORITY
        self.nr_scanned = 0
        self.nr_reclaimed = 0
        self.memcg_low_reclaim = False
        self.memcg_low_skipped = False


class NodeReclaim:
    """The node's reclaim state: kswapd's wake-up, the allocations that must
    reclaim directly, the lists' reclaim costs."""

    def __init__(self, k: "Kernel") -> None:
        self.k = k
        self.kswapd_wake = False
        self.direct_pending = False
        self.busy = False
        self.anon_cost = 0
        self.file_cost = 0
        self.pgdat_dirty = False       # PGDAT_DIRTY: kswapd met only unqueued dirty file folios
        self.kswapd_nap_until: int | None = None  # kswapd's HZ/10 nap before it sleeps
        k.mem.alloc_hook = self._alloc_hook
        k.mem.workingset = workingset.Workingset(k)
        k.mem.memcg_count = self._count_ids  # the LRU's events in memory.stat too

    # -- watermarks ---------------------------------------------------------------

    def free_pages(self) -> int:
        """NR_FREE_PAGES as meminfo's MemFree: the free frames less the kernel
        pools the snapshot carves out of them (as of the last snapshot: they
        change with tasks and VMAs, not with page allocations)."""
        from procsim.mm.show_mem import mem_snapshot
        k = self.k
        memo = k.mem_snapshot_memo
        m = memo[1] if memo is not None else mem_snapshot(k)
        pools = m.slab_reclaimable + m.slab_unreclaimable + m.vmalloc_used + m.pagetables + m.percpu + m.buffers
        return max(0, k.mem.nr_free - pools)

    def watermarks(self):
        mem = self.k.mem
        return zones(mem.nr_pages - mem.first_free, mem.sysctl.min_free_kbytes)

    def _alloc_hook(self) -> None:
        if self.busy:
            return
        z = self.watermarks()
        free = self.free_pages()
        if free < z.wmark_low:
            self.kswapd_wake = True  # wake_all_kswapds()
            if free < z.wmark_min:
                self.direct_pending = True

    def after_alloc(self, t: "Task | None") -> None:
        """The end of an operation that allocated: the allocating task's
        direct reclaim if it went below min, then kswapd if woken."""
        if self.busy or not (self.kswapd_wake or self.direct_pending):
            return
        self.busy = True
        try:
            if self.direct_pending:
                self.direct_pending = False
                self.direct_reclaim(t)
            if self.kswapd_wake:
                self.kswapd_wake = False
                self.kswapd_woken()
        finally:
            self.busy = False

    def direct_reclaim(self, t: "Task | None") -> int:
        """__alloc_pages_direct_reclaim(): try_to_free_pages() until free pages
        are back over the min watermark or reclaim makes no progress."""
        k = self.k
        mem = k.mem
        mem.vm_events.count(f"allocstall_{alloc_zone(mem.nr_pages - mem.first_free)}")
        z = self.watermarks()
        freed = 0
        for _ in range(MAX_RECLAIM_RETRIES):
            got = self.try_to_free_pages(SWAP_CLUSTER_MAX, "direct", None)
            freed += got
            if not got or self.free_pages() >= z.wmark_min:
                break
        if freed and t is not None:
            k.psi.add_stall(t, "memory", freed * RECLAIM_NS_PER_PAGE)
        return freed

    def wakeup_kswapd(self) -> int:
        """kswapd woken from outside an allocation (live control): a run if
        free pages are under the high watermark; the pages freed."""
        k = self.k
        with k.lock:
            freed = self.balance_pgdat() if self.free_pages() < self.watermarks().wmark_high else 0
            k._changed("reclaim")
        return freed

    def kswapd_woken(self) -> int:
        """wakeup_kswapd() from an allocation: kswapd runs balance_pgdat; if
        it was still in its HZ/10 nap, the low watermark was hit quickly."""
        nap = self.kswapd_nap_until
        if nap is not None and self.k.now < nap:
            self.k.mem.vm_events.count("kswapd_low_wmark_hit_quickly")
        self.kswapd_nap_until = None
        return self.balance_pgdat()

    def kswapd_try_to_sleep(self) -> None:
        """kswapd_try_to_sleep() after balance_pgdat: balanced, a nap of HZ/10
        (its end checks the high watermark again); not balanced, no nap and
        the high watermark hit quickly."""
        k = self.k
        if self.free_pages() < self.watermarks().wmark_high:
            k.mem.vm_events.count("kswapd_high_wmark_hit_quickly")
            self.kswapd_nap_until = None
            return
        self.pgdat_dirty = False  # clear_pgdat_congested(): the node is balanced
        until = k.now + NSEC // 10
        self.kswapd_nap_until = until
        k._push(until, lambda: self._nap_end(until))

    def _nap_end(self, until: int) -> None:
        """The nap's end: under the high watermark, kswapd does not sleep
        (kswapd_high_wmark_hit_quickly) and balances the node again."""
        if self.kswapd_nap_until != until or self.busy:
            return
        self.kswapd_nap_until = None
        if self.free_pages() < self.watermarks().wmark_high:
            self.k.mem.vm_events.count("kswapd_high_wmark_hit_quickly")
            self.busy = True
            try:
                self.balance_pgdat()
            finally:
                self.busy = False
            self.k._changed("reclaim")

    def balance_pgdat(self) -> int:
        """kswapd's balance_pgdat(): reclaim until free pages reach the high
        watermark (one pageoutrun per run)."""
        mem = self.k.mem
        mem.vm_events.count("pageoutrun")
        z = self.watermarks()
        freed = 0
        while self.free_pages() < z.wmark_high:
            got = self.try_to_free_pages(max(z.wmark_high - self.free_pages(), SWAP_CLUSTER_MAX), "kswapd", None)
            freed += got
            if not got:
                break
        self.kswapd_try_to_sleep()
        return freed

    # -- do_try_to_free_pages -------------------------------------------------------

    def try_to_free_pages(self, nr_to_reclaim: int, kind: str, root: "MemCgroup | None",
                          swappiness: int | None = None) -> int:
        """do_try_to_free_pages(): priorities DEF_PRIORITY..0 over the memcgs
        of `root` (None: all) not protected, then, if that reclaimed nothing
        and some were skipped for memory.low, again with them."""
        from procsim.cgroup import protection
        k = self.k
        sc = ScanControl(nr_to_reclaim, kind, root, k.mem.sysctl.swappiness if swappiness is None else swappiness)
        top = root if root is not None else k.memcg.root
        prot = protection.calculate(k, top)
        while True:
            ids = []
            for m, (emin, elow) in prot.items():
                if m.usage <= emin:
                    continue  # mem_cgroup_below_min(): never
                if m.usage <= elow:
                    if not sc.memcg_low_reclaim:
                        sc.memcg_low_skipped = True
                        continue
                    m.memory_event("low")
                ids.append(m.id)
            frames = self._lru_frames(np.array(ids, np.int32))  # (the lists shrink as frames go)
            for sc.priority in range(DEF_PRIORITY, -1, -1):
                self.shrink_lruvec(sc, frames)
                k.mem.workingset.shrink_shadow_nodes()  # shrink_node()'s shrink_slab()
                if sc.nr_reclaimed >= sc.nr_to_reclaim:
                    break
            if sc.nr_reclaimed or not sc.memcg_low_skipped:
                return sc.nr_reclaimed
            sc.memcg_low_reclaim, sc.memcg_low_skipped = True, False

    # -- the lists ---------------------------------------------------------------------

    def _lru_frames(self, ids: np.ndarray) -> np.ndarray:
        """The evictable order-0 frames charged to `ids`."""
        mem = self.k.mem
        hi = mem.high_water  # (no frame above it is on a list)
        fl = mem.flags[:hi]
        ok = ((fl & M.PG_LRU) != 0) & ((fl & (M.PG_MLOCKED | M.PG_HUGETLB | M.PG_RESERVED)) == 0) & (mem.order[:hi] == 0)
        if mem.memcg is not None:
            lut = np.zeros(max(self.k.memcg.by_id, default=0) + 2, bool)
            lut[ids] = True
            ok &= lut[np.minimum(mem.memcg[:hi], len(lut) - 1)]
        return np.flatnonzero(ok)

    def get_scan_count(self, sc: ScanControl, sizes: dict[tuple[str, bool], int]) -> dict[tuple[str, bool], int]:
        """How many frames of each list to scan at sc.priority."""
        swap = self.k.mem.swap
        if sc.swappiness > MAX_SWAPPINESS:  # SWAPPINESS_ANON_ONLY (memory.reclaim swappiness=max)
            return {key: (size >> sc.priority if key[0] == "anon" and swap.nr_free > 0 else 0)
                    for key, size in sizes.items()}
        if swap.nr_free <= 0:
            balance = "file"
        elif sc.root is not None and sc.root.parent is not None and not sc.swappiness:
            balance = "file"
        elif not sc.priority and sc.swappiness:
            balance = "equal"
        else:
            balance = "fract"
        total = self.anon_cost + self.file_cost
        anon_cost, file_cost = total + self.anon_cost, total + self.file_cost
        total = anon_cost + file_cost
        ap = sc.swappiness * (total + 1) // (anon_cost + 1)
        fp = (MAX_SWAPPINESS - sc.swappiness) * (total + 1) // (file_cost + 1)
        out = {}
        for (typ, active), size in sizes.items():
            scan = size >> sc.priority
            if balance == "file":
                scan = scan if typ == "file" else 0
            elif balance == "fract":
                scan = scan * (fp if typ == "file" else ap) // max(ap + fp, 1)
            out[typ, active] = scan
        return out

    def note_cost(self, typ: str, nr_io: int, nr_rotated: int) -> None:
        """lru_note_cost(): the costs decay once they pass a quarter of the lists."""
        cost = nr_io * SWAP_CLUSTER_MAX + nr_rotated
        if typ == "anon":
            self.anon_cost += cost
        else:
            self.file_cost += cost
        mem = self.k.mem
        lrusize = mem.nr_flag[M.PG_ANON] + mem.nr_flag[M.PG_FILE] + mem.nr_flag[M.PG_SHMEM]
        if self.anon_cost + self.file_cost > lrusize // 4:
            self.anon_cost //= 2
            self.file_cost //= 2

    def shrink_lruvec(self, sc: ScanControl, frames: np.ndarray) -> None:
        mem = self.k.mem
        fl = mem.flags[frames]
        keep = ((fl & M.PG_LRU) != 0) & ((fl & M.PG_MLOCKED) == 0) & (mem.order[frames] == 0)
        pfns, fl = frames[keep], fl[keep]
        if not len(pfns):
            return
        filel = lru.is_file_lru(fl)
        active = (fl & M.PG_ACTIVE) != 0
        lists = {(typ, act): pfns[(filel if typ == "file" else ~filel) & (active if act else ~active)]
                 for typ in ("anon", "file") for act in (False, True)}
        sizes = {key: len(v) for key, v in lists.items()}
        scan = self.get_scan_count(sc, sizes)
        for typ in ("anon", "file"):
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                return
            # for_each_evictable_lru(): the inactive list, then the active
            # one, which ages into it only while the inactive is low
            todo = lists[typ, False][: scan[typ, False]]
            for i in range(0, len(todo), SWAP_CLUSTER_MAX):
                if sc.nr_reclaimed >= sc.nr_to_reclaim:
                    break
                self.shrink_inactive_list(sc, typ, todo[i: i + SWAP_CLUSTER_MAX])
            if scan[typ, True] and inactive_is_low(sizes[typ, False], sizes[typ, True]):
                self.shrink_active_list(sc, typ, lists[typ, True][: scan[typ, True]])
        del mem

    def _count(self, name: str, pfns: np.ndarray, n: int | None = None) -> None:
        """A vm event for the machine and (count_memcg_events) each frame's memcg."""
        mem = self.k.mem
        mem.vm_events.count(name, len(pfns) if n is None else n)
        if mem.memcg is not None and len(pfns):
            self._count_ids(name, mem.memcg[pfns])

    def shrink_active_list(self, sc: ScanControl, typ: str, pfns: np.ndarray) -> None:
        """The oldest active frames are scanned (pgrefill); their young bits
        are cleared (folio_referenced). Young file frames of a VM_EXEC
        mapping stay active (one more trip: nr_rotated); the rest move to the
        inactive list with PG_workingset (pgdeactivate)."""
        mem = self.k.mem
        self._count("pgrefill", pfns)
        mapped = mem.mapcount[pfns] > 0
        refs = np.zeros(len(pfns), np.int64)
        exe = np.zeros(len(pfns), bool)
        if mapped.any():
            refs[mapped], exe[mapped] = rmap.folio_referenced(mem, pfns[mapped])
        stay = (refs > 0) & exe & lru.is_file_lru(mem.flags[pfns])
        rotated = pfns[stay]
        if len(rotated):
            mem.workingset.age_folios(rotated)  # move_folios_to_lru() of active folios
        down = pfns[~stay]
        lru.deactivate(mem, down)
        mem.flags[down] |= np.uint32(M.PG_WORKINGSET)
        self.note_cost(typ, 0, len(rotated))

    def _count_ids(self, name: str, ids: np.ndarray) -> None:
        """count_memcg_events() for frames charged to `ids` (one each)."""
        by = self.k.memcg.by_id
        for mid, c in zip(*np.unique(ids, return_counts=True)):
            m = by.get(int(mid))
            if m is not None:
                m.count_event(name, int(c))

    def folio_check_references(self, pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """folio_check_references() of each frame: (activate, keep, reclaim
        only if clean). The young PTEs are counted per mapping and cleared
        (folio_referenced; an accessed bit idle tracking took, PG_young,
        counts once); PG_referenced is tested and cleared, and set again on
        a young frame, which is activated if it was referenced before, is
        young in more than one mapping or in a VM_EXEC mapping of a file,
        and kept (another trip on the inactive list) otherwise. A frame
        nobody found young is reclaimed; a file frame referenced before
        only if it is clean (FOLIOREF_RECLAIM_CLEAN)."""
        mem = self.k.mem
        fl = mem.flags[pfns]
        mapped = mem.mapcount[pfns] > 0
        refs = np.zeros(len(pfns), np.int64)
        exe = np.zeros(len(pfns), bool)
        if mapped.any():
            refs[mapped], exe[mapped] = rmap.folio_referenced(mem, pfns[mapped])
        pg_young = mapped & ((fl & M.PG_YOUNG) != 0)
        refs += pg_young
        mem.flags[pfns[pg_young]] &= ~np.uint32(M.PG_YOUNG)
        file = lru.is_file_lru(fl)
        referenced = (fl & M.PG_REFERENCED) != 0
        young = refs > 0
        mem.flags[pfns] = np.where(young, mem.flags[pfns] | np.uint32(M.PG_REFERENCED),
                                   mem.flags[pfns] & ~np.uint32(M.PG_REFERENCED))
        act = young & (referenced | (refs > 1) | (exe & file))
        keep = young & ~act
        clean_only = ~young & referenced & file
        return act, keep, clean_only

    def shrink_inactive_list(self, sc: ScanControl, typ: str, pfns: np.ndarray) -> None:
        """shrink_inactive_list() + shrink_folio_list() of one batch."""
        k, mem = self.k, self.k.mem
        if not len(pfns):
            return
        kind = sc.kind
        self._count(f"pgscan_{kind}", pfns)
        mem.vm_events.count(f"pgscan_{typ}", len(pfns))
        sc.nr_scanned += len(pfns)
        fl = mem.flags[pfns]
        # folio_check_dirty_writeback(): dirty page cache the flusher has not
        # written (writeback is instantaneous here: none is under writeback)
        unqueued_dirty = int(np.count_nonzero((fl & (M.PG_FILE | M.PG_DIRTY)) == (M.PG_FILE | M.PG_DIRTY))) \
            if typ == "file" else 0
        act, keep, clean_only = self.folio_check_references(pfns)
        cand = pfns[~act & ~keep]
        clean_only = clean_only[~act & ~keep]
        owners = mem.memcg[cand].copy() if mem.memcg is not None else None
        before = mem.nr_free
        nr_io = 0
        if typ == "file":
            act = act.copy()
            act[np.flatnonzero(~act & ~keep)[self._reclaim_file(sc, cand, clean_only)]] = True
        else:
            nr_io = self._reclaim_anon(sc, cand)
        activated = pfns[act]
        if len(activated):
            lru.activate(mem, activated)  # (pgactivate; move_folios_to_lru ages the workingset)
        freed = mem.nr_free - before
        if freed:
            mem.vm_events.count(f"pgsteal_{kind}", freed)
            mem.vm_events.count(f"pgsteal_{typ}", freed)
            if owners is not None:
                self._count_ids(f"pgsteal_{kind}", owners[mem.flags[cand] == 0])
        sc.nr_reclaimed += freed
        if typ == "file" and unqueued_dirty == len(pfns):
            # the tail of the list is all dirty: nudge the flusher
            from procsim.block.writeback import wakeup_flusher_threads
            wakeup_flusher_threads(k)
        self.note_cost(typ, nr_io, len(pfns) - freed)

    def _reclaim_file(self, sc: ScanControl, pfns: np.ndarray, clean_only: np.ndarray) -> np.ndarray:
        """Page-cache frames to reclaim: mapped ones are unmapped first
        (try_to_unmap); dirty ones get PG_reclaim and are activated (returned
        as a mask: reclaim does not write page cache; kswapd, meeting one
        marked before on a node full of dirty pages, keeps a folio referenced
        before, as its pageout() would still refuse it); clean ones leave the
        page cache for a shadow entry and are freed (__remove_mapping)."""
        mem = self.k.mem
        activate = np.zeros(len(pfns), bool)
        if not len(pfns):
            return activate
        fl = mem.flags[pfns]
        ok = ((fl & M.PG_FILE) != 0) & ((fl & M.PG_SHMEM) == 0)
        mapped = ok & (mem.mapcount[pfns] > 0)
        if mapped.any():
            dirtied = rmap.try_to_unmap_file(mem, pfns[mapped])
            if dirtied.any():  # the PTEs' dirty bits move to the folios
                self._mark_dirty(pfns[mapped][dirtied])
            ok &= mem.mapcount[pfns] == 0
        fl = mem.flags[pfns]
        dirty = ok & ((fl & M.PG_DIRTY) != 0)
        if dirty.any():
            reclaim = (fl & M.PG_RECLAIM) != 0
            kswapd_writes = (sc.kind == "kswapd") & reclaim & self.pgdat_dirty
            imm = dirty & ~kswapd_writes
            mem.vm_events.count("nr_vmscan_immediate_reclaim", int(imm.sum()))
            mem.flags[pfns[dirty]] |= np.uint32(M.PG_RECLAIM)
            activate = dirty & ~(kswapd_writes & clean_only)
        if sc.kind == "kswapd" and dirty.sum() == len(pfns):
            self.pgdat_dirty = True  # shrink_node(): nr_unqueued_dirty == nr_taken
        self._drop_page_cache(sc, pfns[ok & ~dirty])
        return activate

    def _mark_dirty(self, pfns: np.ndarray) -> None:
        """try_to_unmap_one(): a dirty PTE's folio_mark_dirty()."""
        mem = self.k.mem
        filemap.account_dirtied(mem, pfns)
        by_id = {f.rmap_id: f for f in self.k.vfs.files.values() if f.rmap_id}
        for mid in np.unique(mem.rmap_mapping[pfns]).tolist():
            f = by_id.get(int(mid))
            if f is not None:
                filemap.inode_dirtied(mem, f)

    def _drop_page_cache(self, sc: ScanControl, pfns: np.ndarray) -> None:
        """__remove_mapping() of clean page cache nobody maps: a shadow entry
        (workingset_eviction, the reclaim target's age) takes each slot."""
        mem = self.k.mem
        fl = mem.flags[pfns]
        ok = pfns[(mem.mapcount[pfns] == 0) & ((fl & (M.PG_DIRTY | M.PG_SHMEM)) == 0) & ((fl & M.PG_FILE) != 0)]
        if not len(ok):
            return
        ids = mem.rmap_mapping[ok]
        by_id = {f.rmap_id: f for f in self.k.vfs.files.values() if f.rmap_id}
        ws = mem.workingset
        for mid in np.unique(ids).tolist():
            f = by_id.get(int(mid))
            if f is None or f.shmem or f.hugetlb:
                continue
            p = ok[ids == mid]
            idx = mem.rmap_index[p]
            inside = idx < len(f.cache)
            p, idx = p[inside], idx[inside]
            p = p[f.cache[idx] == p]
            idx = mem.rmap_index[p]
            shadows = ws.eviction(sc.root, p)
            f.cache[idx] = 0
            mem.free(p)
            ws.store_file(f, idx, shadows)

    def _reclaim_anon(self, sc: ScanControl, pfns: np.ndarray) -> int:
        """Unmapped swap-cache folios are freed; mapped anonymous frames only
        one mm maps go to swap (pageout) and, written, are freed. Returns
        the pages written."""
        k, mem = self.k, self.k.mem
        if not len(pfns) or mem.swap.nr_free <= 0 and not mem.swap_cache.nr_swapcached:
            return 0
        sc_ = mem.swap_cache
        cached = sc_.cached(pfns) & (mem.mapcount[pfns] == 0) & ~np.isin(pfns, sc_.held)
        gone = pfns[cached]
        if len(gone):
            self._evict_swapcache(sc, gone)
        if mem.swap.nr_free <= 0 or not sc.swappiness and sc.root is not None and sc.root.parent is not None:
            return 0
        fl = mem.flags[pfns]
        todo = pfns[~cached & (mem.mapcount[pfns] == 1) & ((fl & M.PG_ANON) != 0) & ((fl & M.PG_SWAPBACKED) != 0)]
        if not len(todo):
            return 0
        written = mem.swap.pswpout
        for mm, vas in _anon_addresses(mem, todo):
            for lo, hi in _runs(vas):
                vmscan.pageout(mm, lo, hi)
        # written back, the swap cache's copies nobody maps go (shrink_folio_list frees them)
        out = todo[sc_.cached(todo) & (mem.mapcount[todo] == 0) & ~np.isin(todo, sc_.held)]
        if len(out):
            self._evict_swapcache(sc, out)
        n = mem.swap.pswpout - written
        return n

    def _evict_swapcache(self, sc: ScanControl, pfns: np.ndarray) -> None:
        """__remove_mapping() of swap-cache folios: each slot keeps a shadow
        entry (workingset_eviction) while swap entries still use it."""
        mem = self.k.mem
        shadows = mem.workingset.eviction(sc.root, pfns)
        slots = mem.swap_cache.slot[pfns].astype(np.int64)
        mem.swap_cache.delete(pfns)
        mem.free(pfns)
        mem.swap_cache.store_shadows(slots, shadows)


def _anon_addresses(mem: M.MemMap, pfns: np.ndarray):
    """rmap_walk_anon(): (mm, addresses) of the PTEs that map each frame."""
    mapping = mem.rmap_mapping[pfns]
    index = mem.rmap_index[pfns]
    cands = rmap._candidates(mem)
    for mid in np.unique(mapping[mapping != 0]).tolist():
        of = np.flatnonzero(mapping == mid)
        for mm, v in cands.get(mid, ()):
            if v.anon_vma is None or v.anon_vma.root != mid:
                continue
            sel = of[(index[of] >= v.pgoff) & (index[of] < v.pgoff + v.npages)]
            if not len(sel):
                continue
            vas = v.start + ((index[sel] - v.pgoff) << PAGE_SHIFT)
            ptes = np.array([int(mm.pgtable.read(int(a), int(a) + PAGE_SIZE)[0]) for a in vas], np.uint64)
            hit = ((ptes & PTE_PRESENT) != 0) & (pte_pfn(ptes) == pfns[sel])
            if hit.any():
                yield mm, np.sort(vas[hit])


def _runs(vas: np.ndarray):
    """Contiguous [lo, hi) ranges of page addresses."""
    if not len(vas):
        return
    breaks = np.flatnonzero(np.diff(vas) != PAGE_SIZE) + 1
    for part in np.split(vas, breaks):
        yield int(part[0]), int(part[-1]) + PAGE_SIZE
