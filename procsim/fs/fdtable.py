"""files_struct and its fdtable (fs/file.c): fd -> open file, the
close-on-exec bits, next_fd, and max_fds, which grows as expand_fdtable()
grows it (NR_OPEN_DEFAULT = 64 slots embedded, then powers of two that fit
the fd: what status shows as FDSize).

One per process, shared by CLONE_FILES threads (`users`), copied by fork
(dup_fd), unshared and swept of close-on-exec fds by exec, closed when its
last user exits. The slots are a list and a bytearray: nothing per fd but
the open file itself."""

from __future__ import annotations

import errno

from procsim.fs.file import OpenFile

NR_OPEN_DEFAULT = 64  # BITS_PER_LONG: the table embedded in files_struct
BITS_PER_LONG = 64


def _roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


class FilesStruct:
    __slots__ = ("fd", "close_on_exec", "next_fd", "max_fds", "nr_open_fds", "users")

    def __init__(self, max_fds: int = NR_OPEN_DEFAULT) -> None:
        self.fd: list[OpenFile | None] = [None] * max_fds
        self.close_on_exec = bytearray(max_fds)
        self.next_fd = 0
        self.max_fds = max_fds
        self.nr_open_fds = 0
        self.users = 1

    # -- lookups --------------------------------------------------------------

    def get(self, fd: int) -> OpenFile:
        """fget(): EBADF for a closed or impossible fd."""
        if 0 <= fd < self.max_fds:
            f = self.fd[fd]
            if f is not None:
                return f
        raise OSError(errno.EBADF, f"fd {fd} is not open")

    def open_fds(self) -> list[int]:
        """The open fds, in order (what fd/ and fdinfo/ list)."""
        return [i for i, f in enumerate(self.fd) if f is not None]

    def items(self) -> list[tuple[int, OpenFile]]:
        return [(i, f) for i, f in enumerate(self.fd) if f is not None]

    def cloexec(self, fd: int) -> bool:
        return bool(self.close_on_exec[fd])

    # -- allocation -----------------------------------------------------------

    def expand(self, nr: int, nr_open: int) -> None:
        """expand_files(): make room for fd `nr` (EMFILE past fs.nr_open)."""
        if nr < self.max_fds:
            return
        if nr >= nr_open:
            raise OSError(errno.EMFILE, f"fd {nr} is past fs.nr_open ({nr_open})")
        new = _roundup_pow_of_two(nr + 1)  # alloc_fdtable(nr + 1)
        if new > nr_open:
            new = nr_open // BITS_PER_LONG * BITS_PER_LONG
        grow = new - self.max_fds
        self.fd.extend([None] * grow)
        self.close_on_exec.extend(bytes(grow))
        self.max_fds = new

    def alloc_fd(self, start: int, end: int, nr_open: int) -> int:
        """alloc_fd(): the lowest free fd >= start; EMFILE if it is not
        below `end` (RLIMIT_NOFILE)."""
        fd = max(start, self.next_fd)
        fds = self.fd
        n = len(fds)
        while fd < n and fds[fd] is not None:
            fd += 1
        if fd >= end:
            raise OSError(errno.EMFILE, f"no free fd below RLIMIT_NOFILE ({end})")
        self.expand(fd, nr_open)
        if start <= self.next_fd:
            self.next_fd = fd + 1
        return fd

    def install(self, fd: int, f: OpenFile, cloexec: bool) -> OpenFile | None:
        """fd_install() (or dup2's replacement of an open fd): the file that
        was there, for the caller to fput."""
        old = self.fd[fd]
        self.fd[fd] = f
        self.close_on_exec[fd] = 1 if cloexec else 0
        f.refs += 1
        if old is None:
            self.nr_open_fds += 1
        return old

    def remove(self, fd: int) -> OpenFile:
        """file_close_fd(): take the file out of its slot (EBADF if none);
        the caller drops the slot's reference (fput)."""
        f = self.get(fd)
        self.fd[fd] = None
        self.close_on_exec[fd] = 0
        self.nr_open_fds -= 1
        if fd < self.next_fd:
            self.next_fd = fd
        return f

    # -- process lifetime -----------------------------------------------------

    def dup(self) -> "FilesStruct":
        """dup_fd(): a copy for fork, sized for the open fds as
        sane_fdtable_size() counts them (the last open fd's word of the
        bitmap), every file referenced once more."""
        last = max((i for i, f in enumerate(self.fd) if f is not None), default=-1)
        open_files = (last // BITS_PER_LONG + 1) * BITS_PER_LONG if last >= 0 else 0
        size = NR_OPEN_DEFAULT if open_files <= NR_OPEN_DEFAULT else _roundup_pow_of_two(open_files)
        new = FilesStruct(size)
        n = min(len(self.fd), size)
        new.fd[:n] = self.fd[:n]
        new.close_on_exec[:n] = self.close_on_exec[:n]
        for f in new.fd:
            if f is not None:
                f.refs += 1
        new.nr_open_fds = self.nr_open_fds
        new.next_fd = self.next_fd
        return new

    def close_all(self) -> list[OpenFile]:
        """close_files(): every open file, taken out."""
        out = []
        for fd, f in enumerate(self.fd):
            if f is not None:
                out.append(f)
                self.fd[fd] = None
        self.close_on_exec[:] = bytes(len(self.close_on_exec))
        self.nr_open_fds = 0
        self.next_fd = 0
        return out

    def close_on_exec_fds(self) -> list[OpenFile]:
        """do_close_on_exec(): the files of close-on-exec fds, taken out."""
        out = []
        for fd in [i for i, b in enumerate(self.close_on_exec) if b]:
            out.append(self.remove(fd))
        return out
