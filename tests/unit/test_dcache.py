"""fs.dentry-state, fs.inode-nr, fs.inode-state (procsim/fs/dcache.py) and
kernel.pty.* (procsim/fs/devpts.py): formats and modes as this host's, the
counts following what the model's tasks hold, and the kernel's errnos for
bad writes."""

from __future__ import annotations

import errno
import os

import pytest

from hostinfo import requires_host
from procfs_helpers import ROOT, errno_of, read_all
from procsim import Kernel
from procsim.fs import file as F
from procsim.procfs.tree import ProcFS

SYS = "/proc/sys"


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    k.create_init()
    return k


def ints(fs: ProcFS, name: str) -> list[int]:
    return [int(v) for v in read_all(fs, f"{SYS}/{name}").decode().split("\t")]


def write(fs: ProcFS, name: str, data: bytes) -> None:
    h = fs.open(f"{SYS}/{name}", os.O_WRONLY, ROOT)
    try:
        h.write(data, 0)
    finally:
        h.release()


def slab_dentries(fs: ProcFS) -> int:
    row = next(l for l in read_all(fs, "/proc/slabinfo").decode().splitlines() if l.startswith("dentry "))
    return int(row.split()[1])


@pytest.mark.parametrize("name", ["fs/dentry-state", "fs/inode-nr", "fs/inode-state", "kernel/pty/nr",
                                  "kernel/pty/max", "kernel/pty/reserve"])
def test_shape_and_mode_are_the_hosts(k, name):
    fs = ProcFS(k)
    ours = read_all(fs, f"{SYS}/{name}").decode()
    host_path = f"/proc/sys/{name}"
    if not os.path.exists(host_path):
        pytest.skip(f"host has no {host_path}")
    with open(host_path) as f:
        theirs = f.read()
    assert ours.endswith("\n") and ours.count("\t") == theirs.count("\t")
    assert fs.getattr(f"{SYS}/{name}", ROOT).mode == os.stat(host_path).st_mode


def test_dentries_are_the_slab_caches_and_in_use_ones_what_tasks_hold(k):
    fs = ProcFS(k)
    nr, unused, age, want, negative, dummy = ints(fs, "fs/dentry-state")
    assert nr == slab_dentries(fs) and (age, want, negative, dummy) == (45, 0, 0, 0)
    # inodes: one per positive dentry, none unused (each held by its dentry)
    assert ints(fs, "fs/inode-nr") == [nr, 0] and ints(fs, "fs/inode-state") == [nr, 0, 0, 0, 0, 0, 0]
    p = k.spawn(["/usr/bin/python3"])
    before = ints(fs, "fs/dentry-state")[1]
    fd = k.open(p, "/srv/spool/in/job.dat", F.O_RDONLY)   # srv, spool, in, job.dat: four new dentries
    assert ints(fs, "fs/dentry-state")[1] == before - 4
    k.open(p, "/srv/spool/in/other.dat", F.O_RDONLY)      # one more; its parents are held already
    assert ints(fs, "fs/dentry-state")[1] == before - 5
    r, w = k.pipe(p)                                      # a pipe: one pseudo dentry for both ends
    assert ints(fs, "fs/dentry-state")[1] == before - 6
    for f in (r, w, fd):
        k.close(p, f)
    assert ints(fs, "fs/dentry-state")[1] == before - 4   # other.dat and the directories it holds
    assert ints(fs, "fs/dentry-state")[0] == slab_dentries(fs)  # (the slab grew with the new process)


def test_pty_pairs_are_the_open_ptmx_files(k):
    fs = ProcFS(k)
    p = k.spawn(["/usr/sbin/sshd"])
    assert ints(fs, "kernel/pty/nr") == [0]
    m = k.open(p, "/dev/ptmx", F.O_RDWR)
    k.dup(p, m)                          # the same open file: the same pair
    child = k.fork(p)                    # fork shares the open file too
    assert ints(fs, "kernel/pty/nr") == [1]
    k.open(p, "/dev/ptmx", F.O_RDWR)
    assert ints(fs, "kernel/pty/nr") == [2]
    k.exit(child, 0)
    k.close(p, m)
    assert ints(fs, "kernel/pty/nr") == [2]  # a dup of the first master is still open
    k.close(p, m + 1)
    assert ints(fs, "kernel/pty/nr") == [1]


def test_pty_max_gives_enospc_and_changes_nothing(k):
    fs = ProcFS(k)
    p = k.spawn(["/usr/sbin/sshd"])
    k.open(p, "/dev/ptmx", F.O_RDWR)
    write(fs, "kernel/pty/max", b"1\n")
    assert ints(fs, "kernel/pty/max") == [1]
    fds, nr_files = len(k.group(p).leader.files.items()), k.files.nr_files
    assert errno_of(k.open, p, "/dev/ptmx", F.O_RDWR) == errno.ENOSPC
    assert (len(k.group(p).leader.files.items()), k.files.nr_files) == (fds, nr_files)
    k.open(p, "/dev/tty", F.O_RDWR)      # other devices are not ptys
    write(fs, "kernel/pty/max", b"2")
    k.open(p, "/dev/ptmx", F.O_RDWR)
    assert ints(fs, "kernel/pty/nr") == [2]


BAD = [b"-1\n", b"2147483648\n", b"x\n", b"\n"]


@pytest.mark.parametrize("name", ["kernel/pty/max", "kernel/pty/reserve"])
@pytest.mark.parametrize("data", BAD)
def test_bad_pty_limits_are_einval_and_change_nothing(k, name, data):
    fs = ProcFS(k)
    before = read_all(fs, f"{SYS}/{name}")
    assert errno_of(write, fs, name, data) == errno.EINVAL
    assert read_all(fs, f"{SYS}/{name}") == before
    write(fs, name, b"2147483647\n")
    assert ints(fs, name) == [2147483647]


@requires_host(files=("/proc/sys/kernel/pty/max",))
@pytest.mark.parametrize("data", BAD)
def test_bad_pty_limits_are_einval_on_the_host(data):
    if not os.access("/proc/sys/kernel/pty/max", os.W_OK):
        pytest.skip("the host's /proc/sys is read-only here")
    before = open("/proc/sys/kernel/pty/max").read()
    try:
        fd = os.open("/proc/sys/kernel/pty/max", os.O_WRONLY)
    except PermissionError:
        pytest.skip("this host's kernel.pty.max is not writable here (a container's user namespace)")
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, data)
    finally:
        os.close(fd)
    assert e.value.errno == errno.EINVAL and open("/proc/sys/kernel/pty/max").read() == before


@pytest.mark.parametrize("name", ["fs/dentry-state", "fs/inode-nr", "fs/inode-state", "kernel/pty/nr"])
def test_read_only_counts_refuse_writes_to_root(k, name):
    fs = ProcFS(k)
    assert errno_of(fs.open, f"{SYS}/{name}", os.O_WRONLY, ROOT) == errno.EACCES
