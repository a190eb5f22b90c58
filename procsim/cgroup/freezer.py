"""The cgroup v2 freezer (kernel/cgroup/freezer.c): cgroup.freeze,
cgroup.events `frozen`, and cgroup.stat.local frozen_usec.

Writing 1 to a cgroup's cgroup.freeze freezes it and every cgroup below
(e_freeze counts the frozen ancestors-or-self: a descendant is frozen
while any of them asks, whatever its own cgroup.freeze says). Each task of
a freezing cgroup is trapped on its way to user mode (JOBCTL_TRAP_FREEZE,
do_freezer_trap): it leaves its CPU, and while frozen it is in TASK_INTERRUPTIBLE
in get_signal (state S, wchan get_signal; the stack of a task that was in a
syscall ends in do_syscall_64's exit, and its syscall file still shows that
call; one trapped in user mode shows "-1 sp pc"). A frozen task runs
nothing: no CPU time, no faults, no workload ticks. A stopped task (T)
counts as frozen as it is; a task in D does not freeze until it is woken
(the cgroup's `frozen` stays 0 until then). Thawing puts each task back as
it was: on its CPU again if that CPU is idle, else runnable, or asleep.

A new task forked into a frozen cgroup freezes at once (cgroup_post_fork);
a task migrated in freezes, one migrated out thaws
(cgroup_freezer_migrate_task); a frozen task can still be killed. A wake or
run of a frozen task is remembered for its thaw (it wakes and traps again).
frozen_usec is the time the cgroup was effectively freezing, by itself or an
ancestor, from the write to the thaw (not from when it reached frozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.sched_wait import Wait, wait_of

if TYPE_CHECKING:
    from procsim.cgroup.core import Cgroup
    from procsim.kernel import Kernel
    from procsim.task import Task

# frames of the reference host's /proc/PID/stack for a frozen task, trapped
# on the way out of a syscall and on the way back to user mode
_TRAP = ("get_signal+0x3b1/0x8a0", "arch_do_signal_or_restart+0x71/0x2a0")
FROM_SYSCALL = (*_TRAP, "exit_to_user_mode_loop+0x6b/0xe0", "do_syscall_64+0x250/0x290",
                "entry_SYSCALL_64_after_hwframe+0x76/0x7e")
FROM_USER = (*_TRAP, "irqentry_exit_to_user_mode+0x13d/0x1b0", "asm_sysvec_reschedule_ipi+0x16/0x20")


@dataclass
class CgroupFreezer:
    """struct cgroup_freezer_state."""
    freeze: bool = False      # its own cgroup.freeze
    e_freeze: int = 0         # itself and the ancestors that freeze it
    freeze_start: int | None = None  # ns: when it began to freeze (effective)
    frozen_nsec: int = 0


@dataclass
class FrozenTask:
    """What a frozen task was doing, for its thaw; `wait` is where it is shown waiting."""
    wait: Wait
    state: str        # R (running or runnable) or S
    on_cpu: bool      # it ran on its CPU


def freezer_of(cg: "Cgroup") -> CgroupFreezer:
    if cg.freezer is None:
        cg.freezer = CgroupFreezer()
    return cg.freezer


def freezing(cg: "Cgroup") -> bool:
    return cg.freezer is not None and cg.freezer.e_freeze > 0


def _live_threads(k: "Kernel", cg: "Cgroup"):
    for tgid in sorted(cg.procs):
        tg = k.groups.get(tgid)
        if tg is None or tg.zombie:
            continue
        for t in tg.threads:
            if not t.dead and k.tasks.get(t.pid) is t:
                yield t


def freeze_task(k: "Kernel", t: "Task") -> None:
    """do_freezer_trap(): the task leaves its CPU and sleeps in get_signal."""
    if t.frozen is not None or t.state in ("D", "T", "Z", "X") or t.dead or t.tg.kthread:
        return
    if t.state == "R":
        w = wait_of(t)
        wait = Wait("get_signal", FROM_USER, -1, (), w.pc)
    else:
        w = wait_of(t)
        wait = Wait("get_signal", FROM_SYSCALL, w.nr, w.args, w.pc)
    t.frozen = FrozenTask(wait, "R" if t.state == "R" else t.state, t.on_cpu)
    if t.on_cpu:
        k.sched.switch_to(k.sched.cpus[t.cpu], None)  # a voluntary switch: it sleeps
    else:
        k.sched.dequeue(t)
    t.state = "S"


def thaw_task(k: "Kernel", t: "Task") -> None:
    f = t.frozen
    if f is None:
        return
    t.frozen = None
    if t.dead:
        return
    cpu = k.sched.cpus[t.cpu]
    if f.on_cpu and cpu.curr is None:
        k.sched.switch_to(cpu, t)
    elif f.state == "R":
        k.sched.enqueue(t)
        t.state = "R"
    else:
        t.state = f.state


def intercept_run(k: "Kernel", t: "Task", cpu: int | None) -> bool:
    """A wake (cpu None) or run of a frozen task: it wakes and traps again;
    remembered for its thaw. True when the task is frozen."""
    f = t.frozen
    if f is None:
        return _leaves_d(k, t, cpu)
    f.state = "R"
    if cpu is not None:
        t.cpu, f.on_cpu = cpu, True
    return True


def _in_freezing(k: "Kernel", t: "Task") -> bool:
    cg = k.cgroups.cgroups.get(t.tg.cgroup)
    return cg is not None and freezing(cg) and not t.tg.kthread and not t.dead


def _leaves_d(k: "Kernel", t: "Task", cpu: int | None) -> bool:
    """A task its cgroup's freeze found in D (or stopped) is woken or run:
    the freeze's signal is pending (JOBCTL_TRAP_FREEZE), so on its way back
    to user mode it traps in get_signal, as runnable when thawed. True when it froze."""
    if t.state not in ("D", "T") or not _in_freezing(k, t):
        return False
    w = wait_of(t)
    t.frozen = FrozenTask(Wait("get_signal", FROM_SYSCALL, w.nr, w.args, w.pc), "R", cpu is not None)
    if cpu is not None:
        t.cpu = cpu
    t.state = "S"
    return True


def after_sleep(k: "Kernel", t: "Task", was: str) -> None:
    """A task of a freezing cgroup goes from D into an interruptible sleep:
    the pending freeze ends that sleep at once and it traps (signal_pending_state())."""
    if was == "D" and t.state == "S" and t.frozen is None and _in_freezing(k, t):
        freeze_task(k, t)


def _set_effective(k: "Kernel", cg: "Cgroup", on: bool) -> None:
    fz = freezer_of(cg)
    if on:
        fz.freeze_start = k.now
        for t in list(_live_threads(k, cg)):
            freeze_task(k, t)
    else:
        if fz.freeze_start is not None:
            fz.frozen_nsec += k.now - fz.freeze_start
        fz.freeze_start = None
        for t in list(_live_threads(k, cg)):
            thaw_task(k, t)


def cgroup_freeze(k: "Kernel", cg: "Cgroup", freeze: bool) -> None:
    """cgroup_freeze(): the cgroup and its descendants, pre-order."""
    fz = freezer_of(cg)
    if fz.freeze == freeze:
        return
    fz.freeze = freeze
    for c in (cg, *k.cgroups.descendants(cg)):
        cf = freezer_of(c)
        was = cf.e_freeze > 0
        cf.e_freeze += 1 if freeze else -1
        if (cf.e_freeze > 0) != was:
            _set_effective(k, c, not was)


def online(k: "Kernel", cg: "Cgroup") -> None:
    """cgroup_create(): a new child of a freezing cgroup is born freezing."""
    p = cg.parent
    if p is not None and freezing(p):
        fz = freezer_of(cg)
        fz.e_freeze = p.freezer.e_freeze
        fz.freeze_start = k.now


def post_fork(k: "Kernel", t: "Task") -> None:
    """cgroup_post_fork(): a task born in a freezing cgroup freezes."""
    cg = k.cgroups.cgroups.get(t.tg.cgroup)
    if cg is not None and freezing(cg):
        freeze_task(k, t)


def migrate(k: "Kernel", tg) -> None:
    """cgroup_freezer_migrate_task() for each thread of a moved group."""
    cg = k.cgroups.cgroups.get(tg.cgroup)
    on = cg is not None and freezing(cg)
    for t in tg.threads:
        if t.dead:
            continue
        if on:
            freeze_task(k, t)
        else:
            thaw_task(k, t)


def is_frozen(k: "Kernel", cg: "Cgroup") -> bool:
    """cgroup.events frozen: freezing, and every task here and below frozen (or stopped)."""
    if not freezing(cg):
        return False
    for c in (cg, *k.cgroups.descendants(cg)):
        for t in _live_threads(k, c):
            if t.frozen is None and t.state != "T":
                return False
    return True


def frozen_usec(k: "Kernel", cg: "Cgroup") -> int:
    fz = cg.freezer
    if fz is None:
        return 0
    ns = fz.frozen_nsec + (k.now - fz.freeze_start if fz.freeze_start is not None else 0)
    return ns // 1000
