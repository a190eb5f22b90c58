"""riscv64: a device-tree machine with a SiFive U74 [source, not checked on
hardware]. With ASIDs, mm_cpumask is set on switch-in and never cleared."""

from __future__ import annotations

from procsim.arch import Arch
from procsim.irq import ArchRow, IrqLine

ISA = "rv64imafdc_zicntr_zicsr_zifencei_zihpm"  # SiFive U74

# the per-CPU timer is an IRQ line
IRQS = (
    IrqLine(1, "SiFive PLIC", 8, "Edge", None, "virtio0", boot=2000, milli_hz=1000, kind="disk"),
    IrqLine(2, "SiFive PLIC", 7, "Edge", None, "virtio1", milli_hz=1650, kind="net_rx"),
    IrqLine(5, "RISC-V INTC", 5, "Edge", None, "riscv-timer", kind="timer"),
    IrqLine(10, "SiFive PLIC", 10, "Edge", None, "ttyS0", boot=15),
)
# the IPI list of 6.18 [source]
IRQ_ROWS = (
    ArchRow("IPI0", "Rescheduling interrupts", "res"), ArchRow("IPI1", "Function call interrupts", "cal"),
    ArchRow("IPI2", "CPU stop interrupts"), ArchRow("IPI3", "CPU stop (for crash dump) interrupts"),
    ArchRow("IPI4", "IRQ work interrupts"), ArchRow("IPI5", "Timer broadcast interrupts"),
    ArchRow("IPI6", "CPU backtrace interrupts"), ArchRow("IPI7", "KGDB roundup interrupts"),
)


class Riscv(Arch):
    name = "riscv"
    cpumask_model = "never_clear"
    device_irqs = IRQS
    irq_rows = IRQ_ROWS

    def show_cpuinfo(self, boot_cpu: object, cpu: int, nr_cpus: int, hz: int) -> str:
        """arch/riscv/kernel/cpu.c c_show() on a device-tree machine."""
        return (f"processor\t: {cpu}\nhart\t\t: {cpu}\nisa\t\t: {ISA}\nmmu\t\t: sv39\n"
                "uarch\t\t: sifive,u74-mc\nmvendorid\t: 0x489\nmarchid\t\t: 0x8000000000000007\n"
                f"mimpid\t\t: 0x4210427\nhart isa\t: {ISA}\n\n")


ARCH = Riscv()
