"""The x86 CPU a simulated machine boots on: what identify_cpu() leaves in
struct cpuinfo_x86 (boot_cpu_data), and the topology each CPU gets from it.

Three models: `amd-epyc` (the reference VM of spec §0.1/§19), `intel-xeon`
(a Sapphire Rapids KVM guest) and `host` (this machine's own CPU 0, read once
when the world is built). arch/x86.py identifies the boot CPU with it and
renders its /proc/cpuinfo; arm64 and riscv have fixed identities of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

X86_MODELS = ("amd-epyc", "intel-xeon", "host", "captured")
HOST_CPUINFO = "/proc/cpuinfo"


@dataclass(frozen=True, slots=True)
class CpuInfoX86:
    """The fields of struct cpuinfo_x86 that show_cpuinfo() prints. A zero
    (or None) stands for what the kernel does not know, and the line it
    guards (microcode, cache size, TLB size) is not printed."""
    vendor_id: str
    family: int
    model: int
    model_name: str
    stepping: int | None          # None: "unknown" (no CPUID)
    microcode: int
    khz: int | None               # cpu MHz; None: the kernel's "Unknown"
    cache_size_kb: int
    cpuid_level: int
    flags: tuple[str, ...]        # in capability-bit order, as printed
    vmx_flags: tuple[str, ...]
    bugs: tuple[str, ...]
    bogomips: str | None          # None: from khz and HZ (the kernel's loops_per_jiffy)
    tlb_size: int                 # AMD only: 0 on Intel
    clflush_size: int
    cache_alignment: int
    phys_bits: int
    virt_bits: int
    power: tuple[str, ...]        # "power management:" items
    threads_per_core: int         # SMT siblings of a core when nr_cpus allows


@dataclass(frozen=True, slots=True)
class Topology:
    """What show_cpuinfo_core() prints for one CPU: a single package whose
    cores have `threads_per_core` consecutive CPUs (the APIC ID's lowest bits
    are the thread, so apicid == CPU number in both layouts)."""
    package: int
    siblings: int   # CPUs in the package (topology_core_cpumask)
    core_id: int
    cores: int      # booted_cores
    apicid: int


def topology(c: CpuInfoX86, cpu: int, nr_cpus: int) -> Topology:
    # a guest with an odd vCPU count cannot pair threads: one thread per core
    threads = c.threads_per_core if nr_cpus % c.threads_per_core == 0 else 1
    return Topology(0, nr_cpus, cpu // threads, nr_cpus // threads, cpu)


# -- the built-in models --------------------------------------------------------------

# The reference VM's flags (spec §19) plus pku ospke, in bit order: the spec's
# config has protection keys (word 16: umip pku ospke ... vaes).
AMD_EPYC = CpuInfoX86(
    vendor_id="AuthenticAMD", family=25, model=1, model_name="procsim virtual CPU", stepping=1,
    microcode=0x1000065, khz=2445402, cache_size_kb=512, cpuid_level=16,
    flags=tuple("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
                "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
                "xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid "
                "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor "
                "lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall "
                "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni "
                "xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr arat umip pku ospke vaes vpclmulqdq rdpid "
                "fsrm".split()),
    vmx_flags=(), bugs=tuple("sysret_ss_attrs null_seg spectre_v1 spectre_v2 spec_store_bypass srso "
                             "spectre_v2_user".split()),
    bogomips=None, tlb_size=2560, clflush_size=64, cache_alignment=64, phys_bits=48, virt_bits=48,
    power=(), threads_per_core=1)

# A Sapphire Rapids KVM guest (Xeon Platinum 8480+, family 6 model 143): no
# nested VMX (so no "vmx flags"), no APERF/MPERF (cpu MHz is tsc_khz), TSX
# off. 48 virtual bits: no la57, the 4-level paging of TASK_SIZE and
# VmallocTotal; KVM's usual 46 physical bits. Bugs in bit order (words 0-1):
# eIBRS parts still have PBRSB and BHI; not Meltdown, L1TF, MDS, GDS or ITS.
INTEL_XEON = CpuInfoX86(
    vendor_id="GenuineIntel", family=6, model=143, model_name="Intel(R) Xeon(R) Platinum 8480+", stepping=8,
    microcode=0x2B000603, khz=2000000, cache_size_kb=107520, cpuid_level=31,
    flags=tuple("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
                "sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl "
                "xtopology nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pdcm pcid sse4_1 "
                "sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm "
                "abm 3dnowprefetch cpuid_fault ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 "
                "avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb "
                "avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 "
                "wbnoinvd arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq "
                "avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri movdir64b fsrm md_clear "
                "serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities"
                .split()),
    vmx_flags=(), bugs=tuple("spectre_v1 spectre_v2 spec_store_bypass swapgs eibrs_pbrsb bhi spectre_v2_user"
                             .split()),
    bogomips=None, tlb_size=0, clflush_size=64, cache_alignment=64, phys_bits=46, virt_bits=48,
    power=(), threads_per_core=2)

BUILTIN = {"amd-epyc": AMD_EPYC, "intel-xeon": INTEL_XEON}


# -- the host's CPU -----------------------------------------------------------------------

def _first_block(text: str) -> dict[str, str]:
    """CPU 0's lines, label -> value ("power management:" has no TAB)."""
    out: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        label, sep, value = line.partition(":")
        if sep:
            out[label.rstrip("\t ")] = value.strip()
    return out


