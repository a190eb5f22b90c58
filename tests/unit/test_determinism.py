"""Determinism that does not depend on who reads (DESIGN.md: a scenario plus
a seed gives byte-identical /proc output, whatever was read in between).

The property: build a world from a scenario with a manual clock, apply a
generated command sequence through the Kernel API, and read random subsets
of the files (global and per-pid, in random order, or none) between the
steps; at the end every file renders to the same bytes as in a run of the
same sequence with no intermediate reads.
"""

from __future__ import annotations

import errno
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from procsim import scenario
from procsim.kernel import MADV_DONTNEED, MADV_HUGEPAGE, MADV_PAGEOUT, Kernel, KernelError
from procsim.mm.page_alloc import OutOfMemory
from procsim.mm.mm import MMError
from procsim.procfs.context import Caller
from procsim.procfs.kinds import Bin, WriteOnly
from procsim.procfs.tree import ProcFS

ROOT = Caller(os.getpid(), 0, 0)  # a reader outside the world, with every privilege
CI_SMALL = Path(__file__).resolve().parents[2] / "examples" / "ci-small.toml"
PAGE = 4096
# a page-table walk of the whole address space is not a file read: pagemap and
# the idle bitmaps are read over each VMA; these never contain any
SKIP_NAMES = {"self", "thread-self"}
# a read of PID/idle_bitmap clears the accessed bits it reports (the RFC's
# semantics, README Limitations), so smaps' Referenced follows it: it is a
# step, not a read, and stays out of the reads between steps; so does
# kernel/random/uuid, a new uuid each read as on Linux (from the seed)
STATEFUL_READS = {"idle_bitmap", "uuid"}
# no shrinking: a failing sequence is printed as found (shrinking one took 5 min)
BOUNDED = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow],
               phases=[Phase.explicit, Phase.reuse, Phase.generate])


def ci_small() -> Kernel:
    """examples/ci-small.toml with 16 MiB of swap, so that pageout does something."""
    doc = tomllib.loads(CI_SMALL.read_text())
    doc["machine"]["swap"] = "16M"
    return scenario.build(doc, source=str(CI_SMALL))


def default_world() -> Kernel:
    return scenario.load(clock="manual")


# -- the commands ------------------------------------------------------------------------


