"""/proc/pressure/{cpu,io,memory} (kernel/sched/psi.c psi_proc_init): the
system group's some and full lines, mode 0666 as Linux makes them. A write
registers a poll trigger for the open file (procsim/psi/trigger.py), which
a poll() on the file then waits for (POLLPRI); the cgroup files
cpu.pressure, io.pressure and memory.pressure are the same kind of file
for their cgroup's group (cgroupfs.py)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from procsim.procfs.context import Ctx
from procsim.procfs.kinds import Handle, Show, ShowHandle
from procsim.psi import trigger as T
from procsim.psi.show import psi_show

CAP_SYS_RESOURCE = 24


class PressureHandle(ShowHandle):
    """An open pressure file: read as a Show, and at most one trigger
    (seq->private), destroyed at release."""

    __slots__ = ("trigger",)

    def __init__(self, *args: Any) -> None:
        ShowHandle.__init__(self, *args)
        self.trigger: T.PsiTrigger | None = None

    def write(self, data: bytes, offset: int) -> int:
        e: PressureShow = self.entry  # type: ignore[assignment]
        k = self.kernel
        with k.lock:
            cg = e.group_of(self.ctx)
            if self.trigger is not None:
                raise OSError(errno.EBUSY, "psi: one trigger per open file")
            privileged = self.ctx.caller.capable(CAP_SYS_RESOURCE)
            state, thr, win = T.parse(data, e.resource, privileged)
            k.follow_wall()
            self.trigger = k.psi.triggers.create(cg.id, state, thr, win, privileged, k.now,
                                                 cg.psi.total[state], k.psi.period)
            return len(data)  # (no file shows triggers: nothing rendered changes)

    def poll(self, wake: Callable[[], None] | None) -> int:
        """psi_trigger_poll(); `wake`: called once when the trigger fires next
        (the transport's poll notification), replacing an earlier one."""
        k = self.kernel
        with k.lock:
            k.follow_wall()
            t = self.trigger
            if t is None:
                return T.DEFAULT_POLLMASK | T.POLLERR | T.POLLPRI
            if wake is not None:
                T.drop_wakes(t)
                t.wake.append(wake)
            return t.poll()

    def release(self) -> None:
        ShowHandle.release(self)
        t, self.trigger = self.trigger, None
        if t is not None:
            with self.kernel.lock:
                self.kernel.psi.triggers.destroy(t)


@dataclass(frozen=True, slots=True, eq=False)
class PressureShow(Show):
    handle: ClassVar[type[Handle]] = PressureHandle
    resource: str = "memory"
    # the cgroup whose group the file shows (the root's: /proc/pressure)
    group_of: Callable[[Ctx], Any] = lambda ctx: ctx.kernel.cgroups.root


def _show(resource: str):
    def render(ctx: Ctx) -> bytes:
        k = ctx.kernel
        return psi_show(k.cgroups.root.psi, resource, k.now, True)
    return render


def _no_plain_write(ctx: Ctx, data: bytes) -> int:
    raise OSError(errno.EINVAL, "psi")  # (PressureHandle.write serves writes)


PRESSURE = tuple(PressureShow(r, _show(r), 0o666, _no_plain_write, resource=r) for r in ("cpu", "io", "memory"))
