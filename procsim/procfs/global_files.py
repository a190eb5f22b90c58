"""Machine-wide files: /proc/meminfo, stat, uptime, loadavg,
interrupts, vmstat, version, the sysctls ps and top read, and the sysfs CPU
and THP files (spec §15–§20). One `name(ctx) -> bytes` function per file.

Every value is derived from the kernel model at read time in O(processes) at
most; nothing walks pages. Two pieces of renderer-side bookkeeping stand in
for kernel state the model does not keep (see `_State`):

* the memory snapshot is memoised per `kernel.generation`, so the meminfo and
  vmstat reads of one `vmstat 1` tick cost one page-table walk, not two;
* event counters (pgfault, pgpgin, ...) must never go backwards, but the
  model only keeps fault counts in live tasks; faults of processes that were
  reaped are carried over, and every event counter is clamped monotonic.

Machine-specific constants (devices, kernel pools) copy the
reference VM of spec §0.1 (a Firecracker-style KVM guest on AMD EPYC).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from functools import lru_cache

from procsim.bitmap import list_str
from procsim.kernel import Kernel
from procsim.mm import memory as M
from procsim.mm.hugetlb import HPAGE_NR
from procsim.mm.mm import MM
from procsim.procfs.context import Ctx
from procsim.sched import CPU, NSEC
from procsim.task import ThreadGroup

PAGE_SIZE = 4096
PAGE_KB = PAGE_SIZE // 1024
USER_HZ = 100
TICK_NS = NSEC // USER_HZ  # one USER_HZ clock tick


def _ticks(ns: int) -> int:
    """nsec_to_clock_t()."""
    return ns // TICK_NS


# -- renderer-side bookkeeping ------------------------------------------------------


@dataclass
class _State:
    """Per-kernel state the renderers keep between reads (kernel -> _State)."""
    mem_gen: int = -1
    mem: "MemSnapshot | None" = None
    # min_flt/maj_flt of each thread group at the last read, and the sum of the
    # groups that have been reaped since: pgfault must survive process exit.
    faults_seen: dict[ThreadGroup, tuple[int, int]] = field(default_factory=dict)
    faults_retired: list[int] = field(default_factory=lambda: [0, 0])
    high: dict[str, int] = field(default_factory=dict)

    def monotonic(self, name: str, value: int) -> int:
        """vm_event counters only grow; a model gauge used as one may dip."""
        v = max(value, self.high.get(name, 0))
        self.high[name] = v
        return v

    def faults(self, k: Kernel) -> tuple[int, int]:
        """Σ min_flt and Σ maj_flt since boot, including reaped processes."""
        now: dict[ThreadGroup, tuple[int, int]] = {}
        mn_tot, mj_tot = 0, 0
        for tg in k.groups.values():
            mn, mj = tg.dead_min_flt, tg.dead_maj_flt
            for t in tg.threads:
                mn += t.min_flt
                mj += t.maj_flt
            now[tg] = (mn, mj)
            mn_tot += mn
            mj_tot += mj
        for tg, (mn, mj) in self.faults_seen.items():
            if tg not in now:
                self.faults_retired[0] += mn
                self.faults_retired[1] += mj
        self.faults_seen = now
        return (self.monotonic("pgfault", mn_tot + self.faults_retired[0]),
                self.monotonic("pgmajfault", mj_tot + self.faults_retired[1]))


_STATES: "weakref.WeakKeyDictionary[Kernel, _State]" = weakref.WeakKeyDictionary()


def _state(k: Kernel) -> _State:
    st = _STATES.get(k)
    if st is None:
        st = _STATES[k] = _State()
    return st


# -- memory: zones and watermarks ----------------------------------------------------

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


@lru_cache(maxsize=32)
def zones(managed_pages: int) -> Zones:
    """One node with DMA, DMA32 and Normal zones and the watermarks
    init_per_zone_wmark_min() + khugepaged's set_recommended_min_free_kbytes()
    give them (the formulas reproduce the reference VM's /proc/zoneinfo)."""
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
    # lowmem_reserve: pages a lower zone keeps from allocations a higher zone could serve
    reserve = ((dma32 + normal) // LOWMEM_RESERVE_RATIO, normal // LOWMEM_RESERVE_RATIO, 0)
    low_sum = totalreserve = 0
    for z, r in zip(managed, reserve):
        wmin = min_free * z // total
        step = max(wmin // 4, z * WATERMARK_SCALE_FACTOR // 10000)
        low_sum += wmin + step
        totalreserve += min(z, r + wmin + 2 * step)
    return Zones(managed, min_free, low_sum, totalreserve)


# -- memory: kernel pools -----------------------------------------------------------

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
                + (vmalloc_used - kernel_stack) + anon_unmapped + hugetlb

    (anon_unmapped is 0 unless large folios are partially mapped: like the
    kernel's NR_ANON_MAPPED, AnonPages then leaves some allocated pages out)
    i.e. meminfo's MemTotal = MemFree + Buffers + Cached + AnonPages + Slab +
    KernelStack + PageTables + Percpu + VmallocUsed - KernelStack + Hugetlb
    (stacks are vmalloc'ed, so VmallocUsed already holds them; the hugetlb
    pool is in MemTotal and not in MemFree, as on Linux).
    """
    total: int
    free: int
    buffers: int
    file: int          # page cache of files, shmem excluded
    shmem: int
    anon: int          # AnonPages: NR_ANON_MAPPED as the mapcount model counts it
    anon_unmapped: int  # anon frames of partially mapped large folios AnonPages leaves out
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
    def cached(self) -> int:
        """NR_FILE_PAGES - swapcache - buffers: files and shmem."""
        return self.file + self.shmem


def _mms(k: Kernel) -> list[MM]:
    """Every live address space once (vfork-style sharing counts once)."""
    seen: dict[int, MM] = {}
    for g in k.groups.values():
        if g.mm is not None:
            seen[id(g.mm)] = g.mm
    return list(seen.values())


def mem_snapshot(k: Kernel) -> MemSnapshot:
    """The memory snapshot for the kernel's current generation (memoised)."""
    st = _state(k)
    if st.mem is None or st.mem_gen != k.generation:
        st.mem, st.mem_gen = _mem_snapshot(k), k.generation
    return st.mem


def _mem_snapshot(k: Kernel) -> MemSnapshot:
    mem, cfg = k.mem, k.config
    total = mem.nr_pages - mem.first_free          # totalram_pages: RAM less reserved frames
    anon, file, shmem = mem.nr_flag[M.PG_ANON], mem.nr_flag[M.PG_FILE], mem.nr_flag[M.PG_SHMEM]
    # AnonPages counts mapped anon pages; the LRU lists hold whole folios
    anon_mapped = mem.nr_anon_mapped
    mms = _mms(k)
    nvmas = sum(len(mm.vmas) for mm in mms)
    stacks = sum(1 for t in k.tasks.values() if not t.dead) + cfg.nr_cpus  # + idle tasks
    # NR_PAGETABLE counts each mm's PGD too, which mm_pgtables_bytes (VmPTE) leaves out
    pagetables = sum(mm.pgtable.pgtables_bytes() for mm in mms) // PAGE_SIZE + len(mms)
    kstack = stacks * THREAD_STACK_PAGES
    sunreclaim = (min(SLAB_UNRECLAIMABLE_BOOT, total // 256) + k.nr_threads() * SLAB_PER_THREAD
                  + len(mms) * SLAB_PER_MM + nvmas // VMAS_PER_SLAB_PAGE)
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
    # unevictable list, taken from anon first. Of the evictable pages a fixed
    # share is active: 1/8 of anon (new anon starts inactive), 1/2 of file.
    anon_lru, file_lru = anon + shmem, file + buffers
    mlocked = min(sum(mm.locked_vm for mm in mms), anon_lru + file_lru)
    unevict_anon = min(mlocked, anon_lru)
    ev_anon, ev_file = anon_lru - unevict_anon, file_lru - (mlocked - unevict_anon)
    active_anon, active_file = ev_anon // 8, ev_file // 2

    # The swap area's own count (its header page is not swap space: 64 MiB
    # of swap shows 65532 kB); free slots, not the mms' swap entries (a slot
    # shared after fork is one slot).
    swap_total, swap_free = mem.swap.pages, mem.swap.nr_free
    pool = mem.hugetlb
    hugetlb = pool.nr_huge_pages * HPAGE_NR
    # Committed_AS: accountable private writable memory (data_vm + stack_vm
    # of every mm, charged again on fork; hugetlb is never VM_ACCOUNT) plus
    # shmem, which is charged once per object (resident pages stand in for
    # the object sizes).
    committed = sum(mm.data_vm - mm.hugetlb_data_vm + mm.stack_vm for mm in mms) + shmem
    # the hugetlb pool is not committable (6.18: 4 x 2 MiB took 4096 kB off)
    commit_limit = (total - hugetlb) * OVERCOMMIT_RATIO // 100 + swap_total

    z = zones(total)
    pagecache = ev_file  # active + inactive file, as si_mem_available() counts it
    available = free - z.totalreserve
    available += pagecache - min(pagecache // 2, z.wmark_low)
    available += sreclaim - min(sreclaim // 2, z.wmark_low)
    return MemSnapshot(
        total=total, free=free, buffers=buffers, file=file, shmem=shmem, anon=anon_mapped,
        anon_unmapped=anon - anon_mapped, anon_thp=mem.nr_anon_thps,
        mapped=mem.nr_mapped_file, active_anon=active_anon, inactive_anon=ev_anon - active_anon,
        active_file=active_file, inactive_file=ev_file - active_file, unevictable=mlocked,
        mlocked=mlocked, slab_reclaimable=sreclaim, slab_unreclaimable=sunreclaim,
        kernel_stack_kb=kstack * PAGE_KB, pagetables=pagetables, percpu=percpu,
        vmalloc_used=vmalloc_other + kstack, swap_total=swap_total, swap_free=swap_free,
        hugetlb=hugetlb, huge_total=pool.nr_huge_pages, huge_free=pool.free_huge_pages,
        huge_rsvd=pool.resv_huge_pages,
        committed=committed, commit_limit=commit_limit, available=max(available, 0), zones=z)


# -- /proc/meminfo ----------------------------------------------------------------------

VMALLOC_TOTAL_KB = 34359738367  # x86_64 with 4-level paging
HPAGE_KB = 2048
GiB_KB = 1 << 20


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


def meminfo(ctx: Ctx) -> bytes:
    k = ctx.kernel
    m = mem_snapshot(k)
    p = PAGE_KB
    k4, m2, g1 = direct_map(k.config.mem_bytes >> 10)
    slab = m.slab_reclaimable + m.slab_unreclaimable
    rows = (
        ("MemTotal", m.total * p), ("MemFree", m.free * p), ("MemAvailable", m.available * p),
        ("Buffers", m.buffers * p), ("Cached", m.cached * p), ("SwapCached", 0),
        ("Active", (m.active_anon + m.active_file) * p),
        ("Inactive", (m.inactive_anon + m.inactive_file) * p),
        ("Active(anon)", m.active_anon * p), ("Inactive(anon)", m.inactive_anon * p),
        ("Active(file)", m.active_file * p), ("Inactive(file)", m.inactive_file * p),
        ("Unevictable", m.unevictable * p), ("Mlocked", m.mlocked * p),
        ("SwapTotal", m.swap_total * p), ("SwapFree", m.swap_free * p),
        ("Zswap", 0), ("Zswapped", 0), ("Dirty", 0), ("Writeback", 0),
        ("AnonPages", m.anon * p), ("Mapped", m.mapped * p), ("Shmem", m.shmem * p),
        ("KReclaimable", m.slab_reclaimable * p), ("Slab", slab * p),
        ("SReclaimable", m.slab_reclaimable * p), ("SUnreclaim", m.slab_unreclaimable * p),
        ("KernelStack", m.kernel_stack_kb), ("PageTables", m.pagetables * p), ("SecPageTables", 0),
        ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
        ("CommitLimit", m.commit_limit * p), ("Committed_AS", m.committed * p),
        ("VmallocTotal", VMALLOC_TOTAL_KB), ("VmallocUsed", m.vmalloc_used * p), ("VmallocChunk", 0),
        ("Percpu", m.percpu * p),
        ("AnonHugePages", m.anon_thp * p), ("ShmemHugePages", 0), ("ShmemPmdMapped", 0), ("FileHugePages", 0),
        ("FilePmdMapped", 0), ("Balloon", 0),
    )
    tail = (("Hugepagesize", HPAGE_KB), ("Hugetlb", m.hugetlb * p),
            ("DirectMap4k", k4), ("DirectMap2M", m2), ("DirectMap1G", g1))
    out = [f"{name + ':':<16}{v:>8} kB\n" for name, v in rows]
    # hugetlb_report_meminfo(): the page counts have no unit ("%5lu" after the label)
    # (no surplus pages in the model: Surp is 0)
    out += [f"HugePages_Total:   {m.huge_total:>5}\n", f"HugePages_Free:    {m.huge_free:>5}\n",
            f"HugePages_Rsvd:    {m.huge_rsvd:>5}\n", f"HugePages_Surp:    {0:>5}\n"]
    out += [f"{name + ':':<16}{v:>8} kB\n" for name, v in tail]
    return "".join(out).encode()


# -- event counters (vmstat, and the disk interrupts that follow I/O) -------------------

PGPGOUT_KB_PER_S = 2  # journal and log writes of an idle server


def _io_kb(k: Kernel) -> tuple[int, int]:
    """pgpgin/pgpgout (kB): file pages came from disk once; writes trickle."""
    st = _state(k)
    pgpgin = st.monotonic("pgpgin", k.mem.nr_flag[M.PG_FILE] * PAGE_KB)
    pgpgout = st.monotonic("pgpgout", k.now * PGPGOUT_KB_PER_S // NSEC)
    return pgpgin, pgpgout


# -- CPU time and interrupt counts ------------------------------------------------------


def cpu_loc(cpu: CPU, hz: int) -> int:
    """LOC: one tick per jiffy while the CPU is busy; NO_HZ stops the tick
    when idle, where timers and RCU still wake it ~1/20 as often."""
    busy = cpu.user + cpu.nice + cpu.system + cpu.irq + cpu.softirq
    return (busy * hz + (cpu.idle + cpu.iowait) * hz // 20) // NSEC


@dataclass(frozen=True, slots=True)
class IrqLine:
    """One IRQ with a handler, as /proc/interrupts prints it."""
    irq: int
    chip: str
    hwirq: int
    level: str | None  # "Edge"/"Level" on GENERIC_IRQ_SHOW_LEVEL arches (not x86)
    flow: str | None   # the flow handler name ("edge", "fasteoi") when set
    action: str
    boot: int = 0      # count at boot (probing)
    milli_hz: int = 0  # steady rate, events per 1000 s
    kind: str = ""     # "timer" (per-CPU tick), "disk", "net_rx", "net_tx": extra events


_MSIX = "PCI-MSIX-0000:00:0{}.0".format
# The reference VM's devices: ACPI GED, a serial console, virtio balloon (0),
# block (1), net (2), vsock (3) and input (4), an MSI-X vector per queue.
X86_IRQS = (
    IrqLine(24, "IO-APIC", 5, None, "edge", "ACPI:Ged", boot=1),
    IrqLine(25, "IO-APIC", 6, None, "edge", "ACPI:Ged", boot=1),
    IrqLine(26, "IO-APIC", 4, None, "edge", "ttyS0", boot=15),
    IrqLine(28, _MSIX(1), 0, None, "edge", "virtio0-config"),
    IrqLine(29, _MSIX(1), 1, None, "edge", "virtio0-inflate"),
    IrqLine(30, _MSIX(1), 2, None, "edge", "virtio0-deflate"),
    IrqLine(31, _MSIX(1), 3, None, "edge", "virtio0-stats", milli_hz=200),
    IrqLine(32, _MSIX(1), 4, None, "edge", "virtio0-reporting_vq", milli_hz=16),
    IrqLine(33, _MSIX(5), 0, None, "edge", "virtio4-config"),
    IrqLine(34, _MSIX(5), 1, None, "edge", "virtio4-input", milli_hz=18),
    IrqLine(35, _MSIX(2), 0, None, "edge", "virtio1-config", boot=1),
    IrqLine(36, _MSIX(2), 1, None, "edge", "virtio1-req.0", boot=2000, milli_hz=1000, kind="disk"),
    IrqLine(37, _MSIX(3), 0, None, "edge", "virtio2-config"),
    IrqLine(38, _MSIX(3), 1, None, "edge", "virtio2-input.0", milli_hz=56, kind="net_rx"),
    IrqLine(39, _MSIX(3), 2, None, "edge", "virtio2-output.0", milli_hz=46, kind="net_tx"),
    IrqLine(40, _MSIX(4), 0, None, "edge", "virtio3-config"),
    IrqLine(41, _MSIX(4), 1, None, "edge", "virtio3-rx", milli_hz=450),
    IrqLine(42, _MSIX(4), 2, None, "edge", "virtio3-tx", milli_hz=1200),
    IrqLine(43, _MSIX(4), 3, None, "edge", "virtio3-event", boot=1),
)
# QEMU "virt" machines [source, not checked on hardware]: the per-CPU timer is an IRQ.
ARM64_IRQS = (
    IrqLine(11, "GICv3", 27, "Level", None, "arch_timer", kind="timer"),
    IrqLine(13, "GICv3", 33, "Level", None, "uart-pl011", boot=15),
    IrqLine(36, "GICv3", 79, "Edge", None, "virtio0", boot=2000, milli_hz=1000, kind="disk"),
    IrqLine(37, "GICv3", 78, "Edge", None, "virtio1", milli_hz=1650, kind="net_rx"),
)
RISCV_IRQS = (
    IrqLine(1, "SiFive PLIC", 8, "Edge", None, "virtio0", boot=2000, milli_hz=1000, kind="disk"),
    IrqLine(2, "SiFive PLIC", 7, "Edge", None, "virtio1", milli_hz=1650, kind="net_rx"),
    IrqLine(5, "RISC-V INTC", 5, "Edge", None, "riscv-timer", kind="timer"),
    IrqLine(10, "SiFive PLIC", 10, "Edge", None, "ttyS0", boot=15),
)
DEVICE_IRQS = {"x86": X86_IRQS, "arm64": ARM64_IRQS, "riscv": RISCV_IRQS}


@dataclass(frozen=True, slots=True)
class ArchRow:
    """A counter without an IRQ number, printed after the IRQ lines."""
    name: str
    desc: str | None   # None: one machine-wide count, no description (ERR, MIS, Err)
    counter: str = ""  # the per-CPU source, see _arch_counts(); "" is always 0


# arch_show_interrupts() of x86 on a KVM guest without MCE (spec §20).
X86_ARCH_ROWS = (
    ArchRow("NMI", "Non-maskable interrupts"), ArchRow("LOC", "Local timer interrupts", "loc"),
    ArchRow("SPU", "Spurious interrupts"), ArchRow("PMI", "Performance monitoring interrupts"),
    ArchRow("IWI", "IRQ work interrupts"), ArchRow("RTR", "APIC ICR read retries"),
    ArchRow("RES", "Rescheduling interrupts", "res"), ArchRow("CAL", "Function call interrupts", "cal"),
    ArchRow("TLB", "TLB shootdowns", "tlb"), ArchRow("TRM", "Thermal event interrupts"),
    ArchRow("HYP", "Hypervisor callback interrupts", "hyp"), ArchRow("ERR", None), ArchRow("MIS", None),
    ArchRow("PIN", "Posted-interrupt notification event"), ArchRow("NPI", "Nested posted-interrupt event"),
    ArchRow("PIW", "Posted-interrupt wakeup event"),
)
# arm64 and riscv IPI lists of 6.18 [source]; arm64 also prints Err.
ARM64_ARCH_ROWS = (
    ArchRow("IPI0", "Rescheduling interrupts", "res"), ArchRow("IPI1", "Function call interrupts", "cal"),
    ArchRow("IPI2", "CPU stop interrupts"), ArchRow("IPI3", "CPU stop NMIs"),
    ArchRow("IPI4", "Timer broadcast interrupts"), ArchRow("IPI5", "IRQ work interrupts"),
    ArchRow("IPI6", "CPU backtrace interrupts"), ArchRow("IPI7", "KGDB roundup interrupts"),
    ArchRow("Err", None),
)
RISCV_ARCH_ROWS = (
    ArchRow("IPI0", "Rescheduling interrupts", "res"), ArchRow("IPI1", "Function call interrupts", "cal"),
    ArchRow("IPI2", "CPU stop interrupts"), ArchRow("IPI3", "CPU stop (for crash dump) interrupts"),
    ArchRow("IPI4", "IRQ work interrupts"), ArchRow("IPI5", "Timer broadcast interrupts"),
    ArchRow("IPI6", "CPU backtrace interrupts"), ArchRow("IPI7", "KGDB roundup interrupts"),
)
ARCH_ROWS = {"x86": X86_ARCH_ROWS, "arm64": ARM64_ARCH_ROWS, "riscv": RISCV_ARCH_ROWS}


@lru_cache(maxsize=16)
def nr_irqs(arch: str, ncpu: int) -> int:
    """x86 arch_probe_nr_irqs(): gsi_top (one 24-pin IO-APIC, no legacy PIC)
    + 8 per CPU + 16 MSI vectors per GSI: 424 at 2 CPUs, as on the VM.
    Sparse-IRQ arches: the highest allocated IRQ + 1, at least NR_IRQS=64."""
    if arch == "x86":
        gsi_top = 24
        return min(gsi_top + 8 * ncpu + 16 * gsi_top, 256 * ncpu)
    return max(64, max(line.irq for line in DEVICE_IRQS[arch]) + 1)


def irq_prec(n: int) -> int:
    """Width of the IRQ-number column: digits of nr_irqs, at least 3."""
    prec, j = 3, 1000
    while j <= n and prec < 10:
        prec += 1
        j *= 10
    return prec


@dataclass(frozen=True, slots=True)
class IrqSnapshot:
    devices: list[tuple[IrqLine, list[int]]]    # per-CPU counts of each IRQ line
    arch: list[tuple[ArchRow, list[int] | int]]  # per-CPU counts, or one count
    loc: list[int]                               # local timer ticks per CPU
    nr_irqs: int

    @property
    def total(self) -> int:
        """The first number of /proc/stat's intr line: IRQs plus arch counters."""
        n = sum(sum(c) for _, c in self.devices)
        return n + sum(c if isinstance(c, int) else sum(c) for _, c in self.arch)

    def device_total(self, kind: str) -> int:
        return sum(sum(c) for line, c in self.devices if line.kind == kind)


def _arch_counts(k: Kernel, row: ArchRow, loc: list[int]) -> list[int] | int:
    cpus = k.sched.cpus
    if row.desc is None:
        return 0  # irq_err_count / irq_mis_count
    src = row.counter
    if src == "loc":
        return loc
    if src == "tlb":  # flush IPIs received (seed-mechanisms §1.4)
        return [c.irq_tlb_count for c in cpus]
    if src == "cal":  # flush IPIs come through the call-function vector, plus other calls
        return [c.irq_call_count + n // 16 for c, n in zip(cpus, loc)]
    if src == "res":  # wakeups of tasks queued on another CPU
        return [c.irq_resched_count + c.nr_switches // 256 for c in cpus]
    if src == "hyp":  # hypervisor callbacks: one every two minutes or so
        return [k.now // (128 * NSEC)] * len(cpus)
    return [0] * len(cpus)


def irq_snapshot(k: Kernel) -> IrqSnapshot:
    """Every interrupt count at this instant: deterministic functions of the
    clock, the CPUs' times and the model's IPI counters (monotonic)."""
    cfg = k.config
    ncpu = cfg.nr_cpus
    loc = [cpu_loc(c, cfg.hz) for c in k.sched.cpus]
    pgpgin, pgpgout = _io_kb(k)
    devices = []
    for line in DEVICE_IRQS[cfg.arch]:
        if line.kind == "timer":
            devices.append((line, loc))
            continue
        n = line.boot + k.now * line.milli_hz // (1000 * NSEC)
        if line.kind == "disk":  # one request per 128 kB read, 32 kB written
            n += pgpgin // 128 + pgpgout // 32
        counts = [0] * ncpu
        counts[line.irq % ncpu] = n  # each vector has one target CPU
        devices.append((line, counts))
    arch = [(row, _arch_counts(k, row, loc)) for row in ARCH_ROWS[cfg.arch]]
    if cfg.arch != "x86":  # the timer is a device IRQ there
        arch = [(r, c) for r, c in arch if r.counter != "loc"]
    return IrqSnapshot(devices, arch, loc, nr_irqs(cfg.arch, ncpu))


# -- /proc/stat, uptime, loadavg ------------------------------------------------------------


@lru_cache(maxsize=64)
def _zeros(n: int) -> str:
    """The runs of ' 0' that make up most of the intr line."""
    return " 0" * n


def _intr_line(s: IrqSnapshot) -> str:
    parts = [f"intr {s.total}"]
    pos = 0
    for line, counts in s.devices:  # ascending IRQ numbers
        parts.append(_zeros(line.irq - pos))
        parts.append(f" {sum(counts)}")
        pos = line.irq + 1
    parts.append(_zeros(s.nr_irqs - pos))
    return "".join(parts)


def _softirqs(s: IrqSnapshot) -> list[int]:
    """HI TIMER NET_TX NET_RX BLOCK IRQ_POLL TASKLET SCHED HRTIMER RCU: timer,
    scheduler and RCU softirqs ride on the tick; block and net follow their IRQs."""
    ticks = sum(s.loc)
    return [0, ticks // 3, s.device_total("net_tx") // 100, s.device_total("net_rx") * 2,
            s.device_total("disk"), 0, 0, ticks * 2 // 3, 0, ticks // 3]


def _cpu_row(c: CPU) -> list[int]:
    """The 7 modelled columns in ns; steal, guest and guest_nice are 0."""
    return [c.user, c.nice, c.system, c.idle, c.iowait, c.irq, c.softirq]


def stat(ctx: Ctx) -> bytes:
    k = ctx.kernel
    cpus = k.sched.cpus
    rows = [_cpu_row(c) for c in cpus]
    # The aggregate converts the summed ns, so it may exceed the per-CPU sum.
    agg = [sum(col) for col in zip(*rows)]
    lines = ["cpu  " + " ".join(str(_ticks(v)) for v in agg) + " 0 0 0"]
    lines += [f"cpu{c.id} " + " ".join(str(_ticks(v)) for v in r) + " 0 0 0" for c, r in zip(cpus, rows)]
    irqs = irq_snapshot(k)
    lines.append(_intr_line(irqs))
    running, blocked = k.sched.nr_running(), k.sched.nr_uninterruptible()
    soft = _softirqs(irqs)
    lines += [f"ctxt {sum(c.nr_switches for c in cpus)}", f"btime {k.btime}", f"processes {k.nr_forks}",
              f"procs_running {running}", f"procs_blocked {blocked}",
              f"softirq {sum(soft)} " + " ".join(map(str, soft))]
    return ("\n".join(lines) + "\n").encode()


def uptime(ctx: Ctx) -> bytes:
    """Both numbers truncated to 1/100 s; idle sums all CPUs (iowait excluded)."""
    k = ctx.kernel
    up = _ticks(k.now)
    idle = _ticks(sum(c.idle for c in k.sched.cpus))
    return f"{up // 100}.{up % 100:02d} {idle // 100}.{idle % 100:02d}\n".encode()


FSHIFT = 11
FIXED_1 = 1 << FSHIFT


def _load(avenrun: int) -> str:
    """LOAD_INT.LOAD_FRAC of avenrun + FIXED_1/200 (rounds to 1/100)."""
    v = avenrun + FIXED_1 // 200
    return f"{v >> FSHIFT}.{((v & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"


def loadavg(ctx: Ctx) -> bytes:
    k = ctx.kernel
    a = k.avenrun
    running = k.sched.nr_running()
    return f"{_load(a[0])} {_load(a[1])} {_load(a[2])} {running}/{k.nr_threads()} {k.last_pid}\n".encode()


# -- /proc/interrupts ---------------------------------------------------------------------


@lru_cache(maxsize=16)
def _interrupts_header(ncpu: int, prec: int) -> str:
    return " " * (prec + 8) + "".join(f"CPU{i:<8}" for i in range(ncpu)) + "\n"


@lru_cache(maxsize=32)
def _counts_fmt(ncpu: int, before: bool) -> str:
    """' %10u' per CPU on IRQ lines, '%10u ' on arch lines."""
    return (" %10d" if before else "%10d ") * ncpu


@lru_cache(maxsize=512)
def _device_parts(line: IrqLine, prec: int) -> tuple[str, str]:
    """show_interrupts() for one descriptor (kernel/irq/proc.c), around the
    per-CPU counts: the IRQ number, then chip, hwirq, level, flow and action."""
    tail = f" {line.chip:>8} {line.hwirq:>{prec}}"
    if line.level is not None:
        tail += f" {line.level:<8}"
    if line.flow is not None:
        tail += f"-{line.flow:<8}"
    return f"{line.irq:>{prec}}:", f"{tail}  {line.action}\n"


@lru_cache(maxsize=512)
def _arch_parts(arch: str, row: ArchRow, prec: int) -> tuple[str, str]:
    """The label and description around an arch line's counts."""
    if row.desc is None:  # ERR/MIS/Err: "%*s: %10u", one machine-wide count
        return f"{row.name:>{prec}}: ", "\n"
    if arch == "x86":  # "%*s: " + "%10u " per CPU + "  desc"
        return f"{row.name:>{prec}}: ", f"  {row.desc}\n"
    # arm64/riscv: "%*s%u:%s" (IPI, number, a space when prec >= 4) then counts
    label = f"{row.name[:3]:>{prec - 1}}{row.name[3:]}:" + (" " if prec >= 4 else "")
    return label, ("      " if arch == "arm64" else " ") + f"{row.desc}\n"


def _device_line(line: IrqLine, counts: list[int], prec: int) -> str:
    head, tail = _device_parts(line, prec)
    return head + _counts_fmt(len(counts), True) % tuple(counts) + tail


def _arch_line(arch: str, row: ArchRow, counts: list[int] | int, prec: int) -> str:
    head, tail = _arch_parts(arch, row, prec)
    if isinstance(counts, int):
        return f"{head}{counts:>10}{tail}"
    return head + _counts_fmt(len(counts), False) % tuple(counts) + tail


def interrupts(ctx: Ctx) -> bytes:
    k = ctx.kernel
    arch = k.config.arch
    s = irq_snapshot(k)
    prec = irq_prec(s.nr_irqs)
    out = [_interrupts_header(k.config.nr_cpus, prec)]
    out += [_device_line(line, counts, prec) for line, counts in s.devices]
    out += [_arch_line(arch, row, counts, prec) for row, counts in s.arch]
    return "".join(out).encode()


# -- /proc/vmstat ---------------------------------------------------------------------------

# The 6.18 key set and order of the reference VM (no CONFIG_DEBUG_TLBFLUSH, so
# no nr_tlb_* items); items not derived below print 0.
VMSTAT_KEYS = tuple("""
nr_free_pages nr_free_pages_blocks nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file
nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_zspages nr_free_cma
numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other nr_inactive_anon
nr_active_anon nr_inactive_file nr_active_file nr_unevictable nr_slab_reclaimable
nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes workingset_refault_anon
workingset_refault_file workingset_activate_anon workingset_activate_file workingset_restore_anon
workingset_restore_file workingset_nodereclaim nr_anon_pages nr_mapped nr_file_pages nr_dirty
nr_writeback nr_shmem nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages nr_file_pmdmapped
nr_anon_transparent_hugepages nr_vmscan_write nr_vmscan_immediate_reclaim nr_dirtied nr_written
nr_throttled_written nr_kernel_misc_reclaimable nr_foll_pin_acquired nr_foll_pin_released
nr_kernel_stack nr_page_table_pages nr_sec_page_table_pages nr_iommu_pages nr_swapcached
pgpromote_success pgpromote_candidate pgpromote_candidate_nrl pgdemote_kswapd pgdemote_direct
pgdemote_khugepaged pgdemote_proactive nr_hugetlb nr_balloon_pages nr_kernel_file_pages
nr_dirty_threshold nr_dirty_background_threshold nr_memmap_pages nr_memmap_boot_pages pgpgin pgpgout
pswpin pswpout pgalloc_dma pgalloc_dma32 pgalloc_normal pgalloc_movable pgalloc_device
allocstall_dma allocstall_dma32 allocstall_normal allocstall_movable allocstall_device pgskip_dma
pgskip_dma32 pgskip_normal pgskip_movable pgskip_device pgfree pgactivate pgdeactivate pglazyfree
pgfault pgmajfault pglazyfreed pgrefill pgreuse pgsteal_kswapd pgsteal_direct pgsteal_khugepaged
pgsteal_proactive pgscan_kswapd pgscan_direct pgscan_khugepaged pgscan_proactive
pgscan_direct_throttle pgscan_anon pgscan_file pgsteal_anon pgsteal_file zone_reclaim_success
zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal kswapd_low_wmark_hit_quickly
kswapd_high_wmark_hit_quickly pageoutrun pgrotated drop_pagecache drop_slab oom_kill
numa_pte_updates numa_huge_pte_updates numa_hint_faults numa_hint_faults_local numa_pages_migrated
pgmigrate_success pgmigrate_fail thp_migration_success thp_migration_fail thp_migration_split
compact_migrate_scanned compact_free_scanned compact_isolated compact_stall compact_fail
compact_success compact_daemon_wake compact_daemon_migrate_scanned compact_daemon_free_scanned
htlb_buddy_alloc_success htlb_buddy_alloc_fail unevictable_pgs_culled unevictable_pgs_scanned
unevictable_pgs_rescued unevictable_pgs_mlocked unevictable_pgs_munlocked unevictable_pgs_cleared
unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback thp_fault_fallback_charge
thp_collapse_alloc thp_collapse_alloc_failed thp_file_alloc thp_file_fallback
thp_file_fallback_charge thp_file_mapped thp_split_page thp_split_page_failed
thp_deferred_split_page thp_underused_split_page thp_split_pmd thp_scan_exceed_none_pte
thp_scan_exceed_swap_pte thp_scan_exceed_share_pte thp_split_pud thp_zero_page_alloc
thp_zero_page_alloc_failed thp_swpout thp_swpout_fallback balloon_inflate balloon_deflate
balloon_migrate swap_ra swap_ra_hit swpin_zero swpout_zero ksm_swpin_copy cow_ksm zswpin zswpout
zswpwb direct_map_level2_splits direct_map_level3_splits direct_map_level2_collapses
direct_map_level3_collapses nr_unstable
""".split())


def vmstat_values(k: Kernel) -> dict[str, int]:
    """The vmstat items the model determines (the rest are 0)."""
    m = mem_snapshot(k)
    st = _state(k)
    pgfault, pgmajfault = st.faults(k)
    pgpgin, pgpgout = _io_kb(k)
    # The model counts no allocations: estimate them as the frames in use plus
    # one per fault (exec's populated frames come without faults); whatever is
    # not in use any more was freed.
    in_use = m.anon + m.anon_unmapped + m.file + m.shmem
    pgalloc = st.monotonic("pgalloc", pgfault + in_use)
    pgfree = st.monotonic("pgfree", pgalloc - in_use)
    # global_dirtyable_memory(): free + file LRU, less the reserves
    dirtyable = max(m.free + m.active_file + m.inactive_file - m.zones.totalreserve, 0)
    lru = {"inactive_anon": m.inactive_anon, "active_anon": m.active_anon,
           "inactive_file": m.inactive_file, "active_file": m.active_file, "unevictable": m.unevictable}
    v = {f"nr_zone_{name}": n for name, n in lru.items()}
    v.update({f"nr_{name}": n for name, n in lru.items()})
    v.update({
        "nr_free_pages": m.free,
        # free pages in wholly free pageblocks: most of them, in 512-page units
        "nr_free_pages_blocks": m.free * 7 // 8 // PAGEBLOCK_PAGES * PAGEBLOCK_PAGES,
        "nr_mlock": m.mlocked, "numa_hit": pgalloc, "numa_local": pgalloc,
        "nr_slab_reclaimable": m.slab_reclaimable, "nr_slab_unreclaimable": m.slab_unreclaimable,
        "nr_anon_pages": m.anon, "nr_mapped": m.mapped, "nr_file_pages": m.cached + m.buffers,
        "nr_shmem": m.shmem, "nr_kernel_stack": m.kernel_stack_kb, "nr_page_table_pages": m.pagetables,
        "nr_dirty_threshold": dirtyable * DIRTY_RATIO // 100,
        "nr_dirty_background_threshold": dirtyable * DIRTY_BACKGROUND_RATIO // 100,
        "nr_memmap_boot_pages": k.mem.nr_pages // 64,  # 64-byte struct page per frame
        "pgpgin": pgpgin, "pgpgout": pgpgout,
        "pswpin": st.monotonic("pswpin", k.mem.swap.pswpin), "pswpout": st.monotonic("pswpout", k.mem.swap.pswpout),
        "pgalloc_normal" if m.zones.managed[2] else "pgalloc_dma32": pgalloc,
        "pgfree": pgfree, "pgfault": pgfault, "pgmajfault": pgmajfault,
    })
    return v


def vmstat(ctx: Ctx) -> bytes:
    v = vmstat_values(ctx.kernel)
    return "".join([f"{key} {v.get(key, 0)}\n" for key in VMSTAT_KEYS]).encode()


# -- small files ------------------------------------------------------------------------------

def version(ctx: Ctx) -> bytes:
    """linux_proc_banner, resolved with osrelease at boot (procsim/utsname.py)."""
    return f"{ctx.kernel.config.version}\n".encode()


def osrelease(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.config.osrelease}\n".encode()


def pid_max(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.config.pid_max}\n".encode()


def threads_max(ctx: Ctx) -> bytes:
    """kernel.threads-max: the limit fork() enforces (Kernel.max_threads)."""
    return f"{ctx.kernel.max_threads}\n".encode()


@lru_cache(maxsize=16)
def _cpu_list(ncpu: int) -> bytes:
    return f"{list_str((1 << ncpu) - 1)}\n".encode()


def cpu_online(ctx: Ctx) -> bytes:
    return _cpu_list(ctx.kernel.config.nr_cpus)


def cpu_possible(ctx: Ctx) -> bytes:
    """Every possible CPU is online: no hotplug in the model."""
    return _cpu_list(ctx.kernel.config.nr_cpus)

