"""task_struct and the per-thread-group state (signal_struct, creds, files)."""

from __future__ import annotations

from typing import Any
from dataclasses import dataclass, field

from procsim.fs.fdtable import FilesStruct
from procsim.fs.fs_struct import FsStruct
from procsim.ioac import TaskIoAccounting
from procsim.mm.mm import MM
from procsim.mm.vma import File as Inode
from procsim.nsproxy import Nsproxy
from procsim.resource import Rlimit
from procsim.sched_fair import AUTOGROUP_DEFAULT, Autogroup, SchedEntity

# PF_* flags shown in /proc/PID/stat field 9 (include/linux/sched.h).
PF_EXITING = 0x4
PF_WQ_WORKER = 0x20
PF_FORKNOEXEC = 0x40
PF_SUPERPRIV = 0x100
PF_MEMALLOC = 0x800
PF_NOFREEZE = 0x8000
PF_KCOMPACTD = 0x10000
PF_KSWAPD = 0x20000
PF_MEMALLOC_NOFS = 0x40000
PF_KTHREAD = 0x200000
PF_RANDOMIZE = 0x400000
PF_NO_SETAFFINITY = 0x4000000
# what copy_process() does not pass from parent to child
PF_NOT_INHERITED = PF_SUPERPRIV | PF_WQ_WORKER | PF_NO_SETAFFINITY
SIGCHLD = 17

STATE_NAMES = {
    "R": "R (running)", "S": "S (sleeping)", "D": "D (disk sleep)", "T": "T (stopped)",
    "t": "t (tracing stop)", "X": "X (dead)", "Z": "Z (zombie)", "P": "P (parked)", "I": "I (idle)",
}
SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE = 0, 1, 2, 3, 5


CAP_FULL = 0x000001FFFFFFFFFF  # CAP_CHOWN .. CAP_CHECKPOINT_RESTORE (CAP_LAST_CAP 40)


@dataclass
class Cred:
    uid: int = 0
    euid: int = 0
    suid: int = 0
    fsuid: int = 0
    gid: int = 0
    egid: int = 0
    sgid: int = 0
    fsgid: int = 0
    groups: tuple[int, ...] = ()
    user_ns: object = None  # the user namespace the ids are in (procsim/nsproxy.py); None: init_user_ns
    # include/linux/cred.h's capability sets (procsim/capability.py changes them)
    cap_inheritable: int = 0
    cap_permitted: int = CAP_FULL
    cap_effective: int = CAP_FULL
    cap_bset: int = CAP_FULL
    cap_ambient: int = 0

    @classmethod
    def of(cls, uid: int, gid: int, groups: tuple[int, ...] = ()) -> "Cred":
        """A login's creds: root holds every capability, anyone else none."""
        caps = CAP_FULL if uid == 0 else 0
        return cls(uid, uid, uid, uid, gid, gid, gid, gid, tuple(groups),
                   cap_permitted=caps, cap_effective=caps)

    @property
    def cap_eff(self) -> int:
        return self.cap_effective


@dataclass(eq=False)
class ThreadGroup:
    """What threads of one process share: ids, creds, mm, command line."""
    tgid: int
    parent: "ThreadGroup | None"
    pgid: int
    sid: int
    cred: Cred
    mm: MM | None
    cmdline: list[str]
    environ: list[str]
    exe: str | None
    exe_file: Inode | None = None  # mm->exe_file: the inode exec'd (/proc/PID/exe)
    tty_nr: int = 0
    tpgid: int = -1
    umask: int = 0o022
    cgroup: str = "/"  # its cgroup in the v2 hierarchy (procsim/cgroup.py)
    threads: list["Task"] = field(default_factory=list)
    children: list["ThreadGroup"] = field(default_factory=list)
    zombie: bool = False
    exit_code: int = 0  # wait(2) status: code << 8 after exit, the signal number when killed
    # times of dead threads and waited-for children (ns)
    dead_utime: int = 0
    dead_stime: int = 0
    dead_min_flt: int = 0
    dead_maj_flt: int = 0
    cutime: int = 0
    cstime: int = 0
    cmin_flt: int = 0  # signal->cmin_flt, cmaj_flt: the faults of reaped children (and theirs)
    cmaj_flt: int = 0
    sig_ignore: int = 0
    sig_catch: int = 0
    dumpable: bool = True
    # signal->oom_score_adj and the floor an unprivileged writer may not go below
    oom_score_adj: int = 0
    oom_score_adj_min: int = 0
    rlim: list[Rlimit] = field(default_factory=list)  # signal->rlim (procsim/resource.py)
    # signal->ioac: the I/O of its dead threads and reaped children (procsim/ioac.py)
    ioac: TaskIoAccounting = field(default_factory=TaskIoAccounting)
    autogroup: Autogroup = AUTOGROUP_DEFAULT  # signal->autogroup: setsid() makes one, fork shares it

    @property
    def leader(self) -> "Task":
        return self.threads[0]

    @property
    def kthread(self) -> bool:
        return self.mm is None and not self.zombie and bool(self.leader.flags & PF_KTHREAD)

    @property
    def live_threads(self) -> list["Task"]:
        return [t for t in self.threads if not t.dead]


