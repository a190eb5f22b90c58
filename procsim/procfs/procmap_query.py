"""PROCMAP_QUERY: ioctl(fd of /proc/PID/maps, 0xC0686611, struct procmap_query *)
(spec §6; fs/proc/task_mmu.c do_procmap_query()).

The query runs without the kernel lock, as the real one runs without
mmap_lock: it walks the mm bound to the file at open with per-VMA read locks
(`lock_next_vma` / `vma_end_read`), reads everything it reports while the
VMA is locked, and copies out to the caller only after releasing it. Every
check comes in the kernel's order, so a call that breaks several rules gets
the errno of the first; on an error the caller's struct is not written.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from procsim.mm.hugetlb import HPAGE_SIZE
from procsim.mm.mm import MM
from procsim.mm.mmap_lock import lock_next_vma, vma_end_read
from procsim.mm.pagetable import PAGE_SHIFT, PAGE_SIZE
from procsim.mm.vma import VM_EXEC, VM_HUGETLB, VM_MAYSHARE, VM_READ, VM_WRITE, VMA
from procsim.procfs.context import Ctx
from procsim.procfs.maps import task_mm, vma_name
from procsim.procfs.uaccess import UserMemory, check_zeroed_user, write_in_order

PROCMAP_QUERY = 0xC0686611  # _IOWR('f', 17, struct procmap_query)

# query_flags (and, for the first four, vma_flags)
PROCMAP_QUERY_VMA_READABLE = 0x01
PROCMAP_QUERY_VMA_WRITABLE = 0x02
PROCMAP_QUERY_VMA_EXECUTABLE = 0x04
PROCMAP_QUERY_VMA_SHARED = 0x08
PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10
PROCMAP_QUERY_FILE_BACKED_VMA = 0x20
PROCMAP_QUERY_VALID_FLAGS_MASK = 0x3F
# the flags that filter VMAs (all but COVERING_OR_NEXT_VMA)
_FILTERS = PROCMAP_QUERY_VALID_FLAGS_MASK & ~PROCMAP_QUERY_COVERING_OR_NEXT_VMA
# vma_flags: VM_READ, VM_WRITE and VM_EXEC are the first three bits of both
_RWX = VM_READ | VM_WRITE | VM_EXEC
assert (PROCMAP_QUERY_VMA_READABLE, PROCMAP_QUERY_VMA_WRITABLE, PROCMAP_QUERY_VMA_EXECUTABLE) == (VM_READ, VM_WRITE,
                                                                                                  VM_EXEC)

# struct procmap_query: 104 bytes, no padding (little endian on x86_64)
_STRUCT = struct.Struct("<QQQQQQQQQIIIIQQ")
SIZEOF_PROCMAP_QUERY = _STRUCT.size
# offsetofend(struct procmap_query, query_addr): a caller's struct must reach it
PROCMAP_QUERY_MIN_SIZE = 24
PATH_MAX = 4096  # the name buffer used is at most this big


@dataclass(slots=True)
class ProcmapQuery:
    """struct procmap_query, field for field (include/uapi/linux/fs.h)."""
    size: int = 0
    query_flags: int = 0
    query_addr: int = 0
    vma_start: int = 0
    vma_end: int = 0
    vma_flags: int = 0
    vma_page_size: int = 0
    vma_offset: int = 0
    inode: int = 0
    dev_major: int = 0
    dev_minor: int = 0
    vma_name_size: int = 0
    build_id_size: int = 0
    vma_name_addr: int = 0
    build_id_addr: int = 0

    @classmethod
    def unpack(cls, raw: bytes) -> "ProcmapQuery":
        return cls(*_STRUCT.unpack(raw))

    def pack(self) -> bytes:
        # (not dataclasses.astuple: it deep-copies, 100x slower)
        return _STRUCT.pack(self.size, self.query_flags, self.query_addr, self.vma_start, self.vma_end,
                            self.vma_flags, self.vma_page_size, self.vma_offset, self.inode, self.dev_major,
                            self.dev_minor, self.vma_name_size, self.build_id_size, self.vma_name_addr,
                            self.build_id_addr)


def _err(err: int, msg: str) -> OSError:
    return OSError(err, msg)


def maps_ioctl(ctx: Ctx, cmd: int, arg: int, mem: UserMemory) -> int:
    """procfs_procmap_ioctl(): the ioctls of a maps fd."""
    if cmd != PROCMAP_QUERY:
        raise _err(errno.ENOTTY, "maps: unknown ioctl")
    # bound_mm(), inlined (do_procmap_query checks that the mm has users)
    mm = ctx.mm
    return do_procmap_query(mm if mm is not None else task_mm(ctx), arg, mem)


# The query is one function, as the kernel's is: the struct lives in locals
# (a ProcmapQuery object and the calls between the steps cost more than the
# query itself; this is the FUSE hot path, spec §6.5).
def do_procmap_query(mm: MM | None, arg: int, mem: UserMemory) -> int:
    """The query against `mm`, the address space the fd was opened on (None:
    there was none, a kernel thread or a zombie). Returns 0 or raises."""
    (usize, flags, addr, _, _, _, _, _, _, _, _, name_size, bid_size, name_addr,
     bid_addr) = _copy_query_from_user(arg, mem)
    if flags & ~PROCMAP_QUERY_VALID_FLAGS_MASK:
        raise _err(errno.EINVAL, f"unknown query flags {flags:#x}")
    # either both buffer address and size are set, or both are zero
    if (not name_size) != (not name_addr):
        raise _err(errno.EINVAL, "vma_name_size and vma_name_addr disagree")
    if (not bid_size) != (not bid_addr):
        raise _err(errno.EINVAL, "build_id_size and build_id_addr disagree")
    if mm is None or mm.users <= 0:  # mmget_not_zero(): exited, or exec'd since open
        raise _err(errno.ESRCH, "the address space is gone")

    # query_matching_vma() and the fill-in, one VMA read-locked at a time:
    # everything reported is read while the VMA is locked
    next_vma = flags & PROCMAP_QUERY_COVERING_OR_NEXT_VMA
    a = addr
    while True:
        vma = lock_next_vma(mm, a)
        if vma is None:  # past the last VMA: the gate VMA is never a candidate
            raise _err(errno.ENOENT, f"no VMA at or after {a:#x}")
        try:
            if (next_vma or vma.start <= a) and (not flags & _FILTERS or _matches(vma, flags)):
                vf = vma.flags
                f = vma.file
                if f is not None:
                    offset, (major, minor), ino = vma.pgoff << PAGE_SHIFT, f.dev, f.ino
                else:
                    offset = major = minor = ino = 0
                bid = name = None
                if bid_size:  # build_id_parse(): no file or no ELF build ID is size 0, no error
                    bid = f.build_id if f is not None else None
                    if not bid:
                        bid, bid_size = None, 0
                    elif bid_size < len(bid):
                        raise _err(errno.ENAMETOOLONG,
                                   f"build ID of {len(bid)} bytes does not fit in {bid_size}")
                    else:
                        bid_size = len(bid)
                if name_size:
                    # the raw name plus its NUL, which must fit in
                    # min(vma_name_size, PATH_MAX) bytes; an unnamed VMA gives
                    # size 0 and leaves the buffer alone
                    name = vma_name(mm, vma)
                    if not name:
                        name, name_size = None, 0
                    else:
                        name = name.encode("utf-8", "surrogateescape") + b"\0"
                        if len(name) > min(name_size, PATH_MAX):
                            raise _err(errno.ENAMETOOLONG,
                                       f"name of {len(name)} bytes does not fit in {name_size}")
                        name_size = len(name)
                out = _STRUCT.pack(usize, flags, addr, vma.start, vma.end, vf & _RWX | (
                                   PROCMAP_QUERY_VMA_SHARED if vf & VM_MAYSHARE else 0),
                                   HPAGE_SIZE if vf & VM_HUGETLB else PAGE_SIZE,  # vma_kernel_pagesize()
                                   offset, ino, major, minor, name_size, bid_size, name_addr, bid_addr)
                break
            a = vma.end
        finally:
            vma_end_read(vma)
        if not next_vma:
            raise _err(errno.ENOENT, "no matching VMA covers the address")

    # copy-out order as the kernel's: name, build ID, then the struct, so a
    # bad build ID pointer fails after the name was written (through FUSE:
    # one process_vm_writev for the buffers, the struct being the ioctl's own
    # argument copy)
    if usize < SIZEOF_PROCMAP_QUERY:
        out = out[:usize]
    if name is None and bid is None:
        mem.write(arg, out)
    else:
        pieces = []
        if name is not None:
            pieces.append((name_addr, name))
        if bid is not None:
            pieces.append((bid_addr, bid))
        pieces.append((arg, out))
        write_in_order(mem, pieces)
    return 0


def _copy_query_from_user(arg: int, mem: UserMemory) -> tuple[int, ...]:
    """The caller's struct, its fields: its size checked, then
    copy_struct_from_user() (fields beyond a smaller size are 0; bytes
    beyond ours must be 0)."""
    usize = int.from_bytes(mem.read(arg, 8), "little")
    if usize > PAGE_SIZE:  # can never be that large: reject abuse
        raise _err(errno.E2BIG, f"size {usize} > {PAGE_SIZE}")
    if usize < PROCMAP_QUERY_MIN_SIZE:
        raise _err(errno.EINVAL, f"size {usize} < {PROCMAP_QUERY_MIN_SIZE}")
    if usize >= SIZEOF_PROCMAP_QUERY:
        if usize > SIZEOF_PROCMAP_QUERY and not check_zeroed_user(
                mem, arg + SIZEOF_PROCMAP_QUERY, usize - SIZEOF_PROCMAP_QUERY):
            raise _err(errno.E2BIG, "non-zero bytes past the known struct")
        return _STRUCT.unpack(mem.read(arg, SIZEOF_PROCMAP_QUERY))
    return _STRUCT.unpack(mem.read(arg, usize).ljust(SIZEOF_PROCMAP_QUERY, b"\0"))


def _matches(vma: VMA, flags: int) -> bool:
    """The file-backed and permission filters (SHARED means VM_MAYSHARE)."""
    if flags & PROCMAP_QUERY_FILE_BACKED_VMA and vma.file is None:
        return False
    return not (flags & PROCMAP_QUERY_VMA_READABLE and not vma.flags & VM_READ
                or flags & PROCMAP_QUERY_VMA_WRITABLE and not vma.flags & VM_WRITE
                or flags & PROCMAP_QUERY_VMA_EXECUTABLE and not vma.flags & VM_EXEC
                or flags & PROCMAP_QUERY_VMA_SHARED and not vma.flags & VM_MAYSHARE)
