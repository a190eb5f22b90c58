"""A prometheus-node-exporter scrape through the mount vs the same scrape
of this host's real /proc and /sys (`--only node_exporter`).

The same binary and collector set for both (tests/integration/node_exporter.py:
the default collectors less those needing systemd, hardware or netlink,
plus buddyinfo, cgroups, interrupts, meminfo_numa, processes, slabinfo and
zoneinfo), each exporter started once; then `reps` scrapes of /metrics,
alternating between the two, after one warm-up each. The ratio is of the
medians measured in this same run. Two simulated machines: the default one
(scenarios/default.toml), and a big one (`big_scenario`: about 10,000
sockets, TCP listeners and established connections of several services,
local and to other hosts, UDP and unix, and 64 disks of 4 partitions each),
each against the host measured beside it; the big one twice, with the
manual clock (renders cached per generation) and the wall clock (every
scrape re-renders). The host's files differ in size
(its CPU count, its processes), so the series counts are reported beside
the times; for the big machine also each collector's own time
(node_scrape_collector_duration_seconds, medians) and the daemon's RSS."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from common import REPO, ProcsimMount, log, median, ratio, sim_pids, vm_rss_bytes

sys.path.insert(0, str(REPO / "tests" / "integration"))
import node_exporter as ne  # noqa: E402


COLLECTOR_DURATION = re.compile(r'^node_scrape_collector_duration_seconds\{collector="([^"]+)"\} (\S+)$', re.M)


def _scrape(e: "ne.Exporter", per: dict[str, list[float]] | None = None) -> tuple[float, int]:
    """Seconds for one scrape and its series; each collector's own seconds appended to `per`."""
    t0 = time.perf_counter()
    text = e.scrape()
    dt = time.perf_counter() - t0
    if per is not None:
        for name, v in COLLECTOR_DURATION.findall(text):
            per.setdefault(name, []).append(float(v))
    return dt, sum(1 for l in text.splitlines() if l and not l.startswith("#"))


