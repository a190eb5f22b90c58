"""mm_struct: one address space, its VMAs, page tables and counters, and
the VMA-level operations behind mmap, munmap, mprotect, mremap, brk,
madvise, page faults and fork.

Operations that change translations return a `Flush` telling the kernel
which TLB flush to send; the scheduler decides who gets IPIs.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.hugetlb import HPAGE_NR, HPAGE_ORDER
from procsim.mm.pagetable import (PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PTE_ACCESSED, PTE_DIRTY,
                                  PTE_PRESENT, PTE_PSE, PTE_RW, PTE_SOFT_DIRTY, PTE_USER, PTRS_PER_TABLE,
                                  PageTable, is_swap_pte, pte_pfn, pte_present, swp_offset)
from procsim.mm.vma import (VM_DONTEXPAND, VM_EXEC, VM_HUGETLB, VM_IO, VM_LOCKED, VM_LOCKONFAULT, VM_MAYSHARE,
                            VM_PFNMAP, VM_SHARED, VM_SOFTDIRTY, VM_STACK, VM_WRITE, VMA)
from procsim.mm.counter_tree import RssStat
from procsim.mm.mmap_lock import MmapLock, vma_start_write, write_locked
from procsim.mm.rmap import AnonVma
from procsim.mm.vmatree import VMATree

MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = range(4)
TASK_SIZE = 0x7FFFFFFFF000
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




def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)



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

    def vm_stat_account(self, vma: VMA, sign: int) -> None:
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

    def link_vma(self, vma: VMA) -> None:
        self.vmas.insert(vma)
        self.vm_stat_account(vma, +1)

    def unlink_vma(self, vma: VMA) -> None:
        self.vmas.remove(vma)
        self.vm_stat_account(vma, -1)

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

    # -- mapping --------------------------------------------------------------

    @write_locked
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

    # -- pages ----------------------------------------------------------------

    # -- huge PMDs ------------------------------------------------------------

    # -- swap -------------------------------------------------------------------

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
                child.vm_stat_account(VMA(v.start, v.end, v.flags & ~(VM_LOCKED | VM_LOCKONFAULT)), -1)
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
                self.mem.map_pmd(huge_memory.huge_head(self, idx), child.mm_id)
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


# the operations on an mm (their modules import MM from here)
from procsim.mm import huge_memory  # noqa: E402
