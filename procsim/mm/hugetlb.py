"""The hugetlb pool of default-size (2 MiB) pages: struct hstate and the
reservation maps.

Pool pages are order-9 folios flagged PG_HUGETLB, taken from the mem_map at
boot (vm.nr_hugepages): MemTotal keeps them, MemFree does not, and they are
never in RSS, AnonPages, Mapped or Shmem.

Reservations (HugePages_Rsvd) are made at mmap (reserve_pages(), which a
layout replay's hugetlb VMAs go through too) for every huge page of the
mapping and consumed by the fault that instantiates it, so a mapping that
mmap() accepted cannot run out of pages later; MAP_NORESERVE mappings make
none and their faults may find the pool empty (SIGBUS). Private mappings
keep their reservations in a ResvMap owned by the VMA that mmap made (split
parts share it; a fork child has none), shared ones in the hugetlbfs file.
Invariants: 0 <= resv_huge_pages <= free_huge_pages <= nr_huge_pages.

Mapping counts live in the folio's entire and large mapcounts (one per
mapping mm, like a PMD mapping; page mapcounts stay 0), so kpagecount shows
the folio mapcount on every subpage, as on Linux.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.mm import MM, MMError
from procsim.mm.pagetable import (PAGE_SHIFT, PMD_SHIFT, PMD_SIZE, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_PSE,
                                  PTE_RW, PTE_USER)
from procsim.mm.rmap import AnonVma
from procsim.mm.vma import VM_MAYSHARE, VM_WRITE, VMA, File

HPAGE_ORDER = 9
HPAGE_NR = 1 << HPAGE_ORDER
HPAGE_SIZE = PMD_SIZE
HPAGE_SHIFT = PMD_SHIFT
HUGETLBFS_DEV = (0x00, 0x11)  # the internal hugetlbfs mount behind MAP_HUGETLB
HUGETLB_ANON_PATH = "/anon_hugepage"
# huge PTE bits of hugetlb entries (Python ints: one entry per 2 MiB page)
HPTE_RW, HPTE_DIRTY, HPTE_ACCESSED = int(PTE_RW), int(PTE_DIRTY), int(PTE_ACCESSED)
HPTE_BASE = int(PTE_PRESENT | PTE_USER | PTE_PSE)


def huge_align(n: int) -> int:
    return (n + HPAGE_SIZE - 1) & ~(HPAGE_SIZE - 1)


@dataclass(eq=False)
class ResvMap:
    """Huge page indices (file offset / 2 MiB) still holding a reservation."""
    reserved: set[int] = field(default_factory=set)


class HugetlbPool:
    """struct hstate for 2 MiB pages (no surplus pages, no overcommit)."""

    def __init__(self, mem: "M.MemMap") -> None:
        self.mem = mem
        self.nr_huge_pages = 0
        self.resv_huge_pages = 0
        self._free: list[int] = []  # heads of free pool folios, reused last-freed first
        self._next_ino = 20000       # inodes of the internal hugetlbfs mount

    @property
    def free_huge_pages(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return self.nr_huge_pages - self.free_huge_pages

    @property
    def available(self) -> int:
        """Free pages nobody has reserved (what unreserved faults may take)."""
        return self.free_huge_pages - self.resv_huge_pages

    def set_nr(self, nr: int) -> int:
        """Write vm.nr_hugepages: grow with folios from the page allocator
        (as many as it has: the total may end lower than asked), shrink by
        freeing free unreserved pages. Pages in use or reserved stay (the
        kernel would turn them into surplus pages; not modelled). Returns
        the new total."""
        if nr < 0:
            raise ValueError("nr_hugepages cannot be negative")
        mem = self.mem
        while self.nr_huge_pages < nr:
            head = mem.alloc_folio(HPAGE_ORDER, M.PG_HUGETLB)
            if head < 0:
                break
            self._free.append(head)
            self.nr_huge_pages += 1
        while self.nr_huge_pages > nr and self.available > 0:
            head = self._free.pop(0)
            mem.flags[head: head + HPAGE_NR] = 0  # a plain free folio again
            mem.free_folio(head)
            self.nr_huge_pages -= 1
        return self.nr_huge_pages

    def anon_file(self, size: int) -> File:
        """hugetlb_file_setup() for MAP_HUGETLB: an unlinked file on the
        internal hugetlbfs mount (maps: `/anon_hugepage (deleted)` on 00:11,
        a fresh inode each time; observed on 6.18 for private and shared)."""
        self._next_ino += 1
        return File(HUGETLB_ANON_PATH, self._next_ino, HUGETLBFS_DEV, huge_align(size), deleted=True,
                    writable=True, hugetlb=True, resv=set())

    # -- reservations -----------------------------------------------------------

    def reserve(self, n: int) -> bool:
        """hugetlb_acct_memory(+n): False if the free pages cannot cover it."""
        if n > self.available:
            return False
        self.resv_huge_pages += n
        return True

    def unreserve(self, n: int) -> None:
        self.resv_huge_pages -= n
        assert self.resv_huge_pages >= 0, "HugePages_Rsvd went negative"

    def reserve_pages(self, first: int, last: int, file: File | None = None) -> set[int]:
        """hugetlb_reserve_pages() for a new mapping of the huge pages
        [first, last) of a file (file offset / 2 MiB), not MAP_NORESERVE:
        the indices reserved, for set_vma_resv(). `file`: that of a shared
        mapping, whose indices already reserved or instantiated need no
        new reservation (region_chg() on the inode's map); a private
        mapping reserves all. ENOMEM, nothing changed, when the free
        unreserved pages cannot cover them."""
        want = set(range(first, last))
        if file is not None:
            want = {i for i in want - (file.resv or set()) if not (i < len(file.cache) and file.cache[i])}
        if not self.reserve(len(want)):
            raise OSError(errno.ENOMEM, f"cannot reserve {len(want)} huge pages: {self.available} free and unreserved")
        return want

    @staticmethod
    def set_vma_resv(v: VMA, reserved: set[int]) -> None:
        """Record what reserve_pages() reserved for `v`: in its file when
        shared, in a ResvMap the VMA owns when private."""
        if v.flags & VM_MAYSHARE:
            v.file.resv = (v.file.resv or set()) | reserved
        else:
            v.resv = ResvMap(reserved)

    # -- pages ------------------------------------------------------------------

    def alloc(self, reserved: bool, anon: bool) -> int:
        """dequeue_hugetlb_folio: a pool page for a fault. `reserved`: the
        fault consumes a reservation. Returns the head PFN or -1 (SIGBUS)."""
        if not self._free or (not reserved and self.available <= 0):
            return -1
        head = self._free.pop()
        if reserved:
            self.unreserve(1)
        mem = self.mem
        # private pages are anonymous and anon-exclusive (kpageflags ANON and
        # bit 34, no DIRTY); hugetlbfs page-cache pages are dirty, not anon
        # (observed on 6.18: private head 0x400029808, shared head 0x28818)
        mem.flags[head: head + HPAGE_NR] = (M.PG_HUGETLB | M.PG_ANON | M.PG_ANON_EXCLUSIVE) if anon \
            else (M.PG_HUGETLB | M.PG_DIRTY)
        mem.large_mapcount[head] = mem.entire_mapcount[head] = 0
        return head

    def free(self, head: int) -> None:
        """free_huge_folio: back to the pool. A used pool page reads as
        UPTODATE and DIRTY in kpageflags (observed 0x28018 after munmap)."""
        mem = self.mem
        assert mem.large_mapcount[head] == 0, "freeing a mapped hugetlb page"
        mem.flags[head: head + HPAGE_NR] = M.PG_HUGETLB | M.PG_DIRTY
        self._free.append(head)

    def map(self, head: int) -> None:
        """hugetlb_add_{new_anon,file}_rmap: one more mapping of the folio."""
        self.mem.entire_mapcount[head] += 1
        self.mem.large_mapcount[head] += 1

    def unmap(self, head: int) -> int:
        """One mapping fewer; returns the mappings left."""
        mem = self.mem
        mem.entire_mapcount[head] -= 1
        mem.large_mapcount[head] -= 1
        left = int(mem.large_mapcount[head])
        assert left >= 0, "hugetlb mapcount went negative"
        return left


# -- faults, zap and fork of hugetlb mappings (mm/hugetlb.c) ----------------------

def hugetlb_index(v: VMA, va: int) -> int:
    """The huge page's index in the VMA's hugetlbfs file."""
    return (v.pgoff + ((va - v.start) >> PAGE_SHIFT)) >> HPAGE_ORDER


def hugetlb_fault_check(mm: MM, start: int, end: int, write: bool) -> None:
    """Faults of [start, end) that need a pool page no reservation
    covers (MAP_NORESERVE, a fork child's private pages, COW copies) take
    it from the free pages nobody reserved; when there are too few the
    access gets SIGBUS. Checked before any fault so that a failed touch
    changes nothing. Reserved pages never fail (resv <= free)."""
    pt, need = mm.pgtable, 0
    for v in mm.vmas.overlapping(start, end):
        if not v.is_hugetlb:
            continue
        lo, hi = max(start, v.start), min(end, v.end)
        shared = bool(v.flags & VM_MAYSHARE)
        for idx in range(lo >> PMD_SHIFT, ((hi - 1) >> PMD_SHIFT) + 1):
            e = pt.hugetlb.get(idx)
            i = hugetlb_index(v, idx << PMD_SHIFT)
            if e is None:
                if shared:
                    f = v.file
                    cached = i < len(f.cache) and f.cache[i] != 0
                    need += not cached and i not in (f.resv or ())
                else:
                    need += v.resv is None or i not in v.resv.reserved
            elif write and not shared and not e & HPTE_RW and mm.mem.large_mapcount[e >> PAGE_SHIFT] > 1:
                need += 1
    if need > mm.mem.hugetlb.available:
        raise MMError(errno.EFAULT, "SIGBUS: no free huge page for the fault")


def hugetlb_no_page(mm: MM, v: VMA, va: int) -> int:
    """hugetlb_no_page(): the page for a fault at va: the hugetlbfs file's
    page of a shared mapping (added to the file on first use), a new
    anonymous page for a private one; a reservation is consumed if the
    index has one."""
    pool = mm.mem.hugetlb
    i = hugetlb_index(v, va)
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


def hugetlb_fault(mm: MM, v: VMA, lo: int, hi: int, write: bool) -> int:
    """hugetlb_fault() for the huge pages of [lo, hi): one minor fault per
    huge page instantiated or write-faulted. A private read fault maps
    the new page read-only (the next write reuses it: it is exclusive); a
    shared mapping maps it writable when the VMA is."""
    pt, pool = mm.pgtable, mm.mem.hugetlb
    shared = bool(v.flags & VM_MAYSHARE)
    faults = 0
    for idx in range(lo >> PMD_SHIFT, ((hi - 1) >> PMD_SHIFT) + 1):
        e = pt.hugetlb.get(idx)
        if e is None:
            head = hugetlb_no_page(mm, v, idx << PMD_SHIFT)
            pool.map(head)
            mm.hugetlb_usage += HPAGE_NR
            rw = bool(v.flags & VM_WRITE) and (shared or write)
            e = (head << PAGE_SHIFT) | HPTE_BASE | ((HPTE_RW | HPTE_DIRTY) if rw else 0)
            faults += 1
        elif write and not e & HPTE_RW:
            e = hugetlb_wp(mm, v, e, shared)
            faults += 1
        pt.hugetlb[idx] = e | HPTE_ACCESSED
        pt.mark_young(idx)
    return faults


def hugetlb_wp(mm: MM, v: VMA, e: int, shared: bool) -> int:
    """hugetlb_wp(): a write to a read-only huge PTE. Shared: just make
    it writable. Private: reuse the page if this is its only mapping,
    else copy it into a pool page nobody reserved (simplification: the
    reservation owner does not steal the page from its children)."""
    if shared:
        return e | HPTE_RW | HPTE_DIRTY
    mem, pool = mm.mem, mm.mem.hugetlb
    head = e >> PAGE_SHIFT
    if mem.large_mapcount[head] == 1:
        mem.flags[head: head + HPAGE_NR] |= np.uint32(M.PG_ANON_EXCLUSIVE)
        return e | HPTE_RW | HPTE_DIRTY
    new = pool.alloc(False, anon=True)
    if new < 0:
        raise MMError(errno.EFAULT, "SIGBUS: no free huge page for the copy")
    pool.map(new)
    if pool.unmap(head) == 0:
        pool.free(head)
    return (new << PAGE_SHIFT) | HPTE_BASE | HPTE_RW | HPTE_DIRTY


def zap_hugetlb(mm: MM, v: VMA, start: int, end: int, close: bool) -> int:
    """Unmap the huge pages of [start, end) (2 MiB aligned) in v. A
    private page nobody maps any more goes back to the pool; a shared
    one stays in its file until the file's last mapping goes.
    `close` (munmap, exit): the range's unused reservations are released
    (hugetlb_vm_op_close). Otherwise (MADV_DONTNEED) the reservation
    owner gets the reservation of a freed private page back (6.18: Free
    and Rsvd both went up by one)."""
    pt, pool = mm.pgtable, mm.mem.hugetlb
    shared = bool(v.flags & VM_MAYSHARE)
    n = 0
    for idx in pt.hugetlb_in(start, end):
        head = pt.hugetlb.pop(idx) >> PAGE_SHIFT
        mm.hugetlb_usage -= HPAGE_NR
        n += 1
        if pool.unmap(head) or shared:
            continue
        pool.free(head)
        if not close and v.resv is not None and pool.reserve(1):
            v.resv.reserved.add(hugetlb_index(v, idx << PMD_SHIFT))
    if close and v.resv is not None:
        i0, i1 = hugetlb_index(v, start), hugetlb_index(v, end)
        gone = v.resv.reserved.intersection(range(i0, i1))
        v.resv.reserved -= gone
        pool.unreserve(len(gone))
    return n


def copy_hugetlb_page_range(mm: MM, v: VMA, child: "MM") -> None:
    """copy_hugetlb_page_range(). A shared mapping is not copied (no
    anon_vma: the child faults the file's pages in itself; 6.18: the
    child's pagemap showed 0 until it touched the page). Private pages
    are shared copy-on-write: both huge PTEs write-protected, the folio
    mapped once more, no longer anon-exclusive (kpageflags after fork:
    0x29818, DIRTY set and bit 34 gone). The child has no reservations."""
    if v.flags & VM_MAYSHARE or v.anon_vma is None:
        return
    mem, pt, cpt = mm.mem, mm.pgtable, child.pgtable
    for idx in pt.hugetlb_in(v.start, v.end):
        e = pt.hugetlb[idx] & ~HPTE_RW
        pt.hugetlb[idx] = cpt.hugetlb[idx] = e
        head = e >> PAGE_SHIFT
        mem.hugetlb.map(head)
        sl = slice(head, head + HPAGE_NR)
        mem.flags[sl] = (mem.flags[sl] | np.uint32(M.PG_DIRTY)) & ~np.uint32(M.PG_ANON_EXCLUSIVE)
        child.hugetlb_usage += HPAGE_NR
