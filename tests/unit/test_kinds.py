"""The kinds of rows (procfs/kinds.py) and the tables made of them: each
row is one name with one behaviour, and a new per-process file or link is
one row."""

from __future__ import annotations

import errno
import os
import stat as S

import pytest

from procsim.procfs import base, inode_ops, root
from procsim.procfs.kinds import Bin, Dir, DynDir, Link, PtraceShow, Seq, Show, WriteOnly
from procsim.procfs.tree import ProcFS

from procfs_helpers import ROOT, errno_of, read_all

KIND_OF = {Show: "file", PtraceShow: "file", Seq: "file", Bin: "file", WriteOnly: "file", Dir: "dir", DynDir: "dir", Link: "link"}


def test_every_row_is_the_node_of_its_name(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    for d, rows in ((f"/proc/{p}", base.TGID_ENTRIES), (f"/proc/{p}/task/{t}", base.TID_ENTRIES),
                    ("/proc", root.PROC_ENTRIES)):
        names = fs.readdir(d, ROOT)
        assert names[:len(rows)] == [e.name for e in rows]
        for e in rows:
            n = fs.resolve(f"{d}/{e.name}", ROOT)
            assert n.entry is e and n.kind == KIND_OF[type(e)], e.name
    assert fs.resolve(f"/proc/{p}/task/{t}/status", ROOT).task.pid == t
    assert errno_of(fs.resolve, f"/proc/{p}/task/{t}/task", ROOT) == errno.ENOENT  # no task/ in a thread's dir


def test_one_row_adds_a_per_process_file_and_link(fs: ProcFS, monkeypatch: pytest.MonkeyPatch) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"], uid=1000, gid=100)
    rows = (*base.TGID_ENTRIES,
            Show("zz_pid", lambda ctx: f"{ctx.task.pid}\n".encode()),
            Link("zz_parent", lambda ctx: str(ctx.task.tg.parent.tgid)))
    pid_dir = Dir("PID", rows)
    monkeypatch.setattr(root, "TGID_DIR", pid_dir)
    monkeypatch.setattr(inode_ops, "_PID_DIRS", (pid_dir, base.TID_DIR))
    fs.invalidate()
    assert fs.readdir(f"/proc/{p}", ROOT)[-2:] == ["zz_pid", "zz_parent"]
    assert read_all(fs, f"/proc/{p}/zz_pid") == f"{p}\n".encode()
    a = fs.getattr(f"/proc/{p}/zz_pid", ROOT)
    assert (a.mode, a.uid, a.gid, a.nlink) == (S.S_IFREG | 0o444, 1000, 100, 1)
    assert fs.readlink(f"/proc/{p}/zz_parent", ROOT) == "1"
    assert fs.getattr(f"/proc/{p}/zz_parent", ROOT).mode == S.S_IFLNK | 0o777
    # procfs opens a read-only file for writing; the write fails
    assert errno_of(fs.open(f"/proc/{p}/zz_pid", os.O_WRONLY, ROOT).write, b"1", 0) == errno.EINVAL
    # the directory is still a pid directory to the inode operations
    assert errno_of(lambda: fs.setattr(f"/proc/{p}", ROOT, times=True)) == errno.EPERM
    fs.setattr(f"/proc/{p}/zz_pid", ROOT, times=True)  # a file in it: accepted
    assert errno_of(lambda: fs.setattr(f"/proc/{p}/zz_pid", ROOT, mode=0o444)) == errno.EPERM


def _host_errno(fn, *args) -> int | None:
    try:
        fd = fn(*args)
    except OSError as e:
        return e.errno
    os.close(fd)
    return None


def test_open_of_a_symlink_itself_is_eloop(fs: ProcFS) -> None:
    # (the VFS follows links before FUSE is asked; O_NOFOLLOW is the open of the link itself)
    want = _host_errno(os.open, "/proc/self", os.O_RDONLY | os.O_NOFOLLOW)
    assert want == errno.ELOOP
    assert errno_of(fs.open, "/proc/self", os.O_RDONLY, ROOT) == want
    assert errno_of(fs.open, "/proc/thread-self", os.O_RDONLY, ROOT) == want


def test_write_only_file_reads_einval_like_the_host(fs: ProcFS) -> None:
    fd = os.open("/proc/self/clear_refs", os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            os.read(fd, 64)
        want = e.value.errno
    finally:
        os.close(fd)
    p = fs.kernel.spawn(["/usr/bin/bash"])
    h = fs.open(f"/proc/{p}/clear_refs", os.O_RDWR, ROOT)
    assert errno_of(h.read, 64, 0) == want == errno.EINVAL
    assert h.write(b"1\n", 0) == 2


def test_bin_file_without_a_positional_write_refuses_writes(fs: ProcFS) -> None:
    h = fs.open("/proc/kpagecount", os.O_RDWR, ROOT)
    gen = fs.kernel.generation
    assert errno_of(h.write, b"\0" * 8, 0) == errno.EIO  # a global file: EIO
    assert fs.kernel.generation == gen  # a refused write changes nothing


def test_dynamic_directories_list_rows_then_their_own_names(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    threads = [p, k.clone_thread(p), k.clone_thread(p)]
    assert fs.readdir(f"/proc/{p}/task", ROOT) == [str(t) for t in threads]
    assert fs.getattr(f"/proc/{p}/task", ROOT).nlink == 2 + 3
    # pid_entry_nlink(): 2 + its subdirectories (attr, fd, fdinfo, map_files, net, ns, task), as a 6.18 host
    assert fs.getattr(f"/proc/{p}", ROOT).nlink == 2 + 7
    assert fs.getattr(f"/proc/{p}/task/{threads[1]}", ROOT).nlink == 2 + 5  # attr, fd, fdinfo, net, ns
    names = fs.readdir("/proc", ROOT)
    static = [e.name for e in root.PROC_ENTRIES]
    assert names[:len(static)] == static and static[-2:] == ["self", "thread-self"]
    assert names[len(static):] == [str(g) for g in sorted(k.groups)]
    assert errno_of(fs.resolve, f"/proc/{p}/task/{p + 100}", ROOT) == errno.ENOENT
    assert errno_of(fs.resolve, f"/proc/0{p}", ROOT) == errno.ENOENT  # not the pid's canonical name


def test_links_are_resolved_per_caller(fs: ProcFS) -> None:
    from procsim.procfs.context import Caller
    a, b = Caller(1, 0, 0), Caller(2, 0, 0)
    assert fs.readlink("/proc/self", a) == "1"
    assert fs.readlink("/proc/self", b) == "2"  # not the cached answer for a
    assert fs.readlink("/proc/thread-self", b) == "2/task/2"
