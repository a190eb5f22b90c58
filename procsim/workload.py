"""Workloads: memory access patterns that simulated tasks run as the clock moves.

A workload belongs to a task and touches pages of its address space: a
*region* (an address range, or the task's writable or readable VMAs as they
were when the workload started) seen as one array of N pages, and a
*pattern* that picks page indices in it:

- `hot_cold`: a hot set of `hot` pages (bytes or a fraction of the region,
  starting `hot_offset` bytes in) gets a fraction `hot_prob` of the
  accesses, uniformly; the rest go uniformly to the cold pages;
- `uniform`: every page alike;
- `zipf`: page i (0-based) is drawn with the probability the continuous
  power law x**-exponent gives to [i+1, i+2) over [1, N+1) (a bounded Zipf);
- `scan`: pages in order from `offset`, one per access, wrapping at the end;
- `phases`: a list of the above, each for `duration` seconds (with its own
  rate and write fraction if given), cycling if `repeat` (the default) or
  staying in the last.

Time: the workload runs in ticks of `tick` seconds (default 10 ms) counted
from its start. Tick k performs the accesses that fall in it at `rate` per
second (floor(rate*(k+1)*tick) - floor(rate*k*tick), counted from the start
of its phase), drawn from a generator seeded by (seed, change number, k).
So what a workload touches depends on its seed and the ticks run, not on
how the clock got there: advancing 1 s once or 0.1 s ten times gives the
same pages. Each step of the clock [ta, tb) runs the ticks that start in
it, in one vectorised `Kernel.access` call per kind of access (loads,
stores; batched above BATCH accesses), stamped ta in the access log.

Accesses to pages that are no longer mapped, or whose VMA no longer permits
them, are dropped (counted in `dropped`): a real task would have died of
SIGSEGV, a simulated one just does not touch them. A workload ends when its
task exits or execs; it stops with `error` set if an access fails (out of
memory).
"""

from __future__ import annotations

import errno
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from procsim.mm.access_log import AccessLog, sorted_unique
from procsim.mm.page_alloc import OutOfMemory
from procsim.mm.vma import VM_EXEC, VM_IO, VM_PFNMAP, VM_READ, VM_WRITE
from procsim.units import NSEC, PAGE_SHIFT, PAGE_SIZE, TASK_SIZE
from procsim.workload_io import IO_KEYS, FileIo, parse_io

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.mm.mm import MM

log = logging.getLogger(__name__)

DEFAULT_TICK = 0.01
MIN_TICK, MAX_TICK = 1e-4, 60.0
MAX_RATE = 1e9          # accesses per second
BATCH = 1 << 22         # accesses per Kernel.access call at most
PATTERNS = ("hot_cold", "uniform", "zipf", "scan", "phases")
COMMON = ("pattern", "rate", "write", "addr", "length", "vmas", "seed", "tick", *IO_KEYS)
PATTERN_KEYS = {"hot_cold": ("hot", "hot_prob", "hot_offset"), "uniform": (), "zipf": ("exponent",),
                "scan": ("offset",), "phases": ("phases", "repeat")}
PHASE_KEYS = ("pattern", "duration", "rate", "write")
REGION_KEYS = ("addr", "length", "vmas")


class WorkloadError(OSError):
    """A bad workload request: errno and message, nothing changed."""

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(err, msg)
        self.msg = msg


def _bad(msg: str) -> WorkloadError:
    return WorkloadError(errno.EINVAL, msg)


