"""Bad input on the mount and on the control channel: the errno the real
kernel gives (asked of this machine's own /proc where it can be), never a
changed world, and a daemon that keeps serving."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import termios
import textwrap
import time

import pytest

from fusehelpers import model, read
from hostinfo import requires_host

pytestmark = pytest.mark.fuse


def err_of(fn) -> int | None:
    try:
        fn()
    except OSError as e:
        return e.errno
    return None


def write_errno(path: str) -> int | None:
    """errno of open(O_WRONLY) + write(b"x"), whichever fails first."""
    def go():
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    return err_of(go)


@pytest.fixture(scope="module")
def real_child():
    """A real process of this machine, for asking the real kernel about pids."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield p.pid
    p.kill()
    p.wait()


# -- writes to read-only files --------------------------------------------------------


@requires_host(caps=("CAP_DAC_OVERRIDE",))  # root's open(O_WRONLY) of a 0444 file succeeds
def test_root_write_to_pid_file_is_einval_as_on_the_real_kernel(machine, real_child):
    real = write_errno(f"/proc/{real_child}/status")
    assert real == errno.EINVAL  # spec §1.4
    for name in ("status", "stat", "statm", "maps", "cmdline"):
        assert write_errno(f"{machine.proc}/1/{name}") == real, name


@requires_host(caps=("CAP_DAC_OVERRIDE",))
def test_root_write_to_global_file_is_eio_as_on_the_real_kernel(machine):
    real = write_errno("/proc/meminfo")
    assert real == errno.EIO  # spec §1.4
    for name in ("meminfo", "stat", "uptime", "loadavg", "interrupts", "vmstat"):
        assert write_errno(f"{machine.proc}/{name}") == real, name


def test_root_write_to_sysfs_file_as_on_the_real_kernel(machine):
    real = write_errno("/sys/devices/system/cpu/online")
    assert real == errno.EACCES
    assert write_errno(f"{machine.sys}/devices/system/cpu/online") == real


NOBODY = 65534
# the venv may sit where uid 65534 cannot reach; the script needs only the stdlib
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
UNPRIVILEGED = textwrap.dedent("""
    import errno, json, os, sys
    def e(fn):
        try:
            fn()
        except OSError as x:
            return errno.errorcode[x.errno]
        return "ok"
    out = {}
    for root in sys.argv[1:]:
        out[root] = {
            "write status": e(lambda: os.close(os.open(root + "/1/status", os.O_WRONLY))),
            "write meminfo": e(lambda: os.close(os.open(root + "/meminfo", os.O_WRONLY))),
            "read status": e(lambda: open(root + "/1/status").read()),
            "read environ": e(lambda: open(root + "/1/environ").read()),
            "read maps": e(lambda: open(root + "/1/maps").read()),
        }
    print(json.dumps(out))
""")


@requires_host(caps=("CAP_SETUID", "CAP_SETGID"))  # to become uid 65534
def test_unprivileged_reader_gets_the_real_kernels_answers(machine):
    """As uid 65534: EACCES for writes to 0444 files and for root's environ
    (0400) and maps (ptrace check at open), reads of status work - the same
    answers the real /proc gives the same user."""
    r = subprocess.run([SYSTEM_PYTHON, "-c", UNPRIVILEGED, "/proc", machine.proc], user=NOBODY, group=NOBODY,
                       extra_groups=[], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["/proc"] == {"write status": "EACCES", "write meminfo": "EACCES", "read status": "ok",
                            "read environ": "EACCES", "read maps": "EACCES"}
    assert out[machine.proc] == out["/proc"]


# -- unknown paths, offsets, ioctls, other operations -------------------------------------


@pytest.mark.parametrize("path", ["nonexistent", "1/nonexistent", "99999", "99999/status", "1/task/99999",
                                  "1/task/1/nonexistent", "sys/kernel/nonexistent", "self/nonexistent"])
def test_unknown_paths_are_enoent(machine, path):
    assert err_of(lambda: os.stat(f"/proc/{path.replace('99999', '4194304')}")) == errno.ENOENT  # real
    assert err_of(lambda: os.stat(f"{machine.proc}/{path}")) == errno.ENOENT
    assert err_of(lambda: open(f"{machine.proc}/{path}").close()) == errno.ENOENT


def test_unknown_sysfs_path_is_enoent(machine):
    assert err_of(lambda: os.stat(f"{machine.sys}/devices/system/cpu/nonexistent")) == errno.ENOENT


@pytest.mark.parametrize("name", ["status", "stat", "statm", "maps", "cmdline"])
def test_absurd_offset_reads_nothing(machine, real_child, name):
    for path in (f"/proc/{real_child}/{name}", f"{machine.proc}/1/{name}"):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 1 << 40) == b""
            assert os.pread(fd, 4096, 0) != b""  # and the file is still readable from the start
        finally:
            os.close(fd)


@pytest.mark.parametrize("name", ["1/status", "1/stat", "1/maps", "meminfo", "interrupts"])
def test_ioctl_is_enotty(machine, real_child, name):
    real = f"/proc/{real_child}/{name[2:]}" if name.startswith("1/") else f"/proc/{name}"
    for path in (real, f"{machine.proc}/{name}"):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert err_of(lambda: fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)) == errno.ENOTTY, path
        finally:
            os.close(fd)


