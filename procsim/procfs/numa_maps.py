"""/proc/PID/numa_maps: one line per VMA with its memory policy and page
counts (show_numa_map). The simulated machine has one node, N0, and every
VMA the default policy."""

from __future__ import annotations

from procsim.mm import stats
from procsim.mm.mm import MM
from procsim.mm.vma import VM_HUGETLB, VMA
from procsim.procfs import maps
from procsim.procfs.context import Ctx

# seq_file_path() escapes these as \ooo (a deleted file: "/dev/zero\040(deleted)")
_ESCAPE = {ord(c): f"\\{ord(c):03o}" for c in "\n\t= "}


def numa_line(mm: MM, v: VMA, md: stats.NumaMapsStats) -> str:
    line = [f"{v.start:08x} default"]
    if v.file is not None:
        line.append(" file=" + v.file.d_path().translate(_ESCAPE))
    elif maps.is_initial_heap(mm, v):
        line.append(" heap")
    elif maps.is_initial_stack(mm, v):
        line.append(" stack")
    huge = bool(v.flags & VM_HUGETLB)
    if huge:
        line.append(" huge")
    if md.pages:
        if md.anon:
            line.append(f" anon={md.anon}")
        if md.dirty:
            line.append(f" dirty={md.dirty}")
        if md.pages != md.anon and md.pages != md.dirty:
            line.append(f" mapped={md.pages}")
        if md.mapcount_max > 1:
            line.append(f" mapmax={md.mapcount_max}")
        if md.active < md.pages and not huge:
            line.append(f" active={md.active}")
        line.append(f" N0={md.pages} kernelpagesize_kB={2048 if huge else 4}")
    return "".join(line) + "\n"


def numa_maps(ctx: Ctx) -> bytes:
    mm = maps.bound_mm(ctx)
    if mm is None:
        return b""
    return "".join(numa_line(mm, v, stats.numa_vma(mm, v)) for v in mm.vmas).encode()


class NumaMapsSeq(maps.MeasuredMapsSeq):
    """numa_maps on the lock-free maps walk (no gate VMA: it has no mm)."""

    __slots__ = ()

    def measure(self, vmas: list[VMA]) -> list[stats.NumaMapsStats]:
        return [stats.numa_vma(self.mm, v) for v in vmas]

    def _gate(self):
        return None

    def show(self, rec) -> bytes:
        return numa_line(self.mm, rec, self.measured).encode()
