"""Page faults, user accesses, zapping and population of an mm's page
tables (mm/memory.c; populate is mm/gup.c's __mm_populate): anonymous,
file, shmem and special-mapping faults, write-protect faults (COW), the
swap-in fault, and the zap behind munmap, MADV_DONTNEED and exit.

Huge PMDs and large folios are mm/huge_memory.py's, hugetlb pages
mm/hugetlb.py's; these functions call into them.
"""

from __future__ import annotations

import errno

import numpy as np

from procsim.mm import huge_memory
from procsim.block.blk_core import STAT_READ, SWAP_DEV, submit_pages
from procsim.mm import filemap
from procsim.mm.filemap import account_dirtied, inode_dirtied
from procsim.mm.hugetlb import (copy_hugetlb_page_range, hugetlb_fault, hugetlb_fault_check,
                                zap_hugetlb)
from procsim.mm import page_alloc as M
from procsim.mm.mm import (ANON_NEW, MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, TASK_SIZE, ZERO_PFN,
                           MMError)
from procsim.mm.pagetable import (PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE, POOL_ROWS, PTE_ACCESSED, PTE_DIRTY,
                                  PTE_PRESENT, PTE_RW, PTE_SOFT_DIRTY, PTRS_PER_TABLE, is_swap_pte, mk_pte, pte_pfn,
                                  pte_present, swp_offset)
