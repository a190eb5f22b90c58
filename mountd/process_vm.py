"""The memory of the process making a FUSE request, through
process_vm_readv/process_vm_writev (a root daemon may use them on any
caller, spec/fuse-performance.md §4): how an ioctl handler reaches the
caller's buffers that a restricted FUSE ioctl does not copy (the tail of an
oversized struct, PROCMAP_QUERY's name and build ID buffers).

Implements procsim.procfs.uaccess.UserMemory; every failure, partial
transfers included, is EFAULT, as a faulting copy_{from,to}_user is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

from procsim.procfs.uaccess import efault


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
# iovec pointers as plain addresses: ctypes then converts ints, not objects
_SIG = ([ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong],
        ctypes.c_ssize_t)
_readv = _libc.process_vm_readv
_writev = _libc.process_vm_writev
for _f in (_readv, _writev):
    _f.argtypes, _f.restype = _SIG


class ProcessMemory:
    """The address space of process (or thread) `pid`."""

    __slots__ = ("pid", "_local", "_remote", "_lp", "_rp")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # one iovec pair per object: built once, filled per call
        self._local = _IOVec()
        self._remote = _IOVec()
        self._lp, self._rp = ctypes.addressof(self._local), ctypes.addressof(self._remote)

    def read(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        buf = ctypes.create_string_buffer(n)
        if self._transfer(_readv, ctypes.addressof(buf), addr, n) != n:
            raise efault(addr)
        return buf.raw

    def write(self, addr: int, data: bytes) -> None:
        n = len(data)
        if n == 0:
            return
        # the bytes object's own buffer is the source: no copy (the kernel only reads it)
        if self._transfer(_writev, ctypes.cast(data, ctypes.c_void_p).value, addr, n) != n:
            raise efault(addr)

    def _transfer(self, fn, local: int, remote: int, n: int) -> int:
        if not 0 <= remote < 1 << 64:
            return -errno.EFAULT
        self._local.iov_base, self._local.iov_len = local, n
        self._remote.iov_base, self._remote.iov_len = remote, n
        return fn(self.pid, self._lp, 1, self._rp, 1, 0)
