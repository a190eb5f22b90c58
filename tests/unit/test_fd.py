"""Files and descriptors (procsim/fs/, procsim/procfs/fd.py, mounts.py):
the fd table's rules (fs/file.c), the syscalls' errnos with nothing
changed, /proc/PID/fd, fdinfo, map_files, exe, cwd, root and the mount
files, byte for byte against this machine's kernel where it can put a real
process in the same state."""

from __future__ import annotations

import errno
import json
import os
import re
import stat as S
import subprocess
import sys

import pytest

from hostinfo import requires_host
from procfs_helpers import NOBODY, ROOT, errno_of, read_all
from procsim import Kernel
from procsim.fs import file as F
from procsim.fs.mount import parse_mountinfo
from procsim.kernel import KernelError
from procsim.procfs.tree import ProcFS
from procsim.resource import RLIMIT_NOFILE, Rlimit


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    k.create_init()
    return k


def proc(k: Kernel, uid: int = 0) -> int:
    p = k.spawn(["/usr/bin/python3"], uid=uid, gid=uid)
    k.open(p, "/dev/null", F.O_RDWR)
    for fd in (1, 2):
        k.dup2(p, 0, fd)
    return p


def fds(fs: ProcFS, pid: int, caller=ROOT) -> dict[int, str]:
    return {int(n): fs.readlink(f"/proc/{pid}/fd/{n}", caller) for n in fs.readdir(f"/proc/{pid}/fd", caller)}


def fdinfo(fs: ProcFS, pid: int, fd: int) -> str:
    return read_all(fs, f"/proc/{pid}/fdinfo/{fd}").decode()


def fdsize(fs: ProcFS, pid: int) -> int:
    return int(re.search(r"FDSize:\t(\d+)", read_all(fs, f"/proc/{pid}/status").decode()).group(1))


def file_nr(fs: ProcFS) -> tuple[int, int, int]:
    return tuple(map(int, read_all(fs, "/proc/sys/fs/file-nr").split()))


def state(k: Kernel) -> tuple:
    """What any of these syscalls could change."""
    return (repr([(g.tgid, [(fd, f.d_path(), f.f_flags, f.f_pos, g.leader.files.cloexec(fd))
                            for fd, f in g.leader.files.items()] if g.leader.files else None,
                   g.leader.files.max_fds if g.leader.files else 0, g.leader.fs.pwd if g.leader.fs else None)
                  for g in k.thread_groups()]),
            k.files.nr_files, sorted(k.vfs.files), sorted(k.files.removed), k.generation)


# -- the fd table ---------------------------------------------------------------------------


def test_fdsize_grows_as_expand_fdtable(k):
    """64 slots embedded, then the power of two above the fd (this host: fd 64
    -> 128, fd 256 -> 512, dup2 to 1000 -> 1024)."""
    fs = ProcFS(k)
    p = proc(k)
    assert fdsize(fs, p) == 64
    while (fd := k.open(p, "/dev/null")) < 63:
        pass
    assert fdsize(fs, p) == 64
    assert k.open(p, "/dev/null") == 64 and fdsize(fs, p) == 128
    while (fd := k.open(p, "/dev/null")) < 256:
        pass
    assert fdsize(fs, p) == 512
    k.dup2(p, 0, 1000)
    assert fdsize(fs, p) == 1024


def test_fork_copies_exec_closes_cloexec_exit_closes_all(k):
    fs = ProcFS(k)
    p = proc(k)
    base = file_nr(fs)[0]
    keep = k.open(p, "/etc/passwd")
    gone = k.open(p, "/etc/hostname", F.O_RDONLY | F.O_CLOEXEC)
    assert file_nr(fs)[0] == base + 2
    c = k.fork(p)
    assert fds(fs, c) == fds(fs, p)
    assert file_nr(fs)[0] == base + 2  # fork shares the open files, it makes none
    k.lseek(p, keep, 100)
    assert "pos:\t100\n" in fdinfo(fs, c, keep)  # one description, one position
    k.close(c, keep)
    assert keep in fds(fs, p) and keep not in fds(fs, c)
    k.exec(c, "/usr/bin/true", ["true"])
    assert gone not in fds(fs, c) and gone in fds(fs, p)
    assert file_nr(fs)[0] == base + 2
    k.close(p, gone)
    assert file_nr(fs)[0] == base + 1  # the last reference went
    k.exit_group(c)
    assert file_nr(fs)[0] == base + 1
    k.exit_group(p)
    assert file_nr(fs)[0] == base - 1  # /dev/null, shared by 0, 1 and 2


def test_fork_sizes_the_child_table_for_its_open_fds(k):
    """dup_fd(): the child's table is sized for the last open fd (bash's fd
    255 gives its children FDSize 256 until exec closes it... and after)."""
    fs = ProcFS(k)
    p = proc(k)
    k.dup2(p, 0, 255)
    k.dup2(p, 0, 70)
    k.close(p, 255)
    assert fdsize(fs, p) == 256
    assert fdsize(fs, k.fork(p)) == 128


def test_clone_files_threads_share_one_table(k):
    fs = ProcFS(k)
    p = proc(k)
    t = k.clone_thread(p)
    fd = k.open(t, "/etc/passwd")
    assert fds(fs, p)[fd] == "/etc/passwd"
    assert fs.readdir(f"/proc/{p}/task/{t}/fd", ROOT) == fs.readdir(f"/proc/{p}/fd", ROOT)
    k.exit(t)
    assert fds(fs, p)[fd] == "/etc/passwd"