@pytest.mark.parametrize("op,real_path,mnt_path", [
    ("mkdir", "/proc/self/newdir", "1/newdir"),
    ("unlink", "/proc/self/status", "1/status"),
    ("create", "/proc/newfile", "newfile"),
])
# without it the VFS refuses write access to the 0555 directory (EACCES) before FUSE is asked
@requires_host(caps=("CAP_DAC_OVERRIDE",))
def test_namespace_changes_get_the_real_errno(machine, op, real_path, mnt_path):
    def do(path):
        if op == "mkdir":
            return err_of(lambda: os.mkdir(path))
        if op == "unlink":
            return err_of(lambda: os.unlink(path))
        return err_of(lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)))
    real = do(real_path)
    assert real in (errno.ENOENT, errno.EPERM)
    assert do(f"{machine.proc}/{mnt_path}") == real


# -- inode operations: the answers of a 6.18 kernel -------------------------------------
#
# Each case runs an operation against a /proc and /sys tree: on the mount (pid
# 1) and on this host (a real child of ours). `want` is what a 6.18 host
# answered; the mount must give it everywhere, the host is asked too when it
# runs 6.18 and root has what the case needs.

CAP_SYS_ADMIN = 21


def answer(fn) -> object:
    """"ok", an errno name, or what fn returned when that is not None."""
    try:
        r = fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
    return "ok" if r is None else r


def on_fd(path: str, flags: int, fn=lambda fd: None):
    def go():
        fd = os.open(path, flags)
        try:
            return fn(fd)
        finally:
            os.close(fd)
    return go


def same_owner(path: str):
    st = os.stat(path)
    return lambda: os.chown(path, st.st_uid, st.st_gid)


def same_mode(path: str):
    st = os.stat(path)
    return lambda: os.chmod(path, st.st_mode & 0o7777)


def same_times(path: str):
    st = os.stat(path)
    return lambda: os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def seek(path: str, whence: int, off: int = 0, flags: int = os.O_RDONLY):
    return on_fd(path, flags, lambda fd: os.lseek(fd, off, whence))


def bytewise(path: str) -> object:
    """Read one byte at a time: "first byte" if that stops after one, as an int sysctl does."""
    whole = read(path).encode()
    got = b""
    fd = os.open(path, os.O_RDONLY)
    try:
        while c := os.read(fd, 1):
            got += c
    finally:
        os.close(fd)
    return "first byte" if got == whole[:1] else "whole" if got == whole else got


def pread_at_1(path: str) -> object:
    whole = read(path).encode()
    got = on_fd(path, os.O_RDONLY, lambda fd: os.pread(fd, 4096, 1))()
    return "EOF" if got == b"" else "rest" if got == whole[1:] else got


def write_sysctl(path: str, data: bytes | None):
    """write(data) (None: the current value) to a sysctl; "ok" for a whole write."""
    def go():
        cur = read(path).encode()
        d = cur if data is None else data
        n = on_fd(path, os.O_WRONLY, lambda fd: os.write(fd, d))()
        assert read(path).encode() == cur  # the current value again, or nothing written
        return None if n == len(d) else n
    return go


