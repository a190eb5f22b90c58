"""A hypothesis state machine over random syscall sequences that checks the
kernel's invariants (invariants.py) after every step: VMAs sorted, disjoint,
aligned and maximally merged; counters equal to what the VMAs and page
tables say; no frame leaked, freed while mapped, or mapped more often than
counted; the running CPUs in their mm_cpumask; and failed syscalls change
nothing.

Memory accounting as /proc renders it, under the booted mapcount model and,
where the spec relates them, under both: kpagecount and meminfo
(check_world), smaps/smaps_rollup/status/statm (check_smaps) and pagemap
(check_pagemap), each against the mappings read from the page tables.
test_idle_machine.py extends the machine (KernelMachine).
"""

from __future__ import annotations

import errno

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from invariants import PAGE, boot, check_pagemap, check_smaps, check_smaps_swap_hugetlb, check_world, snapshot
from procsim import arch, mm_cpumask
from procsim.kernel import (MREMAP_FIXED, MREMAP_MAYMOVE, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
                            MADV_NOHUGEPAGE, MADV_PAGEOUT, LIBC)
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGETLB, MAP_LOCKED,
                            MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, VM_LOCKED, VM_WRITE)

# -- the machine -------------------------------------------------------------------

FILES = ["/srv/data/a.bin", "/srv/data/b.bin", LIBC]
PROTS = [0, 1, 2, 3, 5, 7]
MAX_GROUPS = 5
MAX_THREADS = 3
EXPECTED = {errno.EINVAL, errno.ENOMEM, errno.EFAULT, errno.ESRCH, errno.EEXIST, errno.EACCES,
            errno.ECHILD, errno.EAGAIN, errno.EPERM, errno.EBADF}

idx = st.integers(0, 1 << 16)


def _machines() -> list[tuple[str, str | None]]:
    """Every registered architecture with the mm_cpumask model it selects
    (listed twice: the machines as they boot weigh more), then with each
    other model it allows."""
    own = [(a, None) for a in arch.names()]
    other = [(a, m) for a in arch.names() for m in mm_cpumask.names()
             if m != arch.get(a).cpumask_model and mm_cpumask.get(m).fits(a)]
    return own + own + other