def test_exited_leader_and_zombie_show_no_files(k):
    fs = ProcFS(k)
    p = proc(k)
    t = k.clone_thread(p)
    k.exit(p)  # the leader goes first: exit_files() for it
    assert fs.readdir(f"/proc/{p}/fd", ROOT) == [] and fdsize(fs, p) == 0
    assert fs.readdir(f"/proc/{p}/task/{t}/fd", ROOT) == ["0", "1", "2"]
    parent = proc(k)
    z = k.fork(parent)
    k.exit_group(z)
    assert fs.readdir(f"/proc/{z}/fd", ROOT) == [] and fdsize(fs, z) == 0
    for link in ("exe", "cwd", "root"):
        assert errno_of(fs.readlink, f"/proc/{z}/{link}", ROOT) == errno.ENOENT
    for f in ("mounts", "mountinfo", "mountstats"):
        assert errno_of(fs.open, f"/proc/{z}/{f}", os.O_RDONLY, ROOT) == errno.EINVAL


def test_kernel_threads(k):
    fs = ProcFS(k)
    kt = k.kthread("kworker/0:1")
    assert fs.readdir(f"/proc/{kt}/fd", ROOT) == [] and fdsize(fs, kt) == 64
    assert errno_of(fs.readlink, f"/proc/{kt}/exe", ROOT) == errno.ENOENT
    assert fs.readlink(f"/proc/{kt}/cwd", ROOT) == "/" and fs.readlink(f"/proc/{kt}/root", ROOT) == "/"


# -- errnos, nothing changed ------------------------------------------------------------------


def _bad(k: Kernel, p: int):
    k.prlimit(p, RLIMIT_NOFILE, Rlimit(8, 4096))
    reg = k.open(p, "/etc/passwd")
    ep = k.epoll_create(p)
    k.open(p, "/tmp/gone", F.O_WRONLY | F.O_CREAT)
    k.unlink("/tmp/gone", p)
    return [
        (lambda: k.close(p, 99), errno.EBADF),
        (lambda: k.close(p, -1), errno.EBADF),
        (lambda: k.dup(p, 42), errno.EBADF),
        (lambda: k.dup2(p, 42, 5), errno.EBADF),
        (lambda: k.dup2(p, 0, 8), errno.EBADF),            # newfd at RLIMIT_NOFILE
        (lambda: k.dup2(p, 0, 0, F.O_CLOEXEC, dup3=True), errno.EINVAL),
        (lambda: k.lseek(p, 99, 0), errno.EBADF),
        (lambda: k.open(p, "/tmp/gone"), errno.ENOENT),   # unlinked
        (lambda: k.open(p, ""), errno.ENOENT),
        (lambda: k.open(p, "/etc/passwd", F.O_RDONLY | F.O_DIRECTORY), errno.ENOTDIR),
        (lambda: k.open(p, "/etc", F.O_WRONLY), errno.EISDIR),
        (lambda: k.open(p, "/etc/passwd", F.O_CREAT | F.O_EXCL), errno.EEXIST),
        (lambda: k.open(p, "/etc/passwd", 0o40000000000), errno.EINVAL),
        (lambda: k.chdir(p, "/etc/passwd"), errno.ENOTDIR),
        (lambda: k.chdir(p, "/tmp/gone"), errno.ENOENT),
        (lambda: k.unlink("/never/used", p), errno.ENOENT),
        (lambda: k.unlink("/etc", p), errno.EISDIR),
        (lambda: k.epoll_ctl(p, ep, 1, reg), errno.EPERM),  # a regular file has no poll
        (lambda: k.epoll_ctl(p, reg, 1, 0), errno.EINVAL),
        (lambda: k.epoll_ctl(p, ep, 2, 0), errno.ENOENT),
        (lambda: k.socket(p, 99), errno.EAFNOSUPPORT),
        (lambda: k.pipe(p, F.O_APPEND), errno.EINVAL),
        (lambda: k.eventfd(p, 1 << 32), errno.EINVAL),
        (lambda: k.timerfd_create(p, 99), errno.EINVAL),
        (lambda: k.memfd_create(p, "a/b"), errno.EINVAL),
        (lambda: k.inotify_add_watch(p, reg, "/etc", 0x100), errno.EINVAL),
        (lambda: k.open(99999, "/etc/passwd"), errno.ESRCH),
    ], p


def test_bad_calls_get_the_kernels_errno_and_change_nothing(k):
    calls, p = _bad(k, proc(k))
    for call, err in calls:
        before = state(k)
        with pytest.raises(KernelError) as e:
            call()
        assert e.value.errno == err, (err, e.value)
        assert state(k) == before


def test_rlimit_nofile_is_emfile(k):
    """alloc_fd() stops at RLIMIT_NOFILE's soft limit; pipe() needs two
    slots and takes none if only one is free."""
    p = proc(k)
    k.prlimit(p, RLIMIT_NOFILE, Rlimit(5, 5))
    assert k.open(p, "/dev/null") == 3
    assert k.open(p, "/dev/null") == 4
    before = state(k)
    for call in (lambda: k.open(p, "/dev/null"), lambda: k.pipe(p), lambda: k.socket(p), lambda: k.dup(p, 0),
                 lambda: k.epoll_create(p), lambda: k.memfd_create(p, "x")):
        with pytest.raises(KernelError) as e:
            call()
        assert e.value.errno == errno.EMFILE and state(k) == before
    k.close(p, 4)
    before = state(k)
    with pytest.raises(KernelError) as e:
        k.pipe(p)
    assert e.value.errno == errno.EMFILE and state(k) == before