PID, KERN, CPU = "{pid}", "{P}/sys/kernel", "{S}/devices/system/cpu"
WO = os.O_WRONLY
INODE_CASES = [
    # (id, operation on (P, S, pid) -> callable, 6.18's answer, needs)
    ("fsync pid file", lambda p: on_fd(f"{p.P}/{p.pid}/status", 0, os.fsync), "EINVAL", ()),
    ("fsync global file", lambda p: on_fd(f"{p.P}/meminfo", 0, os.fsync), "EINVAL", ()),
    ("fdatasync sysctl", lambda p: on_fd(f"{p.P}/sys/kernel/pid_max", 0, os.fdatasync), "EINVAL", ()),
    ("fsync pid dir", lambda p: on_fd(f"{p.P}/{p.pid}", os.O_DIRECTORY, os.fsync), "EINVAL", ()),
    ("fsync sysfs file", lambda p: on_fd(f"{p.S}/devices/system/cpu/online", 0, os.fsync), "ok", ()),
    ("fsync sysfs dir", lambda p: on_fd(f"{p.S}/devices/system/cpu", os.O_DIRECTORY, os.fsync), "EINVAL", ()),
    ("O_DIRECT pid file", lambda p: on_fd(f"{p.P}/{p.pid}/status", os.O_DIRECT), "EINVAL", ()),
    ("O_DIRECT global file", lambda p: on_fd(f"{p.P}/meminfo", os.O_DIRECT), "EINVAL", ()),
    ("O_DIRECT sysctl", lambda p: on_fd(f"{p.P}/sys/kernel/pid_max", os.O_DIRECT), "EINVAL", ()),
    ("O_DIRECT sysfs", lambda p: on_fd(f"{p.S}/devices/system/cpu/online", os.O_DIRECT), "EINVAL", ()),
    ("O_WRONLY|O_DIRECT osrelease", lambda p: on_fd(f"{p.P}/sys/kernel/osrelease", WO | os.O_DIRECT), "EACCES", ()),
    ("O_WRONLY osrelease", lambda p: on_fd(f"{p.P}/sys/kernel/osrelease", WO), "EACCES", ()),
    ("O_RDWR osrelease", lambda p: on_fd(f"{p.P}/sys/kernel/osrelease", os.O_RDWR), "EACCES", ()),
    ("O_RDONLY|O_TRUNC osrelease", lambda p: on_fd(f"{p.P}/sys/kernel/osrelease", os.O_TRUNC), "EACCES", ()),
    ("truncate osrelease", lambda p: lambda: os.truncate(f"{p.P}/sys/kernel/osrelease", 0), "EACCES", ()),
    ("truncate pid file", lambda p: lambda: os.truncate(f"{p.P}/{p.pid}/status", 0), "ok", ()),
    ("O_WRONLY|O_TRUNC clear_refs", lambda p: on_fd(f"{p.P}/{p.pid}/clear_refs", WO | os.O_TRUNC), "ok", ()),
    ("rename to a new name", lambda p: lambda: os.rename(f"{p.P}/{p.pid}/status", f"{p.P}/{p.pid}/new"),
     "ENOENT", ()),
    ("rename over a pid file", lambda p: lambda: os.rename(f"{p.P}/{p.pid}/status", f"{p.P}/{p.pid}/stat"),
     "EPERM", ()),
    ("rename over a sysctl", lambda p: lambda: os.rename(f"{p.P}/sys/kernel/pid_max",
                                                         f"{p.P}/sys/kernel/osrelease"), "EACCES", ()),
    ("rename in sysfs", lambda p: lambda: os.rename(f"{p.S}/devices/system/cpu/online",
                                                    f"{p.S}/devices/system/cpu/new"), "EPERM", ()),
    ("rename /proc to /sys", lambda p: lambda: os.rename(f"{p.P}/loadavg", f"{p.S}/devices/new"), "EXDEV", ()),
    ("symlink in a pid dir", lambda p: lambda: os.symlink("x", f"{p.P}/{p.pid}/new"), "ENOENT", ()),
    ("symlink in /proc", lambda p: lambda: os.symlink("x", f"{p.P}/new"), "ENOENT", ()),
    ("symlink in sysfs", lambda p: lambda: os.symlink("x", f"{p.S}/devices/new"), "EPERM", ()),
    ("link into a pid dir", lambda p: lambda: os.link(f"{p.P}/meminfo", f"{p.P}/{p.pid}/new"), "ENOENT", ()),
    ("link in sysfs", lambda p: lambda: os.link(f"{p.S}/devices/system/cpu/online", f"{p.S}/devices/new"),
     "EPERM", ()),
    ("link /proc to /sys", lambda p: lambda: os.link(f"{p.P}/meminfo", f"{p.S}/devices/new"), "EXDEV", ()),
    ("mkfifo in a pid dir", lambda p: lambda: os.mkfifo(f"{p.P}/{p.pid}/new"), "ENOENT", ()),
    ("mkdir in a sysctl dir", lambda p: lambda: os.mkdir(f"{p.P}/sys/kernel/new"), "ENOENT", ()),
    ("mkdir in sysfs", lambda p: lambda: os.mkdir(f"{p.S}/devices/new"), "EPERM", ()),
    ("mkfifo in sysfs", lambda p: lambda: os.mkfifo(f"{p.S}/devices/new"), "EPERM", ()),
    ("mknod S_IFREG in sysfs", lambda p: lambda: os.mknod(f"{p.S}/devices/new", 0o100644), "EACCES", ()),
    ("O_CREAT in sysfs", lambda p: on_fd(f"{p.S}/devices/new", WO | os.O_CREAT), "EACCES", ()),
    ("O_CREAT|O_EXCL of a pid file", lambda p: on_fd(f"{p.P}/{p.pid}/status", WO | os.O_CREAT | os.O_EXCL),
     "EEXIST", ()),
    ("unlink a sysctl", lambda p: lambda: os.unlink(f"{p.P}/sys/kernel/pid_max"), "EACCES", ()),
    ("unlink a sysfs file", lambda p: lambda: os.unlink(f"{p.S}/devices/system/cpu/online"), "EPERM", ()),
    ("rmdir a sysctl dir", lambda p: lambda: os.rmdir(f"{p.P}/sys/kernel"), "EACCES", ()),
    ("rmdir a pid dir", lambda p: lambda: os.rmdir(f"{p.P}/{p.pid}"), "EPERM", ()),
    ("open a dir O_WRONLY", lambda p: on_fd(f"{p.P}/{p.pid}", WO), "EISDIR", ()),
    ("read a dir", lambda p: on_fd(f"{p.P}/{p.pid}", 0, lambda fd: os.read(fd, 10)), "EISDIR", ()),
    ("O_DIRECTORY of a file", lambda p: on_fd(f"{p.P}/meminfo", os.O_DIRECTORY), "ENOTDIR", ()),
    ("readlink of a file", lambda p: lambda: os.readlink(f"{p.P}/meminfo"), "EINVAL", ()),
    ("write on an O_RDONLY fd", lambda p: on_fd(f"{p.P}/meminfo", 0, lambda fd: os.write(fd, b"x")), "EBADF", ()),
    ("chown pid file", lambda p: same_owner(f"{p.P}/{p.pid}/status"), "ok", ()),
    ("chown pid dir", lambda p: same_owner(f"{p.P}/{p.pid}"), "EPERM", ()),
    ("chown task dir", lambda p: same_owner(f"{p.P}/{p.pid}/task"), "ok", ()),
    ("chown thread dir", lambda p: same_owner(f"{p.P}/{p.pid}/task/{p.pid}"), "EPERM", ()),
    ("chown sysctl", lambda p: same_owner(f"{p.P}/sys/kernel/pid_max"), "EPERM", ()),
    ("chown global file", lambda p: same_owner(f"{p.P}/loadavg"), "ok", ()),
    ("chown sysfs file", lambda p: same_owner(f"{p.S}/devices/system/cpu/online"), "ok", ()),
    ("lchown /proc/self", lambda p: lambda: os.lchown(f"{p.P}/self", 0, 0), "ok", ()),
    ("chmod pid file", lambda p: same_mode(f"{p.P}/{p.pid}/status"), "EPERM", ()),
    ("chmod sysctl", lambda p: same_mode(f"{p.P}/sys/kernel/pid_max"), "EPERM", ()),
    ("chmod global file", lambda p: same_mode(f"{p.P}/loadavg"), "ok", ()),
    ("chmod /proc", lambda p: same_mode(p.P), "ok", ()),
    ("chmod sysfs dir", lambda p: same_mode(f"{p.S}/devices/system/cpu"), "ok", ()),
    ("utime pid file", lambda p: same_times(f"{p.P}/{p.pid}/status"), "ok", ()),
    ("utime now pid file", lambda p: lambda: os.utime(f"{p.P}/{p.pid}/status"), "ok", ()),
    ("utime pid dir", lambda p: same_times(f"{p.P}/{p.pid}"), "EPERM", ()),
    ("utime sysctl", lambda p: same_times(f"{p.P}/sys/kernel/pid_max"), "ok", ()),
    ("utime global file", lambda p: same_times(f"{p.P}/loadavg"), "ok", ()),
    ("utime sysfs file", lambda p: same_times(f"{p.S}/devices/system/cpu/online"), "ok", ()),
    ("listxattr pid file", lambda p: lambda: os.listxattr(f"{p.P}/{p.pid}/status"), [], ()),
    ("listxattr pid dir", lambda p: lambda: os.listxattr(f"{p.P}/{p.pid}"), [], ()),
    ("listxattr global file", lambda p: lambda: os.listxattr(f"{p.P}/meminfo"), [], ()),
    ("listxattr sysctl", lambda p: lambda: os.listxattr(f"{p.P}/sys/kernel/osrelease"), [], ()),
    ("listxattr sysfs", lambda p: lambda: os.listxattr(f"{p.S}/devices/system/cpu/online"), [], ()),
    ("getxattr user.x pid file", lambda p: lambda: os.getxattr(f"{p.P}/{p.pid}/status", "user.x"), "ENOTSUP", ()),
    ("getxattr user.x sysfs", lambda p: lambda: os.getxattr(f"{p.S}/devices/system/cpu/online", "user.x"),
     "ENODATA", ()),
    ("getxattr security.selinux global", lambda p: lambda: os.getxattr(f"{p.P}/meminfo", "security.selinux"),
     "ENOTSUP", ("no labelling LSM",)),
    ("getxattr posix ACL sysfs", lambda p: lambda: os.getxattr(f"{p.S}/devices", "system.posix_acl_access"),
     "ENOTSUP", ()),
    ("setxattr user.x pid file", lambda p: lambda: os.setxattr(f"{p.P}/{p.pid}/status", "user.x", b"1"),
     "ENOTSUP", ()),
    ("setxattr user.x pid dir", lambda p: lambda: os.setxattr(f"{p.P}/{p.pid}", "user.x", b"1"), "EPERM", ()),
    ("setxattr user.x osrelease", lambda p: lambda: os.setxattr(f"{p.P}/sys/kernel/osrelease", "user.x", b"1"),
     "EACCES", ()),
    ("setxattr user.x sysctl dir", lambda p: lambda: os.setxattr(f"{p.P}/sys/kernel", "user.x", b"1"),
     "EACCES", ()),
    ("setxattr user.x sysfs", lambda p: lambda: os.setxattr(f"{p.S}/devices", "user.x", b"1"), "ENOTSUP", ()),
    ("replace trusted.x sysfs", lambda p: lambda: os.setxattr(f"{p.S}/devices", "trusted.x", b"1",
                                                              os.XATTR_REPLACE), "ENODATA", ("CAP_SYS_ADMIN",)),
    ("removexattr user.x pid file", lambda p: lambda: os.removexattr(f"{p.P}/{p.pid}/status", "user.x"),
     "ENOTSUP", ()),
    ("removexattr trusted.x sysfs", lambda p: lambda: os.removexattr(f"{p.S}/devices", "trusted.x"),
     "ENODATA", ("CAP_SYS_ADMIN",)),
    ("SEEK_DATA pid file", lambda p: seek(f"{p.P}/{p.pid}/status", os.SEEK_DATA), "EINVAL", ()),
    ("SEEK_HOLE global file", lambda p: seek(f"{p.P}/meminfo", os.SEEK_HOLE), "EINVAL", ()),
    ("SEEK_DATA pagemap", lambda p: seek(f"{p.P}/{p.pid}/pagemap", os.SEEK_DATA), "EINVAL", ()),
    ("SEEK_DATA sysctl", lambda p: seek(f"{p.P}/sys/kernel/pid_max", os.SEEK_DATA), "ENXIO", ()),
    ("SEEK_HOLE sysctl at 1", lambda p: seek(f"{p.P}/sys/kernel/osrelease", os.SEEK_HOLE, 1), "ENXIO", ()),
    ("SEEK_DATA clear_refs", lambda p: seek(f"{p.P}/{p.pid}/clear_refs", os.SEEK_DATA, 5, WO), 0, ()),
    ("SEEK_DATA sysfs at 1", lambda p: seek(f"{p.S}/devices/system/cpu/online", os.SEEK_DATA, 1), 1, ()),
    ("SEEK_HOLE sysfs", lambda p: seek(f"{p.S}/devices/system/cpu/online", os.SEEK_HOLE), 4096, ()),
    ("SEEK_DATA dir", lambda p: seek(f"{p.P}/{p.pid}", os.SEEK_DATA), "ENXIO", ()),
    ("pid_max byte by byte", lambda p: lambda: bytewise(f"{p.P}/sys/kernel/pid_max"), "first byte", ()),
    ("threads-max at offset 1", lambda p: lambda: pread_at_1(f"{p.P}/sys/kernel/threads-max"), "EOF", ()),
    ("osrelease at offset 1", lambda p: lambda: pread_at_1(f"{p.P}/sys/kernel/osrelease"), "rest", ()),
    ("osrelease byte by byte", lambda p: lambda: bytewise(f"{p.P}/sys/kernel/osrelease"), "whole", ()),
    ("pid_max := its value", lambda p: write_sysctl(f"{p.P}/sys/kernel/pid_max", None), "ok", ("writable sysctls",)),
    ("threads-max := its value", lambda p: write_sysctl(f"{p.P}/sys/kernel/threads-max", None), "ok",
     ("writable sysctls",)),
    *((f"pid_max := {d!r}", lambda p, d=d: write_sysctl(f"{p.P}/sys/kernel/pid_max", d), "EINVAL",
       ("writable sysctls",)) for d in (b"abc", b"1", b"300", b"4194305", b"99999999999", b"-5", b"\n", b"0x")),
    *((f"threads-max := {d!r}", lambda p, d=d: write_sysctl(f"{p.P}/sys/kernel/threads-max", d), "EINVAL",
       ("writable sysctls",)) for d in (b"abc", b"0", b"1073741824", b"99999999999", b"-5")),
]


