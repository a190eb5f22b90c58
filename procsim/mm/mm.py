"""mm_struct: one address space, its VMAs, page tables and counters, and
the VMA-level operations behind mmap, munmap, mprotect, mremap, brk,
madvise, page faults and fork.

Operations that change translations return a `Flush` telling the kernel
which TLB flush to send; the scheduler decides who gets IPIs.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import dataclass

import numpy as np

from procsim.mm import memory as M
from procsim.mm.hugetlb import HPAGE_NR, HPAGE_ORDER, HPAGE_SIZE
from procsim.mm.pagetable import (PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE, PTE_ACCESSED, PTE_DIRTY,
                                  POOL_ROWS, PTE_PRESENT, PTE_PSE, PTE_RW, PTE_SOFT_DIRTY, PTE_USER, PTRS_PER_TABLE,
                                  PageTable, is_swap_pte, mk_pte, pte_pfn, pte_present, swp_entry_pte,
                                  swp_offset)
from procsim.mm.vma import (VM_ACCOUNT, VM_DONTEXPAND, VM_EXEC, VM_HUGETLB, VM_IO,
                            VM_LOCKED, VM_PFNMAP, VM_LOCKONFAULT, VM_MAYSHARE, VM_NORESERVE, VM_PROT_MASK,
                            VM_READ, VM_SHARED, VM_SOFTDIRTY, VM_STACK, VM_WRITE, VMA, File)
from procsim.mm.counter_tree import RssStat
from procsim.mm.mmap_lock import MmapLock, mmap_write_lock, vma_start_write
from procsim.mm.rmap import AnonVma, set_anon_rmap, set_file_rmap
from procsim.mm.vmatree import VMATree
from procsim.units import TASK_SIZE

MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = range(4)
MMAP_MIN_ADDR = 0x10000
# a new anonymous folio: its dirtiness is in the PTE that maps it, not the folio
ANON_NEW = M.PG_ANON | M.PG_LRU
ZERO_PFN = 1  # the shared zero page: mapped by read faults on anon memory, never counted
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP
# huge PTE bits of hugetlb entries (Python ints: one entry per 2 MiB page)
_HPTE_RW, _HPTE_DIRTY, _HPTE_ACCESSED = int(PTE_RW), int(PTE_DIRTY), int(PTE_ACCESSED)
_HPTE_BASE = int(PTE_PRESENT | PTE_USER | PTE_PSE)


class MMError(OSError):
    def __init__(self, err: int, msg: str) -> None:
        super().__init__(err, msg)


@dataclass
class Flush:
    """A TLB flush request for [start, end) of an mm."""
    start: int
    end: int
    freed_tables: bool = False


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy's hash-based unique is several times
    slower on millions of addresses); no sort for sorted input."""
    if len(a) > 1 and not (a[1:] > a[:-1]).all():
        a = np.sort(a)
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _write_locked(fn):
    """The method changes VMAs: it runs in a write cycle of the mmap lock
    (nested in the caller's, if the syscall holds one already)."""
    @functools.wraps(fn)
    def locked(self, *args, **kw):
        with mmap_write_lock(self):
            return fn(self, *args, **kw)
    return locked


