"""procsim benchmarks: the single entry point of `make bench`.

    .venv/bin/python bench/run.py [--rounds N] [--only status,scan,ps,top,memory,mmfiles,procmap,oom,wss,idle,lsof,netstat,node_exporter,writer] [--quick]

Method (../shared/spec/fuse-performance.md): a C client (fbench) runs each
workload for a fixed time per repetition (0.3 s; 0.6 s for the scan), 5
repetitions per invocation, and reports ns per operation. Every server is
started afresh for each round ("server run"); a figure is the median over
rounds of the per-run medians. Targets are interleaved within a round and
their order rotates between rounds. Ratios are always between figures
measured in this same run; nothing here asserts a timing.

Each micro-benchmark is measured in two CPU placements:
  * unpinned: client and server wherever the scheduler puts them (the
    spec's main table);
  * same CPU: client and server pinned to one CPU with sched_setaffinity
    (the spec's CPU-placement table). This removes the cross-CPU wake-up,
    which dominates and varies a lot on small VMs, and so shows the server's
    own cost more precisely.

Results: a table on stdout, and JSON (plus the table as text) in
bench/results/. Environment: PROCSIM_FUSE_FLOOR (the C baseline sources,
default ../shared/bench/fuse-floor relative to the repository).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (PROCSIM, REPO, BuildError, ProcsimMount, fmt, fmt_ratio, log, median,  # noqa: E402
                    pin_process, ratio, read_status_field, sim_pids, table, vm_rss_bytes)
from floor import Floor, FloorServer, PyFloorServer, run_client  # noqa: E402
import lsof as lsof_bench  # noqa: E402
import netstat as netstat_bench  # noqa: E402
import node_exporter_scrape as node_exporter_bench  # noqa: E402
import mmfiles  # noqa: E402
import oom  # noqa: E402
import idle as idle_bench  # noqa: E402
import procmap_query  # noqa: E402
import writer_latency  # noqa: E402
import wss as wss_bench  # noqa: E402
import scenarios  # noqa: E402
import snapshot  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GOAL_VS_C = {"status": 1.2, "scan": 1.3}  # issue 16: mount / C floor
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


# -- environment ----------------------------------------------------------------

def environment(floor: Floor) -> dict:
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return None
    try:
        import importlib.metadata as md
        mfusepy = md.version("mfusepy")
    except Exception:
        mfusepy = None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "mfusepy": mfusepy,
        "libfuse3": out(["pkg-config", "--modversion", "fuse3"]),
        "procps": (out(["ps", "--version"]) or "").splitlines()[0] if out(["ps", "--version"]) else None,
        "fuse_floor": str(floor.src) if floor.src else None,
        "client": "fbench" if floor.fbench else "pyclient (Python fallback)",
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


# -- 1 + 2: status open+read+close and the ps-like scan ---------------------------

def pick_status_pid(m: ProcsimMount) -> tuple[int, str, int]:
    """A representative user process of the machine: the one whose status
    size is the median among processes with an address space."""
    cands = []
    for pid in sim_pids(m.proc_path()):
        p = m.proc_path(str(pid), "status")
        try:
            data = open(p, "rb").read()
        except OSError:
            continue
        if b"\nVmSize:" in data:
            cands.append((len(data), pid, read_status_field(p, "Name") or "?"))
    if not cands:
        raise RuntimeError("no user process in the mounted machine")
    cands.sort()
    size, pid, name = cands[len(cands) // 2]
    return pid, name, size


def server_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far, all threads (from
    the real /proc/PID/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


def bench_micro(floor: Floor, rounds: int, clock: str, do_status: bool, do_scan: bool, cpu: int) -> dict:
    placements = ["unpinned", "same_cpu"] if (os.cpu_count() or 1) > 1 else ["unpinned"]
    # py_floor: a plain mfusepy server (bench/pyfloor.py), what the binding
    # alone costs over the C floor
    targets = ["mount", "c_floor", "py_floor", "real"]
    raw: dict = {w: {pl: {t: [] for t in targets} for pl in placements} for w in ("status", "scan")}
    # the servers' own CPU per operation: what separates them, whatever the
    # scheduler does with wake-ups
    servers = [t for t in targets if t != "real"]
    srv: dict = {w: {pl: {t: [] for t in servers} for pl in placements} for w in ("status", "scan")}
    info: dict = {"status": {}, "scan": {}, "rounds": rounds, "placements": placements, "clock": clock}
    status_pid = None
    for r in range(rounds):
        log(f"[micro] round {r + 1}/{rounds}: mounting the default machine")
        with ProcsimMount(clock=clock) as m:
            if status_pid is None:
                status_pid, name, size = pick_status_pid(m)
                info["status"].update(pid=status_pid, comm=name, mount_bytes=size)
            mount_status = m.proc_path(str(status_pid), "status")
            size = len(open(mount_status, "rb").read())
            binary = floor.server(size)
            cf = FloorServer(binary) if binary else None
            pf = PyFloorServer(size)
            try:
                if cf:
                    cf.__enter__()
                pf.__enter__()
                paths = {
                    "status": {"mount": mount_status, "c_floor": cf and os.path.join(cf.mnt, "status"),
                               "py_floor": os.path.join(pf.mnt, "status"), "real": "/proc/self/status"},
                    "scan": {"mount": m.proc_path(), "c_floor": cf and os.path.join(cf.mnt, "p"),
                             "py_floor": os.path.join(pf.mnt, "p"), "real": "/proc"},
                }
                order = targets[r % len(targets):] + targets[:r % len(targets)]
                spids = {"mount": m.pid, "c_floor": cf.pid if cf else None, "py_floor": pf.pid}
                for pl in placements:
                    ccpu = None
                    if pl == "same_cpu":
                        for s in filter(None, spids.values()):
                            pin_process(s, {cpu})
                        ccpu = cpu
                    try:
                        for work, secs, on in (("status", 0.3, do_status), ("scan", 0.6, do_scan)):
                            if not on:
                                continue
                            for t in order:
                                path = paths[work][t]
                                if path is None:
                                    continue
                                mode = "read" if work == "status" else "scan"
                                spid = spids.get(t)
                                c0 = server_cpu(spid) if spid else None
                                cr = run_client(floor, mode, path, secs, 5, cpu=ccpu)
                                if c0 is not None:
                                    c1 = server_cpu(spid)
                                    ops = sum(secs * 1e9 / ns for ns in cr.ns_per_op)  # files for scan
                                    srv[work][pl][t].append(((c1[0] - c0[0]) * 1e6 / ops,
                                                             (c1[1] - c0[1]) * 1e6 / ops))
                                per = cr.median_us
                                if work == "scan" and floor.fbench is None:
                                    pass  # pyclient already reports per file
                                raw[work][pl][t].append(per)
                                meta = info[work].setdefault(t, {})
                                meta["path"] = path.replace(m.mnt, "MNT").replace(pf.mnt, "PYFLOOR")
                                if cf:
                                    meta["path"] = meta["path"].replace(cf.mnt, "CFLOOR")
                                if work == "status":
                                    meta["bytes"] = cr.bytes_per_op
                                else:
                                    meta["files_per_scan"] = cr.files_per_scan
                                    if cr.bytes_per_op is not None and cr.files_per_scan:
                                        meta["bytes_per_file"] = round(cr.bytes_per_op / cr.files_per_scan)
                                log(f"  {work:6s} {pl:8s} {t:8s} {per:8.1f} us  reps={cr.ns_per_op}")
                    finally:
                        if pl == "same_cpu":
                            for s in filter(None, spids.values()):
                                pin_process(s, None)
            finally:
                pf.__exit__(None, None, None)
                if cf:
                    cf.__exit__(None, None, None)
            info["mount_startup_s"] = m.startup_s
    out = {}
    for work in ("status", "scan"):
        if not (do_status if work == "status" else do_scan):
            continue
        res = {}
        for pl in placements:
            med = {t: median(raw[work][pl][t]) for t in targets}
            cpu_med = {t: {"user": median([u for u, _ in v]), "sys": median([y for _, y in v])}
                       for t, v in srv[work][pl].items() if v}
            res[pl] = {"us": med, "per_round_us": raw[work][pl], "server_cpu_us": cpu_med,
                       "mount_over_c": ratio(med["mount"], med["c_floor"]),
                       "mount_over_py": ratio(med["mount"], med["py_floor"]),
                       "py_over_c": ratio(med["py_floor"], med["c_floor"]),
                       "mount_over_real": ratio(med["mount"], med["real"]),
                       "c_over_real": ratio(med["c_floor"], med["real"])}
        out[work] = {"placements": res, "targets": info[work]}
    out["rounds"], out["clock"] = rounds, clock
    out["status_pid"] = status_pid
    out["same_cpu"] = cpu
    return out


# -- 3: ps aux on 1000 processes ------------------------------------------------------

def _last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


TOOLS = {"ps": ["ps", "aux"], "top": ["top", "-b", "-n", "1"]}


def _pstime(cmd: list[str]) -> dict:
    """Run a pstime.py command line; its medians, or the error."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    j = _last_json(p.stdout)
    if p.returncode != 0 or j is None:
        return {"error": f"exit {p.returncode}: {p.stderr[-1500:]}{p.stdout[-500:]}"}
    return {"seconds": j["seconds"], "median_s": median(j["seconds"]), "ps_lines": j["first"]["lines"],
            "ps_returncode": j["first"]["returncode"], "ps_stderr": j["first"]["stderr"], "wall_s": wall}


