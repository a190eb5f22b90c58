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
from collections.abc import Callable
from dataclasses import dataclass, field

from procsim.kernel import Kernel
from procsim.procfs import global_files as G
from procsim.procfs import maps, observer, pid as P
from procsim.procfs.context import Caller, Ctx
from procsim.task import Task

Render = Callable[[Ctx], bytes]
Write = Callable[[Ctx, bytes], int]


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

    @property
    def is_dir(self) -> bool:
        return self.children is not None


def _f(name: str, render: Render, mode: int = 0o444, **kw) -> Entry:
    return Entry(name, mode, render, **kw)


def _d(name: str, *children: Entry) -> Entry:
    return Entry(name, 0o555, children=tuple(children))


# /proc/PID and /proc/PID/task/TID (the "task" subdirectory is added by the tree).
TGID_ENTRIES = (
    _f("cmdline", P.cmdline),
    _f("comm", P.comm, 0o644),
    _f("environ", P.environ, 0o400, ptrace_open=True),
    _f("maps", maps.render, records=True, ptrace_open=True),
    _f("stat", P.stat),
    _f("statm", P.statm),
    _f("status", P.status),
)
TID_ENTRIES = TGID_ENTRIES

# Global files, with the kernel's EIO for writes to them.
_GLOBAL = dict(write_errno=errno.EIO)
PROC_ENTRIES = (
    _f("cpuinfo", G.cpuinfo, records=True, **_GLOBAL),
    _f("interrupts", G.interrupts, records=True, **_GLOBAL),
    _f("loadavg", G.loadavg, **_GLOBAL),
    _f("meminfo", G.meminfo, **_GLOBAL),
    _f("stat", G.stat, **_GLOBAL),
    _f("uptime", G.uptime, **_GLOBAL),
    _f("version", G.version, **_GLOBAL),
    _f("vmstat", G.vmstat, **_GLOBAL),
    _d("sys", _d("kernel",
                 _f("osrelease", G.osrelease, **_GLOBAL),
                 _f("pid_max", G.pid_max, 0o644, **_GLOBAL),
                 _f("threads-max", G.threads_max, 0o644, **_GLOBAL))),
)
SYS_ENTRIES = (
    _d("devices", _d("system", _d("cpu",
                                  _f("online", G.cpu_online),
                                  _f("possible", G.cpu_possible)))),
    _d("kernel", _d("mm", _d("transparent_hugepage", _f("enabled", G.thp_enabled, 0o644)))),
)
ROOT = _d("", _d("proc", *PROC_ENTRIES), _d("sys", *SYS_ENTRIES))


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


