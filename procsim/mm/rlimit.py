"""The address-space limits mmap, brk, mremap, mlock and stack growth check
(mm/vma.c may_expand_vm and acct_stack_growth, include/linux/mm.h
check_data_rlimit, mm/mlock.c can_do_mlock, mlock_future_ok and do_mlock's
count): pure functions of an
mm and its thread group's rlimits, so each syscall calls one of them before
it changes anything.

`capable` stands for CAP_IPC_LOCK (the model's root has every capability).
vm.ignore_rlimit_data is the kernel's default, false: a data mapping past
RLIMIT_DATA fails.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.mm.vma import (MAP_GROWSDOWN, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, VM_EXEC, VM_GROWSDOWN, VM_LOCKED,
                            VM_READ, VM_SHARED, VM_STACK, VM_WRITE, prot_to_vm)
from procsim.resource import RLIM_INFINITY, RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK, RLIMIT_STACK, Rlimit
from procsim.units import PAGE_SHIFT

if TYPE_CHECKING:
    from procsim.mm.mm import MM

IGNORE_RLIMIT_DATA = False  # the ignore_rlimit_data boot parameter's default


def is_data_mapping(flags: int) -> bool:
    """Private, writable, not a stack: what data_vm counts."""
    return flags & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE


def may_expand_vm(mm: "MM", rlim: Sequence[Rlimit], flags: int, npages: int) -> bool:
    """Whether the mm may grow by `npages` of a mapping with `flags`:
    RLIMIT_AS over total_vm, and RLIMIT_DATA over data_vm for data mappings
    (with the Valgrind exception: a soft limit of 0 checks the hard one)."""
    if mm.total_vm + npages > rlim[RLIMIT_AS].cur >> PAGE_SHIFT:
        return False
    data = rlim[RLIMIT_DATA]
    if is_data_mapping(flags) and mm.data_vm + npages > data.cur >> PAGE_SHIFT:
        if data.cur == 0 and mm.data_vm + npages <= data.max >> PAGE_SHIFT:
            return True
        if not IGNORE_RLIMIT_DATA:
            return False
    return True


def check_data_rlimit(rlim: Sequence[Rlimit], new_brk: int, start_brk: int, end_data: int,
                      start_data: int) -> bool:
    """brk(2)'s check: the heap and the data segment together within
    RLIMIT_DATA (False: brk keeps the old break)."""
    lim = rlim[RLIMIT_DATA].cur
    return lim >= RLIM_INFINITY or (new_brk - start_brk) + (end_data - start_data) <= lim


def can_do_mlock(rlim: Sequence[Rlimit], capable: bool) -> bool:
    """mlock at all: a non-zero RLIMIT_MEMLOCK or CAP_IPC_LOCK (else EPERM)."""
    return rlim[RLIMIT_MEMLOCK].cur != 0 or capable


def mlock_future_ok(mm: "MM", rlim: Sequence[Rlimit], flags: int, nbytes: int, capable: bool) -> bool:
    """A new (or grown) VM_LOCKED mapping of `nbytes` within RLIMIT_MEMLOCK
    (mmap MAP_LOCKED, mremap of a locked VMA: else EAGAIN)."""
    if not flags & VM_LOCKED or capable:
        return True
    return (nbytes >> PAGE_SHIFT) + mm.locked_vm <= rlim[RLIMIT_MEMLOCK].cur >> PAGE_SHIFT


def mlock_ok(mm: "MM", rlim: Sequence[Rlimit], start: int, end: int, capable: bool) -> bool:
    """do_mlock(): locked_vm plus the range within RLIMIT_MEMLOCK, not
    counting pages of the range that are already locked (else ENOMEM)."""
    if capable:
        return True
    limit = rlim[RLIMIT_MEMLOCK].cur >> PAGE_SHIFT
    locked = ((end - start) >> PAGE_SHIFT) + mm.locked_vm
    if locked > limit:  # count_mm_mlocked_page_nr()
        for v in mm.vmas.overlapping(start, end):
            if v.flags & VM_LOCKED:
                locked -= (min(end, v.end) - max(start, v.start)) >> PAGE_SHIFT
    return locked <= limit


def replaced_pages(mm: "MM", start: int, end: int) -> int:
    """Pages of [start, end) already mapped (a MAP_FIXED mmap unmaps them
    first: they do not count against the limits)."""
    return sum((min(end, v.end) - max(start, v.start)) >> PAGE_SHIFT for v in mm.vmas.overlapping(start, end))


# -- one call per syscall: the errno it fails with, 0 if the limits allow it ---------------


def check(err: int, what: str) -> None:
    """Fail the syscall with the errno a check below chose (0: it passes)."""
    if err:
        raise KernelError(err, f"{errno.errorcode[err]}: {what} over a limit (see /proc/PID/limits)")


def mmap_errno(mm: "MM", rlim: Sequence[Rlimit], flags: int, start: int, end: int, capable: bool) -> int:
    """do_mmap() and mmap_region(): MAP_LOCKED needs can_do_mlock (EPERM) and
    room under RLIMIT_MEMLOCK (EAGAIN); the new pages, less those a MAP_FIXED
    replaces, must fit RLIMIT_AS and RLIMIT_DATA (ENOMEM)."""
    if flags & VM_LOCKED and not can_do_mlock(rlim, capable):
        return errno.EPERM
    if not mlock_future_ok(mm, rlim, flags, end - start, capable):
        return errno.EAGAIN
    if not may_expand_vm(mm, rlim, flags, ((end - start) >> PAGE_SHIFT) - replaced_pages(mm, start, end)):
        return errno.ENOMEM
    return 0


def brk_ok(mm: "MM", rlim: Sequence[Rlimit], new_brk: int, grow: int, flags: int) -> bool:
    """brk(2): check_data_rlimit for any new break (a shrink too), and
    may_expand_vm for the `grow` bytes do_brk_flags() maps (False: the break
    stays where it was)."""
    if not check_data_rlimit(rlim, new_brk, mm.start_brk, mm.end_data, mm.start_data):
        return False
    return grow <= 0 or may_expand_vm(mm, rlim, flags, grow >> PAGE_SHIFT)


def mremap_errno(mm: "MM", rlim: Sequence[Rlimit], flags: int, grow: int, capable: bool) -> int:
    """An mremap that grows a VMA by `grow` bytes (resize_is_valid()): a
    locked VMA within RLIMIT_MEMLOCK (EAGAIN), then may_expand_vm (ENOMEM)."""
    if grow <= 0:
        return 0
    if not mlock_future_ok(mm, rlim, flags, grow, capable):
        return errno.EAGAIN
    if not may_expand_vm(mm, rlim, flags, grow >> PAGE_SHIFT):
        return errno.ENOMEM
    return 0


def mlock_errno(mm: "MM", rlim: Sequence[Rlimit], start: int, end: int, capable: bool) -> int:
    """do_mlock(): EPERM without can_do_mlock, ENOMEM past RLIMIT_MEMLOCK."""
    if not can_do_mlock(rlim, capable):
        return errno.EPERM
    if not mlock_ok(mm, rlim, start, end, capable):
        return errno.ENOMEM
    return 0


STACK_GUARD_GAP = 256 << PAGE_SHIFT  # stack_guard_gap: 256 pages
_VM_RWX = VM_READ | VM_WRITE | VM_EXEC  # vma_is_accessible()


def stack_growth_errno(mm, rlim: Sequence[Rlimit], vma, prev, addr: int, capable: bool) -> int:
    """expand_downwards() of the VM_GROWSDOWN `vma` to page `addr`: the
    guard gap above an accessible `prev` that is no stack, then
    acct_stack_growth(): may_expand_vm, the stack's new size within
    RLIMIT_STACK, a locked stack within RLIMIT_MEMLOCK (each ENOMEM; the
    faulting task would get SIGSEGV)."""
    if prev is not None and not prev.flags & VM_GROWSDOWN and prev.flags & _VM_RWX \
            and addr - prev.end < STACK_GUARD_GAP:
        return errno.ENOMEM
    grow = (vma.start - addr) >> PAGE_SHIFT
    if grow > vma.pgoff or not may_expand_vm(mm, rlim, vma.flags, grow):
        return errno.ENOMEM
    if vma.end - addr > rlim[RLIMIT_STACK].cur:
        return errno.ENOMEM
    if not mlock_future_ok(mm, rlim, vma.flags, grow << PAGE_SHIFT, capable):
        return errno.ENOMEM
    return 0


def mmap_vm_flags(prot: int, map_flags: int) -> int:
    """The VM_* bits of a new mapping that the limits look at (write, shared,
    stack, locked), from mmap's prot and flags."""
    f = prot_to_vm(prot)
    if map_flags & (MAP_SHARED | MAP_PRIVATE) == MAP_SHARED:
        f |= VM_SHARED
    if map_flags & MAP_GROWSDOWN:
        f |= VM_GROWSDOWN
    if map_flags & MAP_LOCKED:
        f |= VM_LOCKED
    return f