# -- what /proc shows -------------------------------------------------------------------------


def test_links_and_fdinfo_agree_with_the_table_and_file_nr(k):
    fs = ProcFS(k)
    p = proc(k)
    r, w = k.pipe(p, F.O_CLOEXEC)
    s = k.socket(p, F.AF_UNIX)
    m = k.memfd_create(p, "jit")
    k.open(p, "/var/log/app.log", F.O_WRONLY | F.O_APPEND | F.O_CREAT)
    links = fds(fs, p)
    assert fs.readdir(f"/proc/{p}/fdinfo", ROOT) == fs.readdir(f"/proc/{p}/fd", ROOT)
    assert links[r] == links[w] == f"pipe:[{k.task(p).files.fd[r].ino}]"
    assert links[s].startswith("socket:[") and links[m] == "/memfd:jit (deleted)"
    assert links[7] == "/var/log/app.log"
    assert fs.getattr(f"/proc/{p}/fd", ROOT).size == len(links)
    modes = {fd: S.S_IMODE(fs.getattr(f"/proc/{p}/fd/{fd}", ROOT).mode) for fd in links}
    assert (modes[r], modes[w], modes[s], modes[7]) == (0o500, 0o300, 0o700, 0o300)
    assert fs.getattr(f"/proc/{p}/fd/{r}", ROOT).size == 64
    total = {id(f) for g in k.thread_groups() if g.leader.files for _, f in g.leader.files.items()}
    assert file_nr(fs) == (len(total), 0, k.files.max_files)
    assert "scm_fds: 0\n" in fdinfo(fs, p, s)
    assert fdinfo(fs, p, r).startswith("pos:\t0\nflags:\t02000000\nmnt_id:\t16\n")
    k.set_cloexec(p, r, False)
    assert "flags:\t00\n" in fdinfo(fs, p, r)


def test_unlinked_exe_and_files_show_deleted(k):
    fs = ProcFS(k)
    p = k.spawn(["/opt/app/server"])
    fd = k.open(p, "/opt/app/data.db", F.O_RDWR)
    k.unlink("/opt/app/server", 1)
    k.unlink("/opt/app/data.db", 1)
    assert fs.readlink(f"/proc/{p}/exe", ROOT) == "/opt/app/server (deleted)"
    assert fs.readlink(f"/proc/{p}/fd/{fd}", ROOT) == "/opt/app/data.db (deleted)"
    assert "/opt/app/server (deleted)" in read_all(fs, f"/proc/{p}/maps").decode()
    again = k.open(p, "/opt/app/data.db", F.O_RDWR | F.O_CREAT)
    assert fs.readlink(f"/proc/{p}/fd/{again}", ROOT) == "/opt/app/data.db"
    assert k.task(p).files.fd[again].ino != k.task(p).files.fd[fd].ino


def test_cwd_follows_chdir(k):
    fs = ProcFS(k)
    p = proc(k)
    k.chdir(p, "/var/lib/postgresql")
    k.chdir(p, "15/main")
    assert fs.readlink(f"/proc/{p}/cwd", ROOT) == "/var/lib/postgresql/15/main"
    assert fs.readlink(f"/proc/{p}/fd/{k.open(p, 'postmaster.pid')}", ROOT) == \
        "/var/lib/postgresql/15/main/postmaster.pid"
    assert fs.readlink(f"/proc/{k.fork(p)}/cwd", ROOT) == "/var/lib/postgresql/15/main"


def test_another_users_process(k):
    """fd/ is 0500 owned as the process; readlink of its links, exe and cwd
    needs ptrace access (EACCES); fdinfo needs it to open; map_files
    lookups need CAP_SYS_ADMIN (EPERM), even for the owner."""
    fs = ProcFS(k)
    p = proc(k)
    mine = proc(k, uid=65534)
    a = fs.getattr(f"/proc/{p}/fd", ROOT)
    assert S.S_IMODE(a.mode) == 0o500 and S.S_IMODE(fs.getattr(f"/proc/{p}/map_files", ROOT).mode) == 0o500
    assert S.S_IMODE(fs.getattr(f"/proc/{p}/fdinfo", ROOT).mode) == 0o555
    assert errno_of(fs.readdir, f"/proc/{p}/fd", NOBODY) == errno.EACCES
    assert errno_of(fs.getattr, f"/proc/{p}/fd/0", NOBODY) == errno.EACCES
    assert errno_of(fs.readlink, f"/proc/{p}/exe", NOBODY) == errno.EACCES
    assert errno_of(fs.readlink, f"/proc/{p}/cwd", NOBODY) == errno.EACCES
    assert errno_of(fs.open, f"/proc/{p}/fdinfo/0", os.O_RDONLY, NOBODY) == errno.EACCES
    assert fs.getattr(f"/proc/{p}/exe", NOBODY).uid == 0  # lstat works
    assert fds(fs, mine, NOBODY)[0] == "/dev/null"
    assert fs.getattr(f"/proc/{mine}/fd/0", NOBODY).uid == 65534
    vma = fs.readdir(f"/proc/{mine}/map_files", NOBODY)[0]
    assert errno_of(fs.readlink, f"/proc/{mine}/map_files/{vma}", NOBODY) == errno.EPERM
    assert fs.readlink(f"/proc/{mine}/map_files/{vma}", ROOT) == "/usr/bin/python3"
    assert S.S_IMODE(fs.getattr(f"/proc/{mine}/map_files/{vma}", ROOT).mode) == 0o400


