"""arm64: the mask stays empty; TLBI instructions are broadcast, no IPIs."""

from __future__ import annotations

from procsim.mm_cpumask import CpumaskModel


class NeverSet(CpumaskModel):
    name = "never_set"
    sets_bits = False


MODEL = NeverSet()
