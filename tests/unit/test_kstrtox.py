"""procsim/kstrtox.py, lib/kstrtox.c's parsers: each case checked against
this host's kernel through the files that use them (clear_refs: kstrtoint
base 10 of strstrip(); oom_score_adj: base 0), and the parsers alone."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from procfs_helpers import ROOT, errno_of
from procsim.kstrtox import kstrtoint, kstrtoll, kstrtoull, strstrip
from procsim.procfs.tree import ProcFS
from invariants import boot

# (bytes written, what the write returns or -errno), as a 6.18 kernel answers
# for /proc/PID/clear_refs (count capped at 12; 1..5 taken)
CLEAR_REFS = [
    (b"1", 1), (b"1\n", 2), (b" 1 ", 3), (b"\xa01\xa0", 3), (b"+1", 2), (b"01", 2), (b"1\0junk", 6),
    (b"4" + b" " * 20, 12), (b"-1", -errno.EINVAL), (b"-+1", -errno.EINVAL), (b"+-1", -errno.EINVAL),
    (b"0x1", -errno.EINVAL), (b"1x", -errno.EINVAL), (b"", -errno.EINVAL), (b"\n", -errno.EINVAL),
    (b"6", -errno.EINVAL), (b"1 2", -errno.EINVAL), (b"1\n\n", 3), (b"4294967297", -errno.ERANGE),
    (b"99999999999", -errno.ERANGE), (b"-2147483649", -errno.ERANGE), (b"18446744073709551616", -errno.ERANGE),
]


def _simulated(data: bytes) -> int:
    k = boot(nr_cpus=2, kthreadd=False)
    pid = k.spawn(["app"])
    h = ProcFS(k).open(f"/proc/{pid}/clear_refs", os.O_WRONLY, ROOT)
    try:
        return h.write(data, 0)
    except OSError as e:
        return -e.errno


@pytest.mark.parametrize("data,result", CLEAR_REFS)
def test_clear_refs_writes(data: bytes, result: int) -> None:
    assert _simulated(data) == result


def test_clear_refs_writes_against_this_host() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        real = []
        for data, _ in CLEAR_REFS:
            fd = os.open(f"/proc/{child.pid}/clear_refs", os.O_WRONLY)
            try:
                real.append(os.write(fd, data))
            except OSError as e:
                real.append(-e.errno)
            finally:
                os.close(fd)
    except PermissionError as e:
        pytest.skip(f"cannot write another process's clear_refs here: {e}")
    finally:
        child.kill()
        child.wait()
    assert real == [r for _, r in CLEAR_REFS]


@pytest.mark.parametrize("s,base,value", [
    (b"0x1f", 0, 31), (b"0X1F", 16, 31), (b"1f", 16, 31), (b"017", 0, 15), (b"017", 10, 17), (b"0", 0, 0),
    (b"-0", 0, 0), (b"+5\n", 10, 5), (b"-2147483648", 10, -(1 << 31)), (b"2147483647", 0, (1 << 31) - 1),
])
def test_kstrtoint(s: bytes, base: int, value: int) -> None:
    assert kstrtoint(s, base) == value


@pytest.mark.parametrize("s,base,err", [
    (b"08", 0, errno.EINVAL), (b"0x", 0, errno.EINVAL), (b"0xg", 16, errno.EINVAL), (b"5\n\n", 10, errno.EINVAL),
    (b"-+5", 10, errno.EINVAL), (b"2147483648", 10, errno.ERANGE), (b"0x80000000", 0, errno.ERANGE),
])
def test_kstrtoint_errors(s: bytes, base: int, err: int) -> None:
    assert errno_of(kstrtoint, s, base) == err


def test_the_wider_ones() -> None:
    assert kstrtoull(b"18446744073709551615", 10) == (1 << 64) - 1
    assert errno_of(kstrtoull, b"18446744073709551616", 10) == errno.ERANGE
    assert errno_of(kstrtoull, b"-1", 10) == errno.EINVAL
    assert kstrtoll(b"-9223372036854775808", 10) == -(1 << 63)
    assert errno_of(kstrtoll, b"9223372036854775808", 10) == errno.ERANGE
    assert strstrip(b"\xa0\t 7 \n") == b"7"