def _snap_floor(scen: str, workdir: str) -> tuple[str | None, str | None, dict]:
    """snapfs and a snapshot of the machine of `scen` (bench/snapshot.py):
    (binary, snapshot, info), or Nones and the reason in info."""
    try:
        binary = snapshot.build(workdir)
    except BuildError as e:
        return None, None, {"error": f"snapfs not built: {e}"}
    snap = os.path.join(workdir, os.path.basename(scen) + ".snap")
    with ProcsimMount(scenario=scen, workdir=workdir) as m:
        info = snapshot.capture(m.proc_path(), snap)
    log(f"  snapshot: {info['records']} entries, {info['bytes'] >> 20} MiB, {info['seconds']:.1f} s")
    return binary, snap, info


def bench_ps(nprocs: int, reps: int, cpu: int, workdir: str, tools: tuple[str, ...] = ("ps",)) -> dict:
    """`ps aux` and/or `top -b -n 1` (TOOLS) over a machine of `nprocs`
    extra sleeping processes, through `procsim run`, against the same tool
    with as many real `sleep 600` children of this process (started once,
    killed by pid at the end), and against the same tool over snapfs
    serving a snapshot of the same machine (the C floor of FUSE for that
    tool: bench/snapshot.py), in both placements."""
    placements = ["unpinned", "same_cpu"] if (os.cpu_count() or 1) > 1 else ["unpinned"]
    scen = os.path.join(workdir, f"ps{nprocs}.toml")
    desc = scenarios.write_sleepers(scen, nprocs)
    res: dict = {"nprocs": nprocs, "reps": reps, "scenario": desc, "tools": {}}
    log("[ps] snapshot of the machine for snapfs (the C floor)")
    snap_bin, snap, res["snapshot"] = _snap_floor(scen, workdir)
    sleepers: list[subprocess.Popen] = []
    try:
        log(f"[ps] starting {nprocs} real `sleep 600` processes")
        t0 = time.perf_counter()
        for _ in range(nprocs):
            sleepers.append(subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        res["real_spawn_s"] = time.perf_counter() - t0
        with contextlib.ExitStack() as stack:
            srv = stack.enter_context(snapshot.SnapServer(snap_bin, snap)) if snap_bin else None
            for tool in tools:
                argv = TOOLS[tool]
                pstime = [sys.executable, str(HERE / "pstime.py"), "-n", str(reps), "-w", "1", "--", *argv]
                r: dict = {"cmd": " ".join(argv), "sim": {}, "real": {}, "snap": {}, "ratio": {},
                           "sim_over_snap": {}, "snap_over_real": {}}
                res["tools"][tool] = r
                for pl in placements:
                    pin = ["taskset", "-c", str(cpu)] if pl == "same_cpu" else []
                    # the simulated machine, through `procsim run` (the daemon, too, is pinned)
                    log(f"[ps] {pl}: procsim run -- {r['cmd']} ({reps} timed runs)")
                    r["sim"][pl] = _pstime(pin + [PROCSIM, "run", "--scenario", scen, "--"] + pstime)
                    log(f"[ps] {pl}: real {r['cmd']}")
                    r["real"][pl] = _pstime(pin + pstime)
                    if srv is not None:
                        log(f"[ps] {pl}: {r['cmd']} over snapfs")
                        os.sched_setaffinity(srv.pid, {cpu} if pin else range(os.cpu_count() or 1))
                        r["snap"][pl] = _pstime(pin + srv.over_proc(pstime))
                    for k in ("sim", "real", "snap"):
                        v = r[k].get(pl)
                        if v is not None:
                            log(f"  {k:4s} " + (f"median {v['median_s'] * 1000:.1f} ms, {v['ps_lines']} lines"
                                                if "error" not in v else f"failed: {v['error']}"))
                    med = {k: r[k].get(pl, {}).get("median_s") for k in ("sim", "real", "snap")}
                    r["ratio"][pl] = ratio(med["sim"], med["real"])
                    r["sim_over_snap"][pl] = ratio(med["sim"], med["snap"])
                    r["snap_over_real"][pl] = ratio(med["snap"], med["real"])
    finally:
        for s in sleepers:  # exactly the ones we started, by pid
            if s.poll() is None:
                try:
                    os.kill(s.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for s in sleepers:
            try:
                s.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        log(f"[ps] killed the {len(sleepers)} sleepers we started")
    return res


# -- 4: daemon memory -----------------------------------------------------------------

def bench_memory(clock: str, workdir: str, touch_pages: int, chunk: int) -> dict:
    res: dict = {}
    log("[memory] default machine")
    with ProcsimMount(clock=clock) as m:
        res["default_after_mount_bytes"] = vm_rss_bytes(m.pid)
        # touch every pid's status once, as a reader would
        for pid in sim_pids(m.proc_path()):
            for f in ("stat", "status", "cmdline", "statm"):
                try:
                    open(m.proc_path(str(pid), f), "rb").read()
                except OSError:
                    pass
        res["default_after_reads_bytes"] = vm_rss_bytes(m.pid)
        res["default_nprocs"] = len(sim_pids(m.proc_path()))
    mem = max(80 * GiB, touch_pages * 4096 + 16 * GiB)
    mem = -(-mem // GiB) * GiB
    scen = os.path.join(workdir, "bigmem.toml")
    res["machine"] = scenarios.write_big_memory(scen, mem)
    log(f"[memory] {mem // GiB} GiB machine: touching {touch_pages} pages in {chunk // MiB} MiB chunks")
    with ProcsimMount(scenario=scen, clock=clock) as m:
        res["machine_mem_bytes"] = mem
        parent = scenarios.parent_pid(m)
        rss0 = vm_rss_bytes(m.pid)
        pid = m.call("spawn", argv=["/usr/bin/memhog", "--touch", f"{touch_pages * 4096 // GiB}G"], parent=parent)
        length = touch_pages * 4096
        addr = m.call("mmap", pid=pid, length=length, prot="rw")
        rss_mapped = vm_rss_bytes(m.pid)
        t0 = time.perf_counter()
        off = 0
        while off < length:
            n = min(chunk, length - off)
            m.call("touch", pid=pid, addr=addr + off, length=n, write=True)
            off += n
        touch_s = time.perf_counter() - t0
        rss1 = vm_rss_bytes(m.pid)
        vmrss = read_status_field(m.proc_path(str(pid), "status"), "VmRSS")
        rss1b = vm_rss_bytes(m.pid)
        res["touch"] = {
            "pages": touch_pages, "bytes": length, "chunk_bytes": chunk, "seconds": touch_s,
            "daemon_rss_before": rss0, "daemon_rss_after_spawn_mmap": rss_mapped, "daemon_rss_after": rss1,
            "daemon_rss_after_status_read": rss1b,
            "delta_bytes": rss1 - rss0, "bytes_per_page": (rss1 - rss0) / touch_pages,
            "sim_vmrss": vmrss, "target_bytes": 2 * GiB, "within_target": rss1 - rss0 <= 2 * GiB,
        }
        log(f"  touched in {touch_s:.1f} s; daemon RSS {rss0 / MiB:.0f} -> {rss1 / MiB:.0f} MiB; "
            f"simulated VmRSS {vmrss}")
        # 1 TiB mapped, untouched
        r0 = vm_rss_bytes(m.pid)
        pid2 = m.call("spawn", argv=["/usr/bin/bigmap"], parent=parent)
        r1 = vm_rss_bytes(m.pid)
        addr2 = m.call("mmap", pid=pid2, length=TiB, prot="rw", noreserve=True)
        r2 = vm_rss_bytes(m.pid)
        vmsize = read_status_field(m.proc_path(str(pid2), "status"), "VmSize")
        try:
            maps_lines = len(open(m.proc_path(str(pid2), "maps"), "rb").read().splitlines())
        except OSError:
            maps_lines = None
        r3 = vm_rss_bytes(m.pid)
        res["tib"] = {"bytes": TiB, "addr": addr2, "daemon_rss_before_spawn": r0, "daemon_rss_after_spawn": r1,
                      "daemon_rss_after_mmap": r2, "daemon_rss_after_reads": r3,
                      "delta_mmap_bytes": r2 - r1, "delta_incl_reads_bytes": r3 - r1,
                      "sim_vmsize": vmsize, "maps_lines": maps_lines}
        log(f"  1 TiB mapped: daemon RSS delta {(r2 - r1) / KiB:.0f} KiB (after reads {(r3 - r1) / KiB:.0f} KiB); "
            f"VmSize {vmsize}")
    return res


# -- report -------------------------------------------------------------------------------

def report(env: dict, results: dict, floor: Floor) -> str:
    L: list[str] = []
    L.append("procsim benchmarks")
    L.append(f"  {env['date']}  commit {env['git_commit']}  kernel {env['kernel']}  {env['cpus']} CPUs  "
             f"python {env['python']}  mfusepy {env['mfusepy']}  libfuse {env['libfuse3']}  {env['procps']}")
    L.append(f"  client: {env['client']};  C baseline: "
             + (f"{env['fuse_floor']} (cfs_ll: low-level fuse3, -s, T1, direct_io)" if floor.available
                else f"SKIPPED: {floor.reason}"))
    L.append("  MNT = the procsim mount, CFLOOR = the C floor's mount, PYFLOOR = bench/pyfloor.py's (a plain"
             " mfusepy server with the daemon's settings serving the C floor's files: the binding's own cost)."
             " 'unpinned': client and server placed by the scheduler (the spec's method); 'same cpu': both"
             " pinned to one CPU, which removes the cross-CPU wake-up and shows the servers' own cost."
             " Ratios are within this run only.")
    L.append("")
    names = {"mount": "procsim mount", "c_floor": "C floor (cfs_ll)", "py_floor": "mfusepy floor",
             "real": "real /proc"}
    for work, title in (("status", "1. open+read+close of PID/status (us per open+read+close)"),
                        ("scan", "2. ps-like scan: readdir, stat(dir), stat+status+cmdline per pid (us per file)")):
        if work not in results.get("micro", {}):
            continue
        mi = results["micro"]
        r = mi[work]
        L.append(title)
        L.append(f"   median over {mi['rounds']} server runs of per-run medians (5 reps x "
                 f"{'0.3' if work == 'status' else '0.6'} s); same-CPU pinning on CPU {mi['same_cpu']}; "
                 f"mount clock {mi['clock']}")
        rows = []
        for t in ("mount", "c_floor", "py_floor", "real"):
            meta = r["targets"].get(t, {})
            if work == "status":
                size = meta.get("bytes")
                desc = meta.get("path", "-")
            else:
                size = meta.get("bytes_per_file")
                desc = f"{meta.get('path', '-')} ({meta.get('files_per_scan', '-')} files)"
            row = [names[t], desc, "-" if size is None else str(size)]
            for pl in r["placements"]:
                row.append(fmt(r["placements"][pl]["us"][t]))
            rows.append(row)
        hdr = ["target", "path", "bytes" if work == "status" else "B/file"] + \
              [f"{pl.replace('_', ' ')} us" for pl in r["placements"]]
        L.append(table(hdr, rows))
        for pl, v in r["placements"].items():
            goal = ""
            if v["mount_over_c"] is not None:
                goal = (f"  (goal <= {GOAL_VS_C[work]}x: "
                        + ("met" if v["mount_over_c"] <= GOAL_VS_C[work] else "NOT met") + ")")
            L.append(f"   {pl.replace('_', ' '):9s} mount/C {fmt_ratio(v['mount_over_c'])}{goal}   "
                     f"mount/real {fmt_ratio(v['mount_over_real'])}   C/real {fmt_ratio(v['c_over_real'])}   "
                     f"mfusepy floor/C {fmt_ratio(v.get('py_over_c'))}   mount/mfusepy floor "
                     f"{fmt_ratio(v.get('mount_over_py'))}")
        for pl, v in r["placements"].items():
            c = v.get("server_cpu_us") or {}
            if c:
                L.append(f"   {pl.replace('_', ' '):9s} server CPU per {'op' if work == 'status' else 'file'}"
                         " (user+sys us): " + "   ".join(
                             f"{names[t]} {fmt(c[t]['user'])}+{fmt(c[t]['sys'])}" for t in c))
        L.append("")
    for p in results.get("ps", []):
        for tool, r in p["tools"].items():
            L.append(f"3. {r['cmd']} over {p['nprocs']} sleeping processes (ms per run, median of {p['reps']} "
                     f"runs after 1 warm-up)")
            rows = []
            for pl in r["sim"]:
                s, rl, sn = r["sim"][pl], r["real"].get(pl, {}), r.get("snap", {}).get(pl, {})
                rows.append([pl.replace("_", " "),
                             fmt(s.get("median_s") and s["median_s"] * 1000), str(s.get("ps_lines", "-")),
                             fmt(rl.get("median_s") and rl["median_s"] * 1000), str(rl.get("ps_lines", "-")),
                             fmt(sn.get("median_s") and sn["median_s"] * 1000),
                             fmt_ratio(r["ratio"].get(pl)), fmt_ratio(r.get("sim_over_snap", {}).get(pl)),
                             fmt_ratio(r.get("snap_over_real", {}).get(pl))])
            L.append(table(["placement", "sim ms", "sim lines", "real ms", "real lines", "snapfs ms", "sim/real",
                            "sim/snapfs", "snapfs/real"], rows))
            L.append(f"   sim: `procsim run --scenario <{p['scenario']}> -- {r['cmd']}`, only the tool timed;"
                     f" real: {r['cmd']} with {p['nprocs']} real `sleep 600` children; snapfs: the tool over"
                     f" a C FUSE server serving a snapshot of the simulated machine (bench/snapshot.py:"
                     f" FUSE's own cost for this tool; sim/snapfs is procsim's share)")
            if "error" in p.get("snapshot", {}):
                L.append(f"   snapfs: {p['snapshot']['error']}")
            for pl in r["sim"]:
                if "error" in r["sim"][pl]:
                    L.append(f"   sim {pl} FAILED: {r['sim'][pl]['error'][:300]}")
                elif r["sim"][pl].get("ps_stderr"):
                    L.append(f"   sim {pl} stderr: {r['sim'][pl]['ps_stderr'][:300]!r}")
            L.append("")
    if "memory" in results:
        mm = results["memory"]
        t, tb = mm["touch"], mm["tib"]
        L.append("4. daemon memory (VmRSS of the daemon process, real /proc)")
        rows = [
            ["default machine, after mount", f"{mm['default_after_mount_bytes'] / MiB:.1f} MiB", ""],
            [f"default machine, after reading all {mm['default_nprocs']} pids",
             f"{mm['default_after_reads_bytes'] / MiB:.1f} MiB", ""],
            [f"{mm['machine_mem_bytes'] // GiB} GiB machine, before", f"{t['daemon_rss_before'] / MiB:.1f} MiB", ""],
            [f"after touching {t['pages'] / MiB:.0f} Mi pages ({t['bytes'] // GiB} GiB)",
             f"{t['daemon_rss_after'] / MiB:.1f} MiB",
             f"+{t['delta_bytes'] / MiB:.1f} MiB = {t['bytes_per_page']:.2f} B/page"],
            ["1 TiB mapped, untouched (after mmap)", f"{tb['daemon_rss_after_mmap'] / MiB:.1f} MiB",
             f"+{tb['delta_mmap_bytes'] / KiB:.0f} KiB"],
            ["1 TiB mapped, after reading its status+maps", f"{tb['daemon_rss_after_reads'] / MiB:.1f} MiB",
             f"+{tb['delta_incl_reads_bytes'] / KiB:.0f} KiB"],
        ]
        L.append(table(["state", "daemon RSS", "delta"], rows))
        L.append(f"   16 Mi pages target: within 2 GiB -> "
                 f"{'met' if t['within_target'] else 'NOT met'} ({t['delta_bytes'] / GiB:.3f} GiB); "
                 f"touch took {t['seconds']:.1f} s in {t['bytes'] // t['chunk_bytes']} control calls; "
                 f"simulated VmRSS {t['sim_vmrss']}; 1 TiB process VmSize {tb['sim_vmsize']}")
        L.append("")
    for r in results.get("mmfiles", []):
        L.extend(mmfiles.report(r))
    for key, section in (("lsof", lsof_bench.report), ("netstat", netstat_bench.report),
                         ("node_exporter", node_exporter_bench.report), ("procmap", procmap_query.report),
                         ("oom", oom.report),
                         ("writer", writer_latency.report), ("idle", idle_bench.report), ("wss", wss_bench.report)):
        if key in results:
            L.extend(section(results[key]))
    for k, v in results.get("errors", {}).items():
        L.append(f"{k}: FAILED: {v}")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="server runs per micro-benchmark (default 3)")
    ap.add_argument("--only", default="status,scan,ps,top,memory,mmfiles,procmap,oom,wss,idle,lsof,netstat,node_exporter",
                    help="comma-separated subset; `writer` (about 2 min) only when asked for; `idle` "
                         "touches 1 TiB (about 3.5 min, 8 GiB of RAM; 16 GiB with --quick)")
    ap.add_argument("--idle-gib", type=int, default=1024, help="GiB the idle benchmark touches (default 1 TiB)")
    ap.add_argument("--clock", default="manual", choices=("manual", "wall"), help="mount clock (default manual)")
    ap.add_argument("--ps-procs", type=lambda v: [int(x) for x in v.split(",")], default=[1000],
                    help="process counts for ps/top, comma-separated (default 1000; e.g. 1000,10000)")
    ap.add_argument("--ps-reps", type=int, default=5)
    ap.add_argument("--touch-pages", type=int, default=16 * MiB, help="pages to touch (default 16 Mi)")
    ap.add_argument("--chunk", type=int, default=1 * GiB, help="bytes per touch call (default 1 GiB)")
    ap.add_argument("--vmas", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 10000],
                    help="VMAs of the smaps benchmark's process, comma-separated (default 1000,10000: the"
                         " issue 16 target is at 1,000, issue 3's at 10,000)")
    ap.add_argument("--mm-touch", type=int, default=4 * GiB, help="bytes it writes (default 4 GiB)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU for same-CPU runs (default: last CPU)")
    ap.add_argument("--quick", action="store_true", help="1 round, 100 procs, 1 Mi pages: a smoke test")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.ps_procs, a.ps_reps, a.touch_pages = 1, [100], 2, 1 * MiB
        a.vmas, a.mm_touch = [1000], 256 * MiB
    only = set(a.only.split(","))
    cpu = a.cpu if a.cpu is not None else max(os.sched_getaffinity(0))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    RESULTS.mkdir(exist_ok=True)
    floor = Floor()
    if not floor.available:
        log(f"note: {floor.reason}")
    env = environment(floor)
    results: dict = {"env": env, "errors": {}}
    t_start = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="procsim-bench-work-")
    try:
        # (result key, wanted, the measurement): one failing measurement is
        # reported and the others still run
        runs = (
            ("micro", bool(only & {"status", "scan"}),
             lambda: bench_micro(floor, a.rounds, a.clock, "status" in only, "scan" in only, cpu)),
            ("ps", bool(only & set(TOOLS)),
             lambda: [bench_ps(n, a.ps_reps, cpu, workdir, tuple(t for t in TOOLS if t in only))
                      for n in a.ps_procs]),
            ("memory", "memory" in only, lambda: bench_memory(a.clock, workdir, a.touch_pages, a.chunk)),
            ("mmfiles", "mmfiles" in only,
             lambda: [mmfiles.bench_mmfiles(workdir, n, a.mm_touch, 5, a.clock) for n in a.vmas]),
            ("procmap", "procmap" in only, lambda: procmap_query.bench_procmap(floor, a.rounds, cpu)),
            ("oom", "oom" in only, lambda: oom.bench_oom(a.rounds, nprocs=1000 if a.quick else 10_000)),
            ("idle", "idle" in only,
             lambda: idle_bench.bench_idle((16 if a.quick else a.idle_gib) * GiB, workdir)),
            ("writer", "writer" in only,
             lambda: writer_latency.bench_writer(a.rounds, 2.0 if a.quick else 5.0, workdir=workdir)),
            ("wss", "wss" in only, lambda: wss_bench.bench_wss(a.rounds)),
            ("lsof", "lsof" in only, lambda: lsof_bench.bench_lsof(workdir, a.rounds)),
            ("netstat", "netstat" in only, lambda: netstat_bench.bench_netstat(workdir, a.rounds)),
            ("node_exporter", "node_exporter" in only,
             lambda: node_exporter_bench.bench_node_exporter(workdir, 5 if a.quick else 20)),
        )
        for name, wanted, measure in runs:
            if not wanted:
                continue
            try:
                results[name] = measure()
            except Interrupted:
                raise
            except Exception as e:  # the control channel's own errors included
                results["errors"][name] = f"{type(e).__name__}: {e}"
                log(f"{name}: {type(e).__name__}: {e}")
    except (KeyboardInterrupt, Interrupted) as e:
        results["errors"]["interrupted"] = str(e) or "KeyboardInterrupt"
    finally:
        floor.cleanup()
        for f in Path(workdir).glob("*"):
            f.unlink()
        os.rmdir(workdir)
    results["total_seconds"] = time.perf_counter() - t_start
    text = report(env, results, floor)
    text += f"\ntotal {results['total_seconds']:.0f} s"
    print(text)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}", "latest"):
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        (RESULTS / f"{name}.txt").write_text(text + "\n")
    print(f"results: {RESULTS / f'bench-{stamp}.json'}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
