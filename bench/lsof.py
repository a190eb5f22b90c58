"""lsof over a machine of 1,000 processes holding 100,000 open fds: through
the mount (MNT/proc bound over /proc in a private mount namespace) vs on
this real host holding as many (`--only lsof`).

The simulated machine: one process opens 100 fds (40 sockets, 30 regular
files, 15 pipes) and 999 fork copies of it (a pre-forking server), each
holding the same 100 open files. The real host: the same shape, made of
`sleep` processes: the bench opens the 100 fds (inheritable), then forks
and execs 1,000 sleeps that keep them. Both lsof runs are `lsof -w -n -P`
(the whole machine: its other processes too), interleaved, `reps` times
each; the ratio is of the medians measured in this same run. Interleaved
with them, lsof over snapfs serving a snapshot of the mount taken after
one untimed run (bench/snapshot.py): FUSE's own cost for lsof here.

Also: the daemon's memory per fd, the VmRSS difference between the
machine with its fds and the same 1,000 processes without them, divided by
the fds: at boot (the model: fd-table slots, the open files the forks
share) and after that untimed lsof run (with the render caches lsof fills)."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import time

import snapshot
from common import BuildError, ProcsimMount, log, median, ratio, vm_rss_bytes

NPROCS, FDS_PER_PROC = 1000, 100
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
LSOF = ["lsof", "-w", "-n", "-P"]


def _scenario(path: str, files: bool) -> None:
    fds = ('files = [{ kind = "socket", family = "inet", count = 40, cloexec = false },\n'
           '         { path = "/var/lib/app/data.db", flags = "O_RDWR", count = 30 },\n'
           '         { kind = "pipe", count = 15, cloexec = false }]\n') if files else ""
    with open(path, "w") as f:
        f.write('description = "bench: lsof over 1,000 processes"\n[machine]\nnr_cpus = 2\nmem = "16G"\n\n'
                '[[process]]\nname = "app"\npid = 1000\nargv = ["/usr/sbin/app"]\nstdio = "/dev/null"\n'
                f'{fds}\n'
                f'[[process]]\nname = "worker"\nparent = "app"\nfork = true\ncount = {NPROCS - 1}\n'
                'argv = ["app: worker"]\n')


def _time(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=ENV, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{argv}: exit {r.returncode}: {r.stderr[-500:]}")
    return dt, len(r.stdout.splitlines())


class RealFds:
    """1,000 real sleeps, each holding the same 100 open fds."""

    def __enter__(self) -> "RealFds":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4 * FDS_PER_PROC:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        import socket
        self.keep: list = []
        fds = []
        for _ in range(40):
            s = socket.socket()
            s.set_inheritable(True)
            self.keep.append(s)
            fds.append(s.fileno())
        self.path = f"/tmp/procsim-bench-lsof-{os.getpid()}.db"
        for _ in range(30):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.set_inheritable(fd, True)
            fds.append(fd)
        for _ in range(15):
            for fd in os.pipe():
                os.set_inheritable(fd, True)
                fds.append(fd)
        self.fds = fds
        self.procs = [subprocess.Popen(["sleep", "3600"], pass_fds=fds, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for _ in range(NPROCS)]
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        for s in self.keep:
            s.close()
        for fd in self.fds[40:]:
            os.close(fd)
        os.unlink(self.path)


def model_bytes(scenario_path: str) -> dict:
    """The model's own memory for the fds (in this process, no FUSE): the
    fd tables (slots, close-on-exec bytes, the files_struct) and the open
    file descriptions, per fd."""
    import sys
    from procsim import scenario
    k = scenario.load(scenario_path)
    tables = {id(t.files): t.files for t in k.tasks.values() if t.files is not None}
    files = {id(f): f for ft in tables.values() for _, f in ft.items()}
    nfds = sum(ft.nr_open_fds for ft in tables.values())
    slots = sum(sys.getsizeof(ft.fd) + sys.getsizeof(ft.close_on_exec) + sys.getsizeof(ft) for ft in tables.values())
    descr = sum(sys.getsizeof(f) + (sys.getsizeof(f.private) if f.private is not None else 0) for f in files.values())
    return {"nfds": nfds, "nfiles": len(files), "table_bytes": slots, "file_bytes": descr,
            "bytes_per_fd": (slots + descr) / max(1, nfds), "bytes_per_file": descr / max(1, len(files))}


def bench_lsof(workdir: str, reps: int = 3) -> dict:
    res: dict = {"nprocs": NPROCS, "fds": NPROCS * FDS_PER_PROC, "reps": reps}
    bare = os.path.join(workdir, "lsof-bare.toml")
    full = os.path.join(workdir, "lsof.toml")
    _scenario(bare, False)
    _scenario(full, True)
    res["model"] = model_bytes(full)
    res["fds"] = res["model"]["nfds"]  # the 100 and stdio: 103 a process, as the real sleeps hold
    log(f"[lsof] simulated: {NPROCS} processes without fds (the memory baseline)")
    with ProcsimMount(scenario=bare, workdir=workdir) as m:
        res["bare_rss_boot"] = vm_rss_bytes(m.pid)
        _time(["sh", "-c", 'unshare --mount --propagation private -- sh -c '
               '"mount --bind $0/proc /proc && exec lsof -w -n -P" "$0" >/dev/null', m.mnt])
        res["bare_rss"] = vm_rss_bytes(m.pid)
    log(f"[lsof] simulated: {NPROCS} processes, {NPROCS * FDS_PER_PROC} fds; real: as many sleeps")
    with ProcsimMount(scenario=full, workdir=workdir) as m, RealFds(), contextlib.ExitStack() as stack:
        res["sim_startup_s"] = m.startup_s
        res["full_rss_boot"] = vm_rss_bytes(m.pid)
        ns = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
              'mount --bind "$0/proc" /proc || exit 125; exec "$@"', m.mnt, *LSOF]
        # one untimed run fills the caches lsof fills (the memory figure is
        # taken after it, before the snapshot's walk reads more)
        _time(ns)
        res["full_rss"] = vm_rss_bytes(m.pid)
        srv = _snap_server(stack, m, workdir, res)
        sim, real, snap = [], [], []
        for _ in range(reps):
            t, res["sim_lines"] = _time(ns)
            sim.append(t)
            if srv is not None:
                t, res["snap_lines"] = _time(srv.over_proc(LSOF))
                snap.append(t)
            t, res["real_lines"] = _time(LSOF)
            real.append(t)
        res["sim_s"], res["real_s"], res["snap_s"] = sim, real, snap
        res["sim_median_s"], res["real_median_s"] = median(sim), median(real)
        res["snap_median_s"] = median(snap) if snap else None
        res["ratio"] = ratio(res["sim_median_s"], res["real_median_s"])
        res["sim_over_snap"] = ratio(res["sim_median_s"], res["snap_median_s"])
        res["snap_over_real"] = ratio(res["snap_median_s"], res["real_median_s"])
    res["bytes_per_fd"] = (res["full_rss"] - res["bare_rss"]) / res["fds"]
    res["bytes_per_fd_boot"] = (res["full_rss_boot"] - res["bare_rss_boot"]) / res["fds"]
    log(f"  lsof: sim {res['sim_median_s']:.2f} s ({res['sim_lines']} lines), real {res['real_median_s']:.2f} s "
        f"({res['real_lines']} lines): {res['ratio']:.2f}x; daemon {res['bytes_per_fd_boot']:.0f} B per fd "
        f"({res['bytes_per_fd']:.0f} with lsof's reads cached)")
    return res


def _snap_server(stack: contextlib.ExitStack, m: ProcsimMount, workdir: str, res: dict) -> "snapshot.SnapServer | None":
    """snapfs serving a snapshot of the mount (the C floor for lsof), or None."""
    try:
        binary = snapshot.build(workdir)
    except BuildError as e:
        res["snapshot"] = {"error": f"snapfs not built: {e}"}
        return None
    path = os.path.join(workdir, "lsof.snap")
    res["snapshot"] = snapshot.capture(m.proc_path(), path)
    log(f"  snapshot: {res['snapshot']['records']} entries in {res['snapshot']['seconds']:.1f} s")
    return stack.enter_context(snapshot.SnapServer(binary, path))


def report(r: dict) -> list[str]:
    from common import fmt, fmt_ratio, table
    snap = r.get("snap_median_s")
    rows = [[f"lsof -w -n -P, {r['nprocs']} processes, {r['fds']} fds",
             f"{r['sim_lines']} / {r.get('snap_lines', '-')} / {r['real_lines']}",
             fmt(r["sim_median_s"] * 1000), fmt(snap and snap * 1000), fmt(r["real_median_s"] * 1000),
             fmt_ratio(r["ratio"]), fmt_ratio(r.get("sim_over_snap")), fmt_ratio(r.get("snap_over_real"))]]
    return [f"lsof: {r['nprocs']} processes holding {r['fds']} open fds, through the mount vs this host "
            f"(medians of {r['reps']}); snapfs: lsof over a C FUSE server serving a snapshot of the mount "
            f"(bench/snapshot.py), FUSE's own cost",
            table(["", "lines sim / snapfs / real", "sim ms", "snapfs ms", "real ms", "sim/real", "sim/snapfs",
                   "snapfs/real"], rows),
            *([f"   snapfs: {r['snapshot']['error']}"] if "error" in r.get("snapshot", {}) else []),
            f"   daemon memory: {r['full_rss'] / (1 << 20):.1f} MiB with the fds, {r['bare_rss'] / (1 << 20):.1f} MiB "
            f"without, after an lsof run: {r['bytes_per_fd']:.0f} B per fd (the render caches of this "
            f"generation included, and libfuse's node per looked-up name); at boot {r['bytes_per_fd_boot']:.0f} B "
            f"per fd (within the noise)",
            f"   the model itself: {r['model']['bytes_per_fd']:.1f} B per fd (fd tables "
            f"{r['model']['table_bytes'] / (1 << 20):.2f} MiB; {r['model']['nfiles']} open files shared by the forks, "
            f"{r['model']['bytes_per_file']:.0f} B each)", ""]
