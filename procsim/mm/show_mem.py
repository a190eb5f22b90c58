"""The machine's memory at one instant (si_meminfo(), si_mem_available(),
the node and zone stat items meminfo and vmstat print): a pure function of
kernel state, memoised per `kernel.generation` on the kernel (a cache that
cannot change a result: every change bumps the generation); the sums over
every mm and task it needs (MMTotals) per `kernel.struct_generation`.

The frame counts come from the mem_map; the kernel's own pools (slab, kernel
stacks, page tables, percpu, vmalloc, buffers) are estimated from the objects
the model has (tasks, mms, VMAs) and come out of the free frames.

Machine-specific constants copy the reference VM of spec §0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.hugetlb import HPAGE_NR
from procsim.mm.mm import MM
from procsim.mm.zone import Zones, zones
from procsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from procsim.kernel import Kernel

PAGE_KB = PAGE_SIZE // 1024
HPAGE_KB = 2048
GiB_KB = 1 << 20

# Kernel memory outside the frame allocator's user pages, in pages: what a freshly
# booted server holds, capped for small machines, plus a cost per kernel object.
SLAB_RECLAIMABLE_BOOT = 32768    # dentry and inode caches (128 MiB), at most RAM/64
SLAB_UNRECLAIMABLE_BOOT = 6144   # early kmalloc, kmem_cache, ... (24 MiB), at most RAM/256
SLAB_PER_THREAD = 3              # task_struct, pid, cred, signal, files (~12 KiB)
SLAB_PER_PROCESS_RECLAIMABLE = 4  # /proc and other dentries/inodes of a process
SLAB_PER_MM = 2                  # mm_struct, maple nodes, anon_vma roots
VMAS_PER_SLAB_PAGE = 16          # vm_area_struct + anon_vma_chain ~ 256 bytes
THREAD_STACK_PAGES = 4           # THREAD_SIZE = 16 KiB on x86_64, vmalloc'ed
PERCPU_PAGES = (22, 75)          # percpu first chunk: base, and per CPU (688 kB at 2 CPUs)
VMALLOC_OTHER_PAGES = 3072       # vmalloc besides stacks (12 MiB), at most RAM/64
BUFFERS_MAX_PAGES = 1024         # block-device metadata cache, RAM/4096 up to 4 MiB


@dataclass(frozen=True, slots=True)
class MemSnapshot:
    """The machine's memory at one instant, in pages (kernel_stack_kb in kB,
    as NR_KERNEL_STACK_KB). Exact identity, in pages:

        total = free + buffers + file + shmem + anon + slab_reclaimable
                + slab_unreclaimable + kernel_stack + pagetables + percpu
                + (vmalloc_used - kernel_stack) + anon_unmapped
                + swapcached_unmapped + hugetlb

    (anon_unmapped is 0 unless large folios are partially mapped: like the
    kernel's NR_ANON_MAPPED, AnonPages then leaves some allocated pages out;
    swapcached_unmapped: swap-cache folios nobody maps, in SwapCached only)
    i.e. meminfo's MemTotal = MemFree + Buffers + Cached + AnonPages + Slab +
    KernelStack + PageTables + Percpu + VmallocUsed - KernelStack + Hugetlb
    (stacks are vmalloc'ed, so VmallocUsed already holds them; the hugetlb
    pool is in MemTotal and not in MemFree, as on Linux). A mapped swap-cache
    folio is in AnonPages and SwapCached both, as on Linux.
    """
    total: int
    free: int
    buffers: int
    file: int          # page cache of files, shmem excluded
    shmem: int
    anon: int          # AnonPages: NR_ANON_MAPPED as the mapcount model counts it
    anon_unmapped: int  # anon frames of partially mapped large folios AnonPages leaves out
    swapcached: int    # NR_SWAPCACHE: folios in the swap cache (anonymous, on the anon LRU)
    swapcached_unmapped: int  # the part of them nobody maps
    anon_thp: int      # AnonHugePages: pages of PMD-mapped anon folios
    mapped: int
    active_anon: int
    inactive_anon: int
    active_file: int
    inactive_file: int
    unevictable: int
    mlocked: int
    slab_reclaimable: int
    slab_unreclaimable: int
    kernel_stack_kb: int
    pagetables: int
    percpu: int
    vmalloc_used: int
    swap_total: int
    swap_free: int
    hugetlb: int        # the hugetlb pool, in pages (Hugetlb); HugePages_* below in huge pages
    huge_total: int
    huge_free: int
    huge_rsvd: int
    committed: int
    commit_limit: int
    available: int
    zones: Zones

    @property
    def file_pages(self) -> int:
        """NR_FILE_PAGES: the page cache, shmem, the swap cache and buffers."""
        return self.file + self.shmem + self.swapcached + self.buffers

    @property
    def cached(self) -> int:
        """NR_FILE_PAGES - swapcache - buffers (meminfo Cached): files and shmem."""
        return self.file_pages - self.swapcached - self.buffers


def _mms(k: Kernel) -> list[MM]:
    """Every live address space once (vfork-style sharing counts once)."""
    seen: dict[int, MM] = {}
    for g in k.groups.values():
        if g.mm is not None:
            seen[id(g.mm)] = g.mm
    return list(seen.values())


@dataclass(frozen=True)
class MMTotals:
    """What meminfo sums over every address space and task: the inputs of
    its estimated pools (slab, kernel stacks, page tables), Mlocked and
    Committed_AS."""
    nr_mms: int
    nr_vmas: int
    nr_tasks: int      # live tasks (a kernel stack each)
    nr_threads: int
    pgtables_bytes: int
    locked_vm: int
    committed_vm: int


def _mm_totals(k: Kernel) -> MMTotals:
    mms = _mms(k)
    return MMTotals(
        nr_mms=len(mms), nr_vmas=sum(len(mm.vmas) for mm in mms),
        nr_tasks=sum(1 for t in k.tasks.values() if not t.dead), nr_threads=k.nr_threads(),
        pgtables_bytes=sum(mm.pgtable.pgtables_bytes() for mm in mms),
        locked_vm=sum(mm.locked_vm for mm in mms), committed_vm=sum(mm.committed_vm for mm in mms))


def mm_totals(k: Kernel) -> MMTotals:
    """_mm_totals(), kept while the structure stays: everything they count
    changes with a VMA, mlock, fault (a workload's too), task or exit
    change, each of which moves struct_generation, while the wall clock
    moves the generation every jiffy and a 10,000-process machine's
    meminfo walked every mm at each read."""
    memo = k.mm_totals_memo
    if memo is None or memo[0] != k.struct_generation:
        memo = k.mm_totals_memo = (k.struct_generation, _mm_totals(k))
    return memo[1]


def mem_snapshot(k: Kernel) -> MemSnapshot:
    """The memory snapshot for the kernel's current generation (memoised)."""
    memo = k.mem_snapshot_memo
    if memo is None or memo[0] != k.generation:
        memo = k.mem_snapshot_memo = (k.generation, _mem_snapshot(k))
    return memo[1]


def _mem_snapshot(k: Kernel) -> MemSnapshot:
    mem, cfg = k.mem, k.config
    total = mem.nr_pages - mem.first_free          # totalram_pages: RAM less reserved frames
    anon, file, shmem = mem.nr_flag[M.PG_ANON], mem.nr_flag[M.PG_FILE], mem.nr_flag[M.PG_SHMEM]
    # AnonPages counts mapped anon pages; the LRU lists hold whole folios
    # (and the swap cache's folios, mapped or not: they are anonymous)
    anon_mapped = mem.nr_anon_mapped
    cached_pfns = mem.swap_cache.pfns()
    swapcached = len(cached_pfns)
    swapcached_unmapped = int(np.count_nonzero(mem.mapcount[cached_pfns] == 0))
    mt = mm_totals(k)
    stacks = mt.nr_tasks + cfg.nr_cpus  # + idle tasks
    # NR_PAGETABLE counts each mm's PGD too, which mm_pgtables_bytes (VmPTE) leaves out
    pagetables = mt.pgtables_bytes // PAGE_SIZE + mt.nr_mms
    kstack = stacks * THREAD_STACK_PAGES
    sunreclaim = (min(SLAB_UNRECLAIMABLE_BOOT, total // 256) + mt.nr_threads * SLAB_PER_THREAD
                  + mt.nr_mms * SLAB_PER_MM + mt.nr_vmas // VMAS_PER_SLAB_PAGE)
    sreclaim = min(SLAB_RECLAIMABLE_BOOT, total // 64) + len(k.groups) * SLAB_PER_PROCESS_RECLAIMABLE
    percpu = PERCPU_PAGES[0] + PERCPU_PAGES[1] * cfg.nr_cpus
    vmalloc_other = min(VMALLOC_OTHER_PAGES, total // 64)
    buffers = min(total // 4096, BUFFERS_MAX_PAGES)
    # The pools come out of the free frames; when memory is short the
    # shrinkers give back reclaimable slab first, the rest floors at zero.
    pinned = sunreclaim + kstack + pagetables + percpu + vmalloc_other + buffers
    sreclaim = max(0, min(sreclaim, mem.nr_free - pinned))
    free = max(0, mem.nr_free - pinned - sreclaim)

    # LRU lists: shmem sits on the anon lists, buffers on the file lists.
    # Mlocked pages (VmLck, bounded by what is resident) move to the
    # unevictable list, taken from anon first. The active lists hold the
    # frames procsim/mm/lru.py activated (new folios start inactive), the
    # buffers half active.
    anon_lru, file_lru = anon + shmem, file + buffers
    mlocked = min(mt.locked_vm, anon_lru + file_lru)
    unevict_anon = min(mlocked, anon_lru)
    ev_anon, ev_file = anon_lru - unevict_anon, file_lru - (mlocked - unevict_anon)
    active_anon = min(mem.nr_active["anon"], ev_anon)
    active_file = min(mem.nr_active["file"] + buffers // 2, ev_file)

    # The swap area's own count (its header page is not swap space: 64 MiB
    # of swap shows 65532 kB); free slots, not the mms' swap entries (a slot
    # shared after fork is one slot).
    swap_total, swap_free = mem.swap.pages, mem.swap.nr_free
    pool = mem.hugetlb
    hugetlb = pool.nr_huge_pages * HPAGE_NR
    # Committed_AS (vm_committed_as): the pages of every VM_ACCOUNT VMA, the
    # charge mmap/brk/mprotect made and only unmap returns (so a RELRO
    # segment made read-only stays charged; fork charges the copy again;
    # hugetlb is never VM_ACCOUNT), plus shmem, charged once per object
    # (resident pages stand in for the object sizes).
    committed = mt.committed_vm + shmem
    # the hugetlb pool is not committable (6.18: 4 x 2 MiB took 4096 kB off)
    vm = mem.sysctl
    if vm.overcommit_kbytes:
        commit_limit = vm.overcommit_kbytes // PAGE_KB + swap_total
    else:
        commit_limit = (total - hugetlb) * vm.overcommit_ratio // 100 + swap_total

    z = zones(total, vm.min_free_kbytes)
    # active + inactive file, as si_mem_available() counts it: the swap
    # cache's folios are on the anon lists, so they never count as available
    pagecache = ev_file
    available = free - z.totalreserve
    available += pagecache - min(pagecache // 2, z.wmark_low)
    available += sreclaim - min(sreclaim // 2, z.wmark_low)
    return MemSnapshot(
        total=total, free=free, buffers=buffers, file=file, shmem=shmem, anon=anon_mapped,
        anon_unmapped=anon - anon_mapped - swapcached_unmapped, swapcached=swapcached,
        swapcached_unmapped=swapcached_unmapped, anon_thp=mem.nr_anon_thps,
        mapped=mem.nr_mapped_file, active_anon=active_anon, inactive_anon=ev_anon - active_anon,
        active_file=active_file, inactive_file=ev_file - active_file, unevictable=mlocked,
        mlocked=mlocked, slab_reclaimable=sreclaim, slab_unreclaimable=sunreclaim,
        kernel_stack_kb=kstack * PAGE_KB, pagetables=pagetables, percpu=percpu,
        vmalloc_used=vmalloc_other + kstack, swap_total=swap_total, swap_free=swap_free,
        hugetlb=hugetlb, huge_total=pool.nr_huge_pages, huge_free=pool.free_huge_pages,
        huge_rsvd=pool.resv_huge_pages,
        committed=committed, commit_limit=commit_limit, available=max(available, 0), zones=z)


def _by_2m(kb: int) -> tuple[int, int]:
    """(4 KiB part, 2 MiB part) of a range."""
    return kb % HPAGE_KB, kb - kb % HPAGE_KB


@lru_cache(maxsize=16)
def direct_map(phys_kb: int) -> tuple[int, int, int]:
    """DirectMap4k/2M/1G: RAM below the 3 GiB PCI hole and the rest above
    4 GiB. The first 2 GiB use 2 MiB pages with 26 MiB split to 4 KiB (BIOS
    area, kernel text/rodata permissions); whole, aligned GiBs use 1 GiB
    pages. Reproduces the reference VM (26 GiB of RAM)."""
    low = min(phys_kb, 3 * GiB_KB)
    high = phys_kb - low
    first = min(low, 2 * GiB_KB)
    k4 = min(first, 26624)
    a, m2 = _by_2m(first - k4)
    k4 += a
    g1 = 0
    rest = low - first  # [2 GiB, 3 GiB)
    if rest == GiB_KB:
        g1 += GiB_KB
    else:
        a, b = _by_2m(rest)
        k4, m2 = k4 + a, m2 + b
    g1 += high - high % GiB_KB
    a, b = _by_2m(high % GiB_KB)
    return k4 + a, m2 + b, g1

