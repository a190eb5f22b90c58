"""mm_cpumask models: how an architecture keeps the set of CPUs that may
hold TLB entries of an mm (seed-mechanisms §1.3, §1.5), and so whom a TLB
flush interrupts. procsim/sched.py calls the hooks of one model object at
the points where the kernel's switch_mm and flush_tlb_mm_range touch the
mask; a model is one module here, named in MODELS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from procsim.mm.mm import MM

# name -> the module defining MODEL (one row per model)
MODELS = {
    "lazy_trim": "procsim.mm_cpumask.lazy_trim",
    "eager_clear": "procsim.mm_cpumask.eager_clear",
    "never_set": "procsim.mm_cpumask.never_set",
    "never_clear": "procsim.mm_cpumask.never_clear",
}


class CpumaskModel:
    """The defaults are a mask that is set on switch-in and never cleared,
    with TLB flushes broadcast by the hardware (no IPIs)."""
    name: ClassVar[str]
    # the architectures whose TLB code this models (None: any)
    arches: ClassVar[tuple[str, ...] | None] = None
    # switch_mm sets the CPU's bit in the next mm
    sets_bits: ClassVar[bool] = True
    # flush_tlb_mm_range IPIs the other CPUs in the mask (x86's shootdowns)
    ipi_flush: ClassVar[bool] = False

    def fits(self, arch_name: str) -> bool:
        """Whether the architecture's TLB code can keep the mask this way."""
        return self.arches is None or arch_name in self.arches

    def switch_mm(self, prev: MM | None, mm: MM, bit: int) -> None:
        """A CPU (bit) loads mm in place of prev (None: init_mm)."""
        if self.sets_bits:
            mm.cpumask |= bit

    def trim_due(self, mm: MM, jiffies: int, hz: int) -> bool:
        """Whether this multi-CPU flush also trims CPUs running other mms."""
        return False

    def flush_other_mm(self, mm: MM, bit: int) -> None:
        """A flush IPI of mm reached a CPU that has another mm loaded."""

    def drop_lazy(self, mm: MM, bit: int) -> None:
        """A flush IPI of mm switched a lazy CPU to init_mm."""


_loaded: dict[str, CpumaskModel] = {}


def names() -> tuple[str, ...]:
    return tuple(MODELS)


def get(name: str) -> CpumaskModel:
    """The model called name (KernelConfig.cpumask_model)."""
    try:
        return _loaded[name]
    except (KeyError, TypeError):
        pass
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"cpumask_model must be one of {', '.join(MODELS)}")
    obj = _loaded[name] = importlib.import_module(MODELS[name]).MODEL
    return obj
