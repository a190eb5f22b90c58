"""x86 up to 6.13: cleared from prev on a switch between user mms, and from
a lazy CPU that a flush sends to init_mm."""

from __future__ import annotations

from procsim.mm.mm import MM
from procsim.mm_cpumask import CpumaskModel


class EagerClear(CpumaskModel):
    name = "eager_clear"
    arches = ("x86",)
    ipi_flush = True

    def switch_mm(self, prev: MM | None, mm: MM, bit: int) -> None:
        if prev is not None:
            prev.cpumask &= ~bit
        mm.cpumask |= bit

    def drop_lazy(self, mm: MM, bit: int) -> None:
        mm.cpumask &= ~bit


MODEL = EagerClear()
