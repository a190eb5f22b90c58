"""Interrupt counts: the machine's IRQ lines and arch counters (kernel/irq,
arch_show_interrupts()) and their counts at one instant, a pure function of
kernel state: the clock, the CPUs' times, the scheduler's IPI counters and
the kernel's I/O counters (pgpgin, pgpgout). Nothing here is kept between
calls, so every count follows the state it is derived from.

The IRQ lines and arch counters are the architecture's (procsim/arch/);
x86's copy the reference VM of spec §0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from procsim import arch
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


@dataclass(frozen=True, slots=True)
class ArchRow:
    """A counter without an IRQ number, printed after the IRQ lines."""
    name: str
    desc: str | None   # None: one machine-wide count, no description (ERR, MIS, Err)
    counter: str = ""  # the per-CPU source, see _arch_counts(); "" is always 0


@lru_cache(maxsize=16)
def nr_irqs(arch_name: str, ncpu: int) -> int:
    """nr_irqs of an architecture at ncpu CPUs (procsim/arch/)."""
    return arch.get(arch_name).nr_irqs(ncpu)


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
    pgpgin, pgpgout = k.mem.vm_events.pgpgin, pgpgout_kb(k.now) + k.mem.vm_events.pgpgout
    devices = []
    a = arch.get(cfg.arch)
    for line in a.device_irqs:
        if line.kind == "timer":
            devices.append((line, loc))
            continue
        n = line.boot + k.now * line.milli_hz // (1000 * NSEC)
        if line.kind == "disk":  # one request per 128 kB read, 32 kB written
            n += pgpgin // 128 + pgpgout // 32
        counts = [0] * ncpu
        counts[line.irq % ncpu] = n  # each vector has one target CPU
        devices.append((line, counts))
    rows = [(row, _arch_counts(k, row, loc)) for row in a.irq_rows]
    return IrqSnapshot(devices, rows, loc, nr_irqs(cfg.arch, ncpu))

