"""/proc/interrupts (spec §20): show_interrupts() and arch_show_interrupts(),
and /proc/softirqs,
over the counts of procsim/irq.py."""

from __future__ import annotations

from functools import lru_cache

from procsim import arch
from procsim.irq import ArchRow, IrqLine, irq_snapshot
from procsim.procfs.context import Ctx
from procsim.softirq import SOFTIRQ_NAMES, softirq_counts


def irq_prec(n: int) -> int:
    """Width of the IRQ-number column: digits of nr_irqs, at least 3."""
    prec, j = 3, 1000
    while j <= n and prec < 10:
        prec += 1
        j *= 10
    return prec

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
def _arch_parts(arch_name: str, row: ArchRow, prec: int) -> tuple[str, str]:
    """The label and description around an arch line's counts."""
    return arch.get(arch_name).irq_row_parts(row, prec)


def _device_line(line: IrqLine, counts: list[int], prec: int) -> str:
    head, tail = _device_parts(line, prec)
    return head + _counts_fmt(len(counts), True) % tuple(counts) + tail


def _arch_line(arch_name: str, row: ArchRow, counts: list[int] | int, prec: int) -> str:
    head, tail = _arch_parts(arch_name, row, prec)
    if isinstance(counts, int):
        return f"{head}{counts:>10}{tail}"
    return head + _counts_fmt(len(counts), False) % tuple(counts) + tail


def interrupts(ctx: Ctx) -> bytes:
    k = ctx.kernel
    name = k.config.arch
    s = irq_snapshot(k)
    prec = irq_prec(s.nr_irqs)
    out = [_interrupts_header(k.config.nr_cpus, prec)]
    out += [_device_line(line, counts, prec) for line, counts in s.devices]
    out += [_arch_line(name, row, counts, prec) for row, counts in s.arch]
    return "".join(out).encode()



def softirqs(ctx: Ctx) -> bytes:
    """show_softirqs() (fs/proc/softirqs.c)."""
    s = irq_snapshot(ctx.kernel)
    ncpu = ctx.kernel.config.nr_cpus
    out = [" " * 20 + "".join(f"CPU{i:<8}" for i in range(ncpu)) + "\n"]
    for name, counts in zip(SOFTIRQ_NAMES, softirq_counts(s)):
        out.append(f"{name:>12}:" + "".join(f" {c:10d}" for c in counts) + "\n")
    return "".join(out).encode()
