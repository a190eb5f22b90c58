"""Helpers of the procfs tests that drive ProcFS without FUSE (the `fs`
fixture is in conftest.py)."""

from __future__ import annotations

import os

import pytest

from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS

ROOT = Caller(os.getpid(), 0, 0)
NOBODY = Caller(os.getpid(), 65534, 65534)


def read_all(fs: ProcFS, path: str, caller: Caller = ROOT, chunk: int = 1024) -> bytes:
    """open, then read to EOF as cat does."""
    h = fs.open(path, os.O_RDONLY, caller)
    out, off = b"", 0
    while data := h.read(chunk, off):
        out += data
        off += len(data)
    return out


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno
