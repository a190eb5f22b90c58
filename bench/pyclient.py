"""Fallback client used only when the C baseline (and so fbench) is missing.

Same loops and output line as fbench's `read` and `scan` modes:
read = open + read(4 KiB) until EOF + close; scan = readdir, then for each
numeric entry stat(dir) and read stat, status and cmdline procps-style
(1 KiB buffer growing by 1 KiB, stop on a short read). Python adds a few
microseconds per system call, so its figures are higher than fbench's; only
ratios measured with the same client are comparable.
"""

from __future__ import annotations

import argparse
import os
import time


def read_file(p: str) -> int:
    fd = os.open(p, os.O_RDONLY)
    t = 0
    try:
        while True:
            b = os.read(fd, 4096)
            if not b:
                break
            t += len(b)
    finally:
        os.close(fd)
    return t


def file2str(p: str) -> int:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return -1
    tot, size = 0, 1024
    try:
        while True:
            b = os.read(fd, size - tot)
            if not b:
                break
            tot += len(b)
            if tot < size:
                break
            size += 1024
    except OSError:
        pass
    finally:
        os.close(fd)
    return tot


def scan(d: str) -> tuple[int, int]:
    files = nbytes = 0
    for name in os.listdir(d):
        if not name[:1].isdigit():
            continue
        base = os.path.join(d, name)
        try:
            os.stat(base)
        except OSError:
            continue
        for f in ("stat", "status", "cmdline"):
            n = file2str(base + "/" + f)
            if n >= 0:
                files += 1
                nbytes += n
    return files, nbytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-t", type=float, default=0.3)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("mode", choices=("read", "scan"))
    ap.add_argument("path")
    a = ap.parse_args()
    res, bytes_per_op, files_per_scan = [], 0, 0
    for _ in range(a.r):
        ops = calls = nbytes = 0
        t0 = time.perf_counter()
        while True:
            for _ in range(8):
                if a.mode == "read":
                    nbytes += read_file(a.path)
                    ops += 1
                else:
                    f, b = scan(a.path)
                    ops += f
                    nbytes += b
                    files_per_scan = f
                calls += 1
            t = time.perf_counter()
            if t - t0 >= a.t:
                break
        res.append((t - t0) * 1e9 / max(ops, 1))
        bytes_per_op = nbytes // max(calls, 1)
    line = f"mode={a.mode} path={a.path} j=1 ns_per_op={','.join(f'{x:.0f}' for x in res)} bytes_per_op={bytes_per_op}"
    if a.mode == "scan":
        line += f" files_per_scan={files_per_scan}"
    print(line)


if __name__ == "__main__":
    main()
