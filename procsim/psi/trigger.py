"""PSI triggers (kernel/sched/psi.c psi_trigger_create, update_triggers,
window_update, psi_trigger_poll): a write of "some|full THRESHOLD_US
WINDOW_US" to a pressure file registers, for that open file, a trigger
that fires when the group's stall time in the state grows by THRESHOLD
within a WINDOW, at most once per window.

The write (psi_write): EINVAL for an empty write; the first 32 bytes are
taken and the last of them dropped (buf[buf_size - 1] = '\\0': a trigger
written without its newline loses its last digit); EBUSY for a second
trigger on the same open file. psi_trigger_create: sscanf("some %u %u"),
then "full %u %u" (both numbers as the kernel's %u: digits only, taken
mod 2^32), else EINVAL; "full" of the system's cpu is allowed (6.18);
window 0 or over 10 s EINVAL (no lower bound since 6.4); without
CAP_SYS_RESOURCE in the opener's credentials the window must be a
multiple of 2 s (EINVAL), and the trigger is evaluated with the averages
(PSI_AVGS, each psi_period); with it, by the rtpoll worker every
window/10 (PSI_POLL). threshold 0 or over the window: EINVAL.

poll: DEFAULT_POLLMASK (POLLIN|POLLOUT|POLLRDNORM|POLLWRNORM), with
POLLPRI once per event since the last poll; a file without a trigger:
DEFAULT_POLLMASK | POLLERR | POLLPRI. A trigger goes when its file is
closed (psi_trigger_destroy); its cgroup's removal (or, here, the group
going away) leaves it registered but dead."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Callable

from procsim.psi.group import RESOURCES, STATES

WINDOW_MAX_US = 10_000_000
UPDATES_PER_WINDOW = 10
NSEC_PER_USEC = 1000
PSI_BUF = 32
POLLIN, POLLPRI, POLLOUT, POLLERR = 0x1, 0x2, 0x4, 0x8
POLLRDNORM, POLLWRNORM = 0x40, 0x100
DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM


@dataclass(eq=False)
class PsiTrigger:
    group_id: int          # the cgroup id (the system's: the root's)
    state: int             # index into STATES
    threshold: int         # ns
    win_size: int          # ns
    privileged: bool       # PSI_POLL (True) or PSI_AVGS
    start_time: int = 0    # the window (struct psi_window)
    start_value: int = 0
    prev_growth: int = 0
    last_total: int = 0    # the aggregator's total the last update saw
    event: int = 0
    last_event_time: int = 0
    pending_event: bool = False
    next_update: int = 0   # PSI_POLL: when the rtpoll worker looks again
    nr_events: int = 0     # events fired since registration (live control's view)
    wake: list = field(default_factory=list)  # callbacks: the transport's poll notification

    def window_update(self, now: int, value: int) -> int:
        elapsed = now - self.start_time
        growth = value - self.start_value
        if elapsed > self.win_size:
            self.start_time, self.start_value, self.prev_growth = now, value, growth
        else:
            remaining = self.win_size - elapsed
            growth += self.prev_growth * remaining // self.win_size
        return growth

    def update(self, now: int, total: int) -> None:
        """update_triggers() for this trigger with the group's total now."""
        new_stall = total != self.last_total
        if not new_stall and not self.pending_event:
            return
        if new_stall:
            self.last_total = total
            growth = self.window_update(now, total)
            if not self.pending_event:
                if growth < self.threshold:
                    return
                self.pending_event = True
        if now < self.last_event_time + self.win_size:
            return  # at most one event per window
        if self.event == 0:
            self.event = 1
            self.nr_events += 1
            wakes, self.wake = self.wake, []
            for cb in wakes:  # each poll's wake-up is used once
                cb()
        self.last_event_time = now
        self.pending_event = False

    def poll(self) -> int:
        """psi_trigger_poll(): the mask, POLLPRI once per event."""
        mask = DEFAULT_POLLMASK
        if self.event:
            self.event = 0
            mask |= POLLPRI
        return mask


