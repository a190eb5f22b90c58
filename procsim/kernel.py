"""Kernel: the machine. Owns the clock, CPUs, physical memory and the task
table, and offers the syscall-level API every other part goes through.

All mutation happens under `self.lock`; renderers read under it too, so a
file is always rendered from one instant.
"""

from __future__ import annotations

import errno
import heapq
import random
import threading
import time
from collections.abc import Callable

import numpy as np

from procsim import nsproxy, resource, utsname
from procsim.config import KernelConfig
from procsim.layout import LayoutError, Replay, build as replay_layout
from procsim.mm import memory as M
from procsim.mm.counter_tree import make_shape
from procsim.mm.access_log import AccessLog, HistoryLost
from procsim.mm.hugetlb import HPAGE_SHIFT, HPAGE_SIZE, huge_align
from procsim.mm.mm import MM, MMError, TASK_SIZE, Flush, page_align
from procsim.mm.mmap_lock import mmap_write_lock
from procsim.mm.oom import OomKiller
from procsim.mm.pagetable import PAGE_SIZE, PMD_SIZE, PTE_PRESENT, pte_pfn
from procsim.mm.swap import SwapDevice
from procsim.mm.thp import THPSettings
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGETLB,
                            MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, VM_ACCOUNT,
                            VM_DONTEXPAND, VM_EXEC, VM_GROWSDOWN, VM_HUGETLB, VM_LOCKED, VM_MAYEXEC,
                            VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_NORESERVE, VM_PFNMAP, VM_READ,
                            VM_PROT_MASK, VM_SHARED, VM_VVAR, VM_WRITE, VM_HUGEPAGE, VM_NOHUGEPAGE,
                            PROT_READ, PROT_WRITE, prot_to_vm)
from procsim.sched import NSEC, Sched
from procsim.kthread import KthreadKind, cpu_in_name, kind_of as kthread_kind
from procsim.task import (PF_FORKNOEXEC, PF_KTHREAD, PF_NO_SETAFFINITY, PF_NOFREEZE, PF_NOT_INHERITED,
                          PF_RANDOMIZE, Cred, Task, ThreadGroup)
from procsim.vfs import VFS
from procsim.workload import Workloads

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LDSO = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
STACK_SIZE = 132 * 1024
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MADV_NORMAL, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_NOHUGEPAGE = 0, 4, 8, 14, 15
MADV_PAGEOUT = 21
MADVISE_NAMES = {"normal": MADV_NORMAL, "dontneed": MADV_DONTNEED, "free": MADV_FREE,
                 "hugepage": MADV_HUGEPAGE, "nohugepage": MADV_NOHUGEPAGE, "pageout": MADV_PAGEOUT}
FSHIFT, FIXED_1 = 11, 1 << 11
EXP = (1884, 2014, 2037)  # 1/exp(5s/1min), 5min, 15min in fixed point


class KernelError(OSError):
    """A syscall failed: errno and message, the world unchanged."""

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(err, msg)


def _err(err: int, msg: str) -> KernelError:
    return KernelError(err, msg)


def _exit_status(code: int) -> int:
    """exit(code) as wait(2) reports it: the low byte of the code, shifted
    left by 8 (exit(3) -> 768, exit(259) -> 768), as do_exit() stores it."""
    return (code & 0xFF) << 8


