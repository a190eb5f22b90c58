"""/proc/net/tcp of a machine with 10,000 TCP sockets (a server accepting
5,000 loopback connections: listener, 5,000 client ends, 5,000 accepted
ends), `--only netstat`: the model's render (in this process, no FUSE),
`cat` and `netstat -tan` through the mount, and `netstat -tan` on this host
holding as many real sockets (when RLIMIT_NOFILE allows), interleaved,
`reps` times each; ratios of medians of this same run."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time

from common import ProcsimMount, log, median, ratio

NCONN = 5000
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def _scenario(path: str) -> None:
    with open(path, "w") as f:
        f.write('description = "bench: 10,000 sockets"\n[machine]\nnr_cpus = 2\nmem = "16G"\n\n'
                '[[process]]\nname = "db"\nargv = ["/usr/sbin/db"]\nstdio = "/dev/null"\n'
                'limits = { nofile = 65536 }\n'
                'files = [{ kind = "socket", listen = "*:5432", backlog = 4096, accept = true }]\n\n'
                '[[process]]\nname = "app"\nargv = ["/usr/bin/app"]\nstdio = "/dev/null"\n'
                'limits = { nofile = 65536 }\n'
                f'files = [{{ kind = "socket", connect = "127.0.0.1:5432", count = {NCONN} }}]\n')


def _time(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, timeout=600, env=ENV, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv}: exit {r.returncode}: {r.stderr[-500:]!r}")
    return dt, r.stdout.count(b"\n")


def model_render(path: str, reps: int) -> dict:
    from procsim import scenario
    from procsim.procfs import net
    from procsim.procfs.context import Caller, Ctx
    t0 = time.perf_counter()
    k = scenario.load(path)
    build = time.perf_counter() - t0
    ctx = Ctx(k, Caller(1, 0, 0), k.task(1))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        body = net.tcp(ctx)
        times.append(time.perf_counter() - t0)
    return {"build_s": build, "render_s": median(times), "lines": body.count(b"\n"), "bytes": len(body)}


class RealSockets:
    """NCONN real loopback connections held by this process (None if the fd limit forbids)."""

    def __enter__(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = 2 * NCONN + 100
        self.ok = hard >= need
        self.keep: list[socket.socket] = []
        if not self.ok:
            return self
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4096)
        self.keep.append(srv)
        for _ in range(NCONN):
            c = socket.create_connection(srv.getsockname())
            a, _ = srv.accept()
            self.keep += [c, a]
        return self

    def __exit__(self, *exc) -> None:
        for s in self.keep:
            s.close()


def bench_netstat(workdir: str, reps: int = 3) -> dict:
    path = os.path.join(workdir, "netstat.toml")
    _scenario(path)
    res: dict = {"sockets": 2 * NCONN + 1, "reps": reps, "model": model_render(path, reps)}
    log(f"[netstat] {res['sockets']} sockets: model render {res['model']['render_s'] * 1000:.1f} ms")
    with ProcsimMount(scenario=path, workdir=workdir) as m, RealSockets() as real:
        ns = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
              'mount --bind "$0/proc" /proc || exit 125; exec "$@"', m.mnt]
        cat, sim, host = [], [], []
        for _ in range(reps):
            t, res["cat_lines"] = _time(["cat", os.path.join(m.mnt, "proc/net/tcp")])
            cat.append(t)
            t, res["sim_lines"] = _time([*ns, "netstat", "-tan"])
            sim.append(t)
            if real.ok:
                t, res["real_lines"] = _time(["netstat", "-tan"])
                host.append(t)
        res["cat_s"], res["sim_s"] = median(cat), median(sim)
        res["real_s"] = median(host) if host else None
        res["ratio"] = ratio(res["sim_s"], res["real_s"]) if host else None
    log(f"  cat {res['cat_s'] * 1000:.0f} ms; netstat -tan sim {res['sim_s'] * 1000:.0f} ms"
        + (f", real {res['real_s'] * 1000:.0f} ms: {res['ratio']:.2f}x" if res["real_s"] else ""))
    return res


def report(r: dict) -> list[str]:
    from common import fmt, fmt_ratio, table
    rows = [["model render of /proc/net/tcp", str(r["model"]["lines"]), fmt(r["model"]["render_s"] * 1000), "", ""],
            ["cat MNT/proc/net/tcp", str(r["cat_lines"]), fmt(r["cat_s"] * 1000), "", ""],
            ["netstat -tan", f"{r['sim_lines']} / {r.get('real_lines', '-')}", fmt(r["sim_s"] * 1000),
             fmt(r["real_s"] * 1000) if r["real_s"] else "-", fmt_ratio(r["ratio"]) if r["ratio"] else "-"]]
    return [f"netstat: {r['sockets']} TCP sockets (medians of {r['reps']}; the model built in "
            f"{r['model']['build_s']:.1f} s)",
            table(["", "lines sim / real", "sim ms", "real ms", "ratio"], rows), ""]
