"""Idle page tracking at terabyte scale (seed-mechanisms §2.1: the RFC's
"scanning 1 TB of 4K active pages costs 2 s (per-task bitmap) vs 15 s
(global bitmap)").

A daemon (this module run with --serve: the machine built through the
Python API, served by the usual FUSE layer and control socket, plus two
bench-only control commands registered in its own process) holds one
process with SIZE of anonymous memory mapped and touched in 4 KiB pages
(THP off), on a machine with SIZE + 4 GiB of RAM. Measured:

* daemon RSS (real VmRSS) before and after the touch: bytes per simulated
  4 KiB page, page tables and mem_map together (goal ~30 B; < 8 GiB at 1 TiB);
* per-process route: read MNT/proc/100/idle_bitmap for every VMA of
  MNT/proc/100/maps with os.pread (128 KiB calls), counting accessed pages
  (popcount of the complement), once with every page accessed (just
  touched) and once after a random 10% working set was accessed
  (`bench_ws`: memory.access of random pages, untimed). One read both reports
  and resets (test-and-clear); goal < 2 s at 1 TiB;
* global route (wss-v1 style, with whole runs of words): read the mapped
  ranges' pagemap (the PFNs), write ones to the page_idle bitmap words
  holding those PFNs (4 KiB per write, as kernfs takes), let the same 10%
  working set run, read pagemap again and read those words back, counting
  the PFNs whose bit is 0. Its cost (both pagemap passes + write + read)
  against the per-process read of the same working set is the ratio (the
  RFC's goal: >= 7x);
* an empty reservation of ~126 TiB (PROT_NONE, MAP_NORESERVE, in a second
  process): the daemon-side walk over all of it (`bench_walk`: idle_read in
  1 MiB steps, walk-step counter) and a read through the mount of a 1 TiB
  slice of it (only output: 32 MiB of ones).

    .venv/bin/python bench/run.py --only idle [--quick]
    .venv/bin/python bench/idle.py [--gib N] [--quick]

Nothing asserts a timing; ratios are between figures of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, fmt_ratio, log, stop_pid, table, vm_rss_bytes  # noqa: E402

GiB, TiB = 1 << 30, 1 << 40
PAGE = 4096
APP, OTHER = 100, 101
BASE = 1 << 40                 # the big region: 1 TiB up, 1 GiB aligned
RESV_ADDR, RESV_LEN = 1 << 40, 126 * TiB
READ = 128 << 10               # bytes per read of the per-process bitmap and pagemap
KERNFS = 4096                  # bytes per call of the global bitmap
GOAL_RATIO = 7.0
WS_FRACTION = 0.1


# -- the daemon ---------------------------------------------------------------------

def _bench_ws(k, pid, addr, length, fraction=WS_FRACTION, seed=0) -> int:
    """Loads from a random `fraction` of the pages of [addr, addr+length)."""
    rng = np.random.default_rng(int(seed))
    n = int(length) // PAGE
    step = 1 << 22
    done = 0
    for lo in range(0, n, step):
        m = min(step, n - lo)
        pick = np.sort(rng.choice(m, int(m * float(fraction)), replace=False)).astype(np.int64)
        k.access(int(pid), int(addr) + ((lo + pick) << 12), False)
        done += len(pick)
    return done


def _bench_walk(k, pid, addr, length) -> dict:
    """The kernel side of reading [addr, addr+length)'s idle bitmap."""
    from procsim.mm import idle
    pt = k.task(int(pid)).mm.pgtable
    steps = pt.walk_steps
    step = (1 << 20) * 32768  # 1 MiB of bitmap per call, as a read returns at most
    t = time.perf_counter()
    for lo in range(int(addr), int(addr) + int(length), step):
        idle.idle_read(pt, lo, min(lo + step, int(addr) + int(length)))
    return {"seconds": time.perf_counter() - t, "steps": pt.walk_steps - steps}


