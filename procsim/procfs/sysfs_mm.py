"""/sys/kernel/mm/transparent_hugepage: the global THP mode, the per-size
hugepages-<size>kB/enabled switches and hpage_pmd_size. Reads show the
choices with the current one in brackets; writes take one choice, with
at most one trailing newline (sysfs_streq), else EINVAL."""

from __future__ import annotations

import errno

from procsim.mm.thp import ANON_ORDERS_MASK, PMD_ORDER, SIZE_MODES, TOP_MODES, order_kb
from procsim.procfs.context import Ctx

# mTHP sizes anonymous memory can use: hugepages-16kB ... hugepages-2048kB
ANON_SIZES_KB = tuple(order_kb(o) for o in range(PMD_ORDER + 1) if ANON_ORDERS_MASK >> o & 1)


def _choices(modes: tuple[str, ...], current: str) -> bytes:
    return (" ".join(f"[{m}]" if m == current else m for m in modes) + "\n").encode()


def _choice(data: bytes, modes: tuple[str, ...]) -> str:
    text = data[:-1] if data.endswith(b"\n") else data
    mode = text.decode("latin-1")
    if mode not in modes:
        raise OSError(errno.EINVAL, "not one of " + " ".join(modes))
    return mode


def thp_enabled(ctx: Ctx) -> bytes:
    return _choices(TOP_MODES, ctx.kernel.mem.thp.enabled)


def thp_enabled_write(ctx: Ctx, data: bytes) -> int:
    ctx.kernel.set_thp(enabled=_choice(data, TOP_MODES))
    return len(data)


def hpage_pmd_size(ctx: Ctx) -> bytes:
    return b"2097152\n"


def size_enabled(kb: int):
    """The render and write functions of hugepages-<kb>kB/enabled."""
    order = next(o for o in range(PMD_ORDER + 1) if order_kb(o) == kb)

    def render(ctx: Ctx) -> bytes:
        return _choices(SIZE_MODES, ctx.kernel.mem.thp.per_order[order])

    def write(ctx: Ctx, data: bytes) -> int:
        ctx.kernel.set_thp(size_kb=kb, mode=_choice(data, SIZE_MODES))
        return len(data)

    return render, write
