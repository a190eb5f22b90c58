"""mountd/process_vm.py: the caller's memory through process_vm_readv/writev
(this process as the caller), and write_in_order's one-call path."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from mountd.process_vm import ProcessMemory
from procsim.procfs.uaccess import IoctlArg, write_in_order


def test_writev_writes_every_piece_in_one_call() -> None:
    a, b = ctypes.create_string_buffer(16), ctypes.create_string_buffer(8)
    mem = ProcessMemory(os.getpid())
    write_in_order(mem, [(ctypes.addressof(a), b"name\0"), (ctypes.addressof(b), b"\x01\x02\x03")])
    assert a.raw[:5] == b"name\0" and b.raw[:3] == b"\x01\x02\x03"
    assert mem.read(ctypes.addressof(a), 4) == b"name"


def test_writev_stops_at_the_first_fault() -> None:
    """A bad second buffer: EFAULT, the first written (as the kernel's
    copy_to_user of the name, then of the build ID)."""
    a = ctypes.create_string_buffer(16)
    mem = ProcessMemory(os.getpid())
    with pytest.raises(OSError) as e:
        mem.writev([(ctypes.addressof(a), b"first"), (8, b"second")])
    assert e.value.errno == errno.EFAULT and "0x8" in str(e.value)
    assert a.raw[:5] == b"first"
    with pytest.raises(OSError) as e:
        mem.writev([(8, b"x"), (ctypes.addressof(a), b"never")])
    assert e.value.errno == errno.EFAULT and a.raw[:5] == b"first"
    with pytest.raises(OSError):
        mem.writev([(ctypes.addressof(a), b"ok"), (-1, b"bad")])  # not an address at all


class Recorder:
    """A UserMemory that records its calls."""

    def __init__(self) -> None:
        self.calls: list = []

    def read(self, addr: int, n: int) -> bytes:
        return bytes(n)

    def write(self, addr: int, data: bytes) -> None:
        self.calls.append(("write", addr, data))

    def writev(self, pieces: list[tuple[int, bytes]]) -> None:
        self.calls.append(("writev", list(pieces)))


def test_ioctl_arg_batches_the_pieces_outside_its_buffer() -> None:
    rec = Recorder()
    arg = IoctlArg(0x1000, bytearray(8), rec)
    arg.writev([(0x2000, b"n"), (0x3000, b"b"), (0x1000, b"struct")])
    assert rec.calls == [("writev", [(0x2000, b"n"), (0x3000, b"b")])]
    assert arg.buf[:6] == b"struct"
    rec.calls.clear()
    write_in_order(arg, [(0x1002, b"in"), (0x2000, b"out")])  # order kept: the inside one first
    assert arg.buf[2:4] == b"in" and rec.calls == [("writev", [(0x2000, b"out")])]
