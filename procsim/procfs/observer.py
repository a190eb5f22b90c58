"""The observer: a real process reading the mount that we do not simulate.

ps and top read /proc/self/stat and /proc/<getpid()>/stat to find their own
tty (clients.md §1.4); ps_mem judges the kernel's smaps by its own. When the caller's pid is not a simulated one, its
directory is served from the real /proc, read-only.
"""

from __future__ import annotations

import errno
import os
import stat as S

REAL_PROC = "/proc"
# What the tools read about themselves; other names are not offered.
NAMES = ("cmdline", "comm", "environ", "maps", "smaps", "smaps_rollup", "stat", "statm", "status", "task")


def real_path(pid: int) -> str:
    return f"{REAL_PROC}/{pid}"


def lstat(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as e:
        raise OSError(e.errno or errno.ENOENT, path) from None


def child(path: str, name: str) -> str:
    """The real path of `name` under the observer directory `path`."""
    depth = path[len(REAL_PROC) + 1:].count("/")
    if depth == 0 and name not in NAMES:
        raise OSError(errno.ENOENT, name)
    p = f"{path}/{name}"
    lstat(p)
    return p


def is_process_dir(path: str) -> bool:
    """/proc/PID itself (not a directory below it)."""
    return path[len(REAL_PROC) + 1:].count("/") == 0


def listdir(path: str) -> list[str]:
    names = os.listdir(path)
    if path[len(REAL_PROC) + 1:].count("/") == 0:
        names = [n for n in names if n in NAMES]
    return sorted(names)


def is_dir(path: str) -> bool:
    return S.S_ISDIR(lstat(path).st_mode)


class ObserverHandle:
    """Read-only view of a real file, re-read at offset 0 like seq_file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.buf: bytes | None = None

    def read(self, size: int, offset: int) -> bytes:
        if offset == 0 or self.buf is None:
            try:
                with open(self.path, "rb", buffering=0) as f:
                    self.buf = f.read()
            except OSError as e:
                raise OSError(e.errno or errno.EIO, self.path) from None
        return self.buf[offset : offset + size]

    def write(self, data: bytes, offset: int) -> int:
        raise OSError(errno.EINVAL, self.path)

    def ioctl(self, cmd: int, data: bytearray, arg: int = 0, mem: object = None) -> int:
        raise OSError(errno.ENOTTY, self.path)

    def release(self) -> None:
        self.buf = None
