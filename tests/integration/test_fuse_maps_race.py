"""Readers of MNT/proc/PID/maps racing a writer, in the spirit of the
kernel's tools/testing/selftests/proc/proc-maps-race.c (seed-mechanisms
§4.5, §4.6).

A simulated process has NVMAS anonymous 3-page VMAs, alternating rw-p and
r--p so that neighbours cannot merge (more than four pages of maps text).
For each scenario the VMA that ends read number K (the last whole line of
the K-th read(fd, 4096)) is the target, as the selftest takes the last line
of the first page; K differs per scenario so that later chunks are covered
too. Setup checks, without any concurrency, that the modification changes
the boundary lines as the selftest expects and that the restore gives back
the original text byte for byte; the two full texts (and the model's own
`vmas`) are the scenario's two states.

Then, for SECONDS, a writer thread of this test modifies and restores the
target through the live-control channel (tight loops with a few short
pauses, so that some reads race the writer and some fall into quiet
windows), while NREADERS real processes (python3 -c READER) read the file
page by page (read(fd, 4096) to EOF; then lseek(0), or a fresh open for one
of them) and ask PROCMAP_QUERY about the target's pages and an untouched
VMA after each pass. They write what they saw, with CLOCK_MONOTONIC times
around every read and ioctl, as JSON lines; the writer logs the same clock
before and after every control call. A state can have been visible to a
read only if its operation started before the read ended and the next
operation had not completed before the read's pass began; every check below
is against those candidate states, so the outcome does not depend on
timing.

Scenarios (the selftest's, adapted to the control channel):
  split   mmap(FIXED) one page prot|X over the first page, then map it back
  resize  mremap 3 pages -> 1 page -> 3 pages in place
  remap   a page of another protection mmap(FIXED)ed into the middle (a
          split in three), restored by mprotect as the selftest's patch_vma.
          The selftest's source page, mremap(FIXED|MAYMOVE|DONTUNMAP) from
          the next VMA, is not possible here (no DONTUNMAP)
  move    mremap(FIXED|MAYMOVE) the middle page out to a free address above
          the region and back (a real, temporary hole; mremap moves)

The daemon is started with the mmap lock's test hook (`on_write_step`,
called at every step of a writer: a VMA write-locked, the tree changed)
set to yield the GIL, so that the FUSE thread's lock-free readers also run
in the middle of write cycles, as they would on another CPU; without it
they almost only run between two control commands and a reader that
trusts a stale tree is rarely caught. PROCSIM_RACE_INTERLEAVE=0 mounts a
plain daemon.

Checked on every pass of every reader (`check_pass`):
  * every read returns whole lines, at most 4096 bytes, each line exactly
    as spec §3.1 formats it;
  * every line is a line of a state that was possibly visible during the
    pass up to the end of that read (a read at offset 0 after lseek shows
    nothing older than the last change completed before it);
  * vm_end strictly increases line by line; a line may start below the
    previous line's end only if it covers that whole line (the allowed
    duplicate: the extended or merged VMA found again, §4.5);
  * every line present in all states possible during the pass appears (the
    VMAs the writer never touches, in every pass); every address mapped in
    all those states is covered by some line (no gap where a VMA existed
    both before and after the change); the gate line comes once, last;
  * a pass during which only one state was possible equals it exactly;
  * the selftest's boundary rule between reads K and K+1: either the
    modified last line followed by the modified first line or by the
    restored last line (the duplicate), or both restored lines; for split,
    "last line changed" equals "first line changed";
  * PROCMAP_QUERY at each queried address returns the VMA covering it in a
    state possible during the ioctl (ENOENT only where such a state has a
    hole there: never at the selftest's addresses).
Plus: no reader error, each reader made at least MIN_PASSES passes and
queries, the writer at least MIN_OPS changes, each reader's last pass
(begun after the writer stopped) equals the original text, and afterwards
the daemon still serves it. The checker's own teeth are tested on
fabricated passes (test_checker_*) and on the real data of each run with a
deliberately wrong expected state set (a phantom VMA; a stale state).

PROCSIM_RACE_SECONDS overrides SECONDS (3 s per scenario, about 20 s for the
file); PROCSIM_RACE_VERBOSE=1 (with -s) prints each scenario's counts.
"""

from __future__ import annotations

import bisect
import errno
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from mountd.control import Client
from mountd.pytest_plugin import Machine, mount_machine

pytestmark = pytest.mark.fuse

P = 4096
NVMAS = 400                 # > 4 pages of maps text: boundaries 1-4 fall inside the region
SECONDS = float(os.environ.get("PROCSIM_RACE_SECONDS", "3"))
VERBOSE = os.environ.get("PROCSIM_RACE_VERBOSE") == "1"
INTERLEAVE = os.environ.get("PROCSIM_RACE_INTERLEAVE", "1") != "0"
NREADERS = 3                # readers 0 and 1 lseek(0) one fd; reader 2 opens the file per pass
MIN_PASSES = 10
MIN_OPS = 20
# seconds the writer sleeps after its n-th change: mostly back to back, now
# and then long enough for whole passes to fall into a quiet window
PAUSES = (0, 0, 0, 0, 0.001, 0, 0, 0.004, 0, 0, 0, 0.02)

SCENARIO = """
[machine]
nr_cpus = 2
mem = "1G"
clock = "manual"
"""

