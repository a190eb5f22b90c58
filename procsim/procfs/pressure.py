"""/proc/pressure/{cpu,io,memory} (kernel/sched/psi.c psi_proc_init): the
system group's some and full lines, mode 0666 as Linux makes them (a
write there registers a poll trigger, which is not modelled: the write
fails EOPNOTSUPP and changes nothing)."""

from __future__ import annotations

import errno

from procsim.procfs.context import Ctx
from procsim.procfs.kinds import Show
from procsim.psi.show import psi_show


def _show(resource: str):
    def render(ctx: Ctx) -> bytes:
        k = ctx.kernel
        return psi_show(k.cgroups.root.psi, resource, k.now, True)
    return render


def _no_triggers(ctx: Ctx, data: bytes) -> int:
    raise OSError(errno.EOPNOTSUPP, "psi triggers are not modelled")


PRESSURE = tuple(Show(r, _show(r), 0o666, _no_triggers) for r in ("cpu", "io", "memory"))
