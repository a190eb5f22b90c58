"""The pids controller's counter (procsim/cgroup/pids.py): pids.current is
charged at fork and clone, moved by migration and uncharged at release,
so it must always equal a count of the task table itself. Random
sequences of forks, threads, exits (leader first or last), kills, reaps,
execs from a non-leader thread, migrations and cgroup mkdir/rmdir are
applied, and after every step each cgroup's pids.current, pids.peak and
pids.max's refusals are checked against a brute-force walk of the tree."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from invariants import boot
from procfs_helpers import ROOT, read_all
from procsim.cgroup import syscalls as C
from procsim.cgroup.core import PIDS_MAX
from procsim.errors import KernelError
from procsim.kernel import Kernel
from procsim.procfs.tree import ProcFS

CG = "/sys/fs/cgroup"
PATHS = ("/a.slice", "/a.slice/x.service", "/a.slice/y.service", "/b.slice", "/b.slice/z.service")
LEAVES = ("/", "/a.slice/x.service", "/a.slice/y.service", "/b.slice/z.service")


def brute_count(k: Kernel, path: str) -> int:
    """The tasks in the task table whose group is listed in cgroup.procs of
    `path` or a cgroup below it (the members' threads and zombies)."""
    cg = k.cgroups.cgroups[path]
    n = 0
    for c in (cg, *k.cgroups.descendants(cg)):
        for tgid in c.procs:
            tg = k.groups.get(tgid)
            if tg is not None:
                n += sum(1 for t in tg.threads if k.tasks.get(t.pid) is t)
    return n


def check(k: Kernel, fs: ProcFS, peaks: dict[str, int]) -> None:
    for path, cg in k.cgroups.cgroups.items():
        n = brute_count(k, path)
        assert cg.pids_current == n, path
        if path != "/":
            assert read_all(fs, f"{CG}{path}/pids.current") == f"{n}\n".encode(), path
            # pids.peak: never below any count a fork into its subtree left
            assert cg.pids_peak >= peaks.get(path, 0), path
    # every live task is charged to the cgroup its group is listed in
    for t in k.tasks.values():
        listed = [c for c in k.cgroups.cgroups.values() if t.tgid in c.procs]
        assert t.pids_css is (listed[0] if listed else None), t.pid


def world() -> tuple[Kernel, ProcFS]:
    k = boot()
    for p in PATHS:
        C.mkdir(k, p)  # (a .slice enables cpu io memory pids for its children)
    return k, ProcFS(k)


def user_pids(k: Kernel) -> list[int]:
    return sorted(p for p, g in k.groups.items() if g.mm is not None and not g.zombie and p != 1)


def tids(k: Kernel) -> list[int]:
    return sorted(t for t, task in k.tasks.items() if not task.dead and task.mm is not None and t != 1)


def step(k: Kernel, op: str, i: int, j: int) -> int | None:
    """One call; its failure (EAGAIN of pids.max, ESRCH, EBUSY...) is part of
    the test. Returns the task a fork or clone made."""
    pids, ts = user_pids(k), tids(k)
    pid = pids[i % len(pids)] if pids else None
    tid = ts[i % len(ts)] if ts else None
    if op == "spawn":
        return k.spawn(["/usr/bin/app"], parent=1 if not pids or j % 3 == 0 else pids[j % len(pids)])
    elif op == "fork" and tid is not None:
        return k.fork(tid)
    elif op == "thread" and pid is not None:
        return k.clone_thread(pid)
    elif op == "exit" and tid is not None:
        k.exit(tid, j % 4)
    elif op == "exit_group" and pid is not None:
        k.exit_group(pid, 0)
    elif op == "kill" and pid is not None:
        k.kill(pid, 9)
    elif op == "wait" and pid is not None:
        k.wait(pid)
    elif op == "exec" and tid is not None:
        k.exec(tid, "/usr/bin/other", ["other"])  # from a thread: de_thread, it takes the leader's pid
    elif op == "attach" and pid is not None:
        C.attach(k, pid, LEAVES[j % len(LEAVES)])
    elif op == "rmdir":
        C.rmdir(k, PATHS[j % len(PATHS)])  # EBUSY while populated; a cgroup with zombies only goes
    elif op == "mkdir":
        C.mkdir(k, PATHS[j % len(PATHS)])
    elif op == "pids_max":
        C.write(k, "/a.slice", "pids.max", b"max" if j % 3 == 0 else str(j % 7).encode())
    return None


OPS = ("spawn", "fork", "thread", "exit", "exit_group", "kill", "wait", "exec", "attach", "rmdir", "mkdir",
       "pids_max")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50), st.integers(0, 50)), max_size=60))