# A real reader: page-sized reads to EOF, then PROCMAP_QUERY at each address;
# argv: maps path, output path, stop-file path, reopen (0/1), addresses (JSON).
# Output (JSON lines): {"c": id, "t": text} the first time a chunk is seen,
# {"p": [[chunk id, t0, t1], ...], "q": [[addr, errno, start, end, t0, t1], ...]}
# per pass, {"e": error, "t": time} on an error. After the stop file appears
# it makes one more pass (begun after the writer stopped) and exits.
READER = r"""
import ctypes, json, os, struct, sys, time
maps, out, stop, reopen, addrs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", json.loads(sys.argv[5])
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
Q = struct.Struct("<QQQQQQQQQIIIIQQ")
arg = ctypes.create_string_buffer(Q.size)
mono = time.monotonic

def query(fd, addr):
    arg.raw = Q.pack(Q.size, 0, addr, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    t0 = mono()
    rc = libc.ioctl(fd, 0xC0686611, arg)
    t1 = mono()
    if rc < 0:
        return [addr, ctypes.get_errno(), 0, 0, t0, t1]
    f = Q.unpack(arg.raw)
    return [addr, 0, f[3], f[4], t0, t1]

chunks, errors, npass = {}, 0, 0
w = open(out, "w")
fd = None if reopen else os.open(maps, os.O_RDONLY)
while True:
    last = os.path.exists(stop)
    try:
        if reopen:
            fd = os.open(maps, os.O_RDONLY)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
        reads = []
        while True:
            t0 = mono()
            b = os.read(fd, 4096)
            t1 = mono()
            if not b:
                break
            i = chunks.get(b)
            if i is None:
                i = chunks[b] = len(chunks)
                w.write(json.dumps({"c": i, "t": b.decode("latin-1")}) + "\n")
            reads.append([i, t0, t1])
            if len(reads) > 10000:
                raise OSError(0, "no EOF after 10000 reads")
        qs = [query(fd, a) for a in addrs]
        if reopen:
            os.close(fd)
        w.write(json.dumps({"p": reads, "q": qs}) + "\n")
        npass += 1
    except OSError as e:
        errors += 1
        w.write(json.dumps({"e": repr(e), "t": mono()}) + "\n")
        if reopen and fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        if errors >= 20:
            break
    if npass + errors == 1:
        print("ready", flush=True)
    if last:
        break
w.close()
"""


# -- maps text ---------------------------------------------------------------------------

class Violation(AssertionError):
    """A guarantee of §4.5/§4.6 that a pass broke; `kind` groups them."""

    def __init__(self, msg: str, kind: str = "format") -> None:
        super().__init__(msg)
        self.kind = kind


LINE_RE = re.compile(r"([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+) (.*)")


@dataclass(frozen=True)
class Line:
    start: int
    end: int
    text: str       # without the newline


def parse_line(text: str) -> Line:
    """One maps line, which must be exactly as spec §3.1 prints it."""
    m = LINE_RE.fullmatch(text)
    if not m:
        raise Violation(f"not a maps line: {text!r}")
    s, e, perms, off, major, minor, ino, rest = m.groups()
    name = rest.lstrip(" ")
    prefix = (f"{int(s, 16):08x}-{int(e, 16):08x} {perms} {int(off, 16):08x} "
              f"{int(major, 16):02x}:{int(minor, 16):02x} {ino} ")
    canon = (prefix.ljust(72) + " " + name) if name else prefix
    if canon != text:
        raise Violation(f"maps line not formatted as the kernel does: {text!r} (expected {canon!r})")
    start, end = int(s, 16), int(e, 16)
    if start >= end or start % P or end % P:
        raise Violation(f"bad VMA bounds in {text!r}")
    return Line(start, end, text)


