#!/usr/bin/env python3
"""Working-set size of a process over an interval, measured three ways.

    wss.py [--root /proc] [--sys /sys] [--interval S] [--methods refs,global,pid] [--json] PID
    wss.py ... --plot OUT.png [--samples N] PID

Methods (seed-mechanisms §2.4; each one marks, waits, reads):

  refs    Brendan Gregg's wss.pl: write 1 to PID/clear_refs (clears the PTE
          accessed bits and the pages' referenced flags), wait, sum the
          `Referenced:` lines of PID/smaps.
  global  wss-v1/v2 with the global PFN-indexed bitmap: read PID/pagemap for
          the PFNs of the process's present pages, write ones over their
          words of SYS/kernel/mm/page_idle/bitmap (marks them idle), wait,
          read pagemap again and count the present pages whose idle bit is 0.
          (Whole words are written, as wss-v1 does: neighbouring pages of
          other processes are marked idle too. A THP's tail pages always read
          0, so huge pages count as referenced.)
  pid     the per-process, virtual-address-indexed PID/idle_bitmap (the 2018
          RFC): read the words covering every mapping once (a read clears the
          accessed bits), wait, read them again and count the 0 bits (accessed)
          inside mapped ranges.

For each it prints the estimate, the time the measurement itself took
(marking and reading, not the wait) and, on a procsim mount (ROOT is
MNT/proc and MNT's control socket answers), the simulator's ground truth
for the same interval. The wait: on a procsim machine with a manual clock,
the clock is advanced through the control channel (so its workloads run);
otherwise (a real /proc, a wall-clock machine) the script sleeps.

--plot samples repeatedly (each method in turn, `--samples` rounds) and
writes a PNG of estimated vs true WSS over time; it needs matplotlib
(`pip install 'procsim[plot]'`).

The methods disturb each other (each clears accessed bits the others
read), so they run one after the other, each over its own interval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

PAGE = 4096
WORD = 8
PM_PRESENT = 1 << 63
PM_PFN_MASK = (1 << 55) - 1
PAGEMAP_CHUNK = 1 << 17      # entries per pagemap read (1 MiB)
BITMAP_CHUNK = 1 << 20       # bytes per idle_bitmap read (32 GiB of address space)
KERNFS_MAX = 4096            # the global bitmap moves at most a page per call
METHODS = ("refs", "global", "pid")


class Unavailable(Exception):
    """This method cannot run here (a file the kernel does not have)."""


@dataclass
class Sample:
    method: str
    pages: int | None = None          # the estimate, in pages
    truth: int | None = None          # the simulator's ground truth, in pages
    set_ms: float = 0.0
    read_ms: float = 0.0
    start: float = 0.0                # the interval, in the clock's seconds (virtual on procsim)
    end: float = 0.0
    error: str = ""

    @property
    def mib(self) -> float | None:
        return None if self.pages is None else self.pages * PAGE / (1 << 20)


# -- the machine: where files are, how to wait, the truth ----------------------------------

class Machine:
    """The /proc and /sys roots, and the procsim control channel if there is one."""

    def __init__(self, root: str, sysroot: str, truth: bool = True) -> None:
        self.root, self.sys = root, sysroot
        self.client = None
        self.manual = False
        if truth:
            self.client = self._connect(root)
        if self.client is not None:
            self.manual = self.client.clock()["mode"] == "manual"

    @staticmethod
    def _connect(root: str):
        root = os.path.abspath(root)
        if os.path.basename(root) != "proc":
            return None
        try:
            from mountd.control import Client, ControlError, socket_path
        except ImportError:
            return None
        mnt = os.path.dirname(root)
        if not os.path.exists(socket_path(mnt)):
            return None
        c = Client(mnt, timeout=600)
        try:
            c.ping()
        except ControlError:
            return None
        return c

    def now(self) -> float:
        """The clock the interval is measured on: the simulator's, or monotonic time."""
        if self.client is not None:
            return float(self.client.now())
        return time.monotonic()

    def wait(self, seconds: float) -> None:
        if self.manual:
            self.client.advance(seconds=seconds)
        else:
            time.sleep(seconds)

    def truth(self, pid: int, since: float) -> int | None:
        """Pages pid touched since `since` (the simulator's ground truth), or None."""
        if self.client is None:
            return None
        from mountd.control import ControlError
        try:
            return int(self.client.wss_truth(pid=pid, since=since)["pages"])
        except ControlError:
            return None

    def track(self, pid: int) -> None:
        """Make sure the simulator records pid's accesses (a workload does it itself)."""
        if self.client is not None:
            from mountd.control import ControlError
            try:
                self.client.track(pid=pid)
            except ControlError:
                pass

    def path(self, pid: int, name: str) -> str:
        return os.path.join(self.root, str(pid), name)


