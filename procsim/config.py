"""KernelConfig: the compile-time and boot-time knobs of a simulated machine."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from procsim import arch, mm_cpumask, utsname
from procsim.cpu import CpuInfoX86
from procsim.units import PAGE_SIZE

CLOCKS = ("wall", "manual")

GiB = 1 << 30


@dataclass
class KernelConfig:
    arch: str = "x86"  # procsim/arch/
    nr_cpus: int = 8
    mem_bytes: int = 16 * GiB
    # one swap area of this size (0: none); its first page is the header
    swap_bytes: int = 0
    # vm.nr_hugepages at boot: 2 MiB hugetlb pages taken from RAM into the pool
    hugepages: int = 0
    hz: int = 250
    # how mm_cpumask evolves (procsim/mm_cpumask/); None: the architecture's
    # own (x86 lazy_trim, arm64 never_set, riscv never_clear)
    cpumask_model: str | None = None
    # ARCH_WANT_PROC_CPUS_ACTIVE_MM: None means "as the arch selects" (x86 only).
    proc_cpus_active_mm: bool | None = None
    clock: str = "manual"
    seed: int = 0
    hostname: str = "procsim"
    # utsname release and the /proc/version banner ("host": this machine's);
    # None: procsim's own release, or the banner's (procsim/utsname.py)
    osrelease: str | None = None
    version: str | None = None
    pid_max: int | None = None  # None: the boot default, scaled by CPU count as pid_idr_init does
    # kernel.kptr_restrict and kernel.perf_event_paranoid (Debian's defaults):
    # who sees /proc/kallsyms addresses (procsim/kallsyms.py)
    kptr_restrict: int = 0
    perf_event_paranoid: int = 2
    btime: int = 1767225600  # 2026-01-01T00:00:00Z; wall clock mode uses now - uptime
    boot_uptime: float = 3600.0  # seconds already elapsed at mount
    kernel_reserved_bytes: int = 256 << 20
    # the x86 CPU model (procsim/cpu.py; None: amd-epyc on x86) and its
    # overrides (None: the model's own); other arches have a fixed CPU
    cpu: str | None = None
    model_name: str | None = None
    cpu_mhz: float | None = None
    # cpu = "captured": the text of a captured /proc/cpuinfo CPU block (procsim/capture/)
    cpuinfo: str | None = None
    # kernel.threads-max at boot (None: from RAM, as set_max_threads()); a captured machine's own
    threads_max: int | None = None
    # CONFIG_PAGE_MAPCOUNT ("page") or CONFIG_NO_PAGE_MAPCOUNT ("no_page")
    mapcount_model: str = "page"
    # /sys/kernel/mm/transparent_hugepage/enabled and, by size in kB,
    # hugepages-<size>kB/enabled overrides (default: 2048 inherit, others never)
    thp_enabled: str = "madvise"
    thp_sizes: dict = field(default_factory=dict)
    # CONFIG_MEM_SOFT_DIRTY (off on the reference VM: clear_refs 4 does nothing)
    mem_soft_dirty: bool = False
    # protection keys: smaps ProtectionKey lines and cpuinfo "pku ospke";
    # None: as the CPU model has them (on for the reference VM and non-x86)
    pkeys: bool | None = None
    # RSS counters: "tree" (hierarchical per-CPU counter tree, batch 32) or
    # "flat" (the older percpu_counter, batch max(32, 2 * nr_cpus))
    rss_counter: str = "tree"
    # /proc/PID/stat field 24 (rss): "precise" (get_mm_counter_sum, as status
    # and statm) or "approx" (get_mm_rss, the cheaper read of mainline stat)
    stat_rss: str = "precise"
    # OOM victim selection: two passes (approximation ranges prune, precise
    # sums decide) or, False, one exhaustive scan of precise sums
    oom_two_pass: bool = True
    # speculation control (procsim/arch/bugs.py): ssb_mode and spectre_v2_user
    ssb_mode: str = "prctl"
    spectre_v2_user: str = "prctl"
    # boot_cpu_data: what the arch's identify_boot_cpu() found (the x86
    # CpuInfoX86; None on other arches)
    boot_cpu: CpuInfoX86 | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = arch.get(self.arch)  # ValueError: not an architecture
        if not 1 <= self.nr_cpus <= 4096:
            raise ValueError("nr_cpus must be between 1 and 4096")
        if self.mem_bytes < 64 << 20 or self.mem_bytes % PAGE_SIZE:
            raise ValueError("mem_bytes must be a page multiple of at least 64 MiB")
        if isinstance(self.swap_bytes, bool) or not isinstance(self.swap_bytes, int) or self.swap_bytes < 0:
            raise ValueError("swap_bytes must be a non-negative integer")
        if isinstance(self.hugepages, bool) or not isinstance(self.hugepages, int) or self.hugepages < 0:
            raise ValueError("hugepages must be a non-negative integer")
        if self.hugepages and self.hugepages * (2 << 20) > self.mem_bytes - self.kernel_reserved_bytes:
            raise ValueError(f"hugepages: {self.hugepages} x 2 MiB do not fit in the memory left to the kernel")
        if self.cpumask_model is None:
            self.cpumask_model = a.cpumask_model
        model = mm_cpumask.get(self.cpumask_model)
        if not model.fits(self.arch):
            raise ValueError(f"cpumask_model {self.cpumask_model} is an {' or '.join(model.arches)} model")
        if self.proc_cpus_active_mm is None:
            self.proc_cpus_active_mm = a.proc_cpus_active_mm
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}")
        if self.mapcount_model not in ("page", "no_page"):
            raise ValueError("mapcount_model must be page or no_page")
        from procsim.mm.thp import THPSettings
        THPSettings(self.thp_enabled, self.thp_sizes)  # validates
        if self.pid_max is None:
            # max(PID_MAX_DEFAULT, PIDS_PER_CPU_DEFAULT * possible CPUs), capped at PID_MAX_LIMIT
            self.pid_max = min(4 << 20, max(32768, 1024 * self.nr_cpus))
        if not 301 <= self.pid_max <= 4 << 20:
            raise ValueError("pid_max must be between 301 and 4194304")
        if self.rss_counter not in ("tree", "flat"):
            raise ValueError("rss_counter must be tree or flat")
        if self.stat_rss not in ("precise", "approx"):
            raise ValueError("stat_rss must be precise or approx")
        from procsim.arch.bugs import IB_MODES, SSB_MODES
        if self.ssb_mode not in SSB_MODES or self.spectre_v2_user not in IB_MODES:
            raise ValueError(f"ssb_mode must be one of {', '.join(SSB_MODES)}, spectre_v2_user one of {', '.join(IB_MODES)}")
        if not isinstance(self.oom_two_pass, bool):
            raise ValueError("oom_two_pass must be true or false")
        if not isinstance(self.hostname, str) or len(self.hostname.encode()) > utsname.NEW_UTS_LEN \
                or any(c in self.hostname for c in "\0\n"):
            raise ValueError(f"hostname must be one line of at most {utsname.NEW_UTS_LEN} bytes")
        if self.hz not in (100, 250, 300, 1000):
            raise ValueError("hz must be 100, 250, 300 or 1000")
        self.osrelease, self.version = utsname.resolve(self.osrelease, self.version, self.btime)
        if self.cpu_mhz is not None and (isinstance(self.cpu_mhz, bool) or not 0 < self.cpu_mhz < 1e6):
            raise ValueError("cpu_mhz must be a positive number of MHz")
        a.identify_boot_cpu(self)

    @property
    def nr_pages(self) -> int:
        return self.mem_bytes // PAGE_SIZE

    @classmethod
    def from_dict(cls, d: dict) -> "KernelConfig":
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown machine keys: {', '.join(sorted(unknown))}")
        return cls(**d)
