"""arm64: a QEMU "virt" machine with a Neoverse N1 [source, not checked on
hardware]. TLBI instructions are broadcast, so mm_cpumask stays empty."""

from __future__ import annotations

from procsim.arch import Arch, bogomips
from procsim.irq import ArchRow, IrqLine

FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
            "lrcpc dcpop asimddp ssbs")  # Neoverse N1
TIMER_HZ = 25_000_000

# the per-CPU timer is an IRQ line
IRQS = (
    IrqLine(11, "GICv3", 27, "Level", None, "arch_timer", kind="timer"),
    IrqLine(13, "GICv3", 33, "Level", None, "uart-pl011", boot=15),
    IrqLine(36, "GICv3", 79, "Edge", None, "virtio0", boot=2000, milli_hz=1000, kind="disk"),
    IrqLine(37, "GICv3", 78, "Edge", None, "virtio1", milli_hz=1650, kind="net_rx"),
)
# the IPI list of 6.18 [source], then Err
IRQ_ROWS = (
    ArchRow("IPI0", "Rescheduling interrupts", "res"), ArchRow("IPI1", "Function call interrupts", "cal"),
    ArchRow("IPI2", "CPU stop interrupts"), ArchRow("IPI3", "CPU stop NMIs"),
    ArchRow("IPI4", "Timer broadcast interrupts"), ArchRow("IPI5", "IRQ work interrupts"),
    ArchRow("IPI6", "CPU backtrace interrupts"), ArchRow("IPI7", "KGDB roundup interrupts"),
    ArchRow("Err", None),
)


class Arm64(Arch):
    name = "arm64"
    cpumask_model = "never_set"
    device_irqs = IRQS
    irq_rows = IRQ_ROWS
    ipi_desc_sep = "      "

    def show_cpuinfo(self, boot_cpu: object, cpu: int, nr_cpus: int, hz: int) -> str:
        """arch/arm64/kernel/cpuinfo.c c_show(); "CPU architecture: 8" has no TAB."""
        return (f"processor\t: {cpu}\n"
                f"BogoMIPS\t: {bogomips(TIMER_HZ // hz, hz)}\n"
                f"Features\t: {FEATURES}\n"
                "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
                "CPU part\t: 0xd0c\nCPU revision\t: 1\n\n")


ARCH = Arm64()