def _int(v: str | None, base: int = 10) -> int:
    try:
        return int(v, base) if v else 0
    except ValueError:
        return 0


def parse_host(text: str) -> CpuInfoX86:
    """CPU 0 of an x86 /proc/cpuinfo as the model of every simulated CPU."""
    f = _first_block(text)
    if "vendor_id" not in f or "flags" not in f:
        raise ValueError("cpu = host needs an x86 host (its /proc/cpuinfo has no vendor_id/flags)")
    mhz = f.get("cpu MHz")
    try:
        khz = round(float(mhz) * 1000) if mhz else None
    except ValueError:  # "Unknown"
        khz = None
    phys, virt = 0, 0
    if "address sizes" in f:
        words = f["address sizes"].split()
        phys, virt = _int(words[0]), _int(words[3])
    stepping = f.get("stepping", "unknown")
    cores = _int(f.get("cpu cores"))
    return CpuInfoX86(
        vendor_id=f["vendor_id"], family=_int(f.get("cpu family")), model=_int(f.get("model")),
        model_name=f.get("model name", ""), stepping=None if stepping == "unknown" else _int(stepping),
        microcode=_int(f.get("microcode"), 16), khz=khz,
        cache_size_kb=_int(f.get("cache size", "").split(" ")[0]), cpuid_level=_int(f.get("cpuid level")),
        flags=tuple(f["flags"].split()), vmx_flags=tuple(f.get("vmx flags", "").split()),
        bugs=tuple(f.get("bugs", "").split()), bogomips=f.get("bogomips"),
        tlb_size=_int(f.get("TLB size", "").split(" ")[0]), clflush_size=_int(f.get("clflush size")),
        cache_alignment=_int(f.get("cache_alignment")), phys_bits=phys, virt_bits=virt,
        power=tuple(f.get("power management", "").split()),
        threads_per_core=max(1, _int(f.get("siblings")) // cores) if cores else 1)


def read_host() -> CpuInfoX86:
    try:
        with open(HOST_CPUINFO) as fh:
            return parse_host(fh.read())
    except OSError as e:
        raise ValueError(f"cpu = host: cannot read {HOST_CPUINFO}: {e.strerror}") from None


# -- protection keys --------------------------------------------------------------------

# Flags that print after "ospke" (word 16 bit 4): the rest of word 16, then
# words 17-20. Where a CPU lacks pku, pkeys = true inserts "pku ospke" before
# the first of them, as the capability-bit order puts them.
_AFTER_OSPKE = frozenset(
    "waitpkg avx512_vbmi2 shstk gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 "
    "rdpid bus_lock_detect cldemote movdiri movdir64b enqcmd sgx_lc overflow_recov succor smca "
    "avx512_4vnniw avx512_4fmaps fsrm avx512_vp2intersect srbds_ctrl md_clear rtm_always_abort "
    "tsx_force_abort serialize hybrid_cpu tsxldtrk pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile "
    "amx_int8 flush_l1d arch_capabilities sme sev sev_es sev_snp v_tsc_aux sme_coherent debug_swap "
    "no_nested_data_bp lfence_rdtsc null_sel_clr_base autoibrs no_smm_ctl_msr sbpb ibpb_brtype srso_no "
    "srso_user_kernel_no".split())


def with_pkeys(flags: tuple[str, ...], on: bool) -> tuple[str, ...]:
    """pku (the CPU has protection keys) and ospke (the kernel enabled them)
    appear together exactly when the machine has pkeys."""
    rest = tuple(f for f in flags if f not in ("pku", "ospke"))
    if not on:
        return rest
    at = next((i for i, f in enumerate(rest) if f in _AFTER_OSPKE), len(rest))
    return rest[:at] + ("pku", "ospke") + rest[at:]


def identify(cpu: str, model_name: str | None, cpu_mhz: float | None, pkeys: bool | None,
             cpuinfo: str | None = None) -> tuple[CpuInfoX86, bool]:
    """The boot CPU of model `cpu` with the scenario's overrides, and whether
    the machine has protection keys (by default: whether the model has pku)."""
    if cpu == "captured":  # another machine's CPU, as `procsim capture` wrote it down
        if not cpuinfo:
            raise ValueError("cpu = captured needs cpuinfo (the text of a /proc/cpuinfo CPU block)")
        c = parse_host(cpuinfo)
    else:
        c = read_host() if cpu == "host" else BUILTIN[cpu]
    if pkeys is None:
        pkeys = "pku" in c.flags
    c = replace(c, flags=with_pkeys(c.flags, pkeys))
    if model_name is not None:
        c = replace(c, model_name=model_name)
    if cpu_mhz is not None:
        c = replace(c, khz=round(cpu_mhz * 1000), bogomips=None)
    return c, pkeys