def test_map_files_names_are_the_file_backed_vmas(k):
    fs = ProcFS(k)
    p = proc(k)
    mm = k.task(p).mm
    want = [f"{v.start:x}-{v.end:x}" for v in mm.vmas if v.file is not None]
    assert fs.readdir(f"/proc/{p}/map_files", ROOT) == want
    start, end = want[0].split("-")
    assert errno_of(fs.getattr, f"/proc/{p}/map_files/0{start}-{end}", ROOT) == errno.ENOENT


def test_proc_mounts_is_a_link_to_self_mounts(k):
    fs = ProcFS(k)
    a = fs.getattr("/proc/mounts", ROOT)
    assert S.S_ISLNK(a.mode) and fs.readlink("/proc/mounts", ROOT) == "self/mounts" and a.size == 11


def test_boot_mount_table_has_the_usual_mounts(k):
    fs = ProcFS(k)
    p = proc(k)
    lines = read_all(fs, f"/proc/{p}/mounts").decode().splitlines()
    points = {line.split()[1]: line.split()[2] for line in lines}
    for mp, fstype in (("/", "ext4"), ("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"),
                       ("/dev/pts", "devpts"), ("/run", "tmpfs"), ("/tmp", "tmpfs"), ("/sys/fs/cgroup", "cgroup2")):
        assert points[mp] == fstype
    ids = {int(line.split()[0]) for line in read_all(fs, f"/proc/{p}/mountinfo").decode().splitlines()}
    assert "mnt_id:\t24\n" in fdinfo(fs, p, 0) and 24 in ids  # /dev/null is on /dev


# -- against this machine's kernel --------------------------------------------------------------

_HOST_PROGRAM = r"""
import ctypes, json, os, select, signal, socket, tempfile
libc = ctypes.CDLL(None, use_errno=True)
made = []
def rec(label, fd): made.append((label, fd)); return fd
r, w = os.pipe(); rec("pipe-r", r); rec("pipe-w", w)
s = socket.socket(); rec("tcp", s.fileno())
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); rec("unix", u.fileno())
e = rec("eventfd", os.eventfd(5, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
ep = select.epoll(); rec("epoll", ep.fileno())
ep.register(r, select.EPOLLIN); ep.register(e, select.EPOLLIN | select.EPOLLOUT)
m = rec("memfd", os.memfd_create("xyz")); os.write(m, b"hello")
f = rec("passwd", os.open("/etc/passwd", os.O_RDONLY)); os.read(f, 10)
p = "/var/tmp/procsim-fd-test-%d" % os.getpid()
a = rec("deleted", os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)); os.unlink(p)
rec("dir", os.open("/etc", os.O_RDONLY | os.O_DIRECTORY))
n = rec("null", os.open("/dev/null", os.O_RDWR))
rec("dup", os.dup(n)); rec("dup2", os.dup2(n, 40))
rec("timerfd", libc.timerfd_create(1, 0o2000000))
class ts(ctypes.Structure): _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
class its(ctypes.Structure): _fields_ = [("i", ts), ("v", ts)]
libc.timerfd_settime(made[-1][1], 0, ctypes.byref(its(ts(1, 500), ts(100, 0))), None)
mask = (ctypes.c_ulong * 16)(); mask[0] = (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGHUP - 1))
rec("signalfd", libc.signalfd(-1, mask, 0o2000000))
ino = rec("inotify", libc.inotify_init1(0)); libc.inotify_add_watch(ino, b"/etc", 0x100 | 0x200)
out = {}
for label, fd in made:
    st = os.lstat("/proc/self/fd/%d" % fd)
    out[label] = [fd, os.readlink("/proc/self/fd/%d" % fd), st.st_mode, st.st_size,
                  open("/proc/self/fdinfo/%d" % fd).read()]
st = os.stat("/proc/self/fd")
out["fd-dir"] = [st.st_mode, st.st_nlink, st.st_size, len(os.listdir("/proc/self/fd")) - 1]
print(json.dumps(out))
"""


def _model_same_fds(k: Kernel) -> tuple[int, dict]:
    """The host program's fds, made in a simulated process."""
    p = proc(k)  # 0, 1 and 2, as the host child has them
    made = {}
    made["pipe-r"], made["pipe-w"] = k.pipe(p, F.O_CLOEXEC)
    made["tcp"] = k.socket(p, F.AF_INET, F.O_CLOEXEC)
    made["unix"] = k.socket(p, F.AF_UNIX, F.O_CLOEXEC)
    made["eventfd"] = e = k.eventfd(p, 5, F.O_CLOEXEC | F.O_NONBLOCK)
    made["epoll"] = ep = k.epoll_create(p, F.O_CLOEXEC)
    k.epoll_ctl(p, ep, 1, made["pipe-r"], 0x1)
    k.epoll_ctl(p, ep, 1, e, 0x1 | 0x4)
    made["memfd"] = m = k.memfd_create(p, "xyz")
    k.lseek(p, m, 5)
    made["passwd"] = f = k.open(p, "/etc/passwd", F.O_RDONLY | F.O_CLOEXEC)
    k.lseek(p, f, 10)
    made["deleted"] = k.open(p, "/var/tmp/procsim-fd-test", F.O_WRONLY | F.O_CREAT | F.O_APPEND | F.O_CLOEXEC)
    k.unlink("/var/tmp/procsim-fd-test", p)
    made["dir"] = k.open(p, "/etc", F.O_RDONLY | F.O_DIRECTORY | F.O_CLOEXEC)
    made["null"] = n = k.open(p, "/dev/null", F.O_RDWR | F.O_CLOEXEC)
    made["dup"] = k.dup(p, n, cloexec=True)
    made["dup2"] = k.dup2(p, n, 40)
    made["timerfd"] = t = k.timerfd_create(p, 1, F.O_CLOEXEC)
    k.timerfd_settime(p, t, 100 * 10**9, 1 * 10**9 + 500)
    made["signalfd"] = k.signalfd(p, (1 << 9) | (1 << 0), F.O_CLOEXEC)
    made["inotify"] = i = k.inotify_init(p)
    k.inotify_add_watch(p, i, "/etc", 0x100 | 0x200)
    return p, made


