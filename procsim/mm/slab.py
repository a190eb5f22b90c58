"""Slab caches (mm/slub.c, as /proc/slabinfo shows them), from the same
objects show_mem.py estimates the slab from: a cache per kind of kernel
object the model has (task_struct and friends per thread, mm_struct per
address space, vm_area_struct per VMA), and the general kmalloc and dentry
caches holding the rest, so that the unreclaimable caches' pages are
meminfo's SUnreclaim and the reclaimable ones' SReclaimable, exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.mm.show_mem import mem_snapshot, mm_totals

if TYPE_CHECKING:
    from procsim.kernel import Kernel


@dataclass(frozen=True, slots=True)
class SlabCache:
    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    num_slabs: int
    reclaimable: bool


# name, object size, objects per slab, pages per slab (x86_64 SLUB, 6.18)
_TASK = ("task_struct", 10560, 3, 8)
_SIGNAL = ("signal_cache", 1152, 28, 8)
_FILES = ("files_cache", 704, 23, 4)
_MM = ("mm_struct", 1408, 23, 8)
_VMA = ("vm_area_struct", 176, 23, 1)
_PID = ("pid", 128, 32, 1)
_FILLER = ("kmalloc-64", 64, 64, 1)          # the rest of the unreclaimable slab
_DENTRY = ("dentry", 192, 21, 1)             # the reclaimable slab: dentries


def _cache(spec: tuple[str, int, int, int], objs: int, reclaimable: bool = False) -> SlabCache:
    name, size, per, pages = spec
    slabs = -(-objs // per)
    return SlabCache(name, objs, slabs * per, size, per, pages, slabs, reclaimable)


def _fill(spec: tuple[str, int, int, int], pages: int, reclaimable: bool) -> SlabCache:
    name, size, per, ppslab = spec
    slabs = max(pages, 0) // ppslab
    return SlabCache(name, slabs * per, slabs * per, size, per, ppslab, slabs, reclaimable)


def slab_caches(k: Kernel) -> list[SlabCache]:
    """The caches, by name; Σ num_slabs * pagesperslab of the unreclaimable
    ones is SUnreclaim (of the reclaimable ones SReclaimable) in pages, as
    long as the object caches fit in the estimate (they are built to)."""
    m, mt = mem_snapshot(k), mm_totals(k)  # (the counts SUnreclaim is estimated from)
    groups = len(k.groups)
    fixed = [_cache(_TASK, mt.nr_threads + k.config.nr_cpus), _cache(_SIGNAL, groups), _cache(_FILES, groups),
             _cache(_MM, mt.nr_mms), _cache(_VMA, mt.nr_vmas), _cache(_PID, mt.nr_threads)]
    used = sum(c.num_slabs * c.pagesperslab for c in fixed)
    caches = fixed + [_fill(_FILLER, m.slab_unreclaimable - used, False),
                      _fill(_DENTRY, m.slab_reclaimable, True)]
    return sorted(caches, key=lambda c: c.name)
