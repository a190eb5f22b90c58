"""The memory half of the Kernel's syscall-level API (the SYSCALL_DEFINEs
of mm/): mmap, munmap, mprotect, mlock, madvise, brk, mremap, user
accesses and touches, clear_refs, the THP and hugetlb switches, working-set
tracking, the idle-tracking reads and writes (they clear accessed
bits). Each entry point checks its arguments, finds the task and its
mm, calls the mm code (procsim/mm/mmap.py, mprotect.py, ...) and sends
the TLB flushes and fault charges that result.

A mixin of Kernel: it uses Kernel's state and helpers (lock, task lookup,
_user_mm, _changed, sched, oom, vfs, vdso_pages).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import numpy as np

from procsim.cgroup import io as cgroup_io
from procsim.cgroup import memcontrol
from procsim.errors import KernelError
from procsim.mm import idle, madvise, memory, page_alloc as M, rlimit
from procsim.mm.access_log import AccessLog, HistoryLost
from procsim.mm.madvise import MADVISE_NAMES
from procsim.mm.mlock import do_mlock
from procsim.mm.mm import MM, TASK_SIZE, Flush, page_align
from procsim.mm.mmap import do_brk, do_mmap, do_munmap, map_region
from procsim.mm.mmap_lock import mmap_write_lock
from procsim.mm.mprotect import do_mprotect
from procsim.mm.mremap import do_mremap
from procsim.mm.pagetable import PAGE_SHIFT, PAGE_SIZE, PTE_PRESENT, pte_pfn
from procsim.mm.sysctl_vm import vm_enough_memory
from procsim.mm.task_mmu import clear_refs
from procsim.mm.vma import MAP_ANONYMOUS, MAP_HUGETLB, MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, VM_GROWSDOWN
from procsim.sched import NSEC
from procsim.task import Task


def _err(err: int, msg: str) -> KernelError:
    return KernelError(err, msg)


class MmSyscalls:
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
            if vm_accountable(prot, flags, anon):
                vm_enough_memory(self, page_align(length) // PAGE_SIZE, t.tg.cred.euid == 0)
            start, end, flush = do_mmap(mm, self.vfs, page_align(length), prot, flags, addr, path, offset, writable,
                                        t.tg.rlim, t.tg.cred.euid == 0)
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
            if on:
                rlimit.check(rlimit.mlock_errno(mm, t.tg.rlim, addr, end, t.tg.cred.euid == 0), "mlock")
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
            clear_refs(tg.mm, value)
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

    def shrink_swap_cache(self) -> int:
        """A later reclaim pass over the swap cache (memory pressure): the
        folios nobody maps are freed, their slots keep their swap entries
        (procsim/mm/swapcache.py); returns frames freed."""
        with self.lock:
            n = self.mem.swap_cache.shrink()
            self._changed("mm")
            return n

    def brk(self, tid: int, new_brk: int) -> int:
        """brk(2): returns the new break, or the old one if it cannot move."""
        with self.lock:
            t, mm = self._user_mm(tid)
            with mmap_write_lock(mm):  # one write cycle: readers see it whole
                if not do_brk(mm, new_brk, lambda flush: self._flush(t, flush), t.tg.rlim):
                    return mm.brk
                self._changed("mm", pid=t.tgid)
                return new_brk

    def mremap(self, tid: int, old_addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int = 0) -> int:
        with self.lock:
            t, mm = self._user_mm(tid)
            with mmap_write_lock(mm):  # one write cycle: readers see it whole
                addr = do_mremap(mm, old_addr, old_len, new_len, flags, new_addr, lambda f: self._flush(t, f),
                                 t.tg.rlim, t.tg.cred.euid == 0)
                self._changed("mm", pid=t.tgid)
                return addr

    def touch(self, tid: int, addr: int, length: int, write: bool = True) -> int:
        """Access every page of [addr, addr+length): faults allocate frames and
        break COW. Returns the number of faults."""
        with self.lock:
            t, mm = self._user_mm(tid)
            self._check_range(addr, length)
            self._expand_stack(t, mm, addr)
            n = self._fault(t, mm, addr, addr + page_align(length), write)
            self._changed("mm", pid=t.tgid)
            return n

    def _expand_stack(self, t: Task, mm: MM, addr: int) -> None:
        """A fault below a VM_GROWSDOWN VMA (with nothing mapped in between)
        grows it down to the faulting page (expand_downwards), within the
        limits (procsim/mm/rlimit.py: ENOMEM, where the task would get SIGSEGV)."""
        v = mm.vmas.find(addr)
        if v is None or v.start <= addr or not v.flags & VM_GROWSDOWN:
            return
        rlimit.check(rlimit.stack_growth_errno(mm, t.tg.rlim, v, mm.vmas.prev(v), addr, t.tg.cred.euid == 0),
                     "stack growth")
        with mmap_write_lock(mm):
            map_region(mm, addr, v.start, v.flags, v.file, v.pgoff - ((v.start - addr) >> PAGE_SHIFT))
        self._changed("mm", pid=t.tgid)

    def access(self, tid: int, vas: np.ndarray, write: bool = False) -> int:
        """User loads or stores to the pages at `vas` (page aligned, any order):
        accessed (and dirty) bits set by the hardware walk, faults where
        needed (memory.access). Returns the number of faults."""
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
        mm_account_fault() does: swap-ins that read the page are major
        (maj_flt), the rest minor (those the swap cache served too).
        Its allocations may call the OOM killer (`t` is current); if that
        chooses `t` itself, `t` is killed here and the call fails ENOMEM."""
        major = mm.nr_major
        ev = self.mem.vm_events
        pgpgin = ev.pgpgin  # file pages the faults read in: the task's read_bytes (submit_bio)
        dirtied = self.mem.nr_dirtied  # and the shared file pages they dirtied: its write_bytes
        pswpin = self.mem.swap.pswpin
        oom = self.oom
        prev, oom.current, oom.kill_current = oom.current, t, False
        try:
            with self.memcg.charging(t):  # what the faults allocate is charged to t's memcg
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
        t.ioac.read_bytes += (ev.pgpgin - pgpgin) * 1024
        t.ioac.write_bytes += (self.mem.nr_dirtied - dirtied) * PAGE_SIZE
        cgroup_io.charge(self, t, (ev.pgpgin - pgpgin) * 1024, (self.mem.nr_dirtied - dirtied) * PAGE_SIZE)
        memcg = self.memcg.memcg_of(t)
        memcg.count_event("pgfault", n)
        memcg.count_event("pgmajfault", major)
        # each major fault waited for its page: a swap-in is a memory stall,
        # a read of a file an I/O one
        swapins = min(major, self.mem.swap.pswpin - pswpin)
        self.psi.add_stall(t, "memory", swapins * memcontrol.SWAPIN_NS)
        self.psi.add_stall(t, "io", (major - swapins) * memcontrol.SWAPIN_NS)
        # count_vm_event(PGFAULT), PGMAJFAULT
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

    # -- idle page tracking: reads and writes through procfs and sysfs that change bits ----

    def idle_bitmap_read(self, mm: MM, start: int, end: int) -> np.ndarray:
        """A read of /proc/PID/idle_bitmap over [start, end) of `mm`: tests and
        clears accessed bits (procsim/mm/idle.py), so it is a change."""
        with self.lock:
            try:
                return idle.idle_read(mm.pgtable, start, end)
            finally:
                self._changed("idle")

    def idle_bitmap_write(self, mm: MM, start: int, pages: np.ndarray) -> None:
        """A write to /proc/PID/idle_bitmap: the pages marked in `pages`
        (bool per page from `start`) lose their accessed bits."""
        with self.lock:
            try:
                idle.idle_write(mm.pgtable, start, pages)
            finally:
                self._changed("idle")

    def page_idle_read(self, lo: int, hi: int) -> np.ndarray:
        """A read of /sys/kernel/mm/page_idle/bitmap for PFNs [lo, hi): the
        rmap walk clears accessed bits and idle flags."""
        with self.lock:
            try:
                return idle.page_idle_read(self.mem, lo, hi)
            finally:
                self._changed("idle")

    def page_idle_write(self, pfns: np.ndarray) -> None:
        """A write to /sys/kernel/mm/page_idle/bitmap: the user folios among
        `pfns` become idle."""
        with self.lock:
            try:
                idle.page_idle_write(self.mem, pfns)
            finally:
                self._changed("idle")


def vm_accountable(prot: int, flags: int, anon: bool) -> bool:
    """accountable_mapping() and shmem's charge: private writable mappings
    without MAP_NORESERVE, and shared anonymous ones (their shmem object)."""
    if flags & MAP_NORESERVE or flags & MAP_HUGETLB:
        return False
    if flags & MAP_SHARED:
        return anon
    return bool(prot & PROT_WRITE)