class Kernel:
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
        self.vfs = VFS()
        self.uts = utsname.UtsName(config.hostname.encode())  # nodename, domainname (init_uts_ns)
        self.init_ns = nsproxy.init_namespaces()  # the initial namespace of each kind, by kind
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
        self.observers: list[Callable[[str, dict], None]] = []
        # The vDSO: two kernel pages (from the reserved region) every process maps.
        self.vdso_pages = np.arange(2, 4, dtype=np.int64)
        self._vdso_memo: tuple[int, dict[int, int]] | None = None
        # the memory snapshot of the current generation (procsim/mm/show_mem.py): a pure cache
        self.mem_snapshot_memo: tuple[int, object] | None = None
        for cpu in self.sched.cpus:  # every CPU idled since boot
            cpu.idle = self.now
        self.generation = 0  # bumped on every change; lets caches know
        self.workloads = Workloads(self)  # access patterns run as the clock moves (procsim/workload.py)

    # -- time -----------------------------------------------------------------

    @property
    def jiffies(self) -> int:
        return self.now * self.config.hz // NSEC

    def advance(self, seconds: float) -> None:
        """Step the virtual clock, running due activity in time order."""
        if seconds < 0:
            raise _err(errno.EINVAL, "time only moves forward")
        self.advance_to(self.now + int(seconds * NSEC))

    def advance_to(self, target: int) -> None:
        with self.lock:
            while self._events and self._events[0][0] <= target:
                at, _, fn = heapq.heappop(self._events)
                self._tick(at)
                try:
                    fn()
                except (KernelError, MMError, M.OutOfMemory):
                    pass  # activity against a process that is gone: skip, like a failed syscall
            self._tick(target)

    def _tick(self, target: int) -> None:
        """Move the clock to `target` with nothing happening in between: time
        is charged in one go and the load average is recomputed every
        load_freq until it settles (it is a fixed point once the number of
        active tasks stays put), so a long advance costs no more than a short one."""
        if target > self.now:
            if self.workloads.active:  # their accesses in [now, target), stamped now
                self.workloads.step(self.now, target)
            span = target - self.now
            self.sched.account(span)
            # Idle CPUs still switch to kworkers now and then; keeps vmstat cs moving.
            kworker_switches = target // (NSEC // 50) - self.now // (NSEC // 50)
            for cpu in self.sched.cpus:
                cpu.nr_switches += kworker_switches
            if self._next_load <= target:
                n = (target - self._next_load) // self.load_freq + 1
                for _ in range(n):
                    before = list(self.avenrun)
                    self._calc_load()
                    if self.avenrun == before:
                        break
                self._next_load += n * self.load_freq
            self.now = target
        self.generation += 1

    def _calc_load(self) -> None:
        active = (self.sched.nr_running() + self.sched.nr_uninterruptible()) * FIXED_1  # calc_load_fold_active()
        for i, e in enumerate(EXP):
            a = self.avenrun[i] * e + active * (FIXED_1 - e)
            a += FIXED_1 - 1 if active >= self.avenrun[i] else 0
            self.avenrun[i] = a // FIXED_1

    def follow_wall(self) -> None:
        """In wall-clock mode, catch the virtual clock up with real time."""
        if self.config.clock != "wall":
            return
        real = time.monotonic()
        if self._wall_origin is None:
            self._wall_origin = real - self.now / NSEC
            self.btime = int(time.time() - self.now / NSEC)
            return
        target = int((real - self._wall_origin) * NSEC)
        if target > self.now:
            self.advance_to(target)

    def at(self, when_s: float, fn: Callable[[], None], every_s: float | None = None,
           count: int | None = None) -> None:
        """Run fn at virtual time `when_s` (seconds since boot), optionally repeating."""
        when = int(when_s * NSEC)

        def run(n: int = 0) -> None:
            fn()
            if every_s and (count is None or n + 1 < count):
                self._push(self.now + int(every_s * NSEC), lambda: run(n + 1))

        self._push(when, run)

    def _push(self, when: int, fn: Callable[[], None]) -> None:
        self._event_seq += 1
        heapq.heappush(self._events, (when, self._event_seq, fn))

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

    def _alloc_pid(self, want: int | None) -> int:
        if self.tasks and len(self.tasks) >= self.max_threads:
            # copy_process: nr_threads (every task not yet released) >= max_threads
            raise _err(errno.EAGAIN, f"threads-max ({self.max_threads}) reached")
        if want is not None:
            if not 1 <= want < self.config.pid_max:
                raise _err(errno.EINVAL, f"pid {want} out of range")
            if want in self.tasks:
                raise _err(errno.EEXIST, f"pid {want} is in use")
            self.last_pid = max(self.last_pid, want)
            return want
        pid = self.last_pid
        for _ in range(self.config.pid_max):
            pid = pid + 1 if pid + 1 < self.config.pid_max else 300
            if pid not in self.tasks:
                self.last_pid = pid
                return pid
        raise _err(errno.EAGAIN, "pid space exhausted")

    def _changed(self, what: str, **info) -> None:
        self.generation += 1
        for cb in self.observers:
            cb(what, info)

    # -- processes ------------------------------------------------------------

    def _new_group(self, tgid: int, parent: ThreadGroup | None, cred: Cred, mm: MM | None,
                   cmdline: list[str], environ: list[str], exe: str | None, comm: str,
                   flags: int, pgid: int | None = None, sid: int | None = None) -> Task:
        tg = ThreadGroup(tgid, parent, pgid or tgid, sid or tgid, cred, mm, cmdline, environ, exe)
        tg.rlim = list(parent.rlim) if parent is not None else resource.init_rlimits(self.max_threads)
        t = Task(tgid, tg, comm[:15] if mm is not None else comm, self.now, flags=flags)
        t.cpus_allowed = self.sched.all_cpus_mask
        t.nsproxy = parent.leader.nsproxy if parent is not None else self.init_nsproxy
        tg.threads.append(t)
        if mm is not None:
            mm.users += 1
        if parent is not None:
            parent.children.append(tg)
            tg.tty_nr, tg.tpgid = parent.tty_nr, parent.tpgid
            t.cpus_allowed = parent.leader.cpus_allowed
            t.nice = parent.leader.nice
        self.tasks[tgid] = t
        self.groups[tgid] = tg
        self.nr_forks += 1
        return t

    def create_init(self, argv: list[str] | None = None) -> int:
        """pid 1: the first user process, exec'd from nothing."""
        with self.lock:
            t = self._new_group(self._alloc_pid(1), None, Cred.of(0, 0), None, [], [], None,
                                "swapper", PF_RANDOMIZE)
            t.tg.sid = t.tg.pgid = 1
            self.exec(1, "/usr/lib/systemd/systemd", argv or ["/sbin/init"], ["HOME=/", "TERM=linux"])
            return 1

    def kthread(self, comm: str, pid: int | None = None, cpu: int | None = None) -> int:
        """A kernel thread (no mm), a child of kthreadd (pid 2) unless it is
        kthreadd. Its flags, scheduling and binding follow its kind
        (procsim/kthread.py); a per-CPU kind without `cpu` is bound to the
        CPU in its name."""
        with self.lock:
            pid = self._alloc_pid(pid)
            parent = self.groups.get(2) if pid != 2 else None
            # copy_process() for kthreadd itself; kthreadd() then sets PF_NOFREEZE,
            # which every thread it creates inherits
            flags = PF_KTHREAD | PF_FORKNOEXEC | PF_NOFREEZE
            if parent is not None:
                flags = (parent.leader.flags & ~PF_NOT_INHERITED) | PF_FORKNOEXEC
            kind = kthread_kind(comm) if pid != 2 else KthreadKind()
            flags = (flags | kind.set_flags) & ~kind.clear_flags
            t = self._new_group(pid, parent, Cred.of(0, 0), None, [], [], None, comm, flags)
            t.tg.pgid = t.tg.sid = 0
            t.tg.sig_ignore = (1 << 64) - 1
            t.tg.umask = 0o022
            t.tg.tty_nr, t.tg.tpgid = 0, -1
            if pid == 2:
                t.exit_signal = 0  # rest_init(): kernel_thread(kthreadd, ..., CLONE_FS | CLONE_FILES)
            t.state = kind.state
            t.policy, t.rt_priority, t.nice = kind.policy, kind.rt_priority, kind.nice
            if cpu is None and kind.bound:
                named = cpu_in_name(comm)
                cpu = named if named is not None and named < self.config.nr_cpus else None
            if cpu is not None:
                self._check_cpu(cpu)
                t.cpus_allowed = 1 << cpu
                t.cpu = cpu
            self._changed("spawn", pid=pid)
            return pid

    def fork(self, pid: int, child_pid: int | None = None) -> int:
        with self.lock:
            parent = self.task(pid)
            ptg = parent.tg
            if ptg.zombie:
                raise _err(errno.ESRCH, f"{pid} is a zombie")
            cpid = self._alloc_pid(child_pid)
            mm = ptg.mm.dup(ptg.mm.mmap_base) if ptg.mm is not None else None
            if mm is not None:  # init_new_context(): first trim a second after creation, not at once
                mm.next_trim_cpumask = self.jiffies + self.config.hz
            t = self._new_group(cpid, ptg, Cred(**vars(ptg.cred)), mm, list(ptg.cmdline),
                                list(ptg.environ), ptg.exe, parent.comm,
                                (parent.flags & ~PF_NOT_INHERITED | PF_FORKNOEXEC) & ~PF_KTHREAD)
            t.tg.pgid, t.tg.sid, t.tg.umask = ptg.pgid, ptg.sid, ptg.umask
            t.tg.sig_ignore, t.tg.sig_catch = ptg.sig_ignore, ptg.sig_catch
            t.tg.oom_score_adj, t.tg.oom_score_adj_min = ptg.oom_score_adj, ptg.oom_score_adj_min
            t.cpu = parent.cpu
            self._changed("spawn", pid=cpid)
            return cpid

    def clone_thread(self, pid: int, comm: str | None = None, tid: int | None = None) -> int:
        """clone(CLONE_VM|CLONE_THREAD|...): a new thread in pid's group."""
        with self.lock:
            creator = self.task(pid)
            tg = creator.tg
            if tg.zombie:
                raise _err(errno.ESRCH, f"{pid} is a zombie")
            tid = self._alloc_pid(tid)
            t = Task(tid, tg, (comm or creator.comm)[:15], self.now,
                     flags=creator.flags & ~PF_NOT_INHERITED | PF_FORKNOEXEC, cpu=creator.cpu,
                     cpus_allowed=creator.cpus_allowed, nice=creator.nice, exit_signal=-1,
                     nsproxy=creator.nsproxy)
            tg.threads.append(t)
            self.tasks[tid] = t
            if tg.mm is not None:
                tg.mm.users += 1
            self.nr_forks += 1
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
            replay = self._replay_layout(path, argv, envp or [], layout, build_ids)
            for other in list(tg.threads):  # de_thread: the other threads die
                if other is not t:
                    self._drop_thread(other)
            if t.pid != tg.tgid:
                # de_thread(): a non-leader that execs takes over the leader's pid
                del self.tasks[t.pid]
                t.pid = tg.tgid
                self.tasks[t.pid] = t
            old = tg.mm
            if replay is None:
                self.vfs.executable(path)  # an ELF object: it has a build ID
                mm = self._exec_mm(path, argv, envp or [], t.cpu)
            else:
                mm = replay.commit()
                mm.next_trim_cpumask = self.jiffies + self.config.hz
            tg.mm = mm
            mm.users = 1
            if old is not None:
                self._put_mm(old)
            tg.cmdline, tg.environ, tg.exe = list(argv), list(envp or []), path
            t.comm = path.rsplit("/", 1)[-1][:15]
            t.flags = (t.flags & ~PF_FORKNOEXEC) | PF_RANDOMIZE
            if t.on_cpu:
                self.sched._switch_mm(self.sched.cpus[t.cpu], mm)
            self._changed("exec", pid=tg.tgid)

    def _exec_mm(self, path: str, argv: list[str], envp: list[str], cpu: int = 0) -> MM:
        rng = self.rng
        mmap_base = 0x7F0000000000 + (rng.randrange(1 << 28) << 12)
        mm = MM(self.mem, mmap_base)
        mm.rss.cpu = cpu
        rx = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        ro = VM_READ | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        rw = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT

        def load_elf(file_path: str, base: int | None) -> tuple[int, int, int, int]:
            f = self.vfs.file(file_path)
            npages = max(5, f.npages)
            hdr = max(1, npages // 12)
            text = max(1, npages * 3 // 5)
            rodata = max(1, npages - hdr - text - 2)
            total = hdr + text + rodata + 2
            if base is None:
                base = mm.get_unmapped_area(total * PAGE_SIZE)
            a = base
            segs = [(hdr, ro), (text, rx), (rodata, ro), (1, ro | VM_ACCOUNT), (1, rw)]
            pg = 0
            for n, fl in segs:
                mm.map_region(a, a + n * PAGE_SIZE, fl, f, pg)
                a += n * PAGE_SIZE
                pg += n
            # what the loader and early start-up touch
            mm.fault(base, base + PAGE_SIZE, False)
            t0 = base + hdr * PAGE_SIZE
            mm.fault(t0, t0 + max(1, text // 2) * PAGE_SIZE, False)
            r0 = t0 + text * PAGE_SIZE
            mm.fault(r0, r0 + max(1, rodata // 2) * PAGE_SIZE, False)
            mm.fault(a - PAGE_SIZE, a, True)
            return base, t0, r0, a

        exe_base = 0x550000000000 + (rng.randrange(1 << 28) << 12)
        _, start_code, end_code, end_data = load_elf(path, exe_base)
        mm.start_code, mm.end_code = start_code, end_code
        mm.start_data, mm.end_data = end_code, end_data
        mm.start_brk = mm.brk = end_data + (rng.randrange(1 << 13) << 12)
        load_elf(LDSO, None)
        vdso = mm.get_unmapped_area(8 * PAGE_SIZE)
        mm.map_region(vdso, vdso + 4 * PAGE_SIZE, VM_VVAR, special="[vvar]")
        mm.map_region(vdso + 4 * PAGE_SIZE, vdso + 6 * PAGE_SIZE, VM_VVAR, special="[vvar_vclock]")
        mm.map_region(vdso + 6 * PAGE_SIZE, vdso + 8 * PAGE_SIZE, rx | VM_DONTEXPAND, special="[vdso]")
        mm.fault(vdso + 6 * PAGE_SIZE, vdso + 8 * PAGE_SIZE, False, self.vdso_pages)
        _, _, _, libc_end = load_elf(LIBC, None)
        bss = mm.get_unmapped_area(13 * PAGE_SIZE, libc_end)
        mm.map_region(bss, bss + 13 * PAGE_SIZE, rw)
        mm.fault(bss, bss + 4 * PAGE_SIZE, True)
        tls = mm.get_unmapped_area(3 * PAGE_SIZE)
        mm.map_region(tls, tls + 3 * PAGE_SIZE, rw)
        mm.fault(tls, tls + 2 * PAGE_SIZE, True)
        # heap: the first malloc arena
        mm.map_region(mm.start_brk, mm.start_brk + STACK_SIZE, rw)
        mm.brk = mm.start_brk + STACK_SIZE
        mm.fault(mm.start_brk, mm.start_brk + 8 * PAGE_SIZE, True)
        # stack with argv and envp at its top
        stack_top = 0x7FFC00000000 + (rng.randrange(1 << 20) << 12)
        mm.map_region(stack_top - STACK_SIZE, stack_top, rw | VM_GROWSDOWN)
        mm.start_stack = mm.set_args(stack_top, path, argv, envp)
        mm.fault(stack_top - 3 * PAGE_SIZE, stack_top, True)
        mm.next_trim_cpumask = self.jiffies + self.config.hz
        return mm

    def _replay_layout(self, path: str, argv: list[str], envp: list[str], layout: str | None,
                       build_ids: dict[str, str] | None) -> Replay | None:
        """The mm of an exec with a layout, built and checked before anything
        changes (EINVAL if it cannot be replayed, ENOMEM if the hugetlb pool
        cannot cover its reservations); None without a layout."""
        if layout is None:
            if build_ids:
                raise _err(errno.EINVAL, "build_ids need a layout")
            return None
        try:
            return replay_layout(self.mem, self.vfs, self.vdso_pages, path, argv, envp, layout, build_ids or {})
        except LayoutError as e:
            raise _err(errno.EINVAL, str(e)) from None
        except MMError as e:
            raise _err(e.errno, str(e)) from None

    def _put_mm(self, mm: MM) -> None:
        mm.users -= 1
        if mm.users <= 0:
            mm.teardown()
            self.sched.mm_gone(mm)

    def _drop_thread(self, t: Task) -> None:
        """A non-leader thread exits and is released at once."""
        if t.on_cpu:
            self.sched.switch_to(self.sched.cpus[t.cpu], None)
        tg = t.tg
        tg.dead_utime += t.utime
        tg.dead_stime += t.stime
        tg.dead_min_flt += t.min_flt
        tg.dead_maj_flt += t.maj_flt
        tg.threads.remove(t)
        del self.tasks[t.pid]
        if tg.mm is not None:
            tg.mm.users -= 1

    def exit(self, tid: int, code: int = 0) -> None:
        """A thread exits; when the last one goes, the group becomes a zombie."""
        with self.lock:
            t = self.task(tid)
            tg = t.tg
            if tg.zombie:
                raise _err(errno.ESRCH, f"{tid} is already a zombie")
            if t.dead:
                raise _err(errno.ESRCH, f"{tid} has already exited")
            if not t.is_leader:
                self._drop_thread(t)
                if not tg.live_threads:
                    # the last thread after the leader: the group ends (it used
                    # to stay alive forever with no thread and its mm)
                    self._exit_group_final(tg, _exit_status(code))
                    return
                self._changed("exit", pid=tg.tgid, tid=tid)
                return
            if len(tg.live_threads) > 1:
                # the leader exits first: it lingers as a zombie thread until the group ends
                if t.on_cpu:
                    self.sched.switch_to(self.sched.cpus[t.cpu], None)
                t.dead, t.state = True, "Z"
                self._changed("exit", pid=tg.tgid, tid=tid)
                return
            self._exit_group_final(tg, _exit_status(code))

    def exit_group(self, pid: int, code: int = 0) -> None:
        with self.lock:
            tg = self.group(pid)
            if tg.zombie:
                raise _err(errno.ESRCH, f"{pid} is already a zombie")
            for other in list(tg.threads[1:]):
                self._drop_thread(other)
            self._exit_group_final(tg, _exit_status(code))

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
            for other in list(tg.threads[1:]):
                self._drop_thread(other)
            self._exit_group_final(tg, sig & 0x7F)

    def _exit_group_final(self, tg: ThreadGroup, status: int) -> None:
        """The group ends; `status` is in wait(2) form (see _exit_status)."""
        for other in list(tg.threads[1:]):
            self._drop_thread(other)
        t = tg.leader
        if t.on_cpu:
            self.sched.switch_to(self.sched.cpus[t.cpu], None)
        if tg.mm is not None:
            mm, tg.mm = tg.mm, None
            self._put_mm(mm)
        t.dead, t.state = True, "Z"
        tg.zombie = True
        tg.exit_code = status
        tg.fdsize = 0
        init = self.groups.get(1)
        for child in list(tg.children):  # reparent to init
            child.parent = init
            if init is not None and init is not tg:
                init.children.append(child)
                if child.zombie:
                    self._release(child)
        tg.children.clear()
        self._changed("exit", pid=tg.tgid)
        if tg.parent is None or tg.parent.tgid == 1 or tg.parent.zombie or tg.parent.kthread:
            self._release(tg)  # init and kthreadd reap at once

    def wait(self, pid: int, child: int | None = None) -> int:
        """The parent reaps a zombie child (any, if child is None); returns its pid."""
        with self.lock:
            tg = self.group(pid)
            for c in tg.children:
                if c.zombie and (child is None or c.tgid == child):
                    self._release(c)
                    return c.tgid
            if child is not None and not any(c.tgid == child for c in tg.children):
                raise _err(errno.ECHILD, f"{child} is not a child of {pid}")
            raise _err(errno.EAGAIN, "no zombie child to reap")

    def _release(self, tg: ThreadGroup) -> None:
        if tg.parent is not None and tg in tg.parent.children:
            tg.parent.children.remove(tg)
            tg.parent.cutime += tg.leader.utime + tg.dead_utime + tg.cutime
            tg.parent.cstime += tg.leader.stime + tg.dead_stime + tg.cstime
        for t in tg.threads:
            self.tasks.pop(t.pid, None)
        self.groups.pop(tg.tgid, None)
        self._changed("reap", pid=tg.tgid)

    # -- credentials and scheduling ---------------------------------------------

    def set_cred(self, pid: int, uid: int, gid: int, groups: tuple[int, ...] = ()) -> None:
        with self.lock:
            tg = self.group(pid)
            tg.cred = Cred.of(uid, gid, groups)
            self._changed("cred", pid=pid)

    def run(self, tid: int, cpu: int, preempt: bool = False) -> None:
        """Switch `cpu` to task `tid` (migrating it if it ran elsewhere)."""
        with self.lock:
            t = self.task(tid)
            if t.dead:
                raise _err(errno.ESRCH, f"{tid} has exited")
            self._check_cpu(cpu)
            if not t.cpus_allowed >> cpu & 1:
                raise _err(errno.EINVAL, f"cpu {cpu} is not in the affinity of {tid}")
            self.sched.switch_to(self.sched.cpus[cpu], t, preempt)
            self._changed("sched", tid=tid)

    def sleep(self, tid: int, state: str = "S") -> None:
        """The task blocks (S or D) or stops (T), or a kernel thread waits in
        TASK_IDLE (I, counted in no load); its CPU goes idle."""
        with self.lock:
            t = self.task(tid)
            if state not in ("S", "D", "T") and not (state == "I" and t.tg.kthread):
                raise _err(errno.EINVAL, f"cannot sleep in state {state!r}")
            if t.on_cpu:
                self.sched.switch_to(self.sched.cpus[t.cpu], None)
            t.state = state
            self._changed("sched", tid=tid)

    def wake(self, tid: int) -> None:
        """Make a sleeping task runnable (R) without putting it on a CPU."""
        with self.lock:
            t = self.task(tid)
            if t.dead:
                raise _err(errno.ESRCH, f"{tid} has exited")
            t.state = "R"
            self._changed("sched", tid=tid)

    def idle(self, cpu: int) -> None:
        with self.lock:
            self._check_cpu(cpu)
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
                    t.cpu = new
            self._changed("sched", tid=tid)

    def set_nice(self, tid: int, nice: int) -> None:
        with self.lock:
            if not -20 <= nice <= 19:
                raise _err(errno.EINVAL, "nice must be in -20..19")
            self.task(tid).nice = nice
            self._changed("sched", tid=tid)

    def _check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.config.nr_cpus:
            raise _err(errno.EINVAL, f"cpu {cpu} does not exist (0-{self.config.nr_cpus - 1})")

    # -- memory syscalls ------------------------------------------------------

    def _flush(self, t: Task, flush: Flush | None) -> None:
        if flush is not None:
            self.sched.flush_tlb(t.mm, t.cpu, flush, self.jiffies)

    def mmap(self, tid: int, length: int, prot: int = PROT_READ | PROT_WRITE,
             flags: int = MAP_PRIVATE | MAP_ANONYMOUS,
             addr: int = 0, path: str | None = None, offset: int = 0, writable: bool = True) -> int:
        """mmap(2). `path` names the file for file mappings (`writable`: opened O_RDWR)."""
        with self.lock:
            t, mm = self._user_mm(tid)
            if length <= 0 or addr % PAGE_SIZE or offset % PAGE_SIZE or offset < 0:
                raise _err(errno.EINVAL, "length must be positive; addr and offset page aligned")
            if prot & ~7:
                raise _err(errno.EINVAL, f"bad prot {prot:#x}")
            kind = flags & (MAP_SHARED | MAP_PRIVATE)
            if kind not in (MAP_SHARED, MAP_PRIVATE):
                raise _err(errno.EINVAL, "exactly one of MAP_SHARED and MAP_PRIVATE")
            anon = bool(flags & MAP_ANONYMOUS)
            if anon == (path is not None):
                raise _err(errno.EINVAL if path else errno.EBADF, "a mapping is anonymous or has a file")
            length = page_align(length)
            if flags & MAP_HUGETLB:
                if not anon:  # only hugetlbfs files may be mapped with it (not modelled)
                    raise _err(errno.EINVAL, "MAP_HUGETLB needs an anonymous mapping")
                return self._mmap_hugetlb(t, mm, length, prot, flags, addr)
            if length > TASK_SIZE:
                raise _err(errno.ENOMEM, "length exceeds the address space")
            start = self._mmap_start(mm, length, flags, addr)
            mm.check_split(start, start + length)  # before a file is made or grown
            vmf = prot_to_vm(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
            file = None
            pgoff = None  # anonymous: map_region uses addr >> PAGE_SHIFT
            if kind == MAP_SHARED:
                vmf |= VM_MAYSHARE | VM_SHARED
                if anon:
                    file = self.vfs.shmem(length)
                else:
                    if not writable and prot & PROT_WRITE:  # before vfs.file() grows the inode
                        raise _err(errno.EACCES, "PROT_WRITE on a file opened read-only")
                    file = self.vfs.file(path, offset + length, writable)
                    # VM_SHARED/VM_MAYWRITE follow this open's mode, not whether the
                    # inode was ever opened for writing (File.writable is sticky)
                    if not writable:
                        vmf &= ~(VM_SHARED | VM_MAYWRITE)
                pgoff = offset >> 12
            else:
                if not anon:
                    file = self.vfs.file(path, offset + length)
                    pgoff = offset >> 12
                if prot & PROT_WRITE and not flags & MAP_NORESERVE:
                    vmf |= VM_ACCOUNT
            if flags & MAP_NORESERVE:  # do_mmap() sets it whatever prot and kind are
                vmf |= VM_NORESERVE
            if flags & MAP_GROWSDOWN:
                vmf |= VM_GROWSDOWN
            if flags & MAP_LOCKED:
                vmf |= VM_LOCKED
            _, flush = mm.map_region(start, start + length, vmf, file, pgoff)
            self._flush(t, flush)
            if flags & MAP_LOCKED:  # mm_populate(): never fails, even for PROT_NONE
                self._charge_faults(t, mm, lambda: mm.populate(start, start + length, self.vdso_pages))
            self._changed("mm", pid=t.tgid)
            return start

    @staticmethod
    def _mmap_start(mm: MM, length: int, flags: int, addr: int, align: int = PAGE_SIZE) -> int:
        """Where a new mapping goes: the fixed address, checked, or a free area."""
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if addr < 0x1000 or addr + length > TASK_SIZE:
                raise _err(errno.EPERM if addr < 0x10000 else errno.ENOMEM, "fixed address out of range")
            # NOREPLACE wins even together with MAP_FIXED (do_mmap() checks it first)
            if flags & MAP_FIXED_NOREPLACE and mm.vmas.overlapping(addr, addr + length):
                raise _err(errno.EEXIST, "MAP_FIXED_NOREPLACE range is in use")
            return addr
        return mm.get_unmapped_area(length, addr, align)

    def _mmap_hugetlb(self, t: Task, mm: MM, length: int, prot: int, flags: int, addr: int) -> int:
        """mmap(MAP_ANONYMOUS | MAP_HUGETLB), private or shared (as checked on
        6.18): the length is rounded up to 2 MiB, a fixed address must be 2
        MiB aligned (EINVAL) and a hint is aligned up; the VMA maps a new
        `/anon_hugepage (deleted)` hugetlbfs file from offset 0, with
        VmFlags `rd wr mr mw me de ht` (private) or `rd wr sh mr mw me ms de
        ht` (shared): VM_HUGETLB and VM_DONTEXPAND, never VM_ACCOUNT (hugetlb
        is not charged to Committed_AS). Every page is reserved now
        (HugePages_Rsvd; ENOMEM if the free pool cannot cover it) unless
        MAP_NORESERVE (`nr`). MAP_LOCKED populates but does not lock."""
        pool = self.mem.hugetlb
        length = huge_align(length)
        if length > TASK_SIZE:
            raise _err(errno.ENOMEM, "length exceeds the address space")
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) and addr % HPAGE_SIZE:
            raise _err(errno.EINVAL, "MAP_HUGETLB at an address not 2 MiB aligned")
        start = self._mmap_start(mm, length, flags, addr, HPAGE_SIZE)
        shared = flags & (MAP_SHARED | MAP_PRIVATE) == MAP_SHARED
        vmf = prot_to_vm(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_HUGETLB | VM_DONTEXPAND
        if shared:
            vmf |= VM_MAYSHARE | VM_SHARED
        if flags & MAP_NORESERVE:
            vmf |= VM_NORESERVE
        if flags & MAP_GROWSDOWN:
            vmf |= VM_GROWSDOWN
        reserved = None
        if not flags & MAP_NORESERVE:  # before the file: a fresh one, nothing reserved in it
            try:
                reserved = pool.reserve_pages(0, length >> HPAGE_SHIFT)
            except OSError as e:
                raise _err(e.errno, e.strerror) from None
        file = pool.anon_file(length)
        try:
            vma, flush = mm.map_region(start, start + length, vmf, file, 0)
        except MMError:
            if reserved:
                pool.unreserve(len(reserved))
            raise
        if reserved is not None:
            pool.set_vma_resv(vma, reserved)
        self._flush(t, flush)
        if flags & MAP_LOCKED:
            self._charge_faults(t, mm, lambda: mm.populate(start, start + length))
        self._changed("mm", pid=t.tgid)
        return start

    def munmap(self, tid: int, addr: int, length: int) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            self._flush(t, mm.unmap(addr, addr + page_align(length)))
            self._changed("mm", pid=t.tgid)

    def mprotect(self, tid: int, addr: int, length: int, prot: int) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            if prot & ~7:
                raise _err(errno.EINVAL, f"bad prot {prot:#x}")
            end = addr + page_align(length)
            self._check_mapped(mm, addr, end)
            # do_mprotect_pkey(): each asked VM_READ/WRITE/EXEC bit needs its
            # VM_MAY* bit (bits 4-6), else EACCES: a read-only shared file
            # mapping refuses PROT_WRITE, the [vvar] pages PROT_WRITE and
            # PROT_EXEC (observed on 6.18); checked before any change
            want = prot_to_vm(prot)
            for v in mm.vmas.overlapping(addr, end):
                if want & ~(v.flags >> 4) & VM_PROT_MASK:
                    raise _err(errno.EACCES, f"prot {prot:#x} exceeds the VM_MAY* bits of the VMA at {v.start:#x}")
            self._flush(t, mm.protect(addr, end, prot_to_vm(prot)))
            self._changed("mm", pid=t.tgid)

    def mlock(self, tid: int, addr: int, length: int, on: bool = True, onfault: bool = False) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            end = addr + page_align(length)
            self._check_mapped(mm, addr, end)
            self._charge_faults(t, mm, lambda: mm.lock(addr, end, on, onfault, self.vdso_pages))
            self._changed("mm", pid=t.tgid)

    def madvise(self, tid: int, addr: int, length: int, advice: int) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            end = addr + page_align(length)
            if advice not in MADVISE_NAMES.values():
                raise _err(errno.EINVAL, f"madvise advice {advice} is not modelled")
            self._check_mapped(mm, addr, end)
            vmas = mm.vmas.overlapping(addr, end)
            if advice == MADV_DONTNEED:
                self._flush(t, mm.zap(addr, end))
            elif advice == MADV_PAGEOUT:
                # can_madv_lru_vma(): locked, PFN-map and hugetlb VMAs are
                # refused (6.18: EINVAL on an mlocked range and on hugetlb)
                if any(v.flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB) for v in vmas):
                    raise _err(errno.EINVAL, "MADV_PAGEOUT on locked, PFN-map or hugetlb memory")
                mm.pageout(addr, end)
                self._flush(t, Flush(addr, end))
            elif advice == MADV_FREE:
                # madvise_dontneed_free_valid_vma() + vma_is_anonymous()
                if any(not v.is_anon or v.flags & (VM_LOCKED | VM_PFNMAP) for v in vmas):
                    raise _err(errno.EINVAL, "MADV_FREE needs private anonymous, unlocked memory")
                mm.lazyfree(addr, end)
                self._flush(t, Flush(addr, end))
            elif advice in (MADV_HUGEPAGE, MADV_NOHUGEPAGE):
                # hugepage_madvise(): each clears the other, in every VMA (6.18 showed
                # `ht hg` on hugetlb, `pf io de dd hg` on [vvar], `de hg` on [vdso])
                on, off = (VM_HUGEPAGE, VM_NOHUGEPAGE) if advice == MADV_HUGEPAGE else (VM_NOHUGEPAGE, VM_HUGEPAGE)
                mm.check_split(addr, end, lambda v: (v.flags & ~off) | on != v.flags)
                mm.set_vma_flags(addr, end, on, off)
            self._changed("mm", pid=t.tgid)

    def clear_refs(self, pid: int, value: int) -> None:
        """A write of `value` to /proc/PID/clear_refs (spec §11): 1 all, 2 anon,
        3 file: clear accessed/referenced; 4 soft-dirty; 5 reset VmHWM."""
        with self.lock:
            if not 1 <= value <= 5:
                raise _err(errno.EINVAL, f"clear_refs value {value} is not 1..5")
            tg = self.group(pid)
            if tg.mm is None:
                return  # zombie or kernel thread: accepted, nothing happens
            tg.mm.clear_refs(value)
            for t in tg.threads:  # the TLB flush of clear_refs
                if not t.dead:
                    self._flush(t, Flush(0, TASK_SIZE))
                    break
            self._changed("mm", pid=tg.tgid)

    def set_thp(self, enabled: str | None = None, size_kb: int | None = None, mode: str | None = None) -> None:
        """Write /sys/kernel/mm/transparent_hugepage/enabled (`enabled`) or
        hugepages-<size_kb>kB/enabled (`mode`)."""
        with self.lock:
            if enabled is not None and enabled not in ("always", "madvise", "never"):
                raise _err(errno.EINVAL, f"transparent_hugepage/enabled: bad mode {enabled!r}")
            try:
                if size_kb is not None:  # checked and applied before enabled, which cannot fail after
                    self.mem.thp.set_size(size_kb, mode or "")
                if enabled is not None:
                    self.mem.thp.set_enabled(enabled)
            except ValueError as e:
                raise _err(errno.EINVAL, str(e)) from None
            self._changed("thp")

    def set_nr_hugepages(self, nr: int) -> int:
        """Write /proc/sys/vm/nr_hugepages: grow the pool from free memory
        (it may end smaller than asked) or shrink it by its free, unreserved
        pages (pages in use or reserved stay: no surplus pages). Returns
        HugePages_Total."""
        with self.lock:
            if nr < 0:
                raise _err(errno.EINVAL, f"nr_hugepages {nr} is negative")
            n = self.mem.hugetlb.set_nr(nr)
            self._changed("mm")
            return n

    def shrink_deferred_split(self) -> int:
        """Run the deferred-split shrinker (memory pressure): partially mapped
        large folios are split and their unmapped pages freed; returns frames freed."""
        with self.lock:
            n = self.mem.deferred_split_scan()
            self._changed("mm")
            return n

    def brk(self, tid: int, new_brk: int) -> int:
        """brk(2): returns the new break, or the old one if it cannot move."""
        with self.lock:
            t, mm = self._user_mm(tid)
            with mmap_write_lock(mm):  # one write cycle: readers see it whole
                if new_brk < mm.start_brk:
                    return mm.brk
                old_end, new_end = page_align(mm.brk), page_align(new_brk)
                if new_end < old_end:
                    self._flush(t, mm.unmap(new_end, old_end))
                elif new_end > old_end:
                    if mm.vmas.overlapping(old_end, new_end + PAGE_SIZE):
                        return mm.brk  # would collide with the next mapping
                    rw = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
                    mm.map_region(old_end, new_end, rw)
                mm.brk = new_brk
                self._changed("mm", pid=t.tgid)
                return new_brk

    def mremap(self, tid: int, old_addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int = 0) -> int:
        with self.lock:
            t, mm = self._user_mm(tid)
            with mmap_write_lock(mm):  # one write cycle: readers see it whole
                if old_addr % PAGE_SIZE or flags & ~3 or (flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE):
                    raise _err(errno.EINVAL, "bad mremap flags or alignment")
                old_len, new_len = page_align(old_len), page_align(new_len)
                if not new_len:
                    raise _err(errno.EINVAL, "new length is zero")
                if not old_len:
                    # Linux: EINVAL for private mappings (the shared-duplicate case is
                    # not modelled); going on split the VMA around an empty range
                    raise _err(errno.EINVAL, "old length is zero")
                vma = mm.vmas.lookup(old_addr)
                if vma is None or old_addr + old_len > vma.end:
                    raise _err(errno.EFAULT, "old range is not one mapping")
                if vma.is_hugetlb:
                    # as 6.18 does: 2 MiB aligned addresses, lengths rounded up to
                    # huge pages, no growing (EINVAL); shrinking and moving work
                    if old_addr % HPAGE_SIZE or flags & MREMAP_FIXED and new_addr % HPAGE_SIZE:
                        raise _err(errno.EINVAL, "hugetlb mremap address not 2 MiB aligned")
                    old_len, new_len = huge_align(old_len), huge_align(new_len)
                    if new_len > old_len:
                        raise _err(errno.EINVAL, "hugetlb mappings cannot grow")
                old_end = old_addr + old_len
                if new_len > old_len and vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
                    raise _err(errno.EFAULT, "vdso, vvar and PFN maps cannot grow")  # vma_to_resize()
                if flags & MREMAP_FIXED:
                    if new_addr % PAGE_SIZE or new_addr + new_len > TASK_SIZE or (
                            new_addr < old_end and old_addr < new_addr + new_len):
                        raise _err(errno.EINVAL, "bad fixed destination")
                    return self._mremap_move(t, mm, vma, old_addr, old_len, new_len, new_addr)
                if new_len <= old_len:
                    if new_len < old_len:
                        self._flush(t, mm.unmap(old_addr + new_len, old_end))
                    self._changed("mm", pid=t.tgid)
                    return old_addr
                grow_end = old_addr + new_len
                if old_end == vma.end and not mm.vmas.overlapping(old_end, grow_end) and grow_end <= TASK_SIZE:
                    # anonymous VMAs need the following pgoff too, or the grown part would not merge
                    mm.map_region(old_end, grow_end, vma.flags, vma.file,
                                  vma.pgoff + ((old_end - vma.start) >> 12), vma.special)
                    self._changed("mm", pid=t.tgid)
                    return old_addr
                if not flags & MREMAP_MAYMOVE:
                    raise _err(errno.ENOMEM, "cannot grow in place")
                dest = mm.get_unmapped_area(new_len)
                return self._mremap_move(t, mm, vma, old_addr, old_len, new_len, dest)

    def _mremap_move(self, t: Task, mm: MM, vma, old_addr: int, old_len: int, new_len: int,
                     dest: int) -> int:
        # prep_move_vma(): moving part of a VMA splits it; may_split() first
        mm.check_split(old_addr, old_addr + old_len)
        if vma.is_hugetlb:
            return self._mremap_move_hugetlb(t, mm, vma, old_addr, old_len, new_len, dest)
        keep = min(old_len, new_len)
        ptes = mm.pgtable.read(old_addr, old_addr + keep)
        # the moved VMA keeps its pgoff and anon_vma (copy_vma), except an
        # anonymous one never faulted (no anon_vma): it takes the pgoff of its
        # new address, so it can merge there (checked on 6.18)
        pgoff = vma.pgoff + ((old_addr - vma.start) >> 12)
        flags, file, special, anon_vma = vma.flags, vma.file, vma.special, vma.anon_vma
        if file is None and special is None and anon_vma is None:
            pgoff = dest >> 12
        flush = mm.unmap(dest, dest + new_len) if mm.vmas.overlapping(dest, dest + new_len) else None
        self._flush(t, flush)
        # huge PMDs are moved as PTEs (move_huge_pmd() is not modelled)
        mm.split_huge_pmds(old_addr, old_addr + keep)
        ptes = mm.pgtable.read(old_addr, old_addr + keep)
        # take the translations first so that unmap only zaps what does not move
        mm.pgtable.take(old_addr, old_addr + keep)
        self._hold_file(file, +1)
        self._flush(t, mm.unmap(old_addr, old_addr + old_len))
        mm.map_region(dest, dest + new_len, flags, file, pgoff, special, anon_vma)
        self._hold_file(file, -1)
        mm.pgtable.write(dest, ptes)
        self._changed("mm", pid=t.tgid)
        return dest

    @staticmethod
    def _hold_file(file, n: int) -> None:
        """copy_vma() takes the new VMA's file reference before the old VMA
        goes: without it, moving the only mapping of a deleted shmem or
        hugetlbfs file freed the file's pages under the moved PTEs."""
        if file is not None:
            file.nr_mappings += n

    def _mremap_move_hugetlb(self, t: Task, mm: MM, vma, old_addr: int, old_len: int, new_len: int,
                             dest: int) -> int:
        """move_hugetlb_page_tables(): the huge PTEs of the kept part move to
        dest with their mappings and reservations; the rest is unmapped."""
        keep = new_len  # never more than old_len
        pgoff = vma.pgoff + ((old_addr - vma.start) >> 12)
        flags, file, anon_vma, resv = vma.flags, vma.file, vma.anon_vma, vma.resv
        flush = mm.unmap(dest, dest + new_len) if mm.vmas.overlapping(dest, dest + new_len) else None
        self._flush(t, flush)
        pt = mm.pgtable
        moved = {idx: pt.hugetlb.pop(idx) for idx in pt.hugetlb_in(old_addr, old_addr + keep)}
        i0 = pgoff >> 9
        kept_resv = resv.reserved.intersection(range(i0, i0 + (keep >> HPAGE_SHIFT))) if resv else set()
        # the moved entries are out of the table: unmap drops only the rest
        # (and releases kept_resv too: taken back below)
        self._hold_file(file, +1)
        self._flush(t, mm.unmap(old_addr, old_addr + old_len))
        vma, _ = mm.map_region(dest, dest + new_len, flags, file, pgoff, None, anon_vma)
        self._hold_file(file, -1)
        vma.resv = resv
        if kept_resv:
            ok = self.mem.hugetlb.reserve(len(kept_resv))  # just released: cannot fail
            assert ok
            resv.reserved |= kept_resv
        shift = (dest - old_addr) >> HPAGE_SHIFT
        for idx, e in moved.items():
            pt.hugetlb[idx + shift] = e
        self._changed("mm", pid=t.tgid)
        return dest

    def touch(self, tid: int, addr: int, length: int, write: bool = True) -> int:
        """Access every page of [addr, addr+length): faults allocate frames and
        break COW. Returns the number of faults."""
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            n = self._fault(t, mm, addr, addr + page_align(length), write)
            self._changed("mm", pid=t.tgid)
            return n

    def access(self, tid: int, vas: np.ndarray, write: bool = False) -> int:
        """User loads or stores to the pages at `vas` (page aligned, any order):
        accessed (and dirty) bits set by the hardware walk, faults where
        needed (MM.access). Returns the number of faults."""
        with self.lock:
            t, mm = self._user_mm(tid)
            n = self._charge_faults(t, mm, lambda: mm.access(vas, write, self.vdso_pages))
            self._changed("mm", pid=t.tgid)
            return n

    def track(self, pid: int) -> AccessLog:
        """Record from now on which pages pid's address space touches (the
        ground truth of working-set estimates); workloads do it themselves."""
        with self.lock:
            _, mm = self._user_mm(pid)
            return self.workloads.track(mm)

    def wss_truth(self, pid: int, since: float, until: float | None = None) -> np.ndarray:
        """The virtual page numbers (sorted) pid's address space touched at
        virtual times in [since, until) seconds since boot (until None: up
        to now, included). Needs `track` or a workload first; an interval
        that ends in the past and reaches back beyond the kept history is
        ENODATA (procsim/mm/access_log.py)."""
        with self.lock:
            _, mm = self._user_mm(pid)
            log = mm.access_log
            if log is None:
                raise _err(errno.EINVAL, f"pid {pid} is not tracked (track it or start a workload)")
            try:
                return log.touched(round(since * NSEC), None if until is None else round(until * NSEC))
            except HistoryLost as e:
                raise _err(errno.ENODATA, str(e)) from None

    def _fault(self, t: Task, mm: MM, start: int, end: int, write: bool) -> int:
        return self._charge_faults(t, mm, lambda: self._fault_range(mm, start, end, write))

    def _fault_range(self, mm: MM, start: int, end: int, write: bool) -> int:
        """mm.fault over [start, end). When the range could need more frames
        than are free, it is faulted in PMD-aligned steps (at most half of
        what is free each), so the task grows as it would page by page and
        the OOM killer, if it must run, sees it at its size by then."""
        free = self.mem.nr_free
        if 2 * ((end - start) // PAGE_SIZE) <= free:
            return mm.fault(start, end, write, self.vdso_pages)
        mm.check_fault(start, end, write)  # the whole range, before anything changes
        n, a = 0, start
        while a < end:
            step = max(PMD_SIZE, (self.mem.nr_free // 2) * PAGE_SIZE)
            b = min(end, (a + step) & ~(PMD_SIZE - 1))
            if b <= a:
                b = min(end, (a & ~(PMD_SIZE - 1)) + PMD_SIZE)
            n += mm.fault(a, b, write, self.vdso_pages)
            a = b
        return n

    def _charge_faults(self, t: Task, mm: MM, fault: Callable[[], int]) -> int:
        """Run a faulting mm operation and charge its faults to the task, as
        mm_account_fault() does: swap-ins are major (maj_flt), the rest minor.
        Its allocations may call the OOM killer (`t` is current); if that
        chooses `t` itself, `t` is killed here and the call fails ENOMEM."""
        major = mm.nr_major
        oom = self.oom
        prev, oom.current, oom.kill_current = oom.current, t, False
        try:
            n = fault()
        except M.OutOfMemory:
            if not oom.kill_current:
                raise
            oom.kill_current = False
            self.kill(t.tgid, 9)
            if oom.events:
                oom.events[-1].free_after = self.mem.nr_free
            raise _err(errno.ENOMEM, f"out of memory: the OOM killer killed {t.tgid} ({t.comm}) itself") from None
        finally:
            oom.current = prev
        major = mm.nr_major - major
        t.maj_flt += major
        t.min_flt += n - major
        ev = self.mem.vm_events  # count_vm_event(PGFAULT), PGMAJFAULT
        ev.pgfault += n
        ev.pgmajfault += major
        return n

    @staticmethod
    def _check_range(addr: int, length: int) -> None:
        if addr % PAGE_SIZE or length <= 0 or addr + length > TASK_SIZE:
            raise _err(errno.EINVAL, "address must be page aligned and the range inside user space")

    @staticmethod
    def _check_mapped(mm: MM, start: int, end: int) -> None:
        a = start
        for v in mm.vmas.overlapping(start, end):
            if v.start > a:
                break
            a = v.end
        if a < end:
            raise _err(errno.ENOMEM, f"range {start:#x}-{end:#x} is not fully mapped")

    # -- whole-machine views --------------------------------------------------

    @property
    def vdso_mapcount(self) -> dict[int, int]:
        """PTE mappings of each vDSO text page over all address spaces, by
        PFN (their smaps Pss share): kernel pages keep no mapcount in the
        mem_map, so they are counted from the [vdso] VMAs' page tables, once
        per generation. A fork child maps none until it faults them."""
        memo = self._vdso_memo
        if memo is not None and memo[0] == self.generation:
            return memo[1]
        counts = dict.fromkeys(self.vdso_pages.tolist(), 0)
        for mm in {id(g.mm): g.mm for g in self.groups.values() if g.mm is not None}.values():
            for v in mm.vmas:
                if v.special == "[vdso]":
                    ptes = mm.pgtable.read(v.start, v.end)
                    for pfn in pte_pfn(ptes[(ptes & PTE_PRESENT) != 0]).tolist():
                        counts[pfn] = counts.get(pfn, 0) + 1
        self._vdso_memo = (self.generation, counts)
        return counts

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
            self.generation += 1

    def prlimit(self, pid: int, res: int, new: resource.Rlimit | None = None) -> resource.Rlimit:
        """prlimit(2) by the process itself: the old limit; with `new`, set
        it if do_prlimit() allows (a raised hard limit needs the process to
        be root, CAP_SYS_RESOURCE)."""
        with self.lock:
            tg = self.task(pid).tg
            if not 0 <= res < resource.RLIM_NLIMITS:
                raise _err(errno.EINVAL, f"prlimit: no resource {res}")
            old = tg.rlim[res]
            if new is not None:
                try:
                    resource.check_new(old, new, res, tg.cred.euid == 0)
                except OSError as e:
                    raise _err(e.errno, f"prlimit: {e.strerror}") from None
                tg.rlim[res] = new
                self._changed("rlimit", pid=tg.tgid, resource=res)
            return old

    def sethostname(self, name: bytes) -> None:
        """sethostname(2): the utsname nodename."""
        self._set_uts("nodename", name)

    def setdomainname(self, name: bytes) -> None:
        """setdomainname(2): the utsname domainname (NIS)."""
        self._set_uts("domainname", name)

    def _set_uts(self, field: str, name: bytes) -> None:
        if len(name) > utsname.NEW_UTS_LEN:
            raise _err(errno.EINVAL, f"{field}: longer than {utsname.NEW_UTS_LEN} bytes")
        with self.lock:
            setattr(self.uts, field, name)
            self._changed("uts", field=field)

    def set_pid_max(self, n: int) -> None:
        """kernel.pid_max: pids at or above it are no longer handed out
        (existing ones stay); the range is the sysctl's."""
        with self.lock:
            self.config.pid_max = n
            self.generation += 1

    def thread_groups(self) -> list[ThreadGroup]:
        return [self.groups[k] for k in sorted(self.groups)]

    def nr_threads(self) -> int:
        return sum(len(g.threads) for g in self.groups.values())

    def spawn(self, argv: list[str], *, parent: int = 1, uid: int | None = None, gid: int | None = None,
              groups: tuple[int, ...] = (), exe: str | None = None, env: list[str] | None = None,
              pid: int | None = None) -> int:
        """fork from `parent`, set credentials (None: the parent's), exec
        argv[0] (or exe)."""
        with self.lock:
            path = exe or (argv[0] if argv else "")
            if not path:  # checked before the fork, so a bad spawn leaves nothing behind
                raise _err(errno.ENOENT, "spawn: no program (empty argv and no exe)")
            if not path.startswith("/"):
                path = "/usr/bin/" + path
            child = self.fork(parent, pid)
            if uid is not None or gid is not None or groups:
                pc = self.group(parent).cred
                self.group(child).cred = Cred.of(pc.euid if uid is None else uid,
                                                 pc.egid if gid is None else gid, groups)
            self.exec(child, path, argv, env if env is not None else self.group(parent).environ)
            return child
