"""Process creation (kernel/fork.c, alloc_pid of kernel/pid.c): fork's
copy_process, a new thread (CLONE_THREAD), kernel threads, and dup_mm, the
child's copy of the address space (its page tables: memory.copy_page_range)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.cgroup import freezer, pids
from procsim import resource
from dataclasses import replace

from procsim.nsproxy import Nsproxy, alloc_pid_nrs, create_new_namespaces
from procsim.errors import KernelError
from procsim.fs.fdtable import FilesStruct
from procsim.fs.fs_struct import FsStruct
from procsim.kthread import KthreadKind, cpu_in_name, kind_of as kthread_kind
from procsim.mm.memory import copy_page_range
from procsim.mm.mm import MM
from procsim.mm.rmap import AnonVma
from procsim.mm.vma import VM_LOCKED, VM_LOCKONFAULT, VMA
from procsim.task import (PF_FORKNOEXEC, PF_KTHREAD, PF_NOFREEZE, PF_NOT_INHERITED, PF_RANDOMIZE, Cred, Task,
                          ThreadGroup)

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def dup_mm(mm: MM) -> MM:
    """dup_mm() and dup_mmap(): the child's copy of `mm`: its counters and
    layout, every VMA but VM_DONTCOPY ones (unlocked), and their pages
    shared copy-on-write (memory.copy_page_range)."""
    child = MM(mm.mem, mm.mmap_base)
    child.rss.cpu = mm.rss.cpu  # add_mm_rss_vec() runs on the forking task's CPU
    for name in ("total_vm", "hiwater_vm", "locked_vm", "data_vm", "hugetlb_data_vm", "exec_vm", "stack_vm",
                 "committed_vm",
                 "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                 "start_stack", "arg_start", "arg_end", "env_start", "env_end", "argv_area", "argv_len"):
        setattr(child, name, getattr(mm, name))
    child.hiwater_vm = mm.total_vm
    child.mmap_base = mm.mmap_base
    # mlock is not inherited (dup_mmap clears VM_LOCKED_MASK; mm_init zeroes locked_vm)
    child.locked_vm = 0
    for v in mm.vmas:
        if v.flags & (1 << 17):  # VM_DONTCOPY: dup_mmap skips the VMA entirely
            child.vm_stat_account(VMA(v.start, v.end, v.flags & ~(VM_LOCKED | VM_LOCKONFAULT)), -1)
            continue
        nv = VMA(v.start, v.end, v.flags & ~(VM_LOCKED | VM_LOCKONFAULT), v.pgoff, v.file,
                 v.special, v.anon_name, AnonVma(v.anon_vma.root) if v.anon_vma is not None else None)
        child.vmas.insert(nv)
        if v.file is not None:
            v.file.nr_mappings += 1
        copy_page_range(mm, child, v)
    child.hiwater_rss = child.rss_pages
    child.vmas.publish()
    return child


def alloc_pid(k: Kernel, want: int | None) -> int:
    """alloc_pid(): `want` if it is free and in range, else the next free
    pid after the last one (wrapping to 300 at pid_max)."""
    if k.tasks and len(k.tasks) >= k.max_threads:
        # copy_process: nr_threads (every task not yet released) >= max_threads
        raise KernelError(errno.EAGAIN, f"threads-max ({k.max_threads}) reached")
    if want is not None:
        if not 1 <= want < k.config.pid_max:
            raise KernelError(errno.EINVAL, f"pid {want} out of range")
        if want in k.tasks:
            raise KernelError(errno.EEXIST, f"pid {want} is in use")
        k.last_pid = max(k.last_pid, want)
        return want
    pid = k.last_pid
    for _ in range(k.config.pid_max):
        pid = pid + 1 if pid + 1 < k.config.pid_max else 300
        if pid not in k.tasks:
            k.last_pid = pid
            return pid
    raise KernelError(errno.EAGAIN, "pid space exhausted")


def new_group(k: Kernel, tgid: int, parent: ThreadGroup | None, cred: Cred, mm: MM | None,
              cmdline: list[str], environ: list[str], exe: str | None, comm: str,
              flags: int, pgid: int | None = None, sid: int | None = None,
              nsproxy: "Nsproxy | None" = None) -> Task:
    """A new thread group with its leader, a child of `parent`."""
    tg = ThreadGroup(tgid, parent, pgid or tgid, sid or tgid, cred, mm, cmdline, environ, exe)
    tg.rlim = list(parent.rlim) if parent is not None else resource.init_rlimits(k.max_threads)
    t = Task(tgid, tg, comm[:15] if mm is not None else comm, k.now, flags=flags)
    t.cpus_allowed = k.sched.all_cpus_mask
    t.nsproxy = parent.leader.nsproxy if parent is not None else k.init_nsproxy
    if parent is not None:
        pt0 = parent.leader
        pnsp = nsproxy or pt0.nsproxy  # clone(CLONE_NEW*): the namespaces made for the child
        t.nsproxy = pnsp
        # the child lives in the parent's pid_for_children (and time_for_children)
        pns = pnsp.pid_for_children
        if pns.level > 0:
            t.pid_ns = pns
            alloc_pid_nrs(k, tgid, pns)
        if pnsp.time is not None:
            t.nsproxy = pnsp.with_(time=None)
        t.nsproxy.time_for_children.frozen = True  # timens_on_fork(): offsets now fixed
        t.loginuid, t.sessionid = pt0.loginuid, pt0.sessionid
        tg.cgroup = k.cgroups.attach(tgid, None, parent.cgroup) if parent.cgroup in k.cgroups.cgroups \
            else "/"
    else:
        k.cgroups.attach(tgid, None, "/")
    # copy_files(), copy_fs(): fork's copies (a kernel thread gets an empty table)
    pt = parent.leader if parent is not None else None
    t.files = pt.files.dup() if pt is not None and pt.files is not None else FilesStruct()
    t.fs = pt.fs.copy() if pt is not None and pt.fs is not None else FsStruct()
    tg.threads.append(t)
    if mm is not None:
        mm.users += 1
    if parent is not None:
        parent.children.append(tg)
        tg.tty_nr, tg.tpgid = parent.tty_nr, parent.tpgid
        t.cpus_allowed = parent.leader.cpus_allowed
        t.nice = parent.leader.nice
    k.tasks[tgid] = t
    k.groups[tgid] = tg
    pids.charge(k, t)  # pids_charge(): it counts in its cgroup and those above
    k.nr_forks += 1
    if parent is not None:
        tg.autogroup = parent.autogroup  # sched_autogroup_fork()
    k.sched.sched_fork(t, parent.leader if parent is not None else None)
    return t


def check_nproc(k: Kernel, tg: ThreadGroup) -> None:
    """copy_process()'s RLIMIT_NPROC check for a new task of `tg`'s real
    user (resource.nproc_overlimit: EAGAIN)."""
    uid = tg.cred.uid
    if uid and tg.cred.euid:  # (root is exempt: no count needed)
        n = sum(len(g.threads) for g in k.groups.values() if g.cred.uid == uid)
        if resource.nproc_overlimit(n, tg.rlim, uid, False):
            raise KernelError(errno.EAGAIN, f"RLIMIT_NPROC ({tg.rlim[resource.RLIMIT_NPROC].cur}) of uid {uid} reached")


def copy_process(k: Kernel, parent: Task, child_pid: int | None, clone_flags: int = 0) -> int:
    """fork(2) by `parent` (its group not a zombie): the child group, its
    mm copied; returns the child's pid. `clone_flags`: CLONE_NEW* for the
    child (its own namespaces, checked before anything is made)."""
    ptg = parent.tg
    check_nproc(k, ptg)
    pids.can_fork(k, ptg)  # cgroup_can_fork(): pids.max of its cgroup and those above
    nsp, user = None, None
    inum = k.ns_next_inum
    if clone_flags:
        try:
            nsp, user = create_new_namespaces(k, parent, clone_flags, ptg.cred.euid == 0)
        except OSError as e:
            raise KernelError(e.errno, str(e.strerror or e)) from None
    try:
        cpid = alloc_pid(k, child_pid)
    except KernelError:
        if nsp is not None:  # free_nsproxy(): the namespaces made for the child go, and their numbers
            k.files.mnt_ns.pop(nsp.mnt, None)
            k.ns_next_inum = inum
        raise
    mm = dup_mm(ptg.mm) if ptg.mm is not None else None
    if mm is not None:  # init_new_context(): first trim a second after creation, not at once
        mm.next_trim_cpumask = k.jiffies + k.config.hz
    t = new_group(k, cpid, ptg, Cred(**vars(ptg.cred)), mm, list(ptg.cmdline),
                  list(ptg.environ), ptg.exe, parent.comm,
                  (parent.flags & ~PF_NOT_INHERITED | PF_FORKNOEXEC) & ~PF_KTHREAD, nsproxy=nsp)
    if user is not None:
        t.tg.cred = replace(t.tg.cred, user_ns=user)
    t.tg.pgid, t.tg.sid, t.tg.umask = ptg.pgid, ptg.sid, ptg.umask
    t.tg.sig_ignore, t.tg.sig_catch = ptg.sig_ignore, ptg.sig_catch
    t.tg.oom_score_adj, t.tg.oom_score_adj_min = ptg.oom_score_adj, ptg.oom_score_adj_min
    t.cpu = parent.cpu
    t.no_new_privs, t.seccomp_mode, t.seccomp_filters = parent.no_new_privs, parent.seccomp_mode, parent.seccomp_filters
    t.spec_flags = parent.spec_flags
    t.real_parent = parent
    k.sched.sched_fork(t, parent)  # the forking thread's, not the leader's
    freezer.post_fork(k, t)  # cgroup_post_fork(): born frozen in a frozen cgroup
    pids.forked(k, t)
    return cpid


def copy_thread(k: Kernel, creator: Task, comm: str | None, tid: int | None) -> int:
    """clone(CLONE_VM|CLONE_THREAD|...) by `creator`: a new thread in its
    group, sharing its mm; returns the new tid."""
    tg = creator.tg
    check_nproc(k, tg)
    pids.can_fork(k, tg)
    tid = alloc_pid(k, tid)
    t = Task(tid, tg, (comm or creator.comm)[:15], k.now,
             flags=creator.flags & ~PF_NOT_INHERITED | PF_FORKNOEXEC, cpu=creator.cpu,
             cpus_allowed=creator.cpus_allowed, nice=creator.nice, exit_signal=-1,
             nsproxy=creator.nsproxy, files=creator.files, fs=creator.fs, pid_ns=creator.pid_ns,
             loginuid=creator.loginuid, sessionid=creator.sessionid, no_new_privs=creator.no_new_privs,
             seccomp_mode=creator.seccomp_mode, seccomp_filters=creator.seccomp_filters,
             spec_flags=creator.spec_flags)
    if creator.pid_ns is not None:
        alloc_pid_nrs(k, tid, creator.pid_ns)
    if t.files is not None:
        t.files.users += 1  # CLONE_FILES: one table
    tg.threads.append(t)
    k.tasks[tid] = t
    pids.charge(k, t)
    k.sched.sched_fork(t, creator)
    freezer.post_fork(k, t)
    if tg.mm is not None:
        tg.mm.users += 1
    k.nr_forks += 1
    pids.forked(k, t)
    return tid


def kernel_thread(k: Kernel, comm: str, pid: int | None, cpu: int | None) -> int:
    """A kernel thread (no mm), a child of kthreadd (pid 2) unless it is
    kthreadd; its flags, scheduling and binding from its kind. Returns its pid."""
    pid = alloc_pid(k, pid)
    parent = k.groups.get(2) if pid != 2 else None
    # copy_process() for kthreadd itself; kthreadd() then sets PF_NOFREEZE,
    # which every thread it creates inherits
    flags = PF_KTHREAD | PF_FORKNOEXEC | PF_NOFREEZE
    if parent is not None:
        flags = (parent.leader.flags & ~PF_NOT_INHERITED) | PF_FORKNOEXEC
    kind = kthread_kind(comm) if pid != 2 else KthreadKind()
    flags = (flags | kind.set_flags) & ~kind.clear_flags
    t = new_group(k, pid, parent, Cred.of(0, 0), None, [], [], None, comm, flags)
    t.tg.pgid = t.tg.sid = 0
    t.tg.sig_ignore = (1 << 64) - 1
    t.tg.umask = 0o022
    t.tg.tty_nr, t.tg.tpgid = 0, -1
    if pid == 2:
        t.exit_signal = 0  # rest_init(): kernel_thread(kthreadd, ..., CLONE_FS | CLONE_FILES)
    t.state = kind.state
    t.nice = kind.nice
    k.sched.set_params(t, kind.policy, kind.rt_priority)
    if cpu is None and kind.bound:
        named = cpu_in_name(comm)
        cpu = named if named is not None and named < k.config.nr_cpus else None
    if cpu is not None:
        k.check_cpu(cpu)
        t.cpus_allowed = 1 << cpu
        t.cpu = cpu
    return pid


class ForkSyscalls:
    """fork(), clone() and kernel_thread() as the Kernel's entry points, with the
    limits fork() checks (kernel.threads-max, kernel.pid_max) and spawn (fork+exec)
    (a Kernel mixin)."""

    def create_init(self: "Kernel", argv: list[str] | None = None) -> int:
        """pid 1: the first user process, exec'd from nothing."""
        with self.lock:
            t = new_group(self, alloc_pid(self, 1), None, Cred.of(0, 0), None, [], [], None,
                          "swapper", PF_RANDOMIZE)
            t.tg.sid = t.tg.pgid = 1
            self.exec(1, "/usr/lib/systemd/systemd", argv or ["/sbin/init"], ["HOME=/", "TERM=linux"])
            t.tg.rlim = resource.systemd_pid1(t.tg.rlim)  # the init system's policy (procsim/resource.py)
            return 1

    def kthread(self: "Kernel", comm: str, pid: int | None = None, cpu: int | None = None) -> int:
        """A kernel thread (no mm), a child of kthreadd (pid 2) unless it is
        kthreadd. Its flags, scheduling and binding follow its kind
        (procsim/kthread.py); a per-CPU kind without `cpu` is bound to the
        CPU in its name."""
        with self.lock:
            pid = kernel_thread(self, comm, pid, cpu)
            self._changed("spawn", pid=pid)
            return pid

    def fork(self: "Kernel", pid: int, child_pid: int | None = None, clone_flags: int = 0) -> int:
        """fork(), or clone() with CLONE_NEW* `clone_flags` (the child in new
        namespaces; a new pid namespace's first process is its pid 1)."""
        with self.lock:
            parent = self.task(pid)
            ptg = parent.tg
            if ptg.zombie:
                raise KernelError(errno.ESRCH, f"{pid} is a zombie")
            cpid = copy_process(self, parent, child_pid, clone_flags)
            self._changed("spawn", pid=cpid)
            return cpid

    def clone_thread(self: "Kernel", pid: int, comm: str | None = None, tid: int | None = None) -> int:
        """clone(CLONE_VM|CLONE_THREAD|...): a new thread in pid's group."""
        with self.lock:
            creator = self.task(pid)
            tg = creator.tg
            if tg.zombie:
                raise KernelError(errno.ESRCH, f"{pid} is a zombie")
            tid = copy_thread(self, creator, comm, tid)
            self._changed("clone", pid=tg.tgid, tid=tid)
            return tid

    def spawn(self: "Kernel", argv: list[str], *, parent: int = 1, uid: int | None = None, gid: int | None = None,
              groups: tuple[int, ...] = (), exe: str | None = None, env: list[str] | None = None,
              pid: int | None = None, clone_flags: int = 0) -> int:
        """fork from `parent` (clone with CLONE_NEW* `clone_flags`), set
        credentials (None: the parent's), exec argv[0] (or exe)."""
        with self.lock:
            path = exe or (argv[0] if argv else "")
            if not path:  # checked before the fork, so a bad spawn leaves nothing behind
                raise KernelError(errno.ENOENT, "spawn: no program (empty argv and no exe)")
            if not path.startswith("/"):
                path = "/usr/bin/" + path
            child = self.fork(parent, pid, clone_flags)
            if parent == 1 and self.groups[1].exe == "/usr/lib/systemd/systemd":
                # a service: systemd sets its limits before the exec
                self.groups[child].rlim = resource.systemd_service(resource.init_rlimits(self.max_threads))
            if uid is not None or gid is not None or groups:
                pc = self.group(parent).cred
                self.group(child).cred = replace(
                    Cred.of(pc.euid if uid is None else uid, pc.egid if gid is None else gid, groups),
                    user_ns=pc.user_ns)
            self.exec(child, path, argv, env if env is not None else self.group(parent).environ)
            return child

    @property
    def max_threads(self: "Kernel") -> int:
        """The limit fork() enforces: kernel.threads-max once written, else
        set_max_threads()'s boot value, one task per 8 thread-stack-sized
        chunks of RAM."""
        if self._max_threads is not None:
            return self._max_threads
        if self.config.threads_max is not None:  # a captured machine's (procsim/capture/)
            return self.config.threads_max
        return max(20, min(self.config.nr_pages // 32, 0x3FFFFFFF))

    def set_max_threads(self: "Kernel", n: int) -> None:
        """kernel.threads-max (sysctl_max_threads); the range is the sysctl's."""
        with self.lock:
            self._max_threads = n
            self._changed("sysctl")

    def set_pid_max(self: "Kernel", n: int) -> None:
        """kernel.pid_max: pids at or above it are no longer handed out
        (existing ones stay); the range is the sysctl's."""
        with self.lock:
            self.config.pid_max = n
            self._changed("sysctl")
