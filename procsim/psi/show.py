"""psi_show(): /proc/pressure/{cpu,memory,io} and a cgroup's *.pressure.
The averages as of now: a read updates a copy when an update is due (the
kernel's read updates the group itself; a render here changes nothing)."""

from __future__ import annotations

from procsim.psi.group import FIXED_1, FSHIFT, RESOURCES, PsiGroup
from procsim.units import NSEC


def _fmt(x: int) -> str:
    # LOAD_INT / LOAD_FRAC: the integer part and two decimals (rounded down)
    return f"{x >> FSHIFT}.{((x & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"


def psi_show(g: PsiGroup, resource: str, now: int, system: bool) -> bytes:
    if now >= g.avg_next_update:
        g = g.copy()
        g.update_averages(now)
    res = RESOURCES.index(resource)
    out = []
    for full in (0, 1):
        s = res * 2 + full
        avg, total = [0, 0, 0], 0
        if not (system and resource == "cpu" and full):  # CPU full is undefined at the system level
            avg, total = g.avg[s], g.total[s] // (NSEC // 1_000_000)
        out.append(f"{'full' if full else 'some'} avg10={_fmt(avg[0])} avg60={_fmt(avg[1])} "
                   f"avg300={_fmt(avg[2])} total={total}\n")
    return "".join(out).encode()
