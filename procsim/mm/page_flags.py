"""Page flags kept per frame (include/linux/page-flags.h): a subset of the
kernel's PG_* and KPF_* bits, one uint32 per frame in MemMap.flags."""

PG_ANON = 1 << 0        # anonymous (PageAnon)
PG_FILE = 1 << 1        # in a file's page cache
PG_SHMEM = 1 << 2       # shmem / shared anonymous (swap-backed page cache)
PG_DIRTY = 1 << 3
PG_REFERENCED = 1 << 4
PG_LRU = 1 << 5
PG_ACTIVE = 1 << 6
PG_RESERVED = 1 << 7    # kernel memory, PFN 0, the zero page
PG_MLOCKED = 1 << 8
PG_SWAPBACKED = 1 << 9  # anon and shmem; MADV_FREE clears it on anon (LazyFree)
# Kept on the head page only: the folio's "maybe mapped shared" bit of the MM-ID
# tracking (FOLIO_MM_IDS_SHARED_BIT in folio->_mm_ids).
PG_MAYBE_SHARED = 1 << 10
# A frame of the hugetlb pool (PageHuge: free in the pool or in use). Such
# folios never reach the LRU, the vmstat page counters or the rmap of
# map_pages(); hugetlb.py keeps their mapcounts.
PG_HUGETLB = 1 << 11
# PageAnonExclusive, kept for hugetlb pages only (kpageflags bit 34 of a
# private hugetlb page; fork clears it). Other anonymous pages derive it.
PG_ANON_EXCLUSIVE = 1 << 12
# Idle page tracking (the page_ext bits of 64-bit kernels): PG_IDLE set by a
# write of the page_idle bitmap and cleared by an access found through the
# rmap; PG_YOUNG remembers an accessed bit that idle tracking cleared, so
# reclaim and smaps Referenced still see the access.
PG_IDLE = 1 << 13
PG_YOUNG = 1 << 14
# In the swap cache (PG_swapcache): an order-0 anonymous folio that holds a
# swap slot's data (procsim/mm/swapcache.py); unmapping it does not free it.
PG_SWAPCACHE = 1 << 15
# PG_reclaim: reclaim found the folio dirty and wants it freed as soon as its
# writeback ends (folio_end_writeback rotates it to the inactive list, pgrotated).
PG_RECLAIM = 1 << 16
# PG_workingset: the folio was on an active list before (set as
# shrink_active_list deactivates it, or by a refault of such a folio); the
# shadow entry of its eviction remembers it, a refault of it is a restore.
PG_WORKINGSET = 1 << 17
