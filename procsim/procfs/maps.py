"""/proc/PID/maps (spec §3). The line of a VMA and its name (§2.4, shared
with smaps and PROCMAP_QUERY) are the model's: procsim/mm/maps_format.py."""

from __future__ import annotations

import errno

from procsim import arch
from procsim.mm.maps_format import is_initial_heap, is_initial_stack, maps_line, vma_name  # noqa: F401 (served here)
from procsim.mm.mm import MM
from procsim.mm.mmap_lock import lock_next_vma, vma_end_read
from procsim.mm.vma import VMA
from procsim.procfs.context import Ctx


def gate_vma(ctx: Ctx) -> bytes | None:
    """The maps line of the architecture's gate VMA (x86's [vsyscall]), if any."""
    return arch.get(ctx.kernel.config.arch).gate_vma


def task_mm(ctx: Ctx) -> MM | None:
    """get_task_mm(): an exited thread (a leader whose threads live on), a
    zombie or a kernel thread has none."""
    return None if ctx.task.dead else ctx.task.mm


def bound_mm(ctx: Ctx) -> MM | None:
    """The mm an open file of this kind reads: the one taken at open, while
    it still has users (mmget_not_zero); after exit or exec, none."""
    mm = ctx.mm if ctx.mm is not None else task_mm(ctx)
    return mm if mm is not None and mm.users > 0 else None


def render(ctx: Ctx) -> bytes:
    mm = bound_mm(ctx)
    if mm is None:
        return b""
    body = "".join(maps_line(mm, v) for v in mm.vmas).encode()
    gate = gate_vma(ctx)
    return body + gate if gate is not None else body


# m->index of a maps file: the end of the last VMA shown, or these sentinels
SENTINEL_VMA_END, SENTINEL_VMA_GATE = -1, -2
_GATE = object()  # the gate VMA as a record


class MapsSeq:
    """proc_maps_private and the maps seq_operations, walking the VMAs
    without the mmap lock (Linux 6.17+): one VMA read-locked at a time
    (lock_next_vma), the position being the end of the last VMA shown, so a
    read() that starts after a change resumes at the first VMA ending past
    it: a VMA that grew is shown again (a duplicate, allowed), none that
    existed before and after the change is skipped."""

    __slots__ = ("ctx", "mm", "last_pos", "locked")

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.mm: MM | None = None
        self.last_pos = 0   # where the last lookup started: the next read() restarts there
        self.locked: VMA | None = None

    def start(self, index: int):
        if index == SENTINEL_VMA_END:
            return None, index
        ctx = self.ctx
        t = ctx.task
        if t is not None and ctx.kernel.tasks.get(t.pid) is not t:
            raise OSError(errno.ESRCH, "maps")  # the task was reaped
        self.mm = bound_mm(ctx)
        if self.mm is None:  # exited or exec'd since open: EOF
            return None, index
        if index > 0:
            index = self.last_pos  # redo the lookup of the record that did not fit
        if index == SENTINEL_VMA_GATE:
            return self._gate(), index
        return self._get(index)

    def next(self, rec, index: int):
        if index == SENTINEL_VMA_GATE:
            return None, SENTINEL_VMA_END
        return self._get(index)

    def stop(self, rec) -> None:
        self._unlock()

    def show(self, rec) -> bytes:
        return gate_vma(self.ctx) if rec is _GATE else maps_line(self.mm, rec).encode()

    def _get(self, pos: int):
        """proc_get_vma(): the next VMA from pos, read-locked, then the gate."""
        self._unlock()
        vma = lock_next_vma(self.mm, pos)
        self.last_pos = pos
        if vma is not None:
            self.locked = vma
            return vma, vma.end
        return self._gate(), SENTINEL_VMA_GATE

    def _gate(self):
        return _GATE if gate_vma(self.ctx) is not None else None

    def _unlock(self) -> None:
        if self.locked is not None:
            vma_end_read(self.locked)
            self.locked = None


class MeasuredMapsSeq(MapsSeq):
    """The walk of smaps and numa_maps: as maps, plus numbers from the page
    tables. Those are taken under the kernel lock when a VMA is looked up
    (where Linux holds the page-table lock in its walk), for a window of
    VMAs at a time, so a writer waits for one window's measurement, never
    for a whole file; the VMA then stays read-locked, without the kernel
    lock, until it has been shown. A window's numbers serve later lookups
    while the kernel generation has not moved: they are then what a
    measurement now would give."""

    __slots__ = ("measured", "_window", "_gen")
    WINDOW = 16  # VMAs measured together: about four 4 KiB reads of smaps

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.measured = None
        self._window: dict[VMA, object] = {}
        self._gen = -1

    def measure(self, vmas: list[VMA]) -> list:
        """The numbers of each VMA, for show(); called under the kernel lock."""
        raise NotImplementedError

    def _get(self, pos: int):
        # drop the VMA held before waiting for the kernel lock: its holder may
        # be a writer waiting for that very VMA's readers
        self._unlock()
        k = self.ctx.kernel
        with k.lock:
            rec, index = super()._get(pos)
            if not isinstance(rec, VMA):
                return rec, index
            if self._gen != k.generation or rec not in self._window:
                vmas = self.mm.vmas.window(rec, self.WINDOW)
                self._window = dict(zip(vmas, self.measure(vmas)))
                self._gen = k.generation
            self.measured = self._window[rec]
        return rec, index
