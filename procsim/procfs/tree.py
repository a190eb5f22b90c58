"""The declarative tree: which names exist where, with what mode, and which
render (or write) function serves each file.

A directory is a table of `Entry` rows; per-process directories are the same
table instantiated for each task, as fs/proc/base.c does with tgid_base_stuff
and tid_base_stuff. The FUSE layer only calls `ProcFS` methods.
"""

from __future__ import annotations

import errno
import os
import stat as S
import time
from collections.abc import Callable
from dataclasses import dataclass

from procsim.kernel import Kernel
from procsim.procfs import cpuinfo, interrupts, meminfo, small_files, stat, vmstat
from procsim.procfs import (clear_refs, idle_bitmap, maps, numa_maps, observer, oom, pagemap, pid as P,
                            procmap_query, smaps, sysctl, sysfs_mm)
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.seq_file import SeqFile, SeqOps
from procsim.procfs.uaccess import NO_USER_MEMORY, IoctlArg, UserMemory
from procsim.task import Task

Render = Callable[[Ctx], bytes]
Write = Callable[[Ctx, bytes], int]
PRead = Callable[[Ctx, int, int], bytes]  # (ctx, size, offset)
PWrite = Callable[[Ctx, bytes, int], int]  # (ctx, data, offset)
Ioctl = Callable[[Ctx, int, int, UserMemory], int]  # (ctx, cmd, arg, caller's memory) -> result


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int                      # permission bits (S_IFREG / S_IFDIR added by kind)
    render: Render | None = None   # regular file contents
    write: Write | None = None
    records: bool = False          # multi-record seq_file: whole records, <= 1 page per read
    children: tuple["Entry", ...] | None = None  # a static directory
    write_errno: int = errno.EINVAL  # what a root write to a read-only file gets
    needs_mm: bool = False         # ESRCH at open for zombies and kernel threads
    ptrace_open: bool = False      # EACCES at open unless the reader may ptrace
    # kernfs (sysfs) refuses an open for writing of a file without write
    # bits, even for root; procfs lets it open and fails the write
    write_open_errno: int | None = None
    # binary files read by position (pagemap, kpage*): each read renders
    # only what it covers, nothing is kept
    pread: PRead | None = None
    binds_mm: bool = False         # reads see the mm taken at open (proc_mem_open)
    ioctl: Ioctl | None = None     # the file's unlocked_ioctl; None: every cmd gets ioctl_errno
    # a seq_file read record by record as read() asks, without the kernel
    # lock (maps): its seq_operations for an open file
    seq: Callable[[Ctx], SeqOps] | None = None
    ioctl_errno: int = errno.ENOTTY
    pwrite: PWrite | None = None   # a write by position (the idle bitmaps)
    # a sysctl without write bits: proc_sys_permission refuses MAY_WRITE even
    # to root (EACCES for an open for writing or O_TRUNC, truncate, user.* xattrs)
    deny_write: bool = False

    @property
    def is_dir(self) -> bool:
        return self.children is not None


def _f(name: str, render: Render, mode: int = 0o444, **kw) -> Entry:
    return Entry(name, mode, render, **kw)


def _d(name: str, *children: Entry) -> Entry:
    return Entry(name, 0o555, children=tuple(children))