def _masked(label: str, text: str) -> str:
    """What may differ between two machines: inode numbers (of files, pipes
    and sockets, and of the one anon inode, whose number depends on what the
    boot allocated before it), the eventfd's id, a timer's time left."""
    text = re.sub(r"^ino:\t\d+$", "ino:\t#", text, flags=re.M)
    text = re.sub(r"(pos:0 ino:)[0-9a-f]+( sdev:f\n)", r"\1#\2", text)  # the pipe's inode
    text = re.sub(r"(pos:0 ino:)[0-9a-f]+( sdev:10\n)", r"\1#\2", text)  # the anon inode
    text = re.sub(r"eventfd-id: \d+", "eventfd-id: #", text)
    text = re.sub(r"it_value: \(\d+, \d+\)", "it_value: #", text)
    text = re.sub(r" ino:[0-9a-f]+ (sdev:fe00000 .* f_handle:)[0-9a-f]+", r" ino:# \1#", text)
    # epoll's items are in its tree's order, by the address of their struct file
    head = [line for line in text.splitlines(True) if not line.startswith("tfd:")]
    return "".join(head + sorted(line for line in text.splitlines(True) if line.startswith("tfd:")))


@requires_host(min_kernel="6.18", arch="x86_64", files=("/proc/self/fdinfo",))
def test_fd_links_and_fdinfo_as_the_host_shows_them(k):
    """The same fds opened in a real Python process on this machine and in a
    simulated one: readlink, lstat's mode and size, and fdinfo byte for byte
    but for the numbers that are this machine's (inodes, ids)."""
    host = json.loads(subprocess.run([sys.executable, "-c", _HOST_PROGRAM], capture_output=True, text=True,
                                     check=True, stdin=subprocess.DEVNULL, close_fds=True).stdout)
    fs = ProcFS(k)
    p, made = _model_same_fds(k)
    for label, fd in made.items():
        hfd, hlink, hmode, hsize, hinfo = host[label]
        assert fd == hfd, label
        link = fs.readlink(f"/proc/{p}/fd/{fd}", ROOT)
        hlink = re.sub(r"procsim-fd-test-\d+", "procsim-fd-test", hlink)
        assert re.sub(r"\[\d+\]", "[#]", link) == re.sub(r"\[\d+\]", "[#]", hlink), label
        a = fs.getattr(f"/proc/{p}/fd/{fd}", ROOT)
        assert (a.mode, a.size) == (hmode, hsize), label
        assert _masked(label, fdinfo(fs, p, fd)) == _masked(label, hinfo), label
    # every anon inode fd is the one shared inode, there and here
    anon = ("eventfd", "epoll", "timerfd", "signalfd", "inotify")
    inos = {re.search(r"^ino:\t(\d+)$", fdinfo(fs, p, made[label]), re.M)[1] for label in anon}
    hinos = {re.search(r"^ino:\t(\d+)$", host[label][4], re.M)[1] for label in anon}
    assert len(inos) == len(hinos) == 1, (inos, hinos)
    dmode, dnlink, dsize, dcount = host["fd-dir"]
    a = fs.getattr(f"/proc/{p}/fd", ROOT)
    assert (a.mode, a.nlink) == (dmode, dnlink)
    # the size is the number of open fds, there (less the listing's own fd) and here
    assert a.size == len(fs.readdir(f"/proc/{p}/fd", ROOT)) and dsize == dcount


@requires_host(min_kernel="6.18", files=("/proc/self/mountinfo",))
def test_mount_files_as_the_host_prints_its_table(k):
    """This machine's mount table, parsed into the model and rendered: its
    own mountinfo, mounts and mountstats, byte for byte."""
    def host(name: str) -> str:
        with open(f"/proc/self/{name}") as f:
            return f.read()

    for _ in range(10):  # one table: other tests on this machine mount and unmount
        text, mounts, stats = host("mountinfo"), host("mounts"), host("mountstats")
        if host("mountinfo") == text:
            break
    k.files.mnt_ns[k.init_ns["mnt"]] = parse_mountinfo(text)
    fs = ProcFS(k)
    p = proc(k)
    assert read_all(fs, f"/proc/{p}/mountinfo").decode() == text
    assert read_all(fs, f"/proc/{p}/mounts").decode() == mounts
    assert read_all(fs, f"/proc/{p}/mountstats").decode() == stats


def test_sysctls_file_max_and_nr_open(k):
    fs = ProcFS(k)
    h = fs.open("/proc/sys/fs/file-max", os.O_WRONLY, ROOT)
    h.write(b"100000\n", 0)
    assert file_nr(fs)[2] == 100000
    assert read_all(fs, "/proc/sys/fs/nr_open") == b"1048576\n"
    h = fs.open("/proc/sys/fs/nr_open", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"10\n", 0) == errno.EINVAL  # below BITS_PER_LONG
    p = proc(k)
    k.prlimit(p, RLIMIT_NOFILE, Rlimit(2048, 2048))
    fs.open("/proc/sys/fs/nr_open", os.O_WRONLY, ROOT).write(b"128\n", 0)
    assert errno_of(k.dup2, p, 0, 200) == errno.EMFILE  # past fs.nr_open, within the rlimit


