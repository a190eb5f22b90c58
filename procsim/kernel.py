"""Kernel: the machine. Owns the clock, CPUs, physical memory and the task
table, and offers the syscall-level API every other part goes through.

The entry points check arguments, find the task, and call the code that
does the work, each part where Linux has it; they are mixins kept beside
that code (Kernel's docstring names them): process creation in fork.py,
exec in exec.py (the image in binfmt_elf.py), exit and wait in exit.py,
the clock in timekeeping.py, the memory syscalls in mm/syscalls.py (and
the mm code under mm/). This module keeps the state, the lookups, the one
record of change (_changed) and the release hook.

All mutation happens under `self.lock`; renderers read under it too, so a
file is always rendered from one instant.
"""

from __future__ import annotations

import collections
import dataclasses

import errno
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from procsim.ucount import UCountsTable
from procsim import capability, cgroup, nsproxy, psi, random_pool, utsname
from procsim.block import syscalls as block_syscalls
from procsim.binfmt_elf import LDSO, LIBC  # noqa: F401 (the default image's, for callers)
from procsim.config import KernelConfig
from procsim.cgroup import cfs_bandwidth, io as cgroup_io, memcontrol, pids as cgroup_pids
from procsim.cgroup.syscalls import CgroupSyscalls
from procsim.errors import KernelError
from procsim.exec import ExecSyscalls
from procsim.exit import ExitSyscalls
from procsim.fork import ForkSyscalls
from procsim.fs.anon_inodes import AnonInodeSyscalls
from procsim.fs.syscalls import FileState, FileSyscalls
from procsim.ipc.shm import ShmIds
from procsim.mm import oom, vmscan_node
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
from procsim.net import boot as net_boot
from procsim.net.netfilter import NetfilterState
from procsim.module import syscalls as module_syscalls
from procsim.nsproxy import NsSyscalls
from procsim.read_write import ReadWriteSyscalls
from procsim.resource import ResourceSyscalls
from procsim.sched import NSEC, Sched
from procsim.sched_syscalls import SchedSyscalls
from procsim.task import Cred, Task, ThreadGroup
from procsim.timekeeping import Timekeeping
from procsim.utsname import UtsSyscalls
from procsim.vfs import VFS
from procsim.workload import Workloads


# Changes that move counters and task states only (the clock's tick,
# run/sleep/wake/migrate/nice, I/O accounting, comm, oom_score_adj,
# timerslack): no path appears or goes, no owner or mode changes.
CONTENT_ONLY = frozenset(("tick", "sched", "io", "comm", "oom_score_adj", "timerslack"))
# Changes that, given the pid (and tid) they name, change what resolves only
# under those processes' own /proc directories, besides what is not under
# any process's (the /proc listing, machine-wide files): an mmap adds a
# map_files/ name in its own process only, an exit takes its pid's away.
PID_SCOPED = frozenset(("mm", "files", "exit", "reap", "spawn", "clone", "exec", "cmdline", "cred", "chdir",
                        "locks", "audit"))
# how many structural changes Kernel.struct_log remembers: a reader further
# behind drops everything it kept
STRUCT_LOG_LEN = 64


def _struct_scope(what: str, info: dict) -> tuple[int, ...] | None:
    """The pids a structural change is confined to (see PID_SCOPED): its
    process and the thread it names; or None: anywhere. (Kernel._changed
    adds the tasks it released: an exit_group's, de_thread()'s threads.)"""
    if what not in PID_SCOPED or not isinstance(info.get("pid"), int):
        return None
    tid = info.get("tid")
    return (info["pid"], tid) if isinstance(tid, int) else (info["pid"],)


def _err(err: int, msg: str) -> KernelError:
    return KernelError(err, msg)


