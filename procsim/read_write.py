"""File reads, writes and truncation by path (fs/read_write.c vfs_read and
vfs_write, fs/open.c do_truncate): the page cache they go through
(procsim/mm/filemap.py) and the task I/O counters they move
(procsim/ioac.py). The Kernel's read/write/truncate entry points check the
task and call these under the kernel lock."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim import ioac, resource
from procsim.block import syscalls as block_syscalls
from procsim.block.blk_core import waiting_reads
from procsim.errors import KernelError
from procsim.fs.file import DIR, FMODE_READ, FMODE_WRITE, MEMFD, O_APPEND, REG, OpenFile  # noqa: F401 (the Kernel's)
from procsim.mm import filemap, lru, memory
from procsim.mm.mm import MM, Flush
from procsim.mm.mmap_lock import mmap_write_lock
from procsim.mm.vma import File
from procsim.task import Task
from procsim.cgroup import io as cgroup_io
from procsim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def vfs_read(k: Kernel, t: Task, f: File, count: int, offset: int) -> int:
    """A read of `count` bytes of inode `f` at `offset`: the bytes read
    (short at EOF). rchar and syscr (vfs_read); pages missing from the
    cache are read from disk: read_bytes and pgpgin."""
    n = max(0, min(count, f.size - offset))
    # its pages charged to its memcg, its bios to its blkcg; it waits for its reads (io pressure)
    with k.memcg.charging(t), cgroup_io.issuing(k, t), waiting_reads(k.block) as wait:
        pages = filemap.pages_of(offset, n)
        rb = filemap.find_or_create(k.mem, f, pages)
        if len(pages) and not f.hugetlb:
            lru.mark_accessed(k.mem, f.cache[pages])  # filemap_read(): folio_mark_accessed
    k.psi.add_stall(t, "io", wait[0])
    t.ioac.read_bytes += rb
    t.ioac.syscr += 1
    t.ioac.rchar += n
    return n


def path_inode(k: Kernel, path: str, create: bool = False) -> File:
    """The inode at `path` (the model's disk has every path), on the device
    of the mount it is under; `create`: a path not used before is a new,
    empty file (O_CREAT)."""
    new = path not in k.vfs.files
    f = k.vfs.file(path)  # on the disk of its mount (VFS.dev_of)
    if new and create:
        f.size = 0
    return f


def vfs_write(k: Kernel, t: Task, f: File, count: int, offset: int) -> int:
    """A write of `count` bytes of inode `f` at `offset` (the file grows to
    cover it): wchar and syscw, the pages newly dirtied as write_bytes; a
    partly written page below the old end that is not cached is read first
    (read_bytes). RLIMIT_FSIZE cuts the write short, or fails it EFBIG at
    the limit (no SIGXFSZ)."""
    fsize = t.tg.rlim[resource.RLIMIT_FSIZE].cur
    if offset + count > fsize:  # generic_write_check_limits()
        if offset >= fsize:
            t.ioac.syscw += 1  # vfs_write counts the call whatever it returns
            raise KernelError(errno.EFBIG, f"write at {offset}: RLIMIT_FSIZE is {fsize}")
        count = fsize - offset
    pages = filemap.pages_of(offset, count)
    if len(pages):
        starts = pages << PAGE_SHIFT
        partial = (starts < offset) | (starts + PAGE_SIZE > offset + count)
        with k.memcg.charging(t), cgroup_io.issuing(k, t), waiting_reads(k.block) as wait:
            rb = filemap.find_or_create(k.mem, f, pages, partial & (starts < f.size), write=True)
        k.psi.add_stall(t, "io", wait[0])
        t.ioac.read_bytes += rb
        f.size = max(f.size, offset + count)
        wb = filemap.mark_dirty(k.mem, f, pages)
        t.ioac.write_bytes += wb
    t.ioac.syscw += 1
    t.ioac.wchar += count
    return count


def fd_file(k: Kernel, t: Task, fd: int, mode: int) -> OpenFile:
    """fdget() for read(2)/write(2): EBADF unless the fd is open with `mode`
    (FMODE_READ/FMODE_WRITE); EISDIR for a directory; only regular files and
    memfds carry data here (EINVAL for pipes, sockets and anon inodes: not
    modelled)."""
    files = t.files
    if files is None:
        raise KernelError(errno.EBADF, f"task {t.pid} has no files")
    try:
        f = files.get(fd)
    except OSError as e:
        raise KernelError(e.errno, e.strerror) from None
    if not f.mode & mode:
        raise KernelError(errno.EBADF, f"fd {fd} is not open for {'reading' if mode == FMODE_READ else 'writing'}")
    if f.kind == DIR:
        raise KernelError(errno.EISDIR, f"fd {fd} is a directory")
    if f.kind not in (REG, MEMFD) or f.inode is None:
        raise KernelError(errno.EINVAL, f"fd {fd}: reads and writes of a {f.kind} are not modelled")
    return f


def do_truncate(k: Kernel, t: Task, path: str, length: int) -> None:
    """The file gets `length` bytes. Growing past RLIMIT_FSIZE is EFBIG;
    shrinking unmaps the pages past the new end from every address space
    (private COW copies too, as unmap_mapping_range(even_cows) does) and
    drops them from the page cache: the dirty ones are the caller's
    cancelled_write_bytes."""
    f = path_inode(k, path)
    if f.hugetlb or f.shmem:
        raise KernelError(errno.EINVAL, f"truncate: {path} is not a regular file on disk")
    limit = t.tg.rlim[resource.RLIMIT_FSIZE].cur
    if length > f.size and length > limit:
        raise KernelError(errno.EFBIG, f"truncate to {length}: RLIMIT_FSIZE is {limit}")
    first = -(-length // PAGE_SIZE)
    if length < f.size:
        for mm in list(k.mem.mms):
            _unmap_file_tail(k, mm, f, first)
        t.ioac.cancelled_write_bytes += filemap.truncate_pages(k.mem, f, first)
        block_syscalls.truncate_discard(k, f, k.mnt_ns(t).lookup(path), f.size, length)
    f.size = length


def _unmap_file_tail(k: Kernel, mm: MM, f: File, first: int) -> None:
    """Zap what `mm` maps of `f` from page `first` on, with its TLB flush."""
    vmas = [v for v in mm.vmas if v.file is f and v.pgoff + v.npages > first]
    if not vmas:
        return
    user = next((t for t in k.tasks.values() if t.mm is mm and not t.dead), None)
    with mmap_write_lock(mm):
        for v in vmas:
            lo = v.start + max(0, first - v.pgoff) * PAGE_SIZE
            mm.update_hiwater_rss()
            if memory.zap_vma(mm, v, lo, v.end, close=False) and user is not None:
                k._flush(user, Flush(lo, v.end))


class ReadWriteSyscalls:
    """read(2)/pread(2), write(2)/pwrite(2), truncate(2) and the io counters
    as the Kernel's entry points
    (a Kernel mixin)."""

    def read(self: "Kernel", tid: int, path: str | None, count: int, offset: int | None = 0, fd: int | None = None) -> int:
        """pread(2) of `count` bytes at `offset` of the file at `path`; or,
        with `fd`, read(2) of the task's open file (at its position, which
        moves, unless `offset` is given: pread). The bytes returned (0 at or
        past EOF). Counts syscr and rchar (vfs_read), and the pages the page
        cache missed as read_bytes and pgpgin."""
        with self.lock:
            t = self._io_task(tid, count, offset or 0)
            if fd is None:
                n = vfs_read(self, t, path_inode(self, path), count, offset or 0)
            else:
                f = fd_file(self, t, fd, FMODE_READ)
                n = vfs_read(self, t, f.inode, count, f.f_pos if offset is None else offset)
                if offset is None:
                    f.f_pos += n
            self._changed("io", tid=t.pid)
            return n

    def write(self: "Kernel", tid: int, path: str | None, count: int, offset: int | None = 0, fd: int | None = None) -> int:
        """pwrite(2) of `count` bytes at `offset` of the file at `path` (it
        grows to cover them; a path not used before is a new, empty file):
        counts syscw and wchar (vfs_write), the pages newly dirtied as
        write_bytes; a partly written page that was not cached and held
        data is read first (read_bytes, pgpgin). Past RLIMIT_FSIZE the
        write is cut short, or fails EFBIG at the limit. With `fd`: write(2)
        at the open file's position (its end with O_APPEND), which moves,
        unless `offset` is given (pwrite)."""
        with self.lock:
            t = self._io_task(tid, count, offset or 0)
            try:
                if fd is None:
                    return vfs_write(self, t, path_inode(self, path, create=True), count,
                                                offset or 0)
                f = fd_file(self, t, fd, FMODE_WRITE)
                pos = offset if offset is not None else f.inode.size if f.f_flags & O_APPEND else f.f_pos
                n = vfs_write(self, t, f.inode, count, pos)
                if offset is None:
                    f.f_pos = pos + n
                return n
            finally:
                self._changed("io", tid=t.pid)

    def truncate(self: "Kernel", tid: int, path: str, length: int) -> None:
        """truncate(2): the file at `path` gets `length` bytes. Growing past
        RLIMIT_FSIZE is EFBIG; shrinking unmaps the pages past the new end
        from every address space and drops them from the page cache: the
        dirty ones count as the caller's cancelled_write_bytes."""
        with self.lock:
            t = self._io_task(tid, length, 0)
            do_truncate(self, t, path, length)
            self._changed("io", tid=t.pid)

    def _io_task(self: "Kernel", tid: int, count: int, offset: int) -> Task:
        t = self.task(tid)
        if t.dead or t.tg.zombie:
            raise KernelError(errno.ESRCH, f"task {tid} has exited")
        if count < 0 or offset < 0:
            raise KernelError(errno.EINVAL, "count and offset must not be negative")
        return t

    def io_accounting(self: "Kernel", tid: int, whole: bool = True) -> dict[str, int]:
        """/proc/PID/io's counters (whole: the thread group's), or a thread's own."""
        with self.lock:
            t = self.task(tid)
            return (ioac.group_ioac(t.tg) if whole else t.ioac).as_dict()
