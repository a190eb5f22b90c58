"""More real tools through `procsim run` (MNT/proc bound over /proc in a
private mount namespace): glances (psutil's system API), ps_mem (smaps_rollup
Pss totals) and pstree (the process tree from stat and task/), each
compared with the model through the control channel."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest

from fusehelpers import model, read

pytestmark = pytest.mark.fuse

BIN = os.path.dirname(sys.executable)
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def tool(name: str) -> str:
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        path = shutil.which(name) or ""
    assert path, f"{name} is not installed (make deps installs it)"
    return path


def run(m, *argv: str) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r.stdout


def meminfo_kb(m) -> dict[str, int]:
    return {l.split(":")[0]: int(l.split()[1]) for l in read(f"{m.proc}/meminfo").splitlines()}


def test_glances_memory_and_process_list(machine):
    ps = model(machine)
    out = run(machine, tool("glances"), "--stdout-json", "mem,processlist,processcount,core", "--stop-after", "2",
              "-t", "1")
    last = {}
    for line in out.splitlines():
        if line.startswith("{"):
            last.update(json.loads(line))
    mi = meminfo_kb(machine)
    mem = last["mem"]
    assert mem["total"] == mi["MemTotal"] * 1024 and mem["free"] == mi["MemFree"] * 1024
    assert mem["used"] == (mi["MemTotal"] - mi["MemAvailable"]) * 1024  # psutil: total - MemAvailable
    assert last["core"]["log"] == len(machine.ctl.cpus())
    listed = {p["pid"]: p for p in last["processlist"]}
    assert 1 in listed and set(listed) <= set(ps)
    for pid, g in listed.items():
        p, t = ps[pid], machine.ctl.task(pid=pid)
        name = p["comm"]
        if len(name) == 15 and p["cmdline"] and os.path.basename(p["cmdline"][0]).startswith(name):
            name = os.path.basename(p["cmdline"][0])  # psutil's name() for a comm cut at 15
        assert (g["name"], g["status"], g["num_threads"]) == (name, p["state"], len(p["threads"]))
        assert g["memory_info"]["rss"] == p["rss_pages"] * 4096 and g["memory_info"]["vms"] == t["total_vm"] * 4096
        # psutil splits a rewritten title on spaces and keeps its NUL padding as ''
        assert " ".join(a for a in g["cmdline"] if a) == " ".join(p["cmdline"])
    # psutil's nice() is getpriority(2) of the pid on this host, not a /proc
    # read: glances drops a process whose pid this host has not
    # (NoSuchProcess) and shows this host's nice for the others
    for pid in set(ps) - set(listed):
        with pytest.raises(ProcessLookupError):
            os.getpriority(os.PRIO_PROCESS, pid)
    count = last["processcount"]
    assert count["total"] == len(listed)
    assert count["thread"] == sum(len(ps[pid]["threads"]) for pid in listed)
    assert count["sleeping"] == sum(ps[pid]["state"] == "S" for pid in listed)
    assert count["running"] == sum(ps[pid]["state"] == "R" for pid in listed)


def test_ps_mem_totals_are_the_models_pss(machine):
    ps = model(machine)
    pids = [pid for pid, p in ps.items() if p["cmdline"]][:6]
    for pid in pids:
        rollup = machine.ctl.memory(pid=pid)["rollup"]
        # ps_mem -t: Private + Shared where Shared = (Pss kB + 0.5) - Private, in bytes
        # (ps_mem judges the kernel by its own smaps, the observer's: a
        # missing one is a warning, and with -t an error, exit 1)
        total = int(run(machine, tool("ps_mem"), "-t", "-p", str(pid)).split()[0])
        assert total == (rollup["pss"] >> 10) * 1024 + 512, (pid, ps[pid]["comm"])
    r = machine.run([tool("ps_mem"), "-p", ",".join(map(str, pids)), "-d"], capture_output=True, text=True,
                    timeout=120, env=ENV)
    assert r.returncode == 0 and r.stderr == "", r.stderr  # no accuracy warning: the kernel has Pss
    out = r.stdout
    shown = {int(m[1]) for m in re.finditer(r"\[(\d+)\]", out)}
    assert shown == set(pids), out


def _pstree_pids(text: str) -> tuple[set[int], set[int]]:
    """The processes (`name(pid)`) and threads (`{name}(tid)`) pstree -p drew."""
    threads = {int(t) for t in re.findall(r"\{[^}]*\}\((\d+)\)", text)}
    every = {int(t) for t in re.findall(r"\((\d+)\)", text)}
    return every - threads, threads


def test_pstree_is_the_models_process_tree(machine):
    ps = model(machine)
    procs, threads = _pstree_pids(run(machine, "pstree", "-p", "-A", "-l", "1"))
    children: dict[int, list[int]] = {}
    for pid, p in ps.items():
        children.setdefault(p["ppid"], []).append(pid)
    below, todo = set(), [1]
    while todo:
        pid = todo.pop()
        below.add(pid)
        todo += children.get(pid, [])
    assert procs == below
    assert threads == {tid for pid in below for tid in ps[pid]["threads"] if tid != pid}
    # one parent's subtree, nested under it with its own children
    parent = next(pid for pid in sorted(below) if pid != 1 and children.get(pid))
    sub, _ = _pstree_pids(run(machine, "pstree", "-p", "-A", "-l", "-T", str(parent)))
    kids = set(children[parent])
    assert sub >= {parent} | kids and not sub & (below - {parent} - _descendants(children, parent))


def _descendants(children: dict[int, list[int]], pid: int) -> set[int]:
    out, todo = set(), list(children.get(pid, []))
    while todo:
        c = todo.pop()
        out.add(c)
        todo += children.get(c, [])
    return out
