"""Working-set estimation: what each method of examples/wss.py costs and how
close it gets, and what running workloads and recording their truth costs.

A. Workload steps (in this process, no FUSE): a uniform pattern over a
   written 1 GiB region at 4 M accesses per 1 s step of the virtual clock
   (every page present: no faults), with the ground-truth access log and
   without it (the log dropped after the start). Figures: simulated
   accesses per second of real time; ratio: without / with (the price of
   the truth).

B. The three estimators through a mount: one process with a written 1 GiB
   heap (262,144 pages) and a hot/cold workload (10% hot set, all the
   accesses there, 1 M accesses/s); examples/wss.py --json measures a 1 s
   interval (the manual clock is advanced through the control channel) with
   each method in turn. Per method: the time of the marking and of the
   reading (wall time of the script's own work, not of the wait), and the
   estimate's error against the truth; ratios: each method's total time
   over idle_bitmap's (the per-process bitmap against the global route,
   pagemap + page_idle/bitmap, and against clear_refs + smaps).

Medians over rounds (a new mount per round). Nothing here asserts a timing.

    .venv/bin/python bench/run.py --only wss
    .venv/bin/python bench/wss.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, ProcsimMount, fmt, fmt_ratio, log, median, ratio, table  # noqa: E402

WSS = str(REPO / "examples" / "wss.py")
GiB = 1 << 30
METHODS = ("refs", "global", "pid")

SCENARIO = """
[machine]
nr_cpus = 2
mem = "4G"
clock = "manual"
seed = 1

[[process]]
name = "app"
argv = ["/usr/bin/app"]
maps = [{ name = "heap", size = "1G", touch = "all" }]
workloads = [{ pattern = "hot_cold", rate = 1000000, map = "heap", hot = 0.1, hot_prob = 1.0 }]
"""


def bench_steps(rounds: int, accesses: int = 4_000_000) -> dict:
    """A: simulated accesses per real second, with and without the truth."""
    from procsim import Kernel, KernelConfig
    from procsim.commands import execute

    out: dict[str, list[float]] = {"with_log": [], "without_log": []}
    for _ in range(rounds):
        for mode in ("with_log", "without_log"):
            k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=2 * GiB, clock="manual"))
            k.create_init()
            k.kthread("kthreadd", pid=2)
            pid = k.spawn(["/usr/bin/app"])
            addr = execute(k, "mmap", {"pid": pid, "length": GiB})
            execute(k, "touch", {"pid": pid, "addr": addr, "length": GiB})
            k.workloads.start(pid, pattern="uniform", rate=accesses, addr=addr, length=GiB)
            if mode == "without_log":
                k.group(pid).mm.access_log = None
            k.advance(1)  # warm up
            t = time.perf_counter()
            k.advance(1)
            out[mode].append(accesses / (time.perf_counter() - t))
    w, wo = median(out["with_log"]), median(out["without_log"])
    return {"accesses_per_step": accesses, "region_pages": GiB >> 12, "rounds": rounds,
            "with_log_per_s": w, "without_log_per_s": wo, "without_over_with": ratio(wo, w)}


def bench_estimators(rounds: int, workdir: str) -> dict:
    """B: examples/wss.py's three methods through a mount."""
    per: dict[str, dict[str, list[float]]] = {m: {"set_ms": [], "read_ms": [], "total_ms": [], "err_pct": []}
                                              for m in METHODS}
    truth = []
    scen = Path(workdir) / "wss-bench.toml"
    scen.write_text(SCENARIO)
    for r in range(rounds):
        with ProcsimMount(str(scen), workdir=workdir) as mnt:
            pid = next(p["pid"] for p in mnt.call("ps") if p["comm"] == "app")
            mnt.call("advance", seconds=1)  # the hot set is warm
            res = subprocess.run([sys.executable, WSS, "--root", mnt.proc_path(), "--json", "--interval", "1",
                                  str(pid)], capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise RuntimeError(f"wss.py failed: {res.stderr.strip()}")
            for line in res.stdout.splitlines():
                s = json.loads(line)
                if s["error"]:
                    raise RuntimeError(f"wss.py {s['method']}: {s['error']}")
                d = per[s["method"]]
                d["set_ms"].append(s["set_ms"])
                d["read_ms"].append(s["read_ms"])
                d["total_ms"].append(s["set_ms"] + s["read_ms"])
                d["err_pct"].append((s["pages"] - s["truth"]) / s["truth"] * 100)
                truth.append(s["truth"])
        log(f"wss: round {r + 1}/{rounds} done")
    med = {m: {k: median(v) for k, v in d.items()} for m, d in per.items()}
    return {"rounds": rounds, "heap_pages": GiB >> 12, "truth_pages": median(truth), "methods": med,
            "global_over_pid": ratio(med["global"]["total_ms"], med["pid"]["total_ms"]),
            "refs_over_pid": ratio(med["refs"]["total_ms"], med["pid"]["total_ms"])}


def bench_wss(rounds: int, workdir: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="wss-bench-", dir=workdir or "/tmp") as wd:
        return {"steps": bench_steps(rounds), "estimators": bench_estimators(rounds, wd)}


def report(r: dict) -> list[str]:
    s, e = r["steps"], r["estimators"]
    L = [f"7. Workloads and working-set estimation (median of {s['rounds']} rounds)",
         f"   A. uniform workload over {s['region_pages']:,} present pages, {s['accesses_per_step']:,} accesses "
         "per 1 s step:",
         table(["truth recorded", "simulated accesses/s"],
               [["yes (AccessLog)", f"{s['with_log_per_s']:,.0f}"], ["no", f"{s['without_log_per_s']:,.0f}"]]),
         f"   without/with: {fmt_ratio(s['without_over_with'])}",
         f"   B. examples/wss.py on a mount, 1 GiB heap, hot/cold 10%: truth {e['truth_pages']:,.0f} pages per 1 s",
         table(["method", "mark ms", "read ms", "total ms", "error vs truth"],
               [[m, fmt(v["set_ms"]), fmt(v["read_ms"]), fmt(v["total_ms"]), f"{v['err_pct']:+.3f}%"]
                for m, v in e["methods"].items()]),
         f"   global (pagemap + page_idle/bitmap) / idle_bitmap: {fmt_ratio(e['global_over_pid'])}; "
         f"clear_refs+smaps / idle_bitmap: {fmt_ratio(e['refs_over_pid'])}",
         ""]
    return L


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    r = bench_wss(a.rounds)
    print("\n".join(report(r)))
    print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
