"""Architectures: what differs between the machines procsim boots. Each
architecture is one module here defining ARCH, an instance of an Arch
subclass, and one row in ARCHES. The rest of procsim asks the object
(`arch.get(config.arch)`), never compares the name.

An Arch holds the mm_cpumask model its TLB code selects, whether
/proc/PID/status has Cpus_active_mm (ARCH_WANT_PROC_CPUS_ACTIVE_MM), the gate
VMA maps and smaps print last, the IRQ lines of its reference machine and its
arch_show_interrupts() rows, the CPU identity (identify_boot_cpu()) and the
c_show() of /proc/cpuinfo.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from procsim.config import KernelConfig
    from procsim.irq import ArchRow, IrqLine

# KernelConfig.arch -> the module defining ARCH (one row per architecture)
ARCHES = {
    "x86": "procsim.arch.x86",
    "arm64": "procsim.arch.arm64",
    "riscv": "procsim.arch.riscv",
}


class Arch:
    """The defaults are those of a sparse-IRQ architecture printing its IPIs
    with show_ipi_list() (arm64, riscv): no gate VMA, no CPU models."""
    name: ClassVar[str]
    # the mm_cpumask model it selects (procsim/mm_cpumask/)
    cpumask_model: ClassVar[str]
    # ARCH_WANT_PROC_CPUS_ACTIVE_MM: status has Cpus_active_mm(_list)
    proc_cpus_active_mm: ClassVar[bool] = False
    # the maps line of the gate VMA (FIXADDR_USER/vsyscall page), None: no gate
    gate_vma: ClassVar[bytes | None] = None
    # /proc/interrupts: the IRQ lines of the reference machine, then the
    # per-CPU counters arch_show_interrupts() prints after them
    device_irqs: ClassVar[tuple[IrqLine, ...]]
    irq_rows: ClassVar[tuple[ArchRow, ...]]
    # show_ipi_list(): what separates an IPI's counts from its description
    ipi_desc_sep: ClassVar[str] = " "

    def identify_boot_cpu(self, cfg: KernelConfig) -> None:
        """Validate the CPU keys of cfg and set boot_cpu and pkeys: a fixed
        identity here, so no CPU model may be named."""
        if cfg.cpu is not None:
            raise ValueError(f"cpu models are x86 CPUs; {self.name} has its own")
        if cfg.pkeys is None:
            cfg.pkeys = True

    def show_cpuinfo(self, boot_cpu: object, cpu: int, nr_cpus: int, hz: int) -> str:
        """c_show(): the /proc/cpuinfo block of one CPU (boot_cpu is what
        identify_boot_cpu() left in cfg.boot_cpu)."""
        raise NotImplementedError

    def nr_irqs(self, nr_cpus: int) -> int:
        """Sparse IRQs: the highest allocated IRQ + 1, at least NR_IRQS=64."""
        return max(64, max(line.irq for line in self.device_irqs) + 1)

    def irq_row_parts(self, row: ArchRow, prec: int) -> tuple[str, str]:
        """The label and description around an arch row's counts: arm64 and
        riscv's "%*s%u:%s" (IPI, number, a space when prec >= 4)."""
        if row.desc is None:  # "%*s: %10u", one machine-wide count
            return f"{row.name:>{prec}}: ", "\n"
        label = f"{row.name[:3]:>{prec - 1}}{row.name[3:]}:" + (" " if prec >= 4 else "")
        return label, f"{self.ipi_desc_sep}{row.desc}\n"


def bogomips(lpj: int, hz: int) -> str:
    """c_show(): loops_per_jiffy / (500000/HZ) with two truncated decimals."""
    return f"{lpj // (500000 // hz)}.{lpj // (5000 // hz) % 100:02d}"


_loaded: dict[str, Arch] = {}


def names() -> tuple[str, ...]:
    return tuple(ARCHES)


def get(name: str) -> Arch:
    """The architecture called name (KernelConfig.arch)."""
    try:
        return _loaded[name]
    except (KeyError, TypeError):
        pass
    if not isinstance(name, str) or name not in ARCHES:
        raise ValueError(f"arch must be one of {', '.join(ARCHES)}")
    obj = _loaded[name] = importlib.import_module(ARCHES[name]).ARCH
    return obj
