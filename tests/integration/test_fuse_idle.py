"""Idle page tracking through a real mount: /proc/PID/idle_bitmap and
/sys/kernel/mm/page_idle/bitmap read and written with os.pread/os.pwrite,
their errnos, a process that exits with the bitmap open, a page shared by
two processes, and the namespace runner binding MNT/sys/kernel/mm."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from hostinfo import requires_host

pytestmark = pytest.mark.fuse

PAGE = 4096
VA = 0x10000000
OFF = VA // 32768
ONES = (1 << 64) - 1
SCENARIO = """
[machine]
nr_cpus = 2
mem = "1G"

[[process]]
name = "app"
pid = 100
argv = ["/usr/bin/app"]

[[process]]
name = "peer"
pid = 101
argv = ["/usr/bin/peer"]
"""


@pytest.fixture
def m(procsim_mount):
    return procsim_mount(SCENARIO)


def word(data: bytes) -> int:
    return struct.unpack("<Q", data)[0]


def oserr(fn, *args) -> int:
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


def pfn(m, pid: int, va: int) -> int:
    fd = os.open(f"{m.proc}/{pid}/pagemap", os.O_RDONLY)
    try:
        e = word(os.pread(fd, 8, (va >> 12) * 8))
    finally:
        os.close(fd)
    assert e >> 63, "page not present"
    return e & ((1 << 55) - 1)


def test_pid_idle_bitmap_read_clear_and_write(m):
    c = m.ctl
    c.mmap(pid=100, length=64 * PAGE, addr=VA, fixed=True)
    for i in (0, 5, 63):
        c.touch(pid=100, addr=VA + i * PAGE, length=PAGE)
    path = f"{m.proc}/100/idle_bitmap"
    assert os.stat(path).st_mode & 0o7777 == 0o600
    assert os.stat(f"{m.proc}/100/task/100/idle_bitmap").st_mode & 0o7777 == 0o600
    fd = os.open(path, os.O_RDWR)
    try:
        assert word(os.pread(fd, 8, OFF)) == ONES & ~(1 | 1 << 5 | 1 << 63)
        assert word(os.pread(fd, 8, OFF)) == ONES
        # lseek + read, as pagemap
        assert os.lseek(fd, OFF, os.SEEK_SET) == OFF
        assert word(os.read(fd, 8)) == ONES
        assert os.lseek(fd, 0, os.SEEK_CUR) == OFF + 8
        # a write of ones clears accessed bits, zeros leave them
        c.touch(pid=100, addr=VA, length=64 * PAGE)
        assert os.pwrite(fd, struct.pack("<Q", 1 << 7), OFF) == 8
        assert word(os.pread(fd, 8, OFF)) == 1 << 7
        # a big read (FUSE may split it): 128 KiB of holes at 1 TiB
        data = os.pread(fd, 1 << 17, (1 << 40) // 32768)
        assert len(data) == 1 << 17 and data == b"\xff" * len(data)
        # errnos
        assert oserr(os.pread, fd, 8, OFF + 4) == errno.EINVAL
        assert oserr(os.pread, fd, 12, OFF) == errno.EINVAL
        assert oserr(os.pwrite, fd, b"\xff" * 4, OFF) == errno.EINVAL
        assert os.pread(fd, 8, 1 << 32) == b""
        assert oserr(os.pwrite, fd, b"\xff" * 8, 1 << 32) == errno.ENXIO
    finally:
        os.close(fd)


def test_pid_exits_with_the_bitmap_open(m):
    c = m.ctl
    child = c.fork(pid=100)
    fd = os.open(f"{m.proc}/{child}/idle_bitmap", os.O_RDWR)
    try:
        assert len(os.pread(fd, 8, OFF)) == 8
        c.exit_group(pid=child)
        assert os.pread(fd, 8, OFF) == b""
        assert oserr(os.pwrite, fd, b"\xff" * 8, OFF) == errno.ESRCH
        c.wait(pid=100, child=child)
        assert os.pread(fd, 8, OFF) == b""
    finally:
        os.close(fd)


@requires_host(caps=("CAP_SETUID", "CAP_SETGID"))  # to become uid 65534
def test_unprivileged_open_is_refused(m):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                os.open(f"{m.proc}/100/idle_bitmap", os.O_RDONLY)
                os._exit(1)
            except PermissionError:
                os._exit(0)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_global_bitmap_and_a_shared_page(m):
    c = m.ctl
    path = f"{m.sys}/kernel/mm/page_idle/bitmap"
    assert sorted(os.listdir(f"{m.sys}/kernel/mm/page_idle")) == ["bitmap"]
    assert os.stat(path).st_mode & 0o7777 == 0o600
    # one shared anonymous page, mapped by the app and its child
    a = c.mmap(pid=100, length=PAGE, shared=True)
    c.touch(pid=100, addr=a, length=PAGE)
    child = c.fork(pid=100)
    c.touch(pid=child, addr=a, length=PAGE, write=False)
    p = pfn(m, 100, a)
    assert pfn(m, child, a) == p
    fd = os.open(path, os.O_RDWR)
    try:
        at = p // 64 * 8
        assert os.pwrite(fd, struct.pack("<Q", 1 << (p % 64)), at) == 8
        assert word(os.pread(fd, 8, at)) >> (p % 64) & 1 == 1
        # neither process's bitmap sees an access any more: both PTEs were cleared
        for pid in (100, child):
            f = os.open(f"{m.proc}/{pid}/idle_bitmap", os.O_RDONLY)
            try:
                w = word(os.pread(f, 8, (a >> 12) // 64 * 8))
            finally:
                os.close(f)
            assert w >> ((a >> 12) % 64) & 1 == 1
        c.touch(pid=child, addr=a, length=PAGE, write=False)
        assert word(os.pread(fd, 8, at)) >> (p % 64) & 1 == 0
        # kernfs: one page per call; alignment; past max_pfn
        assert len(os.pread(fd, 1 << 16, 0)) == 4096
        assert oserr(os.pread, fd, 8, 4) == errno.EINVAL
        assert oserr(os.pwrite, fd, b"\0" * 8, 12) == errno.EINVAL
        assert os.pread(fd, 8, 1 << 40) == b""
        assert oserr(os.pwrite, fd, b"\xff" * 8, 1 << 40) == errno.ENXIO
        assert os.lseek(fd, 0, os.SEEK_END) == 0
    finally:
        os.close(fd)


def test_runner_binds_sys_kernel_mm(m):
    r = m.run(["sh", "-c", "ls /sys/kernel/mm/page_idle; ls /sys/kernel | grep -c ."],
              capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "bitmap"
    assert int(lines[1]) > 1  # the rest of the host's /sys/kernel is still there
