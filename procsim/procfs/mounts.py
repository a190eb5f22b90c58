"""/proc/PID/mounts, mountinfo and mountstats (fs/proc_namespace.c): the
mount table of the task's mount namespace (procsim/fs/mount.py), one line
per mount, mount order; paths and names escaped as seq_escape does. Only
what is visible under the task's root is shown."""

from __future__ import annotations

import errno

from procsim.fs.mount import Mount, mangle
from procsim.procfs.context import Ctx


def mounts_open(ctx: Ctx) -> None:
    """mounts_open_common(): EINVAL for a task without namespaces (it exited)."""
    t = ctx.task
    if t.nsproxy is None or t.fs is None or t.tg.zombie or t.dead:
        raise OSError(errno.EINVAL, "mounts")


def _mounts(ctx: Ctx) -> list[Mount]:
    t = ctx.task
    if t.fs is None:
        return []  # exited since the open (the seq_file holds the namespace; nothing useful to show)
    root = t.fs.root
    table = ctx.kernel.mnt_ns(t).mounts
    if root == "/":
        return table
    return [m for m in table if m.mountpoint == root or m.mountpoint.startswith(root + "/")]


def _path(m: Mount, root: str) -> str:
    if root == "/":
        return m.mountpoint
    return m.mountpoint[len(root):] or "/"


def _vfs_opts(m: Mount) -> str:
    """show_vfsmnt's options: the mount's, then the superblock's own (past rw/ro)."""
    extra = m.super_opts.split(",", 1)[1] if "," in m.super_opts else ""
    return m.opts + ("," + extra if extra else "")


def mounts(ctx: Ctx) -> bytes:
    """show_vfsmnt(): `source mountpoint type options 0 0`."""
    root = ctx.task.fs.root if ctx.task.fs is not None else "/"
    return "".join(f"{mangle(m.source)} {mangle(_path(m, root))} {mangle(m.fstype)} {_vfs_opts(m)} 0 0\n"
                   for m in _mounts(ctx)).encode()


def mountinfo(ctx: Ctx) -> bytes:
    """show_mountinfo(): `id parent major:minor root mountpoint options
    [optional fields] - type source super-options`."""
    root = ctx.task.fs.root if ctx.task.fs is not None else "/"
    out = []
    for m in _mounts(ctx):
        prop = f" {m.propagation}" if m.propagation else ""
        out.append(f"{m.mnt_id} {m.parent_id} {m.dev[0]}:{m.dev[1]} {mangle(m.root)} {mangle(_path(m, root))} "
                   f"{m.opts}{prop} - {mangle(m.fstype)} {mangle(m.source)} {m.super_opts}\n")
    return "".join(out).encode()


def mountstats(ctx: Ctx) -> bytes:
    """show_vfsstat(): `device S mounted on P with fstype T` (no NFS statistics)."""
    root = ctx.task.fs.root if ctx.task.fs is not None else "/"
    return "".join(f"device {mangle(m.source)} mounted on {mangle(_path(m, root))} with fstype {mangle(m.fstype)}\n"
                   for m in _mounts(ctx)).encode()


def self_mounts(ctx: Ctx) -> str:
    """/proc/mounts: proc_symlink("mounts", NULL, "self/mounts")."""
    return "self/mounts"
