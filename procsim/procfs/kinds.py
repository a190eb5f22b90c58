"""The kinds of entries the tables (base.py, root.py, sysfs.py) are made of,
as fs/proc/base.c has ONE, REG, DIR and LNK: a row's kind alone says how it
is looked up, listed, opened, read and written.

  Show      a show function renders the whole file (single_open)
  PtraceShow  a Show whose reader is checked at each read (io: EACCES
            after a successful open)
  Seq       a seq_file, read record by record as read() asks (maps, smaps)
  Bin       read and written by position, nothing kept (pagemap, kpage*,
            the idle bitmaps, the integer sysctls)
  WriteOnly only a write (clear_refs)
  Dir       a static directory: its rows
  DynDir    its rows, then names of its own (pids, tasks)
  Link      a symlink whose target is computed at lookup (self, thread-self)

A file row's handle class is its file_operations; the ProcFS in tree.py
resolves paths to `Node`s and keeps the caches.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from procsim.kernel import Kernel
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.seq_file import SeqFile, SeqOps
from procsim.procfs.uaccess import NO_USER_MEMORY, IoctlArg, UserMemory
from procsim.task import Task

if TYPE_CHECKING:
    from procsim.procfs.tree import ProcFS

Render = Callable[[Ctx], bytes]
Write = Callable[[Ctx, bytes], int]
PRead = Callable[[Ctx, int, int], bytes]  # (ctx, size, offset)
PWrite = Callable[[Ctx, bytes, int], int]  # (ctx, data, offset)
Ioctl = Callable[[Ctx, int, int, UserMemory], int]  # (ctx, cmd, arg, caller's memory) -> result
LinkTarget = Callable[[Ctx], str]


# What child() and lookups say of their answer besides the node: False (0),
# the same for every caller; BY_UID, the same for every caller of one uid
# (a directory's ->permission, a ptrace check: cached per uid); True (or any
# value with bit 0), it depends on the caller's pid (self, an observer's own
# directory: never cached). Answers combine with |.
BY_UID = 2


class NoSuchName(FileNotFoundError):
    """ENOENT for a name a directory's table does not have: it stays absent
    while that directory exists (a table is fixed; a directory that comes
    and goes, as /proc/PID, takes its names with it), so the FUSE layer
    may let the VFS cache the miss (procps asks every /proc/PID for a
    `ctty` 6.18 does not have). Names a DynDir looks up are never this."""


@dataclass(slots=True)
class Node:
    """A resolved path: a row (or a real /proc path) plus the task it is about."""
    kind: str                   # "dir", "file", "link"
    entry: "Kind | None" = None
    task: Task | None = None
    thread_view: bool = False
    target: str | None = None   # a link's target
    observer: str | None = None  # real /proc path served for a caller we do not simulate
    mode: int = 0               # an fd link's own mode (its file's f_mode); 0: the row's
    size: int = 0               # what stat says of its size (fd links: 64; fd/: the open fds)
    ptrace: bool = False        # readlink needs ptrace read access (EACCES)
    err: int = 0                # the errno readlink gets (exe of a kernel thread: ENOENT)
    arg: int = -1               # the fd an fdinfo/N node is about
    ino: int = 0                # an inode number Linux gives meaning to (an nsfs inode's inum); 0: none


# -- files ------------------------------------------------------------------------


class Handle:
    """One open file description. (Plain slotted classes: one is made per
    open, on the FUSE hot path.)"""

    __slots__ = ("kernel", "entry", "ctx", "flags", "fs", "key")

    def __init__(self, kernel: Kernel, entry: "File", ctx: Ctx, flags: int,
                 fs: "ProcFS | None" = None, key: tuple | None = None) -> None:
        self.kernel = kernel
        self.entry = entry
        self.ctx = ctx
        self.flags = flags
        self.fs = fs      # the ProcFS whose render cache serves offset-0 reads
        self.key = key    # this file's key in that cache

    def read(self, size: int, offset: int) -> bytes:
        raise OSError(errno.EINVAL, self.entry.name)  # no ->read

    def write(self, data: bytes, offset: int) -> int:
        w = self.entry.write
        if w is None:
            raise OSError(self.entry.write_errno, self.entry.name)
        # a write changes the world only through kernel calls, which
        # record the change (and so move the caches' generation)
        with self.kernel.lock:
            return w(self.ctx, data)

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
        pass


class ShowHandle(Handle):
    """single_open: the whole file rendered at offset 0 (or from the
    ProcFS's cache of this generation), later reads served from that copy."""

    __slots__ = ("buf",)

    def __init__(self, kernel: Kernel, entry: "Show", ctx: Ctx, flags: int,
                 fs: "ProcFS | None" = None, key: tuple | None = None) -> None:
        # (Handle.__init__ inlined: this is every open of status)
        self.kernel = kernel
        self.entry = entry
        self.ctx = ctx
        self.flags = flags
        self.fs = fs
        self.key = key
        self.buf: bytes | None = None

    def read(self, size: int, offset: int) -> bytes:
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
        data = buf[offset: offset + size]
        if self.entry.records and len(data) > 4096:
            # one page of whole records per read, as seq_file returns them
            cut = data.rfind(b"\n", 0, 4096)
            if cut >= 0:
                data = data[: cut + 1]
        return data

    def _render(self) -> bytes:
        if self.fs is not None:
            return self.fs.content(self)
        k = self.kernel  # a handle made by hand: no caches
        with k.lock:
            k.follow_wall()
            t = self.ctx.task
            if t is not None and k.tasks.get(t.pid) is not t:
                raise OSError(errno.ESRCH, self.entry.name)
            return self.entry.render(self.ctx)

    def release(self) -> None:
        self.buf = None


class SeqHandle(Handle):
    """A seq_file read without the kernel lock, record by record (§1.3)."""

    __slots__ = ("seqf",)

    def __init__(self, *args: Any) -> None:
        Handle.__init__(self, *args)
        self.seqf: SeqFile | None = None

    def read(self, size: int, offset: int) -> bytes:
        if self.fs is not None:
            self.fs.follow_nowait()
        if self.seqf is None:
            self.seqf = SeqFile(self.entry.seq(self.ctx))
        return self.seqf.read(size, offset)

    def release(self) -> None:
        self.seqf = None


class BinHandle(Handle):
    """Each read renders only what it covers, under the lock."""

    __slots__ = ()

    def read(self, size: int, offset: int) -> bytes:
        with self.kernel.lock:
            return self.entry.pread(self.ctx, size, offset)

    def write(self, data: bytes, offset: int) -> int:
        pw = self.entry.pwrite
        if pw is None:
            raise OSError(self.entry.write_errno, self.entry.name)
        with self.kernel.lock:
            return pw(self.ctx, data, offset)


@dataclass(frozen=True, slots=True, eq=False)
class File:
    """What every file row may say besides its functions (keyword-only)."""
    kind: ClassVar[str] = "file"
    handle: ClassVar[type[Handle]] = Handle
    _: KW_ONLY
    write_errno: int = errno.EINVAL  # what a root write to a read-only file gets
    needs_mm: bool = False         # ESRCH at open for zombies and kernel threads
    ptrace_open: bool = False      # EACCES at open unless the reader may ptrace
    binds_mm: bool = False         # reads see the mm taken at open (proc_mem_open)
    # kernfs (sysfs) refuses an open for writing of a file without write
    # bits, even for root; procfs lets it open and fails the write
    write_open_errno: int | None = None
    # a sysctl without write bits: proc_sys_permission refuses MAY_WRITE even
    # to root (EACCES for an open for writing or O_TRUNC, truncate, user.* xattrs)
    deny_write: bool = False
    ioctl: Ioctl | None = None     # the file's unlocked_ioctl; None: every cmd gets ioctl_errno
    ioctl_errno: int = errno.ENOTTY
    # more of the open's checks on the task (mounts: EINVAL once it has no namespaces)
    open_check: Callable[[Ctx], None] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Show(File):
    handle: ClassVar[type[Handle]] = ShowHandle
    name: str
    render: Render
    mode: int = 0o444
    write: Write | None = None
    records: bool = False          # multi-record seq_file: whole records, <= 1 page per read


class PtraceShowHandle(ShowHandle):
    """A show function that checks the reader's ptrace access each time it
    runs (at every read from the start, as seq_read runs ->show), before
    any cached copy is served: do_io_accounting's EACCES."""

    __slots__ = ()

    def read(self, size: int, offset: int) -> bytes:
        if (offset == 0 or self.buf is None) and not self.entry.may_read(self.ctx):
            raise OSError(errno.EACCES, self.entry.name)
        return ShowHandle.read(self, size, offset)


@dataclass(frozen=True, slots=True, eq=False)
class PtraceShow(Show):
    handle: ClassVar[type[Handle]] = PtraceShowHandle
    may_read: Callable[[Ctx], bool] = lambda ctx: True


@dataclass(frozen=True, slots=True, eq=False)
class Seq(File):
    handle: ClassVar[type[Handle]] = SeqHandle
    name: str
    seq: Callable[[Ctx], SeqOps]   # its seq_operations, for an open file
    mode: int = 0o444
    write: Write | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Bin(File):
    handle: ClassVar[type[Handle]] = BinHandle
    name: str
    pread: PRead
    mode: int = 0o400
    pwrite: PWrite | None = None


@dataclass(frozen=True, slots=True, eq=False)
class WriteOnly(File):
    name: str
    write: Write
    mode: int = 0o200


# -- directories and links ------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Link:
    kind: ClassVar[str] = "link"
    name: str
    target: LinkTarget  # raises OSError for a link that cannot be followed (readlink's errno)
    mode: int = 0o777
    ptrace: bool = False  # proc_pid_get_link: readlink needs ptrace read access
    size: int = 0

    def node(self, parent: Node, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
        ctx = Ctx(kernel, caller, parent.task, parent.thread_view)
        # the target is the link's to compute on each lookup (proc_get_link):
        # it may depend on who asks, so it is never cached
        try:
            target, err = self.target(ctx), 0
        except OSError as e:
            target, err = None, e.errno
        return Node("link", self, parent.task, parent.thread_view, target, ptrace=self.ptrace, err=err,
                    size=self.size), True


@dataclass(frozen=True, slots=True, eq=False)
class Dir:
    """A directory of rows; listed in table order, as proc_pident_readdir does."""
    kind: ClassVar[str] = "dir"
    name: str
    children: tuple["Kind", ...]
    mode: int = 0o555
    by_name: dict[str, "Kind"] = field(init=False, repr=False)
    subdirs: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {e.name: e for e in self.children})
        object.__setattr__(self, "subdirs", sum(1 for e in self.children if e.kind == "dir"))

    @classmethod
    def of(cls, name: str, *children: "Kind") -> "Dir":
        return cls(name, children)

    def child(self, parent: Node, name: str, caller: Caller, kernel: Kernel,
              memo: dict | None = None) -> tuple[Node, int]:
        """The node for `name` in `parent` (a node of this directory), and
        whether it depends on the caller (False, BY_UID or True). `memo`:
        the resolver's per-generation dict (see DynDir.lookup_memo)."""
        e = self.by_name.get(name)
        if e is None:
            raise NoSuchName(errno.ENOENT, name)
        if e.kind == "link":
            return e.node(parent, caller, kernel)
        # `arg` goes down the tree: what a directory is about (a network device's ifindex)
        return Node(e.kind, e, parent.task, parent.thread_view, arg=parent.arg), False

    def names(self, parent: Node, kernel: Kernel) -> list[str]:
        return [e.name for e in self.children]

    def nlink(self, parent: Node) -> int:
        return 2 + self.subdirs


@dataclass(frozen=True, slots=True, eq=False)
class DynDir(Dir):
    """Its rows, then names only it knows (proc_root_lookup, then
    proc_pid_lookup): `lookup` raises ENOENT for a name that is not there."""
    children: tuple["Kind", ...] = ()
    lookup: Callable[[Node, str, Caller, Kernel], tuple[Node, int]] | None = None
    readdir: Callable[[Node, Kernel], list[str]] | None = None
    links: Callable[[Node], int] | None = None  # nlink; None: that of the rows
    size: Callable[[Node], int] | None = None   # what stat says of its size (fd/: the open fds)
    # the directory's ->permission for lookups and listings (fd/: its owner;
    # fdinfo/: ptrace access), a function of the caller's uid: raises
    # EACCES; what it guards is cached per uid only
    permission: Callable[[Node, Caller], None] | None = None
    # instead of `lookup`, one that also gets the resolver's memo: a dict
    # the ProcFS instance keeps for one generation of the world (what a
    # lookup would otherwise recompute per name: fd/'s index of its targets)
    lookup_memo: Callable[[Node, str, Caller, Kernel, dict], tuple[Node, int]] | None = None

    def child(self, parent: Node, name: str, caller: Caller, kernel: Kernel,
              memo: dict | None = None) -> tuple[Node, int]:
        if self.permission is not None:
            self.permission(parent, caller)
            node, by = (Dir.child(self, parent, name, caller, kernel) if name in self.by_name
                        else self._lookup(parent, name, caller, kernel, memo))
            return node, by | BY_UID
        if name in self.by_name:
            return Dir.child(self, parent, name, caller, kernel)
        return self._lookup(parent, name, caller, kernel, memo)

    def _lookup(self, parent: Node, name: str, caller: Caller, kernel: Kernel,
                memo: dict | None) -> tuple[Node, int]:
        if self.lookup_memo is not None:
            return self.lookup_memo(parent, name, caller, kernel, {} if memo is None else memo)
        return self.lookup(parent, name, caller, kernel)

    def names(self, parent: Node, kernel: Kernel) -> list[str]:
        return Dir.names(self, parent, kernel) + self.readdir(parent, kernel)

    def nlink(self, parent: Node) -> int:
        return self.links(parent) if self.links is not None else Dir.nlink(self, parent)


Kind = Show | Seq | Bin | WriteOnly | Dir | DynDir | Link