from procsim.mm.rmap import AnonVma, set_anon_rmap
from procsim.mm.vma import VM_EXEC, VM_IO, VM_LOCKED, VM_MAYSHARE, VM_PFNMAP, VM_READ, VM_SHARED, VM_WRITE, VMA


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy's hash-based unique is several times
    slower on millions of addresses); no sort for sorted input."""
    if len(a) > 1 and not (a[1:] > a[:-1]).all():
        a = np.sort(a)
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def fault(mm: MM, start: int, end: int, write: bool, special_pages: np.ndarray | None = None) -> int:
    """Touch every page of [start, end) (reads or writes); returns the number
    of page faults taken. EFAULT if a page is unmapped or not permitted."""
    check_fault(mm, start, end, write)
    faults = 0
    for v in mm.vmas.overlapping(start, end):
        faults += fault_vma(mm, v, max(start, v.start), min(end, v.end), write, special_pages)
    if mm.access_log is not None:
        mm.access_log.record_range(start, end)
    return faults


def fault_in_steps(mm: MM, start: int, end: int, write: bool, special_pages: np.ndarray | None = None) -> int:
    """mm.fault over [start, end). When the range could need more frames
    than are free, it is faulted in PMD-aligned steps (at most half of
    what is free each), so the task grows as it would page by page and
    the OOM killer, if it must run, sees it at its size by then."""
    free = mm.mem.nr_free
    if 2 * ((end - start) // PAGE_SIZE) <= free:
        return fault(mm, start, end, write, special_pages)
    check_fault(mm, start, end, write)  # the whole range, before anything changes
    n, a = 0, start
    while a < end:
        step = max(PMD_SIZE, (mm.mem.nr_free // 2) * PAGE_SIZE)
        b = min(end, (a + step) & ~(PMD_SIZE - 1))
        if b <= a:
            b = min(end, (a & ~(PMD_SIZE - 1)) + PMD_SIZE)
        n += fault(mm, a, b, write, special_pages)
        a = b
    return n


def check_fault(mm: MM, start: int, end: int, write: bool) -> None:
    """What fault() checks before it changes anything: EFAULT if a page
    of [start, end) is unmapped or not permitted."""
    addr = start
    for v in mm.vmas.overlapping(start, end):
        if v.start > addr:
            raise MMError(errno.EFAULT, f"no mapping at {addr:#x}")
        # x86 cannot map a page writable or executable but not readable:
        # reads of -w- and --x mappings succeed (access_error())
        need = VM_WRITE if write else VM_READ | VM_WRITE | VM_EXEC
        if not v.flags & need:
            raise MMError(errno.EFAULT, f"access not permitted at {max(addr, v.start):#x}")
        addr = v.end
    if addr < end:
        raise MMError(errno.EFAULT, f"no mapping at {addr:#x}")
    hugetlb_fault_check(mm, start, end, write)


def access(mm: MM, vas: np.ndarray, write: bool, special_pages: np.ndarray | None = None) -> int:
    """User loads (or stores) to the pages at the page-aligned addresses
    `vas` (any order, repeats allowed), as the CPU does them: a present,
    permitted PTE just gets its accessed bit (and dirty bit on a store)
    set by the hardware walk, which also sets the A bits of the PMD and
    PUD above it (and of a huge PMD: one bit for the 2 MiB); the rest
    take the page faults `fault` takes (one call per run of contiguous
    faulting pages). EFAULT, before anything changes, if a page is
    unmapped or not permitted; EINVAL if an address is not page aligned.
    Returns the number of faults."""
    vas = _sorted_unique(np.asarray(vas, dtype=np.int64))
    if not len(vas):
        return 0
    if (vas & (PAGE_SIZE - 1)).any():
        raise MMError(errno.EINVAL, "addresses must be page aligned")
    first, last = int(vas[0]), int(vas[-1])
    vmas = mm.vmas.overlapping(max(first, 0), min(last, TASK_SIZE) + PAGE_SIZE) if first >= 0 else []
    if not vmas:
        raise MMError(errno.EFAULT, f"no mapping at {first:#x}")
    starts = np.array([v.start for v in vmas], np.int64)
    ends = np.array([v.end for v in vmas], np.int64)
    which = np.searchsorted(starts, vas, "right") - 1
    bad = (which < 0) | (vas >= ends[np.maximum(which, 0)])
    if bad.any():
        raise MMError(errno.EFAULT, f"no mapping at {int(vas[np.argmax(bad)]):#x}")
    need = VM_WRITE if write else VM_READ | VM_WRITE | VM_EXEC
    denied = np.array([not v.flags & need for v in vmas])[which]
    if denied.any():
        raise MMError(errno.EFAULT, f"access not permitted at {int(vas[np.argmax(denied)]):#x}")
    bounds = np.searchsorted(which, np.arange(len(vmas) + 1)).tolist()
    groups = [(v, vas[bounds[k]: bounds[k + 1]]) for k, v in enumerate(vmas) if bounds[k + 1] > bounds[k]]
    for v, sel in groups:
        if v.is_hugetlb:
            for lo, hi in _runs(sel, PMD_SHIFT):
                hugetlb_fault_check(mm, max(lo, v.start), min(hi, v.end), write)
    faults = 0
    for v, sel in groups:
        if v.is_hugetlb:
            for lo, hi in _runs(sel, PMD_SHIFT):
                faults += hugetlb_fault(mm, v, max(lo, v.start), min(hi, v.end), write)
            continue
        slow = _access_ptes(mm, sel, write)
        if len(slow):
            for lo, hi in _runs(slow, PAGE_SHIFT):
                faults += fault_vma(mm, v, lo, hi, write, special_pages)
    if mm.access_log is not None:
        mm.access_log.record_pages(vas)
    return faults


def _runs(vas: np.ndarray, shift: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of the runs of consecutive (1 << shift)-sized
    blocks that the sorted addresses `vas` fall in."""
    blk = _sorted_unique(vas >> shift)
    cut = np.flatnonzero(np.diff(blk) != 1) + 1
    los = blk[np.concatenate(([0], cut))] << shift
    his = (blk[np.concatenate((cut - 1, [len(blk) - 1]))] + 1) << shift
    return list(zip(los.tolist(), his.tolist()))