def parse_chunk(text: str) -> list[Line]:
    """What one read() returned: whole lines only, at most one page."""
    if not text:
        raise Violation("empty read before EOF")
    if len(text) > P:
        raise Violation(f"one read returned {len(text)} bytes, more than a page")
    if not text.endswith("\n"):
        raise Violation(f"read does not end with a whole line: ...{text[-120:]!r}")
    return [parse_line(t) for t in text[:-1].split("\n")]


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def intersect_spans(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def uncovered(required: list[tuple[int, int]], covered: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The first part of `required` outside `covered` (both merged, sorted)."""
    starts = [s for s, _ in covered]
    for s, e in required:
        pos = s
        while pos < e:
            i = bisect.bisect_right(starts, pos) - 1
            if i < 0 or covered[i][1] <= pos:
                nxt = starts[i + 1] if i + 1 < len(starts) else e
                return (pos, min(e, nxt))
            pos = covered[i][1]
    return None


GATE = "[vsyscall]"


class Shape:
    """One state of the address space: its full maps text."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.lines = [parse_line(t) for t in text[:-1].split("\n")] if text else []
        self.lineset = frozenset(ln.text for ln in self.lines)
        vmas = [ln for ln in self.lines if not ln.text.endswith(GATE)]
        self.starts = [ln.start for ln in vmas]
        self.vmas = vmas
        self.mapped = merge_spans([(ln.start, ln.end) for ln in self.lines])

    def cover(self, addr: int) -> tuple[int, int] | None:
        """The VMA PROCMAP_QUERY (no flags) returns for addr, None for ENOENT."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and self.vmas[i].end > addr:
            return (self.vmas[i].start, self.vmas[i].end)
        return None


class Timeline:
    """The writer's log: operation j (1-based) started at s[j-1], completed at
    c[j-1] and left shape[j]; state 0 (shape[0]) was there before any."""

    def __init__(self, ops: list[tuple[float, float, int]], initial: int = 0) -> None:
        self.s = [o[0] for o in ops]
        self.c = [o[1] for o in ops]
        self.shape = [initial] + [o[2] for o in ops]
        self.all = frozenset(self.shape)

    def candidates(self, t0: float, t1: float) -> frozenset[int]:
        """Shapes of the states that may have been visible at some time in [t0, t1]."""
        hi = bisect.bisect_right(self.s, t1)          # states 0..hi started by t1
        lo = bisect.bisect_left(self.c, t0)           # state j is gone by t0 iff c[j] < t0
        if hi - lo >= 8:
            return self.all
        return frozenset(self.shape[lo: hi + 1])


@dataclass
class Boundary:
    """The selftest's boundary lines between reads k and k+1."""
    k: int
    orig_last: str
    orig_first: str
    mod_last: str
    mod_first: str
    unison: bool = False    # split: last and first lines change together


class Model:
    """What a scenario's passes are checked against."""

    def __init__(self, shapes: list[Shape], timeline: Timeline, boundary: Boundary) -> None:
        self.shapes = shapes
        self.timeline = timeline
        self.boundary = boundary
        owners: dict[str, set[int]] = {}
        for i, sh in enumerate(shapes):
            for t in sh.lineset:
                owners.setdefault(t, set()).add(i)
        self.owners = {t: frozenset(v) for t, v in owners.items()}
        self._stable: dict[frozenset[int], frozenset[str]] = {}
        self._mapped: dict[frozenset[int], list[tuple[int, int]]] = {}

    def names(self, cand: frozenset[int]) -> str:
        return "{" + ", ".join(self.shapes[i].name for i in sorted(cand)) + "}"

    def stable(self, cand: frozenset[int]) -> frozenset[str]:
        if cand not in self._stable:
            self._stable[cand] = frozenset.intersection(*(self.shapes[i].lineset for i in cand))
        return self._stable[cand]

    def always_mapped(self, cand: frozenset[int]) -> list[tuple[int, int]]:
        if cand not in self._mapped:
            it = iter(sorted(cand))
            spans = self.shapes[next(it)].mapped
            for i in it:
                spans = intersect_spans(spans, self.shapes[i].mapped)
            self._mapped[cand] = spans
        return self._mapped[cand]


@dataclass
class PassInfo:
    boundary: str           # "original", "modified", "duplicate"
    duplicates: int


def check_pass(model: Model, texts: list[str], read_cands: list[frozenset[int]]) -> PassInfo:
    """All the per-pass guarantees; `texts` are the reads of one pass (to
    EOF), `read_cands[i]` the shapes possible from the pass's start to the
    end of read i. Raises Violation."""
    chunks = [parse_chunk(t) for t in texts]
    if not chunks:
        raise Violation("a pass read nothing (EOF at offset 0)", "missing")
    # every line from a state possible up to the end of its read (freshness)
    for i, (lines, cand) in enumerate(zip(chunks, read_cands)):
        for ln in lines:
            own = model.owners.get(ln.text, frozenset())
            if not own & cand:
                raise Violation(
                    f"read {i + 1}: line {ln.text!r} belongs to "
                    f"{model.names(own) if own else 'no state at all'}, but only {model.names(cand)} "
                    f"could be seen from the start of the pass to the end of that read", "state")
    lines = [ln for c in chunks for ln in c]
    gates = [i for i, ln in enumerate(lines) if ln.text.endswith(GATE)]
    if any(sh.text.endswith(GATE + "\n") for sh in model.shapes) and gates != [len(lines) - 1]:
        raise Violation(f"the gate line must come exactly once, last (at {gates} of {len(lines)})", "order")
    # order: vm_end strictly increasing; overlaps only as covering duplicates
    dups = 0
    for prev, ln in zip(lines, lines[1:]):
        if ln.end <= prev.end:
            raise Violation(f"vm_end does not increase: {prev.text!r} then {ln.text!r}", "order")
        if ln.start < prev.end:
            if ln.start > prev.start:
                raise Violation(f"{ln.text!r} overlaps the previous line {prev.text!r} without covering it "
                                "(not the extended/merged version of a reported VMA)", "order")
            dups += 1
    pass_cand = read_cands[-1]
    seen = {ln.text for ln in lines}
    missing = model.stable(pass_cand) - seen
    if missing:
        raise Violation(f"missing {len(missing)} line(s) present in every state possible during the pass "
                        f"{model.names(pass_cand)}, e.g. {sorted(missing)[0]!r}", "missing")
    gap = uncovered(model.always_mapped(pass_cand), merge_spans([(ln.start, ln.end) for ln in lines]))
    if gap is not None:
        before = [(i, ln.text) for i, c in enumerate(chunks, 1) for ln in c if ln.end <= gap[0]][-1:]
        after = [(i, ln.text) for i, c in enumerate(chunks, 1) for ln in c if ln.start >= gap[1]][:1]
        raise Violation(f"gap {gap[0]:x}-{gap[1]:x}: mapped in every state possible during the pass "
                        f"{model.names(pass_cand)} but reported by no line; (read, line) before it "
                        f"{before}, after it {after}", "gap")
    if len(pass_cand) == 1:
        (only,) = pass_cand
        if "".join(texts) != model.shapes[only].text:
            raise Violation(f"only {model.shapes[only].name} was possible during the pass, "
                            "but the text differs from it", "state")
    # the selftest's rule at the target boundary
    b = model.boundary
    if len(chunks) <= b.k:
        raise Violation(f"the pass has {len(chunks)} reads; the target boundary is after read {b.k}", "missing")
    last, first = chunks[b.k - 1][-1].text, chunks[b.k][0].text
    if last == b.mod_last:
        if first not in (b.mod_first, b.orig_last):
            raise Violation(f"after the modified last line {last!r} read {b.k + 1} starts with {first!r}, "
                            f"neither the modified first line {b.mod_first!r} nor the restored VMA "
                            f"{b.orig_last!r}", "boundary")
        kind = "modified" if first == b.mod_first else "duplicate"
    else:
        if last != b.orig_last or first != b.orig_first:
            raise Violation(f"boundary after read {b.k}: {last!r} | {first!r} is neither the modified "
                            f"nor the restored combination ({b.orig_last!r} | {b.orig_first!r})", "boundary")
        kind = "original"
    if b.unison and (last != b.orig_last) != (first != b.orig_first):
        raise Violation(f"boundary lines did not change in unison: {last!r} | {first!r}", "boundary")
    return PassInfo(kind, dups)


def check_query(model: Model, q: list) -> None:
    addr, err, start, end, t0, t1 = q
    cand = model.timeline.candidates(t0, t1)
    expect = {model.shapes[i].cover(addr) for i in cand}
    if err == 0:
        got = (start, end)
    elif err == errno.ENOENT:
        got = None
    else:
        raise Violation(f"PROCMAP_QUERY at {addr:x}: {errno.errorcode.get(err, err)}", "query")
    if got not in expect:
        want = ", ".join("ENOENT" if e is None else f"{e[0]:x}-{e[1]:x}" for e in expect)
        have = "ENOENT" if got is None else f"{got[0]:x}-{got[1]:x}"
        raise Violation(f"PROCMAP_QUERY at {addr:x} returned {have}; possible during the ioctl: {want} "
                        f"(states {model.names(cand)})", "query")


@dataclass
class ReaderLog:
    index: int
    chunks: dict[int, str] = field(default_factory=dict)
    passes: list[tuple[list, list]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def load_reader(index: int, path: str) -> ReaderLog:
    r = ReaderLog(index)
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if "c" in d:
                r.chunks[d["c"]] = d["t"]
            elif "p" in d:
                r.passes.append((d["p"], d["q"]))
            else:
                r.errors.append(d["e"])
    return r


@dataclass
class Stats:
    passes: list[int] = field(default_factory=list)
    queries: int = 0
    boundary: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    racing_passes: int = 0      # passes during which both states were possible
    quiet_passes: int = 0
    violations: list[Violation] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, v: Violation) -> None:
        if len(self.violations) < 20 or v.kind not in self.kinds:
            self.violations.append(v)
        self.kinds[v.kind] = self.kinds.get(v.kind, 0) + 1

    def summary(self) -> str:
        """The counts, the first violation of each kind, then a few more."""
        firsts = {v.kind: v for v in reversed(self.violations)}
        shown = list(firsts.values()) + [v for v in self.violations if v not in firsts.values()][:3]
        head = f"{sum(self.kinds.values())} violations {self.kinds}:\n"
        return head + "\n".join(f"  [{v.kind}] {v}" for v in shown)


def check_readers(model: Model, logs: list[ReaderLog]) -> Stats:
    """check_pass and check_query over everything the readers saw; every
    violation is counted (by kind), the first ones kept."""
    st = Stats()
    tl = model.timeline
    for r in logs:
        memo: dict[tuple, PassInfo | Violation] = {}
        for n, (reads, queries) in enumerate(r.passes):
            if not reads:
                st.add(Violation(f"reader {r.index} pass {n}: EOF at offset 0", "missing"))
                continue
            t0 = reads[0][1]
            cands = tuple(tl.candidates(t0, rd[2]) for rd in reads)
            key = (tuple(rd[0] for rd in reads), cands)
            info = memo.get(key)
            if info is None:
                try:
                    info = check_pass(model, [r.chunks[rd[0]] for rd in reads], list(cands))
                except Violation as e:
                    info = e
                memo[key] = info
            if isinstance(info, Violation):
                times = [(round(a, 6), round(b, 6)) for _, a, b in reads]
                st.add(Violation(f"reader {r.index} pass {n} (reads at {times}): {info}", info.kind))
            else:
                st.boundary[info.boundary] = st.boundary.get(info.boundary, 0) + 1
                st.duplicates += info.duplicates
            if len(cands[-1]) > 1:
                st.racing_passes += 1
            else:
                st.quiet_passes += 1
            for q in queries:
                try:
                    check_query(model, q)
                except Violation as e:
                    st.add(Violation(f"reader {r.index} pass {n}: {e}", e.kind))
                st.queries += 1
        st.passes.append(len(r.passes))
    return st


# -- the machine -----------------------------------------------------------------------------

@dataclass
class Env:
    m: Machine
    pid: int
    base: int           # the region: NVMAS 3-page VMAs from here
    far: int            # a free page above the region (the move scenario's destination)
    maps: str
    original: str       # the maps text with every VMA in place

    def prot(self, addr: int) -> str:
        i = (addr - self.base) // (3 * P)
        return "rw" if i % 2 == 0 else "r"


def read_chunks(path: str) -> list[str]:
    """The file as the readers read it: read(fd, 4096) until EOF."""
    fd = os.open(path, os.O_RDONLY)
    try:
        out = []
        while True:
            b = os.read(fd, P)
            if not b:
                return out
            out.append(b.decode("latin-1"))
    finally:
        os.close(fd)


def model_lines(env: Env) -> list[tuple[int, int, str]]:
    return [(v["start"], v["end"], v["perms"]) for v in env.m.ctl.vmas(pid=env.pid)]


def shape_vs_model(env: Env, text: str) -> None:
    """The mount's text is the model's VMA list (plus the gate line)."""
    got = [(ln.start, ln.end, ln.text.split()[1]) for ln in Shape("", text).lines if not ln.text.endswith(GATE)]
    assert got == model_lines(env), "maps through the mount differs from the model's vmas"


# The daemon, with a reader let in at every step of every writer: the
# mmap_lock's test hook (on_write_step) yields the GIL there, so that the
# FUSE thread's lock-free readers run in the middle of write cycles (as
# they would on another CPU), not only between control commands.
INTERLEAVED_DAEMON = r"""
import sys, time
from procsim.mm import mmap_lock

def _yield():
    time.sleep(0)

if "on_write_step" in getattr(mmap_lock.MmapLock, "__slots__", ()):
    _init = mmap_lock.MmapLock.__init__

    def __init__(self, *a, **kw):
        _init(self, *a, **kw)
        self.on_write_step = _yield

    mmap_lock.MmapLock.__init__ = __init__
else:
    print("procsim race test: no MmapLock.on_write_step hook; plain daemon", file=sys.stderr)
from mountd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def mount(mnt: str) -> Machine:
    """`procsim mount MNT --daemon` of SCENARIO, interleaved unless INTERLEAVE is off."""
    if not INTERLEAVE:
        return mount_machine(mnt, scenario=SCENARIO)
    os.makedirs(mnt)
    scen, log = mnt + ".scenario.toml", mnt + ".daemon.log"
    with open(scen, "w") as f:
        f.write(SCENARIO)
    r = subprocess.run([sys.executable, "-c", INTERLEAVED_DAEMON, "mount", mnt, "--daemon", "--clock", "manual",
                        "--scenario", scen, "--log", log], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"procsim mount failed ({r.returncode}): {r.stderr.strip()}"
    return Machine(mnt, log)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    top = tempfile.mkdtemp(prefix="procsim-race-")
    m = mount(os.path.join(top, "mnt"))
    try:
        c = m.ctl
        pid = c.spawn(argv=["/usr/bin/racer"])
        span = (NVMAS * 3 + 512) * P
        hole = c.mmap(pid=pid, length=span, prot="none")    # a free range with room on both sides
        c.munmap(pid=pid, addr=hole, length=span)
        base = hole + 256 * P
        for i in range(NVMAS):
            c.mmap(pid=pid, addr=base + 3 * P * i, length=3 * P, prot="rw" if i % 2 == 0 else "r",
                   noreplace=True)
        maps = f"{m.proc}/{pid}/maps"
        text = "".join(read_chunks(maps))
        e = Env(m, pid, base, base + (NVMAS * 3 + 128) * P, maps, text)
        region = [ln for ln in Shape("", text).lines if base <= ln.start < base + NVMAS * 3 * P]
        assert len(region) == NVMAS, "the region's VMAs merged or are missing"
        assert len(text) > 4 * P
        shape_vs_model(e, text)
        yield e
    finally:
        m.umount()
        if not os.path.ismount(m.mnt):
            shutil.rmtree(top, ignore_errors=True)


# -- scenarios -------------------------------------------------------------------------------

@dataclass
class Spec:
    name: str
    k: int                                              # the target boundary: after read k
    modify: Callable[[Client, Env, int], object]
    restore: Callable[[Client, Env, int], object]
    # the target's lines after the modification: (offset from a, length, perms)
    modified: Callable[[Env, int], list[tuple[int, int, str]]]
    first_changes: bool                                 # does the first line of read k+1 change
    queries: Callable[[Env, int], list[int]]
    unison: bool = False


def _x(prot: str) -> str:
    return prot + "x"


def _other(prot: str) -> str:
    """The middle page's protection in the remap scenario. Not rw next to an
    r VMA: a private writable mapping is VM_ACCOUNTed and keeps the flag
    when mprotect takes the write bit away, so it would not merge back."""
    return "r" if prot == "rw" else "none"


def _perms(prot: str) -> str:
    prot = "" if prot == "none" else prot
    return ("r" if "r" in prot else "-") + ("w" if "w" in prot else "-") + ("x" if "x" in prot else "-") + "p"


SPECS = [
    Spec("split", 1,
         modify=lambda c, e, a: c.mmap(pid=e.pid, addr=a, length=P, prot=_x(e.prot(a)), fixed=True),
         restore=lambda c, e, a: c.mmap(pid=e.pid, addr=a, length=P, prot=e.prot(a), fixed=True),
         modified=lambda e, a: [(a, a + P, _perms(_x(e.prot(a)))), (a + P, a + 3 * P, _perms(e.prot(a)))],
         first_changes=True, unison=True,
         queries=lambda e, a: [a + P, a, a + 2 * P, e.base + P]),
    Spec("resize", 2,
         modify=lambda c, e, a: c.mremap(pid=e.pid, addr=a, old_length=3 * P, new_length=P),
         restore=lambda c, e, a: c.mremap(pid=e.pid, addr=a, old_length=P, new_length=3 * P),
         modified=lambda e, a: [(a, a + P, _perms(e.prot(a)))],
         first_changes=False,
         queries=lambda e, a: [a, a + P, a + 2 * P, e.base + P]),
    Spec("remap", 3,
         modify=lambda c, e, a: c.mmap(pid=e.pid, addr=a + P, length=P, prot=_other(e.prot(a)), fixed=True),
         restore=lambda c, e, a: c.mprotect(pid=e.pid, addr=a + P, length=P, prot=e.prot(a)),
         modified=lambda e, a: [(a, a + P, _perms(e.prot(a))), (a + P, a + 2 * P, _perms(_other(e.prot(a)))),
                                (a + 2 * P, a + 3 * P, _perms(e.prot(a)))],
         first_changes=True,
         queries=lambda e, a: [a + P, a, a + 2 * P, e.base + P]),
    Spec("move", 4,
         modify=lambda c, e, a: c.mremap(pid=e.pid, addr=a + P, old_length=P, new_length=P, new_addr=e.far),
         restore=lambda c, e, a: c.mremap(pid=e.pid, addr=e.far, old_length=P, new_length=P, new_addr=a + P),
         modified=lambda e, a: [(a, a + P, _perms(e.prot(a))), (a + 2 * P, a + 3 * P, _perms(e.prot(a))),
                                (e.far, e.far + P, _perms(e.prot(a)))],
         first_changes=True,
         queries=lambda e, a: [a, a + P, a + 2 * P, e.far, e.base + P]),
]


def boundary_lines(chunks: list[str], k: int) -> tuple[str, str]:
    return chunks[k - 1][:-1].rsplit("\n", 1)[-1], chunks[k].split("\n", 1)[0]


def touched(text: str, lo: int, hi: int, far: int) -> list[tuple[int, int, str]]:
    return [(ln.start, ln.end, ln.text.split()[1]) for ln in Shape("", text).lines
            if lo <= ln.start < hi or ln.start == far]


def prepare(env: Env, spec: Spec) -> tuple[int, list[Shape], Boundary]:
    """capture_mod_pattern(): the target, the two states and the boundary lines."""
    c = env.m.ctl
    chunks0 = read_chunks(env.maps)
    assert "".join(chunks0) == env.original, "the address space is not in its original state"
    last, first = boundary_lines(chunks0, spec.k)
    a = parse_line(last).start
    assert env.base <= a < env.base + (NVMAS - 2) * 3 * P and (a - env.base) % (3 * P) == 0, \
        f"read {spec.k} does not end inside the region: {last!r}"
    assert parse_line(first).start == a + 3 * P
    spec.modify(c, env, a)
    chunks1 = read_chunks(env.maps)
    mod_text = "".join(chunks1)
    shape_vs_model(env, mod_text)
    assert touched(mod_text, a, a + 3 * P, env.far) == spec.modified(env, a), \
        "the modification is not what the scenario means"
    mod_last, mod_first = boundary_lines(chunks1, spec.k)
    spec.restore(c, env, a)
    chunks2 = read_chunks(env.maps)
    assert "".join(chunks2) == env.original, "the restore did not give back the original text"
    # the selftest's vma_mod_check
    assert mod_last != last, "the modification must change the last line of the boundary"
    assert (mod_first != first) == spec.first_changes, (mod_first, first)
    shapes = [Shape("original", env.original), Shape("modified", mod_text)]
    return a, shapes, Boundary(spec.k, last, first, mod_last, mod_first, spec.unison)


class Writer(threading.Thread):
    """Modify, restore, modify, ... until the deadline, always ending restored;
    logs (start, completion, shape) of every control call."""

    def __init__(self, env: Env, spec: Spec, a: int, seconds: float) -> None:
        super().__init__(name=f"race-writer-{spec.name}", daemon=True)
        self.env, self.spec, self.a, self.seconds = env, spec, a, seconds
        self.log: list[tuple[float, float, int]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        c = Client(self.env.m.mnt)
        try:
            deadline = time.monotonic() + self.seconds
            n = 0
            while time.monotonic() < deadline:
                for fn, shape in ((self.spec.modify, 1), (self.spec.restore, 0)):
                    t0 = time.monotonic()
                    fn(c, self.env, self.a)
                    self.log.append((t0, time.monotonic(), shape))
                    pause = PAUSES[n % len(PAUSES)]
                    n += 1
                    if pause:
                        time.sleep(pause)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            c.close()


def run_readers(env: Env, addrs: list[int], work: str, body: Callable[[], None]) -> list[ReaderLog]:
    """Start the readers, wait until each has made a pass, run `body`, then
    tell them to stop (each makes one last pass) and collect their logs."""
    stop = os.path.join(work, "stop")
    procs: list[subprocess.Popen] = []
    try:
        for i in range(NREADERS):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", READER, env.maps, os.path.join(work, f"reader{i}.jsonl"), stop,
                 "1" if i == NREADERS - 1 else "0", json.dumps(addrs)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True))
        for p in procs:
            ready, _, _ = select.select([p.stdout], [], [], 60)
            line = p.stdout.readline() if ready else "(nothing in 60 s)"
            assert line == "ready\n", f"reader {p.pid} did not start: {line!r}"
        body()
        with open(stop, "w"):
            pass
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()  # our own reader, by pid
                p.wait()
                raise AssertionError(f"reader {p.pid} did not stop within 60 s") from None
            assert p.returncode == 0, f"reader {p.pid} exited with {p.returncode}: {p.stderr.read()[-2000:]}"
    finally:
        for p in procs:  # only our own readers, by pid
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
    return [load_reader(i, os.path.join(work, f"reader{i}.jsonl")) for i in range(NREADERS)]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_maps_race(env: Env, spec: Spec, tmp_path) -> None:
    a, shapes, boundary = prepare(env, spec)
    addrs = spec.queries(env, a)
    writer = Writer(env, spec, a, SECONDS)

    def body() -> None:
        writer.start()
        writer.join(SECONDS + 60)
        assert not writer.is_alive(), "the writer is stuck"

    logs = run_readers(env, addrs, str(tmp_path), body)
    assert writer.error is None, f"writer: {writer.error!r}"
    assert len(writer.log) >= MIN_OPS, f"the writer made only {len(writer.log)} changes"
    assert writer.log[-1][2] == 0
    for r in logs:
        assert not r.errors, f"reader {r.index}: {r.errors[:3]}"
        assert len(r.passes) >= MIN_PASSES, f"reader {r.index} made only {len(r.passes)} passes"
        assert sum(len(q) for _, q in r.passes) >= MIN_PASSES
    model = Model(shapes, Timeline(writer.log), boundary)
    st = check_readers(model, logs)
    assert not st.violations, f"{spec.name}: {st.summary()}"
    # each reader's last pass began after the writer had stopped: exactly the original
    end = writer.log[-1][1]
    for r in logs:
        reads = r.passes[-1][0]
        assert reads[0][1] > end
        assert "".join(r.chunks[i] for i, _, _ in reads) == env.original
    # the checks have teeth on this very data: a wrong expected set fails
    ghost = f"{env.far + 64 * P:012x}-{env.far + 65 * P:012x} rw-p 00000000 00:00 0 \n"
    phantom = [Shape(sh.name + "+phantom", sh.text.replace("\n", "\n" + ghost, 1)) for sh in shapes]
    assert check_readers(Model(phantom, model.timeline, boundary), logs).kinds.get("missing") == sum(st.passes)
    stale = Timeline([(0.0, 0.0, 1)], initial=1)  # "the modified state all along"
    assert check_readers(Model(shapes, stale, boundary), logs).kinds.get("state")
    # the daemon still serves, and the world is as it was
    assert env.m.ctl.ping()["pid"] == env.m.pid
    assert "".join(read_chunks(env.maps)) == env.original
    shape_vs_model(env, env.original)
    if VERBOSE:
        print(f"\n{spec.name}: target {a:x} (boundary after read {spec.k}); writer {len(writer.log)} changes; "
              f"passes per reader {st.passes}, {st.queries} queries; boundary {st.boundary}; "
              f"{st.duplicates} duplicate lines; {st.racing_passes} racing / {st.quiet_passes} quiet passes")


# -- the checker's own teeth, on fabricated passes -------------------------------------------

def _line(s: int, e: int, perms: str = "rw-p") -> str:
    return f"{s:012x}-{e:012x} {perms} 00000000 00:00 0 \n"


def _fake_model() -> Model:
    """Four VMAs and the gate; the target T at A+3P ends read 1. "modified":
    T split with its first page r-x (S1, S2). "shifted" (only for the
    overlap case): T shrunk by a page that its right neighbour took."""
    tail = L_M + GATE_LINE
    shapes = [Shape("original", L_0 + L_T + L_N + tail), Shape("modified", L_0 + L_S1 + L_S2 + L_N + tail),
              Shape("shifted", L_0 + _line(A + 3 * P, A + 5 * P) + L_N2 + tail)]
    b = Boundary(1, L_T[:-1], L_N[:-1], L_S1[:-1], L_S2[:-1], unison=True)
    return Model(shapes, Timeline([(10.0, 11.0, 1), (20.0, 21.0, 0)]), b)


def _reads(*lines: str) -> list[str]:
    """The reads of a pass: the lines, cut where '|' is given."""
    return "".join(lines).split("|")


A = 0x7f0000010000
GATE_LINE = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
ORIG, MOD, BOTH = frozenset({0}), frozenset({1}), frozenset({0, 1})
L_0, L_T = _line(A, A + 3 * P, "r--p"), _line(A + 3 * P, A + 6 * P)
L_S1, L_S2 = _line(A + 3 * P, A + 4 * P, "rwxp"), _line(A + 4 * P, A + 6 * P)
L_N, L_M = _line(A + 6 * P, A + 9 * P, "r--p"), _line(A + 9 * P, A + 12 * P)
L_N2 = _line(A + 5 * P, A + 9 * P, "r--p")


def test_checker_accepts_kernel_outcomes() -> None:
    m = _fake_model()
    assert check_pass(m, _reads(L_0, L_T, "|", L_N, L_M, GATE_LINE), [ORIG, ORIG]).boundary == "original"
    assert check_pass(m, _reads(L_0, L_S1, "|", L_S2, L_N, L_M, GATE_LINE), [MOD, MOD]).boundary == "modified"
    # split seen, then the merged VMA found again: the allowed duplicate
    info = check_pass(m, _reads(L_0, L_S1, "|", L_T, L_N, L_M, GATE_LINE), [BOTH, BOTH])
    assert (info.boundary, info.duplicates) == ("duplicate", 1)
    # the original seen by read 1, the split by read 2: nothing lost
    assert check_pass(m, _reads(L_0, L_T, "|", L_N, L_M, GATE_LINE), [BOTH, BOTH]).boundary == "original"
    assert check_query(m, [A + 4 * P, 0, A + 4 * P, A + 6 * P, 12.0, 12.5]) is None
    assert check_query(m, [A + 4 * P, 0, A + 3 * P, A + 6 * P, 10.5, 12.5]) is None


REJECT = {
    # [A+4P, A+6P) is mapped in both states but no line reports it
    "gap": (_reads(L_0, L_S1, "|", L_N, L_M, GATE_LINE), [BOTH, BOTH], "gap"),
    # an untouched VMA lost
    "lost_untouched": (_reads(L_0, L_T, "|", L_N, GATE_LINE), [BOTH, BOTH], "missing"),
    "torn_read": (_reads(L_0, L_T, L_N[:20], "|", L_N[20:], L_M, GATE_LINE), [ORIG, ORIG], "whole line"),
    "bad_format": (_reads(L_0, L_T, "|", L_N.replace(" 0 \n", " 0\n"), L_M, GATE_LINE), [ORIG, ORIG],
                   "not a maps line"),
    "bad_padding": (_reads(L_0, L_T, "|", L_N, L_M, GATE_LINE.replace("  [", " [")), [ORIG, ORIG],
                    "not formatted"),
    "big_read": ([L_0 * 100, L_T + L_N + L_M + GATE_LINE], [ORIG, ORIG], "more than a page"),
    # the modified state when only the original was possible
    "stale": (_reads(L_0, L_S1, "|", L_S2, L_N, L_M, GATE_LINE), [ORIG, ORIG], "belongs to"),
    # read 2 from a state older than the pass allows
    "stale_read2": (_reads(L_0, L_T, "|", L_N, L_M, GATE_LINE), [MOD, MOD], "belongs to"),
    "not_increasing": (_reads(L_0, L_T, "|", L_T, L_N, L_M, GATE_LINE), [ORIG, ORIG], "does not increase"),
    # starts inside the previous line without covering it
    "overlap": (_reads(L_0, L_T, "|", L_N2, L_M, GATE_LINE), [frozenset({0, 2}), frozenset({0, 2})],
                "without covering"),
    "no_gate": (_reads(L_0, L_T, "|", L_N, L_M), [ORIG, ORIG], "gate"),
    "gate_twice": (_reads(L_0, L_T, "|", L_N, GATE_LINE, L_M, GATE_LINE), [ORIG, ORIG], "gate"),
    # boundary lines from two different states (and a gap)
    "mixed_boundary": (_reads(L_0, L_S1, "|", L_N, L_M, GATE_LINE), [MOD, BOTH], "missing|gap"),
}


@pytest.mark.parametrize("case", sorted(REJECT))
def test_checker_rejects_pass(case: str) -> None:
    texts, cands, why = REJECT[case]
    with pytest.raises(Violation, match=why):
        check_pass(_fake_model(), texts, cands)


def test_checker_rejects_query() -> None:
    m = _fake_model()
    with pytest.raises(Violation, match="ENOENT"):   # never a hole at the split address
        check_query(m, [A + 4 * P, errno.ENOENT, 0, 0, 10.5, 12.5])
    with pytest.raises(Violation, match="possible during"):   # only "modified" was possible
        check_query(m, [A + 4 * P, 0, A + 3 * P, A + 6 * P, 12.0, 12.5])
    with pytest.raises(Violation, match="EIO"):
        check_query(m, [A + 4 * P, errno.EIO, 0, 0, 12.0, 12.5])


def test_checker_timeline() -> None:
    tl = Timeline([(10.0, 11.0, 1), (20.0, 21.0, 0), (30.0, 31.0, 1)])
    assert tl.candidates(0, 5) == ORIG
    assert tl.candidates(0, 10.5) == BOTH           # op 1 may have happened
    assert tl.candidates(11.5, 12) == MOD           # op 1 completed before
    assert tl.candidates(10.5, 10.6) == BOTH
    assert tl.candidates(21.0, 22) == BOTH          # op 2 completes exactly at t0: both
    assert tl.candidates(21.5, 29) == ORIG
    assert tl.candidates(40, 50) == MOD


# -- smaps on the same walk ------------------------------------------------------------------

# A real smaps reader: read(fd, 4096) to EOF, lseek(0), again; argv: smaps
# path, output path, stop-file path. Output: one JSON line per pass (the
# first MAX_SMAPS_PASSES), {"e": error} on an error; "ready" on stdout after
# the first pass; one last pass after the stop file appears.
MAX_SMAPS_PASSES = 30
SMAPS_READER = r"""
import json, os, sys
path, out, stop, cap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fd = os.open(path, os.O_RDONLY)
n = 0
with open(out, "w") as log:
    try:
        while True:
            last = os.path.exists(stop)
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while data := os.read(fd, 4096):
                chunks.append(data.decode())
            if n < cap or last:
                log.write(json.dumps({"p": chunks, "last": last}) + "\n")
            n += 1
            if n == 1:
                print("ready", flush=True)
            if last:
                break
    except OSError as e:
        log.write(json.dumps({"e": repr(e)}) + "\n")
"""


def check_smaps_pass(shapes: list[Shape], chunks: list[str]) -> int:
    """One smaps pass against the states the writer moves between: whole
    blocks per read, headers from those states in the maps walk's order, no
    stable VMA missing, no gap over addresses mapped in every state. Returns
    the number of blocks."""
    heads: list[Line] = []
    for text in chunks:
        if not text or len(text) >= P or not text.endswith("\n"):
            raise Violation(f"read of {len(text)} bytes is not whole blocks below a page: ...{text[-80:]!r}")
        lines = text[:-1].split("\n")
        if not LINE_RE.fullmatch(lines[0]) or not lines[-1].startswith("VmFlags:"):
            raise Violation(f"read does not hold whole smaps blocks: {lines[0]!r} ... {lines[-1]!r}")
        for i, ln in enumerate(lines):
            if LINE_RE.fullmatch(ln):
                h = parse_line(ln)
                size = lines[i + 1]
                if size != f"Size:           {(h.end - h.start) >> 10:>8} kB":
                    raise Violation(f"block of {ln!r} has {size!r}")
                heads.append(h)
    known = frozenset().union(*(s.lineset for s in shapes))
    for prev, h in zip(heads, heads[1:]):
        if h.end <= prev.end or (h.start < prev.end and h.start > prev.start):
            raise Violation(f"{h.text!r} after {prev.text!r}: vm_end does not increase", "order")
    texts = [h.text for h in heads]
    for t in texts:
        if t not in known:
            raise Violation(f"block {t!r} belongs to no state of the writer", "phantom")
    stable = frozenset.intersection(*(s.lineset for s in shapes))
    missing = sorted(stable - set(texts))
    if missing:
        raise Violation(f"stable VMA missing: {missing[0]!r}", "missing")
    always = shapes[0].mapped
    for s in shapes[1:]:
        always = intersect_spans(always, s.mapped)
    hole = uncovered(always, merge_spans([(h.start, h.end) for h in heads]))
    if hole:
        raise Violation(f"gap {hole[0]:#x}-{hole[1]:#x} mapped in every state", "gap")
    if texts[-1].endswith(GATE) is False or sum(t.endswith(GATE) for t in texts) != 1:
        raise Violation("the gate block is not once, last", "gate")
    return len(heads)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name in ("split", "move")], ids=lambda s: s.name)
def test_smaps_race(env: Env, spec: Spec, tmp_path) -> None:
    """smaps walks the VMAs as maps does (seed-mechanisms §4.4: the same
    m_start/m_next), with each window of VMAs measured under the kernel
    lock: the same guarantees hold while a writer changes the target."""
    a, shapes, _ = prepare(env, spec)
    smaps = env.maps[: -len("maps")] + "smaps"
    writer = Writer(env, spec, a, SECONDS)
    stop, out = str(tmp_path / "stop"), [str(tmp_path / f"smaps{i}.jsonl") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", SMAPS_READER, smaps, o, stop, str(MAX_SMAPS_PASSES)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for o in out]
    try:
        for p in procs:
            ready, _, _ = select.select([p.stdout], [], [], 60)
            assert ready and p.stdout.readline() == "ready\n", f"smaps reader {p.pid} did not start"
        writer.start()
        writer.join(SECONDS + 60)
        assert not writer.is_alive() and writer.error is None, writer.error
        with open(stop, "w"):
            pass
        for p in procs:
            p.wait(timeout=60)
            assert p.returncode == 0, p.stderr.read()[-2000:]
    finally:
        for p in procs:  # only our own readers, by pid
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
    assert len(writer.log) >= MIN_OPS
    final = read_chunks(smaps)
    for path in out:
        passes = [json.loads(x) for x in open(path)]
        errors = [x["e"] for x in passes if "e" in x]
        assert not errors, errors
        assert len(passes) >= 3, f"only {len(passes)} smaps passes"
        if VERBOSE:
            print(f"smaps {spec.name}: {len(passes)} passes, {len(writer.log)} changes")
        for x in passes:
            n = check_smaps_pass(shapes, x["p"])
            assert n >= NVMAS
        # the last pass began after the writer stopped: the restored state, whole
        assert passes[-1]["last"] and "".join(passes[-1]["p"]) == "".join(final)
        assert [h for h in check_smaps_heads(final)] == [ln.text for ln in shapes[0].lines]


def check_smaps_heads(chunks: list[str]) -> list[str]:
    return [ln for c in chunks for ln in c[:-1].split("\n") if LINE_RE.fullmatch(ln)]


def test_smaps_checker_rejects_a_gap_and_a_phantom(env: Env) -> None:
    """The checker's teeth, on a real smaps text of the region."""
    chunks = read_chunks(env.maps[: -len("maps")] + "smaps")
    shape = Shape("now", env.original)
    assert check_smaps_pass([shape], chunks) >= NVMAS
    # drop one block: a gap (and a stable VMA missing)
    blocks = "".join(chunks).split("\n")
    heads = [i for i, ln in enumerate(blocks) if LINE_RE.fullmatch(ln)]
    cut = "\n".join(blocks[: heads[10]] + blocks[heads[11]:])
    with pytest.raises(Violation, match="missing|gap"):
        check_smaps_pass([shape], _rechunk(cut))
    # a VMA of no state
    phantom = Shape("other", env.original.replace(f"{env.base:08x}-", f"{env.base + P:08x}-", 1))
    with pytest.raises(Violation, match="belongs to no state|does not increase"):
        check_smaps_pass([phantom], chunks)


def _rechunk(text: str) -> list[str]:
    """Whole blocks, fewer than 4096 bytes per chunk (as seq_file cuts them)."""
    blocks, cur = [], []
    for ln in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        if LINE_RE.fullmatch(ln) and cur:
            blocks.append("\n".join(cur) + "\n")
            cur = []
        cur.append(ln)
    blocks.append("\n".join(cur) + "\n")
    out, buf = [], ""
    for b in blocks:
        if buf and len(buf) + len(b) >= P:
            out.append(buf)
            buf = ""
        buf += b
    return out + [buf]
