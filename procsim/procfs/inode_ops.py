"""The inode operations besides lookup, read and write: what the VFS asks
of procfs, sysctl and kernfs inodes once it has done its own checks (a name
that exists is EEXIST, a directory is EISDIR, mode bits for non-root). Each
answer was taken from a 6.18 kernel (tests/integration/test_fuse_errors.py
compares them). A mixin of ProcFS (procsim/procfs/tree.py), which supplies
the resolution (_node, getattr) and the lock."""

from __future__ import annotations

import errno
import os
import stat as S
from typing import TYPE_CHECKING

from procsim.procfs.base import TGID_DIR, TID_DIR
from procsim.procfs.context import Caller
from procsim.procfs.kinds import Bin, Node, WriteOnly

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.procfs.tree import Attr

_PID_DIRS = (TGID_DIR, TID_DIR)


def _top(path: str) -> str:
    """The mount a path is in: proc or sys."""
    return path.strip("/").split("/", 1)[0]


class InodeOps:
    """setattr, fsync, xattrs, new names, rename, unlink, rmdir, lseek."""

    kernel: "Kernel"

    if TYPE_CHECKING:  # ProcFS's
        def _sync(self, follow: bool) -> None: ...
        def _node(self, path: str, caller: Caller) -> Node: ...
        def getattr(self, path: str, caller: Caller) -> "Attr": ...

    def _family(self, path: str, caller: Caller) -> tuple[str, Node]:
        """Which inode operations serve `path`: "piddir" (/proc/PID,
        /proc/PID/task/TID: no attribute or xattr change), "pid" (what is
        in those, task/ included: proc_setattr), "sysctl" (/proc/sys), "sysfs" (kernfs), "link" or
        "proc" (the rest of /proc: proc_dir_entry inodes)."""
        with self.kernel.lock:
            self._sync(False)
            n = self._node(path, caller)
        if n.kind == "link":
            return "link", n
        if n.observer is not None or n.entry in _PID_DIRS:
            return "piddir", n
        if n.task is not None:
            return "pid", n
        top = path.strip("/").split("/")
        if top[0] == "sys":
            return "sysfs", n
        if top[:2] == ["proc", "sys"]:
            return "sysctl", n
        return "proc", n

    @staticmethod
    def _sysctl_ro(fam: str, n: Node) -> bool:
        """A sysctl inode root may not write (proc_sys_permission): a
        directory, or a file without write bits."""
        return fam == "sysctl" and (n.kind == "dir" or n.entry.deny_write)

    def setattr(self, path: str, caller: Caller, *, mode: int | None = None, uid: int = -1, gid: int = -1,
                times: bool = False, size: int | None = None) -> None:
        """chmod (mode), chown (uid/gid, -1: unchanged), utimens (times),
        truncate (size). Owner and mode of a /proc or /sys entry may be set
        to what they are (Linux would keep other values in the
        proc_dir_entry or kernfs node; we refuse them, EPERM); times are
        accepted and not kept (an inode's times are not modelled)."""
        fam, n = self._family(path, caller)
        a = self.getattr(path, caller)
        if fam == "piddir" and (mode is not None or uid != -1 or gid != -1 or times):
            raise OSError(errno.EPERM, path)  # the pid directories' inodes refuse any change
        if mode is not None:
            if fam in ("pid", "sysctl", "piddir"):
                raise OSError(errno.EPERM, path)  # proc_setattr, proc_sys_setattr: no ATTR_MODE
            if mode & 0o7777 != a.mode & 0o7777:
                raise OSError(errno.EPERM, path)
        if uid != -1 or gid != -1:
            if fam == "sysctl":
                raise OSError(errno.EPERM, path)  # proc_sys_setattr: no ATTR_UID/ATTR_GID
            if fam in ("proc", "sysfs") and (uid not in (-1, a.uid) or gid not in (-1, a.gid)):
                raise OSError(errno.EPERM, path)
            # pid files: accepted, and stat keeps showing the task's owner (pid_getattr)
        if size is not None and self._sysctl_ro(fam, n):
            raise OSError(errno.EACCES, path)

    def fsync(self, path: str, caller: Caller) -> None:
        """fsync/fdatasync: procfs and sysctl files and every directory have
        no ->fsync (EINVAL); kernfs files have noop_fsync."""
        fam, n = self._family(path, caller)
        if not (fam == "sysfs" and n.kind == "file"):
            raise OSError(errno.EINVAL, path)

    def listxattr(self, path: str, caller: Caller) -> tuple[str, ...]:
        """No xattrs anywhere (and, without an LSM, no security ones)."""
        self._family(path, caller)
        return ()

    def getxattr(self, path: str, name: str, caller: Caller) -> bytes:
        """procfs has no xattr handlers (EOPNOTSUPP); kernfs has them, with
        nothing stored (ENODATA); sockfs only system.sockprotoname."""
        fam, n = self._family(path, caller)
        proto = getattr(n.entry, "sockprotoname", b"")
        if proto:  # a socket fd's target (procfs/fd.py): sockfs answers this one name, ENODATA others
            if name == "system.sockprotoname":
                return proto
            raise OSError(errno.ENODATA, path)
        # (kernfs has no system.* handler: POSIX ACLs are EOPNOTSUPP there too)
        kernfs = fam == "sysfs" and not name.startswith("system.")
        raise OSError(errno.ENODATA if kernfs else errno.EOPNOTSUPP, path)

    def setxattr(self, path: str, name: str, caller: Caller, replace: bool = False) -> None:
        """setxattr (replace: XATTR_REPLACE) and removexattr (replace=True)."""
        fam, n = self._family(path, caller)
        if fam == "piddir":
            raise OSError(errno.EPERM, path)
        user = name.startswith("user.")
        if user and self._sysctl_ro(fam, n):
            raise OSError(errno.EACCES, path)  # xattr_permission: user.* needs MAY_WRITE
        if fam == "sysfs" and not user and replace:
            raise OSError(errno.ENODATA, path)  # kernfs: no such xattr to replace or remove
        # (kernfs would store a new trusted.* or security.* xattr: not modelled)
        raise OSError(errno.EOPNOTSUPP, path)

    def new_name(self, op: str, path: str, caller: Caller, mode: int = 0, source: str | None = None) -> None:
        """mkdir, mknod, create, symlink, link (from `source`) of a name
        that does not exist: always an error. procfs and sysctl lookups
        fail for unknown names (ENOENT) before any inode operation is
        asked; kernfs gives a negative dentry, and then has no such op."""
        parent = path.rsplit("/", 1)[0] or "/"
        fam, _ = self._family(parent, caller)
        if fam != "sysfs":
            raise OSError(errno.ENOENT, path)
        if op == "link" and source is not None and _top(source) != _top(path):
            raise OSError(errno.EXDEV, path)  # /proc and /sys are two mounts
        # vfs_create without ->create is EACCES; mkdir (kernfs_iop_mkdir
        # without a syscall op), mknod, symlink, link: EPERM
        creates = op == "create" or (op == "mknod" and S.S_ISREG(mode))
        raise OSError(errno.EACCES if creates else errno.EPERM, path)

    def rename(self, old: str, new: str, caller: Caller) -> None:
        """rename: never possible. Across /proc and /sys: EXDEV; to a new
        name in /proc: its lookup fails (ENOENT); otherwise the directory's
        write permission (sysctl: EACCES), then no ->rename (EPERM)."""
        fam, _ = self._family(old, caller)
        if _top(old) != _top(new):
            raise OSError(errno.EXDEV, new)
        try:
            self.getattr(new, caller)
        except OSError:
            if fam != "sysfs":
                raise OSError(errno.ENOENT, new) from None
        self._remove(old, caller)

    def _remove(self, path: str, caller: Caller) -> None:
        parent = path.rsplit("/", 1)[0] or "/"
        pfam, pn = self._family(parent, caller)
        if self._sysctl_ro(pfam, pn):
            raise OSError(errno.EACCES, path)  # may_delete: no MAY_WRITE on a sysctl directory
        raise OSError(errno.EPERM, path)

    def unlink(self, path: str, caller: Caller) -> None:
        self._remove(path, caller)

    def rmdir(self, path: str, caller: Caller) -> None:
        if path.strip("/") in ("proc", "sys"):
            raise OSError(errno.EBUSY, path)  # a mount's root
        self._remove(path, caller)

    def lseek(self, path: str, caller: Caller, offset: int, whence: int) -> int:
        """SEEK_DATA and SEEK_HOLE (FUSE answers SEEK_SET/CUR/END itself):
        seq_lseek and mem_lseek refuse them (EINVAL); sysctl files
        (default_llseek, i_size 0) have no data (ENXIO); kernfs attributes
        are one page long (generic_file_llseek); clear_refs has noop_llseek."""
        fam, n = self._family(path, caller)
        if n.kind == "dir":
            raise OSError(errno.ENXIO, path)  # generic: a directory's i_size is 0
        e = n.entry
        if fam == "sysctl":
            size = 0
        elif fam == "sysfs":
            size = 0 if isinstance(e, Bin) else 4096  # bin attributes: their size (page_idle: 0)
        elif isinstance(e, WriteOnly):
            return 0  # write-only clear_refs: the position stays 0
        else:
            raise OSError(errno.EINVAL, path)
        if offset < 0 or offset >= size:
            raise OSError(errno.ENXIO, path)
        return offset if whence == os.SEEK_DATA else size
