"""Writer latency under /proc/PID/maps scanners (seed-mechanisms §4.7, after
Paul McKenney's proc-mmap_sem-test): does reading maps stall the process
that changes its address space?

The mapper maps a 128 MiB anonymous region (populated), then for a fixed
time picks a random 4 KiB page of it and either maps a fresh page there
with MAP_FIXED or unmaps it (each with probability 1/2, so the region
fragments as the run goes on), sleeping 10 us between operations, and
times every call. It runs once alone and once while two real processes
scan its maps in a loop (open, read(128 KiB) to EOF, close; started before
the timed phase, checked to be running, stopped by pid afterwards).

* mount: the simulated process of a procsim mount; the mapper is this
  benchmark calling the live-control channel (mountd.control.Client: one
  `mmap fixed=true` or `munmap` per operation, timed with
  time.perf_counter_ns around the round trip, the garbage collector off);
  the scanners read MNT/proc/PID/maps. The region is remapped and touched
  afresh before each phase, and 0.3 s of untimed operations warm up first.
  The control mmap has no MAP_POPULATE: remapped pages stay untouched.
* real: the same on the real kernel: a C mapper (mmap/munmap with
  MAP_POPULATE on the remaps, clock_gettime(CLOCK_MONOTONIC) around each
  call) and the same scanners on /proc/<mapper>/maps. One mapper process
  per phase, so each phase starts from a whole region.

CPU placement (this VM has 2 CPUs, the spec's benchmark pins the mapper on
one CPU and the scanners on another):
  * unpinned: the scheduler places everything;
  * split: the mapper on the first CPU, both scanners on the second, as
    the seed's benchmark pins them. Real kernel: the C mapper on the first
    CPU; the scanners' maps reads run in their own context, on the second.
    Mount: the writer side (this benchmark's writer thread and the daemon's
    control threads, which run its syscalls) on the first CPU; the side
    that does the reading (the scanners and the daemon's FUSE thread,
    which does the work a maps read does in the kernel) on the second.
    The two daemon threads still share one interpreter lock, as a writer
    and readers share an mm on Linux.

Per phase: operations, mean, p50, p99 and max latency (nearest-rank
percentiles of all timed calls) and each scanner's passes per second and
bytes per pass; a figure is the median over runs (the worst max of any run
is reported too). Ratios with/without scanners are computed per run and
their median is given; goal: the scanners raise the writer's maximum
latency by less than 1.5x. Nothing here asserts a timing.

    .venv/bin/python bench/run.py --only writer
    .venv/bin/python bench/writer_latency.py [--runs N] [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BuildError, ProcsimMount, build_c, fmt, fmt_ratio, log, median, pin_process, ratio, stop_pid, table  # noqa: E402

PAGE = 4096
REGION = 128 << 20
GAP_S = 10e-6            # McKenney's mapper sleeps 10 us between operations
WARMUP_S = 0.3
GOAL = 1.5
PLACEMENTS = ("unpinned", "split")
PHASES = ("alone", "scanned")

SCENARIO = """description = "bench: writer latency"
[machine]
nr_cpus = 2
mem = "1G"
clock = "manual"

