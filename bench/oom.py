"""RSS counter trees and two-pass OOM selection (seed-mechanisms §3), on a
simulated 384-CPU machine (2 sockets of 192 threads, as in the seed's
cover letter) with 10,000 processes, built through the Python API (no
FUSE): `--only oom`.

The machine: 10,000 processes forked from one exec'd worker; each then
gets its resident memory the way a CPU-hopping process would: 12 to 24
page-count changes (faults, and a third of them unmaps) of random sizes,
each on a random CPU, toward a size drawn from a log-normal distribution
(median 4,000 pages, a few processes of gigabytes). The same changes are
replayed into flat percpu_counters so both kinds hold the same truth.

Measured (each a median over `rounds` repetitions in this run, at least 5
for the selections):
  * victim selection, select_bad_process() over the 10,000: two passes
    (approximations prune, precise sums decide) vs one exhaustive scan of
    precise sums; with counter trees and with flat counters (whose wide
    accuracy range prunes less); the last process, the memory hog, at
    16 GiB, at 2 GiB (above the others by less than 4 flat ranges) and
    at an ordinary size (nothing stands out: little to prune). Also counted: precise evaluations and
    per-CPU counter slots read, the work that dominates in the kernel
    (a precise sum reads one per-CPU counter, one cache line, per CPU).
  * per-counter operations, tree vs flat: an add (random CPU, +-1..64
    pages), a precise read and an approximate read.
  * accuracy: each kind's documented range (under/over), and the largest
    gap between the precise and the approximate sum found over the
    10,000 processes after their CPU-hopping changes.
Nothing here asserts a timing.
"""

from __future__ import annotations

import gc
import random
import statistics
import time

from procsim import Kernel, KernelConfig
from procsim.mm import oom as O
from procsim.mm.counter_tree import (MM_ANONPAGES, MM_FILEPAGES, NR_MM_COUNTERS, PercpuCounter, RssStat,
                                     make_shape)

MiB = 1 << 20
PAGE = 4096


