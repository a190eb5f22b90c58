"""/proc/PID/io and /proc/PID/limits through a real mount: the files, their
modes and permission errors as the kernel's FUSE client applies them,
psutil's io_counters() and pidstat -d against the model.

psutil's rlimit() is not /proc: it is the prlimit(2) syscall on the pid
(which names a host process, not a simulated one), so it cannot be pointed
at a mount; the limits a tool reads from /proc are checked here byte for
byte instead."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys

import psutil
import pytest

from fusehelpers import IO_SCENARIO, psutil_procfs, read

pytestmark = pytest.mark.fuse

SCENARIO = IO_SCENARIO


def _pid(m, argv0: str) -> int:
    return next(p["pid"] for p in m.ctl.ps() if p["cmdline"][:1] == [argv0])


def _limits_from(model: dict) -> bytes:
    names = ("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"), \
        ("Max stack size", "bytes"), ("Max core file size", "bytes"), ("Max resident set", "bytes"), \
        ("Max processes", "processes"), ("Max open files", "files"), ("Max locked memory", "bytes"), \
        ("Max address space", "bytes"), ("Max file locks", "locks"), ("Max pending signals", "signals"), \
        ("Max msgqueue size", "bytes"), ("Max nice priority", None), ("Max realtime priority", None), \
        ("Max realtime timeout", "us")
    out = "Limit                     Soft Limit           Hard Limit           Units     \n"
    for (name, unit), lim in zip(names, model.values()):
        out += f"{name:<25} {lim['soft']!s:<20} {lim['hard']!s:<20} " + (f"{unit:<10}\n" if unit else "\n")
    return out.encode()


def test_limits_file_follows_prlimit(procsim_mount):
    m = procsim_mount(SCENARIO)
    pid = _pid(m, "/usr/bin/postgres")
    path = f"{m.proc}/{pid}/limits"
    with open(path, "rb") as f:
        assert f.read() == _limits_from(m.ctl.prlimit(pid=pid))
    assert "Max open files            4096                 65536                files     \n" in read(path)
    m.ctl.prlimit(pid=pid, resource="nofile", soft=1000)
    assert "Max open files            1000                 65536                files     \n" in read(path)
    assert read(f"{m.proc}/{pid}/task/{pid}/limits") == read(path)
    assert os.stat(path).st_mode & 0o7777 == 0o444
    assert os.stat(f"{m.proc}/{pid}/io").st_mode & 0o7777 == 0o400


def test_io_permissions_as_nobody(procsim_mount):
    """As on this host: nobody cannot open another user's io (mode 0400,
    EACCES at open) but reads its limits."""
    m = procsim_mount(SCENARIO)
    pid = _pid(m, "/usr/bin/postgres")
    code = ("import os, sys\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n"
            "        print(len(open(p, 'rb').read()))\n"
            "    except OSError as e:\n"
            "        print(e.errno)\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code,
                        f"{m.proc}/{pid}/io", f"{m.proc}/1/io", f"{m.proc}/{pid}/limits"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        pytest.skip(f"cannot run an unprivileged reader: {r.stderr[-200:]}")
    got = r.stdout.split()
    assert got[:2] == [str(errno.EACCES)] * 2 and int(got[2]) > 0


def test_psutil_io_counters(procsim_mount):
    m = procsim_mount(SCENARIO)
    pid = _pid(m, "/usr/bin/postgres")
    m.ctl.io(pid=pid, read="100K", write=10000, path="/var/lib/x")
    m.ctl.advance(seconds=2)
    want = m.ctl.io(pid=pid)
    with psutil_procfs(m):
        io = psutil.Process(pid).io_counters()
    assert (io.read_count, io.write_count, io.read_bytes, io.write_bytes, io.read_chars, io.write_chars) == \
        (want["syscr"], want["syscw"], want["read_bytes"], want["write_bytes"], want["rchar"], want["wchar"])
    assert want["read_bytes"] == (100 << 10) + 2 * (512 << 10)  # the command's and 2 s of the workload's
    assert want["write_bytes"] == 3 * 4096 + 2 * (128 << 10)     # 10000 bytes dirty 3 pages


@pytest.mark.skipif(shutil.which("pidstat") is None, reason="needs pidstat (sysstat)")
def test_pidstat_d(procsim_mount):
    """pidstat -d 1 2 over a wall-clock machine: the db's kB_rd/s and
    kB_wr/s are its workload's read and write rates (read_bytes and
    write_bytes per second of the mount's own uptime)."""
    m = procsim_mount(SCENARIO, clock="wall")
    pid = _pid(m, "/usr/bin/postgres")
    r = m.run(["pidstat", "-d", "-p", str(pid), "1", "2"], capture_output=True, text=True, timeout=60,
              env={**os.environ, "LC_ALL": "C", "S_TIME_FORMAT": "ISO"})
    assert r.returncode == 0, r.stderr
    avg = [line.split() for line in r.stdout.splitlines() if line.startswith("Average:")]
    head = next(line.split() for line in r.stdout.splitlines() if "kB_rd/s" in line)
    row = next(a for a in avg if str(pid) in a)
    col = {name: row[i - len(head)] for i, name in enumerate(head) if name in ("kB_rd/s", "kB_wr/s", "kB_ccwr/s")}
    assert float(col["kB_rd/s"]) == pytest.approx(512, rel=0.1), r.stdout
    assert float(col["kB_wr/s"]) == pytest.approx(128, rel=0.1), r.stdout
    assert float(col["kB_ccwr/s"]) == 0
    assert re.search(r"\bpostgres\b", r.stdout)


@pytest.mark.skipif(shutil.which("capsh") is None, reason="needs capsh")
def test_io_ptrace_check_for_root_without_cap_sys_ptrace(procsim_mount):
    """As on this host: root without CAP_SYS_PTRACE opens another user's io
    (CAP_DAC_OVERRIDE passes the mode) and its read fails EACCES; with the
    capability (this test's own root) the read succeeds. The daemon takes
    the reader's capabilities from its real CapEff."""
    m = procsim_mount(SCENARIO)
    pid = _pid(m, "/usr/bin/postgres")
    code = ("import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "try:\n"
            "    print(len(os.read(fd, 4096)))\n"
            "except OSError as e:\n"
            "    print('read', e.errno)\n")
    r = subprocess.run(["capsh", "--drop=cap_sys_ptrace", "--", "-c", f"{sys.executable} -c \"{code}\" {m.proc}/{pid}/io"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        pytest.skip(f"cannot drop CAP_SYS_PTRACE here: {r.stderr[-200:]}")
    assert r.stdout.split() == ["read", str(errno.EACCES)]
    with open(f"{m.proc}/{pid}/io") as f:  # this test's own root, with CAP_SYS_PTRACE
        assert f.read().startswith("rchar: ")
