"""fs/locks.c: advisory file locks. flock(2) locks belong to an open file
description, POSIX (fcntl F_SETLK) locks to the files_struct of the
process that took them and cover byte ranges, OFD locks (F_OFD_SETLK) are
byte ranges owned by an open file description. The model never blocks: a
lock that conflicts fails with EAGAIN (flock's LOCK_NB, F_SETLK rather than
F_SETLKW), so the world stays deterministic.

Releases as Linux makes them: flock and OFD locks at the last close of
their file (__fput), a process's POSIX locks on an inode whenever it closes
any fd of that inode (filp_close -> locks_remove_posix) and so at exit.
/proc/locks lists every lock, newest first; fdinfo shows a file's own."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.fs.file import FMODE_READ, FMODE_WRITE, OpenFile, f_mode

if TYPE_CHECKING:
    from procsim.fs.fdtable import FilesStruct
    from procsim.kernel import Kernel

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8
OFFSET_MAX = (1 << 63) - 1
FLOCK, POSIX, OFDLCK = "FLOCK", "POSIX", "OFDLCK"


@dataclass(slots=True)
class FileLock:
    kind: str            # FLOCK, POSIX or OFDLCK
    type: int            # F_RDLCK or F_WRLCK
    inode: object        # the VFS inode locked
    file: OpenFile       # the file it was taken through (the owner of FLOCK and OFDLCK)
    owner: object        # POSIX: the files_struct; otherwise the file
    pid: int             # fl_pid: the tgid that took it (-1 shown for OFD locks)
    start: int = 0
    end: int = OFFSET_MAX
    seq: int = 0         # creation order, for /proc/locks (newest first)


class FileLocks:
    """Every lock on the machine (the file_lock_list and each inode's
    i_flctx lists, in one list)."""
    __slots__ = ("locks", "seq")

    def __init__(self) -> None:
        self.locks: list[FileLock] = []
        self.seq = 0

    def add(self, fl: FileLock) -> None:
        self.seq += 1
        fl.seq = self.seq
        self.locks.append(fl)

    def on_inode(self, inode: object) -> list[FileLock]:
        return [fl for fl in self.locks if fl.inode is inode]


def _conflict(a_type: int, b_type: int) -> bool:
    return F_WRLCK in (a_type, b_type)


def _inode(f: OpenFile) -> object:
    if f.inode is None:  # pipes, sockets, anon inodes: locks need an inode of a filesystem
        raise KernelError(errno.EINVAL, "no lockable inode")
    return f.inode


def do_flock(k: Kernel, f: OpenFile, pid: int, op: int) -> None:
    """flock(2) on `f`: LOCK_SH, LOCK_EX (converting a lock it holds), LOCK_UN."""
    cmd = op & ~LOCK_NB
    if cmd not in (LOCK_SH, LOCK_EX, LOCK_UN):
        raise KernelError(errno.EINVAL, f"flock: bad operation {op}")
    if not f_mode(f.f_flags):  # O_PATH
        raise KernelError(errno.EBADF, "flock on an O_PATH file")
    inode = _inode(f)
    st = k.files.locks
    mine = [fl for fl in st.on_inode(inode) if fl.kind == FLOCK and fl.file is f]
    if cmd == LOCK_UN:
        for fl in mine:
            st.locks.remove(fl)
        return
    want = F_RDLCK if cmd == LOCK_SH else F_WRLCK
    for fl in st.on_inode(inode):
        if fl.kind == FLOCK and fl.file is not f and _conflict(fl.type, want):
            raise KernelError(errno.EAGAIN, "flock: held by another open file (would block)")
    for fl in mine:  # a conversion drops the old lock first (flock_lock_inode)
        st.locks.remove(fl)
    st.add(FileLock(FLOCK, want, inode, f, f, pid))


def do_setlk(k: Kernel, f: OpenFile, files: FilesStruct, pid: int, type_: int, start: int, length: int,
             ofd: bool = False) -> None:
    """fcntl(F_SETLK or F_OFD_SETLK): lock, or with F_UNLCK unlock, bytes
    [start, start + length) (length 0: to EOF; negative: the bytes before
    start); the owner's own locks on the range are replaced, and neighbours
    of the same type merge (posix_lock_inode)."""
    if type_ not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise KernelError(errno.EINVAL, f"fcntl lock: bad type {type_}")
    mode = f_mode(f.f_flags)
    if type_ == F_RDLCK and not mode & FMODE_READ or type_ == F_WRLCK and not mode & FMODE_WRITE:
        raise KernelError(errno.EBADF, "fcntl lock: the file is not open for that")
    if length < 0:
        start, length = start + length, -length
    if start < 0:
        raise KernelError(errno.EINVAL, "fcntl lock: range before the start of the file")
    end = OFFSET_MAX if length == 0 else start + length - 1
    if end < start or end > OFFSET_MAX:
        raise KernelError(errno.EOVERFLOW, "fcntl lock: range past OFFSET_MAX")
    inode = _inode(f)
    kind, owner = (OFDLCK, f) if ofd else (POSIX, files)
    st = k.files.locks
    ranged = [fl for fl in st.on_inode(inode) if fl.kind in (POSIX, OFDLCK)]
    if type_ != F_UNLCK:
        for fl in ranged:
            if fl.owner is not owner and fl.start <= end and start <= fl.end and _conflict(fl.type, type_):
                raise KernelError(errno.EAGAIN, "fcntl lock: conflicts with another owner's lock")
    mine = [fl for fl in ranged if fl.owner is owner]
    for fl in mine:
        touches = fl.start <= end + (end < OFFSET_MAX) and start <= fl.end + (fl.end < OFFSET_MAX)
        if not touches:
            continue
        if fl.type == type_:  # merge into the new range
            start, end = min(start, fl.start), max(end, fl.end)
            st.locks.remove(fl)
            continue
        if fl.start > end or fl.end < start:
            continue  # adjacent, of another type: stays
        st.locks.remove(fl)
        if fl.start < start:
            st.add(FileLock(fl.kind, fl.type, inode, fl.file, owner, fl.pid, fl.start, start - 1))
        if fl.end > end:
            st.add(FileLock(fl.kind, fl.type, inode, fl.file, owner, fl.pid, end + 1, fl.end))
    if type_ != F_UNLCK:
        st.add(FileLock(kind, type_, inode, f, owner, -1 if ofd else pid, start, end))


def locks_remove_posix(k: Kernel, f: OpenFile, files: FilesStruct) -> None:
    """filp_close(): the closer's POSIX locks on the file's inode go."""
    if f.inode is None:
        return
    st = k.files.locks
    st.locks = [fl for fl in st.locks if not (fl.kind == POSIX and fl.owner is files and fl.inode is f.inode)]


def locks_remove_file(k: Kernel, f: OpenFile) -> None:
    """__fput(): the file's flock and OFD locks go with its last reference."""
    st = k.files.locks
    if any(fl.file is f for fl in st.locks):
        st.locks = [fl for fl in st.locks if not (fl.kind in (FLOCK, OFDLCK) and fl.file is f)]


