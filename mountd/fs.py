"""The FUSE adapter: mfusepy Operations onto procsim.procfs.tree.ProcFS.

Built for speed as measured in spec/fuse-performance.md: libfuse3, a
single-threaded loop (nothreads), direct I/O set per open through raw_fi,
1 s entry/attr timeouts with liveness checked at open, negative caching only
of names no table has (NoSuchName), the FUSE thread placed on its busy
client's CPU (placement.py), and only the operations /proc needs (no flush,
access, ...).

Every method is: who is calling (fuse_get_context -> Caller), one ProcFS
call, and a translation of the answer. Errors are the ProcFS's OSErrors,
which mfusepy turns into -errno; anything else is a bug, logged and
answered with EIO so the daemon keeps serving.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import itertools
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# mfusepy tries libfuse2 first; fuse3 is the one we test and install.
os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy  # noqa: E402
from mfusepy import FUSE, FuseOSError, Operations, fuse_get_context  # noqa: E402

from mountd.control import ControlServer  # noqa: E402
from mountd.placement import FollowClient  # noqa: E402
from mountd.process_vm import ProcessMemory  # noqa: E402
from procsim.procfs.context import Caller  # noqa: E402
from procsim.procfs.kinds import NoSuchName  # noqa: E402
from procsim.procfs.pid_flush import PidFlush  # noqa: E402
from procsim.procfs.tree import ProcFS  # noqa: E402

log = logging.getLogger("procsim.fs")

SWITCH_INTERVAL = 200e-6  # s: sys.setswitchinterval() of a serving daemon (see serve())

FUSE_READDIR_PLUS = 1     # readdir flags (fuse.h): the kernel asked for READDIRPLUS
FUSE_FILL_DIR_PLUS = 2    # filler flags: this entry's stat is complete
FUSE_UNKNOWN_INO = 0xFFFFFFFF
_IOC_READ = 2             # _IOC_DIR bit: the kernel copies the buffer back to the caller
FUSE_IOCTL_DIR = 1 << 4   # ioctl on a directory fd

# Mount options (clients.md §1, fuse-performance.md "Options that matter").
MOUNT_OPTIONS: dict[str, Any] = dict(
    allow_other=True,            # ps run by any user must see the mount
    default_permissions=True,    # the kernel enforces /proc's mode bits (EACCES on 0400 files)
    entry_timeout=1,             # T1: 2-3x faster than T0; liveness is checked at open,
    attr_timeout=1,              #   and vanished pids are invalidated (Invalidator)
    negative_timeout=0,          # a new pid is visible at once; but a name no table has is
                                 #   cached as absent for NEGATIVE_TIMEOUT (RawPath.getattr)
    use_ino=True,                # st_ino is ProcFS's (an ns link's target: the namespace's inum, as
                                 #   lsns and pgrep --ns compare), not libfuse's node id
    auto_unmount=True,           # a killed daemon leaves no stale mount
    fsname="procsim",
    subtype="procsim",
)


NEGATIVE_TIMEOUT = 1.0  # s: as long as a positive entry is trusted (entry_timeout)

_last_ctx: tuple[int, int, int] | None = None
_last_caller: Caller | None = None
# libfuse keeps one struct fuse_context per thread and refills it for every
# request; with the single-threaded loop, every request is on the thread that
# ran INIT. Reading that struct directly saves a foreign call per request.
_ctx_struct: Any = None
_ctx_thread: int | None = None
# the FUSE thread's placement (mountd/placement.py), told of every caller
_placement: FollowClient | None = None


def _bind_context() -> None:
    """Call on the FUSE thread while it handles a request (INIT)."""
    global _ctx_struct, _ctx_thread
    p = mfusepy._libfuse.fuse_get_context()
    if p:
        _ctx_struct, _ctx_thread = p.contents, threading.get_ident()


def _caller() -> Caller:
    # One client usually sends many requests in a row: reuse its Caller.
    global _last_ctx, _last_caller
    c = _ctx_struct
    if c is not None and threading.get_ident() == _ctx_thread:
        ctx = (c.uid, c.gid, c.pid)
    else:
        ctx = fuse_get_context()
    switched = ctx != _last_ctx
    if switched:
        uid, gid, pid = ctx
        _last_caller, _last_ctx = Caller(pid, uid, gid), ctx
    if _placement is not None:
        _placement.request(ctx[2], switched)
    return _last_caller


def _stat_dict(a: Any) -> dict[str, Any]:
    t = int(a.time * 1e9)  # the mount (inode creation) time, as procfs does
    return {"st_ino": a.ino, "st_mode": a.mode, "st_uid": a.uid, "st_gid": a.gid, "st_nlink": a.nlink,
            "st_size": a.size, "st_blksize": 1024, "st_atime": t, "st_mtime": t, "st_ctime": t}


def _guarded(op: str, path: str | None, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """fn(*args, **kw); an OSError is the answer, anything else a logged bug (EIO)."""
    try:
        return fn(*args, **kw)
    except OSError:
        raise
    except Exception:
        raise _internal(op, path) from None


def _memo(cache: dict[int, tuple[Any, Any]], obj: Any, make: Callable[[Any], Any], bound: Callable[[], int]) -> Any:
    """make(obj), once per object. Keyed by identity: ProcFS hands out the
    same Attr or listing while nothing changes, and hashing them would cost
    more than the lookup; holding `obj` keeps its id unique. What ProcFS
    replaced stays until the cache outgrows `bound()`, then all goes."""
    c = cache.get(id(obj))
    if c is not None and c[0] is obj:
        return c[1]
    if len(cache) > bound():
        cache.clear()
    v = make(obj)
    cache[id(obj)] = (obj, v)
    return v


def _stat_struct(a: Any) -> Any:
    st = mfusepy.c_stat()
    mfusepy.set_st_attrs(st, _stat_dict(a), use_ns=True)
    return st


def _encoded_names(names: tuple[str, ...]) -> tuple[bytes, ...]:
    return (b".", b"..") + tuple(n.encode("utf-8", "surrogateescape") for n in names)


def _internal(op: str, path: str | None) -> FuseOSError:
    log.exception("%s %s: internal error", op, path)
    return FuseOSError(errno.EIO)


class ProcsimOps(Operations):
    """Only the methods defined here are registered with libfuse (mfusepy
    skips the base class's dummies), so e.g. no FLUSH round trip on close."""

    use_ns = True  # timestamps in integer nanoseconds

    def __init__(self, procfs: ProcFS, on_init: Callable[[], None] | None = None,
                 invalidator: "Invalidator | None" = None) -> None:
        self.fs = procfs
        self.on_init = on_init
        self.invalidator = invalidator
        self.handles: dict[int, Any] = {}
        self._fhs = itertools.count(1)
        self._stat_cache: dict[int, tuple[Any, Any]] = {}
        self._dir_cache: dict[int, tuple[tuple[str, ...], tuple[bytes, ...]]] = {}
        self._plus_cache: dict[int, tuple[tuple[str, ...], Any]] = {}
        self._user_mem: ProcessMemory | None = None  # the last ioctl caller's memory
        self._ioctl_bufs: dict[tuple[int, int], memoryview] = {}  # views of libfuse's ioctl buffers
        self.fuse_config: Any = None  # libfuse's struct fuse_config, from INIT

    # -- lifecycle --------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        # The kernel's INIT request: the mount exists and is about to be served.
        # `config` is libfuse's own struct fuse_config (f->conf), which its
        # LOOKUP reads after each getattr: RawPath sets negative_timeout there.
        global _placement
        self.fuse_config = config
        _bind_context()
        if os.environ.get("PROCSIM_FOLLOW_CLIENT", "1") != "0":
            _placement = FollowClient()  # on the FUSE thread: its affinity is the one that moves
        if self.on_init is not None:
            self.on_init()

    # -- metadata ---------------------------------------------------------------

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        return _stat_dict(_guarded("getattr", path, self.fs.getattr, path, _caller()))

    def stat_struct(self, path: str) -> Any:
        """getattr as the struct stat libfuse wants (see _FUSE.fgetattr), to
        be copied, never changed. Made once per Attr: ProcFS hands out the
        same Attr for a path while nothing changes."""
        a = _guarded("getattr", path, self.fs.getattr, path, _caller())
        return _memo(self._stat_cache, a, _stat_struct, self._bound)

    def _bound(self) -> int:
        """How large a cache of what was made of ProcFS's Attrs or listings
        may grow: twice what ProcFS holds (all of a 10,000-process
        machine's, while what it dropped piles up), and some."""
        return 4096 + 2 * self.fs.nr_kept()

    def readdir_names(self, path: str) -> tuple[bytes, ...]:
        """readdir as the encoded names libfuse's filler takes, "." and ".."
        first; the encoding is done once per listing (see _FUSE.readdir_fuse_3)."""
        names = _guarded("readdir", path, self.fs.listing, path, _caller())
        return _memo(self._dir_cache, names, _encoded_names, self._bound)

    def readdir_plus(self, path: str) -> tuple[tuple[bytes, Any], ...]:
        """READDIRPLUS: each name with its struct stat (None: "." and "..",
        and a name gone since the listing), so the kernel has the dentry and
        its attributes without a LOOKUP per name (ps's stat of each pid,
        lsof's of each fd). Made once per listing, as readdir_names."""
        names = _guarded("readdir", path, self.fs.listing, path, _caller())
        return _memo(self._plus_cache, names, lambda ns: self._plus(path, ns), self._bound)

    def _plus(self, path: str, names: tuple[str, ...]) -> tuple[tuple[bytes, Any], ...]:
        base = path.rstrip("/") + "/"
        caller = _caller()
        out: list[tuple[bytes, Any]] = [(b".", None), (b"..", None)]
        for n in names:
            try:
                st = _memo(self._stat_cache, self.fs.getattr(base + n, caller), _stat_struct, self._bound)
            except OSError:
                st = None
            out.append((n.encode("utf-8", "surrogateescape"), st))
        return tuple(out)

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", ".."] + _guarded("readdir", path, self.fs.readdir, path, _caller())

    def readlink(self, path: str) -> str:
        return _guarded("readlink", path, self.fs.readlink, path, _caller())

    # Inode operations: ProcFS has the kernel's answer to each (procsim/procfs/inode_ops.py).
    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        # a size change is a no-op where it is allowed (wss.pl opens
        # clear_refs O_WRONLY|O_TRUNC)
        _guarded("truncate", path, self.fs.setattr, path, _caller(), size=length)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        _guarded("chmod", path, self.fs.setattr, path, _caller(), mode=mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        _guarded("chown", path, self.fs.setattr, path, _caller(), uid=uid, gid=gid)
        return 0

    def utimens(self, path: str, times: Any = None) -> int:
        _guarded("utimens", path, self.fs.setattr, path, _caller(), times=True)
        return 0

    def fsync(self, path: str, datasync: int, fh: Any) -> int:
        _guarded("fsync", path, self.fs.fsync, path, _caller())
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: Any) -> int:
        _guarded("fsyncdir", path, self.fs.fsync, path, _caller())
        return 0

    def lseek(self, path: str, offset: int, whence: int) -> int:
        return _guarded("lseek", path, self.fs.lseek, path, _caller(), offset, whence)

    def listxattr(self, path: str) -> tuple[str, ...]:
        return _guarded("listxattr", path, self.fs.listxattr, path, _caller())

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return _guarded("getxattr", path, self.fs.getxattr, path, name, _caller())

    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        _guarded("setxattr", path, self.fs.setxattr, path, name, _caller(), bool(options & os.XATTR_REPLACE))
        return 0

    def removexattr(self, path: str, name: str) -> int:
        _guarded("removexattr", path, self.fs.setxattr, path, name, _caller(), True)
        return 0

    # Namespace changes: the kernel's own lookup has already answered EEXIST
    # where a new name exists; ProcFS answers the rest.
    def mkdir(self, path: str, mode: int) -> int:
        return _guarded("mkdir", path, self.fs.new_name, "mkdir", path, _caller(), mode)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        return _guarded("mknod", path, self.fs.new_name, "mknod", path, _caller(), mode)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return _guarded("create", path, self.fs.new_name, "create", path, _caller(), mode)

    def symlink(self, target: str, source: str) -> int:
        return _guarded("symlink", target, self.fs.new_name, "symlink", target, _caller())

    def link(self, target: str, source: str) -> int:
        return _guarded("link", target, self.fs.new_name, "link", target, _caller(), 0, source)

    def rename(self, old: str, new: str) -> int:
        return _guarded("rename", old, self.fs.rename, old, new, _caller())

    def unlink(self, path: str) -> int:
        return _guarded("unlink", path, self.fs.unlink, path, _caller())

    def rmdir(self, path: str) -> int:
        return _guarded("rmdir", path, self.fs.rmdir, path, _caller())

    # -- files ------------------------------------------------------------------

    def open(self, path: str, fi: Any) -> int:
        h = _guarded("open", path, self.fs.open, path, fi.flags, _caller())
        fh = next(self._fhs)
        self.handles[fh] = h
        fi.fh = fh
        # st_size is 0: bypass the page cache, every read reaches us. (libfuse
        # zeroes fi before OPEN, so keep_cache is already 0: procps lseeks to
        # 0 and re-reads, which must not be served from a cache.)
        fi.direct_io = 1
        return 0

    def read(self, path: str | None, size: int, offset: int, fi: Any) -> bytes:
        return self.read_fh(fi.fh, size, offset)

    def read_fh(self, fh: int, size: int, offset: int) -> bytes:
        h = self.handles.get(fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        try:  # _guarded, inlined: this is every READ
            return h.read(size, offset)
        except OSError:
            raise
        except Exception:
            raise _internal("read", None) from None

    def _handle(self, fi: Any) -> Any:
        h = self.handles.get(fi.fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        return h

    def write(self, path: str | None, data: bytes, offset: int, fi: Any) -> int:
        return _guarded("write", path, self._handle(fi).write, data, offset)

    def ioctl(self, path: str | None, cmd: int, arg: Any, fi: Any, flags: int, data: Any) -> int:
        return self.ioctl_fh(fi.fh, cmd, arg, flags, data)

    def ioctl_fh(self, fh: int, cmd: int, arg: int | None, flags: int, data: int | None) -> int:
        # Restricted FUSE ioctl: the kernel copied _IOC_SIZE(cmd) bytes of the
        # caller's argument at `arg` to `data` and copies them back if
        # _IOC_READ is set and we succeed; anything else the handler needs
        # of the caller's memory it reaches through ProcessMemory.
        if flags & FUSE_IOCTL_DIR:
            raise FuseOSError(errno.ENOTTY)
        h = self.handles.get(fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        cmd &= 0xFFFFFFFF
        size = (cmd >> 16) & 0x3FFF
        if not (size and data):
            buf: Any = bytearray(size)
        elif (cmd >> 30) & _IOC_READ:
            # libfuse's out buffer, a copy of the caller's bytes that it
            # sends back only on success (an error discards it): the handler
            # reads and writes it in place, no copy in or out here
            buf = self._ioctl_bufs.get((data, size)) or _buf_view(self._ioctl_bufs, data, size)
        else:  # libfuse's const in buffer: the handler gets a private copy
            buf = bytearray(ctypes.string_at(data, size))
        # ENOTTY for unknown commands, explicitly (ENOSYS would become ENOTTY too, but slower)
        pid = _caller().pid
        mem = self._user_mem
        if mem is None or mem.pid != pid:
            mem = self._user_mem = ProcessMemory(pid)
        try:  # _guarded, inlined: PROCMAP_QUERY's every call
            return h.ioctl(cmd, buf, arg or 0, mem) or 0
        except OSError:
            raise
        except Exception:
            raise _internal("ioctl", None) from None

    def poll(self, path: str | None, fi: Any, ph: Any, reventsp: Any) -> int:
        """FUSE_POLL: the handle's poll mask (a pressure file's trigger: POLLPRI
        once it fired); with a poll handle (FUSE_POLL_SCHEDULE_NOTIFY) the
        kernel waits, and the handle's wake-up sends fuse_notify_poll, which
        makes the kernel poll again. Files without a poll of their own
        answer DEFAULT_POLLMASK, as a regular file without ->poll does."""
        h = self.handles.get(fi.fh)
        if h is None:
            raise FuseOSError(errno.EBADF)
        fn = getattr(h, "poll", None)
        if fn is None:
            if ph:
                _libfuse.fuse_pollhandle_destroy(ctypes.c_void_p(ph))
            reventsp[0] = _DEFAULT_POLLMASK
            return 0
        wake = _poll_wake(ph) if ph else None
        reventsp[0] = _guarded("poll", path, fn, wake)
        return 0

    def release(self, path: str | None, fi: Any) -> int:
        self.release_fh(fi.fh)
        return 0

    def release_fh(self, fh: int) -> None:
        h = self.handles.pop(fh, None)
        if h is not None:
            try:
                h.release()
            except Exception:
                log.exception("release of handle %d", fh)

    def destroy(self, path: str) -> None:
        # libfuse tears the session down after this: stop notifying it.
        if self.invalidator is not None:
            self.invalidator.detach()


class _FUSE(FUSE):
    """mfusepy's FUSE, faster where it matters: OPEN, READ and RELEASE go
    straight to RawPath, and GETATTR copies a prebuilt struct stat (mfusepy
    zeroes it with a ctypes call and fills it field by field from a dict,
    about half of a GETATTR's Python time). Same answers and errors."""

    def fgetattr(self, path: bytes | None, buf: Any, fip: Any) -> int:
        # a struct assignment through the pointer: one memcpy of the whole
        # struct (which also covers mfusepy's memset)
        buf[0] = self.operations.stat_struct(None if path is None else path.decode(self.encoding, self.errors))
        return 0

    def lseek(self, path: bytes | None, offset: int, whence: int, fip: Any) -> int:
        # libfuse3 >= 3.8 has the callback, mfusepy no wrapper for it; FUSE
        # sends only SEEK_DATA and SEEK_HOLE (fuse_file_llseek)
        return self.operations.lseek(None if path is None else path.decode(self.encoding, self.errors),
                                     offset, whence)

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any,
                       flags: int) -> int:
        # mfusepy's, minus the per-entry type checks and encoding. Each entry
        # has its offset (index + 1) and a call resumes after `offset`: in
        # that mode libfuse puts READDIRPLUS entries straight into the reply,
        # each with its node (with offset 0 it keeps the listing and answers
        # PLUS entries without one, so the kernel would LOOKUP each anyway).
        # A plain READDIR gets a stat of st_ino FUSE_UNKNOWN_INO (as libfuse
        # without use_ino; d_type DT_UNKNOWN).
        # A pass over a directory sees the listing its first call got (as
        # libfuse's own snapshot), so that offsets stay those of one listing;
        # the kernel may ask for the rest by plain READDIR (readdirplus_auto).
        p = None if path is None else path.decode(self.encoding, self.errors)
        unknown = self._dirent_stat
        snap = self._snapshots
        plus = bool(flags & FUSE_READDIR_PLUS)
        entries = snap.get(p) if offset else None
        if entries is None:
            if len(snap) > 64:
                snap.clear()
            entries = snap[p] = self.operations.readdir_plus(p) if plus else \
                tuple((n, None) for n in self.operations.readdir_names(p))
        for i in range(offset, len(entries)):
            name, st = entries[i]
            if (filler(buf, name, unknown, i + 1, 0) if st is None or not plus else
                    filler(buf, name, ctypes.byref(st), i + 1, FUSE_FILL_DIR_PLUS)) != 0:
                break
        return 0

    def __init__(self, operations: "ProcsimOps", mountpoint: str, **kwargs: Any) -> None:
        # mfusepy fills a struct fuse_operations and hands it to
        # fuse_main_real within this call; we get it on the way and put the
        # raw callbacks in (see RawPath). If mfusepy ever changes that, the
        # hook is simply not called and its own callbacks serve.
        self._snapshots: dict[str | None, Any] = {}
        unknown = mfusepy.c_stat()
        unknown.st_ino = FUSE_UNKNOWN_INO
        self._dirent_stat = ctypes.pointer(unknown)
        raw = RawPath(operations)
        real_main = getattr(mfusepy, "fuse_main_real", None)

        def fuse_main_real(argc: int, argv: Any, ops_p: Any, size: int, data: Any) -> int:
            raw.install(ops_p.contents)
            return real_main(argc, argv, ops_p, size, data)

        if real_main is not None:
            mfusepy.fuse_main_real = fuse_main_real
        try:
            super().__init__(operations, mountpoint, **kwargs)
        finally:
            if real_main is not None:
                mfusepy.fuse_main_real = real_main


# The hot callbacks' C signatures with plain pointers: ctypes then passes ints
# instead of building a pointer object per argument.
_OPEN_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_READ_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_int64, ctypes.c_void_p)
_RELEASE_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_IOCTL_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_uint, ctypes.c_void_p)
_GETATTR_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p)
_READLINK_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
_GETXATTR_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
_STAT_SIZE = ctypes.sizeof(mfusepy.c_stat)