def serve(mnt: str, size: int) -> None:
    from mountd.cli import mount_foreground
    from procsim import Kernel, KernelConfig, commands
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=size + 4 * GiB, thp_enabled="never"))
    k.create_init()
    k.kthread("kthreadd", pid=2)
    k.spawn(["/usr/bin/app"], pid=APP)
    k.spawn(["/usr/bin/resv"], pid=OTHER)
    from procsim.commands.core import ADDR, LENGTH, PID, cmd, p, query
    from procsim.params import INT
    # this process only: a command that touches pages, a query that walks them
    commands.COMMANDS["bench_ws"] = cmd("bench_ws", _bench_ws, PID, ADDR, LENGTH, p("seed", INT, 0))
    commands.COMMANDS["bench_walk"] = query("bench_walk", _bench_walk, PID, ADDR, LENGTH)
    mount_foreground(k, mnt)


# -- readers ------------------------------------------------------------------------

def _vmas(mnt: str, pid: int) -> list[tuple[int, int]]:
    out = []
    with open(f"{mnt}/proc/{pid}/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if hi <= 1 << 47:
                out.append((lo, hi))
    return out


def _bitmap_ranges(vmas: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Byte ranges of the idle_bitmap (whole words) covering the VMAs, merged."""
    rs: list[tuple[int, int]] = []
    for lo, hi in vmas:
        a, b = (lo >> 12) // 64 * 8, -(-(hi >> 12) // 64) * 8
        if rs and a <= rs[-1][1]:
            rs[-1] = (rs[-1][0], max(rs[-1][1], b))
        else:
            rs.append((a, b))
    return rs


def per_process_read(mnt: str, pid: int) -> tuple[float, int]:
    """Read the bitmap of every VMA; (seconds, pages seen accessed)."""
    t = time.perf_counter()
    fd = os.open(f"{mnt}/proc/{pid}/idle_bitmap", os.O_RDONLY)
    accessed = 0
    try:
        for a, b in _bitmap_ranges(_vmas(mnt, pid)):
            off = a
            while off < b:
                data = os.pread(fd, min(READ, b - off), off)
                if not data:
                    break
                w = np.frombuffer(data, np.uint64)
                accessed += len(w) * 64 - int(np.bitwise_count(w).sum())
                off += len(data)
    finally:
        os.close(fd)
    return time.perf_counter() - t, accessed


def _word_runs(words: np.ndarray) -> list[tuple[int, int]]:
    """Runs [a, b) of consecutive marked words."""
    idx = np.flatnonzero(words)
    if not len(idx):
        return []
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = idx[np.concatenate(([0], cut))]
    ends = idx[np.concatenate((cut - 1, [len(idx) - 1]))] + 1
    return list(zip(starts.tolist(), ends.tolist()))


def global_write(mnt: str, runs: list[tuple[int, int]]) -> float:
    t = time.perf_counter()
    fd = os.open(f"{mnt}/sys/kernel/mm/page_idle/bitmap", os.O_WRONLY)
    ones = b"\xff" * KERNFS
    try:
        for a, b in runs:
            off, end = a * 8, b * 8
            while off < end:
                off += os.pwrite(fd, ones[: min(KERNFS, end - off)], off)
    finally:
        os.close(fd)
    return time.perf_counter() - t


def global_read(mnt: str, runs: list[tuple[int, int]], pfn_mask: np.ndarray) -> tuple[float, int]:
    """Read the marked words; (seconds, PFNs of the process whose bit is 0)."""
    t = time.perf_counter()
    fd = os.open(f"{mnt}/sys/kernel/mm/page_idle/bitmap", os.O_RDONLY)
    accessed = 0
    try:
        for a, b in runs:
            off, end = a * 8, b * 8
            while off < end:
                data = os.pread(fd, min(KERNFS, end - off), off)
                if not data:
                    break
                w = np.frombuffer(data, np.uint64)
                m = pfn_mask[off // 8: off // 8 + len(w)]
                accessed += int(np.bitwise_count(m & ~w).sum())
                off += len(data)
    finally:
        os.close(fd)
    return time.perf_counter() - t, accessed


def pfn_bits(mnt: str, pid: int, ranges, nwords: int) -> tuple[float, np.ndarray]:
    """Read pagemap over the VMAs `ranges`; (seconds, per global bitmap
    word the bits of the process's PFNs, as u64)."""
    t = time.perf_counter()
    present = np.zeros(nwords * 64, bool)
    fd = os.open(f"{mnt}/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for lo, hi in ranges:
            off, end = (lo >> 12) * 8, (hi >> 12) * 8
            while off < end:
                data = os.pread(fd, min(READ, end - off), off)
                if not data:
                    break
                e = np.frombuffer(data, np.uint64)
                pfn = (e[(e >> np.uint64(63)) != 0] & np.uint64((1 << 55) - 1)).astype(np.int64)
                present[pfn[pfn < len(present)]] = True
                off += len(data)
    finally:
        os.close(fd)
    mask = np.packbits(present, bitorder="little").view("<u8")
    return time.perf_counter() - t, mask


# -- the benchmark --------------------------------------------------------------------

def _wait_mounted(mnt: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (os.path.ismount(mnt) and os.path.exists(f"{mnt}/proc/meminfo")):
        if proc.poll() is not None:
            raise RuntimeError(f"idle bench daemon exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("idle bench daemon: not mounted in time")
        time.sleep(0.05)


def bench_idle(size: int, workdir: str | None = None, resv: bool = True) -> dict:
    from mountd.cli import unmount
    from mountd.control import Client
    base = tempfile.mkdtemp(prefix="procsim-idle-", dir=workdir)
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    logf = open(os.path.join(base, "daemon.log"), "wb")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                    os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", mnt, "--bytes", str(size)],
                            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    logf.close()
    r: dict = {"bytes": size, "pages": size // PAGE}
    try:
        _wait_mounted(mnt, proc, 120)
        c = Client(mnt, timeout=None)
        rss0 = vm_rss_bytes(proc.pid)
        c.mmap(pid=APP, length=size, addr=BASE, fixed=True)
        t = time.perf_counter()
        chunk = min(size, 16 * GiB)
        for off in range(0, size, chunk):
            c.touch(pid=APP, addr=BASE + off, length=min(chunk, size - off))
        r["touch_s"] = time.perf_counter() - t
        rss1 = vm_rss_bytes(proc.pid)
        r.update(rss_before=rss0, rss_after=rss1, bytes_per_page=(rss1 - rss0) / r["pages"])
        log(f"idle: {size / GiB:.0f} GiB touched in {r['touch_s']:.0f} s; daemon RSS {rss1 / GiB:.2f} GiB")
        # per-process route
        r["pid_all_s"], r["pid_all_accessed"] = per_process_read(mnt, APP)
        t = time.perf_counter()
        r["ws_pages"] = c.call("bench_ws", pid=APP, addr=BASE, length=size, seed=1)
        r["ws_s"] = time.perf_counter() - t
        r["pid_ws_s"], r["pid_ws_accessed"] = per_process_read(mnt, APP)
        r["pid_idle_s"], r["pid_idle_accessed"] = per_process_read(mnt, APP)
        log(f"idle: per-process read {r['pid_all_s']:.2f} s (all), {r['pid_ws_s']:.2f} s (10% ws)")
        # global route
        max_pfn = (size + 4 * GiB) // PAGE
        nwords = -(-max_pfn // 64)
        ranges = _vmas(mnt, APP)
        r["g_pagemap1_s"], mask = pfn_bits(mnt, APP, ranges, nwords)
        runs = _word_runs(mask != 0)
        r["g_words"] = int((mask != 0).sum())
        r["g_write_s"] = global_write(mnt, runs)
        c.call("bench_ws", pid=APP, addr=BASE, length=size, seed=1)
        r["g_pagemap2_s"], mask = pfn_bits(mnt, APP, ranges, nwords)
        runs = _word_runs(mask != 0)
        r["g_read_s"], r["g_accessed"] = global_read(mnt, runs, mask)
        r["global_s"] = r["g_pagemap1_s"] + r["g_write_s"] + r["g_pagemap2_s"] + r["g_read_s"]
        r["ratio"] = r["global_s"] / r["pid_ws_s"]
        r["ratio_no_pagemap"] = (r["g_write_s"] + r["g_read_s"]) / r["pid_ws_s"]
        log(f"idle: global route {r['global_s']:.1f} s ({r['ratio']:.1f}x)")
        if resv:
            c.mmap(pid=OTHER, length=RESV_LEN, prot="none", addr=RESV_ADDR, fixed=True, noreserve=True)
            w = c.call("bench_walk", pid=OTHER, addr=RESV_ADDR, length=RESV_LEN)
            r["resv_walk_s"], r["resv_steps"] = w["seconds"], w["steps"]
            t = time.perf_counter()
            fd = os.open(f"{mnt}/proc/{OTHER}/idle_bitmap", os.O_RDONLY)
            try:
                off, end = RESV_ADDR // 32768, (RESV_ADDR + TiB) // 32768
                ones = 0
                while off < end:
                    data = os.pread(fd, min(READ, end - off), off)
                    ones += data.count(b"\xff")
                    off += len(data)
            finally:
                os.close(fd)
            r["resv_1tib_read_s"] = time.perf_counter() - t
            r["resv_1tib_all_idle"] = ones == TiB // 32768
        r["rss_end"] = vm_rss_bytes(proc.pid)
        c.close()
    finally:
        try:
            unmount(mnt)
        except Exception:
            unmount(mnt, lazy=True)
        stop_pid(proc, timeout=30)
        if not os.path.ismount(mnt):
            shutil.rmtree(base, ignore_errors=True)
    return r


def report(r: dict) -> list[str]:
    size = r["bytes"]
    L = [f"== idle page tracking: {size / GiB:.0f} GiB of touched 4 KiB pages ({r['pages']:,} pages) =="]
    L.append(f"   daemon RSS {r['rss_before'] / GiB:.2f} -> {r['rss_after'] / GiB:.2f} GiB after the touch: "
             f"{r['bytes_per_page']:.1f} B per simulated page (touch {r['touch_s']:.0f} s)")
    rows = [
        ["per-process idle_bitmap read, all pages accessed", fmt(r["pid_all_s"], " s", 2), f"{r['pid_all_accessed']:,}"],
        ["per-process idle_bitmap read, 10% working set", fmt(r["pid_ws_s"], " s", 2), f"{r['pid_ws_accessed']:,}"],
        ["per-process idle_bitmap read, nothing accessed", fmt(r["pid_idle_s"], " s", 2),
         f"{r['pid_idle_accessed']:,}"],
        ["global: pagemap read (set phase)", fmt(r["g_pagemap1_s"], " s", 2), ""],
        ["global: bitmap write, ones over the process's PFN words", fmt(r["g_write_s"], " s", 2),
         f"{r['g_words']:,} words"],
        ["global: pagemap read (read phase)", fmt(r["g_pagemap2_s"], " s", 2), ""],
        ["global: bitmap read of those words, 10% working set", fmt(r["g_read_s"], " s", 2),
         f"{r['g_accessed']:,}"],
        ["global route total", fmt(r["global_s"], " s", 2), ""],
    ]
    L.append(table(["measurement", "time", "accessed pages"], rows))
    L.append(f"   global / per-process (same working set): {fmt_ratio(r['ratio'])} "
             f"(without the pagemap passes {fmt_ratio(r['ratio_no_pagemap'])}); goal >= {GOAL_RATIO:.0f}x -> "
             f"{'met' if r['ratio'] >= GOAL_RATIO else 'NOT met'}")
    if size < TiB:
        k = TiB / size
        L.append(f"   extrapolated linearly to 1 TiB (x{k:.0f}; measured at {size / GiB:.0f} GiB): "
                 f"per-process read {r['pid_ws_s'] * k:.1f} s (10% ws) / {r['pid_all_s'] * k:.1f} s (all), "
                 f"daemon RSS {(r['rss_before'] + r['bytes_per_page'] * (TiB // PAGE)) / GiB:.1f} GiB "
                 f"(an overestimate: the small run's fixed costs counted per page)")
    if "resv_walk_s" in r:
        L.append(f"   empty {RESV_LEN / TiB:.0f} TiB reservation: daemon-side walk {r['resv_walk_s']:.3f} s, "
                 f"{r['resv_steps']} walk steps; reading a 1 TiB slice through the mount (32 MiB of ones) "
                 f"{r['resv_1tib_read_s']:.2f} s ({'all idle' if r['resv_1tib_all_idle'] else 'NOT all idle'})")
    L.append("")
    return L


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=int, default=1024, help="GiB mapped and touched (default 1024 = 1 TiB)")
    ap.add_argument("--quick", action="store_true", help="16 GiB")
    ap.add_argument("--serve", metavar="MNT", help=argparse.SUPPRESS)
    ap.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve, a.bytes)
        return 0
    size = (16 if a.quick else a.gib) * GiB
    r = bench_idle(size)
    print("\n".join(report(r)))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
