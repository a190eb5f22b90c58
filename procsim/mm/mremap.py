"""mremap(2) (mm/mremap.c): shrink, grow in place, or move a mapping with
its page-table entries (PTEs, huge PMDs as PTEs, hugetlb huge PTEs with
their reservations)."""

from __future__ import annotations

import errno
from collections.abc import Callable

from procsim.errors import KernelError
from procsim.mm import huge_memory
from procsim.mm.hugetlb import HPAGE_SHIFT, HPAGE_SIZE, huge_align
from procsim.mm.mm import MM, TASK_SIZE, Flush, page_align
from procsim.mm.mmap import check_split, do_munmap, get_unmapped_area, map_region
from procsim.mm.pagetable import PAGE_SIZE
from procsim.mm.vma import VM_DONTEXPAND, VM_PFNMAP, VMA, File

MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2


def do_mremap(mm: MM, old_addr: int, old_len: int, new_len: int, flags: int, new_addr: int,
              flush: Callable[[Flush | None], None]) -> int:
    """mremap(2) in the caller's mmap write cycle; `flush` sends each TLB
    flush as it is due. Returns the mapping's new address."""
    if old_addr % PAGE_SIZE or flags & ~3 or (flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE):
        raise KernelError(errno.EINVAL, "bad mremap flags or alignment")
    old_len, new_len = page_align(old_len), page_align(new_len)
    if not new_len:
        raise KernelError(errno.EINVAL, "new length is zero")
    if not old_len:
        # Linux: EINVAL for private mappings (the shared-duplicate case is
        # not modelled); going on split the VMA around an empty range
        raise KernelError(errno.EINVAL, "old length is zero")
    vma = mm.vmas.lookup(old_addr)
    if vma is None or old_addr + old_len > vma.end:
        raise KernelError(errno.EFAULT, "old range is not one mapping")
    if vma.is_hugetlb:
        # as 6.18 does: 2 MiB aligned addresses, lengths rounded up to
        # huge pages, no growing (EINVAL); shrinking and moving work
        if old_addr % HPAGE_SIZE or flags & MREMAP_FIXED and new_addr % HPAGE_SIZE:
            raise KernelError(errno.EINVAL, "hugetlb mremap address not 2 MiB aligned")
        old_len, new_len = huge_align(old_len), huge_align(new_len)
        if new_len > old_len:
            raise KernelError(errno.EINVAL, "hugetlb mappings cannot grow")
    old_end = old_addr + old_len
    if new_len > old_len and vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise KernelError(errno.EFAULT, "vdso, vvar and PFN maps cannot grow")  # vma_to_resize()
    if flags & MREMAP_FIXED:
        if new_addr % PAGE_SIZE or new_addr + new_len > TASK_SIZE or (
                new_addr < old_end and old_addr < new_addr + new_len):
            raise KernelError(errno.EINVAL, "bad fixed destination")
        return move_vma(mm, vma, old_addr, old_len, new_len, new_addr, flush)
    if new_len <= old_len:
        if new_len < old_len:
            flush(do_munmap(mm, old_addr + new_len, old_end))
        return old_addr
    grow_end = old_addr + new_len
    if old_end == vma.end and not mm.vmas.overlapping(old_end, grow_end) and grow_end <= TASK_SIZE:
        # anonymous VMAs need the following pgoff too, or the grown part would not merge
        map_region(mm, old_end, grow_end, vma.flags, vma.file,
                   vma.pgoff + ((old_end - vma.start) >> 12), vma.special)
        return old_addr
    if not flags & MREMAP_MAYMOVE:
        raise KernelError(errno.ENOMEM, "cannot grow in place")
    dest = get_unmapped_area(mm, new_len)
    return move_vma(mm, vma, old_addr, old_len, new_len, dest, flush)


def move_vma(mm: MM, vma: VMA, old_addr: int, old_len: int, new_len: int, dest: int,
             flush: Callable[[Flush | None], None]) -> int:
    """move_vma(): [old_addr, old_addr + old_len) of `vma` moves to `dest`
    with its translations (the first new_len of it; the rest is unmapped)."""
    # prep_move_vma(): moving part of a VMA splits it; may_split() first
    check_split(mm, old_addr, old_addr + old_len)
    if vma.is_hugetlb:
        return move_hugetlb_vma(mm, vma, old_addr, old_len, new_len, dest, flush)
    keep = min(old_len, new_len)
    # the moved VMA keeps its pgoff and anon_vma (copy_vma), except an
    # anonymous one never faulted (no anon_vma): it takes the pgoff of its
    # new address, so it can merge there (checked on 6.18)
    pgoff = vma.pgoff + ((old_addr - vma.start) >> 12)
    flags, file, special, anon_vma = vma.flags, vma.file, vma.special, vma.anon_vma
    if file is None and special is None and anon_vma is None:
        pgoff = dest >> 12
    fl = do_munmap(mm, dest, dest + new_len) if mm.vmas.overlapping(dest, dest + new_len) else None
    flush(fl)
    # huge PMDs are moved as PTEs (move_huge_pmd() is not modelled)
    huge_memory.split_huge_pmds(mm, old_addr, old_addr + keep)
    ptes = mm.pgtable.read(old_addr, old_addr + keep)
    # take the translations first so that unmap only zaps what does not move
    mm.pgtable.take(old_addr, old_addr + keep)
    _hold_file(file, +1)
    flush(do_munmap(mm, old_addr, old_addr + old_len))
    map_region(mm, dest, dest + new_len, flags, file, pgoff, special, anon_vma)
    _hold_file(file, -1)
    mm.pgtable.write(dest, ptes)
    return dest


def _hold_file(file: File | None, n: int) -> None:
    """copy_vma() takes the new VMA's file reference before the old VMA
    goes: without it, moving the only mapping of a deleted shmem or
    hugetlbfs file freed the file's pages under the moved PTEs."""
    if file is not None:
        file.nr_mappings += n


def move_hugetlb_vma(mm: MM, vma: VMA, old_addr: int, old_len: int, new_len: int, dest: int,
                     flush: Callable[[Flush | None], None]) -> int:
    """move_hugetlb_page_tables(): the huge PTEs of the kept part move to
    dest with their mappings and reservations; the rest is unmapped."""
    keep = new_len  # never more than old_len
    pgoff = vma.pgoff + ((old_addr - vma.start) >> 12)
    flags, file, anon_vma, resv = vma.flags, vma.file, vma.anon_vma, vma.resv
    fl = do_munmap(mm, dest, dest + new_len) if mm.vmas.overlapping(dest, dest + new_len) else None
    flush(fl)
    moved = mm.pgtable.take_hugetlb(old_addr, old_addr + keep)
    i0 = pgoff >> 9
    kept_resv = resv.reserved.intersection(range(i0, i0 + (keep >> HPAGE_SHIFT))) if resv else set()
    # the moved entries are out of the table: unmap drops only the rest
    # (and releases kept_resv too: taken back below)
    _hold_file(file, +1)
    flush(do_munmap(mm, old_addr, old_addr + old_len))
    vma, _ = map_region(mm, dest, dest + new_len, flags, file, pgoff, None, anon_vma)
    _hold_file(file, -1)
    vma.resv = resv
    if kept_resv:
        ok = mm.mem.hugetlb.reserve(len(kept_resv))  # just released: cannot fail
        assert ok
        resv.reserved |= kept_resv
    mm.pgtable.put_hugetlb(moved, (dest - old_addr) >> HPAGE_SHIFT)
    return dest