def _buf_view(cache: dict[tuple[int, int], memoryview], addr: int, size: int) -> memoryview:
    """A writable view of a buffer libfuse passes, [addr, addr+size). libfuse
    mallocs one per READ (or per IOCTL with an out buffer), and malloc hands
    the same block back for the next request of that size, so the views are
    kept per (address, size): a view is only ever used for the very buffer it
    covers, during the request that passed it."""
    if len(cache) > 64:
        cache.clear()
    mv = cache[addr, size] = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
    return mv


class RawPath:
    """OPEN, READ and RELEASE straight from libfuse, bypassing mfusepy's
    per-call layers; GETATTR (LOOKUP's too), READLINK and GETXATTR as well,
    the requests lsof makes per fd. OPEN, READ and RELEASE are the 4 requests of every small-file read, and
    the server's Python time per request is what separates it from the C
    floor: through mfusepy each one costs a ctypes pointer object per
    argument, a functools.partial, its wrapper, its method and ours; Python
    also runs several times slower here than in a loop, every request coming
    after two context switches. Each is a thin C entry to ProcsimOps's own
    method (open, read_fh, ioctl_fh, release_fh), which also serves
    mfusepy's callbacks when the hook is not installed.

    libfuse passes `struct fuse_file_info *`; a ctypes view of it is kept
    per address (it lives on the FUSE thread's stack, so the address repeats)."""

    def __init__(self, ops: "ProcsimOps") -> None:
        self.ops = ops
        self._fi: dict[int, Any] = {}
        self._bufs: dict[tuple[int, int], memoryview] = {}
        self._thunks: list[Any] = []
        self._negative = False  # libfuse's negative_timeout is NEGATIVE_TIMEOUT now

    def install(self, fuse_ops: Any) -> None:
        protos = dict(f[:2] for f in type(fuse_ops)._fields_)
        for name, proto_t, fn in (("open", _OPEN_T, self.open), ("read", _READ_T, self.read),
                                  ("release", _RELEASE_T, self.release), ("ioctl", _IOCTL_T, self.ioctl),
                                  ("getattr", _GETATTR_T, self.getattr), ("readlink", _READLINK_T, self.readlink),
                                  ("getxattr", _GETXATTR_T, self.getxattr)):
            if name not in protos or not getattr(fuse_ops, name):
                continue  # not registered by mfusepy: leave it so
            thunk = proto_t(fn)
            self._thunks.append(thunk)  # libfuse holds only the code address
            setattr(fuse_ops, name, ctypes.cast(thunk, protos[name]))

    def _view(self, addr: int) -> Any:
        fi = self._fi.get(addr)
        if fi is None:
            if len(self._fi) > 64:
                self._fi.clear()
            fi = self._fi[addr] = mfusepy.fuse_file_info.from_address(addr)
        return fi

    # Callbacks: the C ends of ProcsimOps's open, read_fh, ioctl_fh and
    # release_fh (one implementation each); they must never raise (ctypes
    # would print and answer 0), so an OSError is its -errno.
    def open(self, path: bytes, fip: int) -> int:
        try:
            return self.ops.open(path.decode("utf-8", "surrogateescape"), self._fi.get(fip) or self._view(fip))
        except OSError as e:
            return -(e.errno or errno.EIO)
        except BaseException:
            log.exception("open %r: internal error", path)
            return -errno.EIO

    def read(self, path: int, buf: int, size: int, offset: int, fip: int) -> int:
        try:
            data = self.ops.read_fh((self._fi.get(fip) or self._view(fip)).fh, size, offset)
            n = len(data)
            if n:
                # a slice assignment into a view of libfuse's buffer: 5x
                # cheaper than a ctypes.memmove call
                out = self._bufs.get((buf, size)) or _buf_view(self._bufs, buf, size)
                out[:n] = data
            return n
        except OSError as e:
            return -(e.errno or errno.EIO)
        except BaseException:
            log.exception("read: internal error")
            return -errno.EIO

    def ioctl(self, path: int, cmd: int, arg: int | None, fip: int, flags: int, data: int | None) -> int:
        try:
            return self.ops.ioctl_fh((self._fi.get(fip) or self._view(fip)).fh, cmd, arg, flags, data)
        except OSError as e:
            return -(e.errno or errno.EIO)
        except BaseException:
            log.exception("ioctl: internal error")
            return -errno.EIO

    def release(self, path: int, fip: int) -> int:
        try:
            self.ops.release_fh((self._fi.get(fip) or self._view(fip)).fh)
        except BaseException:
            log.exception("release: internal error")
        return 0

    def getattr(self, path: bytes | None, buf: int, fip: int | None) -> int:
        # LOOKUP answers with this callback's result, then reads libfuse's
        # negative_timeout (one thread: nothing runs between): a name no
        # table has (NoSuchName) is cached as absent, any other ENOENT (a
        # pid, an fd: DynDir names that may come) is not.
        if self._negative:
            self._set_negative(False)
        try:
            st = self.ops.stat_struct(None if path is None else path.decode("utf-8", "surrogateescape"))
            ctypes.memmove(buf, ctypes.addressof(st), _STAT_SIZE)
            return 0
        except NoSuchName:
            self._set_negative(True)
            return -errno.ENOENT
        except OSError as e:
            return -(e.errno or errno.EIO)
        except BaseException:
            log.exception("getattr %r: internal error", path)
            return -errno.EIO

    def _set_negative(self, on: bool) -> None:
        conf = self.ops.fuse_config
        if conf is not None:
            conf.negative_timeout = NEGATIVE_TIMEOUT if on else 0.0
            self._negative = on

    def readlink(self, path: bytes, buf: int, size: int) -> int:
        # the target, NUL-terminated and cut to the buffer (as mfusepy's)
        try:
            t = self.ops.readlink(path.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
            if len(t) >= size:
                t = t[:size - 1]
            ctypes.memmove(buf, t + b"\0", len(t) + 1)
            return 0
        except OSError as e:
            return -(e.errno or errno.EIO)
        except BaseException:
            log.exception("readlink %r: internal error", path)
            return -errno.EIO

    def getxattr(self, path: bytes, name: bytes, value: int | None, size: int) -> int:
        # size 0 asks for the length; a value that does not fit is ERANGE (as mfusepy's)
        try:
            v = self.ops.getxattr(path.decode("utf-8", "surrogateescape"), name.decode("utf-8", "surrogateescape"))
            n = len(v)
            if not value or not size:
                return n
            if n > size:
                return -errno.ERANGE
            ctypes.memmove(value, v, n)
            return n
        except OSError as e:
            return -(e.errno or errno.EIO)
        except BaseException:
            log.exception("getxattr %r: internal error", path)
            return -errno.EIO


_DEFAULT_POLLMASK = 0x1 | 0x4 | 0x40 | 0x100  # POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM
_libfuse = mfusepy._libfuse
_libfuse.fuse_notify_poll.argtypes = [ctypes.c_void_p]
_libfuse.fuse_pollhandle_destroy.argtypes = [ctypes.c_void_p]


def _poll_wake(ph: int) -> Callable[[], None]:
    """A one-shot wake-up for the kernel's poll wait on `ph`: notify, then
    free the handle (libfuse's fuse_notify_poll + fuse_pollhandle_destroy).
    Dropped unused (a newer poll replaced it) it is freed too."""
    state = {"ph": ph}

    def wake() -> None:
        p = state.pop("ph", None)
        if p is not None:
            _libfuse.fuse_notify_poll(ctypes.c_void_p(p))
            _libfuse.fuse_pollhandle_destroy(ctypes.c_void_p(p))

    def drop() -> None:
        p = state.pop("ph", None)
        if p is not None:
            _libfuse.fuse_pollhandle_destroy(ctypes.c_void_p(p))

    wake.drop = drop  # type: ignore[attr-defined]
    return wake


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_HANDLE_BYTES = 128


def fuse_nodeid(path: str) -> int | None:
    """The FUSE node id of `path` (None if it cannot be looked up): FUSE
    encodes a file handle as the node id's high and low 32 bits, then the
    generation (fuse_encode_fh), in host order."""
    buf = ctypes.create_string_buffer(8 + _HANDLE_BYTES)
    struct.pack_into("I", buf, 0, _HANDLE_BYTES)
    mnt_id = ctypes.c_int()
    if _libc.name_to_handle_at(_AT_FDCWD, os.fsencode(path), buf, ctypes.byref(mnt_id), 0) != 0:
        return None
    nbytes, _type = struct.unpack_from("Ii", buf, 0)
    if nbytes < 8:
        return None
    hi, lo = struct.unpack_from("II", buf, 8)
    return hi << 32 | lo


class Invalidator:
    """Makes exited pids disappear at once despite the 1 s entry timeout.

    procfs says which dentries went stale (procsim/procfs/pid_flush.py:
    released tasks, as proc_flush_pid, and owner changes); this forwards
    each one to fuse_lowlevel_notify_inval_entry. procfs queues under the
    kernel lock (maybe on the FUSE thread, where notifying could deadlock);
    the control thread flushes synchronously before it replies, and a small
    thread flushes what scenario activity produces. The high-level API
    hides node ids (and with `use_ino` st_ino is ours), but FUSE's file
    handles carry them: name_to_handle_at() of the parent gives its node id.
    """

    def __init__(self, dentries: PidFlush, mnt: str) -> None:
        self.dentries = dentries
        self.mnt = mnt
        self.enabled = mfusepy.fuse_version_major == 3
        self._lock = threading.Lock()
        self._pending = threading.Event()
        self._se: int | None = None
        if self.enabled:
            dentries.wake = self._pending.set
        else:
            dentries.close()  # nothing to forward to: do not let them pile up

    def attach(self) -> None:
        """Called at INIT, on the FUSE thread: find the session, start flushing."""
        if not self.enabled:
            return
        lib = mfusepy._libfuse
        lib.fuse_get_session.restype = ctypes.c_void_p
        lib.fuse_get_session.argtypes = [ctypes.c_void_p]
        lib.fuse_lowlevel_notify_inval_entry.restype = ctypes.c_int
        lib.fuse_lowlevel_notify_inval_entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64,
                                                         ctypes.c_char_p, ctypes.c_size_t]
        fuse_ptr = lib.fuse_get_context().contents.fuse
        with self._lock:
            self._se = lib.fuse_get_session(fuse_ptr)
        threading.Thread(target=self._loop, name="procsim-invalidate", daemon=True).start()

    def detach(self) -> None:
        """The session ends: stop notifying, and stop procfs queueing for us."""
        with self._lock:
            self._se = None
        self.dentries.close()
        self._pending.set()

    def _loop(self) -> None:
        while True:
            self._pending.wait()
            if self._se is None:
                return
            self.flush()

    def flush(self) -> None:
        """Invalidate everything queued so far; returns once it is done."""
        with self._lock:
            self._pending.clear()
            items: dict[str, list[str]] = {}
            for parent, name in self.dentries.drain():
                items.setdefault(parent, []).append(name)
            if self._se is None or not items:
                return
            notify = mfusepy._libfuse.fuse_lowlevel_notify_inval_entry
            for parent, names in items.items():
                ino = fuse_nodeid(os.path.join(self.mnt, parent))
                if ino is None:
                    continue  # the parent went too (a whole process): nothing cached below it matters
                for name in names:
                    b = name.encode()
                    notify(self._se, ino, b, len(b))  # -ENOENT when not cached: fine