def _access_ptes(mm: MM, vas: np.ndarray, write: bool) -> np.ndarray:
    """The hardware side of `access` for sorted pages of one non-hugetlb
    VMA: set A (and D) where the PTE permits the access, gathering the
    entries of all the tables at once (they are rows of the table
    pool); return the addresses that must fault."""
    pt = mm.pgtable
    tables = pt.tables
    pmd = vas >> PMD_SHIFT
    first = np.flatnonzero(np.concatenate(([True], pmd[1:] != pmd[:-1])))
    upmd = pmd[first]
    count = np.diff(np.append(first, len(pmd)))
    rows = tables.rows
    g = np.repeat(np.array([rows.get(i, -1) for i in upmd.tolist()], np.int64), count)
    bits = PTE_ACCESSED | (PTE_DIRTY if write else np.uint64(0))
    want = PTE_PRESENT | (PTE_RW if write else np.uint64(0))
    ok = g >= 0
    off = (vas >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)
    block = g // POOL_ROWS
    for b in _sorted_unique(block[ok]).tolist():
        sel = np.flatnonzero(block == b)
        flat = (g[sel] % POOL_ROWS) * PTRS_PER_TABLE + off[sel]
        arr = tables.blocks[b].reshape(-1)
        e = arr[flat]
        good = (e & want) == want
        arr[flat[good]] = e[good] | bits
        ok[sel[~good]] = False
    if pt.huge:  # a huge PMD has one A (and D) bit for its 512 entries
        for i in set(pmd[ok].tolist()) & set(pt.huge):
            t = tables[i]
            t |= np.bitwise_or.reduce(t & bits)
    if pt.old or pt.old_pud:
        hit = _sorted_unique(pmd[ok])
        pt.old.difference_update(hit.tolist())
        pt.old_pud.difference_update(_sorted_unique(hit >> 9).tolist())
    return vas[~ok]


