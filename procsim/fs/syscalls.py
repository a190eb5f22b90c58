"""The file syscalls of plain fds (fs/open.c, fs/file.c, fs/read_write.c's
lseek, fs/pipe.c, net/socket.c, fs/namei.c's unlink, chdir), the fd
helpers the anon inodes share (procsim/fs/anon_inodes.py: eventfd, epoll,
timerfd, signalfd, inotify, memfd), and the machine-wide file state
(FileState: the mount namespaces' tables, get_next_ino(), nr_files and
fs.file-max).

A mixin of Kernel: each call checks everything first and raises the
kernel's errno with nothing changed, then changes the tables under the
kernel lock and moves the generation."""

from __future__ import annotations

import errno
import posixpath
from typing import TYPE_CHECKING

from procsim import resource
from procsim.errors import KernelError
from procsim.fs import devpts, file as F, locks
from procsim.fs.fdtable import FilesStruct
from procsim.fs.file import OpenFile
from procsim.fs.mount import PIPEFS, SOCKFS, Mount, MntNamespace
from procsim.mm.vma import File as Inode
from procsim.net import syscalls as net_sys

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import Task

NR_FILE = 8192  # the floor of fs.file-max
# where get_next_ino() stands when userspace starts (pipes and sockets share it)
BOOT_NEXT_INO = 9000
# directories every machine has, besides mountpoints
KNOWN_DIRS = frozenset(("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/media", "/mnt", "/opt", "/proc",
                        "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib",
                        "/usr/sbin", "/usr/share", "/var", "/var/lib", "/var/log", "/var/cache", "/var/tmp",
                        "/var/spool", "/var/run", "/run/systemd", "/run/user", "/etc/systemd"))


def _fail(err: int, msg: str) -> OSError:
    return KernelError(err, msg)


