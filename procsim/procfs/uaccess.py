"""The caller's memory, as an ioctl handler reaches it: copy_from_user and
copy_to_user on user addresses, failing with EFAULT.

The kernel core does not know where that memory is. The FUSE daemon reaches
it with process_vm_readv/writev, unit tests hand in a few bytearrays. What a
transport copied in for the call (the _IOC_SIZE bytes of a restricted FUSE
ioctl) is overlaid on it by `IoctlArg`, so a handler reads and writes its
argument through one interface, as the kernel's handler does.
"""

from __future__ import annotations

import errno
from typing import Protocol


class UserMemory(Protocol):
    """A process's address space, byte-addressed; both raise OSError(EFAULT)
    when any byte of the range is not mapped (or not writable)."""

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...


def efault(addr: int) -> OSError:
    return OSError(errno.EFAULT, f"bad user address {addr:#x}")


class NoUserMemory:
    """A caller whose memory cannot be reached: every access faults."""

    def read(self, addr: int, n: int) -> bytes:
        raise efault(addr)

    def write(self, addr: int, data: bytes) -> None:
        raise efault(addr)


NO_USER_MEMORY = NoUserMemory()


class IoctlArg:
    """The caller's memory with [arg, arg + len(buf)) served from `buf`: the
    argument bytes a restricted ioctl copied in and will copy back out on
    success. Accesses outside it go to `mem`; a range across the edge is
    split."""

    __slots__ = ("arg", "buf", "mem")

    def __init__(self, arg: int, buf: bytearray, mem: UserMemory) -> None:
        self.arg = arg
        self.buf = buf
        self.mem = mem

    def read(self, addr: int, n: int) -> bytes:
        lo, hi = self.arg, self.arg + len(self.buf)
        if lo <= addr and addr + n <= hi:  # the common case: inside the argument
            return bytes(self.buf[addr - lo: addr - lo + n])
        out = bytearray()
        if addr < lo:
            out += self.mem.read(addr, min(n, lo - addr))
        a, b = max(addr, lo), min(addr + n, hi)
        if a < b:
            out += self.buf[a - lo: b - lo]
        if addr + n > hi:
            start = max(addr, hi)
            out += self.mem.read(start, addr + n - start)
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        lo, hi = self.arg, self.arg + len(self.buf)
        n = len(data)
        if lo <= addr and addr + n <= hi:
            self.buf[addr - lo: addr - lo + n] = data
            return
        # outside parts first: a fault there leaves the argument buffer as it was
        if addr < lo:
            self.mem.write(addr, data[: min(n, lo - addr)])
        if addr + n > hi:
            start = max(addr, hi)
            self.mem.write(start, data[start - addr:])
        a, b = max(addr, lo), min(addr + n, hi)
        if a < b:
            self.buf[a - lo: b - lo] = data[a - addr: b - addr]


def check_zeroed_user(mem: UserMemory, addr: int, n: int) -> bool:
    """check_zeroed_user(): are the n bytes at addr all zero? (EFAULT if unreadable)"""
    step = 4096
    for off in range(0, n, step):
        if any(mem.read(addr + off, min(step, n - off))):
            return False
    return True