def fault_vma(mm: MM, v: VMA, lo: int, hi: int, write: bool, special_pages: np.ndarray | None) -> int:
    """handle_mm_fault() for every page of [lo, hi) in `v`: large folios,
    huge-PMD write faults, swap-ins, missing pages (anonymous, zero page,
    file, shmem, special), write-protect faults; sets accessed/dirty bits
    and the rmap of new anonymous folios. Returns the faults taken."""
    if v.is_hugetlb:
        return hugetlb_fault(mm, v, lo, hi, write)
    mem = mm.mem
    faults = 0
    shared = bool(v.flags & VM_MAYSHARE)
    if write and v.is_anon and not shared:
        orders = mem.thp.anon_orders(v.flags)
        if orders:
            faults += huge_memory.fault_large(mm, v, lo, hi, orders)
    if write and mm.pgtable.huge:
        faults += huge_memory.do_huge_pmd_wp_page(mm, lo, hi)
    ptes = mm.pgtable.read(lo, hi)
    idx = np.arange(len(ptes))
    swapped = is_swap_pte(ptes)
    if swapped.any():
        faults += do_swap_page(mm, v, ptes, swapped, write)
        # an allocation below may fail (out of memory): keep the swap-ins whole
        mm.pgtable.write(lo, ptes)
    missing = ptes == 0
    nmiss = int(missing.sum())
    faults += nmiss
    if nmiss:
        mi = idx[missing]
        # page index in the VMA (the read starts at lo, not at v.start: file
        # offsets used to be taken from lo, mapping the wrong file pages)
        vi = mi + ((lo - v.start) >> PAGE_SHIFT)
        if v.special is not None:
            if special_pages is None or not len(special_pages):
                raise MMError(errno.EFAULT, f"{v.special} has no pages to map")
            pfns = special_pages[(vi + v.pgoff) % len(special_pages)]
            ptes[mi] = mk_pte(pfns, False, False)
            if not v.flags & VM_PFNMAP:  # vmf_insert_pfn() (vvar) charges no RSS
                mm.rss.add(MM_FILEPAGES, nmiss)
        elif v.file is None:
            if write:
                pfns = mem.alloc(nmiss, ANON_NEW)
                v.anon_vma = v.anon_vma or AnonVma()  # anon_vma_prepare()
                mem.map_pages(pfns, mm.mm_id)
                ptes[mi] = mk_pte(pfns, True, True)
                mm.rss.add(MM_ANONPAGES, nmiss)
            else:
                ptes[mi] = mk_pte(np.full(nmiss, ZERO_PFN), False, False)
        else:
            pfns, nread = filemap.cache_pages(mem, v.file, v.pgoff + vi)
            mm.nr_major += nread  # filemap_fault(): a page read from the disk is a major fault
            if write and not shared:
                # private write fault on a file page: copy it now
                pfns = mem.alloc(nmiss, ANON_NEW)
                v.anon_vma = v.anon_vma or AnonVma()
                mem.map_pages(pfns, mm.mm_id)
                ptes[mi] = mk_pte(pfns, True, True)
                mm.rss.add(MM_ANONPAGES, nmiss)
            else:
                mem.map_pages(pfns, mm.mm_id)
                # a shared file with writeback is mapped read-only until written
                # (vma_wants_writenotify): the write fault dirties the page
                rw = shared and bool(v.flags & VM_WRITE) and (write or v.file.shmem)
                ptes[mi] = mk_pte(pfns, rw, write and shared)
                mm.rss.add(MM_SHMEMPAGES if v.file.shmem else MM_FILEPAGES, nmiss)
                if write:
                    account_dirtied(mem, pfns)  # NR_FILE_DIRTY; the task's write_bytes
                    inode_dirtied(mem, v.file)
    if write:
        wp = (~missing) & ((ptes & PTE_RW) == 0)
        if wp.any():
            faults += int(wp.sum())
            ptes[wp] = do_wp_page(mm, v, ptes[wp], shared)
        ptes |= PTE_DIRTY | (PTE_SOFT_DIRTY if mem.soft_dirty else np.uint64(0))
    ptes |= PTE_ACCESSED
    pfns = pte_pfn(ptes)
    # page-cache pages are marked accessed (folio_mark_accessed on the
    # fault path); anonymous ones only get the PTE young bit (observed
    # on 6.18: a written private page's kpageflags is 0x400005828,
    # without REFERENCED or DIRTY)
    pfns = pfns[pfns != ZERO_PFN]
    # folio_mark_accessed() also ends an idle period
    # (no activation here: 6.18's numa_maps showed active=0 for a file page
    # three processes had faulted; read(2) activates, procsim/mm/lru.py)
    cache = pfns[(mem.flags[pfns] & M.PG_ANON) == 0]
    mem.flags[cache] = (mem.flags[cache] | np.uint32(M.PG_REFERENCED)) & ~np.uint32(M.PG_IDLE)
    mm.pgtable.write(lo, ptes)
    if mm.pgtable.huge:
        huge_memory.sync_huge_bits(mm, lo, hi)
    if v.anon_vma is not None:
        # new anonymous folios join the VMA's anon_vma (whole large
        # folios: their head may lie before lo)
        alo = max(v.start, lo & ~(PMD_SIZE - 1))
        ahi = min(v.end, (hi + PMD_SIZE - 1) & ~(PMD_SIZE - 1))
        set_anon_rmap(mem, v, alo, ptes if (alo, ahi) == (lo, hi) else mm.pgtable.read(alo, ahi))
    mm.update_hiwater_rss()
    return faults


