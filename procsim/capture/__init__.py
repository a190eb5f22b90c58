"""`procsim capture`: a live /proc (the host's, a container's, a procsim
mount's) written down as a scenario that procsim serves back.

    doc = capture("/proc", "/sys")          # the scenario as a dict
    text = to_toml(doc)                     # ... as a TOML file

source.py reads as far as it can (a warning per skipped item), parse.py
parses the files, machine.py makes `[machine]`, net.py `[[netdev]]` and
the sockets' keys, block.py `[[disk]]` and `[swap]`, tasks.py the kthreads
and processes (namespaces as `clone`), anonymize.py scrubs a capture for sharing, toml_out.py writes
it, diff.py compares a replay with its source. The scenario side (the
`layout`, `resident`, `comm`, `inherit_fds` and `restore` keys) is
procsim/scenario/captured.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from procsim.capture.block import capture_disks
from procsim.capture.cgroups import capture_cgroups
from procsim.capture.conn import pair
from procsim.capture.machine import capture_machine, uptime
from procsim.capture.net import capture_netdevs
from procsim.capture.source import Source
from procsim.capture.tasks import PF_KTHREAD, TaskCapture
from procsim.capture.toml_out import dumps
from procsim.capture.unix_diag import unix_diag

__all__ = ["capture", "to_toml", "Source"]


def capture(proc: str = "/proc", sys_root: str = "/sys", pids: Iterable[int] | None = None, env: bool = False,
            anonymize: bool = False, progress: Callable[[str], None] | None = None,
            warn: Callable[[str], None] | None = None) -> dict:
    """The scenario of the machine whose /proc is `proc`: every task (or
    `pids` and the kernel threads), ordered by start time so that each
    parent comes before its children."""
    t0 = time.monotonic()
    src = Source(proc, sys_root, warn)
    say = progress or (lambda msg: None)
    machine = capture_machine(src)
    say(f"machine: {machine.get('nr_cpus', '?')} CPUs, {machine.get('mem', 0) >> 20} MiB")
    netdevs, own = capture_netdevs(src)
    tc = TaskCapture(src, env)
    tc.local_addrs = own
    tc.nr_cpus = machine.get("nr_cpus", 0)
    # Linux 6.18's RSS counters: percpu_counters, stat's rss their unfolded
    # get_mm_rss() (restore_mm.rss_approx gives each process's residues)
    machine["rss_counter"], machine["stat_rss"] = "flat", "approx"
    tc.rss_approx = True
    wanted = None if pids is None else set(pids)
    stats = []
    for pid in src.pids():
        st = tc.stat(pid)
        if st is not None:
            stats.append(st)
    stats.sort(key=lambda s: (s["starttime"], s["pid"]))
    kthreads, procs = [], []
    done: set[int] = set()
    for n, st in enumerate(stats):
        pid = st["pid"]
        if st["flags"] & PF_KTHREAD or st["ppid"] == 2 or pid == 2:
            kthreads.append(tc.kthread(st))  # kthreadd too: the replay's own gets its counters
            continue
        if wanted is not None and pid not in wanted and pid != 1:
            continue
        p = tc.process(st)
        if "parent" in p and p["parent"] not in done:
            if p["parent"] not in (0, 1, 2):
                src.warn(f"{src.path(str(pid))}: parent {p['parent']} not captured; its parent is init")
            p["parent"] = 1
        if p.get("state") == "Z" and p.get("parent", 1) == 1:
            src.warn(f"{src.path(str(pid))}: a zombie of init (which reaps at once in the model), skipped")
            continue
        procs.append(p)
        done.add(pid)
        if len(procs) % 20 == 0:
            say(f"{len(procs)} processes ({n + 1}/{len(stats)} tasks read)")
    if procs and procs[0]["pid"] != 1:
        init = [p for p in procs if p["pid"] == 1]
        procs = init + [p for p in procs if p["pid"] != 1]
    _groups(procs, src)
    _connections(procs, tc, src, say)
    _unlink_once(procs)
    _inherited(procs)
    if machine.get("arch") == "x86" and tc.statuses and not tc.cpus_active_mm:
        machine["proc_cpus_active_mm"] = False  # this kernel's status has no Cpus_active_mm
    for key, mode in zip(("ssb_mode", "spectre_v2_user"), tc.spec_modes or ()):
        if mode not in (None, "prctl"):  # prctl: the model's default
            machine[key] = mode
    up = max([uptime(src) or 0.0] + [s["starttime"] / 100 for s in stats])
    machine["boot_uptime"] = round(up + 0.01, 2)
    doc = {"description": f"captured from {proc}", "machine": machine}
    if netdevs:
        doc["netdev"] = netdevs
    disks, swap = capture_disks(src)
    if disks:
        doc["disk"] = disks
        if swap is not None:
            doc["swap"] = swap
    cgroups = capture_cgroups(src, {p["cgroup"] for p in procs if "cgroup" in p})
    if cgroups:
        doc["cgroup"] = cgroups
    if kthreads:
        doc["kthread"] = kthreads
    doc["process"] = procs
    if anonymize:
        from procsim.capture.anonymize import anonymize as scrub
        doc = scrub(doc)
    say(f"{len(procs)} processes, {len(kthreads)} kernel threads, {len(src.warnings)} warnings, "
        f"{time.monotonic() - t0:.2f} s")
    return doc


def to_toml(doc: dict) -> str:
    return dumps(doc, "# written by `procsim capture`: a snapshot of a machine as a scenario\n"
                      "# (docs/scenario-format.md, \"Captured machines\")")


def _connections(procs: list[dict], tc: TaskCapture, src: Source, say: Callable[[str], None]) -> None:
    """The ends of connections between captured processes (conn.py); the
    unix ones need sock_diag's peers (unix_diag.py): without them, a
    warning and connected unix sockets replay unconnected."""
    diag, how = unix_diag(src.proc) if tc.tables else (None, "")
    if diag is None and tc.tables:
        held = {f["ino"] for p in procs for f in p.get("files", []) if f.get("family") == "unix" and "ino" in f}
        connected = sum(1 for line in (tc.tables.get("unix") or "").splitlines()[1:]
                        if len(line.split()) > 6 and line.split()[5] == "03" and line.split()[6].isdigit()
                        and int(line.split()[6]) in held)
        if connected:
            src.warn(f"{src.path('net/unix')}: the peers of {connected} connected unix sockets are unknown: {how}; "
                     f"they replay unconnected")
    n = pair(procs, tc.tables, diag)
    if n:
        say(f"{n} connections between captured processes" + (f" (unix peers by {how})" if diag is not None else ""))


def _inherited(procs: list[dict]) -> None:
    """A pipe or socket a process holds at the fd its parent holds it at
    (without close-on-exec) is the parent's, inherited across fork and
    exec: `inherited = true` keeps it shared instead of making a second
    one (which /proc/net/unix would list twice)."""
    held: dict[int, dict[int, tuple[int, bool]]] = {}
    for p in procs:
        mine = {}
        parent = held.get(p.get("parent", 0), {})
        for i, f in enumerate(p.get("files", [])):
            if "ino" not in f or "fd" not in f:
                continue
            mine[f["fd"]] = (f["ino"], f.get("cloexec", False))
            if "peer_ino" in f:  # made in the connection pass, handed to each holder
                continue
            if parent.get(f["fd"]) == (f["ino"], False) and not f.get("cloexec", False):
                p["files"][i] = {"inherited": True, "fd": f["fd"], "ino": f["ino"]}
        held[p["pid"]] = mine


def _groups(procs: list[dict], src: Source) -> None:
    """Keep a `pgid` only where setpgid() will take it in the replay: the
    sessions and groups each process gets there (its parent's, or its own
    after setsid) followed in creation order, as the builder makes them."""
    sid: dict[int, int] = {}
    pgid: dict[int, int] = {}
    for p in procs:
        pid, parent = p["pid"], p.get("parent", 0)
        if pid == 1:
            sid[1] = pgid[1] = p.get("pgid", 1)
            continue
        sid[pid], pgid[pid] = (pid, pid) if p.get("setsid") else (sid.get(parent, 1), pgid.get(parent, 1))
        want = p.get("pgid")
        if want is None:
            continue
        if want == pid and sid[pid] != pid or any(pgid[q] == want and sid[q] == sid[pid] for q in pgid if q != pid):
            pgid[pid] = want
        else:
            src.warn(f"{src.path(str(pid))}: process group {want}: not in its session in the replay "
                     f"(its leader or parent not captured), left as its parent's")
            del p["pgid"]


def _unlink_once(procs: list[dict]) -> None:
    """A deleted file open in several places is opened everywhere and
    unlinked at its last open (an unlinked path cannot be opened again);
    the open files all show ` (deleted)` then."""
    last: dict[str, dict] = {}
    for p in procs:
        for f in p.get("files", []):
            if f.pop("unlink", False):
                last[f["path"]] = f
    for f in last.values():
        f["unlink"] = True