class KernelMachine(RuleBasedStateMachine):

    @initialize(cpus=st.integers(1, 4), machine=st.sampled_from(_machines()),
                model=st.sampled_from(["page", "no_page"]), thp=st.sampled_from(["madvise", "always", "never"]),
                mthp=st.sampled_from([None, 16, 64]),
                # swap: none, 63 slots (fills up: pages stay resident), 64 MiB
                swap=st.sampled_from([0, 256 << 10, 64 << 20]), huge=st.sampled_from([0, 3, 16]),
                soft_dirty=st.booleans())
    def boot(self, cpus, machine, model, thp, mthp, swap, huge, soft_dirty):
        sizes = {mthp: "always"} if mthp else {}
        kw = dict(mapcount_model=model, thp_enabled=thp, thp_sizes=sizes, swap_bytes=swap, hugepages=huge,
                  mem_soft_dirty=soft_dirty)
        name, cpumask = machine
        self.k = boot(nr_cpus=cpus, arch=name, cpumask_model=cpumask, **kw)
        self.k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
        self.errors = 0
        self.unmerged_ok = []

    # -- helpers ------------------------------------------------------------------

    def user_groups(self):
        return [tg for pid, tg in sorted(self.k.groups.items()) if tg.mm is not None and pid != 1]

    def user_tids(self):
        return [t.pid for tg in self.user_groups() for t in tg.threads if not t.dead]

    def pick(self, seq, i):
        return seq[i % len(seq)] if seq else None

    def area(self, mm, i, off, npages, clip=False):
        """[addr, addr+len) near VMA number i: across its edges and beyond
        (clip: inside it)."""
        vmas = list(mm.vmas)
        v = vmas[i % len(vmas)]
        if clip:
            off = off % v.npages
            npages = min(npages, v.npages - off)
        addr = v.start + off * PAGE
        return max(addr, 0x10000), npages * PAGE

    def call(self, fn, *args, **kw):
        before = snapshot(self.k)
        try:
            return fn(*args, **kw)
        except OSError as e:
            assert e.errno in EXPECTED, e
            after = snapshot(self.k)
            assert after == before, f"{fn.__name__}{args} failed with {e} but changed the world"
            self.errors += 1
            return None

    # -- processes ------------------------------------------------------------------

    @precondition(lambda self: len(self.user_groups()) < MAX_GROUPS)
    @rule()
    def spawn(self):
        self.call(self.k.spawn, ["/usr/bin/bash"], uid=1000, gid=1000)

    def _fork(self, tid):
        mm = self.k.tasks[tid].mm
        child = self.call(self.k.fork, tid)
        if child is not None and (any(v.flags & VM_LOCKED for v in mm.vmas)
                                  or any(mm is m for m in self.unmerged_ok)):
            self.unmerged_ok.append(self.k.group(child).mm)
        return child

    @precondition(lambda self: len(self.user_groups()) < MAX_GROUPS)
    @rule(i=idx)
    def fork(self, i):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self._fork(tid)

    @rule(i=idx)
    def clone(self, i):
        tid = self.pick(self.user_tids(), i)
        if tid is not None and len(self.k.tasks[tid].tg.threads) < MAX_THREADS:
            self.call(self.k.clone_thread, tid)

    @rule(i=idx)
    def exec(self, i):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.exec, tid, "/usr/bin/cat", ["cat"])

    @rule(i=idx, group=st.booleans())
    def exit(self, i, group):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        if group:
            self.call(self.k.exit_group, tid)
        else:
            self.call(self.k.exit, tid)

    @rule(i=idx)
    def wait(self, i):
        pids = [pid for pid, tg in sorted(self.k.groups.items()) if not tg.zombie]
        self.call(self.k.wait, self.pick(pids, i))

    @rule(tid=st.integers(1, 400))
    def poke_any_pid(self, tid):
        # dead, reaped or never-used pids: ESRCH (or EINVAL for kthreads), nothing changes
        self.call(self.k.touch, tid, 0x10000, PAGE)

    # -- memory -----------------------------------------------------------------------

    @rule(i=idx, kind=st.sampled_from(["anon", "shared", "file", "sfile", "sfile_ro", "growsdown",
                                       "noreserve", "locked"]),
          prot=st.sampled_from(PROTS), npages=st.integers(1, 40), fixed=st.sampled_from([0, 0, 1, 2]),
          j=idx, off=st.integers(-3, 40), fi=idx, foff=st.integers(0, 8))
    def mmap(self, i, kind, prot, npages, fixed, j, off, fi, foff):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        mm = self.k.tasks[tid].mm
        flags = MAP_PRIVATE | MAP_ANONYMOUS
        kw = {}
        if kind == "shared":
            flags = MAP_SHARED | MAP_ANONYMOUS
        elif kind in ("file", "sfile", "sfile_ro"):
            flags = MAP_PRIVATE if kind == "file" else MAP_SHARED
            kw = dict(path=self.pick(FILES, fi), offset=foff * PAGE, writable=kind != "sfile_ro")
        elif kind == "growsdown":
            flags |= MAP_GROWSDOWN
        elif kind == "noreserve":
            flags |= MAP_NORESERVE
        elif kind == "locked":
            flags |= MAP_LOCKED
        addr = 0
        if fixed:
            addr, _ = self.area(mm, j, off, npages)
            flags |= MAP_FIXED if fixed == 1 else MAP_FIXED_NOREPLACE
        self.call(self.k.mmap, tid, npages * PAGE, prot, flags, addr, **kw)

    @rule(i=idx, j=idx, off=st.integers(-3, 40), npages=st.integers(1, 48))
    def munmap(self, i, j, off, npages):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.munmap, tid, *self.area(self.k.tasks[tid].mm, j, off, npages))

    @rule(i=idx, j=idx, off=st.integers(-3, 40), npages=st.integers(1, 48), prot=st.sampled_from(PROTS))
    def mprotect(self, i, j, off, npages, prot):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.mprotect, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), prot)

    @rule(i=idx, j=idx, off=st.integers(-1, 20), npages=st.integers(1, 24), onoff=st.sampled_from(
        ["on", "onfault", "off"]))
    def mlock(self, i, j, off, npages, onoff):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            addr, length = self.area(self.k.tasks[tid].mm, j, off, npages)
            self.call(self.k.mlock, tid, addr, length, onoff != "off", onoff == "onfault")

    @rule(i=idx, j=idx, off=st.integers(0, 20), old=st.integers(0, 24), new=st.integers(0, 48),
          mode=st.sampled_from(["plain", "maymove", "fixed"]), k2=idx, off2=st.integers(-3, 40))
    def mremap(self, i, j, off, old, new, mode, k2, off2):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        mm = self.k.tasks[tid].mm
        addr, old_len = self.area(mm, j, off, old)
        flags, dest = 0, 0
        if mode == "maymove":
            flags = MREMAP_MAYMOVE
        elif mode == "fixed":
            flags = MREMAP_MAYMOVE | MREMAP_FIXED
            dest, _ = self.area(mm, k2, off2, new)
        self.call(self.k.mremap, tid, addr, old_len, new * PAGE, flags, dest)

    @rule(i=idx, delta=st.integers(-40, 40))
    def brk(self, i, delta):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            mm = self.k.tasks[tid].mm
            self.call(self.k.brk, tid, mm.brk + delta * PAGE)

    @rule(i=idx, j=idx, off=st.integers(-3, 40), npages=st.integers(1, 48))
    def madvise(self, i, j, off, npages):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.madvise, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), MADV_DONTNEED)

    @rule(i=idx, j=idx, off=st.integers(-2, 40), npages=st.integers(1, 40), write=st.booleans(),
          clip=st.booleans())
    def touch(self, i, j, off, npages, write, clip):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.touch, tid, *self.area(self.k.tasks[tid].mm, j, off, npages, clip), write)

    @rule(i=idx, j=idx, off=st.integers(-3, 600), npages=st.integers(1, 1100),
          advice=st.sampled_from([MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_FREE, MADV_DONTNEED, MADV_PAGEOUT]))
    def madvise_more(self, i, j, off, npages, advice):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.madvise, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), advice)

    @rule(i=idx, npages=st.integers(512, 2048), touch=st.integers(1, 1024))
    def thp_region(self, i, npages, touch):
        """A big anonymous mapping, advised huge and touched: THPs and mTHPs."""
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            a = self.call(self.k.mmap, tid, npages * PAGE)
            if a is not None:
                self.call(self.k.madvise, tid, a, npages * PAGE, MADV_HUGEPAGE)
                self.call(self.k.touch, tid, a, min(touch, npages) * PAGE)

    @precondition(lambda self: len(self.user_groups()) < MAX_GROUPS)
    @rule(i=idx, npages=st.integers(64, 1100), touch=st.integers(1, 1100), unmapper=st.sampled_from(
        [None, "parent", "child"]), off=st.integers(0, 1100), n=st.integers(1, 1100))
    def fork_large(self, i, npages, touch, unmapper, off, n):
        """Large folios shared by fork, then maybe partly unmapped by one side:
        the MM-ID slots, the maybe-shared flag and the average page mapcount
        at work (random sequences alone rarely fork a process holding THPs)."""
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        a = self.call(self.k.mmap, tid, npages * PAGE)
        if a is None:
            return
        self.call(self.k.madvise, tid, a, npages * PAGE, MADV_HUGEPAGE)
        self.call(self.k.touch, tid, a, min(touch, npages) * PAGE)
        child = self._fork(tid)
        if child is not None and unmapper is not None:
            off %= npages
            self.call(self.k.munmap, child if unmapper == "child" else tid, a + off * PAGE,
                      min(n, npages - off) * PAGE)

    @rule(i=idx, j=idx, off=st.integers(-2, 40), npages=st.integers(1, 600))
    def pageout(self, i, j, off, npages):
        """MADV_PAGEOUT near a VMA: swap entries, split THPs, skipped COW pages."""
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.madvise, tid, *self.area(self.k.tasks[tid].mm, j, off, npages), MADV_PAGEOUT)

    @rule(i=idx, npages=st.integers(1, 1100), touch=st.integers(1, 1100), off=st.integers(0, 600),
          nout=st.integers(1, 700), thp=st.booleans(), lazy=st.booleans(),
          fork=st.sampled_from(["no", "before", "after"]), back=st.integers(0, 800), write=st.booleans())
    def swap_region(self, i, npages, touch, off, nout, thp, lazy, fork, back, write):
        """Anonymous memory touched (THPs if advised), perhaps MADV_FREEd,
        partly paged out (before or after a fork), and partly touched back."""
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        a = self.call(self.k.mmap, tid, npages * PAGE)
        if a is None:
            return
        if thp:
            self.call(self.k.madvise, tid, a, npages * PAGE, MADV_HUGEPAGE)
        self.call(self.k.touch, tid, a, min(touch, npages) * PAGE)
        off = off % npages
        if lazy:
            self.call(self.k.madvise, tid, a, npages * PAGE, MADV_FREE)
        if fork == "before" and len(self.user_groups()) < MAX_GROUPS:
            self.fork(i)
        self.call(self.k.madvise, tid, a + off * PAGE, min(nout, npages - off) * PAGE, MADV_PAGEOUT)
        if fork == "after" and len(self.user_groups()) < MAX_GROUPS:
            self.fork(i)
        if back:
            self.call(self.k.touch, tid, a, min(back, npages) * PAGE, write)

    @rule(i=idx, npages=st.integers(1, 300), fork=st.booleans(),
          steps=st.lists(st.tuples(st.sampled_from(["read", "write", "store", "pageout", "free", "dontneed",
                                                    "munmap", "shrink", "exit_child"]),
                                   st.booleans(), st.integers(0, 299), st.integers(1, 300)), max_size=6))
    def swap_cache_cycle(self, i, npages, fork, steps):
        """Pages through the swap cache: paged out, perhaps shared with a
        child, then read and write faults, stores to mapped cached pages,
        paging out again, MADV_FREE/DONTNEED, munmap and reclaim, by the
        parent or the child, in any order."""
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        a = self.call(self.k.mmap, tid, npages * PAGE)
        if a is None:
            return
        self.call(self.k.touch, tid, a, npages * PAGE)
        self.call(self.k.madvise, tid, a, npages * PAGE, MADV_PAGEOUT)
        child = self._fork(tid) if fork and len(self.user_groups()) < MAX_GROUPS else None
        for op, in_child, off, n in steps:
            who = child if in_child and child is not None else tid
            if who not in self.k.tasks or self.k.tasks[who].dead:
                continue
            off %= npages
            lo, ln = a + off * PAGE, min(n, npages - off) * PAGE
            if op == "shrink":
                self.k.shrink_swap_cache()
            elif op == "exit_child":
                if child is not None and who == child:
                    self.call(self.k.exit_group, child)
            elif op in ("read", "write"):
                self.call(self.k.touch, who, lo, ln, op == "write")
            elif op == "store":
                self.call(self.k.access, who, np.arange(lo, lo + ln, PAGE, dtype=np.int64), True)
            elif op == "munmap":
                self.call(self.k.munmap, who, lo, ln)
            else:
                advice = {"pageout": MADV_PAGEOUT, "free": MADV_FREE, "dontneed": MADV_DONTNEED}[op]
                self.call(self.k.madvise, who, lo, ln, advice)

    @rule(i=idx, shared=st.booleans(), noreserve=st.booleans(), nhuge=st.integers(1, 3),
          extra=st.sampled_from([0, 0, 4096, 1 << 20]), touch=st.integers(0, 3), write=st.booleans(),
          prot=st.sampled_from([3, 3, 1, 0]))
    def hugetlb_region(self, i, shared, noreserve, nhuge, extra, touch, write, prot):
        """A MAP_HUGETLB mapping (its length rounded up to 2 MiB), partly touched."""
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB
        flags |= MAP_NORESERVE if noreserve else 0
        a = self.call(self.k.mmap, tid, (nhuge << 21) - extra if extra < nhuge << 21 else 4096, prot, flags)
        if a is not None and touch and prot:
            self.call(self.k.touch, tid, a, min(touch, nhuge) << 21, write and bool(prot & 2))

    @rule(i=idx, j=idx, off=st.integers(0, 1100), npages=st.integers(1, 1100), write=st.booleans(),
          fork=st.booleans())
    def touch_swapped_or_hugetlb(self, i, j, off, npages, write, fork):
        """Touch a VMA, of any process, that holds swap entries or hugetlb
        pages (swap-ins, hugetlb COW), perhaps right after a fork."""
        if fork and len(self.user_groups()) < MAX_GROUPS:
            self.fork(i)
        vs = [(t, v) for t in self.user_tids() for v in self.k.tasks[t].mm.vmas
              if v.is_hugetlb or self.k.tasks[t].mm.swap_entries(v.start, v.end)]
        if not vs:
            return
        tid, v = self.pick(vs, j)
        off = off % v.npages
        self.call(self.k.touch, tid, v.start + off * PAGE, min(npages, v.npages - off) * PAGE,
                  write and bool(v.flags & VM_WRITE))

    @rule(i=idx, shared=st.booleans(), nhuge=st.integers(1, 2), first_write=st.booleans(),
          who=st.sampled_from(["parent", "child", "both"]), exit_child=st.booleans())
    def hugetlb_fork(self, i, shared, nhuge, first_write, who, exit_child):
        """hugetlb across fork: private pages shared copy-on-write (then
        copied or reused), shared ones faulted in by the child."""
        tid = self.pick(self.user_tids(), i)
        if tid is None or len(self.user_groups()) >= MAX_GROUPS:
            return
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_HUGETLB
        a = self.call(self.k.mmap, tid, nhuge << 21, 3, flags)
        if a is None:
            return
        self.call(self.k.touch, tid, a, nhuge << 21, first_write)
        child = self._fork(tid)
        if child is None:
            return
        for t in {"parent": [tid], "child": [child], "both": [child, tid]}[who]:
            self.call(self.k.touch, t, a, nhuge << 21, True)
        if exit_child:
            self.call(self.k.exit_group, child)

    @rule(nr=st.integers(0, 10))
    def nr_hugepages(self, nr):
        self.k.set_nr_hugepages(nr)

    @rule(i=idx, value=st.integers(0, 6))
    def clear_refs(self, i, value):
        g = self.pick(self.user_groups(), i)
        if g is not None:
            self.call(self.k.clear_refs, g.tgid, value)

    @rule()
    def shrink(self):
        self.k.shrink_deferred_split()

    @rule()
    def shrink_swapcache(self):
        self.k.shrink_swap_cache()

    @rule(size=st.sampled_from([16, 32, 64, 2048]), mode=st.sampled_from(["always", "inherit", "madvise", "never"]))
    def thp_size(self, size, mode):
        self.k.set_thp(size_kb=size, mode=mode)

    # -- scheduling ---------------------------------------------------------------------

    @rule(i=idx, cpu=st.integers(0, 3))
    def run(self, i, cpu):
        tid = self.pick(self.user_tids() + [2], i)
        self.call(self.k.run, tid, cpu % self.k.config.nr_cpus)

    @rule(cpu=st.integers(0, 3))
    def idle(self, cpu):
        self.call(self.k.idle, cpu % self.k.config.nr_cpus)

    @rule(i=idx, mask=st.integers(0, 15))
    def affinity(self, i, mask):
        tid = self.pick(self.user_tids(), i)
        if tid is not None:
            self.call(self.k.set_affinity, tid, mask)

    @rule(dt=st.sampled_from([0.01, 0.3, 1.1, 5.0]))
    def advance(self, dt):
        self.k.advance(dt)

    @invariant()
    def consistent(self):
        if hasattr(self, "k"):
            maps = check_world(self.k, self.unmerged_ok)
            check_smaps(self.k, maps)
            check_pagemap(self.k, maps)
            check_smaps_swap_hugetlb(self.k)


