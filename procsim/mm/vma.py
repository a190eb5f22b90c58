"""vm_area_struct: one mapping, its flags and what backs it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# VM_* flag bits (spec §2.3, 6.18 x86_64).
VM_READ = 1 << 0
VM_WRITE = 1 << 1
VM_EXEC = 1 << 2
VM_SHARED = 1 << 3
VM_MAYREAD = 1 << 4
VM_MAYWRITE = 1 << 5
VM_MAYEXEC = 1 << 6
VM_MAYSHARE = 1 << 7
VM_GROWSDOWN = 1 << 8
VM_PFNMAP = 1 << 10
VM_LOCKED = 1 << 13
VM_IO = 1 << 14
VM_DONTEXPAND = 1 << 18
VM_LOCKONFAULT = 1 << 19
VM_ACCOUNT = 1 << 20
VM_NORESERVE = 1 << 21
VM_HUGETLB = 1 << 22
VM_DONTDUMP = 1 << 26
VM_SOFTDIRTY = 1 << 27
VM_HUGEPAGE = 1 << 29
VM_NOHUGEPAGE = 1 << 30
VM_SPECIAL_MASK = VM_IO | VM_DONTEXPAND | VM_PFNMAP  # VM_SPECIAL (mixedmap not modelled)

VM_STACK = VM_GROWSDOWN  # x86
# the vDSO data pages ([vvar], [vvar_vclock]): a PFN map, read-only, no growth, no dump
VM_VVAR = VM_READ | VM_MAYREAD | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP
VM_PROT_MASK = VM_READ | VM_WRITE | VM_EXEC

# smaps VmFlags mnemonics by bit; "" = never printed, missing = "??".
MNEMONICS = {
    0: "rd", 1: "wr", 2: "ex", 3: "sh", 4: "mr", 5: "mw", 6: "me", 7: "ms",
    8: "gd", 9: "um", 10: "pf", 11: "gu", 12: "uw", 13: "lo", 14: "io",
    15: "sr", 16: "rr", 17: "dc", 18: "de", 19: "lf", 20: "ac", 21: "nr",
    22: "ht", 23: "sf", 24: "ar", 25: "wf", 26: "dd", 27: "sd", 28: "mm",
    29: "hg", 30: "nh", 31: "mg", 32: "", 33: "", 34: "", 35: "", 37: "ss",
    40: "dp", 41: "ui", 42: "sl",
}

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_GROWSDOWN, MAP_NORESERVE, MAP_LOCKED, MAP_FIXED_NOREPLACE = 0x100, 0x4000, 0x2000, 0x100000
MAP_HUGETLB = 0x40000


def prot_to_vm(prot: int) -> int:
    return (VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0) | (
        VM_EXEC if prot & PROT_EXEC else 0)


@dataclass(eq=False)
class File:
    """An inode with a page cache. Shared anonymous memory is a shmem file."""

    path: str
    ino: int
    dev: tuple[int, int]
    size: int
    shmem: bool = False
    deleted: bool = False
    writable: bool = False  # opened O_RDWR by the mapper (decides VM_SHARED)
    # pgoff -> PFN (0 = not cached); grown on demand. A hugetlbfs file
    # caches 2 MiB pages: index = pgoff >> 9, value = head PFN.
    cache: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # pgoff -> the shadow entry reclaim left where it evicted a page (0 =
    # none; procsim/mm/workingset.py), made at the first eviction
    shadow: np.ndarray | None = None
    nr_mappings: int = 0
    hugetlb: bool = False
    # hugetlbfs: huge page indices reserved and not yet instantiated
    resv: set[int] | None = None
    # the GNU build ID note of an ELF file (what PROCMAP_QUERY returns for
    # every VMA of the file); None for files that are not ELF objects
    build_id: bytes | None = None
    # the rmap id of its page cache (procsim.mm.rmap), assigned on first use
    rmap_id: int = field(default=0, compare=False)
    kind: str = "reg"  # its file type, as procsim/fs/file.py names them (reg, dir, chr, memfd)

    @property
    def npages(self) -> int:
        return (self.size + 4095) >> 12

    def ensure(self, npages: int) -> None:
        if len(self.cache) < npages:
            grown = np.zeros(max(npages, 2 * len(self.cache)), np.int64)
            grown[: len(self.cache)] = self.cache
            self.cache = grown
        if self.shadow is not None and len(self.shadow) < len(self.cache):
            grown = np.zeros(len(self.cache), np.int64)
            grown[: len(self.shadow)] = self.shadow
            self.shadow = grown

    def d_path(self) -> str:
        return self.path + " (deleted)" if self.deleted else self.path


@dataclass(eq=False, slots=True)
class VMA:
    start: int
    end: int
    flags: int
    pgoff: int = 0            # in pages; meaningful for file mappings
    file: File | None = None
    special: str | None = None  # [vdso], [vvar], [vvar_vclock]
    anon_name: str | None = None
    # anon_vma: set by the first fault that gives a private VMA an anonymous
    # page; shared by the parts of a split, fresh in a fork child. VMAs whose
    # anon_vmas differ never merge (is_mergeable_anon_vma). An rmap.AnonVma.
    anon_vma: object | None = None
    # private hugetlb: the ResvMap of the mapping that reserved its pages
    # (vm_private_data with HPAGE_RESV_OWNER); split parts share it
    resv: object | None = None
    # per-VMA lock (procsim.mm.mmap_lock): the mm_lock_seq of the write
    # cycle that locked it, its lock-free readers, and whether it is out of
    # the tree (a reader holding it must look again)
    vm_lock_seq: int = -1
    vm_readers: int = 0
    detached: bool = True

    @property
    def npages(self) -> int:
        return (self.end - self.start) >> 12

    @property
    def is_hugetlb(self) -> bool:
        """is_vm_hugetlb_page(): smaps shows KernelPageSize 2048 kB for it."""
        return bool(self.flags & VM_HUGETLB)

    @property
    def is_anon(self) -> bool:
        return self.file is None and self.special is None

    def perms(self) -> str:
        f = self.flags
        return ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + (
            "x" if f & VM_EXEC else "-") + ("s" if f & VM_MAYSHARE else "p")

    def can_merge(self, nxt: "VMA") -> bool:
        """Whether nxt, directly after self, may join it (vma_merge rules)."""
        if self.end != nxt.start or self.flags != nxt.flags or self.file is not nxt.file:
            return False
        if self.special or nxt.special or self.anon_name != nxt.anon_name:
            return False
        if self.flags & (VM_PFNMAP | VM_IO | VM_DONTEXPAND):
            return False
        if self.anon_vma is not None and nxt.anon_vma is not None and self.anon_vma is not nxt.anon_vma:
            return False
        # pgoff must follow on for anonymous VMAs too (theirs is addr >> PAGE_SHIFT
        # at mmap time and survives mremap), as in can_vma_merge_after()
        return self.pgoff + self.npages == nxt.pgoff

    def split_at(self, addr: int) -> "VMA":
        """Shrink self to [start, addr) and return the [addr, end) part."""
        tail = VMA(addr, self.end, self.flags, self.pgoff + ((addr - self.start) >> 12),
                   self.file, self.special, self.anon_name, self.anon_vma, self.resv)
        self.end = addr
        return tail
