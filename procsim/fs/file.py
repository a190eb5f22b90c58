"""struct file: an open file description (fs/file_table.c, fs/open.c), what
fds point at. Shared by the fds dup() made and by the fd tables fork()
copied; its flags, position and the inode it refers to are one for all of
them. A slotted object per description (a 100,000-fd machine holds that
many), the kind-specific state of anon inodes in a small object of its own.
"""

from __future__ import annotations

from procsim.fs.mount import Mount
from procsim.mm.vma import File as Inode

# open(2) flags, x86-64 (include/uapi/asm-generic/fcntl.h), in octal as fdinfo prints them
O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE = 0, 0o1, 0o2, 0o3
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC = 0o100, 0o200, 0o400, 0o1000
O_APPEND, O_NONBLOCK, O_DSYNC, O_DIRECT = 0o2000, 0o4000, 0o10000, 0o40000
O_LARGEFILE, O_DIRECTORY, O_NOFOLLOW, O_NOATIME = 0o100000, 0o200000, 0o400000, 0o1000000
O_CLOEXEC, O_SYNC, O_PATH, O_TMPFILE = 0o2000000, 0o4010000, 0o10000000, 0o20200000
FLAG_NAMES = {"O_RDONLY": O_RDONLY, "O_WRONLY": O_WRONLY, "O_RDWR": O_RDWR, "O_CREAT": O_CREAT,
              "O_EXCL": O_EXCL, "O_NOCTTY": O_NOCTTY, "O_TRUNC": O_TRUNC, "O_APPEND": O_APPEND,
              "O_NONBLOCK": O_NONBLOCK, "O_DSYNC": O_DSYNC, "O_DIRECT": O_DIRECT, "O_LARGEFILE": O_LARGEFILE,
              "O_DIRECTORY": O_DIRECTORY, "O_NOFOLLOW": O_NOFOLLOW, "O_NOATIME": O_NOATIME,
              "O_CLOEXEC": O_CLOEXEC, "O_SYNC": O_SYNC}
# do_dentry_open() forgets these once the open is done
OPEN_ONLY = O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC
FMODE_READ, FMODE_WRITE = 1, 2

# the kinds of files, by what their /proc/PID/fd link shows
REG, DIR, CHR, PIPE, SOCK, MEMFD = "reg", "dir", "chr", "pipe", "sock", "memfd"
EVENTFD, EVENTPOLL, TIMERFD, SIGNALFD, INOTIFY = "eventfd", "eventpoll", "timerfd", "signalfd", "inotify"
ANON_NAMES = {EVENTFD: "anon_inode:[eventfd]", EVENTPOLL: "anon_inode:[eventpoll]",
              TIMERFD: "anon_inode:[timerfd]", SIGNALFD: "anon_inode:[signalfd]", INOTIFY: "anon_inode:inotify"}


def f_mode(flags: int) -> int:
    """FMODE_READ/FMODE_WRITE of an open with these flags (O_PATH: neither)."""
    if flags & O_PATH:
        return 0
    acc = flags & O_ACCMODE
    return (FMODE_READ if acc in (O_RDONLY, O_RDWR) else 0) | (FMODE_WRITE if acc in (O_WRONLY, O_RDWR) else 0)


class OpenFile:
    """One open file description. `inode`: the VFS inode of a regular file,
    directory, device node or memfd (None for pipes, sockets, anon inodes,
    which have `ino` alone); `mnt`: the mount it was opened through;
    `private`: the state of an anon inode, or a socket's sock (procsim/net/sock.py)."""

    __slots__ = ("kind", "inode", "ino", "mnt", "f_flags", "f_pos", "private", "refs")

    def __init__(self, kind: str, mnt: Mount, f_flags: int, inode: Inode | None = None, ino: int = 0,
                 private: object = None) -> None:
        self.kind = kind
        self.inode = inode
        self.ino = inode.ino if inode is not None else ino
        self.mnt = mnt
        self.f_flags = f_flags & ~(OPEN_ONLY | O_CLOEXEC)
        self.f_pos = 0
        self.private = private
        self.refs = 0  # fd-table slots pointing at it (fput at 0)

    @property
    def mode(self) -> int:
        return f_mode(self.f_flags)

    @property
    def dev(self) -> tuple[int, int]:
        return self.inode.dev if self.inode is not None else self.mnt.dev

    def d_path(self) -> str:
        """What readlink of /proc/PID/fd/N prints (d_path, or the dentry
        name of a pseudo filesystem)."""
        k = self.kind
        if self.inode is not None:
            return self.inode.d_path()
        if k == PIPE:
            return f"pipe:[{self.ino}]"
        if k == SOCK:
            return f"socket:[{self.ino}]"
        return ANON_NAMES[k]


# -- the state of anon inodes --------------------------------------------------------


class Eventfd:
    __slots__ = ("count", "id", "semaphore")

    def __init__(self, count: int, id: int, semaphore: bool) -> None:
        self.count, self.id, self.semaphore = count, id, semaphore


class Eventpoll:
    """The interest list: target fd -> (its file, events, data)."""
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[int, tuple[OpenFile, int, int]] = {}


class Timerfd:
    """An armed (or disarmed: interval and expiry 0) timer; times in ns of its clock."""
    __slots__ = ("clockid", "expires", "interval", "settime_flags", "ticks_read")

    def __init__(self, clockid: int) -> None:
        self.clockid, self.expires, self.interval, self.settime_flags, self.ticks_read = clockid, 0, 0, 0, 0


class Signalfd:
    __slots__ = ("sigmask",)

    def __init__(self, sigmask: int) -> None:
        self.sigmask = sigmask


class Inotify:
    """Watches: wd -> (inode, mask)."""
    __slots__ = ("watches", "next_wd")

    def __init__(self) -> None:
        self.watches: dict[int, tuple[Inode, int]] = {}
        self.next_wd = 1


AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
FAMILIES = {"unix": AF_UNIX, "inet": AF_INET, "inet6": AF_INET6, "netlink": AF_NETLINK}
