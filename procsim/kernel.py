"""Kernel: the machine. Owns the clock, CPUs, physical memory and the task
table, and offers the syscall-level API every other part goes through.

The entry points here check arguments, find the task, and call the code
that does the work, each part where Linux has it: process creation in
fork.py, exec in exec.py (the image in binfmt_elf.py), exit and wait in
exit.py, the clock in timekeeping.py, the memory syscalls in
mm/syscalls.py (and the mm code under mm/).

All mutation happens under `self.lock`; renderers read under it too, so a
file is always rendered from one instant.
"""

from __future__ import annotations

import dataclasses

import errno
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from procsim import cgroup, ioac, nsproxy, random_pool, read_write, resource, utsname
from procsim.binfmt_elf import LDSO, LIBC  # noqa: F401 (the default image's, for callers)
from procsim.config import KernelConfig
from procsim.errors import KernelError
from procsim.exec import do_execve
from procsim.exit import do_exit, do_group_exit, do_wait, exit_status
from procsim.fork import alloc_pid, copy_process, copy_thread, kernel_thread, new_group
from procsim.fs.syscalls import FileState, FileSyscalls
from procsim.ipc.shm import ShmIds
from procsim.mm import oom
from procsim.mm import page_alloc as M
from procsim.mm.counter_tree import make_shape
# the syscalls' constants, for callers of the API (madvise advice, mremap flags)
from procsim.mm.madvise import (MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_NOHUGEPAGE,  # noqa: F401
                                MADV_NORMAL, MADV_PAGEOUT, MADVISE_NAMES)
from procsim.mm.mm import MM
from procsim.mm.mremap import MREMAP_FIXED, MREMAP_MAYMOVE  # noqa: F401
from procsim.mm.oom import OomKiller
from procsim.mm.pagetable import PAGE_SIZE
from procsim.mm.swap import SwapDevice
from procsim.mm.syscalls import MmSyscalls
from procsim.mm.thp import THPSettings
from procsim.sched import NSEC, Sched
from procsim.sched_wait import USER_WAITS
from procsim.task import PF_KTHREAD, PF_NO_SETAFFINITY, PF_RANDOMIZE, Cred, Task, ThreadGroup
from procsim.timekeeping import Timekeeping
from procsim.vfs import VFS
from procsim.workload import Workloads


def _err(err: int, msg: str) -> KernelError:
    return KernelError(err, msg)


