"""Interrupt counts: the machine's IRQ lines and arch counters (kernel/irq,
arch_show_interrupts()) and their counts at one instant, a pure function of
kernel state: the clock, the CPUs' times, the scheduler's IPI counters and
the kernel's I/O counters (pgpgin, pgpgout). Nothing here is kept between
calls, so every count follows the state it is derived from.

The devices copy the reference VM of spec §0.1 (a Firecracker-style KVM
guest on AMD EPYC).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from procsim.mm.vmstat import pgpgout_kb
from procsim.sched import CPU
from procsim.units import NSEC

if TYPE_CHECKING:
    from procsim.kernel import Kernel


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
    clock, the CPUs' times, the model's IPI counters and its I/O counters."""
    cfg = k.config
    ncpu = cfg.nr_cpus
    loc = [cpu_loc(c, cfg.hz) for c in k.sched.cpus]
    pgpgin, pgpgout = k.mem.vm_events.pgpgin, pgpgout_kb(k.now)
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

