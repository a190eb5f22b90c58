"""Benchmarks of the memory files (issue 3): PID/smaps of a process with
10,000 VMAs and 4 GiB touched, and a PID/pagemap read of 1 GiB of address
space (262,144 entries), each through the mount and on the real kernel, in
the same run.

The real process is a child Python that maps 4 GiB, writes every page and
mprotects every other slice read-only (so the VMAs cannot merge); the
simulated one is built the same way through the control channel. Both are
read the way cat reads: open, read(1 MiB) until EOF, close.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ProcsimMount, log, median, ratio

GiB, MiB, KiB = 1 << 30, 1 << 20, 1 << 10
PAGE = 4096

# A real process shaped like the simulated one. It prints its region's
# address, then waits for stdin to close.
_REAL = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
length, nvmas = int(sys.argv[1]), int(sys.argv[2])
addr = libc.mmap(None, length, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
ctypes.memset(addr, 1, length)
piece = (length // nvmas) & ~4095
for i in range(1, nvmas, 2):
    if libc.mprotect(addr + i * piece, piece, 1):
        raise OSError(ctypes.get_errno(), "mprotect")
print(addr, piece, flush=True)
sys.stdin.read()
"""


def _cat(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    n = 0
    try:
        while True:
            b = os.read(fd, MiB)
            if not b:
                return n
            n += len(b)
    finally:
        os.close(fd)


def _pagemap(path: str, addr: int, length: int) -> int:
    """One 1 GiB window of pagemap, read in 1 MiB preads (what a tool does)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        off, end, n = (addr >> 12) * 8, ((addr + length) >> 12) * 8, 0
        while off < end:
            b = os.pread(fd, min(MiB, end - off), off)
            assert b, "pagemap EOF inside the mapping"
            n += len(b)
            off += len(b)
        return n
    finally:
        os.close(fd)


def _time(fn, reps: int) -> tuple[list[float], int]:
    fn()  # warm
    out, size = [], 0
    for _ in range(reps):
        t0 = time.perf_counter()
        size = fn()
        out.append(time.perf_counter() - t0)
    return out, size


def _count_vmas(maps_path: str) -> int:
    with open(maps_path) as f:
        return sum(1 for _ in f)


def bench_mmfiles(workdir: str, nvmas: int, touched: int, reps: int, clock: str) -> dict:
    res: dict = {"nvmas_target": nvmas, "touched_bytes": touched, "reps": reps}
    pm_len = min(GiB, touched)
    # -- the real process --------------------------------------------------------------------
    log(f"[mmfiles] real: {touched // MiB} MiB written, {nvmas} VMAs")
    p = subprocess.Popen([sys.executable, "-c", _REAL, str(touched), str(nvmas)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        addr, _ = map(int, p.stdout.readline().split())
        base = f"/proc/{p.pid}"
        res["real_vmas"] = _count_vmas(f"{base}/maps")
        t, size = _time(lambda: _cat(f"{base}/smaps"), reps)
        res["real_smaps"] = {"seconds": t, "median_s": median(t), "bytes": size}
        t, size = _time(lambda: _pagemap(f"{base}/pagemap", addr, pm_len), reps)
        res["real_pagemap"] = {"seconds": t, "median_s": median(t), "bytes": size}
    finally:
        p.stdin.close()
        p.wait(timeout=60)
    log(f"  real smaps {res['real_smaps']['median_s'] * 1000:.1f} ms ({res['real_vmas']} lines of maps),"
        f" pagemap {res['real_pagemap']['median_s'] * 1000:.2f} ms")
    # -- the simulated one ---------------------------------------------------------------------
    scen = os.path.join(workdir, "mmfiles.toml")
    with open(scen, "w") as f:
        f.write(f'description = "bench: smaps and pagemap"\n[machine]\nnr_cpus = 2\n'
                f'mem = "{max(8, 2 * touched // GiB + 2)}G"\n\n'
                f'[[process]]\nname = "app"\npid = 100\nargv = ["/usr/bin/app"]\n')
    log("[mmfiles] simulated: same shape")
    with ProcsimMount(scenario=scen, clock=clock) as m:
        c = m.client()
        addr = c.mmap(pid=100, length=touched)
        for off in range(0, touched, GiB):
            c.touch(pid=100, addr=addr + off, length=min(GiB, touched - off))
        piece = (touched // nvmas) & ~4095
        t0 = time.perf_counter()
        for i in range(1, nvmas, 2):
            c.mprotect(pid=100, addr=addr + i * piece, length=piece, prot="r")
        res["sim_setup_s"] = time.perf_counter() - t0
        base = m.proc_path("100")
        res["sim_vmas"] = _count_vmas(f"{base}/maps")
        t, size = _time(lambda: _cat(f"{base}/smaps"), reps)
        res["sim_smaps"] = {"seconds": t, "median_s": median(t), "bytes": size}
        t, size = _time(lambda: _pagemap(f"{base}/pagemap", addr, pm_len), reps)
        res["sim_pagemap"] = {"seconds": t, "median_s": median(t), "bytes": size}
    log(f"  sim smaps {res['sim_smaps']['median_s'] * 1000:.1f} ms ({res['sim_vmas']} lines of maps),"
        f" pagemap {res['sim_pagemap']['median_s'] * 1000:.2f} ms")
    res["smaps_ratio"] = ratio(res["sim_smaps"]["median_s"], res["real_smaps"]["median_s"])
    res["pagemap_ratio"] = ratio(res["sim_pagemap"]["median_s"], res["real_pagemap"]["median_s"])
    res["pagemap_entries"] = pm_len // PAGE
    return res


def report(r: dict) -> list[str]:
    from common import fmt, fmt_ratio, table
    rows = [["smaps, whole file", f"{r['sim_vmas']} / {r['real_vmas']}",
             f"{r['sim_smaps']['bytes'] / MiB:.1f} / {r['real_smaps']['bytes'] / MiB:.1f} MiB",
             fmt(r["sim_smaps"]["median_s"] * 1000), fmt(r["real_smaps"]["median_s"] * 1000),
             fmt_ratio(r["smaps_ratio"])],
            [f"pagemap, {r['pagemap_entries']} entries", "", f"{r['sim_pagemap']['bytes'] / MiB:.1f} MiB",
             fmt(r["sim_pagemap"]["median_s"] * 1000, digits=2), fmt(r["real_pagemap"]["median_s"] * 1000, digits=2),
             fmt_ratio(r["pagemap_ratio"])]]
    return [f"5. memory files: a process with {r['nvmas_target']} VMAs and {r['touched_bytes'] // GiB} GiB written"
            f" (ms, median of {r['reps']} reads after 1 warm-up; read(1 MiB) to EOF, pagemap in 1 MiB preads)",
            table(["file", "maps lines sim/real", "size", "mount ms", "real ms", "mount/real"], rows),
            f"   simulated process built in {r['sim_setup_s']:.1f} s of control calls (mprotect per VMA)", ""]
