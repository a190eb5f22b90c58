"""The scheduling syscalls of the model (kernel/sched/syscalls.c,
autogroup.c, kernel/sys.c): sched_setscheduler(2) as the task itself
calls it, setsid(2)'s new autogroup, and the autogroup nice that
/proc/PID/autogroup writes. Each validates before it changes anything and
fails with the kernel's errno."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.cgroup import freezer
from procsim.errors import KernelError
from procsim.resource import RLIMIT_NICE, RLIMIT_RTPRIO
from procsim.sched_fair import Autogroup
from procsim.sched_wait import USER_WAITS
from procsim.task import PF_NO_SETAFFINITY, SCHED_BATCH, SCHED_FIFO, SCHED_IDLE, SCHED_OTHER, SCHED_RR, Task

if TYPE_CHECKING:
    from procsim.kernel import Kernel

SCHED_DEADLINE = 6
MAX_RT_PRIO = 100
POLICY_NAMES = {"other": SCHED_OTHER, "normal": SCHED_OTHER, "fifo": SCHED_FIFO, "rr": SCHED_RR,
                "batch": SCHED_BATCH, "idle": SCHED_IDLE, "deadline": SCHED_DEADLINE}


def _rlim(t: Task, res: int) -> int:
    return t.tg.rlim[res].cur if t.tg.rlim else 0


def can_nice(t: Task, nice: int) -> bool:
    """can_nice(): nice_to_rlimit(nice) within RLIMIT_NICE, or CAP_SYS_NICE."""
    return 20 - nice <= _rlim(t, RLIMIT_NICE) or t.tg.cred.euid == 0


def sched_setscheduler(k: Kernel, tid: int, policy: int, priority: int) -> None:
    """sched_setscheduler(tid, policy, {priority}) called by the task
    itself (privileged if it runs as root: CAP_SYS_NICE). SCHED_DEADLINE
    needs sched_setattr()'s runtime and period: EINVAL here."""
    with k.lock:
        if tid < 0:
            raise KernelError(errno.EINVAL, "sched_setscheduler: negative pid")
        t = k.task(tid)
        if policy not in (SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE):
            raise KernelError(errno.EINVAL, f"sched_setscheduler: no policy {policy}")
        rt = policy in (SCHED_FIFO, SCHED_RR)
        # sched_priority is a __u32: a negative one is out of range too
        if not 0 <= priority <= MAX_RT_PRIO - 1 or rt != (priority != 0) or policy == SCHED_DEADLINE:
            raise KernelError(errno.EINVAL, f"sched_setscheduler: priority {priority} is invalid for policy {policy}")
        if t.tg.cred.euid != 0:  # user && !capable(CAP_SYS_NICE)
            if rt:
                rlim = _rlim(t, RLIMIT_RTPRIO)
                if policy != t.policy and not rlim:
                    raise KernelError(errno.EPERM, "sched_setscheduler: RT policy needs CAP_SYS_NICE or RLIMIT_RTPRIO")
                if priority > t.rt_priority and priority > rlim:
                    raise KernelError(errno.EPERM, f"sched_setscheduler: priority {priority} above RLIMIT_RTPRIO {rlim}")
            if t.policy == SCHED_IDLE and policy != SCHED_IDLE and not can_nice(t, t.nice):
                raise KernelError(errno.EPERM, "sched_setscheduler: leaving SCHED_IDLE needs CAP_SYS_NICE")
        k.sched.set_params(t, policy, priority)
        k._changed("sched", tid=tid)


def setsid(k: Kernel, pid: int) -> int:
    """setsid(2): a new session and process group led by pid, no
    controlling tty, and a new autogroup (sched_autogroup_create_attach());
    EPERM for a process-group leader. Returns the session id."""
    with k.lock:
        tg = k.group(pid)
        if tg.zombie:
            raise KernelError(errno.ESRCH, f"setsid: {pid} is a zombie")
        if tg.pgid == tg.tgid or any(g.pgid == tg.tgid for g in k.groups.values()):
            raise KernelError(errno.EPERM, f"setsid: {pid} already leads a process group")
        tg.sid = tg.pgid = tg.tgid
        tg.tty_nr, tg.tpgid = 0, -1
        k.sched.autogroup_seq += 1
        tg.autogroup = Autogroup(k.sched.autogroup_seq)
        k._changed("setsid", pid=pid)
        return tg.sid


def autogroup_set_nice(k: Kernel, pid: int, nice: int, cap_nice: bool, cap_admin: bool) -> None:
    """proc_sched_autogroup_set_nice() for a writer with the given
    capabilities: EINVAL out of -20..19, EPERM to lower it without
    CAP_SYS_NICE, EAGAIN within HZ/10 of the last change unless
    CAP_SYS_ADMIN, EINVAL for the root task group (sched_group_set_shares())."""
    with k.lock:
        tg = k.group(pid)
        if not -20 <= nice <= 19:
            raise KernelError(errno.EINVAL, f"autogroup: nice {nice} out of -20..19")
        if nice < 0 and not cap_nice:
            raise KernelError(errno.EPERM, "autogroup: a negative nice needs CAP_SYS_NICE")
        jiffies = k.jiffies
        if not cap_admin and jiffies < k.sched.autogroup_next:
            raise KernelError(errno.EAGAIN, "autogroup: changed less than HZ/10 ago")
        k.sched.autogroup_next = jiffies + k.config.hz // 10
        if tg.autogroup.id == 0:
            raise KernelError(errno.EINVAL, "autogroup: the root task group has no shares to set")
        tg.autogroup.nice = nice
        k._changed("autogroup", pid=pid)