def do_wp_page(mm: MM, v: VMA, ptes: np.ndarray, shared: bool) -> np.ndarray:
    """Write to present read-only PTEs: reuse or copy (do_wp_page)."""
    mem = mm.mem
    if shared:
        account_dirtied(mem, pte_pfn(ptes))  # wp_page_shared: folio_mark_dirty
        inode_dirtied(mem, v.file)
        return ptes | PTE_RW | PTE_DIRTY
    pfns = pte_pfn(ptes)
    fl = mem.flags[pfns]
    anon = (fl & M.PG_ANON) != 0
    heads, order = mem.folio_head(pfns)
    large = order > 0
    # small folio: reuse when mapped once. Large (PTE-mapped) folio: reuse
    # when more than one page is mapped, all by one mm (not maybe shared,
    # and refcount == large mapcount, always true here): the MM-ID rule of
    # __wp_can_reuse_large_anon_folio(), the same for both mapcount models
    reuse_large = large & (mem.large_mapcount[heads] > 1) & ((mem.flags[heads] & M.PG_MAYBE_SHARED) == 0)
    reuse = anon & (pfns != ZERO_PFN) & np.where(large, reuse_large, mem.mapcount[pfns] == 1)
    # a folio the swap cache holds is reused only if it can leave the
    # cache: no other swap entry needs its slot (wp_can_reuse_anon_folio)
    sc = mem.swap_cache
    cached = reuse & sc.cached(pfns)
    if cached.any():
        reuse[cached] = ~sc.swapped(pfns[cached])
    out = ptes.copy()
    out[reuse] |= PTE_RW | PTE_DIRTY
    copy = ~reuse
    n = int(copy.sum())
    if n:
        old = pfns[copy]
        was_file = (~anon[copy]) & (old != ZERO_PFN)
        # the vDSO text (a [vdso] made writable) is copied as a file page,
        # but kernel pages keep no mapcount in the mem_map (their users are
        # counted from the page tables: Kernel.vdso_mapcount)
        real = old[(old != ZERO_PFN) & ((fl[copy] & M.PG_RESERVED) == 0)]
        new = mem.alloc(n, ANON_NEW)  # first: it may fail (out of memory) with nothing changed
        mem.unmap_pages(real, mm.mm_id)
        sc.free_swap_cache(real)  # wp_page_copy()
        mem.map_pages(new, mm.mm_id)
        v.anon_vma = v.anon_vma or AnonVma()
        out[copy] = mk_pte(new, True, True)
        nfile = int(was_file.sum())
        mm.rss.add(MM_FILEPAGES, -nfile)
        mm.rss.add(MM_ANONPAGES, nfile + int((old == ZERO_PFN).sum()))
    if cached.any():  # after the copies' allocation, which may fail
        sc.folio_free_swap(pfns[cached & reuse])
    return out


def do_swap_page(mm: MM, v: VMA, ptes: np.ndarray, sel: np.ndarray, write: bool) -> int:
    """do_swap_page() for the swap entries `sel` of `ptes` (changed in
    place). Each slot's folio is taken from the swap cache (a minor
    fault: 6.18 counted none major right after MADV_PAGEOUT) or read
    into a new order-0 folio added to the cache (a major fault, pswpin).
    The entry's reference to the slot goes; the folio stays in the cache
    and its slot stays allocated (6.18: SwapFree unchanged, VmSwap down,
    kpageflags 0x2400007828), unless should_try_to_free_swap(): a write
    fault to a folio no one else maps, a VM_LOCKED VMA, or swap more
    than half full free the slot if no other entry needs it
    (folio_free_swap: the folio leaves the cache, dirty: 6.18 showed
    0x400005838 after a write fault).

    A folio no other entry or mapping shares is mapped writable where
    the VMA allows (dirty on a write); a shared one read-only, and a
    write then breaks COW in the same fault (do_wp_page: the caller's
    write-protect pass). Linux tells the two apart by the swap PTE's
    exclusive bit, which fork clears; the model asks the swap counts and
    mapcounts, the truth that bit approximates."""
    mem, swap, sc = mm.mem, mm.mem.swap, mm.mem.swap_cache
    idx = np.flatnonzero(sel)
    ents = ptes[idx]
    n = len(ents)
    offs = swp_offset(ents)
    pfns = sc.lookup(offs)
    miss = np.unique(offs[pfns == 0])
    if len(miss):
        # the fault holds the folios it found: reclaim for the new ones
        # must not free them; the allocation may fail with nothing changed
        sc.held = pfns[pfns != 0]
        try:
            new = mem.alloc(len(miss), M.PG_ANON | M.PG_LRU)
        finally:
            sc.held = np.zeros(0, np.int64)
        swap.swapcache_prepare(miss)
        if mem.workingset is not None:  # swap_cache_alloc_folio(): a shadow there is a refault
            mem.workingset.refault(new, sc.shadows(miss), file=False)
        sc.add(miss, new)
        swap.pswpin += len(miss)
        submit_pages(mem, SWAP_DEV, STAT_READ, miss, bio_pages=1)  # swap_read_folio: a bio a page
        mm.nr_major += len(miss)
        pfns = sc.lookup(offs)
    others = mem.mapcount[pfns] > 0
    mem.map_pages(pfns, mm.mm_id)
    swap.free(offs)
    excl = ~others & (swap.count(offs) == 0)
    if v.flags & VM_LOCKED:
        sc.folio_free_swap(pfns)
    else:
        if write:
            sc.folio_free_swap(pfns[excl])
        sc.folio_free_swap(pfns, while_full=True)
    rw = excl & bool(v.flags & VM_WRITE)
    new_ptes = mk_pte(pfns, False, False)
    new_ptes[rw] |= PTE_RW
    if write:
        new_ptes[rw] |= PTE_DIRTY
    new_ptes[(ents & PTE_SOFT_DIRTY) != 0] |= PTE_SOFT_DIRTY
    mm.rss.add(MM_SWAPENTS, -n)
    mm.rss.add(MM_ANONPAGES, n)
    v.anon_vma = v.anon_vma or AnonVma()
    ptes[idx] = new_ptes
    # a write to a read-only one goes on to do_wp_page within this fault:
    # the caller's write-protect pass, which counts it
    return n - int(np.count_nonzero(~rw)) if write else n