def lock_line(fl: FileLock, lock_id: int) -> str:
    """lock_get_status(): "ID: KIND  ADVISORY  TYPE PID MAJ:MIN:INO START END"."""
    kind = {FLOCK: "FLOCK  ADVISORY  ", POSIX: "POSIX  ADVISORY  ", OFDLCK: "OFDLCK ADVISORY  "}[fl.kind]
    rw = "WRITE" if fl.type == F_WRLCK else "READ"
    dev = getattr(fl.inode, "dev", (0, 0))
    ino = getattr(fl.inode, "ino", 0)
    if fl.kind == FLOCK:
        span = "0 EOF"
    else:
        span = f"{fl.start} EOF" if fl.end == OFFSET_MAX else f"{fl.start} {fl.end}"
    return f"{lock_id}: {kind}{rw} {fl.pid} {dev[0]:02x}:{dev[1]:02x}:{ino} {span}\n"


def proc_locks(k: Kernel) -> str:
    """/proc/locks: every lock, newest first, numbered from 1."""
    locks = sorted(k.files.locks.locks, key=lambda fl: -fl.seq)
    return "".join(lock_line(fl, i) for i, fl in enumerate(locks, 1))


def fd_locks(k: Kernel, f: OpenFile, files: FilesStruct) -> str:
    """show_fd_locks(): the locks of the file's inode this fd owns (its
    file's flock and OFD locks, the process's POSIX locks), oldest first,
    as fdinfo's "lock:" lines."""
    if f.inode is None:
        return ""
    own = [fl for fl in k.files.locks.on_inode(f.inode)
           if (fl.file is f and fl.kind != POSIX) or (fl.kind == POSIX and fl.owner is files)]
    own.sort(key=lambda fl: (fl.kind == POSIX, fl.seq))  # the flock list, then the posix list
    return "".join(f"lock:\t{lock_line(fl, i)}" for i, fl in enumerate(own, 1))


# -- the system calls -----------------------------------------------------------------


def sys_flock(k: Kernel, pid: int, fd: int, op: int) -> None:
    """flock(fd, op) by task `pid`."""
    with k.lock:
        def run() -> None:
            t, files = k._files_of(pid)
            do_flock(k, files.get(fd), t.tgid, op)
            k._changed("locks", pid=t.tgid)
        k._errors(run)


def sys_setlk(k: Kernel, pid: int, fd: int, type_: int, start: int = 0, length: int = 0, ofd: bool = False) -> None:
    """fcntl(fd, F_SETLK or F_OFD_SETLK, {type, SEEK_SET, start, length}) by task `pid`."""
    with k.lock:
        def run() -> None:
            t, files = k._files_of(pid)
            do_setlk(k, files.get(fd), files, t.tgid, type_, start, length, ofd)
            k._changed("locks", pid=t.tgid)
        k._errors(run)
