"""The scheduling files of /proc/PID and task/TID (fs/proc/base.c,
kernel/sched/debug.c): sched, schedstat, wchan, stack, syscall, autogroup,
timerslack_ns, personality and children, rendered from the task's
scheduler state (procsim/sched_fair.py) and its wait (procsim/sched_wait.py).

The reference configuration is this project's 6.18 host: no
CONFIG_SCHEDSTATS (so sched has no se.statistics lines and a write only
returns), CONFIG_SCHED_INFO, CONFIG_NUMA_BALANCING on one node,
CONFIG_SCHED_AUTOGROUP, no sched_ext, kptr_restrict hiding stack addresses.
"""

from __future__ import annotations

import errno

from procsim import sched_syscalls
from procsim.kstrtox import kstrtoint, kstrtoull, strstrip
from procsim.mm.vma import VM_EXEC
from procsim.procfs.context import Ctx
from procsim.sched_fair import AUTOGROUP_DEFAULT, SCHED_FIXEDPOINT_SHIFT, base_slice, task_weight
from procsim.sched_wait import PREEMPTED, Wait, blocked, wait_of
from procsim.task import SCHED_BATCH, SCHED_IDLE, SCHED_OTHER, Task

CAP_SYS_ADMIN, CAP_SYS_NICE = 21, 23
PROC_NUMBUF = 13
# two back-to-back cpu_clock() reads on the reference VM take 60-190 ns; the
# file shows one fixed value so that a world renders the same bytes each time
CLOCK_DELTA_NS = 70
NR_NODES = 1


def _split_ns(ns: int) -> str:
    """%Ld.%06ld of SPLIT_NS(): quotient and remainder truncated toward zero."""
    q, r = abs(ns) // 1_000_000, abs(ns) % 1_000_000
    if ns < 0:
        return f"{-q}.{-r:06d}" if q else f"0.{-r:06d}"
    return f"{q}.{r:06d}"


def _p(name: str, v: int) -> str:
    return f"{name:<45}:{v:>21}\n"


def _pn(name: str, ns: int) -> str:
    q, _, r = _split_ns(ns).partition(".")
    return f"{name:<45}:{q:>14}.{r}\n"


def sum_exec_runtime(t: Task) -> int:
    return t.utime + t.stime


def sched(ctx: Ctx) -> bytes:
    """proc_sched_show_task() for a fair, RT or idle-policy task."""
    t = ctx.task
    se = t.se
    a = se.avg
    out = [f"{t.comm} ({t.pid}, #threads: {len(t.tg.threads)})\n", "-" * 67 + "\n",
           _pn("se.exec_start", se.exec_start), _pn("se.vruntime", se.vruntime),
           _pn("se.sum_exec_runtime", sum_exec_runtime(t)), _p("se.nr_migrations", se.nr_migrations),
           _p("nr_switches", t.nvcsw + t.nivcsw), _p("nr_voluntary_switches", t.nvcsw),
           _p("nr_involuntary_switches", t.nivcsw),
           _p("se.load.weight", task_weight(t.nice, t.policy) << SCHED_FIXEDPOINT_SHIFT),
           _p("se.avg.load_sum", a.load_sum), _p("se.avg.runnable_sum", a.runnable_sum),
           _p("se.avg.util_sum", a.util_sum), _p("se.avg.load_avg", a.load_avg),
           _p("se.avg.runnable_avg", a.runnable_avg), _p("se.avg.util_avg", a.util_avg),
           _p("se.avg.last_update_time", a.last_update_time), _p("se.avg.util_est", a.util_est),
           _p("policy", t.policy), _p("prio", t.prio + 100)]
    if t.policy in (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE):
        out.append(_p("se.slice", base_slice(ctx.kernel.config.nr_cpus)))
    out.append(_p("clock-delta", CLOCK_DELTA_NS))
    if not t.dead and t.mm is not None:
        out.append(_p("mm->numa_scan_seq", 0))
    out += [_p("numa_pages_migrated", 0), _p("numa_preferred_nid", -1), _p("total_numa_faults", 0),
            "current_node=0, numa_group_id=0\n"]
    out += [f"numa_faults node={n} task_private=0 task_shared=0 group_private=0 group_shared=0\n"
            for n in range(NR_NODES)]
    return "".join(out).encode()


def sched_write(ctx: Ctx, data: bytes) -> int:
    """sched_write(): proc_sched_set_task() clears se.statistics, which
    exist only with CONFIG_SCHEDSTATS: nothing changes."""
    _live(ctx, "sched")
    return len(data)


def schedstat(ctx: Ctx) -> bytes:
    """proc_pid_schedstat(): run time, run-queue wait (ns), timeslices."""
    t = ctx.task
    return f"{sum_exec_runtime(t)} {t.se.run_delay} {t.se.pcount}\n".encode()


def _live(ctx: Ctx, name: str) -> Task:
    t = ctx.task
    if ctx.kernel.tasks.get(t.pid) is not t:
        raise OSError(errno.ESRCH, name)
    return t


def _lock_trace(ctx: Ctx, name: str) -> None:
    """lock_trace(): PTRACE_MODE_ATTACH_FSCREDS, or EPERM."""
    if not ctx.may_ptrace():
        raise OSError(errno.EPERM, name)


def wchan(ctx: Ctx) -> bytes:
    """proc_pid_wchan(): the symbol, without a newline; 0 for a task on a
    run queue or one the reader may not trace."""
    t = ctx.task
    if not ctx.may_ptrace() or not blocked(t):
        return b"0"
    return wait_of(t).wchan.encode()


