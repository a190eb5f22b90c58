"""The daemon's Python cost of one PROCMAP_QUERY, in-process: CPU time per
call (time.process_time), so other load on the machine changes it little,
unlike the wall-clock ratios of `run.py --only procmap`.

The call goes in where libfuse calls the daemon: RawPath.ioctl's C thunk
(`--direct`: ProcsimOps.ioctl_fh, without the thunk), a ctypes buffer
standing for libfuse's out buffer, this process standing for the caller (so
the name and build ID are written into our own buffers with
process_vm_writev, as into a client's). The address space is a mirror of
this interpreter (its maps and real build IDs, as procmap_query.py mirrors
a model process). Each repetition walks every VMA with COVERING_OR_NEXT_VMA,
as pmqbench does; the client loop's own cost (packing the query, calling an
empty thunk the same way) is measured alone and subtracted.

    .venv/bin/python bench/procmap_micro.py            # us per call, without and with buffers
    .venv/bin/python bench/procmap_micro.py --profile  # cProfile's top entries instead
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import io
import os
import pstats
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mfusepy  # noqa: E402

from mountd import fs as F  # noqa: E402
from procmap_query import real_build_ids  # noqa: E402
from procsim import scenario  # noqa: E402
from procsim.commands import execute  # noqa: E402

Q = struct.Struct("<QQQQQQQQQIIIIQQ")
PROCMAP_QUERY = 0xC0686611
NEXT = 0x10


class _FileInfo:
    flags, fh, direct_io = os.O_RDONLY, 0, 0


def mirror() -> tuple[F.ProcsimOps, int, str]:
    """The default machine with a process mirroring this one; (the daemon's
    ops, an open maps handle, the maps text read through another handle)."""
    k = scenario.load(None, clock="manual")
    bids = real_build_ids(os.getpid())  # first: it may load libraries
    layout = open("/proc/self/maps").read()
    pid = execute(k, "spawn", dict(argv=["/usr/bin/sleep", "600"]))
    exe = os.readlink("/proc/self/exe")
    execute(k, "exec", dict(pid=pid, path=exe, argv=[exe], layout=layout, build_ids=bids))
    ops = F.ProcsimOps(F.ProcFS(k))
    # the FUSE thread's fuse_context, as _bind_context finds it: we are the caller
    ctx = mfusepy.fuse_context()
    ctx.uid, ctx.gid, ctx.pid = 0, 0, os.getpid()
    F._ctx_struct, F._ctx_thread = ctx, threading.get_ident()
    fi, text = _FileInfo(), _FileInfo()
    ops.open(f"/proc/{pid}/maps", fi)
    ops.open(f"/proc/{pid}/maps", text)
    out, off = b"", 0
    while chunk := ops.read_fh(text.fh, 4096, off):
        out, off = out + chunk, off + len(chunk)
    return ops, fi.fh, out.decode()


def bench(names: bool, n: int, direct: bool, profile: bool) -> float | str:
    ops, fh, maps = mirror()
    name, bid = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(20)
    data = ctypes.create_string_buffer(Q.size)  # libfuse's out buffer
    arg = ctypes.create_string_buffer(Q.size)   # the caller's struct (its address)
    daddr, aaddr = ctypes.addressof(data), ctypes.addressof(arg)
    tail = (4096, 20, ctypes.addressof(name), ctypes.addressof(bid)) if names else (0, 0, 0, 0)
    fi = mfusepy.fuse_file_info()
    fi.fh = fh
    fip = ctypes.addressof(fi)
    empty = F._IOCTL_T(lambda *a: 0)
    if direct:
        def call() -> int:
            try:
                return ops.ioctl_fh(fh, PROCMAP_QUERY, aaddr, 0, daddr)
            except OSError as e:
                return -e.errno
        nop: Callable[[], Any] = lambda: 0  # noqa: E731
    else:
        thunk = F._IOCTL_T(F.RawPath(ops).ioctl)

        def call() -> int:
            return thunk(None, PROCMAP_QUERY, aaddr, fip, 0, daddr)

        def nop() -> int:
            return empty(None, PROCMAP_QUERY, aaddr, fip, 0, daddr)

    def walk(n: int, fn: Callable[[], int]) -> None:
        addr = 0
        for _ in range(n):
            ctypes.memmove(daddr, Q.pack(Q.size, NEXT, addr, 0, 0, 0, 0, 0, 0, 0, 0, *tail), Q.size)
            addr = Q.unpack(data.raw)[4] if fn() == 0 else 0

    # one checked walk: every VMA of the maps text (the gate VMA aside), with its name
    addr, seen = 0, []
    while True:
        ctypes.memmove(daddr, Q.pack(Q.size, NEXT, addr, 0, 0, 0, 0, 0, 0, 0, 0, *tail), Q.size)
        if call() != 0:
            break
        f = Q.unpack(data.raw)
        addr = f[4]
        seen.append((f[3], name.raw[: max(f[11] - 1, 0)] if names else None))
    lines = [ln for ln in maps.splitlines() if int(ln.split("-")[0], 16) < 1 << 47]
    want = [(int(ln.split("-")[0], 16), (ln[73:].encode() if len(ln) > 73 else b"") if names else None)
            for ln in lines]
    if seen != want:
        raise RuntimeError("the walk does not match the maps text")
    walk(2000, call)  # warm up
    if profile:
        pr = cProfile.Profile()
        pr.enable()
        walk(n, call)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(16)
        return s.getvalue()
    runs = []
    for _ in range(7):
        t0 = time.process_time()
        walk(n, call)
        t1 = time.process_time()
        walk(n, nop)
        t2 = time.process_time()
        runs.append(((t1 - t0) - (t2 - t1)) / n * 1e6)
    return sorted(runs)[len(runs) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000, help="calls per run (7 runs, median)")
    ap.add_argument("--direct", action="store_true", help="call ProcsimOps.ioctl_fh, not the C thunk")
    ap.add_argument("--profile", action="store_true", help="print cProfile's top entries")
    a = ap.parse_args()
    gc.disable()  # as steady as the daemon's loop between collections
    for names in (False, True):
        r = bench(names, a.n, a.direct, a.profile)
        label = "name+build id" if names else "no buffers"
        print(f"{label}:\n{r}" if a.profile else f"{label:14s} {r:6.2f} us per call (CPU time, median of 7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
