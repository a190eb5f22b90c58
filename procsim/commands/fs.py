"""Commands of files (procsim/fs/): open, close, dup, read/write, pipes, sockets, anon inodes;
queries of fd tables and mounts."""

from __future__ import annotations

import errno

from procsim.commands.core import CLOEXEC, FD, LENGTH, NONBLOCK, PID, CommandError, cmd, p, query
from procsim.fs import file as F
from procsim.fs.anon_inodes import CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME, EFD_SEMAPHORE
from procsim.kernel import Kernel
from procsim.params import BOOL, INT, OPEN_FLAGS, SECONDS, SIZE, STR


def _path_or_fd(op: str, path: str | None, fd: int | None) -> bool:
    if (path is None) == (fd is None):
        raise CommandError(errno.EINVAL, f"{op}: give path or fd (one of them)")
    return True


def c_io(k: Kernel, pid, read, write, path, offset, thread) -> dict:
    """File I/O by task `pid` on `path` (pread of `read` bytes, then pwrite
    of `write` bytes, at `offset`); returns the task's /proc/PID/io
    counters (`thread`: the thread's own, task/TID/io)."""
    if read:
        k.read(pid, path, read, offset)
    if write:
        k.write(pid, path, write, offset)
    return k.io_accounting(pid, whole=not thread)


def _fl(cloexec: bool, nonblock: bool = False) -> int:
    return (F.O_CLOEXEC if cloexec else 0) | (F.O_NONBLOCK if nonblock else 0)


def c_socket(k: Kernel, pid, family, type, cloexec, nonblock) -> int:
    """socket(): a socket inode (`socket:[ino]`) of `family` (unix, inet,
    inet6, netlink) and `type` (stream, dgram, seqpacket, raw; by default
    stream, raw for netlink), with its sock in the task's network namespace
    (procsim/net/). Returns the fd."""
    if family not in F.FAMILIES:
        raise CommandError(errno.EAFNOSUPPORT, f"family: one of {', '.join(F.FAMILIES)}, got {family!r}")
    if type is None:
        type = "raw" if family == "netlink" else "stream"
    if type not in SOCK_TYPES:
        raise CommandError(errno.EINVAL, f"type: one of {', '.join(SOCK_TYPES)}, got {type!r}")
    return k.socket(pid, F.FAMILIES[family], _fl(cloexec, nonblock), SOCK_TYPES[type])


SOCK_TYPES = {"stream": 1, "dgram": 2, "raw": 3, "seqpacket": 5}
_EPOLL_OPS = {"add": 1, "del": 2, "mod": 3}

_CLOCKS = {"realtime": CLOCK_REALTIME, "monotonic": CLOCK_MONOTONIC, "boottime": CLOCK_BOOTTIME}


def c_epoll_ctl(k: Kernel, pid, epfd, op, fd, events, data) -> None:
    """epoll_ctl(): `op` add, mod or del of `fd` in `epfd`'s interest list
    (`events`: EPOLLIN = 1, EPOLLOUT = 4 ...; `data`: defaults to the fd)."""
    if op not in _EPOLL_OPS:
        raise CommandError(errno.EINVAL, f"op: add, mod or del, got {op!r}")
    k.epoll_ctl(pid, epfd, _EPOLL_OPS[op], fd, events, data)


def c_timerfd(k: Kernel, pid, clock, value, interval, cloexec, nonblock) -> int:
    """timerfd_create() on `clock` (monotonic, realtime, boottime), armed to
    expire in `value` seconds and every `interval` after (0: disarmed). Returns the fd."""
    if clock not in _CLOCKS:
        raise CommandError(errno.EINVAL, f"clock: one of {', '.join(_CLOCKS)}, got {clock!r}")
    with k.lock:
        k.task(pid)
        fd = k.timerfd_create(pid, _CLOCKS[clock], _fl(cloexec, nonblock))
        if value:
            k.timerfd_settime(pid, fd, int(value * 1e9), int(interval * 1e9))
        return fd


def c_lseek(k: Kernel, pid, fd, offset, whence) -> int:
    """lseek(): `whence` set, cur or end; returns the new position."""
    w = {"set": 0, "cur": 1, "end": 2}.get(whence)
    if w is None:
        raise CommandError(errno.EINVAL, f"whence: set, cur or end, got {whence!r}")
    return k.lseek(pid, fd, offset, w)


def c_fds(k: Kernel, pid) -> list[dict]:
    """A process's open fds: kind, what fd/N links to, flags (as fdinfo,
    with O_CLOEXEC), position, mnt_id, inode number."""
    t = k.task(pid)
    files = t.files
    if files is None:
        return []
    return [{"fd": fd, "kind": f.kind, "path": f.d_path(), "cloexec": files.cloexec(fd),
             "flags": f.f_flags | (F.O_CLOEXEC if files.cloexec(fd) else 0), "pos": f.f_pos,
             "mnt_id": f.mnt.mnt_id, "ino": f.ino} for fd, f in files.items()]


def c_mounts(k: Kernel, pid) -> list[dict]:
    """The mount table of `pid`'s mount namespace, in mount order."""
    return [{"mnt_id": m.mnt_id, "parent_id": m.parent_id, "dev": f"{m.dev[0]}:{m.dev[1]}", "root": m.root,
             "mountpoint": m.mountpoint, "opts": m.opts, "fstype": m.fstype, "source": m.source,
             "super_opts": m.super_opts} for m in k.mnt_ns(k.task(pid)).mounts]


