"""Transparent hugepage policy: /sys/kernel/mm/transparent_hugepage/enabled
and the per-size hugepages-<size>kB/enabled switches, and the order choice
of an anonymous fault (thp_vma_allowable_orders + thp_vma_suitable_order)."""

from __future__ import annotations

from procsim.mm.vma import VM_HUGEPAGE, VM_MAYSHARE, VM_NOHUGEPAGE, VM_SPECIAL_MASK, VMA

TOP_MODES = ("always", "madvise", "never")
SIZE_MODES = ("always", "inherit", "madvise", "never")
PMD_ORDER = 9
# sysfs shows order 1 (8kB) for file/shmem; anonymous memory never uses it
SIZE_ORDERS = tuple(range(1, PMD_ORDER + 1))
ANON_ORDERS_MASK = ((1 << (PMD_ORDER + 1)) - 1) & ~0b11


def order_kb(order: int) -> int:
    return 4 << order


class THPSettings:
    """The machine-wide THP knobs. Default as a distribution kernel boots:
    top-level madvise, the PMD size inheriting it, every mTHP size never."""

    def __init__(self, enabled: str = "madvise", sizes: dict | None = None) -> None:
        self._orders: dict[int, int] = {}  # anon_orders() by VMA flags, for the settings as they are
        self.enabled = "madvise"
        self.per_order = {o: ("inherit" if o == PMD_ORDER else "never") for o in SIZE_ORDERS}
        self.set_enabled(enabled)
        for kb, mode in (sizes or {}).items():
            self.set_size(int(kb), mode)

    def set_enabled(self, mode: str) -> None:
        if mode not in TOP_MODES:
            raise ValueError(f"transparent_hugepage/enabled: one of {', '.join(TOP_MODES)}")
        self.enabled = mode
        self._orders.clear()

    def set_size(self, kb: int, mode: str) -> None:
        order = next((o for o in SIZE_ORDERS if order_kb(o) == kb), None)
        if order is None:
            raise ValueError(f"no hugepages-{kb}kB size (have {', '.join(str(order_kb(o)) for o in SIZE_ORDERS)})")
        if mode not in SIZE_MODES:
            raise ValueError(f"hugepages-{kb}kB/enabled: one of {', '.join(SIZE_MODES)}")
        self.per_order[order] = mode
        self._orders.clear()

    def anon_orders(self, vm_flags: int) -> int:
        """Bitmask of the large orders a private anonymous VMA with these
        flags may use (thp_vma_allowable_orders for anon, no size check)."""
        if vm_flags & (VM_NOHUGEPAGE | VM_MAYSHARE | VM_SPECIAL_MASK):
            return 0
        hg = bool(vm_flags & VM_HUGEPAGE)
        top = self.enabled == "always" or (self.enabled == "madvise" and hg)
        mask = 0
        for o, mode in self.per_order.items():
            if mode == "always" or (mode == "madvise" and hg) or (mode == "inherit" and top):
                mask |= 1 << o
        return mask & ANON_ORDERS_MASK

    def vma_orders(self, vma: VMA) -> int:
        """Orders usable in `vma` at all (anonymous, and some aligned block fits)."""
        if not vma.is_anon:
            return 0
        mask = self.anon_orders(vma.flags)
        out = 0
        for o in range(PMD_ORDER + 1):
            if mask >> o & 1:
                size = 4096 << o
                if ((vma.start + size - 1) & ~(size - 1)) + size <= vma.end:
                    out |= 1 << o
        return out

    def thp_eligible(self, vma: VMA) -> bool:
        """smaps THPeligible (spec §4.2)."""
        return bool(self.vma_orders(vma))
