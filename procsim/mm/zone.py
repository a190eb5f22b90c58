"""Zones and watermarks of the one memory node: ZONE_DMA, ZONE_DMA32 and
ZONE_NORMAL sized as on a PC, and the watermarks and reserves the page
allocator derives from them (mm/page_alloc.c), plus the vm sysctls the
memory accounting reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from procsim.units import PAGE_SIZE

PAGE_KB = PAGE_SIZE // 1024

DMA_PAGES = 3840             # ZONE_DMA managed pages on a PC: 16 MiB less firmware areas
DMA32_PAGES = 0xC0000 - 4096  # RAM below the PCI hole at 3 GiB, less ZONE_DMA
LOWMEM_RESERVE_RATIO = 256   # vm.lowmem_reserve_ratio for DMA and DMA32
WATERMARK_SCALE_FACTOR = 10  # vm.watermark_scale_factor
PAGEBLOCK_PAGES = 512        # 2 MiB pageblocks (x86_64 with THP)
MIGRATE_PCPTYPES = 3
OVERCOMMIT_RATIO = 50        # vm.overcommit_ratio
DIRTY_RATIO, DIRTY_BACKGROUND_RATIO = 20, 10


@dataclass(frozen=True, slots=True)
class Zones:
    managed: tuple[int, int, int]  # DMA, DMA32, Normal
    min_free: int                  # vm.min_free_kbytes, in pages
    wmark_low: int                 # Σ low watermarks, as si_mem_available() uses
    totalreserve: int              # calculate_totalreserve_pages()
    wmark_min: int = 0             # Σ min watermarks (direct reclaim below: __alloc_pages_slowpath)
    wmark_high: int = 0            # Σ high watermarks (kswapd reclaims up to: balance_pgdat)


@lru_cache(maxsize=32)
def zones(managed_pages: int, min_free_kbytes: int | None = None) -> Zones:
    """One node with DMA, DMA32 and Normal zones and the watermarks
    init_per_zone_wmark_min() + khugepaged's set_recommended_min_free_kbytes()
    give them (the formulas reproduce the reference VM's /proc/zoneinfo);
    `min_free_kbytes`: a value written to vm.min_free_kbytes instead."""
    dma = min(DMA_PAGES, managed_pages)
    dma32 = min(DMA32_PAGES, managed_pages - dma)
    normal = managed_pages - dma - dma32
    managed = (dma, dma32, normal)
    total = max(managed_pages, 1)
    min_free_kb = min(max(math.isqrt(managed_pages * PAGE_KB * 16), 128), 262144)
    populated = sum(1 for z in managed if z)
    # THP raises min_free so that pageblocks of every migratetype stay free
    recommended = PAGEBLOCK_PAGES * populated * (2 + MIGRATE_PCPTYPES * MIGRATE_PCPTYPES)
    min_free = max(min_free_kb // PAGE_KB, min(recommended, managed_pages // 20))
    if min_free_kbytes is not None:
        min_free = min_free_kbytes // PAGE_KB
    # lowmem_reserve: pages a lower zone keeps from allocations a higher zone could serve
    reserve = ((dma32 + normal) // LOWMEM_RESERVE_RATIO, normal // LOWMEM_RESERVE_RATIO, 0)
    low_sum = totalreserve = min_sum = high_sum = 0
    for z, r in zip(managed, reserve):
        wmin = min_free * z // total
        step = max(wmin // 4, z * WATERMARK_SCALE_FACTOR // 10000)
        low_sum += wmin + step
        min_sum += wmin
        high_sum += wmin + 2 * step
        totalreserve += min(z, r + wmin + 2 * step)
    return Zones(managed, min_free, low_sum, totalreserve, min_sum, high_sum)


@dataclass(slots=True)
class VmSysctl:
    """The vm.* sysctls the model reads (kernel/sysctl.c, mm/*.c defaults);
    changed only by writes to /proc/sys/vm (procsim/procfs/sysctl_vm.py)."""
    swappiness: int = 60
    overcommit_memory: int = 0       # OVERCOMMIT_GUESS; 1 ALWAYS, 2 NEVER
    overcommit_ratio: int = OVERCOMMIT_RATIO
    overcommit_kbytes: int = 0       # when set, CommitLimit uses it instead of the ratio
    admin_reserve_kbytes: int = 8192
    user_reserve_kbytes: int = 131072
    min_free_kbytes: int | None = None  # None: what the boot computed (zones())
    dirty_ratio: int = DIRTY_RATIO
    dirty_background_ratio: int = DIRTY_BACKGROUND_RATIO
    dirty_expire_centisecs: int = 3000
    dirty_writeback_centisecs: int = 500
    vfs_cache_pressure: int = 100
    max_map_count: int = 65530
    page_cluster: int = 3
    stat_interval: int = 1


ZONE_NAMES = ("dma", "dma32", "normal")


def alloc_zone(managed_pages: int) -> str:
    """The zone user allocations come from: the highest populated one, the
    first the zonelist tries (the model's allocator has no zones of its own)."""
    z = zones(managed_pages).managed
    return ZONE_NAMES[max(i for i, n in enumerate(z) if n) if any(z) else 2]
