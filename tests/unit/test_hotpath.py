"""What the FUSE layer's shortcuts rely on: which misses are permanent
(NoSuchName: a name no table has, cached as absent by mountd) and which may
turn into names (pids, fds, fd targets), and fd/'s target index kept per
ProcFS instance for one generation."""

from __future__ import annotations

import errno

import pytest

from procfs_helpers import ROOT
from procsim import Kernel
from procsim.procfs.kinds import NoSuchName
from procsim.procfs.tree import ProcFS


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    k.create_init()
    return k


def _miss(fs: ProcFS, path: str) -> OSError:
    with pytest.raises(OSError) as e:
        fs.getattr(path, ROOT)
    assert e.value.errno == errno.ENOENT, path
    return e.value


def test_only_table_misses_are_permanent(k):
    fs = ProcFS(k)
    for path in ("/proc/1/ctty", "/proc/1/task/1/nonesuch", "/proc/1/net/nonesuch",
                 "/sys/kernel/nonesuch"):
        assert isinstance(_miss(fs, path), NoSuchName), path
    # names that a directory looks up itself may appear: a pid, an fd, an fd's target, a task
    for path in ("/proc/4242", "/proc/1/fd/99", "/proc/1/fd/socket:[1]", "/proc/1/task/4242", "/proc/nonesuch"):
        assert not isinstance(_miss(fs, path), NoSuchName), path


def test_fd_targets_follow_the_table_per_instance(k):
    p = k.spawn(["/usr/bin/x"])
    a, b = ProcFS(k), ProcFS(k)
    r, w = k.pipe(p)
    target = a.readlink(f"/proc/{p}/fd/{r}", ROOT)
    assert target.startswith("pipe:[")
    for fs in (a, b):
        assert fs.getattr(f"/proc/{p}/fd/{target}", ROOT).ino == int(target[6:-1])
    k.close(p, r)
    k.close(p, w)
    for fs in (a, b):  # the next lookup sees the closed pipe gone, in each instance
        _miss(fs, f"/proc/{p}/fd/{target}")