class Kernel(Timekeeping, MmSyscalls, FileSyscalls):
    """The machine's state and the syscall-level API; the clock and timed
    events are Timekeeping's (procsim/timekeeping.py), the memory syscalls
    MmSyscalls' (procsim/mm/syscalls.py), the file syscalls FileSyscalls'
    (procsim/fs/syscalls.py)."""

    def __init__(self, config: KernelConfig | None = None, at_boot: bool = False) -> None:
        """A machine `boot_uptime` seconds after a boot in which nothing ran
        (its CPUs idled throughout); or, `at_boot`, one whose clock is at 0,
        for a caller that plays the history up to boot_uptime through the
        kernel itself (the scenario loader, procsim/history.py)."""
        self.config = config = config or KernelConfig()
        self.lock = threading.RLock()
        self.rng = random.Random(config.seed)
        self.now = 0 if at_boot else int(config.boot_uptime * NSEC)  # ns since boot (CLOCK_BOOTTIME)
        self.btime = config.btime
        self._wall_origin: float | None = None
        reserved = config.kernel_reserved_bytes // PAGE_SIZE
        self.mem = M.MemMap(config.nr_pages, reserved, config.mapcount_model)
        self.mem.thp = THPSettings(config.thp_enabled, config.thp_sizes)
        self.mem.soft_dirty = config.mem_soft_dirty
        self.mem.swap = SwapDevice(config.swap_bytes)
        self.mem.hugetlb.set_nr(config.hugepages)  # the boot pool, as vm.nr_hugepages= does
        # every mm's RSS counters: counter trees (or flat percpu_counters) for nr_cpus
        self.mem.rss_shape = make_shape(config.rss_counter, config.nr_cpus)
        self.oom = OomKiller(self)
        self.mem.oom_handler = self.oom.alloc_failed
        self.tasks: dict[int, Task] = {}          # every live or zombie thread, by tid
        self.sched = Sched(config, self.tasks)
        self.sched.clock = self.now
        self.vfs = VFS()
        # open files, fd numbers' inodes, mount tables (procsim/fs/)
        self.files = FileState(config.nr_pages, reserved)
        self.uts = utsname.UtsName(config.hostname.encode())  # nodename, domainname (init_uts_ns)
        self.init_ns = nsproxy.init_namespaces(self.uts)  # the initial namespace of each kind, by kind
        self.ns_next_inum = nsproxy.PROC_DYNAMIC_FIRST  # proc_alloc_inum()'s next
        self.cgroups = cgroup.CgroupRoot()  # the v2 hierarchy's membership
        self.crng = random_pool.Crng(config.seed)  # kernel.random: boot_id, uuid
        self.shm = ShmIds()  # SysV shared memory segments (procsim/ipc/shm.py)
        self.audit_sessionid = 0  # the last session id audit_set_loginuid() gave
        self.init_nsproxy = nsproxy.init_nsproxy(self.init_ns)
        self._max_threads: int | None = None  # kernel.threads-max, once written
        self.groups: dict[int, ThreadGroup] = {}  # thread groups, by tgid
        self.last_pid = 0
        self.nr_forks = 0
        self.avenrun = [0, 0, 0]
        self.load_freq = (5 * config.hz + 1) * NSEC // config.hz  # LOAD_FREQ: 5 s and a jiffy
        self._next_load = self.now + self.load_freq
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._event_seq = 0
        # told of every change _changed records: (what, details), under the lock
        self.observers: list[Callable[[str, dict], None]] = []
        # release_task(): told of each task as it leaves the task table, under
        # the lock (procfs flushes the pid's dentries from it: proc_flush_pid)
        self.on_release: list[Callable[[Task], None]] = []
        # The vDSO: two kernel pages (from the reserved region) every process maps.
        self.vdso_pages = np.arange(2, 4, dtype=np.int64)
        self._vdso_memo: tuple[int, dict[int, int]] | None = None
        # the memory snapshot of the current generation (procsim/mm/show_mem.py): a pure cache
        self.mem_snapshot_memo: tuple[int, object] | None = None
        for cpu in self.sched.cpus:  # every CPU idled since boot
            cpu.idle = self.now
        self.generation = 0  # bumped on every change; lets caches know
        self.workloads = Workloads(self)  # access patterns run as the clock moves (procsim/workload.py)

    # -- lookup ---------------------------------------------------------------

    def task(self, tid: int) -> Task:
        t = self.tasks.get(tid)
        if t is None or t.dead and not t.is_leader:
            raise _err(errno.ESRCH, f"no such task {tid}")
        return t

    def group(self, pid: int) -> ThreadGroup:
        return self.task(pid).tg

    def _user_mm(self, tid: int) -> tuple[Task, MM]:
        t = self.task(tid)
        if t.tg.zombie:
            raise _err(errno.ESRCH, f"task {tid} is a zombie")
        if t.mm is None:
            raise _err(errno.EINVAL, f"task {tid} is a kernel thread")
        t.mm.rss.cpu = t.cpu  # what the syscall does to RSS counts on the task's CPU
        return t, t.mm

    def _changed(self, what: str, **info) -> None:
        """Record a change: the one place `generation` moves (every cache of
        a render keys on it), and the observers hear what changed."""
        self.generation += 1
        for cb in self.observers:
            cb(what, info)

    @contextmanager
    def syscall(self, name: str) -> Iterator[None]:
        """Run a caller's kernel calls (a command) under the lock. A call that
        fails half-way (out of memory mid-touch) may have changed something
        before it failed: the failure is recorded as a change too, so no
        cache trusts what it kept from before."""
        with self.lock:
            try:
                yield
            except BaseException:
                self._changed("failed", call=name)
                raise

    def _release_task(self, t: Task) -> None:
        """release_task(): `t` leaves the task table and the release hooks
        (procfs's proc_flush_pid) hear of it."""
        if self.tasks.pop(t.pid, None) is not None:
            nsproxy.free_pid_nrs(self, t.pid, t.pid_ns)
            if t.is_leader:
                self.cgroups.leave(t.tgid, t.tg.cgroup)
            for cb in self.on_release:
                cb(t)

    # -- processes ------------------------------------------------------------

    def create_init(self, argv: list[str] | None = None) -> int:
        """pid 1: the first user process, exec'd from nothing."""
        with self.lock:
            t = new_group(self, alloc_pid(self, 1), None, Cred.of(0, 0), None, [], [], None,
                          "swapper", PF_RANDOMIZE)
            t.tg.sid = t.tg.pgid = 1
            self.exec(1, "/usr/lib/systemd/systemd", argv or ["/sbin/init"], ["HOME=/", "TERM=linux"])
            t.tg.rlim = resource.systemd_pid1(t.tg.rlim)  # the init system's policy (procsim/resource.py)
            return 1

    def kthread(self, comm: str, pid: int | None = None, cpu: int | None = None) -> int:
        """A kernel thread (no mm), a child of kthreadd (pid 2) unless it is
        kthreadd. Its flags, scheduling and binding follow its kind
        (procsim/kthread.py); a per-CPU kind without `cpu` is bound to the
        CPU in its name."""
        with self.lock:
            pid = kernel_thread(self, comm, pid, cpu)
            self._changed("spawn", pid=pid)
            return pid

    def fork(self, pid: int, child_pid: int | None = None, clone_flags: int = 0) -> int:
        """fork(), or clone() with CLONE_NEW* `clone_flags` (the child in new
        namespaces; a new pid namespace's first process is its pid 1)."""
        with self.lock:
            parent = self.task(pid)
            ptg = parent.tg
            if ptg.zombie:
                raise _err(errno.ESRCH, f"{pid} is a zombie")
            cpid = copy_process(self, parent, child_pid, clone_flags)
            self._changed("spawn", pid=cpid)
            return cpid

    def clone_thread(self, pid: int, comm: str | None = None, tid: int | None = None) -> int:
        """clone(CLONE_VM|CLONE_THREAD|...): a new thread in pid's group."""
        with self.lock:
            creator = self.task(pid)
            tg = creator.tg
            if tg.zombie:
                raise _err(errno.ESRCH, f"{pid} is a zombie")
            tid = copy_thread(self, creator, comm, tid)
            self._changed("clone", pid=tg.tgid, tid=tid)
            return tid

    def exec(self, pid: int, path: str, argv: list[str], envp: list[str] | None = None,
             layout: str | None = None, build_ids: dict[str, str] | None = None) -> None:
        """execve: a fresh mm with a realistic layout (ELF segments of the
        executable, ld.so and libc, heap, stack, vvar, vdso); or, with
        `layout` (the text of a real /proc/PID/maps), exactly those VMAs,
        with `build_ids` (name -> hex) for their files (procsim/layout.py)."""
        with self.lock:
            t = self.task(pid)
            tg = t.tg
            if tg.zombie:
                raise _err(errno.ESRCH, f"{pid} is a zombie")
            if tg.mm is None and t.flags & PF_KTHREAD:
                raise _err(errno.EINVAL, "kernel threads do not exec")
            if not path.startswith("/"):
                raise _err(errno.ENOENT, f"exec path must be absolute: {path}")
            do_execve(self, t, path, argv, envp or [], layout, build_ids)
            self._changed("exec", pid=tg.tgid)

    def exit(self, tid: int, code: int = 0) -> None:
        """A thread exits; when the last one goes, the group becomes a zombie."""
        with self.lock:
            t = self.task(tid)
            if t.tg.zombie:
                raise _err(errno.ESRCH, f"{tid} is already a zombie")
            if t.dead:
                raise _err(errno.ESRCH, f"{tid} has already exited")
            do_exit(self, t, exit_status(code))

    def exit_group(self, pid: int, code: int = 0) -> None:
        with self.lock:
            tg = self.group(pid)
            if tg.zombie:
                raise _err(errno.ESRCH, f"{pid} is already a zombie")
            do_group_exit(self, tg, exit_status(code))

    def kill(self, pid: int, sig: int = 9) -> None:
        """The process dies from signal `sig` (kill(2): 0 only checks the pid)."""
        with self.lock:
            if not 0 <= sig <= 64:
                raise _err(errno.EINVAL, f"invalid signal {sig}")
            tg = self.group(pid)
            if sig == 0:
                return
            if tg.zombie:
                raise _err(errno.ESRCH, f"{pid} is already a zombie")
            # Killed by a signal, the wait status is the signal number itself
            # (stat field 52 showed 9 << 8 = 2304 for SIGKILL, the real kernel 9).
            do_group_exit(self, tg, sig & 0x7F)

    def wait(self, pid: int, child: int | None = None) -> int:
        """The parent reaps a zombie child (any, if child is None); returns its pid."""
        with self.lock:
            return do_wait(self, pid, child)

    # -- credentials and scheduling ---------------------------------------------

    def set_cred(self, pid: int, uid: int, gid: int, groups: tuple[int, ...] = ()) -> None:
        with self.lock:
            tg = self.group(pid)
            tg.cred = dataclasses.replace(Cred.of(uid, gid, groups), user_ns=tg.cred.user_ns)
            self._changed("cred", pid=pid)

    def run(self, tid: int, cpu: int, preempt: bool = False) -> None:
        """Switch `cpu` to task `tid` (migrating it if it ran elsewhere)."""
        with self.lock:
            t = self.task(tid)
            if t.dead:
                raise _err(errno.ESRCH, f"{tid} has exited")
            self.check_cpu(cpu)
            if not t.cpus_allowed >> cpu & 1:
                raise _err(errno.EINVAL, f"cpu {cpu} is not in the affinity of {tid}")
            self.sched.switch_to(self.sched.cpus[cpu], t, preempt)
            self._changed("sched", tid=tid)

    def sleep(self, tid: int, state: str = "S", wait: str | None = None) -> None:
        """The task blocks (S or D) or stops (T), or a kernel thread waits in
        TASK_IDLE (I, counted in no load); its CPU goes idle. `wait`: the
        blocking call a user task sleeps in (procsim/sched_wait.py; None:
        the one it had, or its program's usual one)."""
        with self.lock:
            t = self.task(tid)
            if state not in ("S", "D", "T") and not (state == "I" and t.tg.kthread):
                raise _err(errno.EINVAL, f"cannot sleep in state {state!r}")
            if wait is not None:
                if wait not in USER_WAITS:
                    raise _err(errno.EINVAL, f"wait: expected one of {', '.join(USER_WAITS)}, got {wait!r}")
                if t.tg.kthread:
                    raise _err(errno.EINVAL, f"wait: {tid} is a kernel thread (it waits in its thread function)")
                t.wait = wait
            if t.on_cpu:
                self.sched.switch_to(self.sched.cpus[t.cpu], None)
            else:
                self.sched.dequeue(t)
            t.state = state
            self._changed("sched", tid=tid)

    def wake(self, tid: int) -> None:
        """Make a sleeping task runnable (R) without putting it on a CPU."""
        with self.lock:
            t = self.task(tid)
            if t.dead:
                raise _err(errno.ESRCH, f"{tid} has exited")
            self.sched.enqueue(t)
            t.state = "R"
            self._changed("sched", tid=tid)

    def idle(self, cpu: int) -> None:
        with self.lock:
            self.check_cpu(cpu)
            self.sched.switch_to(self.sched.cpus[cpu], None)
            self._changed("sched", cpu=cpu)

    def set_affinity(self, tid: int, mask: int) -> None:
        """sched_setaffinity; a task running on a CPU it may no longer use moves."""
        with self.lock:
            t = self.task(tid)
            if t.flags & PF_NO_SETAFFINITY:  # bound kthreads and workqueue workers
                raise _err(errno.EINVAL, f"{tid} may not change its affinity (PF_NO_SETAFFINITY)")
            mask &= self.sched.all_cpus_mask
            if not mask:
                raise _err(errno.EINVAL, "affinity mask has no online CPU")
            t.cpus_allowed = mask
            if not mask >> t.cpu & 1:
                new = (mask & -mask).bit_length() - 1
                if t.on_cpu:
                    self.sched.switch_to(self.sched.cpus[t.cpu], None)
                    self.sched.switch_to(self.sched.cpus[new], t, preempt=True)
                else:
                    self.sched.set_task_cpu(t, new)
            self._changed("sched", tid=tid)

    def set_nice(self, tid: int, nice: int) -> None:
        with self.lock:
            if not -20 <= nice <= 19:
                raise _err(errno.EINVAL, "nice must be in -20..19")
            t = self.task(tid)
            self.sched.reweight(t)  # the load averages so far count at the old weight
            t.nice = nice
            self._changed("sched", tid=tid)

    def check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.config.nr_cpus:
            raise _err(errno.EINVAL, f"cpu {cpu} does not exist (0-{self.config.nr_cpus - 1})")

    # -- file I/O (procsim/read_write.py) ---------------------------------------

    def read(self, tid: int, path: str | None, count: int, offset: int | None = 0, fd: int | None = None) -> int:
        """pread(2) of `count` bytes at `offset` of the file at `path`; or,
        with `fd`, read(2) of the task's open file (at its position, which
        moves, unless `offset` is given: pread). The bytes returned (0 at or
        past EOF). Counts syscr and rchar (vfs_read), and the pages the page
        cache missed as read_bytes and pgpgin."""
        with self.lock:
            t = self._io_task(tid, count, offset or 0)
            if fd is None:
                n = read_write.vfs_read(self, t, read_write.path_inode(self, path), count, offset or 0)
            else:
                f = read_write.fd_file(self, t, fd, read_write.FMODE_READ)
                n = read_write.vfs_read(self, t, f.inode, count, f.f_pos if offset is None else offset)
                if offset is None:
                    f.f_pos += n
            self._changed("io", tid=t.pid)
            return n

    def write(self, tid: int, path: str | None, count: int, offset: int | None = 0, fd: int | None = None) -> int:
        """pwrite(2) of `count` bytes at `offset` of the file at `path` (it
        grows to cover them; a path not used before is a new, empty file):
        counts syscw and wchar (vfs_write), the pages newly dirtied as
        write_bytes; a partly written page that was not cached and held
        data is read first (read_bytes, pgpgin). Past RLIMIT_FSIZE the
        write is cut short, or fails EFBIG at the limit. With `fd`: write(2)
        at the open file's position (its end with O_APPEND), which moves,
        unless `offset` is given (pwrite)."""
        with self.lock:
            t = self._io_task(tid, count, offset or 0)
            try:
                if fd is None:
                    return read_write.vfs_write(self, t, read_write.path_inode(self, path, create=True), count,
                                                offset or 0)
                f = read_write.fd_file(self, t, fd, read_write.FMODE_WRITE)
                pos = offset if offset is not None else f.inode.size if f.f_flags & read_write.O_APPEND else f.f_pos
                n = read_write.vfs_write(self, t, f.inode, count, pos)
                if offset is None:
                    f.f_pos = pos + n
                return n
            finally:
                self._changed("io", tid=t.pid)

    def truncate(self, tid: int, path: str, length: int) -> None:
        """truncate(2): the file at `path` gets `length` bytes. Growing past
        RLIMIT_FSIZE is EFBIG; shrinking unmaps the pages past the new end
        from every address space and drops them from the page cache: the
        dirty ones count as the caller's cancelled_write_bytes."""
        with self.lock:
            t = self._io_task(tid, length, 0)
            read_write.do_truncate(self, t, path, length)
            self._changed("io", tid=t.pid)

    def _io_task(self, tid: int, count: int, offset: int) -> Task:
        t = self.task(tid)
        if t.dead or t.tg.zombie:
            raise _err(errno.ESRCH, f"task {tid} has exited")
        if count < 0 or offset < 0:
            raise _err(errno.EINVAL, "count and offset must not be negative")
        return t

    def io_accounting(self, tid: int, whole: bool = True) -> dict[str, int]:
        """/proc/PID/io's counters (whole: the thread group's), or a thread's own."""
        with self.lock:
            t = self.task(tid)
            return (ioac.group_ioac(t.tg) if whole else t.ioac).as_dict()

    # -- whole-machine views --------------------------------------------------

    @property
    def max_threads(self) -> int:
        """The limit fork() enforces: kernel.threads-max once written, else
        set_max_threads()'s boot value, one task per 8 thread-stack-sized
        chunks of RAM."""
        if self._max_threads is not None:
            return self._max_threads
        return max(20, min(self.config.nr_pages // 32, 0x3FFFFFFF))

    def set_max_threads(self, n: int) -> None:
        """kernel.threads-max (sysctl_max_threads); the range is the sysctl's."""
        with self.lock:
            self._max_threads = n
            self._changed("sysctl")

    def prlimit(self, pid: int, res: int, new: resource.Rlimit | None = None,
                capable: bool | None = None) -> resource.Rlimit:
        """prlimit(2) by the process itself: the old limit; with `new`, set
        it if do_prlimit() allows (a raised hard limit needs CAP_SYS_RESOURCE:
        `capable`, by default whether the process is root; the scenario
        loader sets limits as the init system does, capable)."""
        with self.lock:
            tg = self.task(pid).tg
            if not 0 <= res < resource.RLIM_NLIMITS:
                raise _err(errno.EINVAL, f"prlimit: no resource {res}")
            old = tg.rlim[res]
            if new is not None:
                try:
                    resource.check_new(old, new, res, tg.cred.euid == 0 if capable is None else capable)
                except OSError as e:
                    raise _err(e.errno, f"prlimit: {e.strerror}") from None
                tg.rlim[res] = new
                self._changed("rlimit", pid=tg.tgid, resource=res)
            return old

    def sethostname(self, name: bytes, pid: int | None = None) -> None:
        """sethostname(2): the utsname nodename (of `pid`'s uts namespace;
        None: the initial one)."""
        self._set_uts("nodename", name, pid)

    def setdomainname(self, name: bytes, pid: int | None = None) -> None:
        """setdomainname(2): the utsname domainname (NIS)."""
        self._set_uts("domainname", name, pid)

    def uts_of(self, t: Task | None) -> utsname.UtsName:
        """utsname(): the names of t's uts namespace (None: init_uts_ns)."""
        if t is None or t.nsproxy is None:
            return self.uts
        return t.nsproxy.uts.uts

    def _set_uts(self, field: str, name: bytes, pid: int | None = None) -> None:
        if len(name) > utsname.NEW_UTS_LEN:
            raise _err(errno.EINVAL, f"{field}: longer than {utsname.NEW_UTS_LEN} bytes")
        with self.lock:
            setattr(self.uts_of(None if pid is None else self.task(pid)), field, name)
            self._changed("uts", field=field)

    # -- namespaces, cgroups, audit ------------------------------------------------

    def unshare(self, pid: int, flags: int) -> None:
        """unshare(2) by `pid` (a thread: its own nsproxy). CLONE_NEWPID and
        CLONE_NEWTIME change only what its children get."""
        with self.lock:
            t = self.task(pid)
            if t.tg.zombie or t.dead or t.nsproxy is None:
                raise _err(errno.ESRCH, f"{pid} has exited")
            capable = t.tg.cred.euid == 0
            try:
                new, user = nsproxy.create_new_namespaces(self, t, flags, capable)
            except OSError as e:
                raise _err(e.errno, str(e.strerror or e)) from None
            t.nsproxy = new
            if user is not None:
                # a new user ns: the creator's ids are unmapped (overflow ids
                # until uid_map is written) but it holds every capability there
                t.tg.cred = dataclasses.replace(t.tg.cred, user_ns=user)
            self._changed("ns", pid=pid)

    def set_id_map(self, pid: int, which: str, lines: tuple[tuple[int, int, int], ...]) -> None:
        """A write of /proc/PID/uid_map or gid_map (map_write): once, by a
        process with the right in the parent namespace; EPERM if written."""
        with self.lock:
            t = self.task(pid)
            ns = nsproxy.user_ns(self, t)
            if ns.parent is None or getattr(ns, which):
                raise _err(errno.EPERM, f"{which}: already set")
            if not lines or len(lines) > 340:
                raise _err(errno.EINVAL, f"{which}: 1 to 340 lines")
            for first, lower, count in lines:
                if count == 0 or first + count > 1 << 32 or lower + count > 1 << 32:
                    raise _err(errno.EINVAL, f"{which}: bad extent")
            if which == "gid_map" and ns.setgroups and t.tg.cred.euid != 0:
                raise _err(errno.EPERM, "gid_map: setgroups must be denied first")
            setattr(ns, which, tuple(lines))
            self._changed("ns", pid=pid)

    def set_setgroups(self, pid: int, allow: bool) -> None:
        """proc_setgroups_write(): deny only before gid_map is written, and
        never back to allow (EPERM)."""
        with self.lock:
            ns = nsproxy.user_ns(self, self.task(pid))
            if allow and not ns.setgroups or not allow and ns.gid_map:
                raise _err(errno.EPERM, "setgroups")
            if ns.setgroups != allow:
                ns.setgroups = allow
                self._changed("ns", pid=pid)

    def set_timens_offsets(self, pid: int, offsets: dict[int, tuple[int, int]], capable: bool = True) -> None:
        """proc_timens_set_offset() of pid's time_for_children: EACCES once a
        task is in it (or for the initial one), EPERM without CAP_SYS_TIME."""
        with self.lock:
            t = self.task(pid)
            ns = t.nsproxy.time_for_children
            if ns is self.init_ns["time"] or ns.frozen:
                raise _err(errno.EACCES, "timens_offsets: the namespace has tasks")
            if not capable:
                raise _err(errno.EPERM, "timens_offsets: needs CAP_SYS_TIME")
            new = list(ns.time_offsets)
            for i, v in offsets.items():
                new[i] = v
            ns.time_offsets = tuple(new)
            self._changed("ns", pid=pid)

    def copy_mnt_ns(self, old, new) -> None:
        """copy_mnt_ns(): the new namespace's table, a copy of the old's."""
        src = self.mnt_ns_table(old)
        top = max(m.mnt_id for tab in self.files.mnt_ns.values() for m in tab.mounts)
        self.files.mnt_ns[new] = src.copy(top + 1)

    def cgroup_mkdir(self, path: str) -> None:
        with self.lock:
            try:
                self.cgroups.mkdir(path)
            except OSError as e:
                raise _err(e.errno, str(e.strerror or e)) from None
            self._changed("cgroup", path=path)

    def cgroup_attach(self, pid: int, path: str, create: bool = False) -> None:
        """A write of `pid` to PATH/cgroup.procs: the whole thread group moves."""
        with self.lock:
            tg = self.group(pid)
            if tg.zombie:
                raise _err(errno.ESRCH, f"{pid} is a zombie")
            try:
                if create:
                    self.cgroups.mkdir_p(path)
                tg.cgroup = self.cgroups.attach(tg.tgid, tg.cgroup, path)
            except OSError as e:
                raise _err(e.errno, str(e.strerror or e)) from None
            self._changed("cgroup", pid=pid)

    def set_loginuid(self, pid: int, uid: int, capable: bool = True) -> None:
        """audit_set_loginuid() by `pid` itself: without CAP_AUDIT_CONTROL
        only while its loginuid is unset (EPERM after). A set uid starts a
        new session; 4294967295 unsets both."""
        with self.lock:
            t = self.task(pid)
            if uid < 0 or uid > 4294967295:
                raise _err(errno.EINVAL, f"loginuid {uid}")
            if not capable and t.loginuid != 4294967295:
                raise _err(errno.EPERM, "loginuid is set (needs CAP_AUDIT_CONTROL)")
            if uid != 4294967295:
                self.audit_sessionid += 1
                t.sessionid = self.audit_sessionid
            else:
                t.sessionid = 4294967295
            t.loginuid = uid
            self._changed("audit", pid=pid)

    def set_pid_max(self, n: int) -> None:
        """kernel.pid_max: pids at or above it are no longer handed out
        (existing ones stay); the range is the sysctl's."""
        with self.lock:
            self.config.pid_max = n
            self._changed("sysctl")

    def thread_groups(self) -> list[ThreadGroup]:
        return [self.groups[k] for k in sorted(self.groups)]

    def nr_threads(self) -> int:
        return sum(len(g.threads) for g in self.groups.values())

    def spawn(self, argv: list[str], *, parent: int = 1, uid: int | None = None, gid: int | None = None,
              groups: tuple[int, ...] = (), exe: str | None = None, env: list[str] | None = None,
              pid: int | None = None, clone_flags: int = 0) -> int:
        """fork from `parent` (clone with CLONE_NEW* `clone_flags`), set
        credentials (None: the parent's), exec argv[0] (or exe)."""
        with self.lock:
            path = exe or (argv[0] if argv else "")
            if not path:  # checked before the fork, so a bad spawn leaves nothing behind
                raise _err(errno.ENOENT, "spawn: no program (empty argv and no exe)")
            if not path.startswith("/"):
                path = "/usr/bin/" + path
            child = self.fork(parent, pid, clone_flags)
            if parent == 1 and self.groups[1].exe == "/usr/lib/systemd/systemd":
                # a service: systemd sets its limits before the exec
                self.groups[child].rlim = resource.systemd_service(resource.init_rlimits(self.max_threads))
            if uid is not None or gid is not None or groups:
                pc = self.group(parent).cred
                self.group(child).cred = dataclasses.replace(
                    Cred.of(pc.euid if uid is None else uid, pc.egid if gid is None else gid, groups),
                    user_ns=pc.user_ns)
            self.exec(child, path, argv, env if env is not None else self.group(parent).environ)
            return child

    # -- writes through procfs and sysfs ---------------------------------------------

    def set_oom_score_adj(self, pid: int, value: int, capable: bool = True, legacy: bool = False) -> None:
        """A write to /proc/PID/oom_score_adj (or, `legacy`, oom_adj, already
        on the oom_score_adj scale): __set_oom_adj(). EACCES for a writer
        without CAP_SYS_RESOURCE going below the floor (procsim/mm/oom.py)."""
        with self.lock:
            tg = self.group(pid)
            try:
                oom.set_oom_adj(tg, value, capable, legacy)
            except oom.OomAdjDenied as e:
                raise _err(errno.EACCES, str(e)) from None
            self._changed("oom_score_adj", pid=tg.tgid)

    def set_proctitle(self, pid: int, argv: list[str]) -> None:
        """A process rewriting its own argv area, as setproctitle() does
        (nginx workers, postgres backends): a userspace write, which
        /proc/PID/cmdline reads back."""
        with self.lock:
            tg = self.group(pid)
            tg.cmdline = list(argv)
            self._changed("cmdline", pid=tg.tgid)
