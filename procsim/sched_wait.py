"""Where a sleeping task waits: the blocking syscall of a user task, the
thread function of a kernel thread. It gives /proc/PID/wchan (the
function get_wchan() finds), stack (the frames stack_trace_save_tsk()
finds, as %pB prints them) and syscall (the number and registers
task_current_syscall() reads).

A user task's wait is what the `sleep` command named (Task.wait) or, by
default, what its program does when idle (a table by program, as `ps -o
wchan` shows them on a server). Frames and offsets are those of this
project's reference 6.18 host, read from its /proc/PID/stack for a process
blocked in each call (tests/unit/test_sched_files.py compares them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from procsim.task import Task

ENTRY = ("do_syscall_64+0x71/0x290", "entry_SYSCALL_64_after_hwframe+0x76/0x7e")
KTHREAD = ("kthread+0xfa/0x240", "ret_from_fork+0x166/0x190", "ret_from_fork_asm+0x1a/0x30")
# a runnable task that is not on a CPU was preempted on its way back to user mode
PREEMPTED = ("irqentry_exit_to_user_mode+0x11f/0x1b0", "asm_sysvec_apic_timer_interrupt+0x16/0x20")


@dataclass(frozen=True)
class Wait:
    wchan: str
    frames: tuple[str, ...]        # innermost first, the syscall entry (or kthread tail) included
    nr: int | None = None          # the syscall; None: a kernel thread
    args: tuple[int | str, ...] = ()  # registers: numbers, or "stack"/"heap" for a pointer there
    pc: int = 0                    # the return address: an offset into libc's text


# a stopped task (T) left its wait for the signal and stops on the way out of
# the syscall, whose registers syscall still shows
STOPPED = Wait("do_signal_stop", ("do_signal_stop+0x16f/0x210", "get_signal+0x242/0x8a0",
                                  "arch_do_signal_or_restart+0x71/0x2a0", "exit_to_user_mode_loop+0x6b/0xe0",
                                  "do_syscall_64+0x250/0x290", ENTRY[1]))


def _user(wchan: str, nr: int, args: tuple, pc: int, *frames: str) -> Wait:
    return Wait(wchan, (*frames, *ENTRY), nr, args, pc)


_POLL = "poll_schedule_timeout.constprop.0+0x37/0x90"
USER_WAITS: dict[str, Wait] = {
    "epoll_wait": _user("do_epoll_wait", 232, (5, "heap", 0x3ff, 0xffffffff, 0, 0), 0x26ef3,
                        "do_epoll_wait+0x55e/0x5a0", "__x64_sys_epoll_wait+0x6c/0x130"),
    "poll": _user("poll_schedule_timeout.constprop.0", 7, ("heap", 2, 0xffffffff, 1, 0, 0), 0x1a230,
                  _POLL, "do_sys_poll+0x437/0x5c0", "__x64_sys_poll+0x4e/0x190"),
    "ppoll": _user("poll_schedule_timeout.constprop.0", 271, ("heap", 2, 0, 0, 8, 6), 0x1f829,
                   _POLL, "do_sys_poll+0x437/0x5c0", "__x64_sys_ppoll+0xdf/0x190"),
    "select": _user("poll_schedule_timeout.constprop.0", 270, (1, "stack", 0, 0, "stack", 0), 0x1c954,
                    _POLL, "do_select+0x65c/0x940", "core_sys_select+0x231/0x4d0",
                    "do_pselect.constprop.0+0xe9/0x1a0", "__x64_sys_pselect6+0x63/0xa0"),
    "nanosleep": _user("hrtimer_nanosleep", 230, (0, 0, "stack", "stack", 0, 0), 0xed503,  # CLOCK_REALTIME, as sleep(1)
                       "hrtimer_nanosleep+0xb5/0x130", "common_nsleep+0x30/0x60",
                       "__x64_sys_clock_nanosleep+0xde/0x150"),
    "futex": _user("futex_do_wait", 202, ("heap", 0x189, 0, 0, 0, 0xffffffff), 0xa3e96,
                   "futex_do_wait+0x46/0x90", "__futex_wait+0x8a/0x100", "futex_wait+0x9a/0x150",
                   "do_futex+0xfd/0x250", "__x64_sys_futex+0x12d/0x230"),
    "pipe_read": _user("anon_pipe_read", 0, (3, "heap", 1, "heap", 0, 0), 0x162ad,
                       "anon_pipe_read+0x4fa/0x5f0", "vfs_read+0x397/0x3d0", "ksys_read+0xc3/0xf0"),
    "tty_read": _user("wait_woken", 0, (0, "stack", 1, "heap", 0, 0), 0x162ad,
                      "wait_woken+0x89/0x90", "n_tty_read+0x4bd/0x660", "tty_read+0x11f/0x290",
                      "vfs_read+0x2a4/0x3d0", "ksys_read+0x6f/0xf0"),
    "wait4": _user("do_wait", 61, (0xffffffff, "stack", 0, 0, 0, 0), 0xf1bd3,
                   "do_wait+0x53/0x120", "kernel_wait4+0xe3/0x190", "__do_sys_wait4+0xb8/0xf0"),
    "sigsuspend": _user("sigsuspend.isra.0", 130, ("stack", 8, 0, 0, 0, 0), 0x2d5,
                        "sigsuspend.isra.0+0x77/0xb0", "__x64_sys_rt_sigsuspend+0x6f/0x80"),
    "pause": _user("__do_sys_pause", 34, (0, 0, 0, 0, 0, 0), 0xf1dd0, "__do_sys_pause+0x2a/0x50"),
    "accept": _user("inet_csk_accept", 288, (3, "stack", "stack", 0x80000, 0, 0), 0x28f63,
                    "inet_csk_accept+0x1f2/0x3b0", "inet_accept+0x2f/0x80", "do_accept+0x108/0x1a0",
                    "__sys_accept4+0x84/0x100", "__x64_sys_accept4+0x18/0x30"),
    "recvfrom": _user("__skb_wait_for_more_packets", 45, (4, "heap", 0x2000, 0, 0, 0), 0x28929,
                      "__skb_wait_for_more_packets+0x120/0x170", "__unix_dgram_recvmsg+0x117/0x470",
                      "sock_recvmsg+0xb2/0xc0", "__sys_recvfrom+0x12f/0x1d0", "__x64_sys_recvfrom+0x20/0x40"),
    # disk sleep (D): fsync waiting for its pages' writeback (ext4 without a journal, as on the host)
    "fsync": _user("folio_wait_bit", 74, (3, 0, 0, "heap", 0, 0), 0xf0c20,
                   "folio_wait_bit+0x120/0x250", "folio_wait_writeback+0x2a/0x90",
                   "__filemap_fdatawait_range+0xac/0x110", "file_write_and_wait_range+0x8f/0xc0",
                   "generic_buffers_fsync_noflush+0x1f/0x120", "ext4_fsync_nojournal.constprop.0+0x55/0x150",
                   "ext4_sync_file+0x226/0x2f0", "do_fsync+0x3b/0xa0", "__x64_sys_fsync+0xf/0x20"),
    # TASK_KILLABLE in a FUSE request (D)
    "fuse_read": _user("request_wait_answer", 0, (3, "heap", 0x20000, 0, 0, 0), 0x162ad,
                       "request_wait_answer+0x16a/0x280", "__fuse_simple_request+0x120/0x330",
                       "fuse_direct_io+0x674/0xa60", "fuse_file_read_iter+0x196/0x1c0",
                       "vfs_read+0x2a4/0x3d0", "ksys_read+0x6f/0xf0"),
}


def _kt(fn: str, *frames: str) -> Wait:
    return Wait(fn.split("+")[0], (fn, *frames, *KTHREAD))


_SMPBOOT = _kt("smpboot_thread_fn+0x18c/0x220")
_KWORKER = _kt("kthread_worker_fn+0x10c/0x260")
# kernel threads by name, first match wins (the thread functions of procsim/kthread.py's kinds)
KTHREAD_WAITS: tuple[tuple[re.Pattern, Wait], ...] = tuple((re.compile(p), w) for p, w in (
    (r"kthreadd$", Wait("kthreadd", ("kthreadd+0x2f0/0x310", *KTHREAD[1:]))),
    (r"kworker/R-", _kt("rescuer_thread+0x4b6/0x5d0")),
    (r"kworker/", _kt("worker_thread+0x98/0x310")),
    (r"(ksoftirqd|migration|cpuhp|idle_inject)/", _SMPBOOT),
    (r"rcu_(preempt|sched)$", _kt("rcu_gp_fqs_loop+0x103/0x530", "rcu_gp_kthread+0xc8/0x160")),
    (r"rcu_tasks", _kt("rcu_tasks_one_gp+0x205/0x430", "rcu_tasks_kthread+0x91/0xa0")),
    (r"(rcu_exp|watchdogd$|pool_workqueue_release$)", _KWORKER),
    (r"kdevtmpfs$", _kt("devtmpfs_work_loop+0x488/0x48d", "devtmpfsd+0x22/0x30")),
    (r"kauditd$", _kt("kauditd_thread+0x1c7/0x2f0")),
    (r"khungtaskd$", _kt("watchdog+0x6e/0x3d0")),
    (r"oom_reaper$", _kt("oom_reaper+0x2ef/0x360")),
    (r"kcompactd", _kt("kcompactd+0x407/0x470")),
    (r"ksmd$", _kt("ksm_scan_thread+0x12cb/0x2200")),
    (r"khugepaged$", _kt("khugepaged+0x436/0x9c0")),
    (r"kswapd", _kt("kswapd+0x364/0x370")),
    (r"irq/", _kt("irq_thread+0xaf/0x2b0")),
    (r"kdamond", _kt("kdamond_fn+0x68f/0x1cc0")),
    (r"hwrng$", _kt("hwrng_fillfn+0x1e0/0x3d0")),
    # not running on the reference host (no ext4 journal there): the offsets are estimates
    (r"jbd2/", _kt("kjournald2+0x229/0x280")),
))
KTHREAD_DEFAULT = _KWORKER

# what a program's threads wait in when idle: (leader, other threads), by program name
PROGRAM_WAITS: dict[str, tuple[str, str]] = {
    "init": ("epoll_wait", "epoll_wait"),  # systemd as /sbin/init
    "systemd": ("epoll_wait", "epoll_wait"),
    "systemd-journald": ("epoll_wait", "epoll_wait"),
    "systemd-udevd": ("epoll_wait", "epoll_wait"),
    "systemd-logind": ("epoll_wait", "epoll_wait"),
    "dbus-daemon": ("epoll_wait", "epoll_wait"),
    "cron": ("nanosleep", "futex"),
    "sleep": ("nanosleep", "futex"),
    "rsyslogd": ("select", "futex"),
    "sshd": ("ppoll", "ppoll"),
    "top": ("select", "futex"),
    "nginx": ("epoll_wait", "epoll_wait"),
    "postgres": ("epoll_wait", "futex"),
    "java": ("futex", "futex"),
    "python3": ("select", "futex"),
    "bash": ("tty_read", "futex"),
    "sh": ("wait4", "futex"),
}


def program_of(t: Task) -> str:
    """The program by the name ps would print: the command line's first
    word without its directory (`sshd: alice [priv]` is sshd, `-bash` bash),
    else the exe."""
    tg = t.tg
    word = tg.cmdline[0].split()[0] if tg.cmdline and tg.cmdline[0] else (tg.exe or t.comm)
    return word.rstrip(":").rsplit("/", 1)[-1].lstrip("-")


def wait_of(t: Task, stopped: bool = True) -> Wait:
    """Where a sleeping task waits (`stopped`: a stopped one in
    do_signal_stop; else the call it was stopped in)."""
    if t.frozen is not None:  # trapped by the cgroup freezer (procsim/cgroup/freezer.py)
        return t.frozen.wait
    if stopped and t.state == "T" and not t.tg.kthread:
        return STOPPED
    if t.tg.kthread:
        for pattern, w in KTHREAD_WAITS:
            if pattern.match(t.comm):
                return w
        return KTHREAD_DEFAULT
    if t.wait is not None:
        return USER_WAITS[t.wait]
    if t.state == "D":
        return USER_WAITS["fsync"]
    prog = program_of(t)
    leader, other = PROGRAM_WAITS.get(prog, ("poll", "futex"))
    if prog == "nginx" and "master" in t.tg.cmdline[0]:
        leader = "sigsuspend"  # the master waits for signals; workers in epoll
    if leader == "tty_read" and any(not c.zombie for c in t.tg.children):
        leader = "wait4"  # a shell running a command in the foreground
    return USER_WAITS[leader if t.is_leader else other]


def blocked(t: Task) -> bool:
    """get_wchan()'s test: off every run queue (not R), not dead."""
    return t.state not in ("R", "Z", "X") and not t.dead and not t.tg.zombie
