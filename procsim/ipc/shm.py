"""ipc/shm.c: System V shared memory. A segment is a shmem file on the
internal shm mount (`/SYSV<key> (deleted)`, its inode number the shmid);
shmat maps it shared into the caller, and the pages faulted in there are
the segment's page cache, so they count in meminfo's Shmem (and
Committed_AS) until the segment is removed and its last attach is gone.

The segment holds a reference of its own on the file (shm_file) until
IPC_RMID; nattch is the number of VMAs mapping it (shm_open runs for
every copy: fork, VMA splits), so it follows munmap and exit too.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from procsim.errors import KernelError
from procsim.mm.mm import page_align
from procsim.mm.mmap import do_munmap, map_region, mmap_start
from procsim.mm.vma import (VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_READ, VM_SHARED, VM_WRITE,
                            File)
from procsim.units import NSEC, PAGE_SIZE

if TYPE_CHECKING:
    from procsim.kernel import Kernel

IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL = 0o1000, 0o2000
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000
SHM_RDONLY = 0o10000
SHMMIN, SHMMAX = 1, (1 << 63) - (1 << 24) - 1   # ULONG_MAX - 2^24 as a signed size
SHMMNI = 4096
SEQ_MULTIPLIER = 32768                          # IPCMNI: id = seq * 32768 + index
SHM_DEV = (0, 1)                                 # the internal shm mount


@dataclass(slots=True, eq=False)
class ShmSegment:
    key: int
    id: int
    mode: int            # the permission bits, SHM_DEST once removed
    size: int
    cpid: int
    lpid: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    ctime: int           # seconds since the epoch
    file: File
    atime: int = 0
    dtime: int = 0

    @property
    def nattch(self) -> int:
        """The VMAs mapping it (the segment's own reference left out)."""
        return self.file.nr_mappings - (0 if self.mode & SHM_DEST else 1)

    @property
    def rss_pages(self) -> int:
        return int(np.count_nonzero(self.file.cache))


@dataclass(slots=True)
class ShmIds:
    """The (initial) ipc namespace's shm ids."""
    segments: dict[int, ShmSegment] = field(default_factory=dict)
    seq: int = 0

    def live(self) -> list[ShmSegment]:
        """Segments in id order; removed ones whose last attach is gone are dropped."""
        for sid in [s.id for s in self.segments.values() if s.mode & SHM_DEST and s.file.nr_mappings == 0]:
            del self.segments[sid]
        return sorted(self.segments.values(), key=lambda s: s.id % SEQ_MULTIPLIER)


def _now(k: Kernel) -> int:
    return k.btime + k.now // NSEC


def _caller(k: Kernel, pid: int):
    t = k.tasks.get(pid)
    if t is None or t.dead:
        raise KernelError(errno.ESRCH, f"no task {pid}")
    return t


def _may(seg: ShmSegment, t, want: int) -> None:
    """ipcperms(): the owner's, group's or others' bits; root passes."""
    c = t.tg.cred
    if c.euid == 0:
        return
    bits = seg.mode >> 6 if c.euid in (seg.uid, seg.cuid) else seg.mode >> 3 if c.egid in (seg.gid, seg.cgid) \
        else seg.mode
    if want & ~bits & 0o7:
        raise KernelError(errno.EACCES, "shm: permission denied")


def shmget(k: Kernel, pid: int, key: int, size: int, flags: int = IPC_CREAT | 0o600) -> int:
    """shmget(2): the id of the segment with `key` (IPC_CREAT: made if
    missing; with IPC_EXCL: EEXIST if present), or a new private one."""
    with k.lock:
        t = _caller(k, pid)
        ids = k.shm
        ids.live()
        seg = None if key == IPC_PRIVATE else next((s for s in ids.segments.values()
                                                     if s.key == key and not s.mode & SHM_DEST), None)
        if seg is not None:
            if flags & IPC_CREAT and flags & IPC_EXCL:
                raise KernelError(errno.EEXIST, f"shm key {key:#x} exists")
            if size > seg.size:
                raise KernelError(errno.EINVAL, "shm: size larger than the segment")
            _may(seg, t, (flags >> 6) & 0o7)
            return seg.id
        if key != IPC_PRIVATE and not flags & IPC_CREAT:
            raise KernelError(errno.ENOENT, f"no shm segment with key {key:#x}")
        if not SHMMIN <= size <= SHMMAX:
            raise KernelError(errno.EINVAL, f"shm size {size} out of range")
        if len(ids.segments) >= SHMMNI:
            raise KernelError(errno.ENOSPC, "shm: SHMMNI segments")
        used = {s.id % SEQ_MULTIPLIER for s in ids.segments.values()}
        idx = next(i for i in range(SHMMNI) if i not in used)
        sid = ids.seq * SEQ_MULTIPLIER + idx
        ids.seq += 1
        f = File(f"/SYSV{key:08x}", sid, SHM_DEV, size, shmem=True, deleted=True, writable=True)
        f.nr_mappings = 1  # the segment's own reference (shm_file)
        c = t.tg.cred
        seg = ShmSegment(key, sid, flags & 0o777, size, t.tgid, 0, c.euid, c.egid, c.euid, c.egid, _now(k), f)
        ids.segments[sid] = seg
        k._changed("shm", id=sid)
        return sid


def _segment(k: Kernel, shmid: int) -> ShmSegment:
    k.shm.live()
    seg = k.shm.segments.get(shmid)
    if seg is None:
        raise KernelError(errno.EINVAL, f"no shm segment {shmid}")
    return seg


def shmat(k: Kernel, pid: int, shmid: int, addr: int = 0, readonly: bool = False) -> int:
    """shmat(2): map the segment shared (rw-s, or r--s with SHM_RDONLY)."""
    with k.lock:
        t = _caller(k, pid)
        seg = _segment(k, shmid)
        _may(seg, t, 0o4 if readonly else 0o6)
        mm = t.tg.mm
        if mm is None:
            raise KernelError(errno.EINVAL, "shmat by a kernel thread")
        if addr % PAGE_SIZE:
            raise KernelError(errno.EINVAL, "shmat: address not page aligned")
        length = page_align(seg.size)
        start = mmap_start(mm, length, 0x10 if addr else 0, addr)  # MAP_FIXED at a given address
        flags = VM_READ | VM_SHARED | VM_MAYSHARE | VM_MAYREAD | VM_MAYEXEC
        if not readonly:
            flags |= VM_WRITE | VM_MAYWRITE
        _, flush = map_region(mm, start, start + length, flags, seg.file, 0)
        k._flush(t, flush)
        seg.atime, seg.lpid = _now(k), t.tgid
        k._changed("shm", id=shmid, pid=t.tgid)
        return start


def shmdt(k: Kernel, pid: int, addr: int) -> None:
    """shmdt(2): unmap the attach at `addr` (EINVAL if none starts there)."""
    with k.lock:
        t = _caller(k, pid)
        mm = t.tg.mm
        v = mm.vmas.find(addr) if mm is not None else None
        if v is None or v.start != addr or v.file is None or v.file.dev != SHM_DEV:
            raise KernelError(errno.EINVAL, "shmdt: no attach at that address")
        seg = next(s for s in k.shm.segments.values() if s.file is v.file)
        k._flush(t, do_munmap(mm, v.start, v.end))
        seg.dtime, seg.lpid = _now(k), t.tgid
        k.shm.live()
        k._changed("shm", id=seg.id, pid=t.tgid)


def shmctl_rmid(k: Kernel, pid: int, shmid: int) -> None:
    """shmctl(IPC_RMID): the key is freed now (IPC_PRIVATE), the pages when
    the last attach goes; only the owner, the creator or root."""
    with k.lock:
        t = _caller(k, pid)
        seg = _segment(k, shmid)
        c = t.tg.cred
        if c.euid not in (0, seg.uid, seg.cuid):
            raise KernelError(errno.EPERM, "shmctl IPC_RMID: not the owner")
        if not seg.mode & SHM_DEST:
            seg.mode |= SHM_DEST
            seg.key = IPC_PRIVATE
            seg.ctime = _now(k)
            _put_own_ref(k, seg.file)
        k.shm.live()
        k._changed("shm", id=shmid)


def _put_own_ref(k: Kernel, f: File) -> None:
    """The segment lets go of its file (shm_destroy's fput): with no attach
    left, the pages go back (vma_file_put does the same for the last one)."""
    f.nr_mappings -= 1
    if f.nr_mappings == 0:
        k.mem.free(f.cache[f.cache != 0])
        f.cache = np.zeros(0, np.int64)
