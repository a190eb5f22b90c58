"""proc_flush_pid: the kernel tells procfs of each released task, procfs
names the dentries to drop (procsim/procfs/pid_flush.py)."""

from __future__ import annotations

import os

import pytest

from procsim.config import KernelConfig
from procsim.kernel import Kernel
from procsim.procfs.pid_flush import PidFlush


@pytest.fixture
def k() -> Kernel:
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30))
    k.create_init()
    return k


def _flush(k: Kernel) -> PidFlush:
    wakes = []
    f = PidFlush(k, wake=lambda: wakes.append(1))
    f.wakes = wakes  # type: ignore[attr-defined]
    return f


def test_a_thread_exit_drops_its_two_dentries(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    f = _flush(k)
    k.exit(t)
    assert f.drain() == [("proc", str(t)), (f"proc/{p}/task", str(t))]
    assert f.wakes
    assert f.drain() == []  # drained once


def test_a_group_exit_drops_its_threads_and_the_reap_its_leader(k: Kernel) -> None:
    parent = k.spawn(["/usr/bin/bash"])
    p = k.spawn(["/usr/bin/python3"], parent=parent)
    t1, t2 = k.clone_thread(p), k.clone_thread(p)
    f = _flush(k)
    k.exit_group(p)
    # the leader is a zombie: /proc/P stays (and its task/P with it)
    assert sorted(f.drain()) == sorted([("proc", str(t1)), (f"proc/{p}/task", str(t1)),
                                        ("proc", str(t2)), (f"proc/{p}/task", str(t2))])
    assert k.wait(parent, p) == p  # the reap releases the leader
    assert f.drain() == [("proc", str(p))]


def test_a_leader_exiting_first_is_released_with_its_group(k: Kernel) -> None:
    parent = k.spawn(["/usr/bin/bash"])
    p = k.spawn(["/usr/bin/python3"], parent=parent)
    t = k.clone_thread(p)
    f = _flush(k)
    k.exit(p)  # a zombie thread until the group ends: nothing released
    assert f.drain() == []
    k.exit(t)  # the last thread: the group ends, a zombie
    assert f.drain() == [("proc", str(t)), (f"proc/{p}/task", str(t))]
    k.wait(parent)
    assert f.drain() == [("proc", str(p))]


def test_a_child_of_init_is_reaped_at_once(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    f = _flush(k)
    k.kill(p)
    assert f.drain() == [("proc", str(t)), (f"proc/{p}/task", str(t)), ("proc", str(p))]


def test_an_orphaned_zombie_is_reaped_by_init(k: Kernel) -> None:
    parent = k.spawn(["/usr/bin/bash"])
    child = k.spawn(["/usr/bin/sleep"], parent=parent)
    k.exit(child)  # a zombie of `parent`
    f = _flush(k)
    k.exit(parent)  # reparented to init, which reaps it; parent's parent is init too
    assert sorted(f.drain()) == sorted([("proc", str(child)), ("proc", str(parent))])


def test_an_owner_change_drops_every_pid_of_the_group(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    f = _flush(k)
    k.set_cred(p, 1000, 1000)
    assert f.drain() == [("proc", str(p)), ("proc", str(t))]


def test_close_stops_listening(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    f = _flush(k)
    f.close()
    assert f._released not in k.on_release and f._changed not in k.observers
    k.kill(p)
    assert f.drain() == [] and not f.wakes


def test_mountd_forwards_what_procfs_names(k: Kernel, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Invalidator only hands procfs's dentries to libfuse, by the
    parent's node id (fuse_nodeid: from its file handle; here a fake of
    inode numbers, the directories not being on FUSE), skipping parents
    that are gone."""
    fsmod = pytest.importorskip("mountd.fs")
    import mfusepy
    if mfusepy.fuse_version_major != 3:
        pytest.skip("entry invalidation needs libfuse3")
    calls = []
    monkeypatch.setattr(mfusepy._libfuse, "fuse_lowlevel_notify_inval_entry",
                        lambda se, ino, name, n: calls.append((se, ino, name[:n])), raising=False)
    (tmp_path / "proc").mkdir()

    def nodeid(path: str) -> int | None:
        try:
            return os.stat(path).st_ino
        except FileNotFoundError:
            return None
    monkeypatch.setattr(fsmod, "fuse_nodeid", nodeid)
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    (tmp_path / "proc" / str(p) / "task").mkdir(parents=True)
    inval = fsmod.Invalidator(PidFlush(k), str(tmp_path))
    inval._se = 7  # a session, as attach() finds it
    k.exit(t)
    inval.flush()
    proc_ino = (tmp_path / "proc").stat().st_ino
    task_ino = (tmp_path / "proc" / str(p) / "task").stat().st_ino
    assert calls == [(7, proc_ino, str(t).encode()), (7, task_ino, str(t).encode())]
    calls.clear()
    (tmp_path / "proc" / str(p) / "task").rmdir()
    q = k.spawn(["/usr/bin/bash"])
    u = k.clone_thread(q)
    k.kill(q)
    inval.flush()  # proc/Q/task is not there: only the /proc entries go
    assert calls == [(7, proc_ino, str(u).encode()), (7, proc_ino, str(q).encode())]