def build(nr_cpus: int, nprocs: int, seed: int = 0, hog: bool = True) -> tuple[Kernel, list[RssStat]]:
    """The machine (tree counters in its mms) and, per process, flat
    counters holding the same changes."""
    rng = random.Random(seed)
    k = Kernel(KernelConfig(nr_cpus=nr_cpus, mem_bytes=256 << 30, seed=seed))
    k.create_init()
    k.kthread("kthreadd", pid=2)
    worker = k.spawn(["/usr/sbin/worker"])
    flat_shape = make_shape("flat", nr_cpus)
    flats = []
    for i in range(nprocs - 1 if nprocs > 1 else 0):
        k.fork(worker)
    last = list(k.groups.values())[-1]
    for tg in list(k.groups.values()):
        if tg.mm is None:
            continue
        flat = RssStat(flat_shape)
        for kk in range(NR_MM_COUNTERS):  # what the fork/exec already counted, on CPU 0
            flat.add(kk, tg.mm.rss.precise(kk), 0)
        target = int(min(500_000, max(100, rng.lognormvariate(8.3, 1.2))))
        if rng.random() < 0.001:
            target = rng.randrange(250_000, 1_000_000)  # a few processes of 1-4 GiB
        if hog and tg is last:
            target = 4 << 20  # the memory hog that ran the machine out of memory: 16 GiB
        total = 0
        for _ in range(rng.randrange(12, 25)):
            cpu = rng.randrange(nr_cpus)
            if total > 64 and rng.random() < 0.33:
                d = -rng.randrange(1, total // 2 + 1)          # munmap on another CPU
            else:
                d = rng.randrange(1, max(2, 2 * target // 12))
            kk = MM_ANONPAGES if rng.random() < 0.8 else MM_FILEPAGES
            if kk == MM_FILEPAGES and d < 0 and -d > flat.precise(kk):
                kk = MM_ANONPAGES
            if d < 0 and -d > tg.mm.rss.precise(kk):
                continue
            tg.mm.rss.add(kk, d, cpu)
            flat.add(kk, d, cpu)
            total += d
        flats.append(flat)
    return k, flats


def _median_time(fn, rounds: int) -> float:
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _per_op(fn, n: int, rounds: int) -> float:
    return _median_time(lambda: fn(n), rounds) / n


HOG_SIZES = (("hog 16 GiB", 4 << 20), ("hog 2 GiB", 512 << 10), ("no outlier", 4000))


def bench_selection(k: Kernel, flats: list[RssStat], rounds: int) -> dict:
    """Selection with the hog (the last process) at each size of HOG_SIZES:
    far above everyone, above the rest by less than the flat counters'
    accuracy range, and an ordinary process (nothing stands out)."""
    groups = list(k.groups.values())
    tp = O.total_pages(k)
    nr_cpus = k.config.nr_cpus
    with_mm = [g for g in groups if g.mm is not None]
    trees = [g.mm.rss for g in with_mm]
    hog_tree, hog_flat = trees[-1], flats[-1]
    out = {}
    for name, size in HOG_SIZES:
        for c in (hog_tree, hog_flat):  # resize the hog (unmaps or faults on CPU 1): `size` anon pages
            for kk in range(NR_MM_COUNTERS):
                c.add(kk, (size if kk == MM_ANONPAGES else 0) - c.precise(kk), 1)
        res = {}
        for kind in ("tree", "flat"):
            for g, c in zip(with_mm, trees if kind == "tree" else flats):
                g.mm.rss = c
            row = {}
            for mode, two in (("two_pass", True), ("exhaustive", False)):
                sel = O.select_bad_process(groups, tp, two, record=False)
                secs = _median_time(lambda: O.select_bad_process(groups, tp, two, record=False), max(rounds, 5))
                eligible = sum(1 for g in groups if O.oom_badness(g, tp) != O.LONG_MIN)
                # per-CPU slots read: an approximate read is one load per counter (the root, or
                # the flat count), a precise read one per CPU per counter
                slots = (eligible * NR_MM_COUNTERS if two else 0) + sel.precise_evals * NR_MM_COUNTERS * nr_cpus
                row[mode] = {"seconds": secs, "victim": sel.chosen.tgid, "points": sel.points,
                             "precise_evals": sel.precise_evals, "eligible": eligible, "slots_read": slots}
            assert row["two_pass"]["victim"] == row["exhaustive"]["victim"]
            row["speedup"] = row["exhaustive"]["seconds"] / row["two_pass"]["seconds"]
            row["slots_ratio"] = row["exhaustive"]["slots_read"] / row["two_pass"]["slots_read"]
            res[kind] = row
        out[name] = res
    for g, t in zip(with_mm, trees):
        g.mm.rss = t
    return out


def bench_counter_ops(nr_cpus: int, rounds: int, n: int = 100_000, seed: int = 1) -> dict:
    rng = random.Random(seed)
    cpus = [rng.randrange(nr_cpus) for _ in range(n)]
    incs = [rng.choice((1, 1, 1, 2, 4, 16, 64, -1, -1, -8)) for _ in range(n)]
    out = {}
    for kind in ("tree", "flat"):
        shape = make_shape(kind, nr_cpus)
        c = PercpuCounter(shape)

        def adds(m: int) -> None:
            add = c.add
            for i in range(m):
                add(cpus[i], incs[i])

        def precise(m: int) -> None:
            p = c.precise
            for _ in range(m):
                p(0)

        def approx(m: int) -> None:
            a = c.approx
            for _ in range(m):
                a(0)

        add_ns = _per_op(adds, n, rounds) * 1e9
        out[kind] = {"add_ns": add_ns, "precise_ns": _per_op(precise, n // 10, rounds) * 1e9,
                     "approx_ns": _per_op(approx, n // 10, rounds) * 1e9,
                     "batch": shape.batch, "levels": shape.levels,
                     "under_pages": shape.under, "over_pages": shape.over}
    return out


def drift(nr_cpus: int, faults: int = 300_000, seed: int = 2) -> dict:
    """The cover letter's CPU-hopping test, in its kernel shape: a process
    faults pages in one at a time (inc_mm_counter: +1 on the CPU it runs on,
    hopping to a random CPU every 64 faults) and unmaps them in batches of
    512 (add_mm_rss_vec: -512 at once). The largest gap between the precise
    and the approximate sum over the run, sampled every 64 faults."""
    out = {}
    for kind in ("tree", "flat"):
        rng = random.Random(seed)
        c = PercpuCounter(make_shape(kind, nr_cpus))
        resident, worst, cpu = 0, 0, 0
        for i in range(faults):
            if i % 64 == 0:
                cpu = rng.randrange(nr_cpus)
                worst = max(worst, abs(c.precise_sum() - c.approximate_sum()))
            c.add(cpu, 1)
            resident += 1
            if resident >= 4096 and rng.random() < 1 / 512:
                c.add(rng.randrange(nr_cpus), -512)
                resident -= 512
        assert c.precise_sum() == resident
        out[kind] = {"max_gap_pages": worst, "final_gap_pages": c.precise_sum() - c.approximate_sum(),
                     "resident_pages": resident}
    return out


def accuracy_observed(k: Kernel, flats: list[RssStat]) -> dict:
    trees = [g.mm.rss for g in k.groups.values() if g.mm is not None]

    def worst(counters) -> dict:
        gaps = [c.precise(kk) - c.approx(kk) for c in counters for kk in range(NR_MM_COUNTERS)]
        return {"max_gap_pages": max(gaps), "min_gap_pages": min(gaps),
                "max_abs_gap_pages": max(abs(g) for g in gaps),
                "within_range": all(lo <= c.precise(kk) <= hi for c in counters
                                    for kk in range(NR_MM_COUNTERS) for lo, hi in [c.range(kk)])}

    return {"tree": worst(trees), "flat": worst(flats)}


def bench_oom(rounds: int = 3, nr_cpus: int = 384, nprocs: int = 10_000) -> dict:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t = time.perf_counter()
        k, flats = build(nr_cpus, nprocs)
        build_s = time.perf_counter() - t
        mms = [g.mm for g in k.groups.values() if g.mm is not None]
        res = {"nr_cpus": nr_cpus, "processes": len(mms),
               "counter_bytes": {"tree": sum(m.rss.pcpu.nbytes + m.rss.items.nbytes for m in mms),
                                 "flat": sum(f.pcpu.nbytes + f.items.nbytes for f in flats)},
               "build_seconds": build_s, "rounds": rounds,
               "selection": bench_selection(k, flats, rounds),
               "ops": bench_counter_ops(nr_cpus, rounds),
               "accuracy": accuracy_observed(k, flats),
               "drift": drift(nr_cpus)}
        return res
    finally:
        if gc_was:
            gc.enable()


def report(r: dict) -> list[str]:
    from common import table
    L = [f"RSS counters and OOM selection (--only oom): {r['nr_cpus']} CPUs, {r['processes']} processes "
         f"(built in {r['build_seconds']:.0f} s), median of {r['rounds']} rounds"]
    rows = []
    for scen, res in r["selection"].items():
        for kind in ("tree", "flat"):
            s = res[kind]
            tp, ex = s["two_pass"], s["exhaustive"]
            rows.append([scen, kind, f"{tp['seconds'] * 1e3:.1f} ms", f"{ex['seconds'] * 1e3:.1f} ms",
                         f"{s['speedup']:.2f}x", f"{tp['precise_evals']}/{tp['eligible']}", f"{tp['slots_read']:,}",
                         f"{ex['slots_read']:,}", f"{s['slots_ratio']:.1f}x", str(tp["victim"])])
    L.append(table(["victim", "counters", "two-pass", "exhaustive", "speedup", "precise evals", "slots 2-pass",
                    "slots exh.", "slots ratio", "victim pid"], rows))
    rows = []
    for kind in ("tree", "flat"):
        o, a, d = r["ops"][kind], r["accuracy"][kind], r["drift"][kind]
        rows.append([kind, str(o["batch"]), str(o["levels"]), f"{o['add_ns']:.0f} ns", f"{o['precise_ns']:.0f} ns",
                     f"{o['approx_ns']:.0f} ns",
                     f"-{o['over_pages']:,}/+{o['under_pages']:,} p ({o['under_pages'] * PAGE / MiB:.0f} MiB)",
                     f"{a['max_abs_gap_pages']:,} p ({a['max_abs_gap_pages'] * PAGE / MiB:.1f} MiB)",
                     f"{d['max_gap_pages']:,} p ({d['max_gap_pages'] * PAGE / MiB:.1f} MiB)"])
    L.append(table(["counter", "batch", "levels", "add", "precise read", "approx read",
                    "documented range of precise", "largest gap, 10k procs", "CPU-hopping drift"], rows))
    t, f = r["ops"]["tree"], r["ops"]["flat"]
    L.append(f"   tree/flat: add {t['add_ns'] / f['add_ns']:.2f}x, precise read {t['precise_ns'] / f['precise_ns']:.2f}x, "
             f"approx read {t['approx_ns'] / f['approx_ns']:.2f}x; accuracy range flat/tree "
             f"{f['under_pages'] / t['under_pages']:.1f}x; precise/approx read: tree "
             f"{t['precise_ns'] / t['approx_ns']:.2f}x, flat {f['precise_ns'] / f['approx_ns']:.2f}x")
    L.append("   largest gap, 10k procs: over every counter of the machine above (12-24 changes each);"
             " CPU-hopping drift: one process faulting pages in one by one on a CPU it leaves every 64 faults,"
             " unmapping 512 at a time (300,000 faults), the largest |precise - approx| seen")
    cb = r["counter_bytes"]
    L.append(f"   counter arrays of all {r['processes']} mms (4 counters each): tree {cb['tree'] / MiB:.1f} MiB, "
             f"flat {cb['flat'] / MiB:.1f} MiB")
    L.append("   slots: per-CPU counter slots read by the selection (approximate read 1 per counter,"
             " precise read 1 per CPU per counter): the kernel's cost; in the model a precise sum is"
             " one numpy sum, so time ratios are smaller than slot ratios")
    L.append("")
    return L


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    res = bench_oom()
    print("\n".join(report(res)))
    print(json.dumps(res, indent=1))
