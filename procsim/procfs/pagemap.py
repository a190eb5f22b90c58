"""The binary u64 arrays: /proc/PID/pagemap (indexed by virtual page, spec
§10) and /proc/kpagecount, /proc/kpageflags (indexed by PFN, §13). Each is
read by position: a read renders only the entries it covers, so a 256 GiB
pagemap or a terabyte machine's kpageflags costs what is read."""

from __future__ import annotations

import errno

import numpy as np

from procsim.mm import stats
from procsim.procfs import maps
from procsim.procfs.context import Ctx
from procsim.units import PAGE_SHIFT, TASK_SIZE

ENTRY = 8
PAGES_PER_SECTION = 1 << 15  # 128 MiB memory sections on x86_64
PAGEMAP_END = (TASK_SIZE >> PAGE_SHIFT) * ENTRY


def _window(size: int, offset: int, end: int) -> tuple[int, int]:
    """Entry indices [lo, hi) a read covers: EINVAL unless 8-byte aligned,
    clipped at the end of the array (a read there returns EOF)."""
    if offset % ENTRY or size % ENTRY:
        raise OSError(errno.EINVAL, "pagemap-style files are read in whole 8-byte entries")
    lo = offset // ENTRY
    return lo, max(lo, min(end, offset + size) // ENTRY)


def pagemap(ctx: Ctx, size: int, offset: int) -> bytes:
    mm = maps.bound_mm(ctx)
    lo, hi = _window(size, offset, PAGEMAP_END)
    if mm is None or lo == hi:
        return b""
    # PFNs (and swap offsets) only for an opener with CAP_SYS_ADMIN
    e = stats.pagemap_entries(mm, lo << PAGE_SHIFT, hi << PAGE_SHIFT, show_pfn=ctx.caller.is_root)
    return e.astype("<u8", copy=False).tobytes()


def max_dump_pfn(ctx: Ctx) -> int:
    """The highest RAM PFN + 1, rounded up to a memory section."""
    n = ctx.kernel.mem.nr_pages
    return -(-n // PAGES_PER_SECTION) * PAGES_PER_SECTION


def _per_pfn(ctx: Ctx, size: int, offset: int, fn) -> bytes:
    lo, hi = _window(size, offset, max_dump_pfn(ctx) * ENTRY)
    mem = ctx.kernel.mem
    out = np.zeros(hi - lo, "<u8")
    top = min(hi, mem.nr_pages)  # the section's tail past RAM has no struct page: 0
    if lo < top:
        out[: top - lo] = fn(mem, lo, top)
    return out.tobytes()


def kpagecount(ctx: Ctx, size: int, offset: int) -> bytes:
    return _per_pfn(ctx, size, offset, stats.kpagecount)


def kpageflags(ctx: Ctx, size: int, offset: int) -> bytes:
    return _per_pfn(ctx, size, offset, stats.kpageflags)