@dataclass(eq=False)
class Task:
    pid: int
    tg: ThreadGroup
    comm: str
    start_time: int  # ns since boot
    state: str = "S"
    flags: int = PF_RANDOMIZE
    cpu: int = 0           # last CPU run on
    on_cpu: bool = False   # currently the running task of self.cpu
    cpus_allowed: int = 0
    nice: int = 0
    policy: int = SCHED_OTHER
    rt_priority: int = 0
    # task->atomic_flags' PFA_NO_NEW_PRIVS and task->seccomp: per thread, inherited by fork
    no_new_privs: bool = False
    seccomp_mode: int = 0
    seccomp_filters: int = 0
    spec_flags: int = 0  # atomic_flags' PFA_SPEC_* (procsim/arch/bugs.py)
    utime: int = 0  # ns
    stime: int = 0
    nvcsw: int = 0
    nivcsw: int = 0
    min_flt: int = 0
    maj_flt: int = 0
    sig_pending: int = 0
    sig_blocked: int = 0
    # the signal the parent gets at exit (stat field 38): SIGCHLD for a fork,
    # -1 for a CLONE_THREAD thread, 0 for kthreadd (kernel_thread() without SIGCHLD)
    exit_signal: int = SIGCHLD
    nsproxy: Nsproxy | None = None  # the namespaces it sees (procsim/nsproxy.py)
    pid_ns: object = None  # task_active_pid_ns() when not the initial one (nsproxy.Namespace)
    # audit (kernel/auditsc.c): the login uid and session, inherited on fork
    loginuid: int = 4294967295
    sessionid: int = 4294967295
    files: FilesStruct | None = None  # task->files: the fd table (shared by CLONE_FILES threads)
    fs: FsStruct | None = None        # task->fs: root and cwd
    dead: bool = False  # exited thread (non-leaders vanish, leaders wait for the group)
    ioac: TaskIoAccounting = field(default_factory=TaskIoAccounting)  # its own I/O (procsim/ioac.py)
    se: SchedEntity = field(default_factory=SchedEntity)  # procsim/sched_fair.py
    timer_slack_ns: int = 50_000
    default_timer_slack_ns: int = 50_000
    personality: int = 0
    frozen: Any = None  # cgroup freezer: what it did before it froze (procsim/cgroup/freezer.py)
    wait: str | None = None  # where it blocks when it sleeps (procsim/sched_wait.py); None: its kind's
    real_parent: "Task | None" = None  # the thread that forked it (proc_tid_children)
    # the cgroup its pids charge is on (procsim/cgroup/pids.py), until it is released
    pids_css: Any = field(default=None, repr=False)

    @property
    def tgid(self) -> int:
        return self.tg.tgid

    @property
    def mm(self) -> MM | None:
        return self.tg.mm

    @property
    def is_leader(self) -> bool:
        return self.tg.threads[0] is self

    @property
    def prio(self) -> int:
        """/proc stat field 18."""
        if self.policy in (SCHED_FIFO, SCHED_RR):
            return -1 - self.rt_priority
        return self.nice + 20


# task->__state, kept with the scheduler's index of who is on a run queue:
# a change of state moves the task between Sched's sets of runnable (R) and
# uninterruptible (D) tasks (enqueue_task()/dequeue_task() and
# rq->nr_uninterruptible), so what the tick and the load average look at
# costs the runnable tasks, not the sleeping ones. A task joins the index at
# sched_fork() (Sched.track); until then the state is only stored.
Task._rq_index = None


def _get_state(self: Task) -> str:
    return self._state


def _set_state(self: Task, value: str) -> None:
    old = self.__dict__.get("_state")
    self._state = value
    idx = self._rq_index
    if idx is not None and old != value:
        idx.moved(self, old, value)


Task.state = property(_get_state, _set_state, doc="R S D T t Z X I: the task's state (stat field 3)")  # type: ignore[assignment]
