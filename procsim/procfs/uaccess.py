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


def write_in_order(mem: UserMemory, pieces: list[tuple[int, bytes]]) -> None:
    """copy_to_user of each (addr, data) in turn: a fault stops there, what
    came before written. One call where `mem` can do them together
    (`writev`: process_vm_writev's iovecs, which stop the same way)."""
    writev = getattr(mem, "writev", None)
    if writev is not None:
        writev(pieces)
        return
    for addr, data in pieces:
        mem.write(addr, data)


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
    """The caller's memory with [arg, arg + len(buf)) served from `buf` (a
    bytearray or a writable memoryview): the argument bytes a restricted
    ioctl copied in and will copy back out on success. Accesses outside it
    go to `mem`; a range across the edge is split."""

    __slots__ = ("arg", "buf", "mem", "hi")

    def __init__(self, arg: int, buf: bytearray | memoryview, mem: UserMemory) -> None:
        self.arg = arg
        self.buf = buf
        self.mem = mem
        self.hi = arg + len(buf)

    def read(self, addr: int, n: int) -> bytes:
        i = addr - self.arg
        if i >= 0 and addr + n <= self.hi:  # the common case: inside the argument
            return bytes(self.buf[i: i + n])
        lo, hi = self.arg, self.hi
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
        lo, hi = self.arg, self.hi
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

    def writev(self, pieces: list[tuple[int, bytes]]) -> None:
        """write_in_order(): the pieces outside the argument in as few calls
        to `mem` as the order allows (inside ones cannot fault)."""
        lo, hi = self.arg, self.hi
        batch: list[tuple[int, bytes]] = []
        for addr, data in pieces:
            end = addr + len(data)
            if end <= lo or addr >= hi:
                batch.append((addr, data))
                continue
            if batch:
                write_in_order(self.mem, batch)
                batch = []
            if lo <= addr and end <= hi:
                self.buf[addr - lo: end - lo] = data
            else:  # across an edge: rare
                self.write(addr, data)
        if batch:
            write_in_order(self.mem, batch)


def check_zeroed_user(mem: UserMemory, addr: int, n: int) -> bool:
    """check_zeroed_user(): are the n bytes at addr all zero? (EFAULT if unreadable)"""
    step = 4096
    for off in range(0, n, step):
        if any(mem.read(addr + off, min(step, n - off))):
            return False
    return True
