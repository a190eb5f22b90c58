"""The anon-inode files (fs/anon_inodes.c and their makers: fs/eventfd.c,
fs/eventpoll.c, fs/timerfd.c, fs/signalfd.c, fs/notify/inotify) and
memfd_create (mm/memfd.c): files with no name in any mounted filesystem,
their state in struct file's private_data (procsim/fs/file.py).

A mixin of Kernel beside FileSyscalls (procsim/fs/syscalls.py), whose fd
helpers it uses: each call checks everything first and raises the
kernel's errno with nothing changed."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.fs import file as F
from procsim.fs.mount import ANON_INODE_INO, ANON_INODEFS, SHM_MNT
from procsim.fs.syscalls import _fail, _kind_of_path, _resolve

if TYPE_CHECKING:
    from procsim.kernel import Kernel

EPOLLERR, EPOLLHUP = 0x8, 0x10
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
EFD_SEMAPHORE = 1
MFD_CLOEXEC = 1


class AnonInodeSyscalls:
    """eventfd, epoll, timerfd, signalfd, inotify and memfd_create (a Kernel
    mixin)."""

    def _anon(self: "Kernel", pid: int, kind: str, flags: int, allowed: int, make, acc: int = F.O_RDWR) -> int:
        t, files = self._files_of(pid)
        if flags & ~allowed:
            raise OSError(errno.EINVAL, f"{kind} flags {flags:#o}")
        self._check_room(t, files, 1)
        private = make()
        f = self._new_file(kind, ANON_INODEFS, acc | flags & F.O_NONBLOCK, ino=ANON_INODE_INO, private=private)
        fd = self._install(t, files, f, bool(flags & F.O_CLOEXEC))
        self._fd_changed(t)
        return fd

    def eventfd(self: "Kernel", pid: int, count: int = 0, flags: int = 0) -> int:
        """eventfd2(): flags EFD_CLOEXEC (O_CLOEXEC), EFD_NONBLOCK, EFD_SEMAPHORE (1)."""
        with self.lock:
            if not 0 <= count < 1 << 32:
                raise _fail(errno.EINVAL, f"eventfd count {count}")

            def make() -> F.Eventfd:
                ids = self.files.eventfd_ids
                i = next(i for i in range(len(ids) + 1) if i not in ids)  # ida_alloc: the lowest free
                ids.add(i)
                return F.Eventfd(count, i, bool(flags & EFD_SEMAPHORE))
            return self._errors(self._anon, pid, F.EVENTFD, flags & ~EFD_SEMAPHORE,
                                F.O_CLOEXEC | F.O_NONBLOCK, make)

    def epoll_create(self: "Kernel", pid: int, flags: int = 0) -> int:
        """epoll_create1() (EPOLL_CLOEXEC is O_CLOEXEC)."""
        with self.lock:
            def make() -> F.Eventpoll:
                ep = F.Eventpoll()
                self.files.epolls.append(ep)
                return ep
            return self._errors(self._anon, pid, F.EVENTPOLL, flags, F.O_CLOEXEC, make)

    def epoll_ctl(self: "Kernel", pid: int, epfd: int, op: int, fd: int, events: int = 1,
                  data: int | None = None) -> None:
        with self.lock:
            def run() -> None:
                t, files = self._files_of(pid)
                ep = files.get(epfd)
                target = files.get(fd)
                if ep.kind != F.EVENTPOLL or target is ep:
                    raise OSError(errno.EINVAL, f"fd {epfd} is not an epoll fd (or is the target)")
                if target.kind in (F.REG, F.DIR):
                    raise OSError(errno.EPERM, f"fd {fd} does not support poll")
                items = ep.private.items
                if op == EPOLL_CTL_ADD:
                    if fd in items:
                        raise OSError(errno.EEXIST, f"fd {fd} is already watched")
                elif op in (EPOLL_CTL_DEL, EPOLL_CTL_MOD):
                    if fd not in items:
                        raise OSError(errno.ENOENT, f"fd {fd} is not watched")
                else:
                    raise OSError(errno.EINVAL, f"epoll_ctl op {op}")
                if not 0 <= events < 1 << 32 or data is not None and not 0 <= data < 1 << 64:
                    raise OSError(errno.EINVAL, "events or data out of range")
                if op == EPOLL_CTL_DEL:
                    del items[fd]
                else:
                    items[fd] = (target, events | EPOLLERR | EPOLLHUP, fd if data is None else data)
                self._fd_changed(t)
            self._errors(run)

    def timerfd_create(self: "Kernel", pid: int, clockid: int = CLOCK_MONOTONIC, flags: int = 0) -> int:
        with self.lock:
            if clockid not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME):
                raise _fail(errno.EINVAL, f"timerfd clock {clockid}")
            return self._errors(self._anon, pid, F.TIMERFD, flags, F.O_CLOEXEC | F.O_NONBLOCK,
                                lambda: F.Timerfd(clockid))

    def timerfd_settime(self: "Kernel", pid: int, fd: int, value_ns: int, interval_ns: int = 0) -> None:
        """Arm (value > 0: relative to now) or disarm (0) a timerfd."""
        with self.lock:
            def run() -> None:
                t, files = self._files_of(pid)
                f = files.get(fd)
                if f.kind != F.TIMERFD:
                    raise OSError(errno.EINVAL, f"fd {fd} is not a timerfd")
                if value_ns < 0 or interval_ns < 0:
                    raise OSError(errno.EINVAL, "negative time")
                tm = f.private
                tm.expires = self.now + value_ns if value_ns else 0
                tm.interval = interval_ns if value_ns else 0
                self._fd_changed(t)
            self._errors(run)

    def signalfd(self: "Kernel", pid: int, mask: int, flags: int = 0) -> int:
        """signalfd4(-1, mask): `mask` bit n-1 for signal n (SIGKILL, SIGSTOP dropped)."""
        with self.lock:
            sig = mask & ~((1 << 8) | (1 << 18)) & ((1 << 64) - 1)
            return self._errors(self._anon, pid, F.SIGNALFD, flags, F.O_CLOEXEC | F.O_NONBLOCK,
                                lambda: F.Signalfd(sig))

    def inotify_init(self: "Kernel", pid: int, flags: int = 0) -> int:
        with self.lock:
            return self._errors(self._anon, pid, F.INOTIFY, flags, F.O_CLOEXEC | F.O_NONBLOCK, F.Inotify,
                                F.O_RDONLY)

    def inotify_add_watch(self: "Kernel", pid: int, fd: int, path: str, mask: int) -> int:
        """A watch on `path` (ENOENT if unlinked); the watch descriptor."""
        with self.lock:
            def run() -> int:
                t, files = self._files_of(pid)
                f = files.get(fd)
                if f.kind != F.INOTIFY:
                    raise OSError(errno.EINVAL, f"fd {fd} is not an inotify fd")
                if not 0 < mask & 0xFFF < 1 << 32:
                    raise OSError(errno.EINVAL, "no events in mask")
                p = _resolve(t, path)
                inode = self.vfs.files.get(p)
                if inode is None:
                    if p in self.files.removed:
                        raise OSError(errno.ENOENT, f"{p}: no such file (unlinked)")
                    ns = self.mnt_ns(t)
                    inode = self.vfs.file(p, dev=ns.lookup(p).dev)
                    inode.kind = _kind_of_path(p, ns)
                ino = f.private
                for wd, (i, _) in ino.watches.items():
                    if i is inode:
                        ino.watches[wd] = (inode, mask)
                        self._fd_changed(t)
                        return wd
                wd = ino.next_wd
                ino.next_wd += 1
                ino.watches[wd] = (inode, mask)
                self._fd_changed(t)
                return wd
            return self._errors(run)

    def memfd_create(self: "Kernel", pid: int, name: str, flags: int = MFD_CLOEXEC) -> int:
        """memfd_create(): a shmem inode named `/memfd:NAME (deleted)`."""
        with self.lock:
            def run() -> int:
                t, files = self._files_of(pid)
                if len(name.encode()) > 249 or "/" in name:
                    raise OSError(errno.EINVAL, "memfd name")
                if flags & ~0x1F:
                    raise OSError(errno.EINVAL, f"memfd flags {flags:#x}")
                self._check_room(t, files, 1)
                inode = self.vfs.shmem(0, "/memfd:" + name)
                inode.kind = F.MEMFD
                f = self._new_file(F.MEMFD, SHM_MNT, F.O_RDWR | F.O_LARGEFILE, inode)
                fd = self._install(t, files, f, bool(flags & MFD_CLOEXEC))
                self._fd_changed(t)
                return fd
            return self._errors(run)
