"""The resolver: paths to nodes of the tables, and what the FUSE layer asks
of them, with the caches.

The tables are in their own modules, made of the kinds in kinds.py (as
fs/proc/base.c's ONE, REG, DIR and LNK): root.py for /proc, base.py for
/proc/PID and /proc/PID/task/TID, sysfs.py for /sys. Each directory looks
its names up itself (a dynamic one: pids, tasks); this module only walks
the components and keeps the caches. The FUSE layer only calls `ProcFS`.
"""

from __future__ import annotations

import errno
import os
import stat as S
import time
from dataclasses import dataclass

from procsim.kernel import Kernel
from procsim.procfs import maps, observer
from procsim.procfs.base import TGID_DIR
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.fd import PseudoInode
from procsim.procfs.inode_ops import InodeOps
from procsim.procfs.kinds import BY_UID, Dir, File, Handle, Node
from procsim.procfs.root import PROC
from procsim.procfs.sysfs import SYS

__all__ = ["Attr", "Handle", "Node", "ProcFS", "ROOT"]

ROOT = Dir.of("", PROC, SYS)
# An observer (a real process reading the mount) is in the machine's initial
# mount namespace: its own mount files are the model's, as init's, so that
# /proc/mounts (-> self/mounts) shows the simulated machine to lsof and others.
_OBSERVER_MOUNT_FILES = ("mountinfo", "mounts", "mountstats")
# and in its initial network namespace: /proc/net (-> self/net) is init's, for netstat, ss and psutil
_OBSERVER_NS_DIRS = ("net",)


@dataclass(frozen=True, slots=True)
class Attr:
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    time: float = 0.0
    size: int = 0
    ino: int = 0


def inode_number(path: str) -> int:
    """st_ino of a path with no inode number of its own (every /proc and
    /sys inode but the nsfs ones: Linux's are get_next_ino()'s, meaningless
    but unique): a hash of the path, stable while the daemon runs, above
    2^32 so as never to be a namespace's inum; the root is FUSE's 1."""
    return 1 if path == "/" else (hash(path) & _INO_MASK) + (1 << 32)


_INO_MASK = (1 << 47) - 1


def _pid_bucket(path: str) -> str:
    """"123" for /proc/123 and the paths under it, "" for any other path."""
    if path.startswith("/proc/"):
        first = path[6:].partition("/")[0]
        if first.isdigit():
            return first
    return ""


# Rendered files larger than this are not kept between opens: they are rare
# (maps of huge processes), their handle keeps its own copy while open, and
# holding them would grow the daemon for nothing.
CACHE_MAX_BYTES = 128 * 1024