class Driver:
    """Applies steps to a kernel. Every choice is made from the world's own
    state (its pids, in order) and the driver's record of its mappings, so
    two identical worlds given the same steps stay identical."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.maps: dict[int, list[tuple[int, int]]] = {}

    def _user_pids(self) -> list[int]:
        return sorted(p for p, g in self.k.groups.items()
                      if g.mm is not None and not g.zombie and not g.kthread)

    def _tids(self) -> list[int]:
        return sorted(t for t, task in self.k.tasks.items() if not task.dead and task.mm is not None)

    def _pick(self, xs: list[int], i: int) -> int | None:
        return xs[i % len(xs)] if xs else None

    def _region(self, pid: int, j: int) -> tuple[int, int] | None:
        regions = self.maps.get(pid)
        return regions[j % len(regions)] if regions else None

    def apply(self, step: tuple) -> None:
        op, i, j, n = step
        k = self.k
        pid = self._pick(self._user_pids(), i)
        try:
            if op == "advance":
                k.advance(n / 4)
            elif pid is None:
                return
            elif op == "spawn":
                k.spawn(["/usr/bin/sleep", str(n)], parent=pid)
            elif op == "fork":
                child = k.fork(pid)
                self.maps[child] = list(self.maps.get(pid, []))
            elif op == "clone":
                k.clone_thread(pid)
            elif op == "mmap":
                length = n * PAGE * 16
                self.maps.setdefault(pid, []).append((k.mmap(pid, length), length))
            elif op in ("touch", "read", "pageout", "dontneed", "hugepage", "munmap"):
                r = self._region(pid, j)
                if r is None:
                    return
                addr, length = r
                if op == "touch":
                    k.touch(pid, addr, length, write=True)
                elif op == "read":
                    k.touch(pid, addr, length // 2 or PAGE, write=False)
                elif op == "munmap":
                    k.munmap(pid, addr, length)
                    self.maps[pid].remove(r)
                else:
                    advice = {"pageout": MADV_PAGEOUT, "dontneed": MADV_DONTNEED, "hugepage": MADV_HUGEPAGE}[op]
                    k.madvise(pid, addr, length, advice)
            elif op == "exit":
                if pid != 1:
                    k.exit_group(pid, n)
            elif op == "exit_thread":
                tid = self._pick(self._tids(), j)
                if tid is not None and tid != 1:
                    k.exit(tid)
            elif op == "wait":
                k.wait(pid)
            elif op == "run":
                tid = self._pick(self._tids(), j)
                if tid is not None:
                    k.run(tid, n % k.config.nr_cpus)
            elif op == "sleep":
                tid = self._pick(self._tids(), j)
                if tid is not None:
                    k.sleep(tid, "D" if n % 2 else "S")
        except (KernelError, MMError, OutOfMemory):
            pass  # a failed call changes nothing, the same way in both runs


OPS = ("advance", "spawn", "fork", "clone", "mmap", "touch", "read", "pageout", "dontneed", "hugepage",
       "munmap", "exit", "exit_thread", "wait", "run", "sleep")
STEP = st.tuples(st.sampled_from(OPS), st.integers(0, 63), st.integers(0, 63), st.integers(1, 16))
# the reads after a step: indices into the list of files at that moment
# (random subsets, in random order); an empty list reads nothing
READS = st.lists(st.integers(0, 1 << 16), max_size=8)


# -- reading files ------------------------------------------------------------------------


def files(fs: ProcFS) -> list[str]:
    """Every readable file under /proc and /sys, in a stable order."""
    out: list[str] = []
    stack = ["/sys", "/proc"]
    while stack:
        d = stack.pop()
        for name in sorted(fs.readdir(d, ROOT), reverse=True):
            if name in (".", "..") or name in SKIP_NAMES:
                continue
            path = f"{d}/{name}"
            n = fs.resolve(path, ROOT)
            if n.kind == "dir":
                stack.append(path)
            elif n.kind == "file" and n.entry is not None and not isinstance(n.entry, WriteOnly):
                out.append(path)
    return out


def _vmas(fs: ProcFS, pid_dir: str) -> list[tuple[int, int]]:
    text = read(fs, f"{pid_dir}/maps").decode()
    return [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in text.splitlines()]


def read(fs: ProcFS, path: str, chunk: int = 4096) -> bytes:
    """What cat gets; for the binary files read by position, the parts that
    describe something: pagemap and the idle bitmap over every VMA, the
    page-frame files over all of memory. ENOENT/ESRCH (the task went away
    between listing and reading) is part of the answer."""
    try:
        name = path.rsplit("/", 1)[1]
        h = fs.open(path, os.O_RDONLY, ROOT)
        if not isinstance(h.entry, Bin):
            out, off = b"", 0
            while data := h.read(chunk, off):
                out += data
                off += len(data)
            return out
        if name in ("pagemap", "idle_bitmap"):
            spans = _vmas(fs, path.rsplit("/", 1)[0])
            if name == "pagemap":
                return b"".join(h.read((e - s) // PAGE * 8, s // PAGE * 8) for s, e in spans)
            return b"".join(h.read(((e // PAGE + 63) // 64 - s // PAGE // 64) * 8, s // PAGE // 64 * 8)
                            for s, e in spans)
        size = fs.kernel.mem.nr_pages * 8 if name.startswith("kpage") else fs.kernel.mem.nr_pages // 8
        return h.read(size, 0)
    except OSError as e:
        # (EINVAL: the mount files of a task that exited; EIO: power/autosuspend_delay_ms without autosuspend)
        if e.errno in (errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EINVAL, errno.EIO):
            return f"errno {e.errno}".encode()
        raise


def render_all(k: Kernel) -> dict[str, bytes]:
    fs = ProcFS(k)
    return {p: read(fs, p) for p in files(fs)}


# -- the property -------------------------------------------------------------------------


def run(make, steps: list[tuple], reads: list[list[int]] | None) -> dict[str, bytes]:
    k = make()
    fs = ProcFS(k)
    d = Driver(k)
    for i, step in enumerate(steps):
        d.apply(step)
        if reads is not None and reads[i]:
            paths = [p for p in files(fs) if p.rsplit("/", 1)[1] not in STATEFUL_READS]
            for r in reads[i]:
                read(fs, paths[r % len(paths)], chunk=1 + r % 4096)
    return {p: read(fs, p) for p in files(fs)} if reads is not None else render_all(k)


def assert_same(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    assert a.keys() == b.keys()
    differ = [p for p in a if a[p] != b[p]]
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:5]}"


@settings(max_examples=25, **BOUNDED)
@given(data=st.data())
def test_reads_change_nothing_ci_small(data) -> None:
    steps = data.draw(st.lists(STEP, min_size=1, max_size=14), "steps")
    reads = data.draw(st.lists(READS, min_size=len(steps), max_size=len(steps)), "reads")
    assert_same(run(ci_small, steps, reads), run(ci_small, steps, None))


@settings(max_examples=3, **BOUNDED)
@given(data=st.data())
def test_reads_change_nothing_default_scenario(data) -> None:
    steps = data.draw(st.lists(STEP, min_size=1, max_size=6), "steps")
    reads = data.draw(st.lists(READS, min_size=len(steps), max_size=len(steps)), "reads")
    assert_same(run(default_world, steps, reads), run(default_world, steps, None))


def test_pgfault_does_not_depend_on_when_vmstat_was_read() -> None:
    """The issue's example: vmstat read before a process exits and is reaped,
    or not at all, must end with the same pgfault."""
    def world(read_before: bool) -> bytes:
        k = ci_small()
        fs = ProcFS(k)
        p = k.spawn(["/usr/bin/cc"], parent=100)
        a = k.mmap(p, 1 << 20)
        k.touch(p, a, 1 << 20)
        if read_before:
            read(fs, "/proc/vmstat")
        k.exit_group(p)
        k.wait(100, p)
        return read(fs, "/proc/vmstat")
    assert world(True) == world(False)