# /proc/PID and /proc/PID/task/TID (the "task" subdirectory is added by the tree).
_MM_FILE = dict(ptrace_open=True, binds_mm=True)
TGID_ENTRIES = (
    Entry("clear_refs", 0o200, write=clear_refs.write),
    _f("cmdline", P.cmdline),
    _f("comm", P.comm, 0o644),
    _f("environ", P.environ, 0o400, ptrace_open=True),
    _f("maps", maps.render, seq=maps.MapsSeq, ioctl=procmap_query.maps_ioctl, **_MM_FILE),
    _f("numa_maps", numa_maps.numa_maps, seq=numa_maps.NumaMapsSeq, **_MM_FILE),
    Entry("idle_bitmap", 0o600, pread=idle_bitmap.pid_read, pwrite=idle_bitmap.pid_write, needs_mm=True,
          **_MM_FILE),
    _f("oom_adj", oom.oom_adj, 0o644, write=oom.oom_adj_write),
    _f("oom_score", oom.oom_score),
    _f("oom_score_adj", oom.oom_score_adj, 0o644, write=oom.oom_score_adj_write),
    Entry("pagemap", 0o400, pread=pagemap.pagemap, needs_mm=True, ioctl_errno=errno.EINVAL, **_MM_FILE),
    _f("rss_counters", oom.rss_counters, needs_mm=True),  # [ext]
    _f("smaps", smaps.smaps, seq=smaps.SmapsSeq, **_MM_FILE),
    _f("smaps_rollup", smaps.smaps_rollup, needs_mm=True, **_MM_FILE),
    _f("stat", P.stat),
    _f("statm", P.statm),
    _f("status", P.status),
)
TID_ENTRIES = TGID_ENTRIES

# Global files, with the kernel's EIO for writes to them.
_GLOBAL = dict(write_errno=errno.EIO)
PROC_ENTRIES = (
    _f("cpuinfo", cpuinfo.cpuinfo, records=True, **_GLOBAL),
    _f("interrupts", interrupts.interrupts, records=True, **_GLOBAL),
    Entry("kpagecount", 0o400, pread=pagemap.kpagecount, **_GLOBAL),
    Entry("kpageflags", 0o400, pread=pagemap.kpageflags, **_GLOBAL),
    _f("loadavg", stat.loadavg, **_GLOBAL),
    _f("meminfo", meminfo.meminfo, **_GLOBAL),
    _d("procsim", _f("oom_log", oom.oom_log, **_GLOBAL)),  # [ext]
    _f("stat", stat.stat, **_GLOBAL),
    _f("uptime", stat.uptime, **_GLOBAL),
    _f("version", small_files.version, **_GLOBAL),
    _f("vmstat", vmstat.vmstat, **_GLOBAL),
    _d("sys", _d("kernel",
                 _f("osrelease", small_files.osrelease, deny_write=True),
                 Entry("pid_max", 0o644, pread=sysctl.dointvec_read(small_files.pid_max), pwrite=sysctl.pid_max_write),
                 Entry("threads-max", 0o644, pread=sysctl.dointvec_read(small_files.threads_max),
                       pwrite=sysctl.threads_max_write))),
)
_SYSFS_RO = dict(write_open_errno=errno.EACCES)
SYS_ENTRIES = (
    _d("devices", _d("system", _d("cpu",
                                  _f("online", small_files.cpu_online, **_SYSFS_RO),
                                  _f("possible", small_files.cpu_possible, **_SYSFS_RO)))),
    _d("kernel", _d("mm",
                    _d("page_idle", Entry("bitmap", 0o600, pread=idle_bitmap.global_read,
                                          pwrite=idle_bitmap.global_write)),
                    _d("transparent_hugepage",
                       Entry("enabled", 0o644, sysfs_mm.thp_enabled, sysfs_mm.thp_enabled_write),
                       _f("hpage_pmd_size", sysfs_mm.hpage_pmd_size, **_SYSFS_RO),
                       *(_d(f"hugepages-{kb}kB", Entry("enabled", 0o644, *sysfs_mm.size_enabled(kb)))
                         for kb in sysfs_mm.ANON_SIZES_KB)))),
)
ROOT = _d("", _d("proc", *PROC_ENTRIES), _d("sys", *SYS_ENTRIES))


def _top(path: str) -> str:
    """The mount a path is in: proc or sys."""
    return path.strip("/").split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Attr:
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    time: float = 0.0


