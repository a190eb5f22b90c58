"""vmalloc areas (mm/vmalloc.c, as /proc/vmallocinfo shows them): the
kernel stacks of every task and idle thread (THREAD_SIZE 16 KiB and a guard
page each, from copy_process's alloc_thread_stack_node) and the boot-time
hash tables and other vmalloc users show_mem.py counts, in areas of at most
512 pages. Their pages sum to meminfo's VmallocUsed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.mm.show_mem import THREAD_STACK_PAGES, mem_snapshot
from procsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from procsim.kernel import Kernel

VMALLOC_START = 0xFFFFC90000000000
AREA_MAX_PAGES = 512
STACK_CALLER = "kernel_clone+0xb8/0x400"
BOOT_CALLER = "alloc_large_system_hash+0x16c/0x2b0"


@dataclass(frozen=True, slots=True)
class VmArea:
    addr: int
    size: int       # bytes, the guard page included (get_vm_area_size + PAGE_SIZE)
    caller: str
    nr_pages: int


def vm_areas(k: Kernel) -> list[VmArea]:
    m = mem_snapshot(k)
    stacks = m.kernel_stack_kb // (PAGE_SIZE // 1024) // THREAD_STACK_PAGES
    other = m.vmalloc_used - stacks * THREAD_STACK_PAGES
    sizes = [(BOOT_CALLER, min(AREA_MAX_PAGES, other - i)) for i in range(0, other, AREA_MAX_PAGES)]
    sizes += [(STACK_CALLER, THREAD_STACK_PAGES)] * stacks
    out, addr = [], VMALLOC_START
    for caller, pages in sizes:
        size = (pages + 1) * PAGE_SIZE
        out.append(VmArea(addr, size, caller, pages))
        addr += size
    return out


def hashed(ptr: int, seed: int) -> int:
    """%pK with kptr_restrict 0: the pointer hashed (ptr_to_hashval, 32 bits)
    with the boot's random key, so addresses are not disclosed."""
    return int.from_bytes(hashlib.blake2b(ptr.to_bytes(8, "little"), digest_size=4,
                                          key=seed.to_bytes(8, "little", signed=True)).digest(), "little")
