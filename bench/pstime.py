"""Time `ps aux` (or another command) where it runs: on the real /proc, or
inside `procsim run`'s private mount namespace where the simulated /proc is
bound over /proc. Only the command is timed (fork + exec + run + wait), not
the mount. Prints one JSON line on stdout.

    pstime.py [-n REPS] [-w WARMUP] [--cpu N] -- ps aux
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5, help="timed repetitions")
    ap.add_argument("-w", type=int, default=1, help="untimed warm-up runs")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    cmd = cmd or ["ps", "aux"]
    # One untimed run that keeps the output: process count and errors.
    p = subprocess.run(cmd, capture_output=True, close_fds=False)
    lines = p.stdout.decode(errors="replace").splitlines()
    first = {"returncode": p.returncode, "lines": len(lines),
             "stderr": p.stderr.decode(errors="replace")[-2000:], "head": lines[:3], "tail": lines[-2:]}
    for _ in range(max(a.w - 1, 0)):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False)
    times, codes = [], []
    for _ in range(a.n):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False)
        times.append(time.perf_counter() - t0)
        codes.append(r.returncode)
    print(json.dumps({"cmd": cmd, "seconds": times, "returncodes": codes, "first": first,
                      "pid": os.getpid()}), flush=True)


if __name__ == "__main__":
    main()