class FileState:
    """What the machine's files share: mount tables (by mount namespace),
    the inode counter of pipefs/sockfs, the count of open files."""

    def __init__(self, nr_pages: int, reserved_pages: int) -> None:
        self.mnt_ns: dict[object, MntNamespace] = {}
        self.next_ino = BOOT_NEXT_INO
        self.nr_files = 0
        # files_maxfiles_init(): a tenth of the memory not reserved at boot, in kB
        memreserve = min(reserved_pages * 3 // 2, nr_pages - 1)
        self.max_files = max((nr_pages - memreserve) * 4 // 10, NR_FILE)
        self.nr_open = resource.NR_OPEN
        self.eventfd_ids: set[int] = set()
        self.epolls: list[F.Eventpoll] = []
        self.removed: set[str] = set()   # unlinked paths (nothing there until created again)
        self.recreated = 0               # paths created again after an unlink (their new inode numbers)
        self.locks = locks.FileLocks()   # flock, POSIX and OFD locks (fs/locks.py)
        self.pty = devpts.PtyLimits()     # kernel.pty.max and reserve (fs/devpts.py)

    def get_next_ino(self) -> int:
        self.next_ino += 1
        return self.next_ino


def _resolve(t: "Task", path: str) -> str:
    if not isinstance(path, str) or not path:
        raise OSError(errno.ENOENT, "empty path")
    if "\0" in path:
        raise OSError(errno.EINVAL, "NUL in path")
    if not path.startswith("/"):
        path = posixpath.join(t.fs.pwd, path)
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _kind_of_path(path: str, ns: MntNamespace) -> str:
    if path in KNOWN_DIRS or any(m.mountpoint == path for m in ns.mounts):
        return F.DIR
    if path.startswith("/dev/") and not path.startswith(("/dev/shm/", "/dev/mqueue/")):
        return F.CHR
    return F.REG


class FileSyscalls:
    """Kernel's file syscalls (a mixin: `self` is the Kernel)."""

    # -- helpers ----------------------------------------------------------------

    def set_file_sysctl(self: "Kernel", name: str, value: int) -> None:
        """fs.file-max (max_files) or fs.nr_open (nr_open)."""
        with self.lock:
            setattr(self.files, name, value)
            self._changed("sysctl")

    def mnt_ns(self: "Kernel", t: "Task") -> MntNamespace:
        """The mount table of t's mount namespace (made at first use: a
        namespace made by unshare starts as a copy of the initial one)."""
        return self.mnt_ns_table(t.nsproxy.mnt)

    def mnt_ns_table(self: "Kernel", ns: object) -> MntNamespace:
        """The mount table of namespace `ns` (see mnt_ns)."""
        table = self.files.mnt_ns.get(ns)
        if table is None:
            init = self.files.mnt_ns.get(self.init_ns["mnt"])
            if init is None:
                table = MntNamespace.boot()
            else:
                top = max(m.mnt_id for tab in self.files.mnt_ns.values() for m in tab.mounts)
                table = init.copy(top + 1)
            self.files.mnt_ns[ns] = table
        return table

    def _files_of(self: "Kernel", pid: int) -> tuple["Task", FilesStruct]:
        t = self.task(pid)
        if t.files is None or t.tg.zombie or t.dead:
            raise OSError(errno.ESRCH, f"{pid} has no files (exited)")
        return t, t.files

    def _nofile(self: "Kernel", t: "Task") -> int:
        """rlimit(RLIMIT_NOFILE): fds at or above it are EMFILE (EBADF for dup2);
        the table itself stops at fs.nr_open (expand_files: EMFILE)."""
        return t.tg.rlim[resource.RLIMIT_NOFILE].cur

    def _new_file(self: "Kernel", kind: str, mnt: Mount, flags: int, inode: Inode | None = None,
                  ino: int = 0, private: object = None) -> OpenFile:
        """alloc_empty_file(); callers have checked fs.file-max (_check_room)."""
        self.files.nr_files += 1
        return OpenFile(kind, mnt, flags, inode, ino, private)

    def _check_room(self: "Kernel", t: "Task", files: FilesStruct, n: int) -> None:
        """That n fds can be allocated (EMFILE otherwise) and n files made
        (ENFILE past fs.file-max, which CAP_SYS_ADMIN may pass), before
        anything is made."""
        if self.files.nr_files + n > self.files.max_files and t.tg.cred.euid != 0:
            raise OSError(errno.ENFILE, "fs.file-max reached")
        end = min(self._nofile(t), self.files.nr_open)
        free = sum(1 for f in files.fd[:end] if f is None) + max(0, end - files.max_fds)
        if free < n:
            raise OSError(errno.EMFILE, f"no free fd below RLIMIT_NOFILE ({end})")

    def _install(self: "Kernel", t: "Task", files: FilesStruct, f: OpenFile, cloexec: bool, start: int = 0) -> int:
        fd = files.alloc_fd(start, self._nofile(t), self.files.nr_open)
        files.install(fd, f, cloexec)
        return fd

    def fput(self: "Kernel", f: OpenFile, closer: FilesStruct | None = None) -> None:
        """Drop one reference (an fd slot's of `closer`, whose POSIX locks on
        the inode go: filp_close); at the last, __fput()."""
        if closer is not None:
            locks.locks_remove_posix(self, f, closer)
        f.refs -= 1
        if f.refs > 0:
            return
        locks.locks_remove_file(self, f)
        self.files.nr_files -= 1
        if f.kind == F.EVENTFD:
            self.files.eventfd_ids.discard(f.private.id)
        elif f.kind == F.SOCK:
            net_sys.sock_release(self, f.private)
        elif f.kind == F.EVENTPOLL:
            if f.private in self.files.epolls:
                self.files.epolls.remove(f.private)
        for ep in self.files.epolls:  # eventpoll_release(): out of every interest list
            for tfd in [k for k, v in ep.items.items() if v[0] is f]:
                del ep.items[tfd]

    def _fd_changed(self: "Kernel", t: "Task") -> None:
        self._changed("files", pid=t.tgid)

    def _errors(self: "Kernel", fn, *args):
        """Run fn, the kernel's OSErrors as KernelError (the world unchanged)."""
        try:
            return fn(*args)
        except KernelError:
            raise
        except OSError as e:
            raise KernelError(e.errno, e.strerror or str(e)) from None

    # -- open, close, dup -------------------------------------------------------

    def open(self: "Kernel", pid: int, path: str, flags: int = F.O_RDONLY, mode: int = 0o644) -> int:
        """openat(AT_FDCWD, path, flags): the new fd. The machine's disk
        has every path not unlinked (ENOENT for those, unless O_CREAT)."""
        with self.lock:
            return self._errors(self._open, pid, path, flags)

    def _open(self: "Kernel", pid: int, path: str, flags: int) -> int:
        t, files = self._files_of(pid)
        if flags & ~(sum(F.FLAG_NAMES.values()) | F.O_PATH):
            raise OSError(errno.EINVAL, f"unknown open flags {flags:#o}")
        path = _resolve(t, path)
        ns = self.mnt_ns(t)
        vfs = self.vfs
        inode = vfs.files.get(path)
        creat = flags & F.O_CREAT
        if inode is None and path in self.files.removed and not creat:
            raise OSError(errno.ENOENT, f"{path}: no such file (unlinked)")
        if inode is not None and creat and flags & F.O_EXCL:
            raise OSError(errno.EEXIST, f"{path}: exists (O_CREAT|O_EXCL)")
        kind = inode.kind if inode is not None else (F.DIR if flags & F.O_DIRECTORY and not creat
                                                     else _kind_of_path(path, ns))
        if flags & F.O_DIRECTORY and kind != F.DIR:
            raise OSError(errno.ENOTDIR, f"{path}: not a directory")
        if kind == F.DIR and (flags & F.O_ACCMODE != F.O_RDONLY or creat):
            raise OSError(errno.EISDIR, f"{path}: is a directory")
        self._check_room(t, files, 1)
        if path == devpts.PTMX:
            devpts.check_new_pty(self)
        mnt = ns.lookup(path)
        if inode is None:
            salt = ""
            if path in self.files.removed:
                self.files.removed.discard(path)
                self.files.recreated += 1
                salt = f"\0{self.files.recreated}"
            inode = vfs.file(path, dev=mnt.dev, salt=salt)
            inode.kind = kind
        if kind == F.REG and flags & F.O_TRUNC and flags & F.O_ACCMODE:
            inode.size = 0
        # do_sys_open() forces O_LARGEFILE on 64-bit
        f = self._new_file(kind, mnt, flags | F.O_LARGEFILE, inode)
        fd = self._install(t, files, f, bool(flags & F.O_CLOEXEC))
        self._fd_changed(t)
        return fd

    def close(self: "Kernel", pid: int, fd: int) -> None:
        with self.lock:
            def run() -> None:
                t, files = self._files_of(pid)
                self.fput(files.remove(fd), files)
                self._fd_changed(t)
            self._errors(run)

    def dup(self: "Kernel", pid: int, fd: int, cloexec: bool = False, start: int = 0) -> int:
        """dup() (or fcntl F_DUPFD[_CLOEXEC] from `start`): the lowest free fd."""
        with self.lock:
            def run() -> int:
                t, files = self._files_of(pid)
                f = files.get(fd)
                if start < 0 or start >= self._nofile(t):
                    raise OSError(errno.EINVAL, f"start {start} outside RLIMIT_NOFILE")
                nfd = self._install(t, files, f, cloexec, start)
                self._fd_changed(t)
                return nfd
            return self._errors(run)

    def dup2(self: "Kernel", pid: int, oldfd: int, newfd: int, flags: int = 0, dup3: bool = False) -> int:
        """dup2(), or dup3() (`flags`: O_CLOEXEC; oldfd == newfd is EINVAL)."""
        with self.lock:
            def run() -> int:
                t, files = self._files_of(pid)
                if dup3 and flags & ~F.O_CLOEXEC:
                    raise OSError(errno.EINVAL, f"dup3 flags {flags:#o}")
                if dup3 and oldfd == newfd:
                    raise OSError(errno.EINVAL, "dup3 of an fd onto itself")
                if not 0 <= newfd < self._nofile(t):
                    raise OSError(errno.EBADF, f"fd {newfd} is outside RLIMIT_NOFILE")
                f = files.get(oldfd)
                if oldfd == newfd:
                    return newfd
                files.expand(newfd, self.files.nr_open)
                old = files.install(newfd, f, bool(flags & F.O_CLOEXEC))
                if old is not None:
                    self.fput(old, files)
                self._fd_changed(t)
                return newfd
            return self._errors(run)

    def set_cloexec(self: "Kernel", pid: int, fd: int, on: bool = True) -> None:
        """fcntl(F_SETFD, FD_CLOEXEC)."""
        with self.lock:
            def run() -> None:
                t, files = self._files_of(pid)
                files.get(fd)
                files.close_on_exec[fd] = 1 if on else 0
                self._fd_changed(t)
            self._errors(run)

    def lseek(self: "Kernel", pid: int, fd: int, offset: int, whence: int = 0) -> int:
        """lseek(): SEEK_SET, SEEK_CUR, SEEK_END (ESPIPE on pipes, sockets, anon inodes)."""
        with self.lock:
            def run() -> int:
                t, files = self._files_of(pid)
                f = files.get(fd)
                if f.kind in (F.PIPE, F.SOCK) or f.inode is None:
                    raise OSError(errno.ESPIPE, f"fd {fd} cannot seek")
                if whence not in (0, 1, 2):
                    raise OSError(errno.EINVAL, f"whence {whence}")
                base = (0, f.f_pos, f.inode.size)[whence]
                if base + offset < 0:
                    raise OSError(errno.EINVAL, "negative position")
                f.f_pos = base + offset
                self._fd_changed(t)
                return f.f_pos
            return self._errors(run)

    # -- pipes, sockets (the anon inodes and memfd: fs/anon_inodes.py) ------------

    def pipe(self: "Kernel", pid: int, flags: int = 0) -> tuple[int, int]:
        """pipe2(): (read end, write end) on one pipefs inode."""
        with self.lock:
            def run() -> tuple[int, int]:
                t, files = self._files_of(pid)
                if flags & ~(F.O_CLOEXEC | F.O_NONBLOCK | F.O_DIRECT):
                    raise OSError(errno.EINVAL, f"pipe2 flags {flags:#o}")
                self._check_room(t, files, 2)
                ino = self.files.get_next_ino()
                extra = flags & (F.O_NONBLOCK | F.O_DIRECT)
                r = self._new_file(F.PIPE, PIPEFS, F.O_RDONLY | extra, ino=ino)
                w = self._new_file(F.PIPE, PIPEFS, F.O_WRONLY | extra, ino=ino)
                cloexec = bool(flags & F.O_CLOEXEC)
                rfd = self._install(t, files, r, cloexec)
                wfd = self._install(t, files, w, cloexec)
                self._fd_changed(t)
                return rfd, wfd
            return self._errors(run)

    def socket(self: "Kernel", pid: int, family: int = F.AF_INET, flags: int = 0, type_: int = 1) -> int:
        """socket(): a sockfs inode and its sock (procsim/net/: the protocol
        `type_` selects, SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5)."""
        with self.lock:
            def run() -> int:
                t, files = self._files_of(pid)
                if family not in F.FAMILIES.values():
                    raise OSError(errno.EAFNOSUPPORT, f"address family {family}")
                if flags & ~(F.O_CLOEXEC | F.O_NONBLOCK):
                    raise OSError(errno.EINVAL, f"socket flags {flags:#o}")
                self._check_room(t, files, 1)
                sk = net_sys.sock_create(self, t, family, type_)
                f = self._new_file(F.SOCK, SOCKFS, F.O_RDWR | flags & F.O_NONBLOCK,
                                   ino=self.files.get_next_ino(), private=sk)
                sk.ino, sk.file = f.ino, f
                fd = self._install(t, files, f, bool(flags & F.O_CLOEXEC))
                self._fd_changed(t)
                return fd
            return self._errors(run)

    # -- names --------------------------------------------------------------------

    def chdir(self: "Kernel", pid: int, path: str) -> None:
        """chdir(): ENOENT for an unlinked path, ENOTDIR for a file."""
        with self.lock:
            def run() -> None:
                t = self.task(pid)
                if t.fs is None or t.tg.zombie:
                    raise OSError(errno.ESRCH, f"{pid} has exited")
                p = _resolve(t, path)
                inode = self.vfs.files.get(p)
                if inode is None and p in self.files.removed:
                    raise OSError(errno.ENOENT, f"{p}: no such file (unlinked)")
                # a path never used is taken to be a directory (chdir made it one)
                kind = inode.kind if inode is not None else _kind_of_path(p, self.mnt_ns(t))
                if kind == F.CHR or inode is not None and kind != F.DIR:
                    raise OSError(errno.ENOTDIR, f"{p}: not a directory")
                if inode is None:
                    inode = self.vfs.file(p, dev=self.mnt_ns(t).lookup(p).dev)
                    inode.kind = F.DIR
                t.fs.pwd = p
                self._changed("chdir", pid=t.tgid)
            self._errors(run)

    def unlink(self: "Kernel", path: str, pid: int = 1) -> None:
        """unlink(): the name goes; open files, mappings and exe keep the
        inode and show ` (deleted)`. ENOENT for a path the machine has
        never used (or already unlinked), EISDIR for a directory."""
        with self.lock:
            def run() -> None:
                t = self.task(pid)
                p = _resolve(t, path)
                inode = self.vfs.files.get(p)
                kind = inode.kind if inode is not None else _kind_of_path(p, self.mnt_ns(t))
                if kind == F.DIR and p not in self.files.removed:
                    raise OSError(errno.EISDIR, f"{p}: is a directory")
                if inode is None:
                    raise OSError(errno.ENOENT, f"{p}: not a file the machine knows")
                if inode.kind == F.DIR:
                    raise OSError(errno.EISDIR, f"{p}: is a directory")
                del self.vfs.files[p]
                inode.deleted = True
                self.files.removed.add(p)
                if not inode.nr_mappings and not inode.shmem and not inode.hugetlb \
                        and not any(o.inode is inode for t2 in self.tasks.values() if t2.files is not None
                                    for _, o in t2.files.items()):
                    # the last reference: iput -> evict -> truncate_inode_pages_final(),
                    # its page cache and shadow entries go
                    from procsim.mm import filemap
                    filemap.truncate_pages(self.mem, inode, 0)
                    if self.mem.workingset is not None:
                        self.mem.workingset.forget_file(inode)
                self._changed("unlink", path=p)
            self._errors(run)

    # -- process lifetime hooks (fork, clone, exec, exit) ----------------------------

    def _exec_files(self: "Kernel", t: "Task") -> None:
        """begin_new_exec(): unshare_files(), then do_close_on_exec()."""
        files = t.files
        if files is None:
            return
        if files.users > 1:
            files.users -= 1
            t.files = files = files.dup()
        for f in files.close_on_exec_fds():
            self.fput(f, files)

    def _exit_files(self: "Kernel", t: "Task") -> None:
        """exit_files() and exit_fs(): the task lets go of its tables."""
        files, t.files, t.fs = t.files, None, None
        if files is None:
            return
        files.users -= 1
        if files.users == 0:
            for f in files.close_all():
                self.fput(f, files)
