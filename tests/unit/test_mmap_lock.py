"""The mmap lock, mm_lock_seq and per-VMA locks (seed-mechanisms §4), and
maps read as a seq_file without the kernel lock: chunked reads, the
position rule, and every intermediate state of a writer seen by a reader."""

from __future__ import annotations

import errno
import os
import random
import threading
import time

import pytest

from procsim.mm.mmap_lock import lock_next_vma, vma_end_read, vma_start_read
from procsim.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE
from procsim.procfs import maps
from procsim.procfs.tree import ProcFS

from procfs_helpers import ROOT, read_all

P = 4096
RW, RO, NONE = 3, 1, 0


def _proc(fs: ProcFS, n: int = 160, parent: int = 1) -> tuple[int, int]:
    """A process with n 3-page anonymous VMAs alternating rw/r-- (they cannot
    merge, as in proc-maps-race), more than two pages of maps text."""
    k = fs.kernel
    pid = k.spawn(["/usr/bin/app"], parent=parent)
    base = 0x10000000
    for i in range(n):
        k.mmap(pid, 3 * P, RW if i % 2 == 0 else RO, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, base + 3 * P * i)
    return pid, base


def _lines(text: bytes) -> list[str]:
    return text.decode().splitlines(keepends=True)


def _range(line: str) -> tuple[int, int]:
    a, b = line.split()[0].split("-")
    return int(a, 16), int(b, 16)


def _read_fd(h, chunk: int) -> bytes:
    """Read an open file from offset 0 to EOF (no open: that takes the kernel lock)."""
    out = b""
    while data := h.read(chunk, len(out)):
        out += data
    return out


def _one_instant(fs: ProcFS, pid: int) -> bytes:
    with fs.kernel.lock:
        return maps.render(maps.Ctx(fs.kernel, ROOT, fs.kernel.tasks[pid]))


# -- reads with no writer ---------------------------------------------------------


@pytest.mark.parametrize("chunk", [7, 100, 4096, 1 << 20])
def test_chunked_reads_equal_one_instant(fs, chunk):
    pid, _ = _proc(fs)
    assert read_all(fs, f"proc/{pid}/maps", chunk=chunk) == _one_instant(fs, pid)


def test_read_returns_whole_records_below_one_page(fs):
    pid, _ = _proc(fs)
    h = fs.open(f"proc/{pid}/maps", os.O_RDONLY, ROOT)
    off = 0
    sizes = []
    while data := h.read(1 << 20, off):
        assert data.endswith(b"\n") and len(data) < 4096
        sizes.append(len(data))
        off += len(data)
    full = _one_instant(fs, pid)
    assert off == len(full) and len(sizes) > 2
    # each read is as many whole lines as fit in 4095 bytes
    lines, i = _lines(full), 0
    for n in sizes[:-1]:
        got = 0
        while got + len(lines[i]) < 4096:
            got += len(lines[i])
            i += 1
        assert n == got


def test_pread_anywhere_is_a_fresh_rendering(fs):
    pid, _ = _proc(fs)
    full = _one_instant(fs, pid)
    h = fs.open(f"proc/{pid}/maps", os.O_RDONLY, ROOT)
    for off in (0, 1, 4000, 4096, 9999, len(full) - 3, len(full), len(full) + 10):
        assert h.read(50, off) == full[off: off + 50][: len(h.read(50, off))]
        assert full[off: off + 50].startswith(h.read(50, off))


def test_read_at_zero_after_change_shows_new_state(fs):
    pid, base = _proc(fs)
    h = fs.open(f"proc/{pid}/maps", os.O_RDONLY, ROOT)
    h.read(4096, 0)
    fs.kernel.munmap(pid, base, 3 * P)
    assert h.read(1 << 20, 0) == _one_instant(fs, pid)[:len(h.read(1 << 20, 0))]
    assert f"{base:08x}-".encode() not in h.read(1 << 20, 0)


# -- the boundary cases of seed §4.5: a change between two reads ---------------------


def _first_chunk(fs, pid):
    h = fs.open(f"proc/{pid}/maps", os.O_RDONLY, ROOT)
    c1 = h.read(4096, 0)
    return h, c1, _range(_lines(c1)[-1])