class Kernel(Timekeeping, ForkSyscalls, ExecSyscalls, ExitSyscalls, SchedSyscalls, ReadWriteSyscalls,
             ResourceSyscalls, UtsSyscalls, NsSyscalls, CgroupSyscalls, MmSyscalls, FileSyscalls,
             AnonInodeSyscalls):
    """The machine's state and the syscall-level API. The entry points live
    with the code they call, each a mixin: the clock and timed events in
    timekeeping.py; fork, clone, kthreads, spawn and the fork limits in
    fork.py; execve and setproctitle in exec.py; exit, kill and wait in
    exit.py; run, sleep, wake, affinity and nice in sched_syscalls.py; read,
    write, truncate and the io counters in read_write.py; prlimit in
    resource.py; the uts names in utsname.py; unshare and the namespace
    files' writes in nsproxy.py; cgroup mkdir, rmdir and attach in cgroup/syscalls.py; the
    memory syscalls in mm/syscalls.py; the file syscalls in fs/syscalls.py
    and the anon inodes in fs/anon_inodes.py."""

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
        # disks and partitions, their counters, where swap lives (procsim/block/)
        self.block = block_syscalls.boot_block(self)
        self.uts = utsname.UtsName(config.hostname.encode())  # nodename, domainname (init_uts_ns)
        self.init_ns = nsproxy.init_namespaces(self.uts)  # the initial namespace of each kind, by kind
        self.ns_next_inum = nsproxy.PROC_DYNAMIC_FIRST  # proc_alloc_inum()'s next
        self.cgroups = cgroup.CgroupRoot()  # the v2 hierarchy (procsim/cgroup/)
        self.memcg = memcontrol.MemcgState(self)  # the memory controller's charges and limits
        self.reclaim = vmscan_node.NodeReclaim(self)  # kswapd, direct and memcg reclaim (procsim/mm/vmscan_node.py)
        self.crng = random_pool.Crng(config.seed)  # kernel.random: boot_id, uuid
        self.ucounts = UCountsTable()  # per-user counts: SigQ's pending signals (procsim/ucount.py)
        self.shm = ShmIds()  # SysV shared memory segments (procsim/ipc/shm.py)
        self.blkcg = cgroup_io.BlkcgState(self)  # the io controller: bios charged to cgroups (io.stat)
        self.cfs_bw = cfs_bandwidth.BandwidthState(self)  # cpu.max: CFS bandwidth, the freezer's css hooks
        self.audit_sessionid = 0  # the last session id audit_set_loginuid() gave
        self.init_nsproxy = nsproxy.init_nsproxy(self.init_ns)
        # network namespaces: devices, sockets, routes, MIBs (procsim/net/)
        self.net = net_boot(config.nr_cpus, self.init_ns["net"])
        self.netfilter = NetfilterState(self.mem.nr_pages - self.mem.first_free, config.nr_cpus, config.seed)
        self.modules = module_syscalls.boot(self)  # loaded modules (procsim/module/)
        self._max_threads: int | None = None  # kernel.threads-max, once written
        self.groups: dict[int, ThreadGroup] = {}  # thread groups, by tgid
        self.cgroups.live = lambda tgid: tgid in self.groups and not self.groups[tgid].zombie
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
        self.psi = psi.PsiState(self)  # pressure stall information (procsim/psi/): hears changes
        # The vDSO: two kernel pages (from the reserved region) every process maps.
        self.vdso_pages = np.arange(2, 4, dtype=np.int64)
        self._vdso_memo: tuple[int, dict[int, int]] | None = None
        # the memory snapshot of the current generation (procsim/mm/show_mem.py): a pure cache
        self.mem_snapshot_memo: tuple[int, object] | None = None
        self.mm_totals_memo: tuple[int, object] | None = None  # show_mem.mm_totals
        for cpu in self.sched.cpus:  # every CPU idled since boot
            cpu.idle = self.now
        self.generation = 0  # bumped on every change; lets caches know
        # bumped on every change but those of CONTENT_ONLY, which move
        # counters and states and never what a /proc path resolves to, its
        # attributes or a directory's names (a tick's scenario activity
        # records its own changes)
        self.struct_generation = 0
        # the _struct_scope of each of the latest structural changes, one
        # per struct_generation step: readers that keep per-path state drop
        # only the processes named
        self.struct_log: collections.deque[tuple[int, ...] | None] = collections.deque(maxlen=STRUCT_LOG_LEN)
        self._released: list[int] = []  # tids released since the last change (_release_task)
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
        if what not in CONTENT_ONLY:
            self.struct_generation += 1
            scope = _struct_scope(what, info)
            if scope is not None and self._released:
                scope += tuple(self._released)
            self.struct_log.append(scope)
        self._released.clear()
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
            leader = t.is_leader
            if leader:
                self.cgroups.leave(t.tgid, t.tg.cgroup)
            cgroup_pids.released(self, t, leader)  # pids_release()
            self._released.append(t.pid)  # the next change's scope has it (struct_log)
            for cb in self.on_release:
                cb(t)

    # -- credentials, audit, whole-machine views ---------------------------------

    def set_cred(self, pid: int, uid: int, gid: int, groups: tuple[int, ...] = ()) -> None:
        with self.lock:
            tg = self.group(pid)
            new = dataclasses.replace(tg.cred, uid=uid, euid=uid, suid=uid, fsuid=uid, gid=gid, egid=gid,
                                      sgid=gid, fsgid=gid, groups=tuple(groups))
            tg.cred = capability.task_fix_setuid(tg.cred, new)
            self._changed("cred", pid=pid)

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

    def thread_groups(self) -> list[ThreadGroup]:
        return [self.groups[k] for k in sorted(self.groups)]

    def nr_threads(self) -> int:
        return sum(len(g.threads) for g in self.groups.values())

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