@dataclass
class Node:
    """A resolved path: an Entry (or a synthesized dir/link) plus its task."""
    kind: str                   # "dir", "file", "link"
    entry: Entry | None = None
    task: Task | None = None
    thread_view: bool = False
    names: Callable[[], list[str]] | None = None  # dir listing
    target: str | None = None   # link target
    observer: str | None = None  # real /proc path served for a caller we do not simulate


# Static lookups: a name -> Entry dict per table, built once (resolution is on
# every FUSE request, so it should be a dict probe rather than a scan).
_TGID_BY_NAME = {e.name: e for e in TGID_ENTRIES}
_TID_BY_NAME = {e.name: e for e in TID_ENTRIES}
_TGID_NAMES = sorted([e.name for e in TGID_ENTRIES] + ["task"])
_TID_NAMES = sorted(e.name for e in TID_ENTRIES)
_TASK_DIR = Entry("task", 0o555, children=())
_CHILDREN: dict[int, dict[str, Entry]] = {}


def _index(e: Entry) -> None:
    _CHILDREN[id(e)] = {c.name: c for c in e.children or ()}
    for c in e.children or ():
        if c.is_dir:
            _index(c)


_index(ROOT)
_PROC = ROOT.children[0]

# Rendered files larger than this are not kept between opens: they are rare
# (maps of huge processes), their handle keeps its own copy while open, and
# holding them would grow the daemon for nothing.
CACHE_MAX_BYTES = 128 * 1024