class Roots:
    def __init__(self, proc: str, sys_: str, pid: int) -> None:
        self.P, self.S, self.pid = proc, sys_, pid


def _cap_eff() -> int:
    return int(re.search(r"^CapEff:\s+([0-9a-f]+)$", read("/proc/self/status"), re.M)[1], 16)


def missing(needs: tuple[str, ...]) -> str | None:
    """Why root here cannot make the kernel give the measured answer, or None."""
    for need in needs:
        if need == "CAP_SYS_ADMIN" and not _cap_eff() >> CAP_SYS_ADMIN & 1:
            return "root lacks CAP_SYS_ADMIN (trusted.* xattrs)"
        if need == "no labelling LSM" and any(os.path.exists(p) for p in ("/sys/fs/selinux", "/sys/fs/smackfs")):
            return "an LSM labels inodes here (security.* xattrs exist)"
    return None


def host_differs(needs: tuple[str, ...]) -> str | None:
    """Why this host's /proc cannot be compared with the 6.18 answers, or None."""
    release = os.uname().release
    if not release.startswith("6.18"):
        return f"host kernel {release}: the answers were measured on 6.18"
    if "writable sysctls" in needs and os.statvfs("/proc/sys").f_flag & os.ST_RDONLY:
        return "/proc/sys is mounted read-only here"
    for path in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max", "/sys/devices/system/cpu/online"):
        if not os.path.exists(path):
            return f"host lacks {path}"
    return missing(needs)