# -- scenarios -------------------------------------------------------------------------------


def _machine(**proc) -> Kernel:
    from procsim.scenario import build
    return build({"machine": {"nr_cpus": 2, "mem": "2G"},
                  "process": [{"name": "app", "pid": 100, "argv": ["/usr/sbin/app"], **proc},
                              {"name": "child", "pid": 101, "parent": "app", "argv": ["/usr/bin/helper"]}]})


def test_scenario_files_stdio_and_cwd():
    k = _machine(stdio="journal", cwd="/srv/app", files=[
        {"path": "/var/log/app.log", "flags": "O_WRONLY|O_APPEND|O_CREAT", "pos": 4096},
        {"kind": "socket", "family": "inet6", "count": 2, "cloexec": False},
        {"kind": "pipe"},
        {"kind": "epoll", "watch": [5]},
        {"path": "/tmp/spool", "flags": "O_RDWR|O_CREAT", "unlink": True},
        {"path": "/dev/null", "fd": 20},
        {"kind": "timerfd", "value": 2.0, "interval": 0.5},
    ])
    fs = ProcFS(k)
    links = fds(fs, 100)
    assert links[0] == "/dev/null" and links[1] == links[2] and links[1].startswith("socket:[")
    assert links[3] == "/var/log/app.log" and "pos:\t4096\nflags:\t0102001\n" in fdinfo(fs, 100, 3)
    assert links[6].startswith("pipe:[") and links[7] == links[6]
    assert links[8] == "anon_inode:[eventpoll]" and re.search(r"^tfd: +5 events: +19 ", fdinfo(fs, 100, 8), re.M)
    assert links[9] == "/tmp/spool (deleted)" and links[20] == "/dev/null"
    # built during the boot history: the timer has fired every 0.5 s since, unread
    t = fdinfo(fs, 100, 10)
    ticks, ns = int(re.search(r"ticks: (\d+)", t)[1]), int(re.search(r"it_value: \(0, (\d+)\)", t)[1])
    assert "it_interval: (0, 500000000)\n" in t and ticks > 1 and 0 < ns <= 500000000
    assert fs.readlink("/proc/100/cwd", ROOT) == "/srv/app"
    # the child (fork + exec): what was not close-on-exec, and the cwd
    assert sorted(fds(fs, 101)) == [0, 1, 2, 3, 4, 5, 9, 20]


@pytest.mark.parametrize("files, pattern", [
    ([{"path": "/x", "colour": 1}], r"files #1: unknown key 'colour'"),
    ([{"kind": "fifo"}], r"files #1: kind: expected one of"),
    ([{"kind": "pipe", "fd": 9}], r"files #1: fd: a pipe makes 2 fds"),
    ([{"kind": "socket", "path": "/x"}], r"'path' is for kind file"),
    ([{"path": "/x", "count": 0}], r"count: expected a positive integer"),
    ([{"path": "/x", "flags": "O_BOGUS"}], r"files #1: open: flags: expected open flags"),
    ([{"path": "/etc", "flags": "O_WRONLY"}], r"files #1: open: .*directory"),
    ([{"kind": "socket", "family": "ipx"}], r"family: one of unix"),
])
def test_scenario_files_errors(files, pattern):
    from procsim.scenario import ScenarioError
    with pytest.raises(ScenarioError, match=pattern):
        _machine(files=files)


def test_scenario_stdio_and_cwd_errors():
    from procsim.scenario import ScenarioError
    with pytest.raises(ScenarioError, match="stdio: expected a path"):
        _machine(stdio="tty")
    with pytest.raises(ScenarioError, match="cwd.*not a directory"):
        _machine(cwd="/dev/null")


def test_default_machine_fd_tables():
    """The default machine's processes hold what such processes hold, and
    /proc/sys/fs/file-nr counts their open files."""
    from procsim import scenario
    k = scenario.load()
    fs = ProcFS(k)
    init = fds(fs, 1)
    assert init[0] == init[1] == init[2] == "/dev/null" and len(init) > 30
    assert any(t.startswith("socket:[") for t in init.values()) and "anon_inode:[eventpoll]" in init.values()
    bash = next(g.tgid for g in k.thread_groups() if g.leader.comm == "bash")
    assert fds(fs, bash)[0] == "/dev/pts/0" and fdsize(fs, bash) == 256  # its fd 255
    py = next(g.tgid for g in k.thread_groups() if g.leader.comm.startswith("python"))
    assert "/tmp/etl-spool.bin (deleted)" in fds(fs, py).values()
    for g in k.thread_groups():
        if g.mm is None and not g.zombie:
            assert fs.readdir(f"/proc/{g.tgid}/fd", ROOT) == []
    total = {id(f) for g in k.thread_groups() if g.leader.files for _, f in g.leader.files.items()}
    assert file_nr(fs)[0] == len(total)


# -- a state machine: the tables and what /proc shows agree after any sequence -------------------

from hypothesis import HealthCheck, settings, strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule  # noqa: E402

_idx = st.integers(0, 1 << 16)


