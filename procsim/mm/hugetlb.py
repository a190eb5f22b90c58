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

from procsim.mm import page_alloc as M
from procsim.mm.pagetable import PMD_SHIFT, PMD_SIZE
from procsim.mm.vma import VM_MAYSHARE, VMA, File

HPAGE_ORDER = 9
HPAGE_NR = 1 << HPAGE_ORDER
HPAGE_SIZE = PMD_SIZE
HPAGE_SHIFT = PMD_SHIFT
HUGETLBFS_DEV = (0x00, 0x11)  # the internal hugetlbfs mount behind MAP_HUGETLB
HUGETLB_ANON_PATH = "/anon_hugepage"


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