# -- reading the process --------------------------------------------------------------------

def mappings(m: Machine, pid: int) -> list[tuple[int, int]]:
    """[start, end) of the user mappings in PID/maps (not [vsyscall])."""
    out = []
    with open(m.path(pid, "maps")) as f:
        for line in f:
            rng = line.split(None, 1)[0]
            lo, hi = (int(x, 16) for x in rng.split("-"))
            if lo < 1 << 47:
                out.append((lo, hi))
    return out


def present_pfns(m: Machine, pid: int, maps: list[tuple[int, int]]) -> np.ndarray:
    """The PFNs of the present pages of the mappings (pagemap, read per mapping)."""
    out = []
    fd = os.open(m.path(pid, "pagemap"), os.O_RDONLY)
    try:
        for lo, hi in maps:
            for a in range(lo, hi, PAGEMAP_CHUNK * PAGE):
                n = min(PAGEMAP_CHUNK, (hi - a) // PAGE)
                buf = os.pread(fd, n * 8, (a // PAGE) * 8)
                e = np.frombuffer(buf, "<u8")
                pfn = (e & np.uint64(PM_PFN_MASK))[(e & np.uint64(PM_PRESENT)) != 0]
                out.append(pfn[pfn != 0].astype(np.int64))
    finally:
        os.close(fd)
    return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)


def word_runs(words: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct word indices -> [first, last+1) runs."""
    if not len(words):
        return []
    cut = np.flatnonzero(np.diff(words) != 1) + 1
    firsts = words[np.concatenate(([0], cut))]
    lasts = words[np.concatenate((cut - 1, [len(words) - 1]))] + 1
    return list(zip(firsts.tolist(), lasts.tolist()))


# -- the three methods --------------------------------------------------------------------

def refs_set(m: Machine, pid: int) -> None:
    try:
        with open(m.path(pid, "clear_refs"), "w") as f:
            f.write("1")
    except FileNotFoundError:
        raise Unavailable("no clear_refs") from None


def refs_read(m: Machine, pid: int) -> int:
    kb = 0
    with open(m.path(pid, "smaps")) as f:
        for line in f:
            if line.startswith("Referenced:"):
                kb += int(line.split()[1])
    return kb * 1024 // PAGE


def _global_bitmap(m: Machine, flags: int) -> int:
    path = os.path.join(m.sys, "kernel", "mm", "page_idle", "bitmap")
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise Unavailable(f"no {path} (CONFIG_IDLE_PAGE_TRACKING)") from None


def global_set(m: Machine, pid: int) -> None:
    fd = _global_bitmap(m, os.O_WRONLY)
    try:
        pfns = present_pfns(m, pid, mappings(m, pid))
        for first, last in word_runs(np.unique(pfns >> 6)):
            data = b"\xff" * ((last - first) * WORD)
            off = first * WORD
            while data:  # kernfs takes at most a page per write
                n = os.pwrite(fd, data[:KERNFS_MAX], off)
                data, off = data[n:], off + n
    finally:
        os.close(fd)


def global_read(m: Machine, pid: int) -> int:
    fd = _global_bitmap(m, os.O_RDONLY)
    try:
        pfns = present_pfns(m, pid, mappings(m, pid))
        idx, vals = [], []
        for first, last in word_runs(np.unique(pfns >> 6)):
            buf = bytearray()
            off, end = first * WORD, last * WORD
            while off < end:
                got = os.pread(fd, min(KERNFS_MAX, end - off), off)
                if not got:
                    break
                buf += got
                off += len(got)
            w = np.frombuffer(bytes(buf), "<u8")
            idx.append(np.arange(first, first + len(w), dtype=np.int64))
            vals.append(w)
        if not idx:
            return 0
        idx, vals = np.concatenate(idx), np.concatenate(vals)
        at = np.minimum(np.searchsorted(idx, pfns >> 6), len(idx) - 1)
        word = np.where(idx[at] == pfns >> 6, vals[at], np.uint64(0))  # past the end: not idle
        idle = (word >> (pfns & 63).astype(np.uint64)) & np.uint64(1)
        return int(len(pfns) - int(idle.sum()))
    finally:
        os.close(fd)


def _bitmap_words(maps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of idle_bitmap words covering the mappings, each word once."""
    spans = sorted(((lo // PAGE) // 64, -(-(hi // PAGE) // 64)) for lo, hi in maps)
    out: list[list[int]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _read_bitmap(fd: int, first: int, last: int) -> np.ndarray:
    """The bits (1 = idle) of words [first, last), as one uint8 per page."""
    parts = []
    off, end = first * WORD, last * WORD
    while off < end:
        got = os.pread(fd, min(BITMAP_CHUNK, end - off), off)
        if not got:
            break
        parts.append(got)
        off += len(got)
    return np.unpackbits(np.frombuffer(b"".join(parts), np.uint8), bitorder="little")


def _idle_bitmap(m: Machine, pid: int) -> int:
    try:
        return os.open(m.path(pid, "idle_bitmap"), os.O_RDONLY)
    except FileNotFoundError:
        raise Unavailable("no idle_bitmap (an unmerged RFC)") from None


def pid_set(m: Machine, pid: int) -> None:
    fd = _idle_bitmap(m, pid)
    try:
        for first, last in _bitmap_words(mappings(m, pid)):
            _read_bitmap(fd, first, last)
    finally:
        os.close(fd)


def pid_read(m: Machine, pid: int) -> int:
    fd = _idle_bitmap(m, pid)
    try:
        maps = mappings(m, pid)
        n = 0
        for first, last in _bitmap_words(maps):
            bits = _read_bitmap(fd, first, last)
            base = first * 64
            for lo, hi in maps:  # only the pages inside mappings count
                a, b = max(lo // PAGE, base), min(hi // PAGE, base + len(bits))
                if a < b:
                    n += int((b - a) - bits[a - base: b - base].sum())
        return n
    finally:
        os.close(fd)


MARK_READ = {"refs": (refs_set, refs_read), "global": (global_set, global_read), "pid": (pid_set, pid_read)}


def measure(m: Machine, pid: int, method: str, interval: float) -> Sample:
    """Mark, wait `interval`, read: one estimate of the WSS over the interval."""
    mark, read = MARK_READ[method]
    s = Sample(method)
    try:
        s.start = m.now()
        t = time.perf_counter()
        mark(m, pid)
        s.set_ms = (time.perf_counter() - t) * 1e3
        m.wait(interval)
        t = time.perf_counter()
        s.pages = read(m, pid)
        s.read_ms = (time.perf_counter() - t) * 1e3
        s.end = m.now()
        s.truth = m.truth(pid, s.start)
    except Unavailable as e:
        s.error = f"unavailable: {e}"
    except PermissionError as e:
        s.error = f"permission denied: {e.filename}"
    except ProcessLookupError:
        s.error = "the process is gone"
    except FileNotFoundError as e:
        s.error = f"the process is gone ({e.filename})"
    return s


# -- output ---------------------------------------------------------------------------------

def report(samples: list[Sample]) -> str:
    lines = [f"{'method':<8} {'estimate':>20} {'truth':>20} {'error':>8} {'set ms':>9} {'read ms':>9}"]
    for s in samples:
        if s.error:
            lines.append(f"{s.method:<8} {s.error}")
            continue
        est = f"{s.pages} ({s.mib:.1f} MiB)"
        tru, err = "-", "-"
        if s.truth is not None:
            tru = f"{s.truth} ({s.truth * PAGE / (1 << 20):.1f} MiB)"
            err = f"{(s.pages - s.truth) / s.truth * 100:+.1f}%" if s.truth else ("0" if not s.pages else "inf")
        lines.append(f"{s.method:<8} {est:>20} {tru:>20} {err:>8} {s.set_ms:>9.1f} {s.read_ms:>9.1f}")
    return "\n".join(lines)


def plot(samples: list[Sample], out: str, pid: int) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("wss.py: --plot needs matplotlib: pip install 'procsim[plot]' (or pip install matplotlib)")
    ok = [s for s in samples if not s.error]
    if not ok:
        sys.exit("wss.py: no method could measure anything to plot")
    t0 = min(s.start for s in ok)
    fig, ax = plt.subplots(figsize=(9, 5))
    truth = sorted(((s.start + s.end) / 2 - t0, s.truth * PAGE / (1 << 20)) for s in ok if s.truth is not None)
    if truth:
        ax.plot(*zip(*truth), "k--", label="truth", linewidth=1.5)
    for method, marker in zip(METHODS, "os^"):
        pts = [((s.start + s.end) / 2 - t0, s.mib) for s in ok if s.method == method]
        if pts:
            ax.plot(*zip(*pts), marker=marker, linestyle="-", label=method)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("working set (MiB)")
    ax.set_title(f"WSS of pid {pid}: estimates vs truth")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pid", type=int)
    ap.add_argument("--root", default="/proc", help="the /proc to read (default /proc; a mount's MNT/proc)")
    ap.add_argument("--sys", default=None, help="the /sys to use (default: next to --root)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between mark and read")
    ap.add_argument("--methods", default=",".join(METHODS), help="refs,global,pid (in this order)")
    ap.add_argument("--json", action="store_true", help="print the samples as JSON lines")
    ap.add_argument("--no-truth", action="store_true", help="do not ask a procsim mount for the truth")
    ap.add_argument("--plot", metavar="PNG", help="sample repeatedly and plot estimates vs truth")
    ap.add_argument("--samples", type=int, default=10, help="rounds for --plot")
    a = ap.parse_args(argv)
    methods = [x for x in a.methods.split(",") if x]
    bad = [x for x in methods if x not in METHODS]
    if bad or not methods:
        ap.error(f"--methods: choose from {', '.join(METHODS)}")
    if a.interval <= 0 or a.samples < 1:
        ap.error("--interval and --samples must be positive")
    sysroot = a.sys or os.path.join(os.path.dirname(os.path.abspath(a.root)), "sys")
    if not os.path.isdir(os.path.join(a.root, str(a.pid))):
        print(f"wss.py: no process {a.pid} under {a.root}", file=sys.stderr)
        return 1
    m = Machine(a.root, sysroot, truth=not a.no_truth)
    if m.client is not None:
        m.track(a.pid)
    rounds = a.samples if a.plot else 1
    samples = []
    for _ in range(rounds):
        for method in methods:
            s = measure(m, a.pid, method, a.interval)
            samples.append(s)
            if a.json:
                print(json.dumps(asdict(s)), flush=True)
    if not a.json:
        print(report(samples))
    if a.plot:
        plot(samples, a.plot, a.pid)
        if not a.json:
            print(f"wrote {a.plot}")
    return 0 if any(not s.error for s in samples) else 1


if __name__ == "__main__":
    sys.exit(main())
