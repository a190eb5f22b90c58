"""Address-space changes at VMA level (mm/mmap.c, mm/vma.c): mmap (with
its MAP_HUGETLB variant), munmap, brk, get_unmapped_area, exit_mmap, and
the VMA surgery they share with mprotect, mlock, madvise and mremap:
split, merge, file references. The page-table side (zap) is mm/memory.py's.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import numpy as np

from procsim.errors import KernelError
from procsim.mm import huge_memory, memory
from procsim.mm.hugetlb import HPAGE_SHIFT, HPAGE_SIZE, huge_align
from procsim.mm.mm import MM, MMAP_MIN_ADDR, TASK_SIZE, Flush, MMError, page_align
from procsim.mm.mmap_lock import write_locked
from procsim.mm.pagetable import PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE, PageTable
from procsim.mm.rmap import AnonVma
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGETLB, MAP_LOCKED,
                            MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PROT_WRITE, VM_ACCOUNT, VM_DONTEXPAND,
                            VM_GROWSDOWN, VM_HUGETLB, VM_LOCKED, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE,
                            VM_NORESERVE, VM_READ, VM_SHARED, VM_WRITE, VMA, File, prot_to_vm)
from procsim.vfs import VFS


def do_mmap(mm: MM, vfs: VFS, length: int, prot: int, flags: int, addr: int, path: str | None,
            offset: int, writable: bool) -> tuple[int, int, Flush | None]:
    """do_mmap() for arguments the syscall checked (`length` page aligned,
    exactly one of MAP_SHARED and MAP_PRIVATE, anonymous or with `path`):
    the VMA over [start, end), merged with its neighbours; returns start,
    end and the flush of what MAP_FIXED replaced. MAP_LOCKED sets
    VM_LOCKED; populating is the caller's (it charges the faults)."""
    anon = bool(flags & MAP_ANONYMOUS)
    if flags & MAP_HUGETLB:
        if not anon:  # only hugetlbfs files may be mapped with it (not modelled)
            raise KernelError(errno.EINVAL, "MAP_HUGETLB needs an anonymous mapping")
        return mmap_hugetlb(mm, length, prot, flags, addr)
    if length > TASK_SIZE:
        raise KernelError(errno.ENOMEM, "length exceeds the address space")
    start = mmap_start(mm, length, flags, addr)
    check_split(mm, start, start + length)  # before a file is made or grown
    vmf = prot_to_vm(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    file = None
    pgoff = None  # anonymous: map_region uses addr >> PAGE_SHIFT
    if flags & (MAP_SHARED | MAP_PRIVATE) == MAP_SHARED:
        vmf |= VM_MAYSHARE | VM_SHARED
        if anon:
            file = vfs.shmem(length)
        else:
            if not writable and prot & PROT_WRITE:  # before vfs.file() grows the inode
                raise KernelError(errno.EACCES, "PROT_WRITE on a file opened read-only")
            file = vfs.file(path, offset + length, writable)
            # VM_SHARED/VM_MAYWRITE follow this open's mode, not whether the
            # inode was ever opened for writing (File.writable is sticky)
            if not writable:
                vmf &= ~(VM_SHARED | VM_MAYWRITE)
        pgoff = offset >> 12
    else:
        if not anon:
            file = vfs.file(path, offset + length)
            pgoff = offset >> 12
        if prot & PROT_WRITE and not flags & MAP_NORESERVE:
            vmf |= VM_ACCOUNT
    if flags & MAP_NORESERVE:  # do_mmap() sets it whatever prot and kind are
        vmf |= VM_NORESERVE
    if flags & MAP_GROWSDOWN:
        vmf |= VM_GROWSDOWN
    if flags & MAP_LOCKED:
        vmf |= VM_LOCKED
    _, flush = map_region(mm, start, start + length, vmf, file, pgoff)
    return start, start + length, flush


def mmap_start(mm: MM, length: int, flags: int, addr: int, align: int = PAGE_SIZE) -> int:
    """Where a new mapping goes: the fixed address, checked, or a free area."""
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr < 0x1000 or addr + length > TASK_SIZE:
            raise KernelError(errno.EPERM if addr < 0x10000 else errno.ENOMEM, "fixed address out of range")
        # NOREPLACE wins even together with MAP_FIXED (do_mmap() checks it first)
        if flags & MAP_FIXED_NOREPLACE and mm.vmas.overlapping(addr, addr + length):
            raise KernelError(errno.EEXIST, "MAP_FIXED_NOREPLACE range is in use")
        return addr
    return get_unmapped_area(mm, length, addr, align)


def mmap_hugetlb(mm: MM, length: int, prot: int, flags: int, addr: int) -> tuple[int, int, Flush | None]:
    """mmap(MAP_ANONYMOUS | MAP_HUGETLB), private or shared (as checked on
    6.18): the length is rounded up to 2 MiB, a fixed address must be 2
    MiB aligned (EINVAL) and a hint is aligned up; the VMA maps a new
    `/anon_hugepage (deleted)` hugetlbfs file from offset 0, with
    VmFlags `rd wr mr mw me de ht` (private) or `rd wr sh mr mw me ms de
    ht` (shared): VM_HUGETLB and VM_DONTEXPAND, never VM_ACCOUNT (hugetlb
    is not charged to Committed_AS). Every page is reserved now
    (HugePages_Rsvd; ENOMEM if the free pool cannot cover it) unless
    MAP_NORESERVE (`nr`). MAP_LOCKED populates (the caller) but does not lock."""
    pool = mm.mem.hugetlb
    length = huge_align(length)
    if length > TASK_SIZE:
        raise KernelError(errno.ENOMEM, "length exceeds the address space")
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) and addr % HPAGE_SIZE:
        raise KernelError(errno.EINVAL, "MAP_HUGETLB at an address not 2 MiB aligned")
    start = mmap_start(mm, length, flags, addr, HPAGE_SIZE)
    shared = flags & (MAP_SHARED | MAP_PRIVATE) == MAP_SHARED
    vmf = prot_to_vm(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_HUGETLB | VM_DONTEXPAND
    if shared:
        vmf |= VM_MAYSHARE | VM_SHARED
    if flags & MAP_NORESERVE:
        vmf |= VM_NORESERVE
    if flags & MAP_GROWSDOWN:
        vmf |= VM_GROWSDOWN
    reserved = None
    if not flags & MAP_NORESERVE:  # before the file: a fresh one, nothing reserved in it
        try:
            reserved = pool.reserve_pages(0, length >> HPAGE_SHIFT)
        except OSError as e:
            raise KernelError(e.errno, e.strerror) from None
    file = pool.anon_file(length)
    try:
        vma, flush = map_region(mm, start, start + length, vmf, file, 0)
    except MMError:
        if reserved:
            pool.unreserve(len(reserved))
        raise
    if reserved is not None:
        pool.set_vma_resv(vma, reserved)
    return start, start + length, flush


def do_brk(mm: MM, new_brk: int, flush: Callable[[Flush | None], None]) -> bool:
    """brk(2): move the break to `new_brk`, shrinking or growing the heap
    VMA (`flush` sends the TLB flush of a shrink); False if it cannot move
    (below start_brk, or growing into the next mapping). The caller holds
    the mmap write lock: one cycle with its own bookkeeping."""
    if new_brk < mm.start_brk:
        return False
    old_end, new_end = page_align(mm.brk), page_align(new_brk)
    if new_end < old_end:
        flush(do_munmap(mm, new_end, old_end))
    elif new_end > old_end:
        if mm.vmas.overlapping(old_end, new_end + PAGE_SIZE):
            return False  # would collide with the next mapping
        rw = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
        map_region(mm, old_end, new_end, rw)
    mm.brk = new_brk
    return True


def split_vma(mm: MM, vma: VMA, addr: int) -> VMA:
    """__split_vma(): cut `vma` at `addr`; returns the upper part."""
    assert not (vma.is_hugetlb and addr & (HPAGE_SIZE - 1)), "hugetlb VMA split inside a huge page"
    # vma_adjust_trans_huge(): a huge PMD cannot straddle two VMAs
    if addr & (PMD_SIZE - 1) and (addr >> PMD_SHIFT) in mm.pgtable.huge:
        huge_memory.split_huge_pmd(mm, addr >> PMD_SHIFT)
    mm.vmas.remove(vma)
    tail = vma.split_at(addr)
    if tail.file is not None:
        tail.file.nr_mappings += 1  # each VMA holds its own file reference
    mm.vmas.insert(vma)
    mm.vmas.insert(tail)
    return tail


def check_split(mm: MM, start: int, end: int, changing: Callable[[VMA], bool] | None = None) -> None:
    """vm_ops->may_split(): a hugetlb VMA may only be cut at a 2 MiB
    boundary (hugetlb_vm_op_split), a special mapping ([vvar], [vdso])
    never (special_mapping_split): munmap, mprotect, madvise, mremap or
    MAP_FIXED over part of it fail with EINVAL (observed on 6.18).
    Checked before anything changes. `changing(vma)`: only VMAs it
    accepts would be split (mprotect leaves unchanged ones whole)."""
    for addr in (start, end):
        v = mm.vmas.lookup(addr)
        if v is None or v.start == addr or changing is not None and not changing(v):
            continue
        if v.special is not None:
            raise MMError(errno.EINVAL, f"{addr:#x} splits {v.special}")
        if v.is_hugetlb and addr & (HPAGE_SIZE - 1):
            raise MMError(errno.EINVAL, f"{addr:#x} splits a huge page")


def isolate(mm: MM, start: int, end: int) -> list[VMA]:
    """Split VMAs at start and end; return those wholly inside [start, end)."""
    out = []
    for v in mm.vmas.overlapping(start, end):
        if v.start < start:
            v = split_vma(mm, v, start)
        if v.end > end:
            split_vma(mm, v, end)
        out.append(v)
    return out


def vma_merge(mm: MM, vma: VMA) -> VMA:
    """Merge `vma` with the neighbours it can merge with; returns the result."""
    # Loop: protect() and lock() change several VMAs, and one that already
    # absorbed its next neighbour must still try the one after (a single
    # attempt per side left e.g. mprotect across two VMAs with 3 pieces).
    while True:
        prev = mm.vmas.prev(vma)
        nxt = mm.vmas.next(vma)
        if not (prev is not None and prev.can_merge(vma) or nxt is not None and vma.can_merge(nxt)):
            return vma
        vma = _merge_once(mm, vma)


def _merge_once(mm: MM, vma: VMA) -> VMA:
    prev = mm.vmas.prev(vma)
    if prev is not None and prev.can_merge(vma):
        mm.vmas.remove(vma)
        mm.vmas.remove(prev)
        prev.end = vma.end
        prev.anon_vma = prev.anon_vma or vma.anon_vma
        vma_file_put(mm, vma.file)  # the absorbed VMA's file reference goes
        mm.vmas.insert(prev)
        vma = prev
    nxt = mm.vmas.next(vma)
    if nxt is not None and vma.can_merge(nxt):
        mm.vmas.remove(nxt)
        mm.vmas.remove(vma)
        vma.end = nxt.end
        vma.anon_vma = vma.anon_vma or nxt.anon_vma
        vma_file_put(mm, nxt.file)
        mm.vmas.insert(vma)
    return vma


def vma_file_put(mm: MM, file: File | None) -> None:
    """Drop a VMA's reference to its file. The last unmap of a deleted shmem
    inode (shared anonymous memory) frees its pages, as the final fput does;
    before this they were leaked."""
    if file is None:
        return
    file.nr_mappings -= 1
    if file.nr_mappings == 0 and file.hugetlb:
        # the anonymous hugetlbfs file goes with its last mapping: its
        # pages return to the pool, its unused reservations are released
        pool = mm.mem.hugetlb
        for head in file.cache[file.cache != 0].tolist():
            pool.free(head)
        file.cache = np.zeros(0, np.int64)
        pool.unreserve(len(file.resv or ()))
        file.resv = set()
        return
    if file.nr_mappings == 0 and file.shmem and file.deleted:
        cached = file.cache[file.cache != 0]
        mm.mem.free(cached)
        file.cache = np.zeros(0, np.int64)


def get_unmapped_area(mm: MM, length: int, hint: int = 0, align: int = PAGE_SIZE) -> int:
    """Top-down search below mmap_base, as x86's default layout does;
    `align` (a power of two) for hugetlb mappings, which get 2 MiB."""
    mask = ~(align - 1)
    if hint:
        hint = (hint + align - 1) & mask
        if MMAP_MIN_ADDR <= hint and hint + length <= TASK_SIZE and not mm.vmas.overlapping(hint, hint + length):
            return hint
    top = mm.mmap_base
    for v in reversed(mm.vmas.overlapping(MMAP_MIN_ADDR, mm.mmap_base)):
        if (top - length) & mask >= v.end:
            return (top - length) & mask
        top = min(top, v.start)
    if (top - length) & mask >= MMAP_MIN_ADDR:
        return (top - length) & mask
    raise MMError(errno.ENOMEM, "no room in the address space")


@write_locked
def map_region(mm: MM, start: int, end: int, flags: int, file: File | None = None,
               pgoff: int | None = None, special: str | None = None,
               anon_vma: object | None = None) -> tuple[VMA, Flush | None]:
    """Install a VMA over [start, end), replacing what was there (MAP_FIXED).
    pgoff None: an anonymous VMA's is start >> PAGE_SHIFT (as mmap and brk
    set it, so that neighbours merge), 0 otherwise. mremap passes the
    moved VMA's pgoff and anon_vma."""
    if pgoff is None:
        pgoff = start >> PAGE_SHIFT if file is None and special is None else 0
    flush = do_munmap(mm, start, end) if mm.vmas.overlapping(start, end) else None
    vma = VMA(start, end, flags, pgoff, file, special, anon_vma=anon_vma)
    if file is not None:
        file.nr_mappings += 1
    mm.link_vma(vma)
    return vma_merge(mm, vma), flush


@write_locked
def install_vma(mm: MM, vma: VMA) -> None:
    """Insert `vma` as it is into a free range, never merged with its
    neighbours: a replayed layout, where the kernel kept them apart.
    Neighbours that could merge get distinct anon_vmas, as two VMAs that
    each faulted on their own have, so later changes keep them apart too."""
    if mm.vmas.overlapping(vma.start, vma.end):
        raise MMError(errno.EINVAL, f"{vma.start:#x}-{vma.end:#x} overlaps a VMA")
    for a, b in ((mm.vmas.find(vma.start - 1), vma), (vma, mm.vmas.find(vma.end))):
        if a is not None and b is not None and a.can_merge(b):
            other = a if b is vma else b
            other.anon_vma = other.anon_vma or AnonVma()
            vma.anon_vma = AnonVma()
    if vma.file is not None:
        vma.file.nr_mappings += 1
    mm.link_vma(vma)


@write_locked
def do_munmap(mm: MM, start: int, end: int) -> Flush | None:
    """munmap [start, end): split at its ends, zap and remove the VMAs inside,
    free empty page tables; the flush, or None if nothing was mapped."""
    check_split(mm, start, end)
    victims = isolate(mm, start, end)
    if not victims:
        return None
    mm.update_hiwater_rss()
    for v in victims:
        memory.zap_vma(mm, v, v.start, v.end, close=True)
        mm.unlink_vma(v)
        vma_file_put(mm, v.file)
    freed = mm.pgtable.free_empty(start, end, lambda lo, hi: bool(mm.vmas.overlapping(lo, hi)))
    return Flush(start, end, freed)


@write_locked
def exit_mmap(mm: MM) -> None:
    """exit_mmap: unmap everything."""
    mm.update_hiwater_rss()
    for v in list(mm.vmas):
        memory.zap_vma(mm, v, v.start, v.end, close=True)
        mm.unlink_vma(v)
        vma_file_put(mm, v.file)
    mm.pgtable = PageTable()
    mm.mem.free_mm_id(mm.mm_id)
    mm.mm_id = 0