def set_timer_slack(k: Kernel, tid: int, slack: int) -> None:
    """timerslack_ns_write()'s change: 0 restores the default; an RT task
    keeps none."""
    with k.lock:
        t = k.task(tid)
        if t.policy in (SCHED_FIFO, SCHED_RR):
            slack = 0
        elif slack == 0:
            slack = t.default_timer_slack_ns
        t.timer_slack_ns = slack
        k._changed("timerslack", tid=tid)


class SchedSyscalls:
    """The Kernel's scheduling entry points: run a task on a CPU, sleep, wake,
    idle a CPU, sched_setaffinity, nice
    (a Kernel mixin)."""

    def run(self: "Kernel", tid: int, cpu: int, preempt: bool = False) -> None:
        """Switch `cpu` to task `tid` (migrating it if it ran elsewhere)."""
        with self.lock:
            t = self.task(tid)
            if t.dead:
                raise KernelError(errno.ESRCH, f"{tid} has exited")
            self.check_cpu(cpu)
            if not t.cpus_allowed >> cpu & 1:
                raise KernelError(errno.EINVAL, f"cpu {cpu} is not in the affinity of {tid}")
            if freezer.intercept_run(self, t, cpu):  # frozen: it runs there once thawed
                self._changed("sched", tid=tid)
                return
            self.sched.switch_to(self.sched.cpus[cpu], t, preempt)
            self._changed("sched", tid=tid)

    def sleep(self: "Kernel", tid: int, state: str = "S", wait: str | None = None) -> None:
        """The task blocks (S or D) or stops (T), or a kernel thread waits in
        TASK_IDLE (I, counted in no load); its CPU goes idle. `wait`: the
        blocking call a user task sleeps in (procsim/sched_wait.py; None:
        the one it had, or its program's usual one)."""
        with self.lock:
            t = self.task(tid)
            if state not in ("S", "D", "T") and not (state == "I" and t.tg.kthread):
                raise KernelError(errno.EINVAL, f"cannot sleep in state {state!r}")
            if wait is not None:
                if wait not in USER_WAITS:
                    raise KernelError(errno.EINVAL, f"wait: expected one of {', '.join(USER_WAITS)}, got {wait!r}")
                if t.tg.kthread:
                    raise KernelError(errno.EINVAL, f"wait: {tid} is a kernel thread (it waits in its thread function)")
                t.wait = wait
            was = t.state
            if t.on_cpu:
                self.sched.switch_to(self.sched.cpus[t.cpu], None)
            else:
                self.sched.dequeue(t)
            t.state = state
            freezer.after_sleep(self, t, was)  # out of D in a freezing cgroup: it traps
            self._changed("sched", tid=tid)

    def wake(self: "Kernel", tid: int) -> None:
        """Make a sleeping task runnable (R) on its CPU's run queue: an idle
        CPU picks it as the clock next moves, a busy one shares its time with it."""
        with self.lock:
            t = self.task(tid)
            if t.dead:
                raise KernelError(errno.ESRCH, f"{tid} has exited")
            if freezer.intercept_run(self, t, None):  # frozen: it wakes into the freezer's trap
                self._changed("sched", tid=tid)
                return
            self.sched.enqueue(t)
            t.state = "R"
            self._changed("sched", tid=tid)

    def idle(self: "Kernel", cpu: int) -> None:
        with self.lock:
            self.check_cpu(cpu)
            self.sched.switch_to(self.sched.cpus[cpu], None)
            self._changed("sched", cpu=cpu)

    def set_affinity(self: "Kernel", tid: int, mask: int) -> None:
        """sched_setaffinity; a task running on a CPU it may no longer use moves."""
        with self.lock:
            t = self.task(tid)
            if t.flags & PF_NO_SETAFFINITY:  # bound kthreads and workqueue workers
                raise KernelError(errno.EINVAL, f"{tid} may not change its affinity (PF_NO_SETAFFINITY)")
            mask &= self.sched.all_cpus_mask
            if not mask:
                raise KernelError(errno.EINVAL, "affinity mask has no online CPU")
            t.cpus_allowed = mask
            if not mask >> t.cpu & 1:
                new = (mask & -mask).bit_length() - 1
                if t.on_cpu:
                    self.sched.switch_to(self.sched.cpus[t.cpu], None)
                    self.sched.switch_to(self.sched.cpus[new], t, preempt=True)
                else:
                    self.sched.set_task_cpu(t, new)
            self._changed("sched", tid=tid)

    def set_nice(self: "Kernel", tid: int, nice: int) -> None:
        with self.lock:
            if not -20 <= nice <= 19:
                raise KernelError(errno.EINVAL, "nice must be in -20..19")
            t = self.task(tid)
            self.sched.reweight(t)  # the load averages so far count at the old weight
            t.nice = nice
            self._changed("sched", tid=tid)

    def check_cpu(self: "Kernel", cpu: int) -> None:
        if not 0 <= cpu < self.config.nr_cpus:
            raise KernelError(errno.EINVAL, f"cpu {cpu} does not exist (0-{self.config.nr_cpus - 1})")
