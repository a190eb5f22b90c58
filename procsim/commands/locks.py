"""Commands of file locks (procsim/fs/locks.py): flock and fcntl record locks."""

from __future__ import annotations

import errno

from procsim.commands.core import FD, PID, CommandError, cmd, p
from procsim.fs import locks as L
from procsim.kernel import Kernel
from procsim.params import BOOL, INT, STR

_FLOCK_OPS = {"sh": L.LOCK_SH, "ex": L.LOCK_EX, "un": L.LOCK_UN}
_TYPES = {"rd": L.F_RDLCK, "wr": L.F_WRLCK, "un": L.F_UNLCK}


def c_flock(k: Kernel, pid, fd, op) -> None:
    """flock(): `op` sh (shared), ex (exclusive) or un (unlock) on `fd`'s
    open file; a conflicting lock fails with EAGAIN (the model never blocks)."""
    if op not in _FLOCK_OPS:
        raise CommandError(errno.EINVAL, f"op: sh, ex or un, got {op!r}")
    L.sys_flock(k, pid, fd, _FLOCK_OPS[op] | L.LOCK_NB)


def c_fcntl_lock(k: Kernel, pid, fd, type, start, len, ofd) -> None:  # noqa: A002 (the struct flock names)
    """fcntl(F_SETLK) (`ofd`: F_OFD_SETLK): a `type` rd, wr or un lock of
    bytes [start, start + len) of `fd`'s file (len 0: to the end);
    conflicts fail with EAGAIN."""
    if type not in _TYPES:
        raise CommandError(errno.EINVAL, f"type: rd, wr or un, got {type!r}")
    L.sys_setlk(k, pid, fd, _TYPES[type], start, len, ofd)


COMMANDS = (
    cmd("flock", c_flock, PID, FD, p("op", STR, "ex")),
    cmd("fcntl_lock", c_fcntl_lock, PID, FD, p("type", STR, "wr"), p("start", INT, 0), p("len", INT, 0),
        p("ofd", BOOL, False)),
)
