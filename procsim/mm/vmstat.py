"""The vm_event counters (include/linux/vm_event_item.h) and the NUMA
allocation counters, as kernel state: each is counted where Linux counts
it, never derived by a reader, and only ever grows.

    pgfault      every fault a task takes, minor and major
                 (count_vm_event(PGFAULT) in handle_mm_fault; MmSyscalls._charge_faults)
    pgmajfault   faults that had to read a page in: swap-ins the swap cache
                 could not serve (mm_account_fault)
    pgalloc_<z>  pages handed out by the page allocator (MemMap._set_new),
                 charged to the zone the zonelist tries first (zone.alloc_zone)
    numa_hit, numa_local
                 allocations, one per call (zone_statistics()): an order-0
                 page each, a large folio once; one node, so every one is local
    pgfree       pages given back (MemMap.free/free_folio), and at boot every
                 free frame memblock_free_all() releases to the buddy allocator,
                 so pgfree - pgalloc is the allocator's free frames, as on Linux
    pgpgin       kB read from disk: file pages read into the page cache
                 (filemap.find_or_create; shmem pages are zero-filled, no I/O)
                 and swap-ins, counted by submit_bio (procsim/block/blk_core.py)
    pgpgout      kB written: writeback of dirty page cache and swap-outs
                 (the counter, submit_bio's), plus the journal and log
                 writes of an idle server, a pure function of the clock
                 (pgpgout_kb: the root disk's journal commits)

pswpin/pswpout are the swap device's own counts (procsim/mm/swap.py).

The LRU and reclaim events (procsim/mm/lru.py, procsim/mm/vmscan_node.py)
are in `reclaim`, by their /proc/vmstat names: pgactivate, pgdeactivate,
pgrefill, pgscan_{kswapd,direct,proactive}, pgsteal_*, pgscan_anon/file,
pgsteal_anon/file, allocstall_<zone>, pageoutrun, kswapd_low_wmark_hit_quickly,
kswapd_high_wmark_hit_quickly, pgrotated, nr_vmscan_write,
nr_vmscan_immediate_reclaim, and the workingset's workingset_refault_*,
workingset_activate_*, workingset_restore_*, workingset_nodereclaim
(procsim/mm/workingset.py; workingset_nodes is its gauge).
"""

from __future__ import annotations

from procsim.units import NSEC


PGPGOUT_KB_PER_S = 2  # journal and log writes of an idle server


class VmEvents:
    """The machine's event counters (vm_event_states summed over CPUs)."""
    __slots__ = ("pgfault", "pgmajfault", "pgalloc", "alloc_zone", "numa_hit", "pgfree", "pgpgin", "pgpgout",
                 "pgactivate", "pgdeactivate", "reclaim")

    def __init__(self, alloc_zone: str, boot_free: int) -> None:
        self.pgfault = 0
        self.pgmajfault = 0
        self.pgalloc = 0
        self.alloc_zone = alloc_zone  # "normal", "dma32" or "dma"
        self.numa_hit = 0
        self.pgfree = boot_free
        self.pgpgin = 0
        self.pgpgout = 0  # submit_bio's writes; vmstat adds pgpgout_kb(now)
        self.pgactivate = 0
        self.pgdeactivate = 0
        self.reclaim: dict[str, int] = {}  # reclaim's events by name (count_vm_events)

    def count(self, name: str, n: int = 1) -> None:
        if n:
            self.reclaim[name] = self.reclaim.get(name, 0) + n

    def items(self) -> dict[str, int]:
        """The counters by their /proc/vmstat names (the rest are 0)."""
        return {"pgfault": self.pgfault, "pgmajfault": self.pgmajfault,
                f"pgalloc_{self.alloc_zone}": self.pgalloc, "numa_hit": self.numa_hit,
                "numa_local": self.numa_hit, "pgfree": self.pgfree, "pgpgin": self.pgpgin,
                "pgactivate": self.pgactivate, "pgdeactivate": self.pgdeactivate, **self.reclaim}


def pgpgout_kb(now_ns: int) -> int:
    """pgpgout at `now_ns` since boot: the steady trickle of an idle server."""
    return now_ns * PGPGOUT_KB_PER_S // NSEC