def _scan_u32(buf: bytes, i: int) -> tuple[int | None, int]:
    """The kernel's vsscanf %u at i: spaces skipped, then digits (no sign)."""
    while i < len(buf) and buf[i:i + 1] in b" \t\n\v\f\r":
        i += 1
    j = i
    while j < len(buf) and 48 <= buf[j] <= 57:
        j += 1
    if j == i:
        return None, i
    return int(buf[i:j]) & 0xFFFFFFFF, j


def _sscanf(buf: bytes, word: bytes) -> tuple[int, int] | None:
    """sscanf(buf, "WORD %u %u") == 2."""
    buf = buf.split(b"\0", 1)[0]
    if not buf.startswith(word):
        return None
    a, i = _scan_u32(buf, len(word))
    if a is None:
        return None
    b, _ = _scan_u32(buf, i)
    return None if b is None else (a, b)


def parse(data: bytes, resource: str, privileged: bool) -> tuple[int, int, int]:
    """psi_write() + psi_trigger_create()'s checks: (state, threshold_us,
    window_us), or OSError EINVAL."""
    if not data:
        raise OSError(errno.EINVAL, "psi: empty write")
    buf = data[:PSI_BUF]
    buf = buf[:len(buf) - 1]  # buf[buf_size - 1] = '\0'
    res = RESOURCES.index(resource)
    got = _sscanf(buf, b"some")
    full = 0
    if got is None:
        got, full = _sscanf(buf, b"full"), 1
    if got is None:
        raise OSError(errno.EINVAL, "psi: not 'some|full THRESHOLD WINDOW'")
    threshold_us, window_us = got
    if window_us == 0 or window_us > WINDOW_MAX_US:
        raise OSError(errno.EINVAL, "psi: window out of range")
    if not privileged and window_us % 2_000_000:
        raise OSError(errno.EINVAL, "psi: unprivileged windows are multiples of 2 s")
    if threshold_us == 0 or threshold_us > window_us:
        raise OSError(errno.EINVAL, "psi: threshold out of range")
    return res * 2 + full, threshold_us, window_us


class PsiTriggers:
    """The registered triggers, by the cgroup id whose group they watch."""

    def __init__(self) -> None:
        self.by_group: dict[int, list[PsiTrigger]] = {}

    def create(self, group_id: int, state: int, threshold_us: int, window_us: int, privileged: bool,
               now: int, total: int, period: int) -> PsiTrigger:
        t = PsiTrigger(group_id, state, threshold_us * NSEC_PER_USEC, window_us * NSEC_PER_USEC, privileged,
                       start_time=now, start_value=total, last_total=total)
        t.next_update = now + t.win_size // UPDATES_PER_WINDOW
        self.by_group.setdefault(group_id, []).append(t)
        return t

    def destroy(self, t: PsiTrigger) -> None:
        ts = self.by_group.get(t.group_id, [])
        if t in ts:
            ts.remove(t)
            if not ts:
                del self.by_group[t.group_id]
        drop_wakes(t)

    def avgs_update(self, group_id: int, now: int, total: list[int]) -> None:
        """psi_avgs_work's update_triggers(PSI_AVGS), as the averages update."""
        for t in list(self.by_group.get(group_id, ())):
            if not t.privileged:
                t.update(now, total[t.state])

    def rtpoll_update(self, group_id: int, now: int, total: list[int]) -> None:
        """psi_rtpoll_work's update_triggers(PSI_POLL): every window/10."""
        for t in list(self.by_group.get(group_id, ())):
            if t.privileged and now >= t.next_update:
                t.update(now, total[t.state])
                t.next_update = now + t.win_size // UPDATES_PER_WINDOW

    def describe(self) -> list[dict]:
        return [{"cgroup_id": t.group_id, "state": STATES[t.state], "threshold_us": t.threshold // NSEC_PER_USEC,
                 "window_us": t.win_size // NSEC_PER_USEC, "privileged": t.privileged, "events": t.nr_events,
                 "pending": bool(t.event)} for ts in self.by_group.values() for t in ts]


WakeFn = Callable[[], None]


def drop_wakes(t: PsiTrigger) -> None:
    """Wake-ups no longer wanted (a newer poll, the file closed): released."""
    wakes, t.wake = t.wake, []
    for cb in wakes:
        drop = getattr(cb, "drop", None)
        if drop is not None:
            drop()