class FdMachine(RuleBasedStateMachine):
    """Random opens, closes, dups, pipes, forks, threads, execs and exits;
    after each step fd/ = fdinfo/ = the table, FDSize is the table's size
    rule, every file's references are the slots holding it, and file-nr
    counts the files."""

    @initialize()
    def boot(self):
        self.k = Kernel()
        self.k.create_init()
        self.fs = ProcFS(self.k)
        self.pids = [proc(self.k)]

    def _pid(self, i: int) -> int:
        live = [p for p in self.pids if p in self.k.tasks and not self.k.tasks[p].tg.zombie]
        return live[i % len(live)] if live else proc(self.k)

    def _try(self, fn, *args):
        before = state(self.k)
        try:
            return fn(*args)
        except KernelError:
            assert state(self.k)[:4] == before[:4]  # nothing changed (the generation may move)

    @rule(i=_idx, path=st.sampled_from(["/etc/passwd", "/tmp/a", "/tmp/b", "/etc", "/dev/null"]),
          flags=st.sampled_from([F.O_RDONLY, F.O_WRONLY | F.O_CREAT, F.O_RDWR | F.O_CLOEXEC,
                                 F.O_RDONLY | F.O_DIRECTORY]))
    def open(self, i, path, flags):
        self._try(self.k.open, self._pid(i), path, flags)

    @rule(i=_idx, fd=st.integers(-1, 140))
    def close(self, i, fd):
        self._try(self.k.close, self._pid(i), fd)

    @rule(i=_idx, fd=st.integers(0, 10), new=st.integers(0, 300), cloexec=st.booleans())
    def dup2(self, i, fd, new, cloexec):
        self._try(self.k.dup2, self._pid(i), fd, new, F.O_CLOEXEC if cloexec else 0, cloexec)

    @rule(i=_idx, fd=st.integers(0, 10))
    def dup(self, i, fd):
        self._try(self.k.dup, self._pid(i), fd)

    @rule(i=_idx)
    def pipe(self, i):
        self._try(self.k.pipe, self._pid(i), F.O_CLOEXEC)

    @rule(i=_idx, limit=st.integers(3, 12))
    def nofile(self, i, limit):
        self.k.prlimit(self._pid(i), RLIMIT_NOFILE, Rlimit(limit, 4096))

    @rule(i=_idx)
    def fork(self, i):
        self.pids.append(self.k.fork(self._pid(i)))

    @rule(i=_idx)
    def thread(self, i):
        self.k.clone_thread(self._pid(i))

    @rule(i=_idx)
    def exec(self, i):
        self.k.exec(self._pid(i), "/usr/bin/true", ["true"])

    @rule(i=_idx)
    def exit(self, i):
        p = self._pid(i)
        if p != 1:
            self.k.exit_group(p)

    @rule(path=st.sampled_from(["/tmp/a", "/tmp/b"]))
    def unlink(self, path):
        self._try(self.k.unlink, path, 1)

    @invariant()
    def agree(self):
        k, fs = self.k, self.fs
        refs: dict[int, int] = {}
        files = {}
        tables = {id(t.files): t.files for t in k.tasks.values() if t.files is not None}
        for ft in tables.values():
            for _, f in ft.items():
                refs[id(f)] = refs.get(id(f), 0) + 1
                files[id(f)] = f
        assert all(f.refs == refs[i] for i, f in files.items())
        assert file_nr(fs)[0] == len(files) == k.files.nr_files
        for g in k.thread_groups():
            t = g.leader
            names = fs.readdir(f"/proc/{g.tgid}/fd", ROOT)
            assert names == fs.readdir(f"/proc/{g.tgid}/fdinfo", ROOT)
            if t.files is None:
                assert names == [] and fdsize(fs, g.tgid) == 0
                continue
            assert names == [str(fd) for fd in t.files.open_fds()]
            top = max(map(int, names), default=0)
            assert fdsize(fs, g.tgid) == t.files.max_fds >= top + 1 and (t.files.max_fds == 64 or
                                                                       t.files.max_fds & (t.files.max_fds - 1) == 0)


TestFdMachine = FdMachine.TestCase
TestFdMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])


_HOST_TARGETS = r"""
import json, os, select, socket
r, w = os.pipe(); s = socket.socket(); e = os.eventfd(0); ep = select.epoll()
out = {}
for label, fd in (("pipe", r), ("socket", s.fileno()), ("eventfd", e), ("epoll", ep.fileno())):
    st = os.stat(f"/proc/self/fd/{fd}")
    out[label] = [st.st_mode, st.st_ino, st.st_uid, st.st_gid, st.st_size, st.st_mtime == 0]
print(json.dumps(out))
"""


def _target_fds(k: Kernel, p: int) -> dict[str, int]:
    r, _ = k.pipe(p)
    return {"pipe": r, "socket": k.socket(p, F.AF_INET), "eventfd": k.eventfd(p), "epoll": k.epoll_create(p)}


