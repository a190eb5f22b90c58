"""The mmap lock, its sequence count and per-VMA read locks, as lock-free
readers of maps and PROCMAP_QUERY use them (seed-mechanisms §4.4).

Interface used by the readers (the full model replaces these bodies):
`lock_next_vma(mm, from_addr)` returns the first VMA with end > from_addr,
read-locked, or None past the last VMA; `vma_end_read(vma)` releases it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.mm.mm import MM
    from procsim.mm.vma import VMA


def lock_next_vma(mm: "MM", from_addr: int) -> "VMA | None":
    v = mm.vmas.find(from_addr)
    return v


def vma_end_read(vma: "VMA") -> None:
    pass
