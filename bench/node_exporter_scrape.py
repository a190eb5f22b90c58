"""A prometheus-node-exporter scrape through the mount vs the same scrape
of this host's real /proc and /sys (`--only node_exporter`).

The same binary and collector set for both (tests/integration/node_exporter.py:
the default collectors less those needing systemd, hardware or netlink,
plus buddyinfo, cgroups, interrupts, meminfo_numa, processes, slabinfo and
zoneinfo), each exporter started once; then `reps` scrapes of /metrics,
alternating between the two, after one warm-up each. The ratio is of the
medians measured in this same run. The simulated machine is the default
one (scenarios/default.toml); the host's files differ in size (its CPU
count, its processes), so the series counts are reported beside the times."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common import REPO, ProcsimMount, log, median, ratio

sys.path.insert(0, str(REPO / "tests" / "integration"))
import node_exporter as ne  # noqa: E402


def _scrape(e: "ne.Exporter") -> tuple[float, int]:
    t0 = time.perf_counter()
    text = e.scrape()
    return time.perf_counter() - t0, sum(1 for l in text.splitlines() if l and not l.startswith("#"))


def bench_node_exporter(workdir: str, reps: int = 20) -> dict:
    if not ne.available():
        raise RuntimeError(f"{ne.BINARY} not installed (apt-get install prometheus-node-exporter)")
    res: dict = {"reps": reps, "collectors": ne.collector_flags()}
    with ProcsimMount(workdir=workdir) as m:
        mnt = Path(m.mnt)
        with ne.Exporter(str(mnt / "proc"), str(mnt / "sys")) as sim, ne.Exporter("/proc", "/sys") as real:
            _scrape(sim)
            _scrape(real)
            s, r = [], []
            for _ in range(reps):
                t, res["sim_series"] = _scrape(sim)
                s.append(t)
                t, res["real_series"] = _scrape(real)
                r.append(t)
    res["sim_s"], res["real_s"] = s, r
    res["sim_median_s"], res["real_median_s"] = median(s), median(r)
    res["ratio"] = ratio(res["sim_median_s"], res["real_median_s"])
    log(f"  node_exporter: sim {res['sim_median_s'] * 1000:.1f} ms ({res['sim_series']} series), real "
        f"{res['real_median_s'] * 1000:.1f} ms ({res['real_series']} series): {res['ratio']:.2f}x")
    return res


def report(r: dict) -> list[str]:
    from common import fmt, fmt_ratio, table
    rows = [["one /metrics scrape", f"{r['sim_series']} / {r['real_series']}", fmt(r["sim_median_s"] * 1000),
             fmt(r["real_median_s"] * 1000), fmt_ratio(r["ratio"])]]
    return ["node_exporter: a scrape through the mount (the default machine) vs this host's /proc and /sys "
            f"(medians of {r['reps']}, interleaved)",
            table(["", "series sim / real", "sim ms", "real ms", "ratio"], rows), ""]