class ProcFS:
    """The tree and its caches.

    Everything served is a function of the kernel's state, the path and the
    reader. The kernel bumps `generation` on every change (syscalls, clock
    ticks, scenario activity), so within one generation a path resolves to
    the same node, has the same attributes, and a file renders to the same
    bytes: those are cached per generation and dropped at once when it moves.
    A read at offset 0 therefore still "rebuilds" the content (it gets the
    current state) but, in an unchanged world, costs a dict lookup.

    What depends on the reader is keyed by it: rendered bytes by uid (stat
    hides addresses from non-ptracers), and paths resolved through the
    caller's pid (self, thread-self, an observer's own directory) are never
    cached.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._mount_time = 0.0
        self._gen = -1
        self._nodes: dict[str, Node] = {}
        self._attrs: dict[str, Attr] = {}
        self._dirs: dict[str, tuple[str, ...]] = {}
        self._bytes: dict[tuple, bytes] = {}
        self._opens: dict[tuple[str, int], tuple[Entry, Ctx, tuple]] = {}
        # Wall clock: follow real time in steps of one jiffy, as the kernel's
        # tick does; a burst of requests then sees one instant (and shares
        # the caches) instead of advancing the model by a few us per request.
        self._wall = kernel.config.clock == "wall"
        self._jiffy = 1.0 / kernel.config.hz
        self._next_follow = 0.0

    @property
    def mount_time(self) -> float:
        return self._mount_time

    @mount_time.setter
    def mount_time(self, t: float) -> None:
        self._mount_time = t
        self.invalidate()

    def invalidate(self) -> None:
        """Drop every cache (the next request re-resolves and re-renders).
        Not needed after kernel changes, which move `generation`; a safety net
        for callers that change state some other way."""
        with self.kernel.lock:
            self._gen = -1
            self._nodes, self._attrs, self._dirs, self._bytes, self._opens = {}, {}, {}, {}, {}

    def _sync(self, follow: bool) -> None:
        """Under the kernel lock: catch up with the wall clock (if asked and
        due), then drop the caches if the world changed since they were filled."""
        k = self.kernel
        if follow and self._wall:
            now = time.monotonic()
            if now >= self._next_follow:
                self._next_follow = now + self._jiffy
                k.follow_wall()
        if k.generation != self._gen:
            self._gen = k.generation
            self._nodes, self._attrs, self._dirs, self._bytes, self._opens = {}, {}, {}, {}, {}

    # -- resolution -----------------------------------------------------------

    def resolve(self, path: str, caller: Caller) -> Node:
        with self.kernel.lock:
            self._sync(False)
            return self._node(path, caller)

    def _node(self, path: str, caller: Caller) -> Node:
        """The node at `path` (caller under the lock, caches in sync)."""
        n = self._nodes.get(path)
        if n is not None:
            return n
        n, uses_caller = self._walk(path, caller)
        if not uses_caller:
            self._nodes[path] = n
        return n

    def _walk(self, path: str, caller: Caller) -> tuple[Node, bool]:
        """Resolve component by component; also says whether the answer
        depended on who asked (then it must not be cached)."""
        parts = [p for p in path.split("/") if p]
        node = Node("dir", ROOT)
        uses_caller = False
        for i, name in enumerate(parts):
            node, by_caller = self._child(node, name, caller, parts, i)
            uses_caller |= by_caller
        return node, uses_caller

    def _child(self, node: Node, name: str, caller: Caller, parts: list[str], i: int) -> tuple[Node, bool]:
        if node.kind != "dir":
            raise OSError(errno.ENOTDIR, "/".join(parts[: i + 1]))
        if node.observer is not None:
            real = observer.child(node.observer, name)
            return Node("dir" if observer.is_dir(real) else "file", observer=real), True
        k = self.kernel
        if node.entry is _PROC and i == 1:
            if name == "self":
                return Node("link", target=str(self._self_pid(caller))), True
            if name == "thread-self":
                pid = self._self_pid(caller)
                return Node("link", target=f"{pid}/task/{pid}"), True
            if name.isdigit() and name == str(int(name)):
                t = k.tasks.get(int(name))
                if t is not None and not (t.dead and not t.is_leader):
                    return self._pid_dir(t, thread_view=False), False
                if int(name) == caller.pid:
                    real = observer.real_path(caller.pid)
                    observer.lstat(real)
                    return Node("dir", observer=real), True
                raise OSError(errno.ENOENT, name)
        if node.task is not None and node.entry is None:
            # inside /proc/PID or /proc/PID/task/TID
            t = node.task
            if not node.thread_view and name == "task":
                return Node("dir", task=t, names=lambda: [str(x.pid) for x in t.tg.threads],
                            entry=_TASK_DIR), False
            e = (_TID_BY_NAME if node.thread_view else _TGID_BY_NAME).get(name)
            if e is not None:
                return Node("dir" if e.is_dir else "file", e, t, node.thread_view), False
            raise OSError(errno.ENOENT, name)
        if node.task is not None and node.entry is _TASK_DIR:
            if name.isdigit():
                for x in node.task.tg.threads:
                    if str(x.pid) == name:
                        return self._pid_dir(x, thread_view=True), False
            raise OSError(errno.ENOENT, name)
        e = _CHILDREN[id(node.entry)].get(name) if node.entry is not None else None
        if e is not None:
            return Node("dir" if e.is_dir else "file", e), False
        raise OSError(errno.ENOENT, name)

    @staticmethod
    def _pid_dir(t: Task, thread_view: bool) -> Node:
        return Node("dir", None, t, thread_view)

    def _self_pid(self, caller: Caller) -> int:
        return caller.pid

    # -- operations the FUSE layer calls ----------------------------------------

    def getattr(self, path: str, caller: Caller) -> Attr:
        with self.kernel.lock:
            self._sync(False)
            a = self._attrs.get(path)
            if a is not None:
                return a
            n, uses_caller = self._walk(path, caller)
            a = self._attr(n)
            if not uses_caller:
                self._attrs[path] = a
            return a

    def _attr(self, n: Node) -> Attr:
        if n.observer is not None:
            st = observer.lstat(n.observer)
            return Attr(st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime)
        uid = gid = 0
        if n.task is not None:
            c = n.task.tg.cred
            if n.task.tg.dumpable:
                uid, gid = c.euid, c.egid
        t = self._mount_time
        if n.kind == "link":
            return Attr(S.S_IFLNK | 0o777, 0, 0, 1, t)
        if n.kind == "dir":
            nlink = 2
            if n.task is not None and n.entry is None:
                nlink = 3 if not n.thread_view else 2
            elif n.task is not None:
                nlink = 2 + len(n.task.tg.threads)
            elif n.entry is not None:
                nlink = 2 + sum(1 for e in n.entry.children or () if e.is_dir)
            return Attr(S.S_IFDIR | 0o555, uid, gid, nlink, t)
        return Attr(S.S_IFREG | n.entry.mode, uid, gid, 1, t)

    def readdir(self, path: str, caller: Caller) -> list[str]:
        """The names in `path` (a fresh list: the caller may change it)."""
        return list(self.listing(path, caller))

    def listing(self, path: str, caller: Caller) -> tuple[str, ...]:
        """The names in `path`, as an immutable tuple: the same object while
        the world does not change, so callers may key their own caches on it."""
        with self.kernel.lock:
            self._sync(False)
            names = self._dirs.get(path)
            if names is not None:
                return names
            n, uses_caller = self._walk(path, caller)
            names = tuple(self._list(n, path))
            if not uses_caller:
                self._dirs[path] = names
            return names

    def _list(self, n: Node, path: str) -> list[str]:
        if n.kind != "dir":
            raise OSError(errno.ENOTDIR, path)
        if n.observer is not None:
            return observer.listdir(n.observer)
        if n.names is not None:
            return n.names()
        if n.task is not None and n.entry is None:
            return list(_TID_NAMES if n.thread_view else _TGID_NAMES)
        names = [e.name for e in n.entry.children or ()]
        if n.entry is _PROC:
            pids = [str(p) for p in sorted(self.kernel.groups)]
            return names + ["self", "thread-self"] + pids
        return names

    def readlink(self, path: str, caller: Caller) -> str:
        with self.kernel.lock:
            self._sync(False)
            n = self._node(path, caller)
            if n.kind != "link":
                raise OSError(errno.EINVAL, path)
            return n.target

    # -- inode operations besides lookup, read and write ---------------------
    #
    # What the VFS asks of procfs, sysctl and kernfs inodes once it has done
    # its own checks (a name that exists is EEXIST, a directory is EISDIR,
    # mode bits for non-root). Each answer was taken from a 6.18 kernel
    # (tests/integration/test_fuse_errors.py compares them).

    def _family(self, path: str, caller: Caller) -> tuple[str, Node]:
        """Which inode operations serve `path`: "piddir" (/proc/PID,
        /proc/PID/task/TID: no attribute or xattr change), "taskdir", "pid"
        (files in those), "sysctl" (/proc/sys), "sysfs" (kernfs), "link" or
        "proc" (the rest of /proc: proc_dir_entry inodes)."""
        with self.kernel.lock:
            self._sync(False)
            n = self._node(path, caller)
        if n.kind == "link":
            return "link", n
        if n.task is not None or n.observer is not None:
            if n.entry is None:
                return "piddir", n
            return ("taskdir" if n.entry is _TASK_DIR else "pid"), n
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
            if fam in ("pid", "taskdir", "sysctl", "piddir"):
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
        nothing stored (ENODATA)."""
        fam, _ = self._family(path, caller)
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
            size = 0 if e.pread is not None else 4096  # bin attributes: their size (page_idle: 0)
        elif e is not None and e.render is None and e.pread is None and e.pwrite is None:
            return 0  # write-only clear_refs: the position stays 0
        else:
            raise OSError(errno.EINVAL, path)
        if offset < 0 or offset >= size:
            raise OSError(errno.ENXIO, path)
        return offset if whence == os.SEEK_DATA else size

    def follow_nowait(self) -> None:
        """Catch up with the wall clock (due activity runs) for a reader that
        takes no kernel lock: only if no writer holds it now (one that does
        is changing the world anyway), so the reader never waits for it."""
        if self._wall and time.monotonic() >= self._next_follow and self.kernel.lock.acquire(blocking=False):
            try:
                self._sync(True)
            finally:
                self.kernel.lock.release()

    def _current(self) -> bool:
        """Lock-free: are the caches those of the world as it is now? (A
        command running on the control thread may be half-way; answering
        from the state before it is what a read racing it would see anyway.)"""
        return self._gen == self.kernel.generation and (
            not self._wall or time.monotonic() < self._next_follow)

    def open(self, path: str, flags: int, caller: Caller) -> "Handle | observer.ObserverHandle":
        k = self.kernel
        if self._gen == k.generation and (not self._wall or time.monotonic() < self._next_follow):
            # (_current(), inlined: this is every open.) Opened before by
            # this uid in this generation: every check (existence, mm,
            # ptrace) depends on nothing else, so it passes again.
            plan = self._opens.get((path, caller.uid))
            if plan is not None:
                e, ctx, key = plan
                if e.write_open_errno and flags & os.O_ACCMODE:
                    raise OSError(e.write_open_errno, path)
                if e.deny_write and flags & (os.O_ACCMODE | os.O_TRUNC):
                    raise OSError(errno.EACCES, path)
                if flags & os.O_DIRECT:
                    raise OSError(errno.EINVAL, path)
                if ctx.caller is not caller:
                    ctx = Ctx(k, caller, ctx.task, ctx.thread_view, ctx.mm)
                return Handle(k, e, ctx, flags, self, key)
        with k.lock:
            self._sync(True)
            n, uses_caller = self._walk(path, caller)
            if n.observer is not None:
                if flags & os.O_ACCMODE != os.O_RDONLY:
                    raise OSError(errno.EACCES, path)
                if flags & os.O_DIRECT:
                    raise OSError(errno.EINVAL, path)
                return observer.ObserverHandle(n.observer)
            if n.kind == "dir":
                raise OSError(errno.EISDIR, path)
            e = n.entry
            if e.write_open_errno and flags & os.O_ACCMODE:
                raise OSError(e.write_open_errno, path)
            if e.deny_write and flags & (os.O_ACCMODE | os.O_TRUNC):
                raise OSError(errno.EACCES, path)
            t = n.task
            ctx = Ctx(k, caller, t, n.thread_view)
            if t is not None:
                if e.needs_mm and (t.mm is None or t.dead):
                    raise OSError(errno.ESRCH, path)
                if e.ptrace_open and not ctx.may_ptrace():
                    raise OSError(errno.EACCES, path)
                if e.binds_mm:
                    ctx.mm = maps.task_mm(ctx)
            # ids, not the objects: Entry hashes all its fields. The task
            # object, not its pid: a handle kept open across the pid's reuse
            # must not be served the new process's bytes (a live task's id is
            # unique, and the cache only holds tasks of this generation); the
            # mm too, for a file opened before an exec. Renders see the
            # reader only through its uid (may_ptrace).
            key = (id(e), id(t), id(ctx.mm), n.thread_view, caller.uid)
            if not uses_caller:
                self._opens[(path, caller.uid)] = (e, ctx, key)
            if flags & os.O_DIRECT:
                # no procfs or sysfs file has FMODE_CAN_ODIRECT (do_dentry_open)
                raise OSError(errno.EINVAL, path)
            return Handle(k, e, ctx, flags, self, key)

    def content(self, h: "Handle") -> bytes:
        """The bytes of an open file as of now (a read at offset 0)."""
        if self._current():
            b = self._bytes.get(h.key)
            if b is not None:
                return b
        k = self.kernel
        with k.lock:
            self._sync(True)
            b = self._bytes.get(h.key)
            if b is None:
                t = h.ctx.task
                if t is not None and k.tasks.get(t.pid) is not t:
                    # the fd holds the old task (struct pid): reaped, even if
                    # its number now belongs to someone else
                    raise OSError(errno.ESRCH, h.entry.name)
                b = h.entry.render(h.ctx)
                if len(b) <= CACHE_MAX_BYTES:
                    self._bytes[h.key] = b
            return b