class ProcFS:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.mount_time = 0.0

    # -- resolution -----------------------------------------------------------

    def resolve(self, path: str, caller: Caller) -> Node:
        parts = [p for p in path.split("/") if p]
        node = Node("dir", ROOT)
        for i, name in enumerate(parts):
            node = self._child(node, name, caller, parts[: i + 1])
        return node

    def _child(self, node: Node, name: str, caller: Caller, sofar: list[str]) -> Node:
        if node.kind != "dir":
            raise OSError(errno.ENOTDIR, "/".join(sofar))
        if node.observer is not None:
            real = observer.child(node.observer, name)
            return Node("dir" if observer.is_dir(real) else "file", observer=real)
        k = self.kernel
        if node.entry is not None and node.entry.name == "proc" and len(sofar) == 2:
            if name == "self":
                return Node("link", target=str(self._self_pid(caller)))
            if name == "thread-self":
                pid = self._self_pid(caller)
                return Node("link", target=f"{pid}/task/{pid}")
            if name.isdigit() and name == str(int(name)):
                t = k.tasks.get(int(name))
                if t is not None and not (t.dead and not t.is_leader):
                    return self._pid_dir(t, thread_view=False)
                if int(name) == caller.pid:
                    real = observer.real_path(caller.pid)
                    observer.lstat(real)
                    return Node("dir", observer=real)
                raise OSError(errno.ENOENT, name)
        if node.task is not None and node.entry is None:
            # inside /proc/PID or /proc/PID/task/TID
            t = node.task
            if not node.thread_view and name == "task":
                return Node("dir", task=t, names=lambda: [str(x.pid) for x in t.tg.threads],
                            entry=Entry("task", 0o555, children=()))
            for e in TID_ENTRIES if node.thread_view else TGID_ENTRIES:
                if e.name == name:
                    return Node("dir" if e.is_dir else "file", e, t, node.thread_view)
            raise OSError(errno.ENOENT, name)
        if node.task is not None and node.entry is not None and node.entry.name == "task":
            if name.isdigit():
                for x in node.task.tg.threads:
                    if str(x.pid) == name:
                        return self._pid_dir(x, thread_view=True)
            raise OSError(errno.ENOENT, name)
        for e in node.entry.children or ():
            if e.name == name:
                return Node("dir" if e.is_dir else "file", e)
        raise OSError(errno.ENOENT, name)

    @staticmethod
    def _pid_dir(t: Task, thread_view: bool) -> Node:
        return Node("dir", None, t, thread_view)

    def _self_pid(self, caller: Caller) -> int:
        return caller.pid

    # -- operations the FUSE layer calls ----------------------------------------

    def getattr(self, path: str, caller: Caller) -> Attr:
        with self.kernel.lock:
            n = self.resolve(path, caller)
            if n.observer is not None:
                st = observer.lstat(n.observer)
                return Attr(st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime)
            uid = gid = 0
            if n.task is not None:
                c = n.task.tg.cred
                if n.task.tg.dumpable:
                    uid, gid = c.euid, c.egid
            t = self.mount_time
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
        with self.kernel.lock:
            n = self.resolve(path, caller)
            if n.kind != "dir":
                raise OSError(errno.ENOTDIR, path)
            if n.observer is not None:
                return observer.listdir(n.observer)
            if n.names is not None:
                return n.names()
            if n.task is not None and n.entry is None:
                names = [e.name for e in TID_ENTRIES] if n.thread_view else \
                    [e.name for e in TGID_ENTRIES] + ["task"]
                return sorted(names)
            names = [e.name for e in n.entry.children or ()]
            if n.entry.name == "proc":
                pids = [str(p) for p in sorted(self.kernel.groups)]
                return names + ["self", "thread-self"] + pids
            return names

    def readlink(self, path: str, caller: Caller) -> str:
        with self.kernel.lock:
            n = self.resolve(path, caller)
            if n.kind != "link":
                raise OSError(errno.EINVAL, path)
            return n.target

    def open(self, path: str, flags: int, caller: Caller) -> "Handle":
        with self.kernel.lock:
            self.kernel.follow_wall()
            n = self.resolve(path, caller)
            if n.observer is not None:
                if flags & os.O_ACCMODE != os.O_RDONLY:
                    raise OSError(errno.EACCES, path)
                return observer.ObserverHandle(n.observer)
            if n.kind == "dir":
                raise OSError(errno.EISDIR, path)
            e = n.entry
            ctx = Ctx(self.kernel, caller, n.task, n.thread_view)
            if n.task is not None:
                if e.needs_mm and (n.task.mm is None):
                    raise OSError(errno.ESRCH, path)
                if e.ptrace_open and not ctx.may_ptrace():
                    raise OSError(errno.EACCES, path)
            return Handle(self.kernel, e, ctx, flags)


@dataclass
class Handle:
    """One open file description: the seq_file buffer of §1.3."""
    kernel: Kernel
    entry: Entry
    ctx: Ctx
    flags: int
    buf: bytes | None = None
    records: list[int] = field(default_factory=list)

    def read(self, size: int, offset: int) -> bytes:
        if self.entry.render is None:
            raise OSError(errno.EINVAL, self.entry.name)
        k = self.kernel
        if offset == 0 or self.buf is None:
            with k.lock:
                k.follow_wall()
                t = self.ctx.task
                if t is not None and t.pid not in k.tasks:
                    raise OSError(errno.ESRCH, self.entry.name)
                self.buf = self.entry.render(self.ctx)
        data = self.buf[offset : offset + size]
        if self.entry.records and len(data) > 4096:
            # one page of whole records per read, as seq_file returns them
            cut = data.rfind(b"\n", 0, 4096)
            if cut >= 0:
                data = data[: cut + 1]
        return data

    def write(self, data: bytes, offset: int) -> int:
        w = self.entry.write
        if w is None:
            raise OSError(self.entry.write_errno, self.entry.name)
        with self.kernel.lock:
            return w(self.ctx, data)

    def ioctl(self, cmd: int, data: bytearray) -> None:
        raise OSError(errno.ENOTTY, self.entry.name)

    def release(self) -> None:
        self.buf = None