class MM:
    def __init__(self, mem: M.MemMap, mmap_base: int) -> None:
        self.mem = mem
        self.mmap_lock = MmapLock()
        self.vmas = VMATree(self.mmap_lock)
        self.pgtable = PageTable()
        self.mmap_base = mmap_base
        self.total_vm = self.hiwater_vm = 0
        self.locked_vm = self.pinned_vm = self.data_vm = self.exec_vm = self.stack_vm = 0
        # per-CPU counter trees (or flat percpu_counters): adds go to rss.cpu,
        # the CPU of the task the kernel is running this mm's code for
        self.rss = RssStat.for_mem(mem)
        self.hiwater_rss = 0
        self.hugetlb_usage = 0   # pages (4 KiB) of hugetlb pages mapped (status HugetlbPages)
        self.hugetlb_data_vm = 0  # the part of data_vm that is private writable hugetlb (not committed)
        self.nr_major = 0        # major faults taken (swap-ins); the kernel charges them to the task
        self.start_code = self.end_code = self.start_data = self.end_data = 0
        self.start_brk = self.brk = self.start_stack = 0
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0
        # TLB state (seed-mechanisms §1.3)
        self.cpumask = 0
        self.tlb_gen = 0
        self.next_trim_cpumask = 0  # jiffies
        self.users = 0  # thread groups' tasks using it (CLONE_VM)
        # MM ID for the large-folio owner slots (mm_alloc_id at mm creation)
        self.mm_id = mem.alloc_mm_id()
        # ground-truth recorder of user accesses (workloads); never inherited
        self.access_log = None
        mem.mms.add(self)

    # -- accounting -----------------------------------------------------------

    def _account(self, vma: VMA, sign: int) -> None:
        n = sign * vma.npages
        f = vma.flags
        if n < 0:
            self.hiwater_vm = max(self.hiwater_vm, self.total_vm)
        self.total_vm += n
        if f & VM_EXEC and not f & (VM_WRITE | VM_STACK):
            self.exec_vm += n
        elif f & VM_STACK:
            self.stack_vm += n
        elif f & VM_WRITE and not f & VM_SHARED:
            self.data_vm += n
            if f & VM_HUGETLB:
                self.hugetlb_data_vm += n
        if f & VM_LOCKED:
            self.locked_vm += n

    def _insert(self, vma: VMA) -> None:
        self.vmas.insert(vma)
        self._account(vma, +1)

    def _remove(self, vma: VMA) -> None:
        self.vmas.remove(vma)
        self._account(vma, -1)

    @property
    def rss_pages(self) -> int:
        """get_mm_rss_sum(): the precise sum, as /proc shows it."""
        return self.rss.rss_precise()

    def set_args(self, top: int, path: str, argv: list[str], envp: list[str]) -> int:
        """Place argv and envp strings below the executable's path at the
        top of the stack, as the ELF loader lays them out; returns the
        initial stack pointer below the pointer arrays and auxv."""
        self.env_end = top - 8 - len(path) - 1
        self.env_start = self.env_end - sum(len(e) + 1 for e in envp)
        self.arg_end = self.env_start
        self.arg_start = self.arg_end - sum(len(a) + 1 for a in argv)
        return (self.arg_start - 8 * (len(argv) + len(envp) + 24)) & ~0xF

    def update_hiwater_rss(self) -> None:
        self.hiwater_rss = max(self.hiwater_rss, self.rss_pages)

    # -- VMA tree surgery -----------------------------------------------------

    def _split(self, vma: VMA, addr: int) -> VMA:
        assert not (vma.is_hugetlb and addr & (HPAGE_SIZE - 1)), "hugetlb VMA split inside a huge page"
        # vma_adjust_trans_huge(): a huge PMD cannot straddle two VMAs
        if addr & (PMD_SIZE - 1) and (addr >> PMD_SHIFT) in self.pgtable.huge:
            self.split_huge_pmd(addr >> PMD_SHIFT)
        self.vmas.remove(vma)
        tail = vma.split_at(addr)
        if tail.file is not None:
            tail.file.nr_mappings += 1  # each VMA holds its own file reference
        self.vmas.insert(vma)
        self.vmas.insert(tail)
        return tail

    def check_split(self, start: int, end: int, changing=None) -> None:
        """vm_ops->may_split(): a hugetlb VMA may only be cut at a 2 MiB
        boundary (hugetlb_vm_op_split), a special mapping ([vvar], [vdso])
        never (special_mapping_split): munmap, mprotect, madvise, mremap or
        MAP_FIXED over part of it fail with EINVAL (observed on 6.18).
        Checked before anything changes. `changing(vma)`: only VMAs it
        accepts would be split (mprotect leaves unchanged ones whole)."""
        for addr in (start, end):
            v = self.vmas.lookup(addr)
            if v is None or v.start == addr or changing is not None and not changing(v):
                continue
            if v.special is not None:
                raise MMError(errno.EINVAL, f"{addr:#x} splits {v.special}")
            if v.is_hugetlb and addr & (HPAGE_SIZE - 1):
                raise MMError(errno.EINVAL, f"{addr:#x} splits a huge page")

    def _isolate(self, start: int, end: int) -> list[VMA]:
        """Split VMAs at start and end; return those wholly inside [start, end)."""
        out = []
        for v in self.vmas.overlapping(start, end):
            if v.start < start:
                v = self._split(v, start)
            if v.end > end:
                self._split(v, end)
            out.append(v)
        return out

    def _merge_around(self, vma: VMA) -> VMA:
        # Loop: protect() and lock() change several VMAs, and one that already
        # absorbed its next neighbour must still try the one after (a single
        # attempt per side left e.g. mprotect across two VMAs with 3 pieces).
        while True:
            prev = self.vmas.prev(vma)
            nxt = self.vmas.next(vma)
            if not (prev is not None and prev.can_merge(vma) or nxt is not None and vma.can_merge(nxt)):
                return vma
            vma = self._merge_once(vma)

    def _merge_once(self, vma: VMA) -> VMA:
        prev = self.vmas.prev(vma)
        if prev is not None and prev.can_merge(vma):
            self.vmas.remove(vma)
            self.vmas.remove(prev)
            prev.end = vma.end
            prev.anon_vma = prev.anon_vma or vma.anon_vma
            self._file_put(vma.file)  # the absorbed VMA's file reference goes
            self.vmas.insert(prev)
            vma = prev
        nxt = self.vmas.next(vma)
        if nxt is not None and vma.can_merge(nxt):
            self.vmas.remove(nxt)
            self.vmas.remove(vma)
            vma.end = nxt.end
            vma.anon_vma = vma.anon_vma or nxt.anon_vma
            self._file_put(nxt.file)
            self.vmas.insert(vma)
        return vma

    def _file_put(self, file: File | None) -> None:
        """Drop a VMA's reference to its file. The last unmap of a deleted shmem
        inode (shared anonymous memory) frees its pages, as the final fput does;
        before this they were leaked."""
        if file is None:
            return
        file.nr_mappings -= 1
        if file.nr_mappings == 0 and file.hugetlb:
            # the anonymous hugetlbfs file goes with its last mapping: its
            # pages return to the pool, its unused reservations are released
            pool = self.mem.hugetlb
            for head in file.cache[file.cache != 0].tolist():
                pool.free(head)
            file.cache = np.zeros(0, np.int64)
            pool.unreserve(len(file.resv or ()))
            file.resv = set()
            return
        if file.nr_mappings == 0 and file.shmem and file.deleted:
            cached = file.cache[file.cache != 0]
            self.mem.free(cached)
            file.cache = np.zeros(0, np.int64)

    def get_unmapped_area(self, length: int, hint: int = 0, align: int = PAGE_SIZE) -> int:
        """Top-down search below mmap_base, as x86's default layout does;
        `align` (a power of two) for hugetlb mappings, which get 2 MiB."""
        mask = ~(align - 1)
        if hint:
            hint = (hint + align - 1) & mask
            if MMAP_MIN_ADDR <= hint and hint + length <= TASK_SIZE and not self.vmas.overlapping(hint, hint + length):
                return hint
        top = self.mmap_base
        for v in reversed(self.vmas.overlapping(MMAP_MIN_ADDR, self.mmap_base)):
            if (top - length) & mask >= v.end:
                return (top - length) & mask
            top = min(top, v.start)
        if (top - length) & mask >= MMAP_MIN_ADDR:
            return (top - length) & mask
        raise MMError(errno.ENOMEM, "no room in the address space")

    # -- mapping --------------------------------------------------------------

    @_write_locked
    def map_region(self, start: int, end: int, flags: int, file: File | None = None,
                   pgoff: int | None = None, special: str | None = None,
                   anon_vma: object | None = None) -> tuple[VMA, Flush | None]:
        """Install a VMA over [start, end), replacing what was there (MAP_FIXED).
        pgoff None: an anonymous VMA's is start >> PAGE_SHIFT (as mmap and brk
        set it, so that neighbours merge), 0 otherwise. mremap passes the
        moved VMA's pgoff and anon_vma."""
        if pgoff is None:
            pgoff = start >> PAGE_SHIFT if file is None and special is None else 0
        flush = self.unmap(start, end) if self.vmas.overlapping(start, end) else None
        vma = VMA(start, end, flags, pgoff, file, special, anon_vma=anon_vma)
        if file is not None:
            file.nr_mappings += 1
        self._insert(vma)
        return self._merge_around(vma), flush

    @_write_locked
    def install_vma(self, vma: VMA) -> None:
        """Insert `vma` as it is into a free range, never merged with its
        neighbours: a replayed layout, where the kernel kept them apart.
        Neighbours that could merge get distinct anon_vmas, as two VMAs that
        each faulted on their own have, so later changes keep them apart too."""
        if self.vmas.overlapping(vma.start, vma.end):
            raise MMError(errno.EINVAL, f"{vma.start:#x}-{vma.end:#x} overlaps a VMA")
        for a, b in ((self.vmas.find(vma.start - 1), vma), (vma, self.vmas.find(vma.end))):
            if a is not None and b is not None and a.can_merge(b):
                other = a if b is vma else b
                other.anon_vma = other.anon_vma or AnonVma()
                vma.anon_vma = AnonVma()
        if vma.file is not None:
            vma.file.nr_mappings += 1
        self._insert(vma)

    @_write_locked
    def unmap(self, start: int, end: int) -> Flush | None:
        self.check_split(start, end)
        victims = self._isolate(start, end)
        if not victims:
            return None
        self.update_hiwater_rss()
        for v in victims:
            self._zap_vma(v, v.start, v.end, close=True)
            self._remove(v)
            self._file_put(v.file)
        freed = self.pgtable.free_empty(start, end, lambda lo, hi: bool(self.vmas.overlapping(lo, hi)))
        return Flush(start, end, freed)

    @staticmethod
    def _prot_flags(v: VMA, prot_flags: int) -> int:
        new = (v.flags & ~VM_PROT_MASK) | prot_flags
        if new & VM_WRITE and not v.flags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            new |= VM_ACCOUNT
        return new

    @_write_locked
    def protect(self, start: int, end: int, prot_flags: int) -> Flush:
        # mprotect_fixup() leaves a VMA whose flags do not change alone: no
        # split (partial mprotect of [vdso] with unchanged flags succeeds)
        self.check_split(start, end, lambda v: self._prot_flags(v, prot_flags) != v.flags)
        vmas = [x for v in self.vmas.overlapping(start, end) if self._prot_flags(v, prot_flags) != v.flags
                for x in self._isolate(max(start, v.start), min(end, v.end))]
        for v in vmas:
            new = self._prot_flags(v, prot_flags)
            self._account(v, -1)
            vma_start_write(self.mmap_lock, v)
            v.flags = new
            self._account(v, +1)
            if not new & VM_WRITE:
                for _, sl in self.pgtable.spans(v.start, v.end):
                    sl[pte_present(sl)] &= ~PTE_RW
            elif new & VM_SHARED:
                for _, sl in self.pgtable.spans(v.start, v.end):
                    sl[pte_present(sl)] |= PTE_RW
            if v.is_hugetlb:
                ht = self.pgtable.hugetlb
                for idx in self.pgtable.hugetlb_in(v.start, v.end):
                    if not new & VM_WRITE:
                        ht[idx] &= ~_HPTE_RW
                    elif new & VM_SHARED:
                        ht[idx] |= _HPTE_RW
        for v in vmas:
            if v in self.vmas._v:
                self._merge_around(v)
        return Flush(start, end)

    @_write_locked
    def lock(self, start: int, end: int, on: bool, onfault: bool = False,
             special_pages: np.ndarray | None = None) -> int:
        """mlock/mlock2/munlock; returns the faults taken populating."""
        # apply_vma_lock_flags(): the new lock bits replace the old ones (mlock
        # after mlock2(ONFAULT) drops lf)
        bits = (VM_LOCKED | (VM_LOCKONFAULT if onfault else 0)) if on else 0
        mask = VM_LOCKED | VM_LOCKONFAULT
        # mlock_fixup() leaves VM_SPECIAL VMAs (vvar, vdso) and unchanged ones
        # alone: no flag, no split
        ranges = [(max(start, v.start), min(end, v.end)) for v in self.vmas.overlapping(start, end)
                  if not v.flags & VM_SPECIAL and v.flags & mask != bits]
        vmas = [v for lo, hi in ranges for v in self._isolate(lo, hi)]
        for v in vmas:
            self._account(v, -1)
            vma_start_write(self.mmap_lock, v)
            v.flags = (v.flags & ~mask) | bits
            self._account(v, +1)
        for v in vmas:
            if v in self.vmas._v:
                self._merge_around(v)
        if on and not onfault:
            return self.populate(start, end, special_pages)
        return 0

    @_write_locked
    def set_vma_flags(self, start: int, end: int, set_bits: int, clear_bits: int) -> None:
        """Change VMA flags over [start, end) (madvise HUGEPAGE/NOHUGEPAGE):
        split where they change, merge where they now match."""
        self.check_split(start, end, lambda v: (v.flags & ~clear_bits) | set_bits != v.flags)
        ranges = [(max(start, v.start), min(end, v.end)) for v in self.vmas.overlapping(start, end)
                  if (v.flags & ~clear_bits) | set_bits != v.flags]
        vmas = [v for lo, hi in ranges for v in self._isolate(lo, hi)]
        for v in vmas:
            vma_start_write(self.mmap_lock, v)
            v.flags = (v.flags & ~clear_bits) | set_bits
        for v in vmas:
            if v in self.vmas._v:
                self._merge_around(v)

    def lazyfree(self, start: int, end: int) -> None:
        """madvise(MADV_FREE) on private anonymous VMAs: pages only this mm maps
        become clean and not swap-backed (LazyFree) until written again. Huge
        PMDs partly covered are split; large folios partly covered, or maybe
        shared, are split if they can be and skipped otherwise, as
        madvise_free_pte_range() does. Swap entries in the range are freed:
        the data is not needed any more (6.18: SwapFree grew by the range)."""
        mem = self.mem
        for idx in self.pgtable.huge_in(start, end):
            base = idx << PMD_SHIFT
            if not (start <= base and base + PMD_SIZE <= end):
                self.split_huge_pmd(idx)
        for va, sl in self.pgtable.spans(start, end):
            swp = is_swap_pte(sl)
            if swp.any():
                mem.swap.free(swp_offset(sl[swp]))
                self.rss.add(MM_SWAPENTS, -int(swp.sum()))
                sl[swp] = 0
            present = np.nonzero(sl & PTE_PRESENT)[0]
            if not len(present):
                continue
            pfns = pte_pfn(sl[present])
            ok = (pfns != ZERO_PFN) & ((mem.flags[pfns] & M.PG_ANON) != 0)
            heads, order = mem.folio_head(pfns)
            for h in np.unique(heads[ok & (order > 0)]).tolist():
                if (va >> PMD_SHIFT) in self.pgtable.huge:
                    continue  # wholly covered huge PMD: handled as one folio below
                nr = 1 << int(mem.order[h])
                sel = heads == h
                if mem.maybe_mapped_shared(np.array([h]))[0] or int(sel.sum()) < nr:
                    mem.split_folio(h)
            heads, order = mem.folio_head(pfns)
            excl = ok & (mem.folio_mapcount(pfns) == 1)
            if (va >> PMD_SHIFT) in self.pgtable.huge:
                excl = ok & (mem.large_mapcount[heads] == 1)
            else:
                excl |= ok & (order > 0) & ~mem.maybe_mapped_shared(pfns)
            p = pfns[excl]
            mem.flags[p] &= ~np.uint32(M.PG_DIRTY | M.PG_SWAPBACKED | M.PG_REFERENCED)
            sl[present[excl]] &= ~(PTE_DIRTY | PTE_ACCESSED)

    @_write_locked
    def clear_refs(self, value: int) -> None:
        """Write to /proc/PID/clear_refs (spec §11.2); value already checked 1..5."""
        if value == 5:
            self.hiwater_rss = self.rss_pages
            return
        mem = self.mem
        for v in self.vmas:
            if value == 4:
                vma_start_write(self.mmap_lock, v)
                v.flags &= ~VM_SOFTDIRTY
                for _, sl in self.pgtable.spans(v.start, v.end):
                    # write-protect so that the next write faults and sets it
                    # again (swap entries only lose the bit)
                    had = (sl & PTE_SOFT_DIRTY) != 0
                    sl[had & pte_present(sl)] &= ~(PTE_RW if not v.flags & VM_MAYSHARE else np.uint64(0))
                    sl[had] &= ~PTE_SOFT_DIRTY
                continue
            if v.flags & VM_PFNMAP or (value == 2 and v.file is not None) or (value == 3 and v.file is None):
                continue
            for _, sl in self.pgtable.spans(v.start, v.end):
                present = pte_present(sl)
                if not present.any():
                    continue
                sl[present] &= ~PTE_ACCESSED
                pfns = pte_pfn(sl[present])
                mem.flags[pfns[pfns != ZERO_PFN]] &= ~np.uint32(M.PG_REFERENCED | M.PG_YOUNG)

    def populate(self, start: int, end: int, special_pages: np.ndarray | None = None) -> int:
        """__mm_populate() for mlock and MAP_LOCKED: fault the range in as
        get_user_pages does, with write faults in private writable VMAs (so the
        memory is really there, not the zero page) and read faults elsewhere;
        holes, PROT_NONE and I/O or PFN-map VMAs are skipped, never an error.
        (This used to read-fault everything and fail with EFAULT on PROT_NONE
        after the flags had been changed.)"""
        faults = 0
        for v in self.vmas.overlapping(start, end):
            if v.flags & (VM_IO | VM_PFNMAP) or not v.flags & (VM_READ | VM_WRITE | VM_EXEC):
                continue
            if v.special is not None and (special_pages is None or not len(special_pages)):
                continue
            write = v.flags & (VM_WRITE | VM_SHARED) == VM_WRITE
            try:
                faults += self._fault_vma(v, max(start, v.start), min(end, v.end), write, special_pages)
            except MMError:
                if not v.is_hugetlb:
                    raise
                # an empty pool (MAP_NORESERVE) ends population quietly:
                # mm_populate() ignores errors
        return faults

    # -- pages ----------------------------------------------------------------

    def _zap_vma(self, v: VMA, start: int, end: int, close: bool) -> int:
        """Zap [start, end) of one VMA. `close`: the range stops being mapped
        (munmap, exit), not just emptied (MADV_DONTNEED)."""
        if v.is_hugetlb:
            return self._zap_hugetlb(v, start, end, close)
        return self._zap(start, end, bool(v.flags & VM_PFNMAP))

    def _zap(self, start: int, end: int, pfnmap: bool = False) -> int:
        """Remove the translations of [start, end); free anon pages no one
        maps, and the swap slots of swap entries (zap_nonpresent_ptes ->
        free_swap_and_cache). `pfnmap`: the range is a VM_PFNMAP VMA, whose
        pages were never charged to RSS."""
        nhuge = self._zap_huge(start, end)
        ptes = self.pgtable.take(start, end)
        if not len(ptes):
            return nhuge
        swp = is_swap_pte(ptes)
        if swp.any():
            self.mem.swap.free(swp_offset(ptes[swp]))
            self.rss.add(MM_SWAPENTS, -int(swp.sum()))
            ptes = ptes[~swp]
        pfns = pte_pfn(ptes)
        pfns = pfns[pfns != ZERO_PFN]
        if not len(pfns):
            return nhuge
        mem = self.mem
        fl = mem.flags[pfns]
        anon = (fl & M.PG_ANON) != 0
        shmem = (fl & M.PG_SHMEM) != 0
        special = (fl & M.PG_RESERVED) != 0
        self.rss.add(MM_ANONPAGES, -int(anon.sum()))
        self.rss.add(MM_SHMEMPAGES, -int(shmem.sum()))
        self.rss.add(MM_FILEPAGES, -int(len(pfns) - anon.sum() - shmem.sum() - (special.sum() if pfnmap else 0)))
        counted = pfns[~special]
        mem.unmap_pages(counted, self.mm_id)
        return len(pfns) + nhuge

    # -- huge PMDs ------------------------------------------------------------

    def _huge_head(self, idx: int) -> int:
        return int(self.pgtable.tables[idx][0] >> np.uint64(PAGE_SHIFT))

    def split_huge_pmd(self, idx: int) -> None:
        """__split_huge_pmd(): the PMD becomes 512 PTEs with its bits; the folio
        stays whole (one PMD mapping becomes 512 PTE mappings)."""
        head = self._huge_head(idx)
        self.pgtable.huge.discard(idx)
        self.mem.map_pages(np.arange(head, head + PTRS_PER_TABLE, dtype=np.int64), self.mm_id)
        self.mem.unmap_pmd(head, self.mm_id)
        self.mem.split_pmds += 1

    def split_huge_pmds(self, start: int, end: int) -> None:
        for idx in self.pgtable.huge_in(start, end):
            self.split_huge_pmd(idx)

    def _zap_huge(self, start: int, end: int) -> int:
        """zap_huge_pmd() for huge PMDs inside [start, end), splitting those the
        range only partly covers. The deposited table goes with the PMD, so
        the next fault there may get a THP again."""
        n = 0
        for idx in self.pgtable.huge_in(start, end):
            base = idx << PMD_SHIFT
            if start <= base and base + PMD_SIZE <= end:
                head = self._huge_head(idx)
                del self.pgtable.tables[idx]
                self.pgtable.huge.discard(idx)
                self.mem.unmap_pmd(head, self.mm_id)
                self.rss.add(MM_ANONPAGES, -PTRS_PER_TABLE)
                n += PTRS_PER_TABLE
            else:
                self.split_huge_pmd(idx)
        return n

    def _sync_huge_bits(self, start: int, end: int) -> None:
        """A huge PMD has one young, dirty and soft-dirty bit: keep the 512
        copies of it equal after a partial access."""
        bits = PTE_ACCESSED | PTE_DIRTY | PTE_SOFT_DIRTY
        for idx in self.pgtable.huge_in(start, end):
            t = self.pgtable.tables[idx]
            t |= np.bitwise_or.reduce(t & bits)

    def _fault_large(self, v: VMA, lo: int, hi: int, orders: int) -> int:
        """Anonymous write faults that get a large folio: do_huge_pmd_anonymous_page
        where the PMD is still none (no page table at all) and the aligned
        2 MiB lies inside the VMA, else alloc_anon_folio's highest enabled
        order whose aligned block is inside the VMA and wholly pte_none.
        Pages left missing are order-0 faults for the caller. Returns the
        faults taken (one per folio)."""
        mem, pt = self.mem, self.pgtable
        flags = ANON_NEW
        small_orders = [o for o in range(8, 1, -1) if orders >> o & 1]
        faults = 0
        for idx in range(lo >> PMD_SHIFT, ((hi - 1) >> PMD_SHIFT) + 1):
            base = idx << PMD_SHIFT
            t = pt.tables.get(idx)
            if orders >> 9 & 1 and t is None and v.start <= base and base + PMD_SIZE <= v.end:
                head = mem.alloc_folio(9, flags)
                if head >= 0:
                    pt.tables[idx] = mk_pte(np.arange(head, head + PTRS_PER_TABLE, dtype=np.int64), True, True)
                    pt.mark_young(idx)
                    pt.huge.add(idx)
                    mem.map_pmd(head, self.mm_id)
                    self.rss.add(MM_ANONPAGES, PTRS_PER_TABLE)
                    v.anon_vma = v.anon_vma or AnonVma()
                    mem.thp_fault_alloc += 1
                    faults += 1
                    continue
            if not small_orders:
                continue
            none = np.ones(PTRS_PER_TABLE, bool) if t is None else t == 0
            touched = np.zeros(PTRS_PER_TABLE, bool)
            touched[(max(lo, base) - base) >> PAGE_SHIFT: (min(hi, base + PMD_SIZE) - base) >> PAGE_SHIFT] = True
            inside = np.zeros(PTRS_PER_TABLE, bool)
            inside[(max(v.start, base) - base) >> PAGE_SHIFT: (min(v.end, base + PMD_SIZE) - base) >> PAGE_SHIFT] = True
            got: list[tuple[int, int, int]] = []  # (slot, head, order)
            for o in small_orders:
                nr = 1 << o
                ok = (none & inside).reshape(-1, nr).all(1) & (touched & none).reshape(-1, nr).any(1)
                for b in np.nonzero(ok)[0].tolist():
                    head = mem.alloc_folio(o, flags)
                    if head < 0:
                        break  # no block of this order: lower orders for the rest
                    got.append((b * nr, head, o))
                    none[b * nr: (b + 1) * nr] = False
                    mem.mthp_fault_alloc[o] += 1
            if not got:
                continue
            if t is None:
                pt.tables[idx] = np.zeros(PTRS_PER_TABLE, np.uint64)
                t = pt.tables[idx]
            pt.mark_young(idx)
            pfns = []
            for slot, head, o in got:
                p = np.arange(head, head + (1 << o), dtype=np.int64)
                t[slot: slot + len(p)] = mk_pte(p, True, True)
                pfns.append(p)
            allp = np.concatenate(pfns)
            mem.map_pages(allp, self.mm_id)
            self.rss.add(MM_ANONPAGES, len(allp))
            v.anon_vma = v.anon_vma or AnonVma()
            faults += len(got)
        return faults

    def _huge_wp(self, lo: int, hi: int) -> int:
        """do_huge_pmd_wp_page(): a write to a read-only huge PMD reuses the
        folio if this PMD is its only mapping, else splits the PMD and lets
        the PTE-level fault copy the written pages."""
        faults = 0
        for idx in self.pgtable.huge_in(lo, hi):
            t = self.pgtable.tables[idx]
            if t[0] & PTE_RW:
                continue
            head = self._huge_head(idx)
            if self.mem.large_mapcount[head] == 1:
                t |= PTE_RW | PTE_DIRTY
                faults += 1
            else:
                self.split_huge_pmd(idx)
        return faults

    def zap(self, start: int, end: int) -> Flush | None:
        """madvise(MADV_DONTNEED). In a hugetlb VMA the start must be 2 MiB
        aligned (EINVAL) and the end is rounded up to a huge page, as
        madvise_dontneed_free_valid_vma() does (checked on 6.18: a 4 KiB
        DONTNEED at an aligned start dropped the 2 MiB page)."""
        vmas = self.vmas.overlapping(start, end)
        for v in vmas:
            if v.flags & (VM_LOCKED | VM_IO):
                raise MMError(errno.EINVAL, "cannot discard locked or I/O mappings")
            if v.is_hugetlb and max(start, v.start) & (HPAGE_SIZE - 1):
                raise MMError(errno.EINVAL, "MADV_DONTNEED inside a huge page")
        self.update_hiwater_rss()
        n = 0
        for v in vmas:
            lo, hi = max(start, v.start), min(end, v.end)
            if v.is_hugetlb:
                hi = min((hi + HPAGE_SIZE - 1) & ~(HPAGE_SIZE - 1), v.end)
            n += self._zap_vma(v, lo, hi, close=False)
        return Flush(start, end) if n else None

    def fault(self, start: int, end: int, write: bool, special_pages: np.ndarray | None = None) -> int:
        """Touch every page of [start, end) (reads or writes); returns the number
        of page faults taken. EFAULT if a page is unmapped or not permitted."""
        self.check_fault(start, end, write)
        faults = 0
        for v in self.vmas.overlapping(start, end):
            faults += self._fault_vma(v, max(start, v.start), min(end, v.end), write, special_pages)
        if self.access_log is not None:
            self.access_log.record_range(start, end)
        return faults

    def check_fault(self, start: int, end: int, write: bool) -> None:
        """What fault() checks before it changes anything: EFAULT if a page
        of [start, end) is unmapped or not permitted."""
        addr = start
        for v in self.vmas.overlapping(start, end):
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
        self._hugetlb_fault_check(start, end, write)

    def access(self, vas: np.ndarray, write: bool, special_pages: np.ndarray | None = None) -> int:
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
        vmas = self.vmas.overlapping(max(first, 0), min(last, TASK_SIZE) + PAGE_SIZE) if first >= 0 else []
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
                for lo, hi in self._runs(sel, PMD_SHIFT):
                    self._hugetlb_fault_check(max(lo, v.start), min(hi, v.end), write)
        faults = 0
        for v, sel in groups:
            if v.is_hugetlb:
                for lo, hi in self._runs(sel, PMD_SHIFT):
                    faults += self._fault_hugetlb(v, max(lo, v.start), min(hi, v.end), write)
                continue
            slow = self._access_ptes(sel, write)
            if len(slow):
                for lo, hi in self._runs(slow, PAGE_SHIFT):
                    faults += self._fault_vma(v, lo, hi, write, special_pages)
        if self.access_log is not None:
            self.access_log.record_pages(vas)
        return faults

    @staticmethod
    def _runs(vas: np.ndarray, shift: int) -> list[tuple[int, int]]:
        """[lo, hi) ranges of the runs of consecutive (1 << shift)-sized
        blocks that the sorted addresses `vas` fall in."""
        blk = _sorted_unique(vas >> shift)
        cut = np.flatnonzero(np.diff(blk) != 1) + 1
        los = blk[np.concatenate(([0], cut))] << shift
        his = (blk[np.concatenate((cut - 1, [len(blk) - 1]))] + 1) << shift
        return list(zip(los.tolist(), his.tolist()))

    def _access_ptes(self, vas: np.ndarray, write: bool) -> np.ndarray:
        """The hardware side of `access` for sorted pages of one non-hugetlb
        VMA: set A (and D) where the PTE permits the access, gathering the
        entries of all the tables at once (they are rows of the table
        pool); return the addresses that must fault."""
        pt = self.pgtable
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

    def _fault_vma(self, v: VMA, lo: int, hi: int, write: bool, special_pages) -> int:
        if v.is_hugetlb:
            return self._fault_hugetlb(v, lo, hi, write)
        mem = self.mem
        faults = 0
        shared = bool(v.flags & VM_MAYSHARE)
        if write and v.is_anon and not shared:
            orders = mem.thp.anon_orders(v.flags)
            if orders:
                faults += self._fault_large(v, lo, hi, orders)
        if write and self.pgtable.huge:
            faults += self._huge_wp(lo, hi)
        ptes = self.pgtable.read(lo, hi)
        idx = np.arange(len(ptes))
        swapped = is_swap_pte(ptes)
        if swapped.any():
            faults += self._swapin(v, ptes, swapped, write)
            # an allocation below may fail (out of memory): keep the swap-ins whole
            self.pgtable.write(lo, ptes)
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
                    self.rss.add(MM_FILEPAGES, nmiss)
            elif v.file is None:
                if write:
                    pfns = mem.alloc(nmiss, ANON_NEW)
                    v.anon_vma = v.anon_vma or AnonVma()  # anon_vma_prepare()
                    mem.map_pages(pfns, self.mm_id)
                    ptes[mi] = mk_pte(pfns, True, True)
                    self.rss.add(MM_ANONPAGES, nmiss)
                else:
                    ptes[mi] = mk_pte(np.full(nmiss, ZERO_PFN), False, False)
            else:
                pfns = self._cache_pages(v.file, v.pgoff + vi)
                if write and not shared:
                    # private write fault on a file page: copy it now
                    pfns = mem.alloc(nmiss, ANON_NEW)
                    v.anon_vma = v.anon_vma or AnonVma()
                    mem.map_pages(pfns, self.mm_id)
                    ptes[mi] = mk_pte(pfns, True, True)
                    self.rss.add(MM_ANONPAGES, nmiss)
                else:
                    mem.map_pages(pfns, self.mm_id)
                    rw = shared and bool(v.flags & VM_WRITE)
                    ptes[mi] = mk_pte(pfns, rw, write and shared)
                    self.rss.add(MM_SHMEMPAGES if v.file.shmem else MM_FILEPAGES, nmiss)
                    if write:
                        mem.flags[pfns] |= M.PG_DIRTY
        if write:
            wp = (~missing) & ((ptes & PTE_RW) == 0)
            if wp.any():
                faults += int(wp.sum())
                ptes[wp] = self._wp_fault(v, ptes[wp], shared)
            ptes |= PTE_DIRTY | (PTE_SOFT_DIRTY if mem.soft_dirty else np.uint64(0))
        ptes |= PTE_ACCESSED
        pfns = pte_pfn(ptes)
        # page-cache pages are marked accessed (folio_mark_accessed on the
        # fault path); anonymous ones only get the PTE young bit (observed
        # on 6.18: a written private page's kpageflags is 0x400005828,
        # without REFERENCED or DIRTY)
        pfns = pfns[pfns != ZERO_PFN]
        # folio_mark_accessed() also ends an idle period
        cache = pfns[(mem.flags[pfns] & M.PG_ANON) == 0]
        mem.flags[cache] = (mem.flags[cache] | np.uint32(M.PG_REFERENCED)) & ~np.uint32(M.PG_IDLE)
        self.pgtable.write(lo, ptes)
        if self.pgtable.huge:
            self._sync_huge_bits(lo, hi)
        if v.anon_vma is not None:
            # new anonymous folios join the VMA's anon_vma (whole large
            # folios: their head may lie before lo)
            alo = max(v.start, lo & ~(PMD_SIZE - 1))
            ahi = min(v.end, (hi + PMD_SIZE - 1) & ~(PMD_SIZE - 1))
            set_anon_rmap(mem, v, alo, ptes if (alo, ahi) == (lo, hi) else self.pgtable.read(alo, ahi))
        self.update_hiwater_rss()
        return faults

    def _swapin(self, v: VMA, ptes: np.ndarray, sel: np.ndarray, write: bool) -> int:
        """do_swap_page() for the swap entries `sel` of `ptes` (changed in
        place): each is read into a new order-0 anonymous page, mapped
        writable where the VMA allows (the page is this mm's alone), and its
        slot reference dropped. A major fault each. No swap cache: the page
        is dirty as a folio removed from the swap cache is, and the slot is
        freed at once (on 6.18 a read fault keeps the slot and the page in
        the swap cache; a write fault frees it and dirties the page, kpageflags
        0x400005838)."""
        mem = self.mem
        ents = ptes[sel]
        n = len(ents)
        pfns = mem.alloc(n, M.PG_ANON | M.PG_LRU | M.PG_DIRTY)  # may fail: nothing changed yet
        mem.map_pages(pfns, self.mm_id)
        mem.swap.free(swp_offset(ents))
        mem.swap.pswpin += n
        new = mk_pte(pfns, bool(v.flags & VM_WRITE), write)
        new[(ents & PTE_SOFT_DIRTY) != 0] |= PTE_SOFT_DIRTY
        ptes[sel] = new
        self.rss.add(MM_SWAPENTS, -n)
        self.rss.add(MM_ANONPAGES, n)
        self.nr_major += n
        v.anon_vma = v.anon_vma or AnonVma()
        return n

    def _wp_fault(self, v: VMA, ptes: np.ndarray, shared: bool) -> np.ndarray:
        """Write to present read-only PTEs: reuse or copy (do_wp_page)."""
        mem = self.mem
        if shared:
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
            mem.unmap_pages(real, self.mm_id)
            mem.map_pages(new, self.mm_id)
            v.anon_vma = v.anon_vma or AnonVma()
            out[copy] = mk_pte(new, True, True)
            nfile = int(was_file.sum())
            self.rss.add(MM_FILEPAGES, -nfile)
            self.rss.add(MM_ANONPAGES, nfile + int((old == ZERO_PFN).sum()))
        return out

    def _cache_pages(self, file: File, pgoffs: np.ndarray) -> np.ndarray:
        file.ensure(int(pgoffs.max()) + 1)
        pfns = file.cache[pgoffs]
        absent = pfns == 0
        if absent.any():
            kind = M.PG_SHMEM | M.PG_LRU if file.shmem else M.PG_FILE | M.PG_LRU
            new = self.mem.alloc(int(absent.sum()), kind)
            if not file.shmem:  # read from disk (shmem pages start zeroed)
                self.mem.vm_events.pgpgin += len(new) * (PAGE_SIZE // 1024)
            file.cache[pgoffs[absent]] = new
            set_file_rmap(self.mem, file, new, pgoffs[absent])
            pfns = file.cache[pgoffs]
        return pfns

    # -- swap -------------------------------------------------------------------

    def pageout(self, start: int, end: int) -> int:
        """madvise(MADV_PAGEOUT) on [start, end) (the caller has refused
        locked, PFN-map and hugetlb VMAs with EINVAL): anonymous pages only
        this mm maps are written to swap, their frames freed. Returns the
        pages paged out.

        As madvise_cold_or_pageout_pte_range() + reclaim: huge PMDs and large
        folios only this mm maps are split first (a THP is swapped whole only
        into a free swap cluster; 6.18 split it, thp_swpout_fallback), shared
        ones (after fork, or maybe mapped shared) are skipped, as are the zero
        page, page-cache pages and shared memory (simplification: file and
        shmem reclaim are not modelled). Clean MADV_FREE pages are dropped
        instead (PTE none, no slot), re-dirtied ones become swap-backed again
        and stay. A full swap area leaves the rest resident, no error."""
        mem, swap = self.mem, self.mem.swap
        out = 0
        for v in self.vmas.overlapping(start, end):
            if v.flags & VM_MAYSHARE or v.special is not None or v.is_hugetlb:
                continue
            lo, hi = max(start, v.start), min(end, v.end)
            for idx in self.pgtable.huge_in(lo, hi):
                head = self._huge_head(idx)
                if mem.large_mapcount[head] == 1:
                    self.split_huge_pmd(idx)
                    mem.split_folio(head)
            for _, sl in self.pgtable.spans(lo, hi):
                pres = np.nonzero(sl & PTE_PRESENT)[0]
                if not len(pres):
                    continue
                pfns = pte_pfn(sl[pres])
                anon = (pfns != ZERO_PFN) & ((mem.flags[pfns] & M.PG_ANON) != 0)
                heads, order = mem.folio_head(pfns)
                for h in np.unique(heads[anon & (order > 0)]).tolist():
                    if not mem.maybe_mapped_shared(np.array([h], np.int64))[0]:
                        mem.split_folio(h)
                fl = mem.flags[pfns]
                cand = anon & (mem.order[pfns] == 0) & (mem.mapcount[pfns] == 1)
                lazy = cand & ((fl & M.PG_SWAPBACKED) == 0)
                if lazy.any():
                    dirty = ((sl[pres] & PTE_DIRTY) != 0) | ((fl & M.PG_DIRTY) != 0)
                    mem.flags[pfns[lazy & dirty]] |= np.uint32(M.PG_SWAPBACKED)
                    drop = lazy & ~dirty
                    sl[pres[drop]] = 0
                    mem.unmap_pages(pfns[drop], self.mm_id)
                    self.rss.add(MM_ANONPAGES, -int(drop.sum()))
                    cand &= ~lazy
                ci = np.nonzero(cand)[0]
                slots = swap.alloc(len(ci))
                if not len(slots):
                    continue
                ci = ci[: len(slots)]
                old = sl[pres[ci]]
                sl[pres[ci]] = swp_entry_pte(slots, (old & PTE_SOFT_DIRTY) != 0)
                mem.unmap_pages(pfns[ci], self.mm_id)
                self.rss.add(MM_ANONPAGES, -len(slots))
                self.rss.add(MM_SWAPENTS, len(slots))
                swap.pswpout += len(slots)
                out += len(slots)
        return out

    # -- hugetlb ----------------------------------------------------------------

    @staticmethod
    def _hugetlb_index(v: VMA, va: int) -> int:
        """The huge page's index in the VMA's hugetlbfs file."""
        return (v.pgoff + ((va - v.start) >> PAGE_SHIFT)) >> HPAGE_ORDER

    def _hugetlb_fault_check(self, start: int, end: int, write: bool) -> None:
        """Faults of [start, end) that need a pool page no reservation
        covers (MAP_NORESERVE, a fork child's private pages, COW copies) take
        it from the free pages nobody reserved; when there are too few the
        access gets SIGBUS. Checked before any fault so that a failed touch
        changes nothing. Reserved pages never fail (resv <= free)."""
        pt, need = self.pgtable, 0
        for v in self.vmas.overlapping(start, end):
            if not v.is_hugetlb:
                continue
            lo, hi = max(start, v.start), min(end, v.end)
            shared = bool(v.flags & VM_MAYSHARE)
            for idx in range(lo >> PMD_SHIFT, ((hi - 1) >> PMD_SHIFT) + 1):
                e = pt.hugetlb.get(idx)
                i = self._hugetlb_index(v, idx << PMD_SHIFT)
                if e is None:
                    if shared:
                        f = v.file
                        cached = i < len(f.cache) and f.cache[i] != 0
                        need += not cached and i not in (f.resv or ())
                    else:
                        need += v.resv is None or i not in v.resv.reserved
                elif write and not shared and not e & _HPTE_RW and self.mem.large_mapcount[e >> PAGE_SHIFT] > 1:
                    need += 1
        if need > self.mem.hugetlb.available:
            raise MMError(errno.EFAULT, "SIGBUS: no free huge page for the fault")

    def _hugetlb_page(self, v: VMA, va: int) -> int:
        """hugetlb_no_page(): the page for a fault at va: the hugetlbfs file's
        page of a shared mapping (added to the file on first use), a new
        anonymous page for a private one; a reservation is consumed if the
        index has one."""
        pool = self.mem.hugetlb
        i = self._hugetlb_index(v, va)
        if v.flags & VM_MAYSHARE:
            f = v.file
            f.ensure(i + 1)
            if f.cache[i]:
                return int(f.cache[i])
            reserved = f.resv is not None and i in f.resv
            head = pool.alloc(reserved, anon=False)
            if head < 0:
                raise MMError(errno.EFAULT, "SIGBUS: no free huge page for the fault")
            if reserved:
                f.resv.discard(i)
            f.cache[i] = head
            return head
        resv = v.resv
        reserved = resv is not None and i in resv.reserved
        head = pool.alloc(reserved, anon=True)
        if head < 0:
            raise MMError(errno.EFAULT, "SIGBUS: no free huge page for the fault")
        if reserved:
            resv.reserved.discard(i)
        v.anon_vma = v.anon_vma or AnonVma()  # anon_vma_prepare() of a private fault
        return head

    def _fault_hugetlb(self, v: VMA, lo: int, hi: int, write: bool) -> int:
        """hugetlb_fault() for the huge pages of [lo, hi): one minor fault per
        huge page instantiated or write-faulted. A private read fault maps
        the new page read-only (the next write reuses it: it is exclusive); a
        shared mapping maps it writable when the VMA is."""
        pt, pool = self.pgtable, self.mem.hugetlb
        shared = bool(v.flags & VM_MAYSHARE)
        faults = 0
        for idx in range(lo >> PMD_SHIFT, ((hi - 1) >> PMD_SHIFT) + 1):
            e = pt.hugetlb.get(idx)
            if e is None:
                head = self._hugetlb_page(v, idx << PMD_SHIFT)
                pool.map(head)
                self.hugetlb_usage += HPAGE_NR
                rw = bool(v.flags & VM_WRITE) and (shared or write)
                e = (head << PAGE_SHIFT) | _HPTE_BASE | ((_HPTE_RW | _HPTE_DIRTY) if rw else 0)
                faults += 1
            elif write and not e & _HPTE_RW:
                e = self._hugetlb_wp(v, e, shared)
                faults += 1
            pt.hugetlb[idx] = e | _HPTE_ACCESSED
            pt.mark_young(idx)
        return faults

    def _hugetlb_wp(self, v: VMA, e: int, shared: bool) -> int:
        """hugetlb_wp(): a write to a read-only huge PTE. Shared: just make
        it writable. Private: reuse the page if this is its only mapping,
        else copy it into a pool page nobody reserved (simplification: the
        reservation owner does not steal the page from its children)."""
        if shared:
            return e | _HPTE_RW | _HPTE_DIRTY
        mem, pool = self.mem, self.mem.hugetlb
        head = e >> PAGE_SHIFT
        if mem.large_mapcount[head] == 1:
            mem.flags[head: head + HPAGE_NR] |= np.uint32(M.PG_ANON_EXCLUSIVE)
            return e | _HPTE_RW | _HPTE_DIRTY
        new = pool.alloc(False, anon=True)
        if new < 0:
            raise MMError(errno.EFAULT, "SIGBUS: no free huge page for the copy")
        pool.map(new)
        if pool.unmap(head) == 0:
            pool.free(head)
        return (new << PAGE_SHIFT) | _HPTE_BASE | _HPTE_RW | _HPTE_DIRTY

    def _zap_hugetlb(self, v: VMA, start: int, end: int, close: bool) -> int:
        """Unmap the huge pages of [start, end) (2 MiB aligned) in v. A
        private page nobody maps any more goes back to the pool; a shared
        one stays in its file until the file's last mapping goes.
        `close` (munmap, exit): the range's unused reservations are released
        (hugetlb_vm_op_close). Otherwise (MADV_DONTNEED) the reservation
        owner gets the reservation of a freed private page back (6.18: Free
        and Rsvd both went up by one)."""
        pt, pool = self.pgtable, self.mem.hugetlb
        shared = bool(v.flags & VM_MAYSHARE)
        n = 0
        for idx in pt.hugetlb_in(start, end):
            head = pt.hugetlb.pop(idx) >> PAGE_SHIFT
            self.hugetlb_usage -= HPAGE_NR
            n += 1
            if pool.unmap(head) or shared:
                continue
            pool.free(head)
            if not close and v.resv is not None and pool.reserve(1):
                v.resv.reserved.add(self._hugetlb_index(v, idx << PMD_SHIFT))
        if close and v.resv is not None:
            i0, i1 = self._hugetlb_index(v, start), self._hugetlb_index(v, end)
            gone = v.resv.reserved.intersection(range(i0, i1))
            v.resv.reserved -= gone
            pool.unreserve(len(gone))
        return n

    # -- fork, exit -----------------------------------------------------------

    def dup(self, mmap_base: int) -> "MM":
        """dup_mm: copy VMAs; share pages copy-on-write."""
        child = MM(self.mem, mmap_base)
        child.rss.cpu = self.rss.cpu  # add_mm_rss_vec() runs on the forking task's CPU
        for name in ("total_vm", "hiwater_vm", "locked_vm", "data_vm", "hugetlb_data_vm", "exec_vm", "stack_vm",
                     "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                     "start_stack", "arg_start", "arg_end", "env_start", "env_end"):
            setattr(child, name, getattr(self, name))
        child.hiwater_vm = self.total_vm
        child.mmap_base = self.mmap_base
        # mlock is not inherited (dup_mmap clears VM_LOCKED_MASK; mm_init zeroes locked_vm)
        child.locked_vm = 0
        for v in self.vmas:
            if v.flags & (1 << 17):  # VM_DONTCOPY: dup_mmap skips the VMA entirely
                child._account(VMA(v.start, v.end, v.flags & ~(VM_LOCKED | VM_LOCKONFAULT)), -1)
                continue
            nv = VMA(v.start, v.end, v.flags & ~(VM_LOCKED | VM_LOCKONFAULT), v.pgoff, v.file,
                     v.special, v.anon_name, AnonVma(v.anon_vma.root) if v.anon_vma is not None else None)
            child.vmas.insert(nv)
            if v.file is not None:
                v.file.nr_mappings += 1
            if v.is_hugetlb:
                self._dup_hugetlb(v, child)
                continue
            ptes = self.pgtable.read(v.start, v.end)
            present = pte_present(ptes)
            swp = is_swap_pte(ptes)
            if not present.any() and not swp.any():
                continue
            # swap entries stand in for no frame: read them as the zero page
            pfns = np.where(present, pte_pfn(ptes), ZERO_PFN)
            fl = self.mem.flags[pfns]
            if not v.flags & VM_PFNMAP and not ((fl & M.PG_ANON) != 0).any() and not swp.any():
                # vma_needs_copy(): no anon_vma and not a PFN map: the child
                # faults file, shmem and vDSO pages in itself
                continue
            if swp.any():
                # copy_nonpresent_pte(): swap_duplicate() per entry
                self.mem.swap.duplicate(swp_offset(ptes[swp]))
                child.rss.add(MM_SWAPENTS, int(swp.sum()))
            if not v.flags & VM_MAYSHARE:
                ptes[present] &= ~PTE_RW
                self.pgtable.write(v.start, ptes)
            # kernel pages (PFN maps) carry no mapcount and no RSS
            real = present & (pfns != ZERO_PFN) & ((fl & M.PG_RESERVED) == 0)
            # copy_huge_pmd(): a huge PMD is shared as one PMD mapping
            huge = self.pgtable.huge_in(v.start, v.end)
            pte_mapped = real
            if huge:
                pte_mapped = real.copy()
                for idx in huge:
                    off = ((idx << PMD_SHIFT) - v.start) >> PAGE_SHIFT
                    pte_mapped[off: off + PTRS_PER_TABLE] = False
            self.mem.map_pages(pfns[pte_mapped], child.mm_id)
            child.pgtable.write(v.start, ptes)
            for idx in huge:
                child.pgtable.huge.add(idx)
                self.mem.map_pmd(self._huge_head(idx), child.mm_id)
            anon = real & ((fl & M.PG_ANON) != 0)
            shm = real & ((fl & M.PG_SHMEM) != 0)
            child.rss.add(MM_ANONPAGES, int(anon.sum()))
            child.rss.add(MM_SHMEMPAGES, int(shm.sum()))
            child.rss.add(MM_FILEPAGES, int(real.sum() - anon.sum() - shm.sum()))
        child.hiwater_rss = child.rss_pages
        child.vmas.publish()
        return child

    def _dup_hugetlb(self, v: VMA, child: "MM") -> None:
        """copy_hugetlb_page_range(). A shared mapping is not copied (no
        anon_vma: the child faults the file's pages in itself; 6.18: the
        child's pagemap showed 0 until it touched the page). Private pages
        are shared copy-on-write: both huge PTEs write-protected, the folio
        mapped once more, no longer anon-exclusive (kpageflags after fork:
        0x29818, DIRTY set and bit 34 gone). The child has no reservations."""
        if v.flags & VM_MAYSHARE or v.anon_vma is None:
            return
        mem, pt, cpt = self.mem, self.pgtable, child.pgtable
        for idx in pt.hugetlb_in(v.start, v.end):
            e = pt.hugetlb[idx] & ~_HPTE_RW
            pt.hugetlb[idx] = cpt.hugetlb[idx] = e
            head = e >> PAGE_SHIFT
            mem.hugetlb.map(head)
            sl = slice(head, head + HPAGE_NR)
            mem.flags[sl] = (mem.flags[sl] | np.uint32(M.PG_DIRTY)) & ~np.uint32(M.PG_ANON_EXCLUSIVE)
            child.hugetlb_usage += HPAGE_NR

    @_write_locked
    def teardown(self) -> None:
        """exit_mmap: unmap everything."""
        self.update_hiwater_rss()
        for v in list(self.vmas):
            self._zap_vma(v, v.start, v.end, close=True)
            self._remove(v)
            self._file_put(v.file)
        self.pgtable = PageTable()
        self.mem.free_mm_id(self.mm_id)
        self.mm_id = 0

    # -- queries --------------------------------------------------------------

    def present_pages(self, start: int, end: int) -> int:
        """Pages of [start, end) that count as resident (not the zero page)."""
        n = 0
        for _, sl in self.pgtable.spans(start, end):
            nz = sl[pte_present(sl)]
            if len(nz):
                n += int(np.count_nonzero(pte_pfn(nz) != ZERO_PFN))
        return n

    def swap_entries(self, start: int, end: int) -> int:
        """Swap entries in [start, end) (they make up rss[MM_SWAPENTS])."""
        return self.pgtable.count_swap(start, end)
