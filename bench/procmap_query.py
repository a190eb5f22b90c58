"""PROCMAP_QUERY throughput (issue 4): ioctl calls per second on a maps fd
through the mount against the real /proc, on the same address space.

A real Python process is the model: the simulated process is made from its
maps text and its real build IDs (`exec ... layout= build_ids=`), so both
targets walk the same VMAs. The client (pmqbench.c, compiled at run time;
a ctypes loop of the same shape when gcc is missing) walks every VMA with
COVERING_OR_NEXT_VMA for a fixed time per repetition, without and with the
name (4096-byte buffer) and build ID (20 bytes) buffers, which the daemon
must write into the client with process_vm_writev. Placements as in run.py:
unpinned, and client and daemon on one CPU. When the C baseline of
../shared/bench/fuse-floor builds, its /maps (a fixed 36-VMA answer from a
C server, names written with process_vm_writev, no build IDs) is timed with
the same client as the FUSE floor.

    .venv/bin/python bench/run.py --only procmap
    .venv/bin/python bench/procmap_query.py [--rounds N] [--quick]   # alone
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BuildError, ProcsimMount, build_c, fmt, fmt_ratio, log, median, pin_process, ratio, stop_pid, table  # noqa: E402
from floor import Floor, FloorServer  # noqa: E402

HERE = Path(__file__).resolve().parent
PROCMAP_QUERY = 0xC0686611
QUERY = struct.Struct("<QQQQQQQQQIIIIQQ")
MODES = ("plain", "names")
TARGETS = ("mount", "c_floor", "real")

# The real model process: an interpreter, its libraries and some heap. It
# waits for stdin to close.
_REAL = "import sys, json, collections, decimal; sys.stdin.read()"


# -- clients ---------------------------------------------------------------------------


class Client:
    """pmqbench, built into a temporary directory; or the ctypes loop."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="procsim-bench-pmq-"))
        self.binary: str | None = None
        self.note: str | None = None
        try:
            self.binary = build_c(HERE / "pmqbench.c", self.dir / "pmqbench")
        except BuildError as e:
            self.note = f"pmqbench not built ({e}); ctypes client used"

    @property
    def name(self) -> str:
        return "pmqbench (C)" if self.binary else "ctypes (Python)"

    def run(self, maps: str, names: bool, seconds: float, reps: int, cpu: int | None) -> list[float]:
        """ns per ioctl of each repetition."""
        if self.binary:
            cmd = [self.binary, "-t", str(seconds), "-r", str(reps)] + (["-n"] if names else []) + [maps]
        else:
            cmd = [sys.executable, __file__, "--client", maps, "-t", str(seconds), "-r", str(reps)] + \
                  (["-n"] if names else [])
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu)] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + seconds * reps * 4)
        m = re.search(r"ns_per_op=([\d,]+)", p.stdout)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stdout.strip()} {p.stderr.strip()}")
        return [float(x) for x in m.group(1).split(",")]

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _ctypes_client(maps: str, seconds: float, reps: int, names: bool) -> None:
    """The pmqbench loop in Python (ctypes), for machines without gcc."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    fd = os.open(maps, os.O_RDONLY)
    name, bid = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(20)
    arg = ctypes.create_string_buffer(QUERY.size)
    tail = (4096, 20, ctypes.addressof(name), ctypes.addressof(bid)) if names else (0, 0, 0, 0)
    addr, out = 0, []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(16):
                arg.raw = QUERY.pack(QUERY.size, 0x10, addr, 0, 0, 0, 0, 0, 0, 0, 0, *tail)
                if libc.ioctl(fd, PROCMAP_QUERY, arg) < 0:
                    addr = 0
                else:
                    addr = QUERY.unpack(arg.raw)[4]
                n += 1
        out.append((time.perf_counter() - t0) * 1e9 / n)
    print("ns_per_op=" + ",".join(f"{x:.0f}" for x in out))


# -- the model process ---------------------------------------------------------------------


def real_build_ids(pid: int) -> dict[str, str]:
    """{name: hex} for the file VMAs of a real process, from the real ioctl."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    name, bid = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(20)
    out: dict[str, str] = {}
    fd = os.open(f"/proc/{pid}/maps", os.O_RDONLY)
    try:
        addr = 0
        while True:
            arg = ctypes.create_string_buffer(QUERY.pack(QUERY.size, 0x10, addr, 0, 0, 0, 0, 0, 0, 0, 0, 4096, 20,
                                                         ctypes.addressof(name), ctypes.addressof(bid)))
            if libc.ioctl(fd, PROCMAP_QUERY, arg) < 0:
                return out
            f = QUERY.unpack(arg.raw[: QUERY.size])
            addr = f[4]
            if f[8] and f[11]:
                n = name.raw[: f[11] - 1].decode("utf-8", "surrogateescape")
                if not n.startswith("[anon_shmem:"):
                    out[n] = bid.raw[: f[12]].hex()
    finally:
        os.close(fd)