def serve(kernel: Any, mnt: str, *, on_ready: Callable[[], None] | None = None, debug: bool = False) -> None:
    """Mount `kernel`'s /proc and /sys at `mnt` and serve until unmounted
    (fusermount3 -u, SIGINT, SIGTERM). Blocks; runs the control socket in
    background threads and removes it on the way out."""
    mnt = os.path.abspath(mnt)
    procfs = ProcFS(kernel)
    procfs.mount_time = time.time()
    inval = Invalidator(PidFlush(kernel), mnt)

    def after_command() -> None:
        # The procfs caches need nothing: every change (a failed command's
        # too) moves kernel.generation, and a query moves nothing. The
        # dentries of pids the command released go before the reply.
        inval.flush()

    control = ControlServer(kernel, mnt, after_command=after_command)

    served = False

    def on_init() -> None:
        nonlocal served
        served = True
        inval.attach()
        if on_ready is not None:
            on_ready()

    ops = ProcsimOps(procfs, on_init, inval)
    control.start()
    # The machine is built: move its objects out of the collector's view so
    # collections triggered by per-request garbage stay cheap.
    gc.freeze()
    # When the control thread (a writer's syscalls) and the FUSE thread
    # (readers) both want the interpreter lock, hand it over every 200 us
    # instead of 5 ms: a writer then waits for a busy reader that long at
    # most per handover (bench --only writer: p99 and max about halved).
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        _FUSE(ops, mnt, foreground=True, nothreads=True, raw_fi=True, debug=debug, **MOUNT_OPTIONS)
    except RuntimeError:
        # fuse_main_real returns 8 when a signal (Ctrl-C, SIGTERM) ended the
        # loop: that is the normal way out of a mount that was served.
        if not served:
            raise
    finally:
        inval.detach()
        control.stop()