COMMANDS = (
    cmd("read", lambda k, pid, length, path, fd, offset: k.read(pid, path, length, offset, fd)
         if _path_or_fd("read", path, fd) else 0, PID, LENGTH, p("path", STR, None), p("fd", INT, None),
         p("offset", SIZE, None),
         doc="read(2) of `length` bytes by task `pid` from its open `fd` (at the file position, which moves; "
             "pread at `offset`), or pread of `path` (at `offset`, default 0): the bytes read (io: rchar, syscr, "
             "read_bytes for page-cache misses)."),
    cmd("write", lambda k, pid, length, path, fd, offset: k.write(pid, path, length, offset, fd)
         if _path_or_fd("write", path, fd) else 0, PID, LENGTH, p("path", STR, None), p("fd", INT, None),
         p("offset", SIZE, None),
         doc="write(2) of `length` bytes by task `pid` to its open `fd` (at the file position, or the end with "
             "O_APPEND; pwrite at `offset`), or pwrite to `path` (io: wchar, syscw, write_bytes for newly "
             "dirtied pages)."),
    cmd("truncate", lambda k, pid, path, length: k.truncate(pid, path, length), PID, p("path", STR),
         p("length", SIZE),
         doc="truncate(2) of `path` to `length` bytes by task `pid`: dirty page cache past the end is "
             "cancelled_write_bytes; mappings of it are unmapped."),
    cmd("io", c_io, PID, p("read", SIZE, 0), p("write", SIZE, 0), p("path", STR, "/var/lib/app/data"),
         p("offset", SIZE, 0), p("thread", BOOL, False)),
    cmd("open", lambda k, pid, path, flags: k.open(pid, path, flags), PID, p("path", STR),
         p("flags", OPEN_FLAGS, "O_RDONLY"),
         doc="open(): `path` (relative to the cwd) with `flags` (\"O_WRONLY|O_APPEND|O_CLOEXEC\"); returns the "
             "fd. Every path exists but those unlinked (ENOENT unless O_CREAT)."),
    cmd("close_fd", lambda k, pid, fd: k.close(pid, fd), PID, FD, doc="close() of a process's fd."),
    cmd("dup", lambda k, pid, fd, cloexec: k.dup(pid, fd, cloexec), PID, FD, CLOEXEC,
         doc="dup() (`cloexec`: F_DUPFD_CLOEXEC); returns the lowest free fd."),
    cmd("dup2", lambda k, pid, fd, newfd, cloexec: k.dup2(pid, fd, newfd, F.O_CLOEXEC if cloexec else 0,
                                                         dup3=cloexec),
         PID, FD, p("newfd", INT), CLOEXEC, doc="dup2(), or dup3(O_CLOEXEC) with `cloexec`; returns newfd."),
    cmd("cloexec", lambda k, pid, fd, on: k.set_cloexec(pid, fd, on), PID, FD, p("on", BOOL, True),
         doc="fcntl(F_SETFD): set or clear an fd's close-on-exec bit."),
    cmd("lseek", c_lseek, PID, FD, p("offset", INT), p("whence", STR, "set")),
    cmd("pipe", lambda k, pid, cloexec, nonblock: list(k.pipe(pid, _fl(cloexec, nonblock))), PID, CLOEXEC,
         NONBLOCK, doc="pipe2(): returns [read fd, write fd] (`pipe:[ino]`)."),
    cmd("socket", c_socket, PID, p("family", STR, "inet"), p("type", STR, None), CLOEXEC, NONBLOCK),
    cmd("eventfd", lambda k, pid, count, cloexec, nonblock, semaphore: k.eventfd(
        pid, count, _fl(cloexec, nonblock) | (EFD_SEMAPHORE if semaphore else 0)),
         PID, p("count", INT, 0), CLOEXEC, NONBLOCK, p("semaphore", BOOL, False),
         doc="eventfd2(); returns the fd."),
    cmd("epoll_create", lambda k, pid, cloexec: k.epoll_create(pid, _fl(cloexec)), PID, CLOEXEC,
         doc="epoll_create1(); returns the fd."),
    cmd("epoll_ctl", c_epoll_ctl, PID, p("epfd", INT), FD, p("op", STR, "add"), p("events", INT, 1),
         p("data", INT, None)),
    cmd("timerfd", c_timerfd, PID, p("clock", STR, "monotonic"), p("value", SECONDS, 0.0),
         p("interval", SECONDS, 0.0), CLOEXEC, NONBLOCK),
    cmd("signalfd", lambda k, pid, mask, cloexec, nonblock: k.signalfd(pid, mask, _fl(cloexec, nonblock)), PID,
         p("mask", INT), CLOEXEC, NONBLOCK,
         doc="signalfd4(-1, mask): bit n-1 of `mask` for signal n; returns the fd."),
    cmd("inotify_init", lambda k, pid, cloexec, nonblock: k.inotify_init(pid, _fl(cloexec, nonblock)), PID,
         CLOEXEC, NONBLOCK, doc="inotify_init1(); returns the fd."),
    cmd("inotify_add_watch", lambda k, pid, fd, path, mask: k.inotify_add_watch(pid, fd, path, mask), PID, FD,
         p("path", STR), p("mask", INT), doc="inotify_add_watch(); returns the watch descriptor."),
    cmd("memfd_create", lambda k, pid, name, cloexec: k.memfd_create(pid, name, 1 if cloexec else 0), PID,
         p("name", STR), p("cloexec", BOOL, True), doc="memfd_create(): `/memfd:NAME (deleted)`; returns the fd."),
    cmd("chdir", lambda k, pid, path: k.chdir(pid, path), PID, p("path", STR), doc="chdir()."),
    cmd("unlink", lambda k, path, pid: k.unlink(path, pid), p("path", STR), p("pid", INT, 1),
         doc="unlink() of a file the machine knows (opened, mapped or exec'd): fds, maps and exe that hold it "
             "show ` (deleted)`."),
    query("fds", c_fds, PID),
    query("mounts", c_mounts, p("pid", INT, 1)),
)
