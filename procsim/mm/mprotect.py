"""mprotect(2) (mm/mprotect.c): the VM_MAY* check, then new protection
bits on the VMAs of the range (split where they change, merged where they
now match) and on their PTEs and huge PTEs."""

from __future__ import annotations

import errno

from procsim.errors import KernelError
from procsim.mm.hugetlb import HPTE_RW
from procsim.mm.mm import MM, Flush
from procsim.mm.mmap import check_split, isolate, vma_merge
from procsim.mm.mmap_lock import vma_start_write, write_locked
from procsim.mm.pagetable import PTE_RW, pte_present
from procsim.mm.vma import VM_ACCOUNT, VM_HUGETLB, VM_NORESERVE, VM_PROT_MASK, VM_SHARED, VM_WRITE, VMA, prot_to_vm


def do_mprotect(mm: MM, start: int, end: int, prot: int) -> Flush:
    """mprotect over [start, end), mapped (the syscall checked)."""
    # do_mprotect_pkey(): each asked VM_READ/WRITE/EXEC bit needs its
    # VM_MAY* bit (bits 4-6), else EACCES: a read-only shared file
    # mapping refuses PROT_WRITE, the [vvar] pages PROT_WRITE and
    # PROT_EXEC (observed on 6.18); checked before any change
    want = prot_to_vm(prot)
    for v in mm.vmas.overlapping(start, end):
        if want & ~(v.flags >> 4) & VM_PROT_MASK:
            raise KernelError(errno.EACCES, f"prot {prot:#x} exceeds the VM_MAY* bits of the VMA at {v.start:#x}")
    return mprotect_fixup(mm, start, end, want)


def _prot_flags(v: VMA, prot_flags: int) -> int:
    new = (v.flags & ~VM_PROT_MASK) | prot_flags
    if new & VM_WRITE and not v.flags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
        new |= VM_ACCOUNT
    return new


@write_locked
def mprotect_fixup(mm: MM, start: int, end: int, prot_flags: int) -> Flush:
    """Give the VMAs of [start, end) the VM_READ/WRITE/EXEC bits `prot_flags`
    (VM_ACCOUNT when a private mapping first becomes writable) and their
    PTEs and huge PTEs the write bit that follows."""
    # mprotect_fixup() leaves a VMA whose flags do not change alone: no
    # split (partial mprotect of [vdso] with unchanged flags succeeds)
    check_split(mm, start, end, lambda v: _prot_flags(v, prot_flags) != v.flags)
    vmas = [x for v in mm.vmas.overlapping(start, end) if _prot_flags(v, prot_flags) != v.flags
            for x in isolate(mm, max(start, v.start), min(end, v.end))]
    for v in vmas:
        new = _prot_flags(v, prot_flags)
        mm.vm_stat_account(v, -1)
        vma_start_write(mm.mmap_lock, v)
        v.flags = new
        mm.vm_stat_account(v, +1)
        if not new & VM_WRITE:
            for _, sl in mm.pgtable.spans(v.start, v.end):
                sl[pte_present(sl)] &= ~PTE_RW
        elif new & VM_SHARED:
            for _, sl in mm.pgtable.spans(v.start, v.end):
                sl[pte_present(sl)] |= PTE_RW
        if v.is_hugetlb:
            ht = mm.pgtable.hugetlb
            for idx in mm.pgtable.hugetlb_in(v.start, v.end):
                if not new & VM_WRITE:
                    ht[idx] &= ~HPTE_RW
                elif new & VM_SHARED:
                    ht[idx] |= HPTE_RW
    for v in vmas:
        if v in mm.vmas._v:
            vma_merge(mm, v)
    return Flush(start, end)
