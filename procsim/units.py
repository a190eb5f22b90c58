"""The machine's fixed units, defined once: the base page, the user address
space of x86_64, and the clocks (include/asm-generic/page.h, param.h,
vdso/time64.h). Every module takes them from here."""

from __future__ import annotations

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
TASK_SIZE = (1 << 47) - PAGE_SIZE  # x86_64 TASK_SIZE_MAX with 4-level page tables

NSEC = 1_000_000_000              # NSEC_PER_SEC
USER_HZ = 100                      # the tick unit of /proc's clock_t fields
TICK_NSEC_USER = NSEC // USER_HZ


def K(pages: int) -> int:
    """Pages in kB (fs/proc/meminfo.c's K())."""
    return pages << (PAGE_SHIFT - 10)


def clock_t(ns: int) -> int:
    """Nanoseconds in USER_HZ ticks (nsec_to_clock_t)."""
    return ns // TICK_NSEC_USER
