"""The procfs tree without FUSE: lookup, listing, ownership, lifecycle errnos
(spec §1.1, §1.2, §1.4, §1.6)."""

from __future__ import annotations

import errno
import os
import stat as S

from procfs_helpers import NOBODY, ROOT, errno_of, read_all
from procsim.procfs.tree import ProcFS


def test_root_and_proc_listing(fs: ProcFS) -> None:
    assert fs.readdir("/", ROOT) == ["proc", "sys"]
    k = fs.kernel
    pids = [k.spawn(["/usr/bin/bash"]) for _ in range(3)]
    names = fs.readdir("/proc", ROOT)
    numeric = [int(n) for n in names if n.isdigit()]
    assert numeric == sorted(numeric) == sorted([1, 2] + pids)
    assert {"self", "thread-self", "meminfo", "stat", "uptime", "loadavg", "cpuinfo"} <= set(names)


def test_pid_dir_owner_and_modes(fs: ProcFS) -> None:
    p = fs.kernel.spawn(["/usr/bin/bash"], uid=1000, gid=100)
    a = fs.getattr(f"/proc/{p}", ROOT)
    assert S.S_ISDIR(a.mode) and S.S_IMODE(a.mode) == 0o555 and (a.uid, a.gid) == (1000, 100)
    for name, mode in (("status", 0o444), ("environ", 0o400), ("maps", 0o444), ("comm", 0o644)):
        a = fs.getattr(f"/proc/{p}/{name}", ROOT)
        assert S.S_ISREG(a.mode) and S.S_IMODE(a.mode) == mode, name
    assert S.S_IMODE(fs.getattr("/proc/meminfo", ROOT).mode) == 0o444


def test_threads_hidden_from_listing_but_found_by_lookup(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    assert str(t) not in fs.readdir("/proc", ROOT)
    assert b"Pid:\t%d\n" % t in read_all(fs, f"/proc/{t}/status")
    assert fs.readdir(f"/proc/{p}/task", ROOT) == [str(p), str(t)]
    assert b"Tgid:\t%d\n" % p in read_all(fs, f"/proc/{p}/task/{t}/status")


def test_self_is_the_caller(fs: ProcFS) -> None:
    assert fs.readlink("/proc/self", ROOT) == str(ROOT.pid)
    assert fs.readlink("/proc/thread-self", ROOT) == f"{ROOT.pid}/task/{ROOT.pid}"
    # the caller is not simulated: its own directory comes from the real /proc
    real = open(f"/proc/{os.getpid()}/cmdline", "rb").read()
    assert read_all(fs, f"/proc/{ROOT.pid}/cmdline") == real
    assert read_all(fs, f"/proc/{ROOT.pid}/stat").startswith(b"%d (" % os.getpid())


def test_unknown_paths(fs: ProcFS) -> None:
    for path in ("/nope", "/proc/nope", "/proc/99999", "/proc/1/nope", "/proc/1/task/99999",
                 "/proc/01", "/sys/kernel/nope"):
        assert errno_of(fs.getattr, path, ROOT) == errno.ENOENT, path
    assert errno_of(fs.getattr, "/proc/meminfo/x", ROOT) == errno.ENOTDIR
    assert errno_of(fs.open, "/proc/1", os.O_RDONLY, ROOT) == errno.EISDIR


def test_writes_to_read_only_files(fs: ProcFS) -> None:
    h = fs.open("/proc/1/status", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"x", 0) == errno.EINVAL
    h = fs.open("/proc/meminfo", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"x", 0) == errno.EIO


def test_ioctl_is_enotty(fs: ProcFS) -> None:
    h = fs.open("/proc/1/status", os.O_RDONLY, ROOT)
    assert errno_of(h.ioctl, 0x5401, bytearray(60)) == errno.ENOTTY


def test_absurd_offsets_read_empty(fs: ProcFS) -> None:
    h = fs.open("/proc/1/status", os.O_RDONLY, ROOT)
    assert h.read(4096, 1 << 40) == b""


def test_ptrace_checked_at_open(fs: ProcFS) -> None:
    p = fs.kernel.spawn(["/usr/bin/bash"])  # root's
    assert errno_of(fs.open, f"/proc/{p}/maps", os.O_RDONLY, NOBODY) == errno.EACCES
    assert errno_of(fs.open, f"/proc/{p}/environ", os.O_RDONLY, NOBODY) == errno.EACCES
    assert read_all(fs, f"/proc/{p}/status", NOBODY)


def test_lifecycle_of_open_files(fs: ProcFS) -> None:
    k = fs.kernel
    parent = k.spawn(["/usr/bin/bash"])
    c = k.fork(parent)
    status = fs.open(f"/proc/{c}/status", os.O_RDONLY, ROOT)
    maps = fs.open(f"/proc/{c}/maps", os.O_RDONLY, ROOT)
    k.exit_group(c)
    assert b"State:\tZ (zombie)" in status.read(4096, 0)   # zombie: still readable
    assert maps.read(4096, 0) == b""                       # no mm: empty
    k.wait(parent, c)
    assert errno_of(status.read, 4096, 0) == errno.ESRCH   # reaped: ESRCH on the open fd
    assert errno_of(fs.getattr, f"/proc/{c}", ROOT) == errno.ENOENT
    assert str(c) not in fs.readdir("/proc", ROOT)


def test_reads_return_whole_records(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    for i in range(200):  # many VMAs: alternate protections so they do not merge
        a = k.mmap(p, 4096, 3 if i % 2 else 1)
    h = fs.open(f"/proc/{p}/maps", os.O_RDONLY, ROOT)
    whole = read_all(fs, f"/proc/{p}/maps")
    off, parts = 0, []
    while chunk := h.read(1 << 20, off):
        assert len(chunk) <= 4096 and chunk.endswith(b"\n")
        parts.append(chunk)
        off += len(chunk)
    assert len(parts) > 1 and b"".join(parts) == whole
    # a read at offset 0 renders the new state
    k.munmap(p, a, 4096)
    assert b"%08x-" % a not in h.read(1 << 20, 0)


def test_sys_files(fs: ProcFS) -> None:
    assert read_all(fs, "/sys/devices/system/cpu/online") == b"0-3\n"
    assert read_all(fs, "/sys/devices/system/cpu/possible") == b"0-3\n"
    assert b"[madvise]" in read_all(fs, "/sys/kernel/mm/transparent_hugepage/enabled")
    assert read_all(fs, "/proc/sys/kernel/pid_max") == b"32768\n"


def test_maps_fd_keeps_the_mm_of_its_open(fs: ProcFS) -> None:
    """Every open binds the mm, also a second open in the same generation
    (served from the cached open plan) by another caller: after an exec,
    both read empty rather than the new image."""
    from procsim.procfs.context import Caller
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    first = fs.open(f"/proc/{p}/maps", os.O_RDONLY, ROOT)
    second = fs.open(f"/proc/{p}/maps", os.O_RDONLY, Caller(ROOT.pid + 1, 0, 0))
    assert first.read(4096, 0) == second.read(4096, 0) != b""
    k.exec(p, "/usr/bin/sleep", ["sleep", "1"])
    assert second.read(4096, 0) == b""  # (first: the two share a render-cache key)
    assert first.read(4096, 0) == b""
