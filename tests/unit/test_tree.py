"""The procfs tree without FUSE: lookup, listing, ownership, lifecycle errnos
(spec §1.1, §1.2, §1.4, §1.6)."""

from __future__ import annotations

import errno
import os
import stat as S

import pytest

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


# -- sysctls: proc_dointvec_minmax (answers measured on a 6.18 host, pid_max 32768) ----------------


def _sysctl_write(fs: ProcFS, name: str, data: bytes, offset: int = 0) -> int:
    return fs.open(f"/proc/sys/kernel/{name}", os.O_WRONLY, ROOT).write(data, offset)


def _world(fs: ProcFS) -> tuple:
    k = fs.kernel
    return (k.config.pid_max, k.max_threads, read_all(fs, "/proc/sys/kernel/pid_max"),
            read_all(fs, "/proc/sys/kernel/threads-max"), read_all(fs, "/proc/1/status"))


@pytest.mark.parametrize("data,used", [
    (b"32768\n", 6), (b"32768", 5), (b" 32768", 6), (b"\t32768\n\n", 8),
    (b"32768 5", 6), (b"32768\nx", 6),           # one number: what follows its blanks is left unwritten
    (b"0x8000", 6), (b"0X8000", 6), (b"0100000", 7),  # base 0: hex and octal
])
def test_sysctl_write_of_the_current_value(fs: ProcFS, data: bytes, used: int) -> None:
    before = _world(fs)
    assert _sysctl_write(fs, "pid_max", data) == used
    assert _world(fs) == before


@pytest.mark.parametrize("data", [
    b"32768x", b"32768,5", b"+32768", b"abc", b"\n", b"-", b"-0", b"-5", b"08", b"0x", b"00x8000",
    b"32768\0", b"32768\0x", b"0" * 5000 + b"32768",   # a NUL is no blank; 21 digits are too many
    b"99999999999", b"2147483648", str((1 << 32) + 32768).encode(),  # beyond an int
    b"1", b"0", b"300", b"4194305",                     # outside [RESERVED_PIDS + 1, PID_MAX_LIMIT]
])
def test_bad_pid_max_writes_are_einval_and_change_nothing(fs: ProcFS, data: bytes) -> None:
    before = _world(fs)
    assert errno_of(_sysctl_write, fs, "pid_max", data) == errno.EINVAL
    assert _world(fs) == before


@pytest.mark.parametrize("data", [b"abc", b"0", b"-5", b"1073741824", b"99999999999"])
def test_bad_threads_max_writes_are_einval_and_change_nothing(fs: ProcFS, data: bytes) -> None:
    before = _world(fs)
    assert errno_of(_sysctl_write, fs, "threads-max", data) == errno.EINVAL
    assert _world(fs) == before


def test_sysctl_writes_past_offset_0_and_empty_ones_are_ignored(fs: ProcFS) -> None:
    before = _world(fs)
    assert _sysctl_write(fs, "pid_max", b"abc", 1) == 3     # sysctl_writes_strict: ignored whole
    assert _sysctl_write(fs, "pid_max", b"1000\n", 2) == 5
    assert _sysctl_write(fs, "pid_max", b"") == 0
    assert _world(fs) == before


def test_sysctl_writes_change_the_kernel(fs: ProcFS) -> None:
    k = fs.kernel
    assert _sysctl_write(fs, "pid_max", b"1000\n") == 5
    assert k.config.pid_max == 1000 and read_all(fs, "/proc/sys/kernel/pid_max") == b"1000\n"
    assert errno_of(lambda: k.spawn(["/usr/bin/true"], pid=1000)) == errno.EINVAL
    assert k.spawn(["/usr/bin/true"], pid=999) == 999
    assert k.spawn(["/usr/bin/true"]) == 300  # pids wrap below the new pid_max
    # threads-max accepts 1..FUTEX_TID_MASK (a 6.18 host took "1" and "19"); fork then stops at it
    n = len(k.tasks)
    assert _sysctl_write(fs, "threads-max", str(n).encode()) == len(str(n))
    assert k.max_threads == n and read_all(fs, "/proc/sys/kernel/threads-max") == f"{n}\n".encode()
    assert errno_of(k.spawn, ["/usr/bin/true"]) == errno.EAGAIN
    assert len(k.tasks) == n
    assert _sysctl_write(fs, "threads-max", b"0x3fffffff") == 10
    assert k.spawn(["/usr/bin/true"]) > 0


def test_sysctl_reads_at_an_offset(fs: ProcFS) -> None:
    h = fs.open("/proc/sys/kernel/pid_max", os.O_RDONLY, ROOT)
    assert h.read(1, 0) == b"3" and h.read(1, 1) == b""    # an int: EOF past offset 0 (cat -u reads "3")
    assert h.read(100, 3) == b"" and h.read(100, 0) == b"32768\n"
    h = fs.open("/proc/sys/kernel/threads-max", os.O_RDONLY, ROOT)
    assert h.read(100, 2) == b""
    h = fs.open("/proc/sys/kernel/osrelease", os.O_RDONLY, ROOT)
    assert h.read(100, 1) == b".18.0-procsim\n"              # a string: read from the offset


