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
import struct

from procsim.procfs.uaccess import efault


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
# iovec pointers as plain addresses: ctypes then converts ints, not objects
_SIG = ([ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong],
        ctypes.c_ssize_t)
_readv = _libc.process_vm_readv
_writev = _libc.process_vm_writev
for _f in (_readv, _writev):
    _f.argtypes, _f.restype = _SIG

# Where a bytes object's data starts, from its id(): ctypes.cast(b, c_void_p)
# gives the same address, but builds two ctypes objects per call. Measured
# here rather than assumed (CPython's PyBytesObject: header, hash, ob_sval).
_probe = bytes(range(16))
_BYTES_DATA = ctypes.cast(_probe, ctypes.c_void_p).value - id(_probe)
del _probe
_NVEC = 2  # iovecs kept per ProcessMemory: PROCMAP_QUERY writes at most 2 pieces
_IOV2 = struct.Struct("=QQQQ")  # two struct iovec {void *iov_base; size_t iov_len;}


def _data_addr(data: bytes) -> int:
    """The address of `data`'s bytes, which the kernel only reads."""
    if type(data) is bytes:
        return id(data) + _BYTES_DATA
    return ctypes.cast(data, ctypes.c_void_p).value


class ProcessMemory:
    """The address space of process (or thread) `pid`."""

    __slots__ = ("pid", "_local", "_remote", "_lp", "_rp")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # the iovec arrays, built once and filled per call (struct.pack_into
        # on the raw bytes: no ctypes object per field or per call)
        self._local = (ctypes.c_uint64 * (2 * _NVEC))()
        self._remote = (ctypes.c_uint64 * (2 * _NVEC))()
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
        if self._transfer(_writev, _data_addr(data), addr, n) != n:
            raise efault(addr)

    def writev(self, pieces: list[tuple[int, bytes]]) -> None:
        """Each (addr, data) in order, in one process_vm_writev (its iovecs
        stop at the first fault, as copies one after another would):
        EFAULT at the first piece not wholly written."""
        if len(pieces) == 2:  # PROCMAP_QUERY's name and build ID: the common case
            (a, d), (b, e) = pieces
            n, m = len(d), len(e)
            if n and m and 0 <= a < 1 << 64 and 0 <= b < 1 << 64:
                _IOV2.pack_into(self._local, 0, _data_addr(d), n, _data_addr(e), m)
                _IOV2.pack_into(self._remote, 0, a, n, b, m)
                done = _writev(self.pid, self._lp, 2, self._rp, 2, 0)
                if done < n:
                    raise efault(a)
                if done < n + m:
                    raise efault(b)
                return
        pieces = [(a, d) for a, d in pieces if d]
        if len(pieces) <= 1:
            for a, d in pieces:
                self.write(a, d)
            return
        k = len(pieces)
        local, remote = (ctypes.c_uint64 * (2 * k))(), (ctypes.c_uint64 * (2 * k))()
        for i, (addr, data) in enumerate(pieces):
            if not 0 <= addr < 1 << 64:
                k = i  # the kernel would fault here: write what comes before
                break
            local[2 * i], local[2 * i + 1] = _data_addr(data), len(data)
            remote[2 * i], remote[2 * i + 1] = addr, len(data)
        done = _writev(self.pid, ctypes.addressof(local), k, ctypes.addressof(remote), k, 0) if k else 0
        for addr, data in pieces:
            if done < len(data):
                raise efault(addr)
            done -= len(data)

    def _transfer(self, fn, local: int, remote: int, n: int) -> int:
        if not 0 <= remote < 1 << 64:
            return -errno.EFAULT
        self._local[0], self._local[1] = local, n
        self._remote[0], self._remote[1] = remote, n
        return fn(self.pid, self._lp, 1, self._rp, 1, 0)
