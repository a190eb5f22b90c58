"""/proc/buddyinfo, /proc/pagetypeinfo and /proc/zoneinfo (mm/vmstat.c
frag_show, pagetypeinfo_show, zoneinfo_show) over the zones of
procsim/mm/buddy.py and the stat items of /proc/vmstat."""

from __future__ import annotations

from procsim.mm.buddy import MIGRATE_TYPES, NR_ORDERS, PAGEBLOCK_ORDER, ZoneState, pageblock_types, zone_states
from procsim.procfs.context import Ctx
from procsim.procfs.vmstat import VMSTAT_KEYS, vmstat_values

NODE_KEYS = VMSTAT_KEYS[VMSTAT_KEYS.index("nr_inactive_anon"):VMSTAT_KEYS.index("nr_kernel_file_pages") + 1]
ZONE_KEYS = VMSTAT_KEYS[:VMSTAT_KEYS.index("nr_inactive_anon")]
# the zone items kept per zone; the LRU and NUMA ones live where allocations go
_HOME_KEYS = tuple(k for k in ZONE_KEYS if k not in ("nr_free_pages", "nr_free_pages_blocks"))


def buddyinfo(ctx: Ctx) -> bytes:
    out = []
    for z in zone_states(ctx.kernel):
        if z.present:
            out.append(f"Node 0, zone {z.name:>8} " + "".join(f"{c:6d} " for c in z.orders) + "\n")
    return "".join(out).encode()


def pagetypeinfo(ctx: Ctx) -> bytes:
    k = ctx.kernel
    out = [f"Page block order: {PAGEBLOCK_ORDER}\n", f"Pages per block:  {1 << PAGEBLOCK_ORDER}\n", "\n",
           f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:6d} " for o in range(NR_ORDERS)) + "\n"]
    blocks = []
    for i, z in enumerate(zone_states(k)):
        if not z.present:
            continue
        per_type, nblocks = pageblock_types(k, z, i)
        for name, counts in zip(MIGRATE_TYPES, per_type):
            out.append(f"Node {0:4d}, zone {z.name:>8}, type {name:>12} " + "".join(f"{c:6d} " for c in counts)
                       + "\n")
        blocks.append(f"Node 0, zone {z.name:>8} " + "".join(f"{n:12d} " for n in nblocks) + "\n")
    out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{t:>12} " for t in MIGRATE_TYPES) + "\n")
    out += blocks
    return "".join(out).encode()


def _stat(name: str, v: int) -> str:
    return f"\n      {name:<12} {v}"


def zone_batchsize(managed: int) -> int:
    """zone_batchsize(), at least 1 (zone_set_pageset_high_and_batch)."""
    batch = min(managed >> 10, (1 << 20) // 4096) // 4
    batch = max(batch, 1)
    batch = 1 << ((batch + batch // 2).bit_length() - 1)  # rounddown_pow_of_two
    return max(batch - 1, 1)


def vm_stat_threshold(managed: int, ncpu: int) -> int:
    """calculate_normal_threshold(): per-CPU counter drift allowed."""
    mem = managed >> (27 - 12)
    return min(125, 2 * ncpu.bit_length() * (1 + mem.bit_length()))


def _zone(z: ZoneState, ncpu: int, items: dict[str, int], used: bool) -> list[str]:
    out = [f"\n  pages free     {z.free}", "\n        boost    0", f"\n        min      {z.wmark_min}",
           f"\n        low      {z.wmark_low}", f"\n        high     {z.wmark_high}",
           f"\n        promo    {z.wmark_promo}", f"\n        spanned  {z.spanned}",
           f"\n        present  {z.present}", f"\n        managed  {z.managed}", "\n        cma      0",
           "\n        protection: (" + ", ".join(map(str, z.protection)) + ")"]
    if not z.present:  # an empty zone: the watermarks and nothing more
        return out
    v = dict(items)
    v["nr_free_pages"], v["nr_free_pages_blocks"] = z.free, z.free_blocks_pages
    out += [_stat(key, v.get(key, 0)) for key in ZONE_KEYS]
    out.append("\n  pagesets")
    batch = zone_batchsize(z.managed)
    high_min = max(z.wmark_low // ncpu, batch << 2)
    high_max = max(z.managed // 8 // ncpu, batch << 2)
    high = high_min if used else 0  # a zone never allocated from has not sized its lists
    thresh = vm_stat_threshold(z.managed, ncpu)
    for cpu in range(ncpu):
        out += [f"\n    cpu: {cpu}", "\n              count:    0", f"\n              high:     {high}",
                f"\n              batch:    {batch}", f"\n              high_min: {high_min}",
                f"\n              high_max: {high_max}", f"\n  vm stats threshold: {thresh}"]
    out += ["\n  node_unreclaimable:  0", f"\n  start_pfn:           {z.start_pfn}"]
    return out


# The empty zones after Normal: ZONE_MOVABLE (its min is the SWAP_CLUSTER_MAX
# floor) and ZONE_DEVICE.
_EMPTY = (("Movable", 32), ("Device", 0))


def zoneinfo(ctx: Ctx) -> bytes:
    k = ctx.kernel
    v = vmstat_values(k)
    zs = zone_states(k)
    home = 2 if zs[2].present else 1
    out: list[str] = []
    first = True
    for i, z in enumerate(zs):
        out.append(f"Node 0, zone {z.name:>8}")
        if first and z.present:  # the node's stats, with its first populated zone
            out.append("\n  per-node stats")
            out += [_stat(key, v.get(key, 0)) for key in NODE_KEYS]
            first = False
        items = {key: v.get(key, 0) for key in _HOME_KEYS} if i == home else {}
        out += _zone(z, k.config.nr_cpus, items, used=i > 0)
        out.append("\n")
    for name, wmin in _EMPTY:
        out.append(f"Node 0, zone {name:>8}")
        out += ["\n  pages free     0", "\n        boost    0"] + [f"\n        {w:<8} {wmin}" for w in
                                                                     ("min", "low", "high", "promo")]
        out += [f"\n        {w:<8} 0" for w in ("spanned", "present", "managed", "cma")]
        out.append("\n        protection: (0, 0, 0, 0, 0)\n")
    return "".join(out).encode()
