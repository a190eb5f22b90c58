"""Commands of the scheduler and the clock: run, sleep, wake, affinity, nice, policies, sessions;
queries of tasks, CPUs and the clock."""

from __future__ import annotations

import errno

from procsim import sched_syscalls
from procsim.bitmap import parse_list
from procsim.commands.core import TID, PID, CommandError, cmd, p, query
from procsim.exec import argv_len
from procsim.kernel import Kernel
from procsim.params import BOOL, CPULIST, INT, RAW, SECONDS, STR


def c_sleep(k: Kernel, tid, state, wait) -> None:
    """Put a task to sleep (`state` S, D, T, I); `wait`: the blocking call
    it sleeps in (wchan, stack and syscall show it; omitted: the one it had,
    or its program's usual one)."""
    k.sleep(tid, state, wait)


def c_sched_setscheduler(k: Kernel, tid, policy, priority) -> dict:
    """sched_setscheduler() by the task itself: `policy` a number or
    other/batch/idle/fifo/rr (EINVAL for another, for a priority outside
    1-99 with fifo/rr or not 0 otherwise; EPERM for RT without root or
    RLIMIT_RTPRIO). Returns policy, rt_priority, nice and prio."""
    if isinstance(policy, bool) or not isinstance(policy, (int, str)):
        raise CommandError(errno.EINVAL, f"policy: expected a number or a name, got {policy!r}")
    if isinstance(policy, str):
        name = policy.lower().removeprefix("sched_")
        if name.lstrip("-").isdigit():
            policy = int(name)
        elif name in sched_syscalls.POLICY_NAMES:
            policy = sched_syscalls.POLICY_NAMES[name]
        else:
            raise CommandError(errno.EINVAL, f"policy: {policy!r} is no scheduling policy")
    sched_syscalls.sched_setscheduler(k, tid, policy, priority)
    t = k.task(tid)
    return {"policy": t.policy, "rt_priority": t.rt_priority, "nice": t.nice, "prio": t.prio}


# Activity runs event by event (a busy scenario costs a few ms per simulated
# second), and the daemon serves nothing while it does: one command may move
# the clock at most an hour, so a typo cannot wedge the mount for days.
MAX_ADVANCE_S = 3600.0


def c_advance(k: Kernel, seconds) -> None:
    """Move the clock forward (manual clock): activity and workloads run."""
    if seconds > MAX_ADVANCE_S:
        raise CommandError(errno.EINVAL, f"seconds: expected 0 to {MAX_ADVANCE_S:g}, got {seconds!r}")
    k.advance(seconds)


def c_ps(k: Kernel) -> list[dict]:
    """Every thread group: pid, ppid, comm, uid, state, threads, cmdline (and
    arg_len, mm->arg_end - arg_start, which a rewritten title keeps), RSS pages."""
    out = []
    for tg in k.thread_groups():
        out.append({"pid": tg.tgid, "ppid": tg.parent.tgid if tg.parent else 0, "comm": tg.leader.comm,
                    "uid": tg.cred.euid, "state": tg.leader.state, "zombie": tg.zombie,
                    "threads": [t.pid for t in tg.threads], "cmdline": tg.cmdline, "arg_len": argv_len(tg),
                    "rss_pages": tg.mm.rss_pages if tg.mm else 0, "kthread": tg.mm is None and not tg.zombie})
    return out


def c_status(k: Kernel, pid) -> dict:
    """One task: scheduling state, cpumasks, RSS counters, faults; utime,
    stime and start_time in nanoseconds."""
    t = k.task(pid)
    mm = t.mm
    return {"pid": t.pid, "tgid": t.tgid, "comm": t.comm, "state": t.state, "cpu": t.cpu,
            "on_cpu": t.on_cpu, "cpus_allowed": t.cpus_allowed,
            "mm_cpumask": mm.cpumask if mm else None,
            "rss": list(mm.rss) if mm else None, "total_vm": mm.total_vm if mm else 0,
            "hugetlb_pages": mm.hugetlb_usage if mm else 0, "min_flt": t.min_flt, "maj_flt": t.maj_flt,
            "utime": t.utime, "stime": t.stime, "start_time": t.start_time,  # ns
            "nvcsw": t.nvcsw, "nivcsw": t.nivcsw, "policy": t.policy, "rt_priority": t.rt_priority,
            "nice": t.nice, "nr_migrations": t.se.nr_migrations, "run_delay": t.se.run_delay,
            "pcount": t.se.pcount, "vruntime": t.se.vruntime}


def c_cpus(k: Kernel) -> list[dict]:
    """Every CPU: the running task, the loaded mm's owner, lazy TLB, TLB IPIs."""
    return [{"cpu": c.id, "curr": c.curr.pid if c.curr else None,
             "loaded_mm_pid": next((g.tgid for g in k.groups.values() if g.mm is c.loaded_mm and c.loaded_mm), None),
             "lazy": c.is_lazy, "tlb": c.irq_tlb_count} for c in k.sched.cpus]


def c_clock(k: Kernel) -> dict:
    """The clock: its mode (`manual`: moves only by `advance`; `wall`:
    follows real time) and now, in seconds since boot."""
    return {"mode": k.config.clock, "now": k.now / 1e9}


def _cpus(v: str, k: Kernel) -> int:
    try:
        return parse_list(v, k.config.nr_cpus)
    except ValueError as e:
        raise CommandError(errno.EINVAL, f"cpus: {e}") from None


COMMANDS = (
    cmd("run", lambda k, tid, cpu, preempt: k.run(tid, cpu, preempt), TID, p("cpu", INT),
         p("preempt", BOOL, False), doc="Schedule `tid` on `cpu` (`preempt`: take it from its current task)."),
    cmd("migrate", lambda k, tid, cpu: k.run(tid, cpu, True), TID, p("cpu", INT),
         doc="Move a running task to another CPU."),
    cmd("sleep", c_sleep, TID, p("state", STR, "S"), p("wait", STR, None)),
    cmd("wake", lambda k, tid: k.wake(tid), TID, doc="Wake a sleeping task (runnable)."),
    cmd("idle", lambda k, cpu: k.idle(cpu), p("cpu", INT), doc="Switch a CPU to its idle task."),
    cmd("affinity", lambda k, tid, cpus: k.set_affinity(tid, _cpus(cpus, k)), TID, p("cpus", CPULIST),
         doc="sched_setaffinity()."),
    cmd("nice", lambda k, tid, nice: k.set_nice(tid, nice), TID, p("nice", INT), doc="setpriority()."),
    cmd("sched_setscheduler", c_sched_setscheduler, TID, p("policy", RAW), p("priority", INT, 0)),
    cmd("setsid", lambda k, pid: sched_syscalls.setsid(k, pid), PID,
         doc="setsid(): a new session, process group and autogroup led by `pid`; returns the session id."),
    cmd("advance", c_advance, p("seconds", SECONDS)),
    query("ps", c_ps),
    query("task", c_status, PID),
    query("cpus", c_cpus),
    query("now", lambda k: k.now / 1e9, doc="The clock, in seconds since boot."),
    query("clock", c_clock),
)
