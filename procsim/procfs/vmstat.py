"""/proc/vmstat (spec §19): vmstat_show() over the node and zone stat items
of the memory snapshot (procsim/mm/show_mem.py) and the event counters the
kernel keeps (procsim/mm/vmstat.py, the swap device's pswpin/pswpout)."""

from __future__ import annotations

from procsim.kernel import Kernel
from procsim.mm.buddy import zone_states
from procsim.mm.show_mem import mem_snapshot
from procsim.mm.vmstat import pgpgout_kb
from procsim.procfs.context import Ctx

# The 6.18 key set and order of the reference VM (no CONFIG_DEBUG_TLBFLUSH, so
# no nr_tlb_* items); items not derived below print 0.
VMSTAT_KEYS = tuple("""
nr_free_pages nr_free_pages_blocks nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file
nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_zspages nr_free_cma
numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other nr_inactive_anon
nr_active_anon nr_inactive_file nr_active_file nr_unevictable nr_slab_reclaimable
nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes workingset_refault_anon
workingset_refault_file workingset_activate_anon workingset_activate_file workingset_restore_anon
workingset_restore_file workingset_nodereclaim nr_anon_pages nr_mapped nr_file_pages nr_dirty
nr_writeback nr_shmem nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages nr_file_pmdmapped
nr_anon_transparent_hugepages nr_vmscan_write nr_vmscan_immediate_reclaim nr_dirtied nr_written
nr_throttled_written nr_kernel_misc_reclaimable nr_foll_pin_acquired nr_foll_pin_released
nr_kernel_stack nr_page_table_pages nr_sec_page_table_pages nr_iommu_pages nr_swapcached
pgpromote_success pgpromote_candidate pgpromote_candidate_nrl pgdemote_kswapd pgdemote_direct
pgdemote_khugepaged pgdemote_proactive nr_hugetlb nr_balloon_pages nr_kernel_file_pages
nr_dirty_threshold nr_dirty_background_threshold nr_memmap_pages nr_memmap_boot_pages pgpgin pgpgout
pswpin pswpout pgalloc_dma pgalloc_dma32 pgalloc_normal pgalloc_movable pgalloc_device
allocstall_dma allocstall_dma32 allocstall_normal allocstall_movable allocstall_device pgskip_dma
pgskip_dma32 pgskip_normal pgskip_movable pgskip_device pgfree pgactivate pgdeactivate pglazyfree
pgfault pgmajfault pglazyfreed pgrefill pgreuse pgsteal_kswapd pgsteal_direct pgsteal_khugepaged
pgsteal_proactive pgscan_kswapd pgscan_direct pgscan_khugepaged pgscan_proactive
pgscan_direct_throttle pgscan_anon pgscan_file pgsteal_anon pgsteal_file zone_reclaim_success
zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal kswapd_low_wmark_hit_quickly
kswapd_high_wmark_hit_quickly pageoutrun pgrotated drop_pagecache drop_slab oom_kill
numa_pte_updates numa_huge_pte_updates numa_hint_faults numa_hint_faults_local numa_pages_migrated
pgmigrate_success pgmigrate_fail thp_migration_success thp_migration_fail thp_migration_split
compact_migrate_scanned compact_free_scanned compact_isolated compact_stall compact_fail
compact_success compact_daemon_wake compact_daemon_migrate_scanned compact_daemon_free_scanned
htlb_buddy_alloc_success htlb_buddy_alloc_fail unevictable_pgs_culled unevictable_pgs_scanned
unevictable_pgs_rescued unevictable_pgs_mlocked unevictable_pgs_munlocked unevictable_pgs_cleared
unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback thp_fault_fallback_charge
thp_collapse_alloc thp_collapse_alloc_failed thp_file_alloc thp_file_fallback
thp_file_fallback_charge thp_file_mapped thp_split_page thp_split_page_failed
thp_deferred_split_page thp_underused_split_page thp_split_pmd thp_scan_exceed_none_pte
thp_scan_exceed_swap_pte thp_scan_exceed_share_pte thp_split_pud thp_zero_page_alloc
thp_zero_page_alloc_failed thp_swpout thp_swpout_fallback balloon_inflate balloon_deflate
balloon_migrate swap_ra swap_ra_hit swpin_zero swpout_zero ksm_swpin_copy cow_ksm zswpin zswpout
zswpwb direct_map_level2_splits direct_map_level3_splits direct_map_level2_collapses
direct_map_level3_collapses nr_unstable
""".split())


def vmstat_values(k: Kernel) -> dict[str, int]:
    """The vmstat items the model determines (the rest are 0)."""
    m = mem_snapshot(k)
    # global_dirtyable_memory(): free + file LRU, less the reserves
    dirtyable = max(m.free + m.active_file + m.inactive_file - m.zones.totalreserve, 0)
    lru = {"inactive_anon": m.inactive_anon, "active_anon": m.active_anon,
           "inactive_file": m.inactive_file, "active_file": m.active_file, "unevictable": m.unevictable}
    v = {f"nr_zone_{name}": n for name, n in lru.items()}
    v.update({f"nr_{name}": n for name, n in lru.items()})
    v.update({
        "nr_free_pages": m.free,
        # free pages in wholly free pageblocks (the buddy allocator's)
        "nr_free_pages_blocks": sum(z.free_blocks_pages for z in zone_states(k)),
        "nr_mlock": m.mlocked,
        "nr_slab_reclaimable": m.slab_reclaimable, "nr_slab_unreclaimable": m.slab_unreclaimable,
        "nr_anon_pages": m.anon, "nr_mapped": m.mapped, "nr_file_pages": m.file_pages,
        "nr_swapcached": m.swapcached,
        "nr_dirty": k.mem.nr_file_dirty, "nr_zone_write_pending": k.mem.nr_file_dirty, "nr_dirtied": k.mem.nr_dirtied,
        "nr_shmem": m.shmem, "nr_kernel_stack": m.kernel_stack_kb, "nr_page_table_pages": m.pagetables,
        "nr_dirty_threshold": dirtyable * k.mem.sysctl.dirty_ratio // 100,
        "nr_dirty_background_threshold": dirtyable * k.mem.sysctl.dirty_background_ratio // 100,
        "nr_memmap_boot_pages": k.mem.nr_pages // 64,  # 64-byte struct page per frame
        "pgpgout": pgpgout_kb(k.now) + k.mem.vm_events.pgpgout, "nr_written": k.mem.nr_written, "pswpin": k.mem.swap.pswpin, "pswpout": k.mem.swap.pswpout,
    })
    v.update(k.mem.vm_events.items())
    if k.mem.workingset is not None:
        v["workingset_nodes"] = k.mem.workingset.nr_nodes  # shadow-only xarray nodes (mm/workingset.py)
    return v


def vmstat(ctx: Ctx) -> bytes:
    v = vmstat_values(ctx.kernel)
    return "".join([f"{key} {v.get(key, 0)}\n" for key in VMSTAT_KEYS]).encode()