def bench_procmap(floor: Floor, rounds: int, cpu: int, seconds: float = 0.3, reps: int = 5) -> dict:
    client = Client()
    if client.note:
        log(f"procmap: {client.note}")
    real = subprocess.Popen([sys.executable, "-c", _REAL], stdin=subprocess.PIPE)
    placements = ["unpinned", "same_cpu"] if (os.cpu_count() or 1) > 1 else ["unpinned"]
    raw = {pl: {mode: {t: [] for t in TARGETS} for mode in MODES} for pl in placements}
    info: dict = {"client": client.name, "rounds": rounds, "seconds": seconds, "reps": reps,
                  "c_floor": floor.available}
    try:
        time.sleep(0.3)  # let the interpreter finish starting
        layout = open(f"/proc/{real.pid}/maps").read()
        bids = real_build_ids(real.pid)
        info.update(vmas=len(layout.splitlines()) - 1, files_with_build_id=sum(1 for v in bids.values() if v))
        for r in range(rounds):
            log(f"[procmap] round {r + 1}/{rounds}: mounting the default machine")
            with ProcsimMount(clock="manual") as m, _c_floor(floor) as cf:
                pid = m.call("spawn", argv=["/usr/bin/sleep", "600"])
                exe = os.readlink(f"/proc/{real.pid}/exe")
                m.call("exec", pid=pid, path=exe, argv=[exe], layout=layout, build_ids=bids)
                if open(m.proc_path(str(pid), "maps")).read() != layout:
                    raise RuntimeError("the mirrored process's maps differ from the real one's")
                paths = {"mount": m.proc_path(str(pid), "maps"), "real": f"/proc/{real.pid}/maps"}
                servers = [m.pid]
                if cf is not None:
                    paths["c_floor"] = os.path.join(cf.mnt, "maps")
                    servers.append(cf.pid)
                order = [t for t in TARGETS[r % 3:] + TARGETS[: r % 3] if t in paths]
                for pl in placements:
                    ccpu = cpu if pl == "same_cpu" else None
                    for s in servers if ccpu is not None else ():
                        pin_process(s, {cpu})
                    try:
                        for mode in MODES:
                            for t in order:
                                ns = client.run(paths[t], mode == "names", seconds, reps, ccpu)
                                us = median(ns) / 1000
                                raw[pl][mode][t].append(us)
                                log(f"  procmap {pl:8s} {mode:5s} {t:7s} {us:8.2f} us  reps={ns}")
                    finally:
                        for s in servers if ccpu is not None else ():
                            pin_process(s, None)
    finally:
        real.stdin.close()
        stop_pid(real, timeout=5)
        client.cleanup()
    res = {}
    for pl in placements:
        res[pl] = {}
        for mode in MODES:
            med = {t: median(v) for t, v in raw[pl][mode].items()}
            res[pl][mode] = {"us": med, "per_round_us": raw[pl][mode],
                             "calls_per_s": {t: 1e6 / v for t, v in med.items() if v},
                             "mount_over_real": ratio(med["mount"], med["real"]),
                             "mount_over_c": ratio(med["mount"], med["c_floor"]),
                             "c_over_real": ratio(med["c_floor"], med["real"])}
    info["placements"] = res
    info["same_cpu"] = cpu
    return info


class _c_floor:
    """The C baseline server writing names, or None when it is unavailable."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.server: FloorServer | None = None

    def __enter__(self) -> FloorServer | None:
        binary = self.floor.server(1536) if self.floor.available else None
        if binary is None:
            return None
        old = os.environ.get("FB_WRITENAME")
        os.environ["FB_WRITENAME"] = "1"  # FloorServer passes our environment on
        try:
            self.server = FloorServer(binary).__enter__()
        finally:
            if old is None:
                os.environ.pop("FB_WRITENAME")
            else:
                os.environ["FB_WRITENAME"] = old
        return self.server

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.__exit__(*exc)


def report(r: dict) -> list[str]:
    L = [f"5. PROCMAP_QUERY walk (COVERING_OR_NEXT over {r['vmas']} VMAs of a real Python process and of its "
         f"mirror on the mount; {r['client']}, median of {r['rounds']} rounds)"]
    rows = []
    for pl, modes in r["placements"].items():
        for mode, v in modes.items():
            cps = v["calls_per_s"]
            rows.append([pl.replace("_", " "), "name+build id" if mode == "names" else "no buffers",
                         fmt(v["us"]["mount"], digits=2), fmt(v["us"]["c_floor"], digits=2),
                         fmt(v["us"]["real"], digits=2), f"{cps.get('mount', 0):,.0f}",
                         f"{cps.get('real', 0):,.0f}", fmt_ratio(v["mount_over_c"]),
                         fmt_ratio(v["mount_over_real"]), fmt_ratio(v["c_over_real"])])
    L.append(table(["placement", "buffers", "mount us", "C us", "real us", "mount calls/s", "real calls/s",
                    "mount/C", "mount/real", "C/real"], rows))
    L.append(f"   {r['files_with_build_id']} files with a build ID; with buffers the daemon writes the name and "
             "the build ID into the client (one process_vm_writev), the C floor the name only")
    if not r["c_floor"]:
        L.append("   C floor not available: its columns are empty")
    L.append("")
    return L


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", metavar="MAPS", help=argparse.SUPPRESS)  # the ctypes client
    ap.add_argument("-t", type=float, default=0.3, help=argparse.SUPPRESS)
    ap.add_argument("-r", type=int, default=5, help=argparse.SUPPRESS)
    ap.add_argument("-n", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round")
    ap.add_argument("--cpu", type=int, default=None, help="CPU for same-CPU runs (default: last CPU)")
    a = ap.parse_args()
    if a.client:
        _ctypes_client(a.client, a.t, a.r, a.n)
        return 0
    cpu = a.cpu if a.cpu is not None else max(os.sched_getaffinity(0))
    floor = Floor()
    try:
        r = bench_procmap(floor, 1 if a.quick else a.rounds, cpu)
    finally:
        floor.cleanup()
    print("\n".join(report(r)))
    print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