def test_fd_link_targets_are_the_pseudo_inodes(k):
    """What stat() reaches through an fd link to a pipe, socket or anon
    inode (through FUSE: the link's text looked up in fd/): the inode, with
    its number, type and owner; only the task's own targets, never listed."""
    fs = ProcFS(k)
    p, q = proc(k, uid=1000), proc(k, uid=1000)
    made = _target_fds(k, p)
    attrs = {}
    for label, fd in made.items():
        target = fs.readlink(f"/proc/{p}/fd/{fd}", ROOT)
        attrs[label] = fs.getattr(f"/proc/{p}/fd/{target}", ROOT)
        assert fs.getattr(f"/proc/{p}/fd/{fd}", ROOT).ino != attrs[label].ino  # lstat: the link's own
        assert target not in fs.readdir(f"/proc/{p}/fd", ROOT)
    pipe, sock = (fs.readlink(f"/proc/{p}/fd/{made[n]}", ROOT) for n in ("pipe", "socket"))
    assert (attrs["pipe"].mode, attrs["pipe"].ino, attrs["pipe"].uid) == (S.S_IFIFO | 0o600, int(pipe[6:-1]), 1000)
    assert (attrs["socket"].mode, attrs["socket"].ino, attrs["socket"].uid) == (S.S_IFSOCK | 0o777,
                                                                               int(sock[8:-1]), 1000)
    assert attrs["socket"].time == 0  # sockfs inodes have no times
    for label in ("eventfd", "epoll"):  # the one anon_inode_inode, root's
        assert (attrs[label].mode, attrs[label].ino, attrs[label].uid) == (S.S_IFREG | 0o600, 17, 0), label
    assert errno_of(fs.open, f"/proc/{p}/fd/anon_inode:[eventfd]", os.O_RDONLY, ROOT) == errno.ENXIO
    # another task's targets, malformed and path names are not there
    for bad in (pipe, sock, "anon_inode:[eventfd]"):
        assert errno_of(fs.getattr, f"/proc/{q}/fd/{bad}", ROOT) == errno.ENOENT, bad
    for bad in ("socket:[1]", "pipe:[x]", "socket:", "anon_inode:[timerfd]", "dev", "null"):
        assert errno_of(fs.getattr, f"/proc/{p}/fd/{bad}", ROOT) == errno.ENOENT, bad
    # the owner may look in fd/; following a link needs ptrace access
    assert errno_of(fs.getattr, f"/proc/{p}/fd/{sock}", NOBODY) == errno.EACCES
    k.close(p, made["socket"])
    assert errno_of(fs.getattr, f"/proc/{p}/fd/{sock}", ROOT) == errno.ENOENT


@requires_host(kernel="6.18")
def test_fd_link_targets_as_the_host_stats_them(k):
    host = json.loads(subprocess.run([sys.executable, "-c", _HOST_TARGETS], capture_output=True, text=True,
                                     check=True, stdin=subprocess.DEVNULL, close_fds=True).stdout)
    fs = ProcFS(k)
    fs.mount_time = 1e9  # a pipe's and an anon inode's times are set, a socket's 0
    p = proc(k)
    anon: dict[str, set[int]] = {"here": set(), "there": set()}
    for label, fd in _target_fds(k, p).items():
        a = fs.getattr(f"/proc/{p}/fd/{fs.readlink(f'/proc/{p}/fd/{fd}', ROOT)}", ROOT)
        mode, ino, uid, gid, size, no_times = host[label]
        # Linux's anon inode has no file type, which FUSE refuses (EIO): ours is S_IFREG
        assert a.mode == (S.S_IFMT(mode) or S.S_IFREG) | S.S_IMODE(mode), label
        assert (a.uid, a.gid, a.size, a.time == 0) == (uid, gid, size, no_times), label
        if label in ("eventfd", "epoll"):
            anon["here"].add(a.ino)
            anon["there"].add(ino)
    # both are anon_inode_inode, one number fixed at boot (which number depends on the boot)
    assert len(anon["here"]) == len(anon["there"]) == 1, anon


_HOST_PROTO_NAMES = r"""
import json, os, socket
out = {}
for label, fam, typ in (("tcp", socket.AF_INET, 1), ("udp", socket.AF_INET, 2), ("tcp6", socket.AF_INET6, 1),
                        ("udp6", socket.AF_INET6, 2), ("unix-stream", socket.AF_UNIX, 1),
                        ("unix-dgram", socket.AF_UNIX, 2), ("unix-seqpacket", socket.AF_UNIX, 5)):
    s = socket.socket(fam, typ)
    p = f"/proc/self/fd/{s.fileno()}"
    try:
        os.getxattr(p, "user.x")
        other = 0
    except OSError as e:
        other = e.errno
    out[label] = [os.getxattr(p, "system.sockprotoname").hex(), other]
print(json.dumps(out))
"""


def test_socket_targets_name_their_protocol_as_the_host_does(k):
    """lsof asks getxattr(fd/N, "system.sockprotoname") of a socket it finds
    in no /proc/net table: sockfs answers that one name (NUL included),
    ENODATA for others; a pipe's inode has no xattrs (EOPNOTSUPP)."""
    host = json.loads(subprocess.run([sys.executable, "-c", _HOST_PROTO_NAMES], capture_output=True, text=True,
                                     check=True, stdin=subprocess.DEVNULL, close_fds=True).stdout)
    fs = ProcFS(k)
    p = proc(k)
    kinds = {"tcp": (F.AF_INET, 1), "udp": (F.AF_INET, 2), "tcp6": (F.AF_INET6, 1), "udp6": (F.AF_INET6, 2),
             "unix-stream": (F.AF_UNIX, 1), "unix-dgram": (F.AF_UNIX, 2), "unix-seqpacket": (F.AF_UNIX, 5)}
    for label, (family, type_) in kinds.items():
        fd = k.socket(p, family, 0, type_)
        target = f"/proc/{p}/fd/{fs.readlink(f'/proc/{p}/fd/{fd}', ROOT)}"
        assert fs.getxattr(target, "system.sockprotoname", ROOT).hex() == host[label][0], label
        with pytest.raises(OSError) as e:
            fs.getxattr(target, "user.x", ROOT)
        assert e.value.errno == host[label][1], label
    r, _ = k.pipe(p)
    with pytest.raises(OSError) as e:
        fs.getxattr(f"/proc/{p}/fd/{fs.readlink(f'/proc/{p}/fd/{r}', ROOT)}", "system.sockprotoname", ROOT)
    assert e.value.errno == errno.EOPNOTSUPP
