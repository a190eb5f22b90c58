"""fork's side of the address space (kernel/fork.c's dup_mm; its
dup_mmap loop): the child's mm_struct copied from the parent's."""

from __future__ import annotations

from procsim.mm.memory import copy_page_range
from procsim.mm.mm import MM
from procsim.mm.rmap import AnonVma
from procsim.mm.vma import VM_LOCKED, VM_LOCKONFAULT, VMA


def dup_mm(mm: MM) -> MM:
    """dup_mm() and dup_mmap(): the child's copy of `mm`: its counters and
    layout, every VMA but VM_DONTCOPY ones (unlocked), and their pages
    shared copy-on-write (memory.copy_page_range)."""
    child = MM(mm.mem, mm.mmap_base)
    child.rss.cpu = mm.rss.cpu  # add_mm_rss_vec() runs on the forking task's CPU
    for name in ("total_vm", "hiwater_vm", "locked_vm", "data_vm", "hugetlb_data_vm", "exec_vm", "stack_vm",
                 "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                 "start_stack", "arg_start", "arg_end", "env_start", "env_end"):
        setattr(child, name, getattr(mm, name))
    child.hiwater_vm = mm.total_vm
    child.mmap_base = mm.mmap_base
    # mlock is not inherited (dup_mmap clears VM_LOCKED_MASK; mm_init zeroes locked_vm)
    child.locked_vm = 0
    for v in mm.vmas:
        if v.flags & (1 << 17):  # VM_DONTCOPY: dup_mmap skips the VMA entirely
            child.vm_stat_account(VMA(v.start, v.end, v.flags & ~(VM_LOCKED | VM_LOCKONFAULT)), -1)
            continue
        nv = VMA(v.start, v.end, v.flags & ~(VM_LOCKED | VM_LOCKONFAULT), v.pgoff, v.file,
                 v.special, v.anon_name, AnonVma(v.anon_vma.root) if v.anon_vma is not None else None)
        child.vmas.insert(nv)
        if v.file is not None:
            v.file.nr_mappings += 1
        copy_page_range(mm, child, v)
    child.hiwater_rss = child.rss_pages
    child.vmas.publish()
    return child