@pytest.mark.parametrize("name,op,want,needs", INODE_CASES, ids=[c[0] for c in INODE_CASES])
def test_inode_op_on_the_mount(machine, name, op, want, needs):
    if why := missing(needs):
        pytest.skip(why)
    before = fingerprint_files(machine)
    assert answer(op(Roots(machine.proc, machine.sys, 1))) == want
    assert fingerprint_files(machine) == before  # nothing changed, whatever the answer


@pytest.mark.parametrize("name,op,want,needs", INODE_CASES, ids=[c[0] for c in INODE_CASES])
def test_inode_op_on_this_host(real_child, name, op, want, needs):
    if why := host_differs(needs):
        pytest.skip(why)
    assert answer(op(Roots("/proc", "/sys", real_child))) == want


def fingerprint_files(m) -> tuple:
    return tuple(read(f"{m.proc}/{f}") for f in ("1/status", "meminfo", "sys/kernel/pid_max",
                                                 "sys/kernel/threads-max", "sys/kernel/osrelease"))


def test_sysctl_writes_change_the_simulated_kernel(procsim_machine):
    m = procsim_machine
    path = f"{m.proc}/sys/kernel/pid_max"
    with open(path, "w") as f:
        f.write("4096\n")
    assert read(path) == "4096\n"
    with pytest.raises(OSError) as e:
        m.ctl.spawn(argv=["/usr/bin/x"], pid=4096)  # pids are below pid_max
    assert e.value.errno == errno.EINVAL
    assert m.ctl.spawn(argv=["/usr/bin/x"], pid=4095) == 4095
    nr = sum(len(os.listdir(f"{m.proc}/{p}/task")) for p in os.listdir(m.proc) if p.isdigit())
    with open(f"{m.proc}/sys/kernel/threads-max", "w") as f:
        f.write(f"{nr}\n")
    with pytest.raises(OSError) as e:
        m.ctl.spawn(argv=["/usr/bin/y"])  # copy_process: nr_threads >= max_threads
    assert e.value.errno == errno.EAGAIN
    assert sum(len(os.listdir(f"{m.proc}/{p}/task")) for p in os.listdir(m.proc) if p.isdigit()) == nr
    # the uts strings: `hostname` style writes, read back by cat; a nobody writer is refused
    with open(f"{m.proc}/sys/kernel/hostname", "w") as f:
        f.write("db02\n")
    out = subprocess.run(["cat", f"{m.proc}/sys/kernel/hostname", f"{m.proc}/sys/kernel/domainname"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "db02\n(none)\n"
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                        f"echo x > {m.proc}/sys/kernel/hostname"], capture_output=True, text=True)
    assert r.returncode and "Permission denied" in r.stderr and read(f"{m.proc}/sys/kernel/hostname") == "db02\n"