class Handle:
    """One open file description: the seq_file buffer of §1.3. (A plain
    slotted class: one is made per open, on the FUSE hot path.)"""

    __slots__ = ("kernel", "entry", "ctx", "flags", "buf", "fs", "key", "seqf")

    def __init__(self, kernel: Kernel, entry: Entry, ctx: Ctx, flags: int,
                 fs: ProcFS | None = None, key: tuple | None = None) -> None:
        self.kernel = kernel
        self.entry = entry
        self.ctx = ctx
        self.flags = flags
        self.buf: bytes | None = None
        self.fs = fs      # the ProcFS whose render cache serves offset-0 reads
        self.key = key    # this file's key in that cache
        self.seqf: SeqFile | None = None

    def read(self, size: int, offset: int) -> bytes:
        if self.entry.pread is not None:
            with self.kernel.lock:
                return self.entry.pread(self.ctx, size, offset)
        if self.entry.seq is not None:
            if self.fs is not None:
                self.fs.follow_nowait()
            if self.seqf is None:
                self.seqf = SeqFile(self.entry.seq(self.ctx))
            return self.seqf.read(size, offset)
        buf = self.buf
        if offset == 0 or buf is None:
            buf = None
            fs = self.fs
            if fs is not None and fs._gen == self.kernel.generation and not fs._wall:
                # the world has not changed since this file was last rendered
                # (ProcFS._current, inlined: this is every small read)
                buf = fs._bytes.get(self.key)
            if buf is None:
                buf = self._render()
            self.buf = buf
        data = buf[offset : offset + size]
        if self.entry.records and len(data) > 4096:
            # one page of whole records per read, as seq_file returns them
            cut = data.rfind(b"\n", 0, 4096)
            if cut >= 0:
                data = data[: cut + 1]
        return data

    def _render(self) -> bytes:
        if self.entry.render is None:
            raise OSError(errno.EINVAL, self.entry.name)
        if self.fs is not None:
            return self.fs.content(self)
        k = self.kernel  # a handle made by hand: no caches
        with k.lock:
            k.follow_wall()
            t = self.ctx.task
            if t is not None and k.tasks.get(t.pid) is not t:
                raise OSError(errno.ESRCH, self.entry.name)
            return self.entry.render(self.ctx)

    def write(self, data: bytes, offset: int) -> int:
        pw = self.entry.pwrite
        if pw is not None:
            with self.kernel.lock:
                n = pw(self.ctx, data, offset)
                self.kernel.generation += 1
                return n
        w = self.entry.write
        if w is None:
            raise OSError(self.entry.write_errno, self.entry.name)
        with self.kernel.lock:
            n = w(self.ctx, data)
            # a write changes what files show: make sure caches see it even
            # if the writer did not go through a kernel call that says so
            self.kernel.generation += 1
            return n

    def ioctl(self, cmd: int, data: bytearray, arg: int = 0, mem: UserMemory | None = None) -> int:
        """`data`: the argument bytes the transport copied in from `arg` (a
        restricted FUSE ioctl: _IOC_SIZE(cmd) of them), changed in place for
        the copy back; `mem`: the caller's memory, for the rest. No kernel
        lock: ioctls that need one take it (PROCMAP_QUERY does not)."""
        fn = self.entry.ioctl
        if fn is None:
            raise OSError(self.entry.ioctl_errno, self.entry.name)
        return fn(self.ctx, cmd, arg, IoctlArg(arg, data, mem or NO_USER_MEMORY))

    def release(self) -> None:
        self.buf = self.seqf = None
