"""The buddy allocator's view of free memory (mm/page_alloc.c free_area[],
mm/vmstat.c's frag_show, pagetypeinfo_show and zoneinfo_show): free blocks
per zone and order, as a pure function of the frame allocator's free frames
and the memory snapshot.

The model's MemMap keeps free frames as a bump region, freed order-0 frames
and freed folios, without merging buddies. Here they are merged as
__free_one_page() would (two free aligned buddies make one block of the next
order, up to MAX_PAGE_ORDER); the kernel's own pools, which show_mem.py
takes out of the free frames without allocating them, come out of the
largest blocks (they were allocated at boot, from fresh memory). The free
pages then go to the zones as the zonelist fallback leaves them: allocations
come from Normal first, then DMA32, then DMA, so the lower zones stay free
longest; each zone takes its blocks from the largest ones down.

So: the orders of a zone sum to its free pages, the zones sum to MemFree.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from procsim.mm.show_mem import mem_snapshot
from procsim.mm.zone import PAGEBLOCK_PAGES

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.mm.page_alloc import MemMap

MAX_PAGE_ORDER = 10
NR_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
MIGRATE_TYPES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
ZONES = ("DMA", "DMA32", "Normal")  # the populated ones; Movable and Device are empty


def _range_orders(a: int, b: int, counts: list[int]) -> None:
    """The aligned blocks [a, b) breaks into, largest possible at each step."""
    while a < b:
        o = MAX_PAGE_ORDER
        while o and (a & ((1 << o) - 1) or a + (1 << o) > b):
            o -= 1
        counts[o] += 1
        a += 1 << o


def _merge_orders(pfns: np.ndarray, counts: list[int]) -> None:
    """Buddy merging of single free frames: at each order, a block whose
    buddy (the other half of the next order's block) is free too merges."""
    cur = np.unique(pfns)
    for o in range(MAX_PAGE_ORDER):
        if not len(cur):
            return
        step = 1 << o
        pair = np.zeros(len(cur), bool)
        pair[:-1] = (cur[1:] == cur[:-1] + step) & ((cur[:-1] >> o) & 1 == 0)
        npair = int(np.count_nonzero(pair))
        counts[o] += len(cur) - 2 * npair
        cur = cur[pair]
    counts[MAX_PAGE_ORDER] += len(cur)


def free_orders(mem: MemMap) -> list[int]:
    """Free blocks per order over all free frames (sum of count << order is
    mem.nr_free). Freed frames merge among themselves, the never-used region
    is whole aligned blocks."""
    counts = [0] * NR_ORDERS
    _range_orders(mem._next, mem.nr_pages, counts)
    parts = list(mem._freed) + [np.arange(h, h + (1 << o), dtype=np.int64)
                                for o, hs in enumerate(mem._blocks) for h in hs]
    if parts:
        _merge_orders(np.concatenate(parts), counts)
    return counts


def _binary(n: int, counts: list[int]) -> None:
    """n pages as blocks of the orders of its set bits (what is left of a split block)."""
    for o in range(NR_ORDERS):
        if n >> o & 1:
            counts[o] += 1


def take_pages(pool: list[int], n: int) -> list[int]:
    """Take n pages out of `pool` (counts per order, changed in place), from
    the largest blocks down; the last block taken is split (expand()), its
    rest staying in the pool. Returns the blocks taken, per order."""
    got = [0] * NR_ORDERS
    for o in range(MAX_PAGE_ORDER, -1, -1):
        if n <= 0:
            break
        size = 1 << o
        whole = min(pool[o], n // size)
        pool[o] -= whole
        got[o] += whole
        n -= whole * size
        if n and pool[o] and n < size:  # split one block: n to the taker, the rest back
            pool[o] -= 1
            _binary(n, got)
            _binary(size - n, pool)
            n = 0
    return got


@dataclass(frozen=True, slots=True)
class ZoneState:
    name: str
    managed: int
    present: int
    spanned: int
    start_pfn: int
    free: int
    orders: tuple[int, ...]          # free blocks per order (buddyinfo)
    wmark_min: int
    wmark_low: int
    wmark_high: int
    wmark_promo: int
    protection: tuple[int, ...]      # lowmem_reserve[] against DMA..Device

    @property
    def free_blocks_pages(self) -> int:
        """NR_FREE_PAGES_BLOCKS: free pages in whole free pageblocks."""
        return sum(c << o for o, c in enumerate(self.orders) if o >= PAGEBLOCK_ORDER)


# The reference VM's layout of physical memory: DMA from PFN 1, DMA32 from
# 16 MiB to 4 GiB (RAM up to the PCI hole at 3 GiB), Normal from 4 GiB.
_START_PFN = (1, 4096, 1 << 20)
_DMA_PRESENT, _DMA_SPANNED = 3998, 4095
_DMA32_SPANNED = (1 << 20) - 4096
LOWMEM_RESERVE_RATIO = (256, 256, 32)

_memo: "weakref.WeakKeyDictionary[Kernel, tuple[int, tuple[ZoneState, ...]]]" = weakref.WeakKeyDictionary()


def zone_states(k: Kernel) -> tuple[ZoneState, ...]:
    """DMA, DMA32 and Normal at this instant (memoised per generation)."""
    memo = _memo.get(k)
    if memo is None or memo[0] != k.generation:
        memo = (k.generation, _zone_states(k))
        _memo[k] = memo
    return memo[1]


def _zone_states(k: Kernel) -> tuple[ZoneState, ...]:
    mem = k.mem
    m = mem_snapshot(k)
    z = m.zones
    pool = free_orders(mem)
    take_pages(pool, mem.nr_free - m.free)  # the kernel's pools, from the largest blocks
    used = m.total - m.free
    free = []
    for managed in reversed(z.managed):    # Normal, DMA32, DMA: the zonelist's order
        u = min(used, managed)
        used -= u
        free.append(managed - u)
    free.reverse()
    got = [take_pages(pool, free[0]), take_pages(pool, free[1]), pool]  # Normal: the rest
    reserved = mem.nr_pages - m.total
    res = [min(reserved, _DMA_PRESENT - 3840), 0, 0]
    res[2] = reserved - res[0] if z.managed[2] else 0  # memmap and holes: DMA32's present is its managed
    res[1] = reserved - res[0] - res[2]
    wm = watermarks(z.managed, z.min_free)
    out = []
    for i, name in enumerate(ZONES):
        present = z.managed[i] + res[i] if z.managed[i] else 0
        spanned = (_DMA_SPANNED if i == 0 else _DMA32_SPANNED if i == 1 and z.managed[2] else present)
        prot = [0] * 5
        for j in range(i + 1, 5):
            prot[j] = sum(z.managed[i + 1:j + 1]) // LOWMEM_RESERVE_RATIO[i] if i < 2 else 0
        out.append(ZoneState(name, z.managed[i], present, spanned if present else 0, _START_PFN[i], free[i],
                             tuple(got[i]), *wm[i], tuple(prot)))
    return tuple(out)


WATERMARK_SCALE_FACTOR = 10


def watermarks(managed: tuple[int, ...], min_free: int) -> list[tuple[int, int, int, int]]:
    """__setup_per_zone_wmarks(): each zone's share of min_free_kbytes as its
    min, and low/high/promo a step apart (a quarter of min, or
    watermark_scale_factor of the zone)."""
    total = max(sum(managed), 1)
    out = []
    for z in managed:
        wmin = min_free * z // total
        step = max(wmin // 4, z * WATERMARK_SCALE_FACTOR // 10000)
        out.append((wmin, wmin + step, wmin + 2 * step, wmin + 3 * step))
    return out


def pageblock_types(k: Kernel, zs: ZoneState, index: int) -> tuple[list[list[int]], list[int]]:
    """pagetypeinfo: the zone's free blocks per migrate type and order, and
    its pageblocks per type. Unmovable pageblocks hold the kernel's own
    pages (slab, stacks, page tables), Reclaimable the reclaimable slab,
    the rest is Movable; the small free blocks in the kernel's pageblocks
    are theirs, as on a running machine."""
    m = mem_snapshot(k)
    blocks = -(-zs.spanned // PAGEBLOCK_PAGES) if zs.present else 0
    per_type = [[0] * NR_ORDERS for _ in MIGRATE_TYPES]
    nblocks = [0] * len(MIGRATE_TYPES)
    home = 2 if m.zones.managed[2] else 1  # the zone kernel allocations come from
    if index == 0:  # DMA: its first pageblock holds the kernel's early allocations
        nblocks[0] = min(1, blocks)
    elif index == home:
        kernel = m.slab_unreclaimable + m.kernel_stack_kb // 4 + m.pagetables + m.percpu
        nblocks[0] = min(blocks, -(-kernel // PAGEBLOCK_PAGES))
        nblocks[2] = min(blocks - nblocks[0], -(-m.slab_reclaimable // PAGEBLOCK_PAGES))
    nblocks[1] = blocks - nblocks[0] - nblocks[2]
    for o, c in enumerate(zs.orders):
        if o < PAGEBLOCK_ORDER and index == home:
            per_type[0][o] = c // 8
            per_type[2][o] = c // 8
        per_type[1][o] = c - per_type[0][o] - per_type[2][o]
    return per_type, nblocks