# -- answers FUSE gives itself (README, "What FUSE decides") ------------------------------

FUSE_CASES = [
    # (id, operation, 6.18's answer, the mount's: FUSE answers without asking the daemon)
    ("SEEK_END text file", lambda p: seek(f"{p.P}/meminfo", os.SEEK_END), "EINVAL", 0),
    ("SEEK_END sysfs", lambda p: seek(f"{p.S}/devices/system/cpu/online", os.SEEK_END), 4096, 0),
    ("SEEK_SET 2^62 sysfs", lambda p: seek(f"{p.S}/devices/system/cpu/online", os.SEEK_SET, 1 << 62),
     "EINVAL", 1 << 62),
    ("SEEK_CUR clear_refs", lambda p: seek(f"{p.P}/{p.pid}/clear_refs", os.SEEK_CUR, 7, WO), 0, 7),
    ("fcntl(F_SETFL, O_DIRECT)", lambda p: on_fd(f"{p.P}/meminfo", 0,
                                                lambda fd: fcntl.fcntl(fd, fcntl.F_SETFL, os.O_DIRECT)), "EINVAL", 0),
    ("0-byte write global file", lambda p: on_fd(f"{p.P}/meminfo", WO, lambda fd: os.write(fd, b"")), "EIO", 0),
    ("0-byte write pid file", lambda p: on_fd(f"{p.P}/{p.pid}/status", WO, lambda fd: os.write(fd, b"")),
     "EINVAL", 0),
    ("pwrite pid file", lambda p: on_fd(f"{p.P}/{p.pid}/status", WO, lambda fd: os.pwrite(fd, b"x", 5)),
     "ESPIPE", "EINVAL"),
    ("rmdir of a pid file", lambda p: lambda: os.rmdir(f"{p.P}/{p.pid}/status"), "EPERM", "ENOTDIR"),
    ("MAP_PRIVATE mmap", lambda p: on_fd(f"{p.P}/{p.pid}/status", 0, lambda fd: mmap_errno(fd, mmap.MAP_PRIVATE)),
     "ENODEV", "ok"),
    ("MAP_SHARED mmap global file", lambda p: on_fd(f"{p.P}/meminfo", 0, lambda fd: mmap_errno(fd, mmap.MAP_SHARED)),
     "EIO", "ENODEV"),
]


def mmap_errno(fd: int, flags: int) -> None:
    """mmap(2) of one page (Python's mmap module refuses st_size 0 itself)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    addr = libc.mmap(None, 4096, mmap.PROT_READ, flags, fd, 0)
    if addr == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), "mmap")
    libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(4096))


@pytest.mark.parametrize("name,op,kernel,fuse", FUSE_CASES, ids=[c[0] for c in FUSE_CASES])
def test_what_fuse_decides_on_the_mount(machine, name, op, kernel, fuse):
    """Not the daemon's to answer: the README lists these beside the kernel's answer."""
    assert answer(op(Roots(machine.proc, machine.sys, 1))) == fuse


@pytest.mark.parametrize("name,op,kernel,fuse", FUSE_CASES, ids=[c[0] for c in FUSE_CASES])
def test_what_fuse_decides_on_this_host(real_child, name, op, kernel, fuse):
    if why := host_differs(()):
        pytest.skip(why)
    assert answer(op(Roots("/proc", "/sys", real_child))) == kernel


# -- files of a process that exits ----------------------------------------------------


NAMES = ("status", "stat", "statm", "maps", "cmdline")


def real_exit_answers() -> dict:
    """Open a real child's files, let it exit (zombie), read; reap it, read."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    fds = {n: os.open(f"/proc/{pid}/{n}", os.O_RDONLY) for n in NAMES}
    try:
        os.write(w, b"x")
        for _ in range(1000):  # until it is a zombie
            if read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.01)
        zombie = {n: os.pread(fd, 4096, 0) for n, fd in fds.items()}
        os.waitpid(pid, 0)
        reaped = {n: err_of(lambda: os.pread(fd, 4096, 0)) for n, fd in fds.items()}
        reopen = err_of(lambda: os.open(f"/proc/{pid}/status", os.O_RDONLY))
    finally:
        for fd in fds.values():
            os.close(fd)
        os.close(r)
        os.close(w)
    return {"zombie": zombie, "reaped": reaped, "reopen": reopen}


