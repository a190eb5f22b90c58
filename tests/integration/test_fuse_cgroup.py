"""cgroup v2 and PSI through a real mount: a systemd-cgtop-style script
walks MNT/sys/fs/cgroup (cgroup.procs, memory.current, cpu.stat) and agrees
with the model; `cat /proc/pressure/*` under `procsim run` while the
container-host example drives one container into memory.max; limits
written with the shell, with the kernel's errnos."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.fuse

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(REPO, "examples", "container-host.toml")

CGTOP = r"""
import os, sys
root = sys.argv[1]
for d, subdirs, files in sorted(os.walk(root)):
    subdirs.sort()
    def rd(name):
        try:
            with open(os.path.join(d, name)) as f:
                return f.read()
        except FileNotFoundError:
            return None
    procs = rd("cgroup.procs").split()
    mem = rd("memory.current")
    cpu = dict(line.split() for line in rd("cpu.stat").splitlines())
    path = "/" + os.path.relpath(d, root) if d != root else "/"
    print(path.replace("/.", "") or "/", len(procs), mem.strip() if mem else "-", cpu["usage_usec"])
"""


def sh(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)


def total(text: str, which: str = "some") -> int:
    return int(re.search(rf"^{which} avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=(\d+)$", text, re.M)[1])


@pytest.fixture
def m(procsim_mount):
    return procsim_mount(SCENARIO)


def test_cgtop_style_walk_agrees_with_the_model(m) -> None:
    m.ctl.advance(seconds=4)
    r = subprocess.run([sys.executable, "-c", CGTOP, f"{m.sys}/fs/cgroup"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()}
    for path in ("/", "/system.slice", "/system.slice/cache.service", "/machine.slice/leaky.scope",
                 "/machine.slice/steady.scope"):
        assert path in rows, (path, sorted(rows))
        st = m.ctl.cgroup_stat(path=path)
        procs, mem, usage = rows[path]
        assert int(procs) == len(st["procs"])
        if path != "/":
            assert int(mem) == st["memory"]["current"]
        assert int(usage) == st["cpu_usage_usec"]
    assert rows["/"][1] == "-"  # the root has no memory.current


def test_pressure_moves_as_a_container_hits_memory_max(m) -> None:
    before = m.run(["cat", "/proc/pressure/memory"], capture_output=True, text=True)
    assert before.returncode == 0, before.stderr
    assert re.fullmatch(r"some avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=\d+\n"
                        r"full avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=\d+\n", before.stdout)
    for r in ("cpu", "io", "memory"):
        assert open(f"{m.proc}/pressure/{r}").read().count("\n") == 2
    assert "full avg10=0.00 avg60=0.00 avg300=0.00 total=0" in open(f"{m.proc}/pressure/cpu").read()
    m.ctl.advance(seconds=16)
    after = m.run(["cat", "/proc/pressure/memory"], capture_output=True, text=True).stdout
    assert total(after) > total(before.stdout)
    leaky = f"{m.sys}/fs/cgroup/machine.slice/leaky.scope"
    ev = dict(line.split() for line in open(f"{leaky}/memory.events"))
    assert ev["oom_kill"] == "1"
    assert open(f"{leaky}/cgroup.procs").read() == ""
    log = open(f"{m.proc}/procsim/oom_log").read()
    assert "constraint=CONSTRAINT_MEMCG" in log and "oom_memcg=/machine.slice/leaky.scope" in log
    cache = open(f"{m.sys}/fs/cgroup/system.slice/cache.service/memory.pressure").read()
    assert total(cache) > 0


def test_limits_written_with_the_shell(m) -> None:
    d = f"{m.sys}/fs/cgroup/machine.slice/steady.scope"
    r = sh(f"echo 200M > {d}/memory.max && cat {d}/memory.max")
    assert r.returncode == 0 and r.stdout == f"{200 << 20}\n", r.stderr
    r = sh(f"echo lots > {d}/memory.max")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"echo '50000 100000' > {d}/cpu.max && cat {d}/cpu.max")
    assert r.stdout == "50000 100000\n", r.stderr
    r = sh(f"echo +cpuset > {d}/cgroup.subtree_control")
    assert "No such file or directory" in r.stderr
    r = sh(f"echo 99999 > {d}/cgroup.procs")
    assert "No such process" in r.stderr
    r = sh(f"echo 1 > {d}/memory.current")
    assert r.returncode != 0 and "Permission denied" in r.stderr
