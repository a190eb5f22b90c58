"""PSI triggers through a real mount: a client writes a trigger to
MNT/proc/pressure/memory (and a cgroup's memory.pressure) and blocks in a
real poll(); memory pressure made by live control (a cgroup throttled over
memory.high, the clock advanced) wakes it with POLLPRI, through FUSE_POLL
and fuse_notify_poll. Also: free, vmstat and cat of cgroup files agree
with the model after reclaim, and memory.reclaim's errnos reach the shell."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.fuse

CLIENT = r"""
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NONBLOCK)
try:
    os.write(fd, sys.argv[2].encode() + b"\n")
except OSError as e:
    print("write", e.errno, flush=True)
    sys.exit(0)
p = select.poll()
p.register(fd, select.POLLPRI)
print("armed", p.poll(0), flush=True)
print("event", p.poll(float(sys.argv[3]) * 1000), flush=True)
os.close(fd)
"""


def sh(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)


def start_client(path: str, trigger: str, timeout: float = 30) -> subprocess.Popen:
    c = subprocess.Popen([sys.executable, "-c", CLIENT, path, trigger, str(timeout)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = c.stdout.readline()
    assert line.startswith("armed"), (line, c.stderr.read() if c.poll() is not None else "")
    assert line.strip() == "armed []"  # nothing pending yet
    return c


def pressure(m, cg: str = "/box") -> None:
    """A task throttled over memory.high: memory stall time, the clock moving."""
    pid = m.ctl.spawn(argv=["/usr/bin/hog"])
    m.ctl.cgroup_attach(pid=pid, path=cg, create=True)
    with open(f"{m.sys}/fs/cgroup{cg}/memory.high", "w") as f:
        f.write("4M")
    for _ in range(4):
        addr = m.ctl.mmap(pid=pid, length=32 << 20)
        m.ctl.touch(pid=pid, addr=addr, length=32 << 20)
        m.ctl.advance(seconds=1)
    m.ctl.advance(seconds=3)


def test_poll_wakes_on_a_system_trigger(procsim_machine) -> None:
    m = procsim_machine
    c = start_client(f"{m.proc}/pressure/memory", "some 10000 2000000")
    assert m.ctl.psi_triggers()[0]["state"] == "memory_some"
    pressure(m)
    out, err = c.communicate(timeout=60)
    assert "event [(3, 2)]" in out, (out, err)  # POLLPRI on the fd
    # the file closed: the trigger went
    deadline = time.monotonic() + 5
    while m.ctl.psi_triggers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.ctl.psi_triggers() == []


def test_poll_on_a_cgroup_file_and_no_event_without_pressure(procsim_machine) -> None:
    m = procsim_machine
    m.ctl.cgroup_mkdir(path="/box")
    c = start_client(f"{m.sys}/fs/cgroup/box/memory.pressure", "some 10000 2000000", timeout=3)
    m.ctl.advance(seconds=6)  # time passes, nobody stalls
    out, _ = c.communicate(timeout=30)
    assert "event []" in out  # timed out
    c = start_client(f"{m.sys}/fs/cgroup/box/memory.pressure", "some 10000 2000000")
    pressure(m)
    out, err = c.communicate(timeout=60)
    assert "event [(3, 2)]" in out, (out, err)


def test_bad_triggers_through_the_mount(procsim_machine) -> None:
    """This host's root lacks CAP_SYS_RESOURCE: a 1 s window is EINVAL."""
    m = procsim_machine
    r = subprocess.run([sys.executable, "-c", CLIENT, f"{m.proc}/pressure/memory", "some 150000 1000000", "1"],
                       capture_output=True, text=True, timeout=30)
    caps = int(next(line for line in open(f"/proc/{os.getpid()}/status") if line.startswith("CapEff:")).split()[1], 16)
    if caps >> 24 & 1:
        assert r.stdout.startswith("armed")
    else:
        assert r.stdout.strip() == "write 22"


def test_free_vmstat_and_cgroup_files_after_reclaim(procsim_machine) -> None:
    m = procsim_machine
    pid = m.ctl.spawn(argv=["/usr/bin/app"])
    m.ctl.cgroup_attach(pid=pid, path="/work", create=True)
    m.ctl.write(pid=pid, path="/srv/data.bin", length=16 << 20, offset=0)
    m.ctl.sync()  # written back: clean page cache reclaim may drop
    before = {l.split(":")[0]: int(l.split()[1]) for l in open(f"{m.proc}/meminfo")}
    r = sh(f"echo 8M > {m.sys}/fs/cgroup/work/memory.reclaim")
    assert r.returncode == 0, r.stderr
    r = sh(f"echo bogus > {m.sys}/fs/cgroup/work/memory.reclaim")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"echo 1G > {m.sys}/fs/cgroup/work/memory.reclaim")
    assert r.returncode != 0 and "Resource temporarily unavailable" in r.stderr  # EAGAIN: not that much
    stat = dict(line.split() for line in open(f"{m.sys}/fs/cgroup/work/memory.stat"))
    assert int(stat["pgsteal_proactive"]) == 4096 and stat["pgsteal"] == stat["pgsteal_proactive"]
    assert stat["file"] == "0"
    vm = dict(line.split() for line in open(f"{m.proc}/vmstat"))
    assert int(vm["pgsteal_proactive"]) == m.ctl.reclaim_state()["events"]["pgsteal_proactive"] == 4096
    assert int(vm["pgscan_proactive"]) >= 4096 and int(vm["pgsteal_file"]) == 4096
    mi = {l.split(":")[0]: int(l.split()[1]) for l in open(f"{m.proc}/meminfo")}
    assert before["Cached"] - mi["Cached"] == 16 << 10 and mi["MemFree"] - before["MemFree"] >= 16 << 10
    free = m.run(["free", "-k"], capture_output=True, text=True, timeout=60)
    assert free.returncode == 0, free.stderr
    assert int(free.stdout.splitlines()[1].split()[3]) == mi["MemFree"]
    vms = m.run(["vmstat", "-s"], capture_output=True, text=True, timeout=60)
    assert vms.returncode == 0 and f"{mi['MemFree']} K free memory" in vms.stdout, vms.stdout