def test_reads_of_an_exited_pid(procsim_machine):
    real = real_exit_answers()
    assert real["zombie"]["maps"] == b"" and real["zombie"]["statm"] == b"0 0 0 0 0 0 0\n"
    assert set(real["reaped"].values()) == {errno.ESRCH} and real["reopen"] == errno.ENOENT  # spec §1.6

    m = procsim_machine
    bash = next(pid for pid, p in model(m).items() if p["cmdline"] == ["-bash"])
    pid = m.ctl.spawn(argv=["/usr/bin/sleep", "5"], parent=bash)
    fds = {n: os.open(f"{m.proc}/{pid}/{n}", os.O_RDONLY) for n in NAMES}
    try:
        assert all(os.pread(fd, 4096, 0) for n, fd in fds.items())
        m.ctl.exit(pid=pid)
        zombie = {n: os.pread(fd, 4096, 0) for n, fd in fds.items()}
        assert zombie["maps"] == real["zombie"]["maps"] == b""
        assert zombie["statm"] == real["zombie"]["statm"]
        assert zombie["cmdline"] == real["zombie"]["cmdline"] == b""
        assert b"State:\tZ (zombie)" in zombie["status"] and b"VmRSS" not in zombie["status"]
        assert zombie["stat"].split(b") ")[1][:1] == b"Z"
        m.ctl.wait(pid=bash, child=pid)
        assert {n: err_of(lambda: os.pread(fd, 4096, 0)) for n, fd in fds.items()} == real["reaped"]
        assert err_of(lambda: os.open(f"{m.proc}/{pid}/status", os.O_RDONLY)) == real["reopen"]
    finally:
        for fd in fds.values():
            os.close(fd)
    assert read(f"{m.proc}/{bash}/status").startswith("Name:\tbash\n")  # still serving


# -- malformed and impossible control commands -------------------------------------------


def fingerprint(m, pids: list[int]) -> tuple:
    ps = m.ctl.ps()
    files = tuple(read(f"{m.proc}/{f}") for f in ("meminfo", "stat", "loadavg", "interrupts", "vmstat", "uptime"))
    per_pid = tuple((m.ctl.vmas(pid=p), read(f"{m.proc}/{p}/status"), read(f"{m.proc}/{p}/maps")) for p in pids)
    return json.dumps(ps, sort_keys=True), files, per_pid, m.ctl.now(), m.ctl.cpus()