def stack(ctx: Ctx) -> bytes:
    """proc_pid_stack(): CAP_SYS_ADMIN (EACCES), then lock_trace. A task on
    a CPU cannot be unwound (nothing), nor one whose stack is gone (a zombie)."""
    if not ctx.caller.capable(CAP_SYS_ADMIN):
        raise OSError(errno.EACCES, "stack")
    _lock_trace(ctx, "stack")
    t = ctx.task
    if t.on_cpu or t.dead or t.tg.zombie:
        return b""
    if blocked(t):
        frames = wait_of(t).frames
    elif t.tg.kthread:
        frames = wait_of(t).frames  # preempted in its loop
    else:
        frames = PREEMPTED
    return "".join(f"[<0>] {f}\n" for f in frames).encode()


def _libc_text(t: Task) -> int:
    mm = t.mm
    for v in mm.vmas:
        if v.flags & VM_EXEC and v.file is not None and "/libc.so" in v.file.d_path():
            return v.start
    return mm.start_code


def _regs(t: Task, w: Wait) -> tuple[list[int], int, int]:
    """The saved user registers of a task blocked in w: args, sp, pc."""
    mm = t.mm
    # below the argument and environment strings, 16-byte aligned as at a call
    sp = (mm.start_stack - 0x2F8 - 0x40 * (t.pid % 64)) & ~0xF | 0x8
    heap = mm.start_brk + 0x2A0
    args = [sp + 0x48 if a == "stack" else heap if a == "heap" else a for a in w.args]
    return args, sp, _libc_text(t) + w.pc


def syscall(ctx: Ctx) -> bytes:
    """proc_pid_syscall(): `running` for a task on a run queue; else the
    syscall number, its six arguments, sp and pc (-1 with sp and pc 0 once
    the stack is gone; kernel threads have zero registers)."""
    _lock_trace(ctx, "syscall")
    t = ctx.task
    if t.tg.zombie or t.dead:
        return b"-1 0x0 0x0\n"
    if not blocked(t):
        return b"running\n"
    if t.tg.kthread or t.mm is None:
        return b"0 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0\n"
    w = wait_of(t, stopped=False)
    args, sp, pc = _regs(t, w)
    if w.nr == -1:  # in user mode, not in a syscall (a task the freezer trapped there)
        return f"-1 {sp:#x} {pc:#x}\n".encode()
    return (f"{w.nr} " + " ".join(f"{x:#x}" for x in (*args, sp, pc)) + "\n").encode()


def autogroup(ctx: Ctx) -> bytes:
    """proc_sched_autogroup_show_task(): nothing for the root task group."""
    ag = ctx.task.tg.autogroup
    if ag is AUTOGROUP_DEFAULT or ag.id == 0:
        return b""
    return f"/autogroup-{ag.id} nice {ag.nice}\n".encode()


def autogroup_write(ctx: Ctx, data: bytes) -> int:
    """sched_autogroup_write(): a nice value (kstrtoint base 0 of at most
    12 bytes); proc_sched_autogroup_set_nice()'s checks."""
    count = min(len(data), PROC_NUMBUF - 1)
    nice = kstrtoint(strstrip(data[:count].split(b"\0", 1)[0]), 0)
    t = _live(ctx, "autogroup")
    c = ctx.caller
    sched_syscalls.autogroup_set_nice(ctx.kernel, t.pid, nice, c.capable(CAP_SYS_NICE), c.capable(CAP_SYS_ADMIN))
    return count


def timerslack_ns(ctx: Ctx) -> bytes:
    """timerslack_ns_show(): the reader is never the task itself, so it
    needs CAP_SYS_NICE (EPERM)."""
    t = _live(ctx, "timerslack_ns")
    if not ctx.caller.capable(CAP_SYS_NICE):
        raise OSError(errno.EPERM, "timerslack_ns")
    return f"{t.timer_slack_ns}\n".encode()


def timerslack_ns_write(ctx: Ctx, data: bytes) -> int:
    """timerslack_ns_write(): kstrtoull base 10; CAP_SYS_NICE; 0 restores
    the default; an RT task keeps none."""
    slack = kstrtoull(data[:66].split(b"\0", 1)[0], 10)
    t = _live(ctx, "timerslack_ns")
    if not ctx.caller.capable(CAP_SYS_NICE):
        raise OSError(errno.EPERM, "timerslack_ns")
    sched_syscalls.set_timer_slack(ctx.kernel, t.pid, slack)
    return len(data)


def personality(ctx: Ctx) -> bytes:
    _lock_trace(ctx, "personality")
    return f"{ctx.task.personality:08x}\n".encode()


def children(ctx: Ctx) -> bytes:
    """proc_tid_children(): the pids of the processes this thread forked
    (its children list: reparented ones included, zombies too), each
    followed by a space. A child whose forking thread has exited belongs to
    the group's first live thread, as forget_original_parent() moves it."""
    t = ctx.task
    tg = t.tg
    live = [x for x in tg.threads if not x.dead]
    heir = live[0] if live else None
    out = []
    for c in tg.children:
        owner = c.leader.real_parent
        if owner is None or owner.tg is not tg or owner not in live:
            owner = heir
        if owner is t:
            out.append(f"{c.tgid} ")
    return "".join(out).encode()
