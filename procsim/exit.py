"""Task and address-space exit (kernel/exit.c, mmput of kernel/fork.c): a
thread exits, the group becomes a zombie, its children go to init, the
parent (or init at once) reaps it."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.mm.mm import MM
from procsim.mm.mmap import exit_mmap
from procsim.task import Task, ThreadGroup

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def exit_status(code: int) -> int:
    """exit(code) as wait(2) reports it: the low byte of the code, shifted
    left by 8 (exit(3) -> 768, exit(259) -> 768), as do_exit() stores it."""
    return (code & 0xFF) << 8


def mmput(k: Kernel, mm: MM) -> None:
    """Drop a user of `mm`; the last one tears the address space down."""
    mm.users -= 1
    if mm.users <= 0:
        exit_mmap(mm)
        k.sched.mm_gone(mm)


def release_thread(k: Kernel, t: Task) -> None:
    """A non-leader thread exits and is released at once."""
    if t.on_cpu:
        k.sched.switch_to(k.sched.cpus[t.cpu], None)
    tg = t.tg
    tg.dead_utime += t.utime
    tg.dead_stime += t.stime
    tg.dead_min_flt += t.min_flt
    tg.dead_maj_flt += t.maj_flt
    tg.ioac.add(t.ioac)  # __exit_signal(): signal->ioac keeps a dead thread's I/O
    tg.threads.remove(t)
    k._exit_files(t)
    k._release_task(t)
    if tg.mm is not None:
        tg.mm.users -= 1


def do_exit(k: Kernel, t: Task, status: int) -> None:
    """Thread `t` (live, its group not a zombie) exits with `status` (wait(2) form)."""
    tg = t.tg
    if not t.is_leader:
        release_thread(k, t)
        if not tg.live_threads:
            # the last thread after the leader: the group ends (it used
            # to stay alive forever with no thread and its mm)
            exit_notify(k, tg, status)
            return
        k._changed("exit", pid=tg.tgid, tid=t.pid)
        return
    if len(tg.live_threads) > 1:
        # the leader exits first: it lingers as a zombie thread until the group ends
        if t.on_cpu:
            k.sched.switch_to(k.sched.cpus[t.cpu], None)
        t.dead, t.state = True, "Z"
        k._exit_files(t)  # /proc/PID/fd of the group is empty from now on
        k._changed("exit", pid=tg.tgid, tid=t.pid)
        return
    exit_notify(k, tg, status)


def do_group_exit(k: Kernel, tg: ThreadGroup, status: int) -> None:
    """exit_group(2) or a fatal signal: every thread goes, then the group."""
    for other in list(tg.threads[1:]):
        release_thread(k, other)
    exit_notify(k, tg, status)


def exit_notify(k: Kernel, tg: ThreadGroup, status: int) -> None:
    """The group ends; `status` is in wait(2) form (see exit_status)."""
    for other in list(tg.threads[1:]):
        release_thread(k, other)
    t = tg.leader
    if t.on_cpu:
        k.sched.switch_to(k.sched.cpus[t.cpu], None)
    if tg.mm is not None:
        mm, tg.mm = tg.mm, None
        mmput(k, mm)
    t.dead, t.state = True, "Z"
    tg.zombie = True
    tg.exit_code = status
    tg.exe_file = None  # went with the mm
    k._exit_files(t)
    init = k.groups.get(1)
    for child in list(tg.children):  # reparent to init
        child.parent = init
        if init is not None and init is not tg:
            init.children.append(child)
            if child.zombie:
                release_task(k, child)
    tg.children.clear()
    k._changed("exit", pid=tg.tgid)
    if tg.parent is None or tg.parent.tgid == 1 or tg.parent.zombie or tg.parent.kthread:
        release_task(k, tg)  # init and kthreadd reap at once


def do_wait(k: Kernel, pid: int, child: int | None) -> int:
    """pid's group reaps a zombie child (any, if child is None); returns its pid."""
    tg = k.group(pid)
    for c in tg.children:
        if c.zombie and (child is None or c.tgid == child):
            release_task(k, c)
            return c.tgid
    if child is not None and not any(c.tgid == child for c in tg.children):
        raise KernelError(errno.ECHILD, f"{child} is not a child of {pid}")
    raise KernelError(errno.EAGAIN, "no zombie child to reap")


def release_task(k: Kernel, tg: ThreadGroup) -> None:
    """A reaped zombie group: its times and I/O go to the parent, its pids are free."""
    if tg.parent is not None and tg in tg.parent.children:
        tg.parent.children.remove(tg)
        tg.parent.cutime += tg.leader.utime + tg.dead_utime + tg.cutime
        tg.parent.cstime += tg.leader.stime + tg.dead_stime + tg.cstime
        tg.parent.cmin_flt += tg.leader.min_flt + tg.dead_min_flt + tg.cmin_flt
        tg.parent.cmaj_flt += tg.leader.maj_flt + tg.dead_maj_flt + tg.cmaj_flt
        tg.parent.ioac.add(tg.leader.ioac)  # wait_task_zombie(): the child's I/O and its children's
        tg.parent.ioac.add(tg.ioac)
    for t in tg.threads:
        k._release_task(t)
    k.groups.pop(tg.tgid, None)
    k._changed("reap", pid=tg.tgid)


class ExitSyscalls:
    """exit(), exit_group(), kill() and wait() as the Kernel's entry points
    (a Kernel mixin)."""

    def exit(self: "Kernel", tid: int, code: int = 0) -> None:
        """A thread exits; when the last one goes, the group becomes a zombie."""
        with self.lock:
            t = self.task(tid)
            if t.tg.zombie:
                raise KernelError(errno.ESRCH, f"{tid} is already a zombie")
            if t.dead:
                raise KernelError(errno.ESRCH, f"{tid} has already exited")
            do_exit(self, t, exit_status(code))

    def exit_group(self: "Kernel", pid: int, code: int = 0) -> None:
        with self.lock:
            tg = self.group(pid)
            if tg.zombie:
                raise KernelError(errno.ESRCH, f"{pid} is already a zombie")
            do_group_exit(self, tg, exit_status(code))

    def kill(self: "Kernel", pid: int, sig: int = 9) -> None:
        """The process dies from signal `sig` (kill(2): 0 only checks the pid)."""
        with self.lock:
            if not 0 <= sig <= 64:
                raise KernelError(errno.EINVAL, f"invalid signal {sig}")
            tg = self.group(pid)
            if sig == 0:
                return
            if tg.zombie:
                raise KernelError(errno.ESRCH, f"{pid} is already a zombie")
            # Killed by a signal, the wait status is the signal number itself
            # (stat field 52 showed 9 << 8 = 2304 for SIGKILL, the real kernel 9).
            do_group_exit(self, tg, sig & 0x7F)

    def wait(self: "Kernel", pid: int, child: int | None = None) -> int:
        """The parent reaps a zombie child (any, if child is None); returns its pid."""
        with self.lock:
            return do_wait(self, pid, child)