def test_read_only_sysctl_refuses_root_writers(fs: ProcFS) -> None:
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        assert errno_of(fs.open, "/proc/sys/kernel/osrelease", flags, ROOT) == errno.EACCES
    assert errno_of(lambda: fs.setattr("/proc/sys/kernel/osrelease", ROOT, size=0)) == errno.EACCES
    fs.setattr("/proc/sys/kernel/pid_max", ROOT, size=0)  # 0644: a no-op


# -- inode operations (answers of a 6.18 host; the FUSE test compares them live) -----------------


def test_o_direct_is_einval_after_the_other_checks(fs: ProcFS) -> None:
    for path in ("/proc/1/status", "/proc/meminfo", "/proc/sys/kernel/pid_max", "/sys/devices/system/cpu/online"):
        assert errno_of(fs.open, path, os.O_RDONLY | os.O_DIRECT, ROOT) == errno.EINVAL, path
        assert errno_of(fs.open, path, os.O_RDONLY | os.O_DIRECT, ROOT) == errno.EINVAL, path  # cached plan
    assert errno_of(fs.open, "/proc/sys/kernel/osrelease", os.O_WRONLY | os.O_DIRECT, ROOT) == errno.EACCES
    assert errno_of(fs.open, "/proc/2/maps", os.O_RDONLY | os.O_DIRECT, NOBODY) == errno.EACCES


def test_fsync(fs: ProcFS) -> None:
    for path in ("/proc/1/status", "/proc/meminfo", "/proc/sys/kernel/pid_max", "/proc/1", "/proc", "/sys/devices"):
        assert errno_of(fs.fsync, path, ROOT) == errno.EINVAL, path
    fs.fsync("/sys/devices/system/cpu/online", ROOT)  # kernfs: noop_fsync


@pytest.mark.parametrize("path,mode,owner,times", [
    ("/proc/1", errno.EPERM, errno.EPERM, errno.EPERM),
    ("/proc/1/task/1", errno.EPERM, errno.EPERM, errno.EPERM),
    ("/proc/1/task", errno.EPERM, None, None),
    ("/proc/1/status", errno.EPERM, None, None),
    ("/proc/1/clear_refs", errno.EPERM, None, None),
    ("/proc/sys/kernel/pid_max", errno.EPERM, errno.EPERM, None),
    ("/proc/sys", errno.EPERM, errno.EPERM, None),
    ("/proc/meminfo", None, None, None),
    ("/proc", None, None, None),
    ("/sys/devices/system/cpu/online", None, None, None),
])
def test_setattr_to_the_current_values(fs: ProcFS, path: str, mode, owner, times) -> None:
    a = fs.getattr(path, ROOT)
    def err(**kw):
        try:
            fs.setattr(path, ROOT, **kw)
        except OSError as e:
            return e.errno
        return None
    assert err(mode=a.mode & 0o7777) == mode
    assert err(uid=a.uid, gid=a.gid) == owner
    assert err(times=True) == times
    assert err() is None  # chown(-1, -1)
    assert fs.getattr(path, ROOT) == a


def test_setattr_that_would_change_an_owner_or_mode_is_refused(fs: ProcFS) -> None:
    # (Linux keeps them in the proc_dir_entry / kernfs node: not modelled)
    a = fs.getattr("/proc/meminfo", ROOT)
    assert errno_of(lambda: fs.setattr("/proc/meminfo", ROOT, mode=0o400)) == errno.EPERM
    assert errno_of(lambda: fs.setattr("/proc/meminfo", ROOT, uid=1000)) == errno.EPERM
    fs.setattr("/proc/1/status", ROOT, uid=1000, gid=1000)  # accepted; stat still shows the task's owner
    assert fs.getattr("/proc/meminfo", ROOT) == a and fs.getattr("/proc/1/status", ROOT).uid == 0


def test_xattrs(fs: ProcFS) -> None:
    for path in ("/proc/1", "/proc/1/status", "/proc/meminfo", "/proc/sys/kernel/osrelease", "/sys/devices"):
        assert fs.listxattr(path, ROOT) == ()
    assert errno_of(fs.listxattr, "/proc/nope", ROOT) == errno.ENOENT
    assert errno_of(fs.getxattr, "/proc/1/status", "user.x", ROOT) == errno.EOPNOTSUPP
    assert errno_of(fs.getxattr, "/sys/devices/system/cpu/online", "security.selinux", ROOT) == errno.ENODATA
    assert errno_of(fs.getxattr, "/sys/devices", "system.posix_acl_access", ROOT) == errno.EOPNOTSUPP
    assert errno_of(fs.setxattr, "/proc/1", "trusted.x", ROOT) == errno.EPERM
    assert errno_of(fs.setxattr, "/proc/sys/kernel/osrelease", "user.x", ROOT) == errno.EACCES
    assert errno_of(fs.setxattr, "/proc/sys/kernel", "user.x", ROOT) == errno.EACCES
    assert errno_of(fs.setxattr, "/proc/sys/kernel/osrelease", "trusted.x", ROOT) == errno.EOPNOTSUPP
    assert errno_of(fs.setxattr, "/proc/sys/kernel/pid_max", "user.x", ROOT) == errno.EOPNOTSUPP
    assert errno_of(fs.setxattr, "/sys/devices", "trusted.x", ROOT, True) == errno.ENODATA
    assert errno_of(fs.setxattr, "/sys/devices", "user.x", ROOT) == errno.EOPNOTSUPP