def zap_vma(mm: MM, v: VMA, start: int, end: int, close: bool) -> int:
    """Zap [start, end) of one VMA. `close`: the range stops being mapped
    (munmap, exit), not just emptied (MADV_DONTNEED)."""
    if v.is_hugetlb:
        return zap_hugetlb(mm, v, start, end, close)
    return zap_page_range(mm, start, end, bool(v.flags & VM_PFNMAP))


def zap_page_range(mm: MM, start: int, end: int, pfnmap: bool = False) -> int:
    """Remove the translations of [start, end); free anon pages no one
    maps, and the swap slots of swap entries (zap_nonpresent_ptes ->
    free_swap_and_cache). `pfnmap`: the range is a VM_PFNMAP VMA, whose
    pages were never charged to RSS."""
    nhuge = huge_memory.zap_huge_pmds(mm, start, end)
    ptes = mm.pgtable.take(start, end)
    if not len(ptes):
        return nhuge
    swp = is_swap_pte(ptes)
    if swp.any():
        mm.mem.swap_cache.free_swap_and_cache(swp_offset(ptes[swp]))
        mm.rss.add(MM_SWAPENTS, -int(swp.sum()))
        ptes = ptes[~swp]
    pfns = pte_pfn(ptes)
    pfns = pfns[pfns != ZERO_PFN]
    if not len(pfns):
        return nhuge
    mem = mm.mem
    fl = mem.flags[pfns]
    anon = (fl & M.PG_ANON) != 0
    shmem = (fl & M.PG_SHMEM) != 0
    special = (fl & M.PG_RESERVED) != 0
    mm.rss.add(MM_ANONPAGES, -int(anon.sum()))
    mm.rss.add(MM_SHMEMPAGES, -int(shmem.sum()))
    mm.rss.add(MM_FILEPAGES, -int(len(pfns) - anon.sum() - shmem.sum() - (special.sum() if pfnmap else 0)))
    counted = pfns[~special]
    mem.unmap_pages(counted, mm.mm_id)
    mem.swap_cache.free_swap_cache(pfns[anon])
    return len(pfns) + nhuge


