"""File reads, writes and truncation by path (fs/read_write.c vfs_read and
vfs_write, fs/open.c do_truncate): the page cache they go through
(procsim/mm/filemap.py) and the task I/O counters they move
(procsim/ioac.py). The Kernel's read/write/truncate entry points check the
task and call these under the kernel lock."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim import resource
from procsim.errors import KernelError
from procsim.mm import filemap, memory
from procsim.mm.mm import MM, Flush
from procsim.mm.mmap_lock import mmap_write_lock
from procsim.mm.vma import File
from procsim.task import Task
from procsim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def vfs_read(k: Kernel, t: Task, path: str, count: int, offset: int) -> int:
    """A read of `count` bytes at `offset`: the bytes read (short at EOF).
    rchar and syscr (vfs_read); pages missing from the cache are read from
    disk: read_bytes and pgpgin."""
    f = k.vfs.file(path)
    n = max(0, min(count, f.size - offset))
    t.ioac.read_bytes += filemap.find_or_create(k.mem, f, filemap.pages_of(offset, n))
    t.ioac.syscr += 1
    t.ioac.rchar += n
    return n


def vfs_write(k: Kernel, t: Task, path: str, count: int, offset: int) -> int:
    """A write of `count` bytes at `offset` (a path not used before is a new,
    empty file; the file grows to cover the write): wchar and syscw, the
    pages newly dirtied as write_bytes; a partly written page below the old
    end that is not cached is read first (read_bytes). RLIMIT_FSIZE cuts
    the write short, or fails it EFBIG at the limit (no SIGXFSZ)."""
    fsize = t.tg.rlim[resource.RLIMIT_FSIZE].cur
    if offset + count > fsize:  # generic_write_check_limits()
        if offset >= fsize:
            t.ioac.syscw += 1  # vfs_write counts the call whatever it returns
            raise KernelError(errno.EFBIG, f"write at {offset}: RLIMIT_FSIZE is {fsize}")
        count = fsize - offset
    new = path not in k.vfs.files
    f = k.vfs.file(path)
    if new:  # O_CREAT
        f.size = 0
    pages = filemap.pages_of(offset, count)
    if len(pages):
        starts = pages << PAGE_SHIFT
        partial = (starts < offset) | (starts + PAGE_SIZE > offset + count)
        t.ioac.read_bytes += filemap.find_or_create(k.mem, f, pages, partial & (starts < f.size))
        f.size = max(f.size, offset + count)
        t.ioac.write_bytes += filemap.mark_dirty(k.mem, f, pages)
    t.ioac.syscw += 1
    t.ioac.wchar += count
    return count


def do_truncate(k: Kernel, t: Task, path: str, length: int) -> None:
    """The file gets `length` bytes. Growing past RLIMIT_FSIZE is EFBIG;
    shrinking unmaps the pages past the new end from every address space
    (private COW copies too, as unmap_mapping_range(even_cows) does) and
    drops them from the page cache: the dirty ones are the caller's
    cancelled_write_bytes."""
    f = k.vfs.file(path)
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