def test_split_of_last_reported_vma_no_duplicate(fs):
    pid, _ = _proc(fs)
    h, c1, (a, b) = _first_chunk(fs, pid)
    fs.kernel.mprotect(pid, a, P, NONE)  # [a,b) -> [a,a+P) [a+P,b)
    c2 = h.read(4096, len(c1))
    first = _range(_lines(c2)[0])
    assert first[0] >= b  # resumes after b: neither part of the split again


def test_extension_of_last_reported_vma_is_the_allowed_duplicate(fs):
    pid, base = _proc(fs)
    h, c1, (a, b) = _first_chunk(fs, pid)
    # make the next VMA mergeable with [a,b): same protection
    nxt_prot = RO if ((a - base) // (3 * P)) % 2 == 0 else RW
    same = RW if nxt_prot == RO else RO
    fs.kernel.mprotect(pid, b, 3 * P, same)
    c2 = h.read(4096, len(c1))
    s, e = _range(_lines(c2)[0])
    assert s == a and e >= b + 3 * P  # the merged [a,c) again: a duplicate


def test_shrink_of_last_reported_vma_no_gap(fs):
    pid, _ = _proc(fs)
    h, c1, (a, b) = _first_chunk(fs, pid)
    fs.kernel.munmap(pid, b - P, P)
    c2 = h.read(4096, len(c1))
    assert _range(_lines(c2)[0])[0] == b  # the next VMA, nothing skipped


def test_reaped_task_read_esrch_zombie_eof(fs):
    k = fs.kernel
    parent = k.spawn(["/usr/bin/sh"])
    pid, _ = _proc(fs, 4, parent)
    h = fs.open(f"proc/{pid}/maps", os.O_RDONLY, ROOT)
    k.exit(pid)
    assert h.read(4096, 0) == b""  # zombie: no mm
    k.wait(parent, pid)
    with pytest.raises(OSError) as e:
        h.read(4096, 0)
    assert e.value.errno == errno.ESRCH


# -- the lock model ---------------------------------------------------------------


def test_seq_odd_during_write_even_after(fs):
    pid, base = _proc(fs, 4)
    mm = fs.kernel.tasks[pid].mm
    seen = []
    mm.mmap_lock.on_write_step = lambda: seen.append(mm.mmap_lock.seq)
    s0 = mm.mmap_lock.seq
    fs.kernel.mprotect(pid, base, P, NONE)
    mm.mmap_lock.on_write_step = None
    assert seen and all(s % 2 == 1 for s in seen) and len(set(seen)) == 1  # one cycle
    assert mm.mmap_lock.seq == s0 + 2


def test_reader_blocks_writer_only_on_the_vma_it_holds(fs):
    k = fs.kernel
    pid, base = _proc(fs, 8)
    mm = k.tasks[pid].mm
    held = lock_next_vma(mm, base)  # [base, base+3P), read-locked
    assert held is not None and held.start == base
    other = threading.Thread(target=k.mprotect, args=(pid, base + 6 * P, P, NONE))
    other.start()
    other.join(5)
    assert not other.is_alive()  # a change elsewhere does not wait for the reader
    mine = threading.Thread(target=k.mprotect, args=(pid, base, P, NONE))
    mine.start()
    time.sleep(0.2)
    assert mine.is_alive()  # waits for the reader of that VMA to drain
    assert held.end == base + 3 * P  # and has not changed it under the reader
    vma_end_read(held)
    mine.join(5)
    assert not mine.is_alive()
    assert [_range(x) for x in _lines(_one_instant(fs, pid))[:2]] == [(base, base + P), (base + P, base + 3 * P)]


def test_write_locked_vma_makes_reader_fall_back_and_see_new_state(fs):
    k = fs.kernel
    pid, base = _proc(fs, 8)
    mm = k.tasks[pid].mm
    lock = mm.mmap_lock
    results = {}

    def reader():
        v = lock_next_vma(mm, base)
        results["vma"] = (v.start, v.end, v.flags)
        vma_end_read(v)

    def at_step():
        if "thread" in results:
            return
        t = results["thread"] = threading.Thread(target=reader)
        f0 = lock.fallbacks
        t.start()
        deadline = time.monotonic() + 5
        while t.is_alive() and lock.fallbacks == f0:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert t.is_alive()  # waiting for this writer

    lock.on_write_step = at_step
    k.mprotect(pid, base, 3 * P, NONE)  # the first step write-locks [base, base+3P)
    lock.on_write_step = None
    results["thread"].join(5)
    v = mm.vmas.lookup(base)
    assert results["vma"] == (v.start, v.end, v.flags)  # the state after the change
    assert lock.fallbacks >= 1


def test_vma_start_read_fails_while_write_locked_and_when_detached(fs):
    k = fs.kernel
    pid, base = _proc(fs, 4)
    mm = k.tasks[pid].mm
    v = mm.vmas.lookup(base)
    k.munmap(pid, base, 3 * P)
    assert v.detached and vma_start_read(mm.mmap_lock, v) is not None and vma_start_read(mm.mmap_lock, v) is not v


# -- every intermediate state of a writer, seen by a lock-free reader -----------------


def _covered(lines: list[str]) -> list[tuple[int, int]]:
    return [_range(x) for x in lines if "[vsyscall]" not in x]


def _check_pass(text: bytes, before: list[str], after: list[str]) -> None:
    """The rules of seed §4.5 for one pass read while a change happened."""
    lines = _lines(text)
    assert text.endswith(b"\n")
    valid = set(before) | set(after)
    for ln in lines:
        assert ln in valid, f"a line of no state: {ln!r}"
    got = _covered(lines)
    ends = [e for _, e in got]
    for (s0, e0), (s1, e1) in zip(got, got[1:]):
        assert e1 > e0, "vm_end must increase"
        assert s1 >= e0 or (s1 == s0 and e1 > e0), "overlap only as the extended VMA again"
    # no gap where both states had a mapping
    spans_b, spans_a = _covered(before), _covered(after)

    def mapped(spans, x):
        return any(s <= x < e for s, e in spans)

    for s, e in spans_b:
        for x in range(s, e, P):
            if mapped(spans_a, x):
                assert mapped(got, x), f"gap at {x:#x}, mapped before and after"
    assert ends == sorted(ends)


def _writer_ops(k, pid, base):
    """Changes of every kind from seed §4.5 and the selftest."""
    b = base + 3 * P * 10
    return [
        lambda: k.mprotect(pid, b, P, NONE),                         # split, new VMA below
        lambda: k.mprotect(pid, b, P, RW),                           # merge back
        lambda: k.mprotect(pid, b + 2 * P, P, NONE),                 # split, new VMA above
        lambda: k.mprotect(pid, b + 2 * P, P, RW),
        lambda: k.mprotect(pid, b + 3 * P, 3 * P, RW),               # merge left full
        lambda: k.mprotect(pid, b + 3 * P, 3 * P, RO),
        lambda: k.mprotect(pid, b + 3 * P, P, RW),                   # merge left partial
        lambda: k.mprotect(pid, b + 3 * P, P, RO),
        lambda: k.mremap(pid, b, 3 * P, P),                          # shrink
        lambda: k.mremap(pid, b, P, 3 * P),                          # grow back
        lambda: k.mmap(pid, P, NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, b + P),  # map over
        lambda: k.mmap(pid, P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, b + P),
        lambda: k.munmap(pid, b + 6 * P, 3 * P),                     # a real gap
        lambda: k.mmap(pid, 3 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, b + 6 * P),
        lambda: k.mremap(pid, b + 12 * P, 3 * P, 3 * P, 3, b + 60 * 3 * P),  # move away
        lambda: k.mremap(pid, b + 60 * 3 * P, 3 * P, 3 * P, 3, b + 12 * P),  # and back
    ]


@pytest.mark.parametrize("chunk", [4096, 333])
def test_reader_at_every_writer_step_sees_no_false_gap(fs, chunk):
    k = fs.kernel
    pid, base = _proc(fs, 40)
    mm = k.tasks[pid].mm
    lock = mm.mmap_lock
    passes: list[bytes] = []
    threads: list[threading.Thread] = []

    handles: list = []

    looked: list[tuple[int, tuple[int, int] | None]] = []
    region = range(base + 3 * P * 10 - P, base + 3 * P * 16, P)

    def one_pass(h):
        passes.append(_read_fd(h, chunk))
        for a in region:  # PROCMAP_QUERY's lookups, in the middle of VMAs too
            v = lock_next_vma(mm, a)
            looked.append((a, None if v is None else (v.start, v.end)))
            if v is not None:
                vma_end_read(v)

    def at_step():
        # a whole pass now, in another thread: it finishes against the
        # published tree or falls back and waits for this writer
        t = threading.Thread(target=one_pass, args=(handles.pop(),))  # one open file each
        f0 = lock.fallbacks
        threads.append(t)
        t.start()
        deadline = time.monotonic() + 5
        while t.is_alive() and lock.fallbacks == f0:
            assert time.monotonic() < deadline, "reader neither done nor waiting for the writer"
            time.sleep(0.0005)

    checked = 0
    for op in _writer_ops(k, pid, base):
        before = _lines(_one_instant(fs, pid))
        passes.clear()
        threads.clear()
        looked.clear()
        handles[:] = [fs.open(f"proc/{pid}/maps", os.O_RDONLY, ROOT) for _ in range(32)]
        lock.on_write_step = at_step
        try:
            op()
        finally:
            lock.on_write_step = None
        for t in threads:
            t.join(5)
        after = _lines(_one_instant(fs, pid))
        for text in passes:
            _check_pass(text, before, after)
            checked += 1
        b_spans, a_spans = _covered(before), _covered(after)
        for a, got in looked:
            if any(s <= a < e for s, e in b_spans) and any(s <= a < e for s, e in a_spans):
                assert got is not None and got[0] <= a < got[1], f"lookup at {a:#x} gave {got}"
                assert got in b_spans or got in a_spans
    assert checked >= 30


def test_reader_interleaved_between_chunks_random_changes(fs):
    """Reads of one page interleaved with random changes: every pass keeps
    the §4.5 rules against the states around each change."""
    k = fs.kernel
    pid, base = _proc(fs, 40)
    rng = random.Random(5)
    ops = _writer_ops(k, pid, base)
    h = fs.open(f"proc/{pid}/maps", os.O_RDONLY, ROOT)
    for _ in range(40):
        states = [_lines(_one_instant(fs, pid))]
        out, off = b"", 0
        while data := h.read(4096, off):
            out += data
            off += len(data)
            if rng.random() < 0.7:
                rng.choice(ops)()
                states.append(_lines(_one_instant(fs, pid)))
        # a VMA mapped in every state seen during the pass must be reported
        common = set(_covered(states[0]))
        for st in states[1:]:
            common &= set(_covered(st))
        got = _covered(_lines(out))
        for s, e in common:
            assert any(gs <= s and e <= ge for gs, ge in got), f"{s:#x}-{e:#x} missing"
        ends = [e for _, e in got]
        assert all(b > a for a, b in zip(ends, ends[1:]))


def test_lookups_racing_a_writer_thread_never_skip_a_mapped_address(fs):
    """A real race (two threads, a tiny switch interval): a writer splits
    and merges a VMA while a lock-free reader looks up an address that is
    mapped in every state; the reader must always get the VMA covering it."""
    import sys
    k = fs.kernel
    pid, base = _proc(fs, 40)
    mm = k.tasks[pid].mm
    addr = base + 3 * P * 10
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            k.mmap(pid, P, NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr)
            k.mmap(pid, P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr)
            k.mremap(pid, addr, 3 * P, 2 * P)
            k.mremap(pid, addr, 2 * P, 3 * P)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    t = threading.Thread(target=writer)
    t.start()
    bad, n = [], 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for a in (addr, addr + P):  # mapped in every state
                v = lock_next_vma(mm, a)
                n += 1
                if v is None or not v.start <= a < v.end:
                    bad.append((a, v and (v.start, v.end)))
                if v is not None:
                    vma_end_read(v)
    finally:
        stop.set()
        t.join(10)
        sys.setswitchinterval(old)
    assert not bad, bad[:5]
    assert n > 1000 and mm.mmap_lock.fallbacks > 0  # the race really happened
