"""The idle page tracking files: /proc/PID/idle_bitmap (VA-indexed, the
2018 RFC; spec §12, seed-mechanisms §2.2) and /sys/kernel/mm/page_idle/bitmap
(PFN-indexed, mm/page_idle.c; spec §14). Both are arrays of little-endian
u64 words, bit `i % 64` of word `i // 64` for page i, read and written by
position in whole words. The kernel logic is in procsim.mm.idle, called
through the Kernel, which records each read and write as a change (both
clear accessed bits)."""

from __future__ import annotations

import errno

import numpy as np

from procsim.procfs import maps
from procsim.procfs.context import Ctx
from procsim.units import PAGE_SHIFT, TASK_SIZE

WORD = 8
BITS = 64
VA_PER_BYTE = 8 << PAGE_SHIFT  # 32 KiB of address space per byte
# the page after the last user page, rounded up to a whole word (as the
# global bitmap rounds max_pfn): the array ends at 2^32 bytes
IDLE_BITMAP_END = -(-(TASK_SIZE >> PAGE_SHIFT) // BITS) * WORD
READ_MAX = 1 << 20  # bytes one read returns at most (32 GiB of VA; FUSE asks for 128 KiB)
KERNFS_MAX = 4096  # sysfs moves at most one page per read or write call


def _aligned(size: int, offset: int) -> None:
    if offset % WORD or size % WORD:
        raise OSError(errno.EINVAL, "idle bitmaps are read and written in whole 8-byte words")


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(bits, bitorder="little").tobytes()


def _unpack(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little").astype(bool)


# -- /proc/PID/idle_bitmap -------------------------------------------------------

def pid_read(ctx: Ctx, size: int, offset: int) -> bytes:
    """Test-and-clear read: 1 = idle (not accessed since the last scan, not
    present, or a hole), 0 = accessed (now cleared). 0 bytes once the mm is
    gone, EOF at the end of user space; at most READ_MAX bytes per call (a
    short read, as the kernel may return)."""
    _aligned(size, offset)
    mm = maps.bound_mm(ctx)
    hi = min(IDLE_BITMAP_END, offset + size)
    if mm is None or offset >= hi:
        return b""
    hi = min(hi, offset + READ_MAX)
    out = ctx.kernel.idle_bitmap_read(mm, offset * VA_PER_BYTE, hi * VA_PER_BYTE)
    if hi == IDLE_BITMAP_END:
        out[-1] &= 0x7F  # the page at TASK_SIZE: no page, as past max_pfn
    return out.tobytes()


def pid_write(ctx: Ctx, data: bytes, offset: int) -> int:
    """OR semantics (an extrapolation: the RFC has no write): every 1 bit
    clears the accessed bit of that page's mapping, 0 bits change nothing.
    ENXIO at or past the end; ESRCH once the mm is gone."""
    _aligned(len(data), offset)
    if offset >= IDLE_BITMAP_END:
        raise OSError(errno.ENXIO, "idle_bitmap write past the end of user space")
    mm = maps.bound_mm(ctx)
    if mm is None:
        raise OSError(errno.ESRCH, "the address space is gone")
    n = min(len(data), IDLE_BITMAP_END - offset)
    if n:
        ctx.kernel.idle_bitmap_write(mm, offset * VA_PER_BYTE, _unpack(data[:n]))
    return n


# -- /sys/kernel/mm/page_idle/bitmap -------------------------------------------------

def _max_pfn(ctx: Ctx) -> int:
    return ctx.kernel.mem.nr_pages


def global_read(ctx: Ctx, size: int, offset: int) -> bytes:
    _aligned(size, offset)
    size = min(size, KERNFS_MAX)
    max_pfn = _max_pfn(ctx)
    pfn = offset * 8
    if pfn >= max_pfn or not size:
        return b""
    end = min(pfn + size * 8, -(-max_pfn // BITS) * BITS)
    bits = np.zeros(end - pfn, bool)  # past max_pfn: no page, 0
    top = min(end, max_pfn)
    bits[: top - pfn] = ctx.kernel.page_idle_read(pfn, top)
    return _pack(bits)


def global_write(ctx: Ctx, data: bytes, offset: int) -> int:
    _aligned(len(data), offset)
    max_pfn = _max_pfn(ctx)
    pfn = offset * 8
    if pfn >= max_pfn:
        raise OSError(errno.ENXIO, "page_idle bitmap write past max_pfn")
    data = data[:KERNFS_MAX]
    end = min(pfn + len(data) * 8, -(-max_pfn // BITS) * BITS)
    n = (end - pfn) // 8
    ones = np.flatnonzero(_unpack(data[:n])) + pfn
    ctx.kernel.page_idle_write(ones[ones < max_pfn])
    return n
