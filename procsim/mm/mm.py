"""mm_struct: one address space, its VMAs, page tables and counters
(include/linux/mm_types.h), with its small accessors.

What changes an mm lives with its Linux file, as functions taking the mm:
mm/mmap.py (mmap, munmap, brk, VMA split and merge), mprotect.py,
mlock.py, mremap.py, madvise.py, memory.py (faults, zap, populate),
huge_memory.py, hugetlb.py, vmscan.py (pageout), task_mmu.py (clear_refs);
fork's copy is procsim/fork.py. Operations that change translations return
a `Flush` telling the kernel which TLB flush to send; the scheduler decides
who gets IPIs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.counter_tree import RssStat
from procsim.mm.mmap_lock import MmapLock
from procsim.mm.pagetable import PAGE_SIZE, PageTable, pte_pfn, pte_present
from procsim.mm.vma import (VM_ACCOUNT, VM_DONTEXPAND, VM_EXEC, VM_HUGETLB, VM_IO, VM_LOCKED, VM_PFNMAP, VM_SHARED, VM_STACK,
                            VM_WRITE, VMA)
from procsim.mm.vmatree import VMATree
from procsim.units import TASK_SIZE

MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = range(4)
MMAP_MIN_ADDR = 0x10000
# a new anonymous folio: its dirtiness is in the PTE that maps it, not the folio
ANON_NEW = M.PG_ANON | M.PG_LRU
ZERO_PFN = 1  # the shared zero page: mapped by read faults on anon memory, never counted
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP


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
        # pages of its VM_ACCOUNT VMAs: its share of vm_committed_as (meminfo
        # sums these rather than walk every VMA of the machine)
        self.committed_vm = 0
        # per-CPU counter trees (or flat percpu_counters): adds go to rss.cpu,
        # the CPU of the task the kernel is running this mm's code for
        self.rss = RssStat.for_mem(mem)
        self.hiwater_rss = 0
        self.hugetlb_usage = 0   # pages (4 KiB) of hugetlb pages mapped (status HugetlbPages)
        self.hugetlb_data_vm = 0  # the part of data_vm that is private writable hugetlb (not committed)
        self.nr_major = 0        # major faults taken (swap-ins and file pages read from disk); charged to the task
        self.start_code = self.end_code = self.start_data = self.end_data = 0
        self.start_brk = self.brk = self.start_stack = 0
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0
        # the argv and environment strings once the process rewrote them
        # (exec.write_argv_area; None: as exec placed them) and arg_end - arg_start
        self.argv_area: bytes | None = None
        self.argv_len = 0
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
        """Add (sign +1) or remove (-1) the VMA's pages in total_vm and the
        exec/stack/data/locked counters its flags select."""
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
        if f & VM_ACCOUNT:
            self.committed_vm += n

    def link_vma(self, vma: VMA) -> None:
        """vma_link(): insert into the VMA tree and account it."""
        self.vmas.insert(vma)
        self.vm_stat_account(vma, +1)

    def unlink_vma(self, vma: VMA) -> None:
        """Remove from the VMA tree and unaccount it."""
        self.vmas.remove(vma)
        self.vm_stat_account(vma, -1)

    @property
    def rss_pages(self) -> int:
        """get_mm_rss_sum(): the precise sum, as /proc shows it."""
        return self.rss.rss_precise()

    def update_hiwater_rss(self) -> None:
        self.hiwater_rss = max(self.hiwater_rss, self.rss_pages)

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