def test_bad_control_commands_change_nothing(procsim_machine):
    m = procsim_machine
    ctl = m.ctl
    ps = model(m)
    bash = next(pid for pid, p in ps.items() if p["cmdline"] == ["-bash"])
    kthread = next(pid for pid, p in ps.items() if p["kthread"])
    dead = ctl.spawn(argv=["/usr/bin/true"])
    ctl.exit_group(pid=dead)  # init's child: reaped at once
    zombie = ctl.spawn(argv=["/usr/bin/false"], parent=bash)
    ctl.exit_group(pid=zombie, code=1)
    victim = ctl.spawn(argv=["/usr/local/bin/victim"], parent=bash)
    addr = ctl.mmap(pid=victim, length=32 << 30, noreserve=True)  # more than the machine's RAM
    ctl.touch(pid=victim, addr=addr, length=1 << 20)
    vmas = ctl.vmas(pid=victim)
    hole = vmas[0]["start"] - (1 << 20)  # nothing is mapped below the executable
    before = fingerprint(m, [1, bash, victim])

    cases = [
        ("frobnicate", {}, errno.EINVAL),
        ("mmap", {"pid": victim}, errno.EINVAL),                            # missing length
        ("mmap", {"pid": victim, "length": "lots"}, errno.EINVAL),
        ("mmap", {"pid": victim, "length": 4096, "colour": "red"}, errno.EINVAL),
        ("mmap", {"pid": victim, "length": True}, errno.EINVAL),
        ("mmap", {"pid": dead, "length": 4096}, errno.ESRCH),               # reaped
        ("mmap", {"pid": zombie, "length": 4096}, errno.ESRCH),
        ("mmap", {"pid": victim, "length": 0}, errno.EINVAL),               # mmap(2): EINVAL
        ("mmap", {"pid": victim, "length": 1 << 50}, errno.ENOMEM),         # beyond TASK_SIZE
        ("mmap", {"pid": victim, "length": 4096, "addr": 4097, "fixed": True}, errno.EINVAL),
        ("touch", {"pid": victim, "addr": hole, "length": 4096}, errno.EFAULT),  # nothing mapped there
        # (a touch of more than free RAM runs the OOM killer, which changes the world: test_fuse_oom.py)
        ("touch", {"pid": kthread, "addr": addr, "length": 4096}, errno.EINVAL),
        ("touch", {"pid": victim, "addr": addr, "length": 4096, "write": "no"}, errno.EINVAL),  # not a flag
        ("mlock", {"pid": victim, "addr": addr, "length": 4096, "onfault": "yes"}, errno.EINVAL),
        ("munmap", {"pid": victim, "addr": addr + 1, "length": 4096}, errno.EINVAL),
        ("mprotect", {"pid": victim, "addr": hole, "length": 4096, "prot": "r"}, errno.ENOMEM),
        ("mprotect", {"pid": victim, "addr": addr, "length": 4096, "prot": "rwz"}, errno.EINVAL),
        ("mremap", {"pid": victim, "addr": hole, "old_length": 4096, "new_length": 8192}, errno.EFAULT),
        ("run", {"tid": victim, "cpu": 8}, errno.EINVAL),                   # 8 CPUs: 0-7
        ("run", {"tid": dead, "cpu": 0}, errno.ESRCH),
        ("affinity", {"tid": victim, "cpus": "9-12"}, errno.EINVAL),
        ("kill", {"pid": dead}, errno.ESRCH),
        ("kill", {"pid": dead, "sig": 0}, errno.ESRCH),                   # kill(2) with 0 only checks
        ("kill", {"pid": victim, "sig": 99}, errno.EINVAL),                # kill(2): no such signal
        ("kill", {"pid": zombie}, errno.ESRCH),
        ("wait", {"pid": bash, "child": 1}, errno.ECHILD),
        ("spawn", {"argv": ["/bin/x"], "pid": 1}, errno.EEXIST),           # clone3 set_tid in use
        ("spawn", {"argv": []}, errno.ENOENT),
        ("spawn", {"argv": ["/bin/x"], "parent": dead}, errno.ESRCH),
        ("exec", {"pid": victim, "path": "relative/path"}, errno.ENOENT),
        ("advance", {"seconds": -1}, errno.EINVAL),
        ("advance", {"seconds": "nan"}, errno.EINVAL),
        ("vmas", {"pid": dead}, errno.ESRCH),
        ("task", {"pid": dead}, errno.ESRCH),
    ]
    for op, args, want in cases:
        with pytest.raises(OSError) as e:
            ctl.call(op, **args)
        assert e.value.errno == want, (op, args, e.value)
        assert str(e.value.msg), (op, args)  # a reason, not an empty error
    # the reasons name the parameter, in the command's words
    with pytest.raises(OSError) as e:
        ctl.call("mmap", prot="r")
    assert e.value.msg == "mmap: missing parameters 'pid' and 'length'"
    with pytest.raises(OSError) as e:
        ctl.call("touch", pid=victim, addr=addr, length=4096, write="no")
    assert e.value.msg == "touch: write: expected true or false, got 'no'"
    with pytest.raises(TypeError):  # the client's own signature: nothing is sent
        ctl.touch(pid=victim, addr=addr, length=4096, colour="red")
    # requests the transport itself refuses
    for req in ({"op": 5}, {"op": "ps", "args": [1]}, {"args": {}}, [1, 2]):
        rep = ctl.request(req)
        assert rep["ok"] is False and rep["errno"] == errno.EINVAL, req
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(m.socket)
        s.sendall(b"this is not json\n" + b'{"op": "ping", "id": 7}\n')
        f = s.makefile("rb")
        assert json.loads(f.readline())["errno"] == errno.EINVAL
        assert json.loads(f.readline()) == {"ok": True, "result": {"pid": m.pid, "mnt": m.mnt}, "id": 7}

    assert fingerprint(m, [1, bash, victim]) == before
    ctl.kill(pid=victim, sig=0)  # succeeds and changes nothing either
    assert fingerprint(m, [1, bash, victim]) == before
    # and the daemon still serves, files and commands
    assert read(f"{m.proc}/{victim}/status").startswith("Name:\tvictim\n")
    ctl.munmap(pid=victim, addr=addr, length=32 << 30)
    assert len(ctl.vmas(pid=victim)) == len(vmas) - 1


def test_cli_ctl_reports_the_errno(machine):
    # (the module's machine: a failed kill and a ps change nothing)
    assert 31000 not in {p["pid"] for p in machine.ctl.ps()}
    r = subprocess.run([sys.executable, "-m", "mountd.cli", "ctl", machine.mnt, "kill", "pid=31000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("procsim: error: ") and "(ESRCH)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "mountd.cli", "ctl", machine.mnt, "ps"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == machine.ctl.ps()


def test_daemon_survives_a_client_that_vanishes(machine):
    m = machine  # (the module's machine: the clients only read, or try to)
    s = socket.socket(socket.AF_UNIX)
    s.connect(m.socket)
    s.sendall(b'{"op": "ps"')  # half a request, then gone
    s.close()
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import socket, time
        s = socket.socket(socket.AF_UNIX); s.connect({m.socket!r})
        s.sendall(b'{{"op": "ps"}}\\n' * 50); time.sleep(60)""")])
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert m.ctl.ping()["pid"] == m.pid
    assert sorted(int(n) for n in os.listdir(m.proc) if n.isdigit()) == sorted(model(m))


def test_fd_of_a_reaped_pid_stays_dead_when_the_pid_is_reused(procsim_machine):
    m = procsim_machine
    pid = m.ctl.spawn(argv=["/usr/bin/old-one"])
    fd = os.open(f"{m.proc}/{pid}/status", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0).startswith(b"Name:\told-one\n")
        m.ctl.kill(pid=pid)  # init's child: reaped at once
        assert m.ctl.spawn(argv=["/usr/bin/new-one"], pid=pid) == pid
        assert read(f"{m.proc}/{pid}/status").startswith("Name:\tnew-one\n")
        # the real kernel binds the fd to the old struct pid: ESRCH (spec §1.6)
        assert err_of(lambda: os.pread(fd, 4096, 0)) == errno.ESRCH
    finally:
        os.close(fd)
