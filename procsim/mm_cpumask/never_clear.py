"""riscv with ASIDs: set on switch-in, kept until the mm dies."""

from __future__ import annotations

from procsim.mm_cpumask import CpumaskModel


class NeverClear(CpumaskModel):
    name = "never_clear"


MODEL = NeverClear()