def populate(mm: MM, start: int, end: int, special_pages: np.ndarray | None = None) -> int:
    """__mm_populate() for mlock and MAP_LOCKED: fault the range in as
    get_user_pages does, with write faults in private writable VMAs (so the
    memory is really there, not the zero page) and read faults elsewhere;
    holes, PROT_NONE and I/O or PFN-map VMAs are skipped, never an error.
    (This used to read-fault everything and fail with EFAULT on PROT_NONE
    after the flags had been changed.)"""
    faults = 0
    for v in mm.vmas.overlapping(start, end):
        if v.flags & (VM_IO | VM_PFNMAP) or not v.flags & (VM_READ | VM_WRITE | VM_EXEC):
            continue
        if v.special is not None and (special_pages is None or not len(special_pages)):
            continue
        write = v.flags & (VM_WRITE | VM_SHARED) == VM_WRITE
        try:
            faults += fault_vma(mm, v, max(start, v.start), min(end, v.end), write, special_pages)
        except MMError:
            if not v.is_hugetlb:
                raise
            # an empty pool (MAP_NORESERVE) ends population quietly:
            # mm_populate() ignores errors
    return faults


def copy_page_range(mm: MM, child: MM, v: VMA) -> None:
    """copy_page_range() at fork for one VMA of `mm`, already in `child`:
    private pages are shared copy-on-write (both PTEs write-protected),
    swap entries duplicated, huge PMDs shared as PMD mappings; a VMA with
    nothing anonymous (file, shmem, vDSO) is not copied: the child faults
    it in itself."""
    if v.is_hugetlb:
        copy_hugetlb_page_range(mm, v, child)
        return
    if not mm.pgtable.has_tables(v.start, v.end):
        return  # no table under it: nothing present, no swap entry (the test below, without the arrays)
    ptes = mm.pgtable.read(v.start, v.end)
    present = pte_present(ptes)
    swp = is_swap_pte(ptes)
    if not present.any() and not swp.any():
        return
    # swap entries stand in for no frame: read them as the zero page
    pfns = np.where(present, pte_pfn(ptes), ZERO_PFN)
    fl = mm.mem.flags[pfns]
    if not v.flags & VM_PFNMAP and not ((fl & M.PG_ANON) != 0).any() and not swp.any():
        # vma_needs_copy(): no anon_vma and not a PFN map: the child
        # faults file, shmem and vDSO pages in itself
        return
    if swp.any():
        # copy_nonpresent_pte(): swap_duplicate() per entry
        mm.mem.swap.duplicate(swp_offset(ptes[swp]))
        child.rss.add(MM_SWAPENTS, int(swp.sum()))
    if not v.flags & VM_MAYSHARE:
        ptes[present] &= ~PTE_RW
        mm.pgtable.write(v.start, ptes)
    # kernel pages (PFN maps) carry no mapcount and no RSS
    real = present & (pfns != ZERO_PFN) & ((fl & M.PG_RESERVED) == 0)
    # copy_huge_pmd(): a huge PMD is shared as one PMD mapping
    huge = mm.pgtable.huge_in(v.start, v.end)
    pte_mapped = real
    if huge:
        pte_mapped = real.copy()
        for idx in huge:
            off = ((idx << PMD_SHIFT) - v.start) >> PAGE_SHIFT
            pte_mapped[off: off + PTRS_PER_TABLE] = False
    mm.mem.map_pages(pfns[pte_mapped], child.mm_id)
    child.pgtable.write(v.start, ptes)
    for idx in huge:
        child.pgtable.huge.add(idx)
        mm.mem.map_pmd(huge_memory.huge_head(mm, idx), child.mm_id)
    anon = real & ((fl & M.PG_ANON) != 0)
    shm = real & ((fl & M.PG_SHMEM) != 0)
    child.rss.add(MM_ANONPAGES, int(anon.sum()))
    child.rss.add(MM_SHMEMPAGES, int(shm.sum()))
    child.rss.add(MM_FILEPAGES, int(real.sum() - anon.sum() - shm.sum()))
