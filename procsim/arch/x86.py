"""x86_64: the reference VM of spec §0.1 (a Firecracker-style KVM guest on
AMD EPYC). The CPU models are procsim/cpu.py's; /proc/cpuinfo is
show_cpuinfo() of arch/x86/kernel/cpu/proc.c over boot_cpu_data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.arch import Arch, bogomips
from procsim.cpu import X86_MODELS, CpuInfoX86, identify, topology
from procsim.irq import ArchRow, IrqLine

if TYPE_CHECKING:
    from procsim.config import KernelConfig

VSYSCALL = b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"

_MSIX = "PCI-MSIX-0000:00:0{}.0".format
# The reference VM's devices: ACPI GED, a serial console, virtio balloon (0),
# block (1), net (2), vsock (3) and input (4), an MSI-X vector per queue.
IRQS = (
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
# arch_show_interrupts() of x86 on a KVM guest without MCE (spec §20); the
# local APIC timer is LOC here, not an IRQ line.
IRQ_ROWS = (
    ArchRow("NMI", "Non-maskable interrupts"), ArchRow("LOC", "Local timer interrupts", "loc"),
    ArchRow("SPU", "Spurious interrupts"), ArchRow("PMI", "Performance monitoring interrupts"),
    ArchRow("IWI", "IRQ work interrupts"), ArchRow("RTR", "APIC ICR read retries"),
    ArchRow("RES", "Rescheduling interrupts", "res"), ArchRow("CAL", "Function call interrupts", "cal"),
    ArchRow("TLB", "TLB shootdowns", "tlb"), ArchRow("TRM", "Thermal event interrupts"),
    ArchRow("HYP", "Hypervisor callback interrupts", "hyp"), ArchRow("ERR", None), ArchRow("MIS", None),
    ArchRow("PIN", "Posted-interrupt notification event"), ArchRow("NPI", "Nested posted-interrupt event"),
    ArchRow("PIW", "Posted-interrupt wakeup event"),
)


def _field(label: str, value: object) -> str:
    """The colon lands in column 16 with 8-column tabs."""
    tabs = "\t\t" if len(label) < 8 else "\t"
    return f"{label}{tabs}: {value}\n"


def _items(label: str, names: tuple[str, ...]) -> str:
    """flags, bugs: each name is " " + name, so an empty list ends at the colon."""
    tabs = "\t\t" if len(label) < 8 else "\t"
    return f"{label}{tabs}:" + "".join(" " + n for n in names) + "\n"


class X86(Arch):
    name = "x86"
    cpumask_model = "lazy_trim"
    proc_cpus_active_mm = True
    gate_vma = VSYSCALL
    device_irqs = IRQS
    irq_rows = IRQ_ROWS

    def identify_boot_cpu(self, cfg: KernelConfig) -> None:
        if cfg.cpu is None:
            cfg.cpu = "amd-epyc"
        if cfg.cpu not in X86_MODELS:
            raise ValueError(f"cpu must be one of {', '.join(X86_MODELS)}")
        if cfg.pkeys is not None and not isinstance(cfg.pkeys, bool):
            raise ValueError("pkeys must be true or false")
        cfg.boot_cpu, cfg.pkeys = identify(cfg.cpu, cfg.model_name, cfg.cpu_mhz, cfg.pkeys, cfg.cpuinfo)

    def show_cpuinfo(self, boot_cpu: object, cpu: int, nr_cpus: int, hz: int) -> str:
        c = boot_cpu
        assert isinstance(c, CpuInfoX86)
        t = topology(c, cpu, nr_cpus)
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
        out.append(_field("bogomips", c.bogomips or bogomips(lpj, hz)))
        if c.tlb_size:
            out.append(_field("TLB size", f"{c.tlb_size} 4K pages"))
        out += [_field("clflush size", c.clflush_size), _field("cache_alignment", c.cache_alignment),
                _field("address sizes", f"{c.phys_bits} bits physical, {c.virt_bits} bits virtual"),
                "power management:" + "".join(" " + p for p in c.power) + "\n\n"]
        return "".join(out)

    def nr_irqs(self, nr_cpus: int) -> int:
        """arch_probe_nr_irqs(): gsi_top (one 24-pin IO-APIC, no legacy PIC)
        + 8 per CPU + 16 MSI vectors per GSI: 424 at 2 CPUs, as on the VM."""
        gsi_top = 24
        return min(gsi_top + 8 * nr_cpus + 16 * gsi_top, 256 * nr_cpus)

    def irq_row_parts(self, row: ArchRow, prec: int) -> tuple[str, str]:
        """"%*s: " + "%10u " per CPU + "  desc"."""
        if row.desc is None:
            return f"{row.name:>{prec}}: ", "\n"
        return f"{row.name:>{prec}}: ", f"  {row.desc}\n"


ARCH = X86()
