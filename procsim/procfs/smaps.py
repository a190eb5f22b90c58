"""/proc/PID/smaps and /proc/PID/smaps_rollup (spec §4, §5): the maps line
of each VMA followed by its mem_size_stats, which procsim.mm.stats computes
from the page tables under the configured mapcount model."""

from __future__ import annotations

import errno
import functools

import numpy as np

from procsim.mm import stats
from procsim.mm.mm import MM
from procsim.mm.stats import PSS_SHIFT
from procsim.mm.vma import MNEMONICS, VM_HUGETLB, VMA
from procsim.procfs import maps
from procsim.procfs.context import Ctx


@functools.lru_cache(maxsize=1024)
def vm_flags(flags: int) -> str:
    """The VmFlags line: the code of every set bit, in bit order, each with
    a trailing space; a bit without a code prints ??."""
    out = []
    bit = 0
    while flags >> bit:
        if flags >> bit & 1:
            code = MNEMONICS.get(bit, "??")
            if code:
                out.append(code + " ")
        bit += 1
    return "VmFlags: " + "".join(out) + "\n"


# __show_smap(): the lines from Rss to Locked, in the kernel's order, as
# (label, field, is a PSS fixed-point value); smaps_rollup adds the PSS split.
_USAGE = (("Rss", "resident", False), ("Pss", "pss", True), ("Pss_Dirty", "pss_dirty", True),
          ("Shared_Clean", "shared_clean", False), ("Shared_Dirty", "shared_dirty", False),
          ("Private_Clean", "private_clean", False), ("Private_Dirty", "private_dirty", False),
          ("Referenced", "referenced", False), ("Anonymous", "anonymous", False), ("KSM", "ksm", False),
          ("LazyFree", "lazyfree", False), ("AnonHugePages", "anonymous_thp", False),
          ("ShmemPmdMapped", "shmem_thp", False), ("FilePmdMapped", "file_thp", False),
          ("Shared_Hugetlb", "shared_hugetlb", False), ("Private_Hugetlb", "private_hugetlb", False),
          ("Swap", "swap", False), ("SwapPss", "swap_pss", True), ("Locked", "pss_locked", True))
_ROLLUP = _USAGE[:3] + (("Pss_Anon", "pss_anon", True), ("Pss_File", "pss_file", True),
                        ("Pss_Shmem", "pss_shmem", True)) + _USAGE[3:]


class _Lines:
    """Lines of stats values as one format string (a 10,000-VMA smaps formats
    10,000 blocks), the stats columns they show and their shifts to kB:
    `label:` padded to 16, the value to 8; Private_Hugetlb is the kernel's one
    exception (label 16 wide, one space, width 7)."""

    def __init__(self, rows) -> None:
        self.fmt = "".join("Private_Hugetlb: {:>7} kB\n" if label == "Private_Hugetlb"
                           else f"{label + ':':<16}{{:>8}} kB\n" for label, _, _ in rows)
        self.cols = np.array([stats.COL[name] for _, name, _ in rows])
        self.shifts = np.array([PSS_SHIFT + 10 if pss else 10 for _, _, pss in rows], np.int64)

    def kb(self, arr: np.ndarray) -> list:
        """The values in kB, per row of a stats array (or of one row)."""
        return (arr[..., self.cols] >> self.shifts).tolist()


_SMAPS = _Lines(_USAGE)
_ROLLUP_LINES = _Lines(_ROLLUP)
# The gate VMA's block: only the sizes of one page (spec §4.3).
_GATE_TAIL = ("Size:                  4 kB\nKernelPageSize:        4 kB\nMMUPageSize:           4 kB\n"
              + _SMAPS.fmt.format(*[0] * len(_USAGE)) + "THPeligible:           0\n")


def smaps_block(ctx: Ctx, mm: MM, v: VMA, kb: list[int]) -> str:
    """One VMA's block; `kb`: its usage lines' values, already in kB."""
    k = ctx.kernel
    page_kb = 2048 if v.flags & VM_HUGETLB else 4
    out = [maps.maps_line(mm, v), f"Size:           {(v.end - v.start) >> 10:>8} kB\n",
           f"KernelPageSize: {page_kb:>8} kB\n", f"MMUPageSize:    {page_kb:>8} kB\n",
           _SMAPS.fmt.format(*kb), f"THPeligible:    {int(k.mem.thp.thp_eligible(v)):>8}\n"]
    if k.config.pkeys:
        out.append(f"ProtectionKey:  {(v.flags >> 32) & 0xF:>8}\n")
    out.append(vm_flags(v.flags))
    return "".join(out)


def _gate_block(gate: bytes, pkeys: bool) -> str:
    return (gate.decode() + _GATE_TAIL + ("ProtectionKey:         0\n" if pkeys else "")
            + "VmFlags: ex \n")


def smaps(ctx: Ctx) -> bytes:
    mm = maps.bound_mm(ctx)
    if mm is None:
        return b""
    vmas = list(mm.vmas)
    kb = _SMAPS.kb(stats.smaps_array(mm, vmas, special_mapcount=ctx.kernel.vdso_mapcount))
    body = "".join(smaps_block(ctx, mm, v, row) for v, row in zip(vmas, kb))
    gate = maps.gate_vma(ctx)
    return (body + _gate_block(gate, ctx.kernel.config.pkeys) if gate is not None else body).encode()


class SmapsSeq(maps.MeasuredMapsSeq):
    """smaps read as Linux 6.17+ reads it: the lock-free maps walk, each
    VMA's block measured when it is reached."""

    __slots__ = ()

    def measure(self, vmas: list[VMA]) -> list[list[int]]:
        k = self.ctx.kernel
        return _SMAPS.kb(stats.smaps_array(self.mm, vmas, special_mapcount=k.vdso_mapcount))

    def show(self, rec) -> bytes:
        if isinstance(rec, VMA):
            return smaps_block(self.ctx, self.mm, rec, self.measured).encode()
        return _gate_block(maps.gate_vma(self.ctx), self.ctx.kernel.config.pkeys).encode()


def smaps_rollup(ctx: Ctx) -> bytes:
    mm = maps.bound_mm(ctx)
    if mm is None:  # the process died after open: mmget fails
        raise OSError(errno.ESRCH, "smaps_rollup")
    vmas = list(mm.vmas)
    # summed in bytes (and fixed point) over all VMAs, cut to kB once
    total = stats.smaps_array(mm, vmas, special_mapcount=ctx.kernel.vdso_mapcount).sum(axis=0)
    start, end = (vmas[0].start, vmas[-1].end) if vmas else (0, 0)
    head = f"{start:08x}-{end:08x} ---p 00000000 00:00 0 ".ljust(72) + " [rollup]\n"
    return (head + _ROLLUP_LINES.fmt.format(*_ROLLUP_LINES.kb(total))).encode()