def _disk_name(i: int) -> str:
    """sda..sdz, sdaa.. as the sd driver names them."""
    return "sd" + (chr(97 + i) if i < 26 else chr(96 + i // 26) + chr(97 + i % 26))


def big_scenario(path: str, ndisks: int = 64) -> int:
    """A server with about 10,000 sockets and `ndisks` disks; the socket count."""
    procs: list[tuple[str, list[str]]] = []
    lim = 'limits = { nofile = 65536 }\n'
    nsock = 0

    def proc(name: str, files: list[tuple[str, int]]) -> None:
        nonlocal nsock
        procs.append((name, [f for f, _ in files]))
        nsock += sum(n for _, n in files)
    # listeners first: clients' connects need them (built in file order)
    proc("postgres", [('{ kind = "socket", listen = "*:5432", backlog = 4096, accept = true }', 1),
                      ('{ kind = "socket", family = "unix", listen = "/run/postgresql/.s.PGSQL.5432", '
                       'backlog = 4096, accept = true }', 1)])
    proc("redis-server", [('{ kind = "socket", listen = "127.0.0.1:6379", backlog = 4096, accept = true }', 1),
                          ('{ kind = "socket", family = "inet6", listen = "[::1]:6379", backlog = 511 }', 1)])
    proc("nginx", [('{ kind = "socket", listen = "*:80", backlog = 511 }', 1),
                   ('{ kind = "socket", listen = "*:443", backlog = 511 }', 1),
                   ('{ kind = "socket", family = "inet6", v6only = true, listen = "[::]:443", backlog = 511 }', 1)])
    proc("sshd", [('{ kind = "socket", listen = "*:22" }', 1),
                  ('{ kind = "socket", family = "inet6", v6only = true, listen = "[::]:22" }', 1)])
    proc("systemd-resolve", [('{ kind = "socket", type = "dgram", bind = "127.0.0.53:53" }', 1),
                             ('{ kind = "socket", listen = "127.0.0.53:53" }', 1)])
    # app workers: local connections make two sockets each (client and accepted end)
    for w in range(4):
        proc(f"app-{w}", [('{ kind = "socket", connect = "127.0.0.1:5432", count = 450 }', 900),
                          ('{ kind = "socket", connect = "127.0.0.1:6379", count = 300 }', 600),
                          ('{ kind = "socket", family = "unix", connect = "/run/postgresql/.s.PGSQL.5432", '
                           'count = 150 }', 300),
                          ('{ kind = "socket", connect = "93.184.216.34:443", count = 450 }', 450),
                          ('{ kind = "socket", type = "dgram", bind = "0.0.0.0:0", count = 180 }', 180),
                          ('{ kind = "socket", family = "unix", type = "dgram", count = 67 }', 67)])
    proc("chronyd", [('{ kind = "socket", type = "dgram", bind = "127.0.0.1:323" }', 1),
                     ('{ kind = "socket", family = "inet6", type = "dgram", bind = "[::1]:323" }', 1)])
    out = ['description = "bench: about 10,000 sockets and %d disks"' % ndisks,
           '[machine]\nnr_cpus = 2\nmem = "16G"\n',
           '[[netdev]]\nname = "eth0"\nipv4 = ["192.168.10.5/24"]\ngateway = "192.168.10.1"\n']
    for i in range(ndisks):
        out.append(f'[[disk]]\nname = "{_disk_name(i)}"\nsize = "1T"')
        for size in ("1G", "100G", "100G"):
            out.append(f'  [[disk.partition]]\n  size = "{size}"')
        out.append(f'  [[disk.partition]]\n  mount = "{"/" if i == 0 else f"/srv/d{i}"}"\n')
    for name, files in procs:
        out.append(f'[[process]]\nname = "{name}"\nargv = ["/usr/bin/{name}"]\nstdio = "/dev/null"\n{lim}'
                   f'files = [{", ".join(files)}]\n')
    with open(path, "w") as f:
        f.write("\n".join(out))
    return nsock


def _machine(workdir: str, reps: int, scenario: str | None, label: str, clock: str = "manual") -> dict:
    """`clock` wall: the machine moves between scrapes, so every render is
    redone (manual: the kernel's generation stays, renders come from cache)."""
    res: dict = {"reps": reps, "clock": clock}
    sim_per: dict[str, list[float]] = {}
    real_per: dict[str, list[float]] = {}
    with ProcsimMount(scenario=scenario, workdir=workdir, clock=clock, ready_timeout=600) as m:
        res["startup_s"] = m.startup_s
        mnt = Path(m.mnt)
        res["sim_processes"] = len(sim_pids(str(mnt / "proc")))
        with ne.Exporter(str(mnt / "proc"), str(mnt / "sys")) as sim, ne.Exporter("/proc", "/sys") as real:
            _scrape(sim)
            _scrape(real)
            s, r = [], []
            for _ in range(reps):
                t, res["sim_series"] = _scrape(sim, sim_per)
                s.append(t)
                t, res["real_series"] = _scrape(real, real_per)
                r.append(t)
        res["daemon_rss_bytes"] = vm_rss_bytes(m.pid)
    res["sim_s"], res["real_s"] = s, r
    res["sim_median_s"], res["real_median_s"] = median(s), median(r)
    res["ratio"] = ratio(res["sim_median_s"], res["real_median_s"])
    res["collectors_s"] = {c: [median(v), median(real_per[c]) if c in real_per else None]
                           for c, v in sorted(sim_per.items())}
    log(f"  node_exporter ({label}): sim {res['sim_median_s'] * 1000:.1f} ms ({res['sim_series']} series), real "
        f"{res['real_median_s'] * 1000:.1f} ms ({res['real_series']} series): {res['ratio']:.2f}x; "
        f"daemon RSS {res['daemon_rss_bytes'] >> 20} MiB")
    return res


def bench_node_exporter(workdir: str, reps: int = 20) -> dict:
    if not ne.available():
        raise RuntimeError(f"{ne.BINARY} not installed (apt-get install prometheus-node-exporter)")
    res: dict = {"reps": reps, "collectors": ne.collector_flags()}
    res["default"] = _machine(workdir, reps, None, "default machine")
    path = os.path.join(workdir, "node_exporter_big.toml")
    res["big_sockets"] = big_scenario(path)
    res["big"] = _machine(workdir, reps, path, f"{res['big_sockets']} sockets, 64 disks")
    res["big_wall"] = _machine(workdir, reps, path, f"{res['big_sockets']} sockets, 64 disks, wall clock", "wall")
    for k in ("sim_series", "real_series", "sim_median_s", "real_median_s", "ratio"):
        res[k] = res["default"][k]     # the keys earlier results have
    return res


def report(r: dict) -> list[str]:
    from common import fmt, fmt_ratio, table
    rows = []
    big = f"{r.get('big_sockets')} sockets, 64 disks"
    for key, label in (("default", "default machine"), ("big", big), ("big_wall", big + ", wall clock")):
        m = r.get(key)
        if m:
            rows.append([label, f"{m.get('sim_processes')}", f"{m['sim_series']} / {m['real_series']}", fmt(m["sim_median_s"] * 1000),
                         fmt(m["real_median_s"] * 1000), fmt_ratio(m["ratio"]), f"{m['daemon_rss_bytes'] >> 20}"])
    L = ["node_exporter: a /metrics scrape through the mount vs this host's /proc and /sys "
         f"(medians of {r['reps']}, interleaved)",
         table(["machine", "processes", "series sim / real", "sim ms", "real ms", "ratio", "daemon RSS MiB"], rows)]
    for key, label in (("big", "big machine"), ("big_wall", "big machine, wall clock")):
        if key not in r:
            continue
        per = sorted(r[key]["collectors_s"].items(), key=lambda kv: -kv[1][0])
        L += [f"  per collector, {label} (node_scrape_collector_duration_seconds, medians; slowest first)",
              table(["collector", "sim ms", "real ms"],
                    [[c, fmt(s * 1000), "-" if h is None else fmt(h * 1000)] for c, (s, h) in per[:12]])]
    return L + [""]
