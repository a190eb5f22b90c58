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

from procsim.binfmt_elf import LDSO, LIBC  # noqa: F401 (the default image's, for callers)
from procsim.config import KernelConfig
from procsim.errors import KernelError
from procsim.exec import do_execve
from procsim.exit import do_exit, do_group_exit, do_wait, exit_status
from procsim.fork import alloc_pid, copy_process, copy_thread, kernel_thread, new_group
from procsim.mm import madvise, memory, page_alloc as M
from procsim.mm.access_log import AccessLog, HistoryLost
from procsim.mm.counter_tree import make_shape
# the syscalls' constants, for callers of the API (madvise advice, mremap flags)
from procsim.mm.madvise import (MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_NOHUGEPAGE,  # noqa: F401
                                MADV_NORMAL, MADV_PAGEOUT, MADVISE_NAMES)
from procsim.mm.mlock import do_mlock
from procsim.mm.mm import MM, MMError, TASK_SIZE, Flush, page_align
from procsim.mm.mmap import do_brk, do_mmap, do_munmap
from procsim.mm.mmap_lock import mmap_write_lock
from procsim.mm.mprotect import do_mprotect
from procsim.mm.mremap import MREMAP_FIXED, MREMAP_MAYMOVE, do_mremap  # noqa: F401
from procsim.mm.oom import OomKiller
from procsim.mm.pagetable import PAGE_SIZE, PTE_PRESENT, pte_pfn
from procsim.mm.swap import SwapDevice
from procsim.mm.thp import THPSettings
from procsim.mm.vma import MAP_ANONYMOUS, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED
from procsim.sched import NSEC, Sched
from procsim.task import PF_KTHREAD, PF_NO_SETAFFINITY, PF_RANDOMIZE, Cred, Task, ThreadGroup
from procsim.vfs import VFS
from procsim.workload import Workloads

FSHIFT, FIXED_1 = 11, 1 << 11
EXP = (1884, 2014, 2037)  # 1/exp(5s/1min), 5min, 15min in fixed point


def _err(err: int, msg: str) -> KernelError:
    return KernelError(err, msg)


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

    def _changed(self, what: str, **info) -> None:
        self.generation += 1
        for cb in self.observers:
            cb(what, info)

    # -- processes ------------------------------------------------------------

    def create_init(self, argv: list[str] | None = None) -> int:
        """pid 1: the first user process, exec'd from nothing."""
        with self.lock:
            t = new_group(self, alloc_pid(self, 1), None, Cred.of(0, 0), None, [], [], None,
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
            pid = kernel_thread(self, comm, pid, cpu)
            self._changed("spawn", pid=pid)
            return pid

    def fork(self, pid: int, child_pid: int | None = None) -> int:
        with self.lock:
            parent = self.task(pid)
            ptg = parent.tg
            if ptg.zombie:
                raise _err(errno.ESRCH, f"{pid} is a zombie")
            cpid = copy_process(self, parent, child_pid)
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
            tg.cred = Cred.of(uid, gid, groups)
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
                    t.cpu = new
            self._changed("sched", tid=tid)

    def set_nice(self, tid: int, nice: int) -> None:
        with self.lock:
            if not -20 <= nice <= 19:
                raise _err(errno.EINVAL, "nice must be in -20..19")
            self.task(tid).nice = nice
            self._changed("sched", tid=tid)

    def check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.config.nr_cpus:
            raise _err(errno.EINVAL, f"cpu {cpu} does not exist (0-{self.config.nr_cpus - 1})")

    # -- memory syscalls ------------------------------------------------------

    def _flush(self, t: Task, flush: Flush | None) -> None:
        if flush is not None:
            self.sched.flush_tlb(t.mm, t.cpu, flush, self.jiffies)

    def mmap(self, tid: int, length: int, prot: int = 3, flags: int = MAP_PRIVATE | MAP_ANONYMOUS,
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
            start, end, flush = do_mmap(mm, self.vfs, page_align(length), prot, flags, addr, path, offset, writable)
            self._flush(t, flush)
            if flags & MAP_LOCKED:  # mm_populate(): never fails, even for PROT_NONE
                self._charge_faults(t, mm, lambda: memory.populate(mm, start, end, self.vdso_pages))
            self._changed("mm", pid=t.tgid)
            return start

    def munmap(self, tid: int, addr: int, length: int) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            self._flush(t, do_munmap(mm, addr, addr + page_align(length)))
            self._changed("mm", pid=t.tgid)

    def mprotect(self, tid: int, addr: int, length: int, prot: int) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            if prot & ~7:
                raise _err(errno.EINVAL, f"bad prot {prot:#x}")
            end = addr + page_align(length)
            self._check_mapped(mm, addr, end)
            self._flush(t, do_mprotect(mm, addr, end, prot))
            self._changed("mm", pid=t.tgid)

    def mlock(self, tid: int, addr: int, length: int, on: bool = True, onfault: bool = False) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            end = addr + page_align(length)
            self._check_mapped(mm, addr, end)
            self._charge_faults(t, mm, lambda: do_mlock(mm, addr, end, on, onfault, self.vdso_pages))
            self._changed("mm", pid=t.tgid)

    def madvise(self, tid: int, addr: int, length: int, advice: int) -> None:
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            end = addr + page_align(length)
            if advice not in MADVISE_NAMES.values():
                raise _err(errno.EINVAL, f"madvise advice {advice} is not modelled")
            self._check_mapped(mm, addr, end)
            self._flush(t, madvise.do_madvise(mm, addr, end, advice))
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
                if not do_brk(mm, new_brk, lambda flush: self._flush(t, flush)):
                    return mm.brk
                self._changed("mm", pid=t.tgid)
                return new_brk

    def mremap(self, tid: int, old_addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int = 0) -> int:
        with self.lock:
            t, mm = self._user_mm(tid)
            with mmap_write_lock(mm):  # one write cycle: readers see it whole
                addr = do_mremap(mm, old_addr, old_len, new_len, flags, new_addr, lambda f: self._flush(t, f))
                self._changed("mm", pid=t.tgid)
                return addr

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
            n = self._charge_faults(t, mm, lambda: memory.access(mm, vas, write, self.vdso_pages))
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
        return self._charge_faults(t, mm, lambda: memory.fault_in_steps(mm, start, end, write, self.vdso_pages))

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