@pytest.mark.parametrize("op,path,mode,source,want", [
    ("mkdir", "/proc/1/new", 0o755, None, errno.ENOENT),
    ("mkdir", "/proc/new", 0o755, None, errno.ENOENT),
    ("mknod", "/proc/sys/kernel/new", S.S_IFIFO | 0o644, None, errno.ENOENT),
    ("symlink", "/proc/1/new", 0, None, errno.ENOENT),
    ("link", "/proc/1/new", 0, "/proc/meminfo", errno.ENOENT),
    ("create", "/proc/new", 0o644, None, errno.ENOENT),
    ("mkdir", "/sys/devices/system/cpu/new", 0o755, None, errno.EPERM),
    ("mknod", "/sys/devices/system/cpu/new", S.S_IFIFO | 0o644, None, errno.EPERM),
    ("mknod", "/sys/devices/system/cpu/new", S.S_IFREG | 0o644, None, errno.EACCES),
    ("create", "/sys/devices/system/cpu/new", 0o644, None, errno.EACCES),
    ("symlink", "/sys/devices/system/cpu/new", 0, None, errno.EPERM),
    ("link", "/sys/devices/system/cpu/new", 0, "/sys/devices/system/cpu/online", errno.EPERM),
    ("link", "/sys/devices/system/cpu/new", 0, "/proc/meminfo", errno.EXDEV),
])
def test_new_names_are_refused(fs: ProcFS, op, path, mode, source, want) -> None:
    assert errno_of(fs.new_name, op, path, ROOT, mode, source) == want


@pytest.mark.parametrize("old,new,want", [
    ("/proc/1/status", "/proc/1/newname", errno.ENOENT),
    ("/proc/1", "/proc/newpid", errno.ENOENT),
    ("/proc/1/status", "/proc/1/stat", errno.EPERM),
    ("/proc/loadavg", "/proc/uptime", errno.EPERM),
    ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/osrelease", errno.EACCES),
    ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/newname", errno.ENOENT),
    ("/sys/devices/system/cpu/online", "/sys/devices/system/cpu/newname", errno.EPERM),
    ("/proc/loadavg", "/sys/devices/system/cpu/newname", errno.EXDEV),
])
def test_rename(fs: ProcFS, old, new, want) -> None:
    assert errno_of(fs.rename, old, new, ROOT) == want


def test_unlink_and_rmdir(fs: ProcFS) -> None:
    assert errno_of(fs.unlink, "/proc/1/status", ROOT) == errno.EPERM
    assert errno_of(fs.unlink, "/proc/sys/kernel/pid_max", ROOT) == errno.EACCES
    assert errno_of(fs.unlink, "/sys/devices/system/cpu/online", ROOT) == errno.EPERM
    assert errno_of(fs.rmdir, "/proc/1", ROOT) == errno.EPERM
    assert errno_of(fs.rmdir, "/proc/sys/kernel", ROOT) == errno.EACCES
    assert errno_of(fs.rmdir, "/proc", ROOT) == errno.EBUSY


@pytest.mark.parametrize("path,off,data,hole", [
    ("/proc/1/status", 0, errno.EINVAL, errno.EINVAL),
    ("/proc/meminfo", 1, errno.EINVAL, errno.EINVAL),
    ("/proc/1/pagemap", 0, errno.EINVAL, errno.EINVAL),
    ("/proc/sys/kernel/pid_max", 0, errno.ENXIO, errno.ENXIO),
    ("/proc/sys/kernel/osrelease", 1, errno.ENXIO, errno.ENXIO),
    ("/proc/1/clear_refs", 1, 0, 0),
    ("/sys/devices/system/cpu/online", 0, 0, 4096),
    ("/sys/devices/system/cpu/online", 1, 1, 4096),
    ("/proc/1", 0, errno.ENXIO, errno.ENXIO),
])
def test_seek_data_and_hole(fs: ProcFS, path, off, data, hole) -> None:
    def seek(whence):
        try:
            return fs.lseek(path, ROOT, off, whence)
        except OSError as e:
            return e.errno
    # (a result is an offset where the want is an offset, an errno where it is one)
    assert seek(os.SEEK_DATA) == data and seek(os.SEEK_HOLE) == hole