[[process]]
name = "mapper"
pid = 100
argv = ["/usr/bin/mapper"]
"""

# The real mapper. argv: seconds, region bytes, seed. Prints "ready PID",
# waits for a line on stdin, runs, prints its statistics as JSON, then waits
# for stdin to close (so that its maps stays readable until then).
MAPPER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	double secs = atof(argv[1]);
	long size = atol(argv[2]), pg = sysconf(_SC_PAGESIZE), npages = size / pg;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
	struct timespec gap = { 0, 10000 };
	size_t cap = 1 << 22, n = 0;
	long long *lat = malloc(cap * sizeof(*lat)), stop, t0, sum = 0;
	long maps = 0, unmaps = 0;
	char line[64], *r;

	srandom(atoi(argv[3]));
	r = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (r == MAP_FAILED || !lat) {
		perror("mapper: mmap");
		return 1;
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	stop = now_ns() + (long long)(secs * 1e9);
	while (now_ns() < stop && n < cap) {
		char *a = r + (random() % npages) * pg;
		t0 = now_ns();
		if (random() & 8) {
			if (mmap(a, pg, PROT_READ | PROT_WRITE, flags | MAP_FIXED, -1, 0) != a) {
				perror("mapper: mmap fixed");
				return 1;
			}
			maps++;
		} else {
			if (munmap(a, pg)) {
				perror("mapper: munmap");
				return 1;
			}
			unmaps++;
		}
		lat[n++] = now_ns() - t0;
		nanosleep(&gap, NULL);
	}
	for (size_t i = 0; i < n; i++)
		sum += lat[i];
	qsort(lat, n, sizeof(*lat), cmp);
	printf("{\"ops\": %zu, \"maps\": %ld, \"unmaps\": %ld, \"mean_ns\": %.1f, \"p50_ns\": %lld, "
	       "\"p99_ns\": %lld, \"max_ns\": %lld}\n", n, maps, unmaps, (double)sum / n,
	       lat[(n - 1) / 2], lat[(n * 99 + 99) / 100 - 1], lat[n - 1]);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
"""

