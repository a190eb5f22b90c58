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

    def writev(self, pieces: list[tuple[int, bytes]]) -> None:
        """Each (addr, data) in order, in one process_vm_writev (its iovecs
        stop at the first fault, as copies one after another would):
        EFAULT at the first piece not wholly written."""
        pieces = [(a, d) for a, d in pieces if d]
        if len(pieces) <= 1:
            for a, d in pieces:
                self.write(a, d)
            return
        k = len(pieces)
        local, remote = (_IOVec * k)(), (_IOVec * k)()
        for i, (addr, data) in enumerate(pieces):
            if not 0 <= addr < 1 << 64:
                k = i  # the kernel would fault here: write what comes before
                break
            local[i].iov_base, local[i].iov_len = ctypes.cast(data, ctypes.c_void_p).value, len(data)
            remote[i].iov_base, remote[i].iov_len = addr, len(data)
        done = _writev(self.pid, ctypes.addressof(local), k, ctypes.addressof(remote), k, 0) if k else 0
        for addr, data in pieces:
            if done < len(data):
                raise efault(addr)
            done -= len(data)

    def _transfer(self, fn, local: int, remote: int, n: int) -> int:
        if not 0 <= remote < 1 << 64:
            return -errno.EFAULT
        self._local.iov_base, self._local.iov_len = local, n
        self._remote.iov_base, self._remote.iov_len = remote, n
        return fn(self.pid, self._lp, 1, self._rp, 1, 0)
