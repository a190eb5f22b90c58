"""The vm.* sysctls as kernel calls: the tables' ranges (kernel/sysctl.c,
mm/*.c), what a write changes (overcommit_ratio and overcommit_kbytes clear
each other; min_free_kbytes resets the watermarks, as
min_free_kbytes_sysctl_handler -> setup_per_zone_wmarks()), and the
overcommit policy mmap applies (__vm_enough_memory, mm/util.c)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.kstrtox import INT_MAX
from procsim.mm.oom import total_pages
from procsim.mm.show_mem import mem_snapshot
from procsim.mm.zone import zones
from procsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from procsim.kernel import Kernel

INT_MIN = -INT_MAX - 1
OVERCOMMIT_GUESS, OVERCOMMIT_ALWAYS, OVERCOMMIT_NEVER = 0, 1, 2

# name in /proc/sys/vm -> (VmSysctl field, min, max)
VM_SYSCTLS = {
    "dirty_background_ratio": ("dirty_background_ratio", 0, 100),
    "dirty_expire_centisecs": ("dirty_expire_centisecs", 0, INT_MAX),
    "dirty_ratio": ("dirty_ratio", 0, 100),
    "dirty_writeback_centisecs": ("dirty_writeback_centisecs", INT_MIN, INT_MAX),
    "max_map_count": ("max_map_count", 0, INT_MAX),
    "min_free_kbytes": ("min_free_kbytes", 0, INT_MAX),
    "overcommit_kbytes": ("overcommit_kbytes", 0, INT_MAX),
    "overcommit_memory": ("overcommit_memory", 0, 2),
    "overcommit_ratio": ("overcommit_ratio", INT_MIN, INT_MAX),
    "page-cluster": ("page_cluster", 0, 31),
    "swappiness": ("swappiness", 0, 200),
    "vfs_cache_pressure": ("vfs_cache_pressure", 0, INT_MAX),
}


def vm_sysctl(k: Kernel, name: str) -> int:
    """The current value (min_free_kbytes: the boot's unless written)."""
    field = VM_SYSCTLS[name][0]
    v = getattr(k.mem.sysctl, field)
    if v is None:  # min_free_kbytes as the boot (and khugepaged) set it
        return zones(mem_snapshot(k).total).min_free * (PAGE_SIZE // 1024)
    return v


def set_vm_sysctl(k: Kernel, name: str, value: int) -> None:
    """A write that passed the table's range."""
    field, lo, hi = VM_SYSCTLS[name]
    if not lo <= value <= hi:
        raise KernelError(errno.EINVAL, f"vm.{name} out of range")
    with k.lock:
        vm = k.mem.sysctl
        setattr(vm, field, value)
        if name == "overcommit_ratio":
            vm.overcommit_kbytes = 0
        elif name == "overcommit_kbytes":
            vm.overcommit_ratio = 0
        k._changed("sysctl", name=f"vm.{name}")


def vm_enough_memory(k: Kernel, pages: int, cap_sys_admin: bool) -> None:
    """__vm_enough_memory(): may `pages` more be committed? ENOMEM if not.
    GUESS refuses only what exceeds RAM and swap; NEVER keeps Committed_AS
    under CommitLimit less the admin reserve (for non-admins)."""
    vm = k.mem.sysctl
    if vm.overcommit_memory == OVERCOMMIT_ALWAYS:
        return
    if vm.overcommit_memory == OVERCOMMIT_GUESS:
        # two counters, not the whole snapshot (it walks every VMA: an mmap
        # must not cost O(machine))
        if pages > total_pages(k):
            raise KernelError(errno.ENOMEM, "mmap: more than RAM and swap (overcommit_memory = 0)")
        return
    m = mem_snapshot(k)
    allowed = m.commit_limit
    if not cap_sys_admin:
        allowed -= vm.admin_reserve_kbytes // (PAGE_SIZE // 1024)
    if m.committed + pages >= allowed:
        raise KernelError(errno.ENOMEM, "mmap: Committed_AS would exceed CommitLimit (overcommit_memory = 2)")
