"""The ELF loader (fs/binfmt_elf.c): the address space exec builds for an
executable (load_elf_binary) and the argument strings at the top of its
stack (create_elf_tables); a layout replay (procsim/layout.py) places its
arguments the same way."""

from __future__ import annotations

import random

import numpy as np

from procsim.mm import memory
from procsim.mm.mm import MM
from procsim.mm.mmap import get_unmapped_area, map_region
from procsim.mm.page_alloc import MemMap
from procsim.mm.pagetable import PAGE_SIZE
from procsim.mm.vma import (VM_ACCOUNT, VM_DONTEXPAND, VM_EXEC, VM_GROWSDOWN, VM_MAYEXEC, VM_MAYREAD, VM_MAYWRITE,
                            VM_READ, VM_VVAR, VM_WRITE)
from procsim.vfs import VFS

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LDSO = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
STACK_SIZE = 132 * 1024


def set_args(mm: MM, top: int, path: str, argv: list[str], envp: list[str]) -> int:
    """Place argv and envp strings below the executable's path at the
    top of the stack, as the ELF loader lays them out; returns the
    initial stack pointer below the pointer arrays and auxv."""
    # in bytes, as the strings are copied (cmdline's length is arg_end - arg_start)
    mm.env_end = top - 8 - len(path.encode()) - 1
    mm.env_start = mm.env_end - sum(len(e.encode()) + 1 for e in envp)
    mm.arg_end = mm.env_start
    mm.arg_start = mm.arg_end - sum(len(a.encode()) + 1 for a in argv)
    return (mm.arg_start - 8 * (len(argv) + len(envp) + 24)) & ~0xF


def exec_mm(mem: MemMap, vfs: VFS, rng: random.Random, vdso_pages: np.ndarray, path: str, argv: list[str],
            envp: list[str], cpu: int = 0) -> MM:
    """load_elf_binary() for `path`: a fresh mm with the executable's ELF
    segments, ld.so and libc (their file pages partly faulted in, as the
    loader and start-up touch them), [vvar], [vvar_vclock], [vdso], libc's
    bss and TLS, the first malloc arena as the heap, and the stack with
    argv and envp at its top; the addresses randomised from `rng`."""
    mmap_base = 0x7F0000000000 + (rng.randrange(1 << 28) << 12)
    mm = MM(mem, mmap_base)
    mm.rss.cpu = cpu
    rx = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    ro = VM_READ | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    rw = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT

    def load_elf(file_path: str, base: int | None) -> tuple[int, int, int, int]:
        f = vfs.file(file_path)
        npages = max(5, f.npages)
        hdr = max(1, npages // 12)
        text = max(1, npages * 3 // 5)
        rodata = max(1, npages - hdr - text - 2)
        total = hdr + text + rodata + 2
        if base is None:
            base = get_unmapped_area(mm, total * PAGE_SIZE)
        a = base
        segs = [(hdr, ro), (text, rx), (rodata, ro), (1, ro | VM_ACCOUNT), (1, rw)]
        pg = 0
        for n, fl in segs:
            map_region(mm, a, a + n * PAGE_SIZE, fl, f, pg)
            a += n * PAGE_SIZE
            pg += n
        # what the loader and early start-up touch
        memory.fault(mm, base, base + PAGE_SIZE, False)
        t0 = base + hdr * PAGE_SIZE
        memory.fault(mm, t0, t0 + max(1, text // 2) * PAGE_SIZE, False)
        r0 = t0 + text * PAGE_SIZE
        memory.fault(mm, r0, r0 + max(1, rodata // 2) * PAGE_SIZE, False)
        memory.fault(mm, a - PAGE_SIZE, a, True)
        return base, t0, r0, a

    exe_base = 0x550000000000 + (rng.randrange(1 << 28) << 12)
    _, start_code, end_code, end_data = load_elf(path, exe_base)
    mm.start_code, mm.end_code = start_code, end_code
    mm.start_data, mm.end_data = end_code, end_data
    mm.start_brk = mm.brk = end_data + (rng.randrange(1 << 13) << 12)
    load_elf(LDSO, None)
    vdso = get_unmapped_area(mm, 8 * PAGE_SIZE)
    map_region(mm, vdso, vdso + 4 * PAGE_SIZE, VM_VVAR, special="[vvar]")
    map_region(mm, vdso + 4 * PAGE_SIZE, vdso + 6 * PAGE_SIZE, VM_VVAR, special="[vvar_vclock]")
    map_region(mm, vdso + 6 * PAGE_SIZE, vdso + 8 * PAGE_SIZE, rx | VM_DONTEXPAND, special="[vdso]")
    memory.fault(mm, vdso + 6 * PAGE_SIZE, vdso + 8 * PAGE_SIZE, False, vdso_pages)
    _, _, _, libc_end = load_elf(LIBC, None)
    bss = get_unmapped_area(mm, 13 * PAGE_SIZE, libc_end)
    map_region(mm, bss, bss + 13 * PAGE_SIZE, rw)
    memory.fault(mm, bss, bss + 4 * PAGE_SIZE, True)
    tls = get_unmapped_area(mm, 3 * PAGE_SIZE)
    map_region(mm, tls, tls + 3 * PAGE_SIZE, rw)
    memory.fault(mm, tls, tls + 2 * PAGE_SIZE, True)
    # heap: the first malloc arena
    map_region(mm, mm.start_brk, mm.start_brk + STACK_SIZE, rw)
    mm.brk = mm.start_brk + STACK_SIZE
    memory.fault(mm, mm.start_brk, mm.start_brk + 8 * PAGE_SIZE, True)
    # stack with argv and envp at its top
    stack_top = 0x7FFC00000000 + (rng.randrange(1 << 20) << 12)
    map_region(mm, stack_top - STACK_SIZE, stack_top, rw | VM_GROWSDOWN)
    mm.start_stack = set_args(mm, stack_top, path, argv, envp)
    memory.fault(mm, stack_top - 3 * PAGE_SIZE, stack_top, True)
    return mm