# A scanner: open, read to EOF, close, again, until SIGTERM; "ready" after
# the first pass; on SIGTERM its counts as JSON.
SCANNER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static char buf[131072];
	struct sigaction sa;
	long passes = 0, errors = 0;
	long long bytes = 0;
	double t0 = now();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;  /* no SA_RESTART: a blocked read returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	while (!stop) {
		long long b = 0;
		ssize_t k;
		int fd = open(argv[1], O_RDONLY);
		if (fd < 0) {
			if (errno != EINTR && ++errors > 1000)
				break;
			usleep(1000);
			continue;
		}
		while ((k = read(fd, buf, sizeof(buf))) > 0)
			b += k;
		close(fd);
		if (k < 0) {
			if (errno != EINTR)
				errors++;
			continue;
		}
		if (++passes == 1) {
			printf("ready\n");
			fflush(stdout);
		}
		bytes += b;
	}
	printf("{\"passes\": %ld, \"bytes\": %lld, \"errors\": %ld, \"seconds\": %.6f}\n",
	       passes, bytes, errors, now() - t0);
	return 0;
}
"""

# The scanner in Python, for machines without gcc.
SCANNER_PY = r"""
import json, os, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
passes = errors = nbytes = 0
t0 = time.monotonic()
while not stop:
    try:
        fd = os.open(sys.argv[1], os.O_RDONLY)
    except OSError:
        errors += 1
        time.sleep(0.001)
        continue
    b = 0
    try:
        while True:
            d = os.read(fd, 131072)
            if not d:
                break
            b += len(d)
    except OSError:
        errors += 1
        continue
    finally:
        os.close(fd)
    passes += 1
    nbytes += b
    if passes == 1:
        print("ready", flush=True)
print(json.dumps({"passes": passes, "bytes": nbytes, "errors": errors, "seconds": time.monotonic() - t0}))
"""


# -- programs ----------------------------------------------------------------------------


class Programs:
    """The C mapper and scanner, built into a temporary directory (the
    scanner falls back to Python without gcc; the real mapper is then
    skipped)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="procsim-bench-wl-"))
        self.mapper: str | None = None
        self.scanner: list[str] = [sys.executable, "-c", SCANNER_PY]
        self.note: str | None = None
        try:
            built = {}
            for name, src in (("wlmapper", MAPPER_C), ("wlscanner", SCANNER_C)):
                (self.dir / f"{name}.c").write_text(src)
                built[name] = build_c(self.dir / f"{name}.c", self.dir / name)
            self.mapper, self.scanner = built["wlmapper"], [built["wlscanner"]]
        except BuildError as e:
            self.note = f"gcc build failed ({e}): Python scanners, no real mapper"

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _taskset(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


class Scanners:
    """Two scanners of one maps file, started and waited for until each has
    made a pass; stopped by pid (SIGTERM) with their counts collected."""

    def __init__(self, progs: Programs, path: str, cpu: int | None, n: int = 2) -> None:
        self.procs: list[subprocess.Popen] = []
        try:
            for _ in range(n):
                self.procs.append(subprocess.Popen(_taskset(cpu) + progs.scanner + [path], stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for p in self.procs:
                line = p.stdout.readline()
                if line != "ready\n":
                    raise RuntimeError(f"scanner {p.pid} did not start: {line!r} {p.stderr.read()[-500:]}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> list[dict]:
        out = []
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)  # ours, by pid
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                text, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                stop_pid(p, timeout=5)
                text = ""
            try:
                out.append(json.loads(text.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                out.append({"error": f"scanner {p.pid}: no result ({p.returncode})"})
        self.procs = []
        return out


def _scan_stats(res: list[dict]) -> dict:
    ok = [r for r in res if "passes" in r]
    return {"scanners": res,
            "passes_per_s": [r["passes"] / r["seconds"] for r in ok if r["seconds"] > 0],
            "bytes_per_pass": median([r["bytes"] / r["passes"] for r in ok if r["passes"]]),
            "errors": sum(r.get("errors", 0) for r in ok) + len(res) - len(ok)}


def latency_stats(ns: list[int]) -> dict:
    """The C mapper's statistics, computed the same way (nearest rank)."""
    s = sorted(ns)
    n = len(s)
    return {"ops": n, "mean_ns": sum(s) / n, "p50_ns": s[(n - 1) // 2], "p99_ns": s[(n * 99 + 99) // 100 - 1],
            "max_ns": s[-1]}


# -- the mount ---------------------------------------------------------------------------


def _sim_ops(c, pid: int, base: int, seconds: float, rng: random.Random, record: bool) -> tuple[list[int], int, int]:
    """McKenney's loop through the control channel: latencies (ns) of the calls."""
    npages = REGION // PAGE
    lat: list[int] = []
    maps = unmaps = 0
    clock = time.perf_counter_ns
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        addr = base + rng.randrange(npages) * PAGE
        if rng.getrandbits(4) & 8:
            t0 = clock()
            c.mmap(pid=pid, addr=addr, length=PAGE, prot="rw", fixed=True)
            t1 = clock()
            maps += 1
        else:
            t0 = clock()
            c.munmap(pid=pid, addr=addr, length=PAGE)
            t1 = clock()
            unmaps += 1
        if record:
            lat.append(t1 - t0)
        time.sleep(GAP_S)
    return lat, maps, unmaps


def _sim_phase(m: ProcsimMount, progs: Programs, phase: str, placement: str, cpus: tuple[int, int],
               seconds: float, rng: random.Random, base: int) -> dict:
    c = m.client()
    pid = 100
    # a whole, populated region again
    c.munmap(pid=pid, addr=base, length=REGION)
    c.mmap(pid=pid, addr=base, length=REGION, prot="rw", fixed=True)
    c.touch(pid=pid, addr=base, length=REGION, write=True)
    scanners = None
    if phase == "scanned":
        scanners = Scanners(progs, m.proc_path(str(pid), "maps"), cpus[1] if placement == "split" else None)
    try:
        _sim_ops(c, pid, base, WARMUP_S, rng, record=False)
        gc.collect()
        gc.disable()
        try:
            lat, maps, unmaps = _sim_ops(c, pid, base, seconds, rng, record=True)
        finally:
            gc.enable()
    finally:
        scan = scanners.stop() if scanners else None
    res = latency_stats(lat)
    res.update(maps=maps, unmaps=unmaps, vmas_at_end=len(c.vmas(pid=pid)))
    if scan is not None:
        res.update(_scan_stats(scan))
    return res


def bench_mount(progs: Programs, placement: str, cpus: tuple[int, int], runs: int, seconds: float,
                workdir: str) -> list[dict]:
    scen = os.path.join(workdir, "writer-latency.toml")
    with open(scen, "w") as f:
        f.write(SCENARIO)
    out = []
    for r in range(runs):
        rng = random.Random(r)
        with ProcsimMount(scenario=scen, clock="manual") as m:
            base = m.call("mmap", pid=100, length=REGION, prot="rw")
            own = os.sched_getaffinity(0)
            if placement == "split":
                pin_process(m.pid, {cpus[0]})      # control threads: the writer's syscalls
                os.sched_setaffinity(m.pid, {cpus[1]})  # the FUSE thread (the main one): the readers' work
                os.sched_setaffinity(0, {cpus[0]})  # this thread: the writer
            try:
                run: dict = {}
                for phase in (PHASES if r % 2 == 0 else PHASES[::-1]):
                    run[phase] = _sim_phase(m, progs, phase, placement, cpus, seconds, rng, base)
                    _log_phase("mount", placement, r, phase, run[phase])
            finally:
                os.sched_setaffinity(0, own)
                if placement == "split":
                    pin_process(m.pid, None)
        out.append(run)
    return out


# -- the real kernel ---------------------------------------------------------------------------


def _real_phase(progs: Programs, phase: str, placement: str, cpus: tuple[int, int], seconds: float,
                seed: int) -> dict:
    mcpu = cpus[0] if placement == "split" else None
    p = subprocess.Popen(_taskset(mcpu) + [progs.mapper, str(seconds), str(REGION), str(seed)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    scanners = None
    try:
        line = p.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"mapper did not start: {line!r}")
        maps = f"/proc/{int(line.split()[1])}/maps"
        if phase == "scanned":
            scanners = Scanners(progs, maps, cpus[1] if placement == "split" else None)
        p.stdin.write("go\n")
        p.stdin.flush()
        res = json.loads(p.stdout.readline())
        with open(maps) as f:
            res["vmas_at_end"] = sum(1 for _ in f) - 1  # not the gate line
        if scanners:
            res.update(_scan_stats(scanners.stop()))
            scanners = None
    finally:
        if scanners:
            scanners.stop()
        try:
            p.stdin.close()
        except OSError:
            pass
        stop_pid(p, timeout=10)
    return res


def bench_real(progs: Programs, placement: str, cpus: tuple[int, int], runs: int, seconds: float) -> list[dict]:
    out = []
    for r in range(runs):
        run = {}
        for phase in (PHASES if r % 2 == 0 else PHASES[::-1]):
            run[phase] = _real_phase(progs, phase, placement, cpus, seconds, seed=r + 1)
            _log_phase("real", placement, r, phase, run[phase])
        out.append(run)
    return out


# -- summary -------------------------------------------------------------------------------


def _log_phase(target: str, placement: str, r: int, phase: str, x: dict) -> None:
    scan = ""
    if "passes_per_s" in x:
        scan = (f"  scans/s {'+'.join(f'{v:.0f}' for v in x['passes_per_s'])}"
                f" ({(x['bytes_per_pass'] or 0) / 1024:.0f} KiB/pass)")
    log(f"  writer {target:5s} {placement:8s} run {r + 1} {phase:7s} ops {x['ops']:6d} mean {x['mean_ns'] / 1e3:8.1f}"
        f" p50 {x['p50_ns'] / 1e3:8.1f} p99 {x['p99_ns'] / 1e3:8.1f} max {x['max_ns'] / 1e3:9.1f} us"
        f"  vmas {x['vmas_at_end']}{scan}")


def summarize(runs: list[dict]) -> dict:
    """Medians over runs of each phase's figures, and of the per-run ratios."""
    out: dict = {"runs": runs}
    for phase in PHASES:
        xs = [r[phase] for r in runs]
        out[phase] = {k: median([x[k] for x in xs]) for k in ("ops", "mean_ns", "p50_ns", "p99_ns", "max_ns",
                                                                "vmas_at_end")}
        out[phase]["worst_max_ns"] = max(x["max_ns"] for x in xs)
        if phase == "scanned":
            out[phase]["passes_per_s"] = median([sum(x["passes_per_s"]) / len(x["passes_per_s"])
                                                 for x in xs if x.get("passes_per_s")])
            out[phase]["bytes_per_pass"] = median([x.get("bytes_per_pass") for x in xs])
            out[phase]["scanner_errors"] = sum(x.get("errors", 0) for x in xs)
    out["ratio"] = {k: median([ratio(r["scanned"][k], r["alone"][k]) for r in runs])
                    for k in ("mean_ns", "p50_ns", "p99_ns", "max_ns")}
    return out


def bench_writer(runs: int = 3, seconds: float = 5.0, cpus: tuple[int, int] | None = None,
                 workdir: str | None = None) -> dict:
    avail = sorted(os.sched_getaffinity(0))
    cpus = cpus or (avail[0], avail[-1])
    placements = PLACEMENTS if len(avail) > 1 else PLACEMENTS[:1]
    progs = Programs()
    if progs.note:
        log(f"writer: {progs.note}")
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="procsim-bench-wl-work-")
    res: dict = {"runs": runs, "seconds": seconds, "region_bytes": REGION, "gap_us": GAP_S * 1e6,
                 "cpus": list(cpus), "placements": {}, "scanner": "C" if progs.mapper else "Python",
                 "real_mapper": bool(progs.mapper)}
    try:
        for pl in placements:
            log(f"[writer] {pl}: mount ({runs} runs x 2 phases x {seconds:g} s)")
            entry = {"mount": summarize(bench_mount(progs, pl, cpus, runs, seconds, workdir))}
            if progs.mapper:
                log(f"[writer] {pl}: real kernel")
                entry["real"] = summarize(bench_real(progs, pl, cpus, runs, seconds))
            res["placements"][pl] = entry
    finally:
        progs.cleanup()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def report(r: dict) -> list[str]:
    L = [f"6. writer latency under maps scanners (McKenney's mapper: random 4 KiB mmap(FIXED)/munmap in a "
         f"{r['region_bytes'] >> 20} MiB region, {r['gap_us']:.0f} us apart, {r['seconds']:g} s per phase; "
         f"2 scanners open+read+close maps in a loop; median of {r['runs']} runs, us)"]
    rows = []
    for pl, entry in r["placements"].items():
        for target in ("mount", "real"):
            s = entry.get(target)
            if s is None:
                continue
            for phase in PHASES:
                x = s[phase]
                scan = "-"
                if phase == "scanned" and x.get("passes_per_s") is not None:
                    scan = f"{x['passes_per_s']:.0f} x2 ({(x['bytes_per_pass'] or 0) / 1024:.0f} KiB)"
                rows.append([pl, target, phase, f"{x['ops']:.0f}", fmt(x["mean_ns"] / 1e3), fmt(x["p50_ns"] / 1e3),
                             fmt(x["p99_ns"] / 1e3), fmt(x["max_ns"] / 1e3), fmt(x["worst_max_ns"] / 1e3),
                             f"{x['vmas_at_end']:.0f}", scan])
    L.append(table(["placement", "target", "phase", "ops", "mean", "p50", "p99", "max", "worst max", "VMAs",
                    "scans/s each (maps size)"], rows))
    for pl, entry in r["placements"].items():
        for target in ("mount", "real"):
            s = entry.get(target)
            if s is None:
                continue
            rt = s["ratio"]
            goal = "met" if rt["max_ns"] is not None and rt["max_ns"] < GOAL else "NOT met"
            L.append(f"   {pl:8s} {target:5s} scanned/alone: mean {fmt_ratio(rt['mean_ns'])}  p50 "
                     f"{fmt_ratio(rt['p50_ns'])}  p99 {fmt_ratio(rt['p99_ns'])}  max {fmt_ratio(rt['max_ns'])}"
                     + (f"  (goal max < {GOAL}x: {goal})" if target == "mount" else ""))
    L.append(f"   placements: unpinned = scheduler's choice; split = mapper (writer thread + daemon control "
             f"threads, or the C mapper) on CPU {r['cpus'][0]}, scanners (+ the daemon's FUSE thread) on CPU "
             f"{r['cpus'][1]}; scanners: {r['scanner']}")
    if not r["real_mapper"]:
        L.append("   real kernel: skipped (no gcc)")
    L.append("")
    return L


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per phase (default 5)")
    ap.add_argument("--quick", action="store_true", help="1 run of 2 s per phase")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.seconds = 1, 2.0
    r = bench_writer(a.runs, a.seconds)
    print("\n".join(report(r)))
    print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