def test_pids_current_is_the_task_table_count(steps) -> None:
    k, fs = world()
    peaks: dict[str, int] = {}
    for op, i, j in steps:
        new = None
        try:
            new = step(k, op, i, j)
        except (KernelError, OSError) as e:
            assert e.errno in (errno.EAGAIN, errno.ESRCH, errno.EBUSY, errno.EEXIST, errno.ENOENT, errno.ECHILD,
                               errno.EINVAL), (op, e)
        if new is not None:
            cg = k.cgroups.css_of(k.tasks[new].tg.cgroup, "pids")
            for a in cg.ancestors():
                peaks[a.path] = max(peaks.get(a.path, 0), brute_count(k, a.path))
        check(k, fs, peaks)


def test_threads_and_exits_move_the_count() -> None:
    """A fixed sequence, with the counts written out."""
    k, fs = world()
    pid = k.spawn(["/usr/bin/app"])
    C.attach(k, pid, "/a.slice/x.service")
    t1, t2 = k.clone_thread(pid), k.clone_thread(pid)
    child = k.fork(t1)
    assert [k.cgroups.cgroups[p].pids_current for p in ("/a.slice", "/a.slice/x.service")] == [4, 4]
    C.attach(k, child, "/a.slice/y.service")  # the charge moves: the slice keeps it
    assert [k.cgroups.cgroups[p].pids_current for p in PATHS[:3]] == [4, 3, 1]
    k.exit(pid)  # the leader first: a zombie thread, still counted
    assert k.cgroups.cgroups["/a.slice/x.service"].pids_current == 3
    k.exit(t1)
    k.exit(t2)  # the last thread: the group is a zombie child of init, reaped at once
    assert k.cgroups.cgroups["/a.slice/x.service"].pids_current == 0
    k.exit(child)  # its parent is gone: init reaps it
    assert k.cgroups.cgroups["/a.slice"].pids_current == 0
    check(k, fs, {})


def test_zombie_counts_until_reaped_and_leaves_with_its_rmdir() -> None:
    k, fs = world()
    parent = k.spawn(["/usr/bin/app"])
    z = k.fork(parent)
    C.attach(k, z, "/b.slice/z.service")
    k.exit(z)
    assert k.group(z).zombie
    assert read_all(fs, f"{CG}/b.slice/z.service/pids.current") == b"1\n"  # pids_release() at the reap
    C.rmdir(k, "/b.slice/z.service")  # no live member: it goes, the zombie's count with it
    assert read_all(fs, f"{CG}/b.slice/pids.current") == b"0\n"
    k.wait(parent)
    check(k, fs, {})


def test_pids_max_refuses_at_the_counted_limit() -> None:
    k, fs = world()
    pid = k.spawn(["/usr/bin/app"])
    C.attach(k, pid, "/a.slice/x.service")
    C.write(k, "/a.slice", "pids.max", b"3")
    k.clone_thread(pid)
    k.fork(pid)
    with pytest.raises(KernelError) as e:
        k.clone_thread(pid)
    assert e.value.errno == errno.EAGAIN
    assert read_all(fs, f"{CG}/a.slice/pids.events") == b"max 1\n"
    assert read_all(fs, f"{CG}/a.slice/pids.peak") == b"3\n"
    C.attach(k, pid, "/b.slice/z.service")  # migration is not checked against pids.max
    assert read_all(fs, f"{CG}/a.slice/pids.current") == b"1\n"
    k.fork(pid)
    assert k.cgroups.cgroups["/a.slice"].pids_max == 3 and k.cgroups.cgroups["/b.slice"].pids_max == PIDS_MAX
    check(k, fs, {})
