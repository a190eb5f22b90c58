"""Machine-wide files: meminfo, stat, uptime, loadavg, cpuinfo, interrupts,
vmstat, version and the small sysctl / sysfs files (spec §15–§20).

Every value comes from the kernel model; nothing here walks pages, so each
render costs O(processes) at most.
"""

from __future__ import annotations

from functools import lru_cache

from procsim.bitmap import list_str
from procsim.kernel import Kernel
from procsim.mm import memory as M
from procsim.procfs.context import Ctx
from procsim.sched import NSEC

TICK_NS = 10_000_000  # USER_HZ
NR_IRQS = 424
# Fixed kernel memory, in pages, that meminfo reports besides user memory.
SLAB_RECLAIMABLE = 38441
SLAB_UNRECLAIMABLE = 6485
KERNEL_STACK_KB_PER_THREAD = 16
VMALLOC_TOTAL_KB = 34359738367


def _ticks(ns: int) -> int:
    return ns // TICK_NS


# -- meminfo --------------------------------------------------------------------

def mem_counters(k: Kernel) -> dict[str, int]:
    """meminfo values in kB. Frames not owned by user memory, the page cache or
    the fixed kernel pools are free; MemTotal excludes the reserved frames."""
    mem = k.mem
    kb = 4
    total = (mem.nr_pages - mem.first_free) * kb
    anon = mem.nr_flag[M.PG_ANON] * kb
    shmem = mem.nr_flag[M.PG_SHMEM] * kb
    file = mem.nr_flag[M.PG_FILE] * kb
    pgtables = sum(g.mm.pgtable.pgtables_bytes() for g in k.groups.values() if g.mm) >> 10
    kstack = k.nr_threads() * KERNEL_STACK_KB_PER_THREAD
    sreclaim = min(SLAB_RECLAIMABLE * kb, total // 16)
    sunreclaim = min(SLAB_UNRECLAIMABLE * kb, total // 64)
    free = mem.nr_free * kb - sreclaim - sunreclaim - kstack - pgtables
    free = max(free, 0)
    cached = file + shmem
    low_wmark = total // 256
    available = free - low_wmark + cached - min(cached // 2, low_wmark) + sreclaim - min(sreclaim // 2, low_wmark)
    mlocked = sum(g.mm.locked_vm for g in k.groups.values() if g.mm) * kb
    committed = sum(g.mm.total_vm for g in k.groups.values() if g.mm) * kb
    swap = k.config.swap_bytes >> 10
    # LRU split: a fixed share of each kind is active, deterministic and summing exactly.
    active_anon, active_file = (anon + shmem) // 4, file * 2 // 3
    return {
        "MemTotal": total, "MemFree": free, "MemAvailable": max(available, 0), "Buffers": 0,
        "Cached": cached, "SwapCached": 0,
        "Active": active_anon + active_file, "Inactive": anon + shmem - active_anon + file - active_file,
        "Active(anon)": active_anon, "Inactive(anon)": anon + shmem - active_anon,
        "Active(file)": active_file, "Inactive(file)": file - active_file,
        "Unevictable": mlocked, "Mlocked": mlocked, "SwapTotal": swap, "SwapFree": swap,
        "Zswap": 0, "Zswapped": 0, "Dirty": 0, "Writeback": 0,
        "AnonPages": anon, "Mapped": mem.nr_mapped_file * kb, "Shmem": shmem,
        "KReclaimable": sreclaim, "Slab": sreclaim + sunreclaim, "SReclaimable": sreclaim,
        "SUnreclaim": sunreclaim, "KernelStack": kstack, "PageTables": pgtables, "SecPageTables": 0,
        "NFS_Unstable": 0, "Bounce": 0, "WritebackTmp": 0,
        "CommitLimit": total // 2 + swap, "Committed_AS": committed,
        "VmallocTotal": VMALLOC_TOTAL_KB, "VmallocUsed": 0, "VmallocChunk": 0, "Percpu": 0,
        "AnonHugePages": 0, "ShmemHugePages": 0, "ShmemPmdMapped": 0, "FileHugePages": 0,
        "FilePmdMapped": 0, "Balloon": 0,
        "HugePages_Total": 0, "HugePages_Free": 0, "HugePages_Rsvd": 0, "HugePages_Surp": 0,
        "Hugepagesize": 2048, "Hugetlb": 0,
        "DirectMap4k": 0, "DirectMap2M": 0, "DirectMap1G": 0,
    }


def _direct_map(total_kb: int) -> tuple[int, int, int]:
    gb = total_kb // (1 << 20)
    rest = total_kb - gb * (1 << 20)
    return 16384 + rest % 2048, rest - rest % 2048, gb * (1 << 20)


def meminfo(ctx: Ctx) -> bytes:
    m = mem_counters(ctx.kernel)
    m["DirectMap4k"], m["DirectMap2M"], m["DirectMap1G"] = _direct_map(m["MemTotal"])
    out = []
    for key, v in m.items():
        if key.startswith("HugePages_"):
            out.append(f"{key + ':':<19}{v:>5}\n")  # no unit, width 5
        else:
            out.append(f"{key + ':':<16}{v:>8} kB\n")
    return "".join(out).encode()


# -- /proc/stat, uptime, loadavg ----------------------------------------------------

def _irq_counts(k: Kernel) -> tuple[list[int], int]:
    """Per-IRQ counts that move with time, and the arch-counter total."""
    secs = k.now // NSEC
    loc = sum(cpu_loc(k, c.id) for c in k.sched.cpus)
    arch = loc + sum(c.irq_call_count + c.irq_resched_count for c in k.sched.cpus)
    return [secs // 10, secs // 3, secs * 7], arch


def cpu_loc(k: Kernel, cpu: int) -> int:
    """Local timer interrupts: a tick per jiffy while busy, fewer when idle (NO_HZ)."""
    c = k.sched.cpus[cpu]
    busy = c.user + c.nice + c.system
    return (busy * k.config.hz + c.idle * k.config.hz // 20) // NSEC


@lru_cache(maxsize=8)
def _zero_irqs(n: int) -> str:
    return " 0" * n


def stat(ctx: Ctx) -> bytes:
    k = ctx.kernel
    cpus = k.sched.cpus

    def row(c) -> list[int]:
        return [_ticks(c.user), _ticks(c.nice), _ticks(c.system), _ticks(c.idle), _ticks(c.iowait),
                _ticks(c.irq), _ticks(c.softirq), 0, 0, 0]

    rows = [row(c) for c in cpus]
    total = [sum(col) for col in zip(*rows)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{c.id} " + " ".join(map(str, r)) for c, r in zip(cpus, rows)]
    irqs, arch = _irq_counts(k)
    intr_total = sum(irqs) + arch
    head = f"intr {intr_total} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 " + " ".join(map(str, irqs))
    lines.append(head + _zero_irqs(NR_IRQS - 26 - len(irqs)))
    running = sum(1 for t in k.tasks.values() if t.state == "R" and not t.dead)
    blocked = sum(1 for t in k.tasks.values() if t.state == "D" and not t.dead)
    secs = k.now // NSEC
    timer = sum(cpu_loc(k, c.id) for c in cpus)
    sched = sum(c.nr_switches for c in cpus) // 4
    rcu = secs * len(cpus) * 5
    soft = [0, timer, 0, secs, secs // 2, 0, 0, sched, 0, rcu]
    lines += [f"ctxt {sum(c.nr_switches for c in cpus)}", f"btime {k.btime}", f"processes {k.nr_forks}",
              f"procs_running {max(running, 1)}", f"procs_blocked {blocked}",
              f"softirq {sum(soft)} " + " ".join(map(str, soft))]
    return ("\n".join(lines) + "\n").encode()


def uptime(ctx: Ctx) -> bytes:
    k = ctx.kernel
    up = k.now // TICK_NS
    idle = sum(c.idle for c in k.sched.cpus) // TICK_NS
    return f"{up // 100}.{up % 100:02d} {idle // 100}.{idle % 100:02d}\n".encode()


def _load(v: int) -> str:
    v += 2048 // 200  # round to 1/100 as LOAD_INT/LOAD_FRAC do
    return f"{v >> 11}.{((v & 2047) * 100) >> 11:02d}"


def loadavg(ctx: Ctx) -> bytes:
    k = ctx.kernel
    a = k.avenrun
    running = sum(1 for t in k.tasks.values() if t.state == "R" and not t.dead)
    return f"{_load(a[0])} {_load(a[1])} {_load(a[2])} {max(running, 1)}/{k.nr_threads()} {k.last_pid}\n".encode()


# -- cpuinfo, interrupts ------------------------------------------------------------

X86_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
             "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
             "xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid "
             "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor "
             "lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall "
             "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni "
             "xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr arat umip vaes vpclmulqdq rdpid fsrm pku ospke")
X86_BUGS = "sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso spectre_v2_user"


def _label(name: str) -> str:
    return name + ("\t\t" if len(name) < 8 else "\t") + ": "


def cpuinfo(ctx: Ctx) -> bytes:
    cfg = ctx.kernel.config
    n = cfg.nr_cpus
    blocks = []
    for cpu in range(n):
        if cfg.arch == "x86":
            fields = [("processor", cpu), ("vendor_id", "AuthenticAMD"), ("cpu family", 25), ("model", 1),
                      ("model name", cfg.model_name), ("stepping", 1), ("microcode", "0x1000065"),
                      ("cpu MHz", f"{cfg.cpu_mhz:.3f}"), ("cache size", "512 KB"), ("physical id", 0),
                      ("siblings", n), ("core id", cpu), ("cpu cores", n), ("apicid", cpu),
                      ("initial apicid", cpu), ("fpu", "yes"), ("fpu_exception", "yes"), ("cpuid level", 16),
                      ("wp", "yes"), ("flags", X86_FLAGS), ("bugs", X86_BUGS),
                      ("bogomips", f"{cfg.cpu_mhz * 2:.2f}"), ("TLB size", "2560 4K pages"),
                      ("clflush size", 64), ("cache_alignment", 64),
                      ("address sizes", "48 bits physical, 48 bits virtual")]
            body = "".join(_label(k) + str(v) + "\n" for k, v in fields)
            blocks.append(body + "power management:\n\n")
        else:
            fields = [("processor", cpu), ("BogoMIPS", "50.00"),
                      ("Features", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics cpuid"),
                      ("CPU implementer", "0x41"), ("CPU architecture", 8), ("CPU variant", "0x3"),
                      ("CPU part", "0xd0c"), ("CPU revision", 1)] if cfg.arch == "arm64" else [
                      ("processor", cpu), ("hart", cpu), ("isa", "rv64imafdc_zicntr_zicsr_zifencei_zihpm"),
                      ("mmu", "sv48"), ("uarch", "sifive,u74-mc")]
            blocks.append("".join(_label(k) + str(v) + "\n" for k, v in fields) + "\n")
    return "".join(blocks).encode()


# (irq, chip, hwirq, flow, action) rows of a small virtio machine
IRQ_ROWS = ((24, "IO-APIC", 5, "edge", "ACPI:Ged"), (26, "IO-APIC", 4, "edge", "ttyS0"),
            (28, "PCI-MSIX-0000:00:01.0", 0, "edge", "virtio0-config"),
            (29, "PCI-MSIX-0000:00:01.0", 1, "edge", "virtio0-requests"))
X86_ARCH_ROWS = (("NMI", "Non-maskable interrupts"), ("LOC", "Local timer interrupts"),
                 ("SPU", "Spurious interrupts"), ("PMI", "Performance monitoring interrupts"),
                 ("IWI", "IRQ work interrupts"), ("RTR", "APIC ICR read retries"),
                 ("RES", "Rescheduling interrupts"), ("CAL", "Function call interrupts"),
                 ("TLB", "TLB shootdowns"), ("TRM", "Thermal event interrupts"),
                 ("HYP", "Hypervisor callback interrupts"), ("ERR", None), ("MIS", None),
                 ("PIN", "Posted-interrupt notification event"), ("NPI", "Nested posted-interrupt event"),
                 ("PIW", "Posted-interrupt wakeup event"))


def interrupts(ctx: Ctx) -> bytes:
    k = ctx.kernel
    cpus = k.sched.cpus
    prec = max(3, len(str(NR_IRQS)))
    out = [" " * (prec + 8) + "".join(f"CPU{c.id:<8}" for c in cpus) + "\n"]
    secs = k.now // NSEC
    for i, (irq, chip, hw, flow, action) in enumerate(IRQ_ROWS):
        counts = "".join(f" {(secs * (i + 1) if c.id == i % len(cpus) else 0):>10}" for c in cpus)
        out.append(f"{irq:>{prec}}:{counts} {chip:>8} {hw:>{prec}}-{flow:<8}  {action}\n")
    per_cpu = {
        "LOC": lambda c: cpu_loc(k, c.id), "RES": lambda c: c.irq_resched_count,
        "CAL": lambda c: c.irq_call_count, "TLB": lambda c: c.irq_tlb_count,
    }
    for name, desc in X86_ARCH_ROWS if k.config.arch == "x86" else ():
        if desc is None:
            out.append(f"{name:>{prec}}: {0:>10}\n")
            continue
        fn = per_cpu.get(name, lambda c: 0)
        out.append(f"{name:>{prec}}: " + "".join(f"{fn(c):>10} " for c in cpus) + f"  {desc}\n")
    return "".join(out).encode()


# -- vmstat -------------------------------------------------------------------------

VMSTAT_KEYS = tuple("""nr_free_pages nr_free_pages_blocks nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_zspages nr_free_cma numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes workingset_refault_anon workingset_refault_file workingset_activate_anon workingset_activate_file workingset_restore_anon workingset_restore_file workingset_nodereclaim nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback nr_shmem nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages nr_file_pmdmapped nr_anon_transparent_hugepages nr_vmscan_write nr_vmscan_immediate_reclaim nr_dirtied nr_written nr_throttled_written nr_kernel_misc_reclaimable nr_foll_pin_acquired nr_foll_pin_released nr_kernel_stack nr_page_table_pages nr_sec_page_table_pages nr_iommu_pages nr_swapcached pgpromote_success pgpromote_candidate pgpromote_candidate_nrl pgdemote_kswapd pgdemote_direct pgdemote_khugepaged pgdemote_proactive nr_hugetlb nr_balloon_pages nr_kernel_file_pages nr_dirty_threshold nr_dirty_background_threshold nr_memmap_pages nr_memmap_boot_pages pgpgin pgpgout pswpin pswpout pgalloc_dma pgalloc_dma32 pgalloc_normal pgalloc_movable pgalloc_device allocstall_dma allocstall_dma32 allocstall_normal allocstall_movable allocstall_device pgskip_dma pgskip_dma32 pgskip_normal pgskip_movable pgskip_device pgfree pgactivate pgdeactivate pglazyfree pgfault pgmajfault pglazyfreed pgrefill pgreuse pgsteal_kswapd pgsteal_direct pgsteal_khugepaged pgsteal_proactive pgscan_kswapd pgscan_direct pgscan_khugepaged pgscan_proactive pgscan_direct_throttle pgscan_anon pgscan_file pgsteal_anon pgsteal_file zone_reclaim_success zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal kswapd_low_wmark_hit_quickly kswapd_high_wmark_hit_quickly pageoutrun pgrotated drop_pagecache drop_slab oom_kill numa_pte_updates numa_huge_pte_updates numa_hint_faults numa_hint_faults_local numa_pages_migrated pgmigrate_success pgmigrate_fail thp_migration_success thp_migration_fail thp_migration_split compact_migrate_scanned compact_free_scanned compact_isolated compact_stall compact_fail compact_success compact_daemon_wake compact_daemon_migrate_scanned compact_daemon_free_scanned htlb_buddy_alloc_success htlb_buddy_alloc_fail unevictable_pgs_culled unevictable_pgs_scanned unevictable_pgs_rescued unevictable_pgs_mlocked unevictable_pgs_munlocked unevictable_pgs_cleared unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback thp_fault_fallback_charge thp_collapse_alloc thp_collapse_alloc_failed thp_file_alloc thp_file_fallback thp_file_fallback_charge thp_file_mapped thp_split_page thp_split_page_failed thp_deferred_split_page thp_underused_split_page thp_split_pmd thp_scan_exceed_none_pte thp_scan_exceed_swap_pte thp_scan_exceed_share_pte thp_split_pud thp_zero_page_alloc thp_zero_page_alloc_failed thp_swpout thp_swpout_fallback balloon_inflate balloon_deflate balloon_migrate swap_ra swap_ra_hit swpin_zero swpout_zero ksm_swpin_copy cow_ksm zswpin zswpout zswpwb direct_map_level2_splits direct_map_level3_splits direct_map_level2_collapses direct_map_level3_collapses nr_unstable """.split())


def vmstat(ctx: Ctx) -> bytes:
    k = ctx.kernel
    mem = k.mem
    m = mem_counters(k)
    faults = sum(t.min_flt for t in k.tasks.values()) + sum(g.dead_min_flt for g in k.groups.values())
    vals = {
        "nr_free_pages": m["MemFree"] // 4, "nr_zone_inactive_anon": m["Inactive(anon)"] // 4,
        "nr_zone_active_anon": m["Active(anon)"] // 4, "nr_zone_inactive_file": m["Inactive(file)"] // 4,
        "nr_zone_active_file": m["Active(file)"] // 4, "nr_inactive_anon": m["Inactive(anon)"] // 4,
        "nr_active_anon": m["Active(anon)"] // 4, "nr_inactive_file": m["Inactive(file)"] // 4,
        "nr_active_file": m["Active(file)"] // 4, "nr_mlock": m["Mlocked"] // 4,
        "nr_zone_unevictable": m["Unevictable"] // 4, "nr_unevictable": m["Unevictable"] // 4,
        "nr_slab_reclaimable": m["SReclaimable"] // 4, "nr_slab_unreclaimable": m["SUnreclaim"] // 4,
        "nr_anon_pages": mem.nr_flag[M.PG_ANON], "nr_mapped": mem.nr_mapped_file,
        "nr_file_pages": mem.nr_flag[M.PG_FILE] + mem.nr_flag[M.PG_SHMEM], "nr_shmem": mem.nr_flag[M.PG_SHMEM],
        "nr_kernel_stack": m["KernelStack"], "nr_page_table_pages": m["PageTables"] // 4,
        "pgfault": faults, "pgalloc_normal": faults, "numa_hit": faults, "numa_local": faults,
        "pgpgin": mem.nr_flag[M.PG_FILE] * 4,
    }
    return "".join(f"{key} {vals.get(key, 0)}\n" for key in VMSTAT_KEYS).encode()


# -- small files --------------------------------------------------------------------

def version(ctx: Ctx) -> bytes:
    return (f"Linux version {ctx.kernel.config.osrelease} (procsim@procsim) (gcc (GCC) 12.2.0, "
            f"GNU ld (GNU Binutils) 2.40) #1 SMP PREEMPT_DYNAMIC @0\n").encode()


def osrelease(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.config.osrelease}\n".encode()


def pid_max(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.config.pid_max}\n".encode()


def threads_max(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.max_threads}\n".encode()


def cpu_online(ctx: Ctx) -> bytes:
    return f"{list_str((1 << ctx.kernel.config.nr_cpus) - 1)}\n".encode()


cpu_possible = cpu_online


def thp_enabled(ctx: Ctx) -> bytes:
    return b"always [madvise] never\n"
