"""x86 since 6.14: set on switch-in, cleared only by a flush that finds the
CPU running another mm; such trimming flushes at most once a second."""

from __future__ import annotations

from procsim.mm.mm import MM
from procsim.mm_cpumask import CpumaskModel


class LazyTrim(CpumaskModel):
    name = "lazy_trim"
    arches = ("x86",)
    ipi_flush = True

    def trim_due(self, mm: MM, jiffies: int, hz: int) -> bool:
        if jiffies > mm.next_trim_cpumask:
            mm.next_trim_cpumask = jiffies + hz
            return True
        return False

    def flush_other_mm(self, mm: MM, bit: int) -> None:
        mm.cpumask &= ~bit


MODEL = LazyTrim()