TestKernelStateMachine = KernelMachine.TestCase
TestKernelStateMachine.settings = settings(max_examples=50, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])


def test_replay_vdso_mapcount_underflow():
    """A sequence the machine found (shrunk, steps as printed): the mprotect
    made [vvar] and [vdso] rwx (now EACCES: [vvar] has no VM_MAYWRITE), and
    the mlock then write-faulted the vDSO text, dropping a mapcount its
    kernel pages never held ("mapcount of PFN 2 is -1")."""
    m = KernelMachine()
    m.boot(cpus=2, mthp=None, soft_dirty=False, huge=0, swap=0, model="page", machine=("x86", None), thp="madvise")
    steps = [
        ("fork", dict(i=6807)), ("advance", dict(dt=0.01)),
        ("mremap", dict(i=65535, j=435, k2=143, mode="plain", new=36, off=19, off2=6, old=21)),
        ("swap_region", dict(back=365, fork="after", i=0, lazy=False, nout=1, npages=1, off=0, thp=False,
                             touch=1, write=False)),
        ("clear_refs", dict(i=0, value=0)), ("poke_any_pid", dict(tid=1)),
        ("thp_region", dict(i=25, npages=512, touch=1)), ("advance", dict(dt=0.01)), ("run", dict(cpu=0, i=0)),
        ("advance", dict(dt=5.0)), ("mprotect", dict(i=0, j=74, npages=34, off=-1, prot=7)),
        ("clone", dict(i=0)), ("spawn", {}),
        ("mremap", dict(i=0, j=0, k2=0, mode="plain", new=0, off=0, off2=0, old=0)),
        ("mprotect", dict(i=484, j=0, npages=1, off=0, prot=0)), ("spawn", {}),
        ("mlock", dict(i=0, j=171, npages=8, off=0, onoff="on")),
    ]
    m.consistent()
    for name, kw in steps:
        getattr(m, name)(**kw)
        m.consistent()