class ProcFS(InodeOps):
    """The tree and its caches.

    Everything served is a function of the kernel's state, the path and the
    reader. The kernel bumps `generation` on every change (syscalls, clock
    ticks, scenario activity, writes to these files and the idle bitmaps'
    test-and-clear reads: Kernel._changed records each), so within one generation a path resolves to
    the same node, has the same attributes, and a file renders to the same
    bytes: those are cached per generation and dropped at once when it moves.
    A read at offset 0 therefore still "rebuilds" the content (it gets the
    current state) but, in an unchanged world, costs a dict lookup.
    The changes of kernel.CONTENT_ONLY (the clock's tick among them) move
    counters and states only, so what resolution keeps (nodes, attributes,
    listings, open plans) is kept until `struct_generation` moves: on a
    wall clock a tick comes every jiffy, and a ps or lsof spanning many of
    them would otherwise re-walk every path once per tick. A structural
    change the kernel confines to some processes (kernel.PID_SCOPED: an
    mmap, an fd opened, a fork, an exit; Kernel.struct_log says which)
    drops what was kept under their /proc/PID directories and under no
    process's; what other processes' paths resolved to stays, so a scenario's
    activity does not make a 10,000-process ps re-walk all of them.

    What depends on the reader is keyed by it: rendered bytes by uid (stat
    hides addresses from non-ptracers), what a permission check guards
    (fd/, fdinfo/, ns/ targets) by path and uid, and paths resolved
    through the caller's pid (self, thread-self, an observer's own
    directory) are never cached.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._mount_time = 0.0
        self._gen = self._sgen = -1
        self._nodes: dict[str, Node] = {}
        self._attrs: dict[str, Attr] = {}
        self._dirs: dict[str, tuple[str, ...]] = {}
        self._bytes: dict[tuple, bytes] = {}
        self._opens: dict[tuple[str, int], tuple[File, Ctx, tuple]] = {}
        self._drop()
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
        Not needed after kernel changes, which move `generation`: only for
        what ProcFS itself changes (mount_time) and for tests that change
        state behind the kernel's back."""
        with self.kernel.lock:
            self._gen = self._sgen = -1
            self._drop()

    def _drop(self) -> None:
        self._nodes, self._attrs, self._dirs, self._bytes, self._opens = {}, {}, {}, {}, {}
        # what depended on the caller's uid only (BY_UID), by (path, uid)
        self._nodes_u: dict[tuple[str, int], Node] = {}
        # what lookups keep for this generation (DynDir.lookup_memo): fd/'s target index
        self._memo: dict = {}
        self._attrs_u: dict[tuple[str, int], Attr] = {}
        self._dirs_u: dict[tuple[str, int], tuple[str, ...]] = {}
        # what was kept of each process's directory ("123": /proc/123 and
        # under it; "": every other path), as (cache, key): a change
        # confined to some processes drops theirs only (_drop_pids)
        self._by_pid: dict[str, list[tuple[dict, object]]] = {}

    def _keep(self, cache: dict, key: object, path: str, value: object) -> None:
        cache[key] = value
        self._by_pid.setdefault(_pid_bucket(path), []).append((cache, key))

    def _drop_pids(self, pids: set[int]) -> None:
        """Drop what was kept of these processes' directories (and of their
        threads': /proc/TID is reachable too; and of the processes that
        share their mm, CLONE_VM: its map_files/ is theirs too) and of every
        path under no process's; the other processes' resolution stays."""
        k = self.kernel
        buckets = {""}
        groups = []
        for pid in pids:
            buckets.add(str(pid))
            t = k.tasks.get(pid)
            if t is not None:
                groups.append(t.tg)
                mm = t.tg.mm
                if mm is not None and mm.users > len(t.tg.threads):  # (fork copies files and fs)
                    groups.extend(g for g in k.groups.values() if g.mm is mm)
        for tg in groups:
            buckets.add(str(tg.tgid))
            buckets.update(str(x.pid) for x in tg.threads)
        for b in buckets:
            for cache, key in self._by_pid.pop(b, ()):
                cache.pop(key, None)
        self._bytes, self._memo = {}, {}

    def nr_kept(self) -> int:
        """How many attributes and listings the caches hold (a bound for
        the FUSE layer's caches of what it made of them)."""
        return len(self._attrs) + len(self._attrs_u) + len(self._dirs) + len(self._dirs_u)

    def _scoped(self) -> set[int] | None:
        """The pids every structural change since the caches were filled is
        confined to (Kernel.struct_log), or None if one is not, or is no
        longer remembered."""
        k = self.kernel
        behind = k.struct_generation - self._sgen
        log = k.struct_log
        if self._sgen < 0 or behind > len(log):
            return None
        pids: set[int] = set()
        for i in range(len(log) - behind, len(log)):
            scope = log[i]
            if scope is None:
                return None
            pids.update(scope)
        return pids

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
            if k.struct_generation != self._sgen:
                pids = self._scoped()
                self._sgen = k.struct_generation
                if pids is None:
                    self._drop()
                else:
                    self._drop_pids(pids)
            else:
                self._bytes = {}

    # -- resolution -----------------------------------------------------------

    def resolve(self, path: str, caller: Caller) -> Node:
        with self.kernel.lock:
            self._sync(False)
            return self._node(path, caller)

    def _node(self, path: str, caller: Caller) -> Node:
        """The node at `path` (caller under the lock, caches in sync)."""
        n = self._nodes.get(path) or self._nodes_u.get((path, caller.uid))
        if n is not None:
            return n
        n, uses_caller = self._walk(path, caller)
        if not uses_caller:
            self._keep(self._nodes, path, path, n)
        elif uses_caller == BY_UID:
            self._keep(self._nodes_u, (path, caller.uid), path, n)
        return n

    def _walk(self, path: str, caller: Caller) -> tuple[Node, int]:
        """Resolve component by component; also says whether the answer
        depended on who asked (kinds.BY_UID: only on the uid, then it is
        cached per uid; True: on more, then it is not cached)."""
        parts = [p for p in path.split("/") if p]
        node = Node("dir", ROOT)
        uses_caller = False
        k = self.kernel
        for i, name in enumerate(parts):
            if node.kind != "dir":
                raise OSError(errno.ENOTDIR, "/".join(parts[: i + 1]))
            if node.observer is not None:
                init = k.tasks.get(1)
                if name in _OBSERVER_MOUNT_FILES and observer.is_process_dir(node.observer) and init is not None:
                    node, uses_caller = Node("file", TGID_DIR.by_name[name], init), True
                    continue
                if name in _OBSERVER_NS_DIRS and observer.is_process_dir(node.observer) and init is not None:
                    node, uses_caller = Node("dir", TGID_DIR.by_name[name], init), True
                    continue
                real = observer.child(node.observer, name)
                kind = observer.kind(real)
                node = Node(kind, observer=real, target=observer.readlink(real) if kind == "link" else None)
                uses_caller = True
                continue
            node, by_caller = node.entry.child(node, name, caller, k, self._memo)
            uses_caller |= by_caller
        return node, uses_caller

    # -- operations the FUSE layer calls ----------------------------------------

    def getattr(self, path: str, caller: Caller) -> Attr:
        with self.kernel.lock:
            self._sync(False)
            a = self._attrs.get(path) or self._attrs_u.get((path, caller.uid))
            if a is not None:
                return a
            # the node as a readlink or an earlier walk left it (lsof
            # readlinks, then lstats, each fd), else a walk that keeps it
            n = self._nodes.get(path)
            if n is not None:
                uses_caller: int = False
            else:
                n = self._nodes_u.get((path, caller.uid))
                uses_caller = BY_UID
            if n is None:
                n, uses_caller = self._walk(path, caller)
                if not uses_caller:
                    self._keep(self._nodes, path, path, n)
                elif uses_caller == BY_UID:
                    self._keep(self._nodes_u, (path, caller.uid), path, n)
            a = self._attr(n, path)
            if not uses_caller:
                self._keep(self._attrs, path, path, a)
            elif uses_caller == BY_UID:
                self._keep(self._attrs_u, (path, caller.uid), path, a)
            return a

    def _attr(self, n: Node, path: str) -> Attr:
        if n.observer is not None:
            st = observer.lstat(n.observer)
            return Attr(st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime, ino=st.st_ino)
        ino = n.ino or inode_number(path)
        e = n.entry
        if isinstance(e, PseudoInode):  # an fd link's pipe, socket or anon inode
            return Attr(e.st_mode, e.uid, e.gid, 1, self._mount_time if e.times else 0.0, 0, ino)
        uid = gid = 0
        if n.task is not None:
            c = n.task.tg.cred
            if n.task.tg.dumpable:
                uid, gid = c.euid, c.egid
        t = self._mount_time
        if n.kind == "dir":
            size = n.entry.size(n) if getattr(n.entry, "size", None) is not None else 0
            return Attr(S.S_IFDIR | n.entry.mode, uid, gid, n.entry.nlink(n), t, size, ino)
        if n.kind == "link":
            # a process's links are owned as its directory is (task_dump_owner)
            return Attr(n.mode or S.S_IFLNK | n.entry.mode, uid, gid, 1, t, n.size, ino)
        return Attr(S.S_IFREG | n.entry.mode, uid, gid, 1, t, 0, ino)

    def readdir(self, path: str, caller: Caller) -> list[str]:
        """The names in `path` (a fresh list: the caller may change it)."""
        return list(self.listing(path, caller))

    def listing(self, path: str, caller: Caller) -> tuple[str, ...]:
        """The names in `path`, as an immutable tuple: the same object while
        the world does not change, so callers may key their own caches on it."""
        with self.kernel.lock:
            self._sync(False)
            names = self._dirs.get(path)
            if names is None:
                names = self._dirs_u.get((path, caller.uid))
            if names is not None:
                return names
            n, uses_caller = self._walk(path, caller)
            perm = getattr(n.entry, "permission", None) if n.kind == "dir" else None
            if perm is not None:
                perm(n, caller)
                uses_caller |= BY_UID
            names = tuple(self._list(n, path))
            if not uses_caller:
                self._keep(self._dirs, path, path, names)
            elif uses_caller == BY_UID:
                self._keep(self._dirs_u, (path, caller.uid), path, names)
            return names

    def _list(self, n: Node, path: str) -> list[str]:
        if n.kind != "dir":
            raise OSError(errno.ENOTDIR, path)
        if n.observer is not None:
            names = observer.listdir(n.observer)
            if observer.is_process_dir(n.observer) and 1 in self.kernel.tasks:
                names = sorted(names + list(_OBSERVER_MOUNT_FILES) + list(_OBSERVER_NS_DIRS))
            return names
        return n.entry.names(n, self.kernel)

    def readlink(self, path: str, caller: Caller) -> str:
        with self.kernel.lock:
            self._sync(False)
            n = self._node(path, caller)
            if n.kind != "link":
                raise OSError(errno.EINVAL, path)
            if n.ptrace and not Ctx(self.kernel, caller, n.task, n.thread_view).may_ptrace():
                raise OSError(errno.EACCES, path)  # proc_fd_access_allowed()
            if n.err:
                raise OSError(n.err, path)
            return n.target

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
        if self._sgen == k.struct_generation and (not self._wall or time.monotonic() < self._next_follow):
            # Opened before by this uid since the world's structure last
            # changed: every check (existence, mm, ptrace) depends on
            # nothing else, so it passes again. (A due wall-clock step is
            # taken first: its activity may change the structure.)
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
                    ctx = Ctx(k, caller, ctx.task, ctx.thread_view, ctx.mm, ctx.arg)
                return e.handle(k, e, ctx, flags, self, key)
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
            if n.kind == "link":
                raise OSError(errno.ELOOP, path)  # (the VFS follows links before it opens)
            e = n.entry
            if e.write_open_errno and flags & os.O_ACCMODE:
                raise OSError(e.write_open_errno, path)
            if e.deny_write and flags & (os.O_ACCMODE | os.O_TRUNC):
                raise OSError(errno.EACCES, path)
            t = n.task
            ctx = Ctx(k, caller, t, n.thread_view, arg=n.arg)
            if t is not None:
                if e.needs_mm and (t.mm is None or t.dead):
                    raise OSError(errno.ESRCH, path)
                if e.ptrace_open and not ctx.may_ptrace():
                    raise OSError(errno.EACCES, path)
                if e.binds_mm:
                    ctx.mm = maps.task_mm(ctx)
                if e.open_check is not None:
                    e.open_check(ctx)
            # ids, not the objects (cheaper to hash and compare). The task
            # object, not its pid: a handle kept open across the pid's reuse
            # must not be served the new process's bytes (a live task's id is
            # unique, and the cache only holds tasks of this generation); the
            # mm too, for a file opened before an exec. Renders see the
            # reader only through its uid (may_ptrace).
            # a reader that is itself a simulated task sees through its own
            # namespaces (cgroup paths, hostname): its pid is in the key
            sim_reader = caller.pid if caller.pid in k.tasks else 0
            key = (id(e), id(t), id(ctx.mm), n.thread_view, caller.uid, n.arg, sim_reader)
            if uses_caller in (False, BY_UID) and not sim_reader:  # (keyed by uid)
                self._keep(self._opens, (path, caller.uid), path, (e, ctx, key))
            if flags & os.O_DIRECT:
                # no procfs or sysfs file has FMODE_CAN_ODIRECT (do_dentry_open)
                raise OSError(errno.EINVAL, path)
            return e.handle(k, e, ctx, flags, self, key)

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