# -- argument checking ------------------------------------------------------------

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(v: Any, name: str) -> int:
    """Bytes: an integer, or text with a unit ("64M", "0x1000")."""
    if isinstance(v, bool):
        raise _bad(f"{name}: expected a size, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v.strip().lower()
        try:
            return int(s, 0)
        except ValueError:
            pass
        s = s.removesuffix("ib").removesuffix("b")
        if s and s[-1] in _UNITS:
            try:
                x = float(s[:-1])
            except ValueError:
                x = math.nan
            if math.isfinite(x) and x >= 0:
                return int(x * _UNITS[s[-1]])
    raise _bad(f"{name}: expected a size (bytes, \"64M\"), got {v!r}")


def _num(v: Any, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _bad(f"{name}: expected a number, got {v!r}")
    try:
        x = float(v)
    except ValueError:
        raise _bad(f"{name}: expected a number, got {v!r}") from None
    if not (lo < x if lo_open else lo <= x) or not x <= hi:  # also NaN
        raise _bad(f"{name}: expected {'more than' if lo_open else 'at least'} {lo:g} and at most {hi:g}, got {v!r}")
    return x


def _frac_or_size(v: Any, name: str, region: int) -> int:
    """Pages: a fraction of the region (a float in [0, 1]) or a size in bytes."""
    if isinstance(v, float):
        if not 0.0 <= v <= 1.0:
            raise _bad(f"{name}: a fraction is between 0.0 and 1.0, got {v!r}")
        return round(v * region)
    n = _size(v, name)
    if n % PAGE_SIZE:
        raise _bad(f"{name}: {n} is not a multiple of the page size")
    return n >> PAGE_SHIFT


@dataclass
class Phase:
    """One access pattern with its parameters resolved to pages of the region."""
    pattern: str
    rate: float
    write: float
    ticks: int = 0                  # duration in ticks (phases only)
    hot: int = 0                    # hot_cold: hot pages, first one, probability
    hot_offset: int = 0
    hot_prob: float = 0.9
    exponent: float = 1.0           # zipf
    offset: int = 0                 # scan: first page

    def draw(self, rng: np.random.Generator, n: int, npages: int, done: int) -> np.ndarray:
        """n page indices in [0, npages); `done`: accesses already made in this phase (scan)."""
        if self.pattern == "scan":
            return (self.offset + done + np.arange(n, dtype=np.int64)) % npages
        if self.pattern == "uniform":
            return rng.integers(0, npages, n, dtype=np.int64)
        if self.pattern == "hot_cold":
            hot, cold = self.hot, npages - self.hot
            is_hot = rng.random(n) < self.hot_prob if cold else np.ones(n, bool)
            if not hot:
                is_hot[:] = False
            out = np.empty(n, np.int64)
            nh = int(is_hot.sum())
            out[is_hot] = self.hot_offset + rng.integers(0, hot, nh, dtype=np.int64) if nh else 0
            if n - nh:
                c = rng.integers(0, cold, n - nh, dtype=np.int64)
                out[~is_hot] = np.where(c < self.hot_offset, c, c + hot)
            return out
        # zipf: inverse of the continuous CDF over [1, N+1), then floor
        u = rng.random(n)
        s, top = self.exponent, npages + 1.0
        if abs(s - 1.0) < 1e-12:
            x = np.power(top, u)
        else:
            a = 1.0 - s
            x = np.power(1.0 + u * (top ** a - 1.0), 1.0 / a)
        return np.clip(np.floor(x).astype(np.int64) - 1, 0, npages - 1)


def parse_phase(d: dict, region: int, where: str, rate: float | None = None,
                write: float | None = None, tick: float = DEFAULT_TICK, in_phases: bool = False) -> Phase:
    """A pattern table -> Phase, every key checked."""
    pattern = d.get("pattern")
    if pattern not in PATTERNS or in_phases and pattern == "phases":
        known = [p for p in PATTERNS if not (in_phases and p == "phases")]
        raise _bad(f"{where}pattern: expected one of {', '.join(known)}, got {pattern!r}")
    allowed = set(PATTERN_KEYS[pattern]) | (set(PHASE_KEYS) if in_phases else set(COMMON))
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise _bad(f"{where}{pattern} takes no {unknown[0]!r} (takes: {', '.join(sorted(allowed))})")
    ph = Phase(pattern,
               _num(d["rate"], f"{where}rate", 0, MAX_RATE) if "rate" in d else (rate if rate is not None else -1),
               _num(d["write"], f"{where}write", 0, 1) if "write" in d else (write or 0.0))
    if ph.rate < 0:
        raise _bad(f"{where}missing key 'rate' (accesses per second)")
    if in_phases:
        if "duration" not in d:
            raise _bad(f"{where}missing key 'duration' (seconds)")
        ph.ticks = max(1, round(_num(d["duration"], f"{where}duration", 0, 1e9, lo_open=True) / tick))
    if pattern == "hot_cold":
        ph.hot = _frac_or_size(d.get("hot", 0.1), f"{where}hot", region)
        ph.hot_offset = _frac_or_size(d.get("hot_offset", 0), f"{where}hot_offset", region)
        ph.hot_prob = _num(d.get("hot_prob", 0.9), f"{where}hot_prob", 0, 1)
        if ph.hot + ph.hot_offset > region:
            raise _bad(f"{where}hot set ({ph.hot} pages from page {ph.hot_offset}) goes past the "
                       f"region's {region} pages")
    elif pattern == "zipf":
        ph.exponent = _num(d.get("exponent", 1.0), f"{where}exponent", 0, 100, lo_open=True)
    elif pattern == "scan":
        ph.offset = _frac_or_size(d.get("offset", 0), f"{where}offset", region)
        if ph.offset >= region:
            raise _bad(f"{where}offset: past the region's {region} pages")
    return ph


# -- one workload -------------------------------------------------------------------

@dataclass
class Workload:
    id: int
    tid: int
    mm: "MM | None"                 # dropped once the workload ends (it may be large)
    spec: dict                      # the arguments as given (merged over changes)
    ranges: np.ndarray              # int64[n, 2]: [start, end) address ranges of the region
    phases: list[Phase]
    repeat: bool
    tick_ns: int
    seed: int
    start: int                      # ns: tick 0
    changes: int = 0
    state: str = "running"          # running, stopped, exited, failed
    error: str = ""
    accesses: int = 0
    reads: int = 0
    writes: int = 0
    dropped: int = 0
    faults: int = 0
    io: FileIo | None = None        # its file I/O (procsim/workload_io.py)
    _cum: np.ndarray = field(default=None, repr=False)  # pages before each range

    def __post_init__(self) -> None:
        sizes = (self.ranges[:, 1] - self.ranges[:, 0]) >> PAGE_SHIFT
        self._cum = np.concatenate(([0], np.cumsum(sizes)))

    @property
    def npages(self) -> int:
        return int(self._cum[-1])

    def vas(self, pos: np.ndarray) -> np.ndarray:
        """Page indices of the region -> addresses."""
        if len(self.ranges) == 1:
            return int(self.ranges[0, 0]) + (pos << PAGE_SHIFT)
        r = np.searchsorted(self._cum, pos, "right") - 1
        return self.ranges[r, 0] + ((pos - self._cum[r]) << PAGE_SHIFT)

    def phase_at(self, k: int) -> tuple[Phase, int]:
        """The phase of tick k and the tick its current occurrence began at."""
        if len(self.phases) == 1 and not self.phases[0].ticks:
            return self.phases[0], 0
        cycle = sum(p.ticks for p in self.phases)
        base = 0
        if k >= cycle:
            if not self.repeat:
                last = self.phases[-1]
                return last, cycle - last.ticks
            base = (k // cycle) * cycle
        t = base
        for p in self.phases:
            if k < t + p.ticks:
                return p, t
            t += p.ticks
        raise AssertionError("unreachable")

    def draws(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        """The page indices read and written by ticks [k0, k1)."""
        reads, writes = [], []
        q = self.tick_ns / NSEC
        for k in range(k0, k1):
            ph, kp = self.phase_at(k)
            done = math.floor(ph.rate * (k - kp) * q)
            n = math.floor(ph.rate * (k - kp + 1) * q) - done
            if n <= 0:
                continue
            rng = np.random.default_rng([self.seed, self.changes, k])
            pos = ph.draw(rng, n, self.npages, done)
            if ph.write <= 0:
                reads.append(pos)
            elif ph.write >= 1:
                writes.append(pos)
            else:
                w = rng.random(n) < ph.write
                reads.append(pos[~w])
                writes.append(pos[w])
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
        return cat(reads), cat(writes)

    def info(self) -> dict:
        return {"id": self.id, "pid": self.tid, "state": self.state, "error": self.error,
                "pattern": self.spec.get("pattern"), "spec": self.spec, "pages": self.npages,
                "ranges": self.ranges.tolist(), "seed": self.seed, "changes": self.changes,
                "start": self.start / NSEC, "accesses": self.accesses, "reads": self.reads,
                "writes": self.writes, "dropped": self.dropped, "faults": self.faults,
                "io": self.io.info() if self.io is not None else None}


# -- the set of workloads of a kernel -------------------------------------------------

class Workloads:
    """Every workload of a kernel; `step` runs them over a clock interval."""

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.items: dict[int, Workload] = {}
        self.next_id = 1

    @property
    def active(self) -> bool:
        return any(w.state == "running" for w in self.items.values())

    # control ----------------------------------------------------------------------

    def start(self, tid: int, **spec: Any) -> int:
        """Start a workload on task `tid`; returns its id. Tracks the mm's
        accesses (an AccessLog) from now on if it did not already."""
        k = self.k
        t, mm = k._user_mm(tid)
        wid = self.next_id
        w = self._build(wid, t.pid, mm, spec, changes=0)
        self.next_id += 1
        self.items[wid] = w
        self.track(mm)
        k._changed("workload", pid=t.tgid, id=wid)
        return wid

    def change(self, wid: int, **spec: Any) -> None:
        """Change a running workload's parameters from now on: the keys
        given replace the old ones (a new pattern drops the old pattern's
        keys; a new addr/length/vmas replaces the region)."""
        w = self._get(wid)
        if w.state != "running":
            raise WorkloadError(errno.EINVAL, f"workload {wid} is {w.state}")
        if not spec:
            raise _bad("change: give at least one parameter")
        old = dict(w.spec)
        if "pattern" in spec and spec["pattern"] != old.get("pattern"):
            old = {key: v for key, v in old.items() if key in COMMON}
        if any(key in spec for key in REGION_KEYS):
            old = {key: v for key, v in old.items() if key not in REGION_KEYS}
        merged = {**old, **spec}
        merged.pop("seed", None)
        nw = self._build(wid, w.tid, w.mm, merged, changes=w.changes + 1, seed=w.seed)
        for name in ("accesses", "reads", "writes", "dropped", "faults"):
            setattr(nw, name, getattr(w, name))
        self.items[wid] = nw
        self.k._changed("workload", id=wid)

    def stop(self, wid: int) -> dict:
        w = self._get(wid)
        if w.state == "running":
            self._end(w, "stopped")
            self.k._changed("workload", id=wid)
        return w.info()

    def list(self, pid: int | None = None) -> list[dict]:
        return [w.info() for w in self.items.values() if pid is None or w.tid == pid]

    def track(self, mm: "MM") -> AccessLog:
        if mm.access_log is None:
            k = self.k
            mm.access_log = AccessLog(lambda: k.now)
            k._changed("track")
        return mm.access_log

    def _get(self, wid: Any) -> Workload:
        w = self.items.get(wid)
        if w is None:
            raise WorkloadError(errno.ENOENT, f"no workload {wid!r}")
        return w

    def _build(self, wid: int, tid: int, mm: "MM", spec: dict, changes: int, seed: int | None = None) -> Workload:
        spec = dict(spec)
        if "pattern" not in spec:
            raise _bad(f"missing key 'pattern' (one of {', '.join(PATTERNS)})")
        tick = _num(spec.get("tick", DEFAULT_TICK), "tick", MIN_TICK, MAX_TICK)
        if "seed" in spec:
            s = spec["seed"]
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise _bad(f"seed: expected a non-negative integer, got {s!r}")
            seed = s
        elif seed is None:
            seed = (self.k.config.seed or 0) * 1_000_003 + wid
        ranges = self._region(mm, spec)
        npages = int(((ranges[:, 1] - ranges[:, 0]) >> PAGE_SHIFT).sum())
        if spec["pattern"] == "phases":
            unknown = sorted(set(spec) - set(COMMON) - set(PATTERN_KEYS["phases"]))
            if unknown:
                raise _bad(f"phases takes no {unknown[0]!r} at the top (put it in a phase)")
            rate = _num(spec["rate"], "rate", 0, MAX_RATE) if "rate" in spec else None
            write = _num(spec["write"], "write", 0, 1) if "write" in spec else None
            items = spec.get("phases")
            if not isinstance(items, list) or not items or not all(isinstance(x, dict) for x in items):
                raise _bad("phases: expected a non-empty list of tables")
            phases = [parse_phase(d, npages, f"phases[{i}]: ", rate, write, tick, in_phases=True)
                      for i, d in enumerate(items)]
            repeat = spec.get("repeat", True)
            if not isinstance(repeat, bool):
                raise _bad(f"repeat: expected true or false, got {repeat!r}")
        else:
            phases = [parse_phase(spec, npages, "", tick=tick)]
            repeat = True
        old = self.items.get(wid)
        io = parse_io(spec, _size, _bad, old.io if old is not None else None)
        return Workload(wid, tid, mm, spec, ranges, phases, repeat, max(1, round(tick * NSEC)), seed,
                        self.k.now, changes, io=io)

    @staticmethod
    def _region(mm: "MM", spec: dict) -> np.ndarray:
        """The [start, end) ranges the workload's page indices cover."""
        if "vmas" in spec and ("addr" in spec or "length" in spec):
            raise _bad("give addr and length, or vmas, not both")
        if "addr" in spec or "length" in spec:
            if "addr" not in spec or "length" not in spec:
                raise _bad("addr and length go together")
            addr, length = _size(spec["addr"], "addr"), _size(spec["length"], "length")
            if addr % PAGE_SIZE or length <= 0 or addr + length > TASK_SIZE:
                raise _bad("addr must be page aligned and [addr, addr+length) inside user space")
            end = addr + -(-length // PAGE_SIZE) * PAGE_SIZE
            a = addr
            for v in mm.vmas.overlapping(addr, end):
                if v.start > a:
                    break
                a = v.end
            if a < end:
                raise WorkloadError(errno.EFAULT, f"[{addr:#x}, {end:#x}) is not all mapped (hole at {a:#x})")
            return np.array([[addr, end]], np.int64)
        which = spec.get("vmas", "writable")
        if which not in ("writable", "readable"):
            raise _bad(f"vmas: expected 'writable' or 'readable', got {which!r}")
        need = VM_WRITE if which == "writable" else VM_READ
        out = [(v.start, v.end) for v in mm.vmas
               if v.flags & need and not v.special and not v.flags & (VM_IO | VM_PFNMAP)]
        if not out:
            raise WorkloadError(errno.ENOMEM, f"the task has no {which} mappings")
        return np.array(out, np.int64)

    # running ----------------------------------------------------------------------

    def step(self, ta: int, tb: int) -> None:
        """Run every running workload's ticks that start in [ta, tb)."""
        for w in list(self.items.values()):
            if w.state == "running":
                try:
                    self._step_one(w, ta, tb)
                except Exception as e:  # a bug must not stop the clock: this workload stops
                    log.exception("workload %d failed", w.id)
                    self._end(w, "failed", f"internal error: {e!r}")

    def _step_one(self, w: Workload, ta: int, tb: int) -> None:
        t = self.k.tasks.get(w.tid)
        if t is None or t.dead or t.tg.zombie:
            self._end(w, "exited")
            return
        if t.mm is not w.mm:
            self._end(w, "exited", "exec: the address space it ran in is gone")
            return
        if t.frozen is not None:  # a frozen task does nothing (procsim/cgroup/freezer.py): its ticks pass
            return
        q = w.tick_ns
        k0 = max(0, -(-(ta - w.start) // q))
        k1 = max(0, -(-(tb - w.start) // q))
        while k0 < k1:
            # at most about BATCH accesses per call (whole ticks)
            per_tick = max(1.0, max(p.rate for p in w.phases) * q / NSEC)
            kk = min(k1, k0 + max(1, int(BATCH // per_tick)))
            reads, writes = w.draws(k0, kk)
            for pos, write in ((reads, False), (writes, True)):
                if len(pos) and not self._access(w, pos, write):
                    return
            if w.io is not None and not self._io(w, k0, kk):
                return
            k0 = kk

    def _access(self, w: Workload, pos: np.ndarray, write: bool) -> bool:
        """Make the accesses to region pages `pos`: each page once (repeats
        within a step change no bit), the ones no longer permitted dropped."""
        upos = sorted_unique(pos)
        vas = w.vas(upos)
        ok = self._permitted(w.mm, vas, write)
        n = len(pos)
        made = n if ok.all() else int(ok[np.searchsorted(upos, pos)].sum())
        vas = vas[ok]
        w.dropped += n - made
        w.accesses += made
        if write:
            w.writes += made
        else:
            w.reads += made
        if not len(vas):
            return True
        try:
            w.faults += self.k.access(w.tid, vas, write)
        except (OSError, OutOfMemory) as e:
            self._end(w, "failed", f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}")
            return False
        return True

    def _io(self, w: Workload, k0: int, k1: int) -> bool:
        """The file I/O of ticks [k0, k1); a failing call ends the workload."""
        try:
            w.io.run(self.k, w.tid, k0, k1, w.tick_ns / NSEC, w.start)
        except (OSError, OutOfMemory) as e:
            self._end(w, "failed", f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}")
            return False
        return True

    @staticmethod
    def _end(w: Workload, state: str, error: str = "") -> None:
        w.state, w.error, w.mm = state, error, None

    @staticmethod
    def _permitted(mm: "MM", vas: np.ndarray, write: bool) -> np.ndarray:
        """Which addresses a load (store) may reach now: mapped, and the VMA
        permits it (x86: any of rwx permits a load)."""
        lo, hi = int(vas.min()), int(vas.max()) + PAGE_SIZE
        need = VM_WRITE if write else VM_READ | VM_WRITE | VM_EXEC
        vmas = [v for v in mm.vmas.overlapping(lo, hi)
                if v.flags & need and not v.flags & (VM_IO | VM_PFNMAP)]
        if not vmas:
            return np.zeros(len(vas), bool)
        starts = np.array([v.start for v in vmas], np.int64)
        ends = np.array([v.end for v in vmas], np.int64)
        i = np.searchsorted(starts, vas, "right") - 1
        ok = i >= 0
        ok[ok] = vas[ok] < ends[i[ok]]
        return ok
