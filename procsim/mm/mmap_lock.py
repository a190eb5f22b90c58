"""The mmap lock, its sequence count and per-VMA read locks: how readers of
maps and PROCMAP_QUERY walk an address space without stalling its writers
(seed-mechanisms §4.2, §4.4; Linux 6.17+).

Writers (every syscall that changes VMAs) hold `MmapLock` for write: the
sequence count `seq` (mm_lock_seq) is odd while they do, and each VMA they
change is first write-locked by stamping it with that odd value
(`vma_start_write`), which also waits for its readers to drain. Unlocking
bumps `seq` again, which releases every VMA lock at once, and publishes the
VMA tree's read-only snapshot (VMATree.rcu) first: lock-free readers look
VMAs up in that snapshot as RCU readers walk the maple tree.

Readers (`lock_next_vma`) take no lock on the mm: they read-lock one VMA at
a time, and fall back to the mmap lock (waiting for the writer) only when
the VMA they found is being changed, or when it lies beyond a gap that the
sequence count says may not be real. A reader holds at most one VMA lock,
and none while it waits for the mmap lock.

All lock-free readers run on one thread (the FUSE loop); writers run under
the kernel lock on any thread.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.mm.mm import MM
    from procsim.mm.vma import VMA

EAGAIN = object()  # vma_start_read(): the VMA was detached from the tree
NO_CHANGE = (1 << 64, -1)  # (changed_lo, changed_hi) of a cycle that changed nothing yet


class MmapLock:
    """mmap_lock (an rwsem; re-entrant for its writer) and mm_lock_seq."""

    __slots__ = ("seq", "_cond", "_readers", "_owner", "_depth", "fallbacks", "on_write_step",
                 "changed_lo", "changed_hi")

    def __init__(self) -> None:
        self.seq = 0
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._owner: int | None = None
        self._depth = 0
        self.fallbacks = 0  # lock-free lookups that had to take the lock
        # Called at each step of a writer (a VMA write-locked, the tree
        # changed): tests run readers there to see every intermediate state.
        self.on_write_step: Callable[[], None] | None = None
        # the hull of the address ranges this write cycle changed (VMAs
        # write-locked, inserted, removed): what the tree republishes
        self.changed_lo, self.changed_hi = NO_CHANGE

    def changed(self, start: int, end: int) -> None:
        if start < self.changed_lo:
            self.changed_lo = start
        if end > self.changed_hi:
            self.changed_hi = end

    @property
    def write_held(self) -> bool:
        return self._owner == threading.get_ident()

    def write_lock(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        with self._cond:
            while self._owner is not None or self._readers:
                self._cond.wait()
            self._owner, self._depth = me, 1
            self.seq += 1  # odd: a write cycle

    def write_unlock(self, publish: Callable[[], None]) -> None:
        self._depth -= 1
        if self._depth:
            return
        publish()  # before seq moves: a reader that sees the new seq sees the new tree
        with self._cond:
            self.seq += 1  # even again: every VMA write lock of the cycle is released
            self._owner = None
            self._cond.notify_all()

    def read_lock(self) -> None:
        with self._cond:
            while self._owner is not None:
                self._cond.wait()
            self._readers += 1

    def read_unlock(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def speculate_try_begin(self) -> tuple[bool, int]:
        """(whether no writer holds the lock, the sequence to check later)."""
        s = self.seq
        return not s & 1, s

    def speculate_retry(self, seq: int) -> bool:
        """True if the address space may have changed since try_begin."""
        return self.seq != seq

    def step(self) -> None:
        if self.on_write_step is not None:
            self.on_write_step()


@contextmanager
def mmap_write_lock(mm: "MM") -> Iterator[None]:
    """A write cycle on `mm` (nests: the outermost one publishes and unlocks)."""
    lock = mm.mmap_lock
    lock.write_lock()
    try:
        yield
    finally:
        lock.write_unlock(mm.vmas.publish)


def write_locked(fn: Callable) -> Callable:
    """The function (its first argument an mm) changes VMAs: it runs in a
    write cycle of the mmap lock (nested in the caller's, if the syscall
    holds one already)."""
    @functools.wraps(fn)
    def locked(mm: "MM", *args, **kw):
        with mmap_write_lock(mm):
            return fn(mm, *args, **kw)
    return locked


def vma_start_write(lock: MmapLock, vma: "VMA") -> None:
    """Write-lock `vma` for the rest of the cycle; wait for its readers."""
    if vma.vm_lock_seq == lock.seq:
        return
    assert lock.write_held, "VMA changed without the mmap write lock"
    vma.vm_lock_seq = lock.seq
    lock.changed(vma.start, vma.end)  # its range as readers know it
    while vma.vm_readers:  # a reader prints it right now: microseconds
        time.sleep(0)
    lock.step()


def vma_start_read(lock: MmapLock, vma: "VMA") -> "VMA | None | object":
    """The VMA read-locked; None if a writer has it locked in this cycle;
    EAGAIN if it is no longer in the tree."""
    if vma.vm_lock_seq == lock.seq:
        return None
    if vma.detached:
        return EAGAIN
    vma.vm_readers += 1
    # again, now that a writer stamping it would wait for us
    if vma.vm_lock_seq == lock.seq or vma.detached:
        vma.vm_readers -= 1
        return None
    return vma


def vma_end_read(vma: "VMA") -> None:
    vma.vm_readers -= 1


def _lock_vma_under_mmap_lock(mm: "MM", from_addr: int) -> "VMA | None":
    """Fallback: wait for the writer, look up under the lock, keep only the
    VMA's read lock (no writer can hold it now)."""
    lock = mm.mmap_lock
    lock.fallbacks += 1
    lock.read_lock()
    try:
        vma = mm.vmas.find(from_addr)
        if vma is not None:
            vma.vm_readers += 1
        return vma
    finally:
        lock.read_unlock()


def lock_next_vma(mm: "MM", from_addr: int) -> "VMA | None":
    """The first VMA with end > from_addr, read-locked (release it with
    vma_end_read), or None past the last VMA. Never reports a gap that did
    not exist: a VMA found beyond a gap is checked against the current tree
    unless the sequence count proves nothing changed since the lookup."""
    lock = mm.mmap_lock
    tree = mm.vmas
    while True:
        seq = lock.seq  # speculate_try_begin(), inlined: every maps record and PROCMAP_QUERY
        vma = tree.rcu_find(from_addr)
        if vma is None:
            return None
        got = vma_start_read(lock, vma)
        if got is EAGAIN:
            continue  # knocked out of the tree under us: search again
        if got is None:
            return _lock_vma_under_mmap_lock(mm, from_addr)
        break
    if from_addr >= vma.end:  # shrunk under us
        vma_end_read(vma)
        return _lock_vma_under_mmap_lock(mm, from_addr)
    if from_addr < vma.start and (seq & 1 or lock.speculate_retry(seq)):
        # a gap before it: was another VMA installed in it meanwhile?
        if tree.rcu_find(from_addr) is not vma:
            vma_end_read(vma)
            return _lock_vma_under_mmap_lock(mm, from_addr)
    return vma
