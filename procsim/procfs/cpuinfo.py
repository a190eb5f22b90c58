"""/proc/cpuinfo (spec §19): one block per online CPU, a pure function of
the machine's CPU model. x86 follows show_cpuinfo() of
arch/x86/kernel/cpu/proc.c over boot_cpu_data (procsim/cpu.py); arm64 and
riscv print fixed identities (a Neoverse N1, a SiFive U74).
"""

from __future__ import annotations

from functools import lru_cache

from procsim.config import KernelConfig
from procsim.cpu import CpuInfoX86, topology
from procsim.procfs.context import Ctx

ARM64_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                  "lrcpc dcpop asimddp ssbs")  # Neoverse N1
ARM64_TIMER_HZ = 25_000_000
RISCV_ISA = "rv64imafdc_zicntr_zicsr_zifencei_zihpm"  # SiFive U74


def _field(label: str, value: object) -> str:
    """The colon lands in column 16 with 8-column tabs."""
    tabs = "\t\t" if len(label) < 8 else "\t"
    return f"{label}{tabs}: {value}\n"


def _items(label: str, names: tuple[str, ...]) -> str:
    """flags, bugs: each name is " " + name, so an empty list ends at the colon."""
    tabs = "\t\t" if len(label) < 8 else "\t"
    return f"{label}{tabs}:" + "".join(" " + n for n in names) + "\n"


def _bogomips(lpj: int, hz: int) -> str:
    """c_show(): loops_per_jiffy / (500000/HZ) with two truncated decimals."""
    return f"{lpj // (500000 // hz)}.{lpj // (5000 // hz) % 100:02d}"


def _x86_block(c: CpuInfoX86, cpu: int, ncpu: int, hz: int) -> str:
    t = topology(c, cpu, ncpu)
    out = [_field("processor", cpu), _field("vendor_id", c.vendor_id or "unknown"),
           _field("cpu family", c.family), _field("model", c.model),
           _field("model name", c.model_name or "unknown"),
           _field("stepping", "unknown" if c.stepping is None else c.stepping)]
    if c.microcode:
        out.append(_field("microcode", f"{c.microcode:#x}"))
    if "tsc" in c.flags:
        out.append(_field("cpu MHz", "Unknown" if c.khz is None else f"{c.khz // 1000}.{c.khz % 1000:03d}"))
    if c.cache_size_kb:
        out.append(_field("cache size", f"{c.cache_size_kb} KB"))
    out += [_field("physical id", t.package), _field("siblings", t.siblings), _field("core id", t.core_id),
            _field("cpu cores", t.cores), _field("apicid", t.apicid), _field("initial apicid", t.apicid),
            "fpu\t\t: yes\nfpu_exception\t: yes\n", _field("cpuid level", c.cpuid_level), "wp\t\t: yes\n",
            _items("flags", c.flags)]
    if "vmx" in c.flags and c.vmx_flags:
        out.append(_items("vmx flags", c.vmx_flags))
    out.append(_items("bugs", c.bugs))
    # loops_per_jiffy follows from tsc_khz; the host model keeps its own
    lpj = (c.khz or 0) * 1000 // hz
    out.append(_field("bogomips", c.bogomips or _bogomips(lpj, hz)))
    if c.tlb_size:
        out.append(_field("TLB size", f"{c.tlb_size} 4K pages"))
    out += [_field("clflush size", c.clflush_size), _field("cache_alignment", c.cache_alignment),
            _field("address sizes", f"{c.phys_bits} bits physical, {c.virt_bits} bits virtual"),
            "power management:" + "".join(" " + p for p in c.power) + "\n\n"]
    return "".join(out)


def _arm64_block(cpu: int, hz: int) -> str:
    """arch/arm64/kernel/cpuinfo.c c_show(); "CPU architecture: 8" has no TAB."""
    return (f"processor\t: {cpu}\n"
            f"BogoMIPS\t: {_bogomips(ARM64_TIMER_HZ // hz, hz)}\n"
            f"Features\t: {ARM64_FEATURES}\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
            "CPU part\t: 0xd0c\nCPU revision\t: 1\n\n")


def _riscv_block(cpu: int) -> str:
    """arch/riscv/kernel/cpu.c c_show() on a device-tree machine."""
    return (f"processor\t: {cpu}\nhart\t\t: {cpu}\nisa\t\t: {RISCV_ISA}\nmmu\t\t: sv39\n"
            "uarch\t\t: sifive,u74-mc\nmvendorid\t: 0x489\nmarchid\t\t: 0x8000000000000007\n"
            f"mimpid\t\t: 0x4210427\nhart isa\t: {RISCV_ISA}\n\n")


@lru_cache(maxsize=16)
def _cpuinfo(arch: str, c: CpuInfoX86 | None, ncpu: int, hz: int) -> bytes:
    if arch == "x86":
        blocks = (_x86_block(c, cpu, ncpu, hz) for cpu in range(ncpu))
    elif arch == "arm64":
        blocks = (_arm64_block(cpu, hz) for cpu in range(ncpu))
    else:
        blocks = (_riscv_block(cpu) for cpu in range(ncpu))
    return "".join(blocks).encode()


def render(cfg: KernelConfig) -> bytes:
    return _cpuinfo(cfg.arch, cfg.boot_cpu, cfg.nr_cpus, cfg.hz)


def cpuinfo(ctx: Ctx) -> bytes:
    """Every online CPU (all of them: no hotplug); static for a machine, so cached."""
    return render(ctx.kernel.config)
