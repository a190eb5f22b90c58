"""ProcFS keeps what resolved under the processes a structural change does
not name (kernel.PID_SCOPED, Kernel.struct_log): after any sequence of
process, thread, memory, fd, cwd and credential changes, a ProcFS that kept
its caches through them answers every path exactly as a fresh one does."""

from __future__ import annotations

import errno
import os

from hypothesis import given, settings, strategies as st

from procsim.errors import KernelError
from procsim.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from procsim.procfs.tree import ProcFS

from invariants import boot
from procfs_helpers import NOBODY, ROOT, read_all

PAGE = 4096
FILE = "/srv/data/blob.bin"
# the directories of a process whose names come and go with these changes
SUBDIRS = ("task", "fd", "fdinfo", "map_files")
READ = ("stat", "status", "maps", "cmdline")


def answer(fn, *args):
    try:
        return fn(*args)
    except OSError as e:
        return ("errno", e.errno)


def picture(fs: ProcFS, pids: list[int], caller=ROOT) -> dict:
    """What `fs` says of /proc, of these pids' directories (and their
    threads' /proc/TID), and of the names in them that change."""
    out: dict = {"/proc": answer(fs.readdir, "/proc", caller), "/proc attr": answer(fs.getattr, "/proc", caller)}

    def walk(path: str, depth: int) -> None:
        out[path] = answer(fs.getattr, path, caller)
        names = answer(fs.readdir, path, caller)
        out[path + "/"] = names
        if not isinstance(names, list):
            return
        for n in names:
            p = f"{path}/{n}"
            a = out[p] = answer(fs.getattr, p, caller)
            if isinstance(a, tuple):
                continue
            if a.mode & 0o170000 == 0o120000:
                out[p + " ->"] = answer(fs.readlink, p, caller)
            elif depth and (n in SUBDIRS or n.isdigit()):
                walk(p, depth - 1)
        for f in READ:
            out[f"{path}/{f} bytes"] = answer(read_all, fs, f"{path}/{f}")

    for pid in pids:
        walk(f"/proc/{pid}", 2)
    return out


OPS = ("spawn", "fork", "clone", "exec", "exit", "exit_group", "wait", "mmap", "munmap", "open", "close", "pipe",
       "chdir", "set_cred", "advance")


def apply(k, op: str, i: int) -> None:
    groups = [pid for pid, tg in sorted(k.groups.items()) if tg.mm is not None and pid != 1]
    tids = [t.pid for pid in groups for t in k.groups[pid].threads if not t.dead]
    pid = groups[i % len(groups)] if groups else None
    tid = tids[i % len(tids)] if tids else None
    try:
        if op == "spawn" or pid is None:
            k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
        elif op == "fork":
            k.fork(tid)
        elif op == "clone":
            k.clone_thread(tid)
        elif op == "exec":
            k.exec(tid, "/usr/bin/cat", ["cat"])
        elif op == "exit":
            k.exit(tid)
        elif op == "exit_group":
            k.exit_group(tid)
        elif op == "wait":
            k.wait(pid)
        elif op == "mmap":
            if i % 2:  # a file mapping: a new name in map_files/
                k.mmap(tid, (1 + i % 4) * PAGE, PROT_READ, MAP_PRIVATE, path=FILE)
            else:
                k.mmap(tid, (1 + i % 4) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        elif op == "munmap":
            v = list(k.tasks[tid].mm.vmas)[i % len(k.tasks[tid].mm.vmas)]
            k.munmap(tid, v.start, PAGE)
        elif op == "open":
            k.open(tid, "/etc/passwd")
        elif op == "close":
            k.close(tid, i % 6)
        elif op == "pipe":
            k.pipe(tid)
        elif op == "chdir":
            k.chdir(tid, "/tmp" if i % 2 else "/")
        elif op == "set_cred":
            k.set_cred(pid, 1000 + i % 3, 1000)
        else:
            k.advance(0.25)
    except (KernelError, OSError):
        pass  # a failed call changes nothing (tested elsewhere); the caches must still agree


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 40)), min_size=1, max_size=14))
def test_kept_caches_answer_as_a_fresh_procfs(steps: list[tuple[str, int]]) -> None:
    k = boot()
    k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    k.spawn(["/usr/bin/sleep", "9"])
    kept = ProcFS(k)
    seen: set[int] = set()
    for op, i in steps:
        seen.update(k.tasks)
        pids = sorted(seen)
        picture(kept, pids)  # fill the caches of every process, as ps and lsof do
        picture(kept, pids, NOBODY)
        apply(k, op, i)
        seen.update(k.tasks)
        pids = sorted(seen)  # gone ones too: their ENOENT must show at once
        assert picture(kept, pids) == picture(ProcFS(k), pids), (op, i)
        assert picture(kept, pids, NOBODY) == picture(ProcFS(k), pids, NOBODY), (op, i)


def test_a_change_in_one_process_keeps_the_others_resolution() -> None:
    """What the scoping is for: an mmap in one process of many leaves the
    nodes of the others as they were (a 10,000-process ps re-walks nothing
    but what changed), and the mapping shows in the mapper's map_files/."""
    k = boot()
    a = k.spawn(["/usr/bin/bash"])
    b = k.spawn(["/usr/bin/bash"])
    fs = ProcFS(k)
    node_b = fs.resolve(f"/proc/{b}/stat", ROOT)
    node_a = fs.resolve(f"/proc/{a}/stat", ROOT)
    before = fs.readdir(f"/proc/{a}/map_files", ROOT)
    addr = k.mmap(a, PAGE, PROT_READ, MAP_PRIVATE, path=FILE)
    assert fs.resolve(f"/proc/{b}/stat", ROOT) is node_b
    assert fs.resolve(f"/proc/{a}/stat", ROOT) is not node_a
    assert f"{addr:x}-{addr + PAGE:x}" in set(fs.readdir(f"/proc/{a}/map_files", ROOT)) - set(before)
    # a change the log cannot confine (a sysctl: machine-wide) drops everything
    fs.open("/proc/sys/vm/overcommit_memory", os.O_WRONLY, ROOT).write(b"1", 0)
    assert fs.resolve(f"/proc/{b}/stat", ROOT) is not node_b
    # and an exit drops the pid's own at once
    k.exit_group(a)
    assert fs.resolve(f"/proc/{b}/stat", ROOT) is fs.resolve(f"/proc/{b}/stat", ROOT)
    try:
        fs.resolve(f"/proc/{a}/stat", ROOT)
        raise AssertionError("an exited process still resolves")
    except OSError as e:
        assert e.errno == errno.ENOENT
