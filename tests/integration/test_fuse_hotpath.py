"""The hot path's shortcuts keep /proc's semantics through a real mount:
a name no table has is cached as absent (procps asks each /proc/PID for a
`ctty`), while a new pid, a new fd and a changed fd are visible to the
very next request; the FUSE thread follows a busy client's CPU
(mountd/placement.py) and gives the CPUs back when callers alternate."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.fuse


def _errno(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def test_missing_names_cached_but_new_pids_and_fds_seen_at_once(machine):
    m = machine
    proc = os.path.join(m.mnt, "proc")
    for _ in range(3):  # a static miss, asked again within the negative timeout
        assert _errno(os.stat, f"{proc}/1/ctty") == errno.ENOENT
        assert _errno(os.stat, f"{proc}/1/nonesuch") == errno.ENOENT
    # a pid that is not there yet: its miss must not hide it once it exists
    new = 3333
    assert _errno(os.stat, f"{proc}/{new}") == errno.ENOENT
    assert m.ctl.spawn(argv=["/usr/bin/sleep", "60"], pid=new) == new
    try:
        assert os.stat(f"{proc}/{new}").st_mode & 0o170000 == 0o040000
        # an fd number that is not open yet, then opened, closed, reused by another file
        fd = max(e["fd"] for e in m.ctl.fds(pid=new)) + 1
        link = f"{proc}/{new}/fd/{fd}"
        assert _errno(os.readlink, link) == errno.ENOENT
        assert m.ctl.open(pid=new, path="/etc/passwd") == fd
        assert os.readlink(link) == "/etc/passwd"
        m.ctl.close_fd(pid=new, fd=fd)
        assert _errno(os.readlink, link) == errno.ENOENT
        assert m.ctl.open(pid=new, path="/etc/hostname") == fd
        assert os.readlink(link) == "/etc/hostname"
    finally:
        m.ctl.exit(pid=new)
    assert _errno(os.stat, f"{proc}/{new}") == errno.ENOENT


def _fuse_thread_cpus(daemon: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(t)) for t in os.listdir(f"/proc/{daemon}/task")]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to choose from")
def test_the_fuse_thread_follows_a_busy_client(machine):
    m = machine
    allowed = os.sched_getaffinity(m.pid)
    cpu = max(allowed)
    # reads reach the daemon every time (direct I/O); a stat would be answered from the attr cache
    stat_loop = (f"for i in range(3000): open({os.path.join(m.mnt, 'proc', '1', 'stat')!r}).read()\n"
                 "print(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[36])")
    r = subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-c", stat_loop], capture_output=True,
                       text=True, timeout=120, check=True)
    assert int(r.stdout) == cpu
    threads = _fuse_thread_cpus(m.pid)
    assert {cpu} in threads, threads  # the FUSE thread, on the client's CPU
    assert all(t == allowed for t in threads if t != {cpu}), threads  # the others never moved
    # two clients in turn (another caller every request): the thread gets all its CPUs back
    alternate = (f"import os, sys\np = os.path.join({m.mnt!r}, 'proc', '1', 'stat')\n"
                 "for i in range(3000):\n"
                 "    if os.fork() == 0:\n        open(p).read(); os._exit(0)\n"
                 "    open(p).read(); os.wait()\n")
    subprocess.run([sys.executable, "-c", alternate], timeout=300, check=True)
    assert all(t == allowed for t in _fuse_thread_cpus(m.pid))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to choose from")
def test_a_placement_made_from_outside_is_kept(machine):
    m = machine
    allowed = os.sched_getaffinity(m.pid)
    fuse_thread = m.pid  # the main thread runs libfuse's loop (nothreads)
    one = {min(allowed)}
    os.sched_setaffinity(fuse_thread, one)  # as taskset -p, or the writer bench's split placement
    try:
        # a busy client on the other CPU: the thread stays where it was put
        other = max(allowed)
        loop = f"for i in range(3000): open({os.path.join(m.mnt, 'proc', '1', 'stat')!r}).read()\n"
        subprocess.run(["taskset", "-c", str(other), sys.executable, "-c", loop], timeout=120, check=True)
        assert os.sched_getaffinity(fuse_thread) == one
    finally:
        os.sched_setaffinity(fuse_thread, allowed)
