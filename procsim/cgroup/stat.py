"""What the controllers' stat files count (memory_stat_format,
cgroup_base_stat_cputime_show, blkcg_print_stat, pids_current), from the
model, as pure functions of the kernel's state. Per-frame counts come from
one pass over the frames per generation (the charge of each, by memcg id)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.show_mem import THREAD_STACK_PAGES
from procsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.cgroup.memcontrol import MemCgroup
    from procsim.kernel import Kernel

# memory_stats[] then memory_stat_format()'s events, 6.18 with CONFIG_ZSWAP,
# CONFIG_SWAP, CONFIG_TRANSPARENT_HUGEPAGE, CONFIG_NUMA_BALANCING off (a KVM guest)
STAT_KEYS = ("anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables", "percpu", "sock",
             "vmalloc", "shmem", "zswap", "zswapped", "file_mapped", "file_dirty", "file_writeback",
             "swapcached", "anon_thp", "file_thp", "shmem_thp", "inactive_anon", "active_anon",
             "inactive_file", "active_file", "unevictable", "slab_reclaimable", "slab_unreclaimable", "slab",
             "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
             "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
             "workingset_nodereclaim", "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged",
             "pgdemote_proactive", "pgscan", "pgsteal", "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged",
             "pgscan_proactive", "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgsteal_proactive",
             "pgfault", "pgmajfault", "pgrefill", "pgactivate", "pgdeactivate", "pglazyfree", "pglazyfreed",
             "swpin_zero", "swpout_zero", "zswpin", "zswpout", "zswpwb", "thp_fault_alloc",
             "thp_collapse_alloc", "thp_swpout", "thp_swpout_fallback")
# the frame classes counted per memcg (pages)
_CLASSES = ("anon", "file", "shmem", "file_mapped", "file_dirty", "swapcached", "anon_thp", "shmem_thp",
            "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")


def _frame_counts(k: "Kernel") -> dict[str, np.ndarray]:
    """Per memcg id, the pages of each class (memo of this generation)."""
    memo = getattr(k.memcg, "_memo", None)
    if memo is not None and memo[0] == k.generation:
        return memo[1]
    mem = k.mem
    ids = mem.memcg
    used = np.nonzero(ids)[0]
    n = max(k.memcg.by_id, default=0) + 1
    fl = mem.flags[used]
    mid = ids[used]
    mapped = mem.mapcount[used] > 0
    big = mem.order[used] > 0
    anon = (fl & M.PG_ANON) != 0
    cache = (fl & (M.PG_FILE | M.PG_SHMEM)) != 0
    swapc = (fl & M.PG_SWAPCACHE) != 0
    swapbacked = anon | ((fl & M.PG_SHMEM) != 0)
    active = (fl & M.PG_ACTIVE) != 0
    unevict = (fl & M.PG_MLOCKED) != 0
    lru = ~unevict
    masks = {
        "anon": anon & (mapped | big) & ~(swapc & ~mapped),
        "file": cache | swapc,
        "shmem": (fl & M.PG_SHMEM) != 0,
        "file_mapped": cache & mapped,
        "file_dirty": ((fl & M.PG_FILE) != 0) & ((fl & M.PG_DIRTY) != 0),
        "swapcached": swapc,
        "anon_thp": anon & (mem.order[used] >= M.HPAGE_PMD_ORDER),
        "shmem_thp": ((fl & M.PG_SHMEM) != 0) & (mem.order[used] >= M.HPAGE_PMD_ORDER),
        "inactive_anon": swapbacked & lru & ~active,
        "active_anon": swapbacked & lru & active,
        "inactive_file": cache & ~swapbacked & lru & ~active,
        "active_file": cache & ~swapbacked & lru & active,
        "unevictable": unevict,
    }
    out = {name: np.bincount(mid[m], minlength=n) for name, m in masks.items()}
    out["charged"] = np.bincount(mid, minlength=n)
    k.memcg._memo = (k.generation, out)
    return out


def _members(k: "Kernel", m: "MemCgroup"):
    """The thread groups whose memcg is m or below."""
    for tg in k.groups.values():
        if not tg.zombie and m in k.memcg.memcg_of_path(tg.cgroup).ancestors():
            yield tg


def kernel_pages(k: "Kernel", m: "MemCgroup") -> tuple[int, int]:
    """(kernel stack kB, page-table bytes) of the tasks in m's subtree."""
    kstack = pgt = 0
    for tg in _members(k, m):
        kstack += len([t for t in tg.threads if not t.dead]) * THREAD_STACK_PAGES * PAGE_SIZE // 1024
        if tg.mm is not None:
            pgt += tg.mm.pgtable.pgtables_bytes()
    return kstack, pgt


def charged_pages(k: "Kernel", m: "MemCgroup") -> int:
    """Frames whose charge is m's or a descendant's (the page counter's truth)."""
    c = _frame_counts(k)["charged"]
    return int(sum(c[i] for i in k.memcg.subtree_ids(m) if i < len(c)))


def memory_current(k: "Kernel", m: "MemCgroup") -> int:
    """memory.current in bytes: the charged frames and the kernel memory
    (stacks, page tables) of its tasks."""
    kstack, pgt = kernel_pages(k, m)
    return m.usage * PAGE_SIZE + kstack * 1024 + pgt


def memory_peak(k: "Kernel", m: "MemCgroup") -> int:
    """memory.peak: the frames' high watermark with today's kernel memory
    (stacks and page tables are counted as of now, not at their peak)."""
    kstack, pgt = kernel_pages(k, m)
    return max(m.watermark * PAGE_SIZE + kstack * 1024 + pgt, memory_current(k, m))


def memory_stat(k: "Kernel", m: "MemCgroup") -> bytes:
    counts = _frame_counts(k)
    ids = [i for i in k.memcg.subtree_ids(m) if i < len(counts["charged"])]
    v = {name: int(sum(counts[name][i] for i in ids)) * PAGE_SIZE for name in _CLASSES}
    kstack, pgt = kernel_pages(k, m)
    v.update(kernel=kstack * 1024 + pgt, kernel_stack=kstack * 1024, pagetables=pgt, slab=0)
    ev = m.vm_events
    for name in ("pgscan_kswapd", "pgscan_direct", "pgscan_proactive", "pgsteal_kswapd", "pgsteal_direct",
                 "pgsteal_proactive", "pgfault", "pgmajfault", "pgrefill", "pgactivate", "pgdeactivate",
                 # the lruvec's workingset events (procsim/mm/workingset.py), hierarchical
                 "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
                 "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
                 "workingset_nodereclaim"):
        v[name] = ev.get(name, 0)
    # memcg_page_state_output: pgscan and pgsteal sum their kinds (khugepaged's are 0 here)
    v["pgscan"] = v["pgscan_kswapd"] + v["pgscan_direct"] + v["pgscan_proactive"]
    v["pgsteal"] = v["pgsteal_kswapd"] + v["pgsteal_direct"] + v["pgsteal_proactive"]
    return "".join(f"{key} {v.get(key, 0)}\n" for key in STAT_KEYS).encode()


def nr_tasks(k: "Kernel", cg: "Cgroup") -> int:
    """pids.current: the tasks (threads, zombies included until reaped) here
    and below, as the pids controller counts them (cgroup/pids.py)."""
    return cg.pids_current
