"""/proc/PID/fd, fdinfo, map_files and the exe, cwd and root links
(fs/proc/fd.c, fs/proc/base.c): renderings of the task's files_struct,
fs_struct, exe_file and VMAs (procsim/fs/).

fd/N links are owned as the task is, with the mode of the file's f_mode
(r-x read, -wx write, rwx both) and size 64, and readlink needs ptrace
access (proc_fd_access_allowed: EACCES otherwise), as exe, cwd and root do.
fdinfo/N opens need it too.

Following an fd link to a pipe, socket or anon inode reaches that inode
(Linux jumps there: nd_jump_link). Through FUSE the kernel resolves the
link's text (`socket:[N]`) as a name in fd/ instead, so fd/ also looks up
the targets of the task's own fds that are not paths (not listed: they are
no names in Linux's fd/), answering with the inode's stat: a socket
S_IFSOCK 0777 owned by its sk_uid, times 0 (sock_alloc); a pipe S_IFIFO
0600 owned by the task's fsuid; an anon inode the one anon_inode_inode
(ino 17, root, 0600: Linux gives it no file type, which FUSE refuses, so
S_IFREG), whose open is ENXIO. st_dev stays the mount's. map_files/ lists the file-backed VMAs
(`start-end`); looking one up needs CAP_SYS_ADMIN (EPERM)."""

from __future__ import annotations

import errno
import stat as S
from dataclasses import dataclass

from procsim.fs import file as F
from procsim.fs.file import OpenFile
from procsim.fs.locks import fd_locks
from procsim.fs.mount import kdev
from procsim.kernel import Kernel
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import BY_UID, DynDir, File, Link, Node, Show
from procsim.task import Task

FD_LINK_SIZE = 64  # what lstat gives as an fd link's size (this host's 6.18)


def _owner_ok(task: Task, caller: Caller) -> bool:
    """generic_permission() on a 0500 directory the task's owner has."""
    if caller.is_root:
        return True
    c = task.tg.cred
    return task.tg.dumpable and caller.uid == c.euid


def _fd_number(name: str) -> int | None:
    """name_to_int(): digits, no leading zero."""
    if not name.isdigit() or (len(name) > 1 and name[0] == "0") or not name.isascii():
        return None
    return int(name)


def link_mode(f: OpenFile) -> int:
    m = f.mode
    perm = (0o500 if m & F.FMODE_READ else 0) | (0o300 if m & F.FMODE_WRITE else 0)
    return S.S_IFLNK | perm


# -- fd/ -----------------------------------------------------------------------------

FD_LINK = Link("fd", lambda ctx: "", ptrace=True)  # the row every fd/N node points at


@dataclass(frozen=True, slots=True, eq=False)
class PseudoInode(File):
    """The pipefs, sockfs or anon inode an fd link's target names: its stat
    (procsim/procfs/tree.py's _attr takes these fields as they are)."""
    name: str
    st_mode: int
    uid: int = 0
    gid: int = 0
    times: bool = True  # False: sockfs inodes' times are 0
    mode: int = 0
    sockprotoname: bytes = b""  # a socket's system.sockprotoname xattr (sockfs_xattr_get)


def _no_open(ctx: Ctx) -> None:
    raise OSError(errno.ENXIO, "anon_inode")  # the anon inode has no ->open


_ANON_INODE = PseudoInode("anon_inode", S.S_IFREG | 0o600, open_check=_no_open)


def pseudo_inode(f: OpenFile, t: Task) -> PseudoInode | None:
    """The inode behind a pipe, socket or anon inode file, None for a path."""
    if f.inode is not None:
        return None
    c = t.tg.cred
    if f.kind == F.SOCK:
        sk = f.private
        return PseudoInode("socket", S.S_IFSOCK | 0o777, getattr(sk, "uid", c.fsuid), c.fsgid, times=False,
                           sockprotoname=_sk_prot_name(sk))
    if f.kind == F.PIPE:
        return PseudoInode("pipe", S.S_IFIFO | 0o600, c.fsuid, c.fsgid)
    return _ANON_INODE


def _sk_prot_name(sk: object) -> bytes:
    """sk->sk_prot_creator->name, NUL included, as this host's getxattr of
    system.sockprotoname gives it: TCP, UDP, TCPv6, UDPv6, UNIX-STREAM (a
    unix stream socket; dgram and seqpacket are UNIX), NETLINK."""
    family, protocol = getattr(sk, "family", None), getattr(sk, "protocol", 0)
    if family == F.AF_UNIX:
        name = "UNIX-STREAM" if getattr(sk, "type", 0) == 1 else "UNIX"
    elif family in (F.AF_INET, F.AF_INET6):
        name = {6: "TCP", 17: "UDP"}.get(protocol, "RAW") + ("v6" if family == F.AF_INET6 else "")
    else:
        name = "NETLINK"
    return name.encode() + b"\0"


def _fd_target_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel, memo: dict) -> tuple[Node, int]:
    """`socket:[N]`, `pipe:[N]`, `anon_inode:[eventfd]`: what one of the task's fds points at."""
    t = parent.task
    f = _targets(t.files, memo).get(name) if t.files is not None else None
    if f is None:
        raise OSError(errno.ENOENT, name)
    if not Ctx(kernel, caller, t, parent.thread_view).may_ptrace():
        raise OSError(errno.EACCES, name)  # proc_fd_access_allowed()
    return Node("file", pseudo_inode(f, t), t, parent.thread_view, ino=f.ino), BY_UID


def _targets(files, memo: dict) -> dict[str, OpenFile]:
    """The fd table's targets that are no paths, by link text. Kept in the
    resolver's memo for the generation (it is dropped when the world
    changes): lsof stats every fd of a process in a row, which would
    otherwise scan the table once per fd."""
    key = ("fd-targets", id(files))
    hit = memo.get(key)
    if hit is not None and hit[0] is files:
        return hit[1]
    targets: dict[str, OpenFile] = {}
    for _, f in files.items():
        if f.inode is None:
            targets.setdefault(f.d_path(), f)
    memo[key] = (files, targets)  # holding `files` keeps its id unique while cached
    return targets


def _fd_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel, memo: dict) -> tuple[Node, int]:
    t = parent.task
    fd = _fd_number(name)
    files = t.files
    if fd is None and not name.isdigit():
        return _fd_target_lookup(parent, name, caller, kernel, memo)
    if fd is None or files is None or fd >= files.max_fds or files.fd[fd] is None:
        raise OSError(errno.ENOENT, name)
    f = files.fd[fd]
    return Node("link", FD_LINK, t, parent.thread_view, f.d_path(), mode=link_mode(f), size=FD_LINK_SIZE,
                ptrace=True), False


def _fd_readdir(parent: Node, kernel: Kernel) -> list[str]:
    files = parent.task.files
    return [str(i) for i in files.open_fds()] if files is not None else []


def _nr_fds(parent: Node) -> int:
    files = parent.task.files
    return files.nr_open_fds if files is not None else 0


def _fd_check(parent: Node, caller: Caller) -> None:
    if not _owner_ok(parent.task, caller):
        raise OSError(errno.EACCES, "fd")


FD_DIR = DynDir("fd", mode=0o500, lookup_memo=_fd_lookup, readdir=_fd_readdir, size=_nr_fds, permission=_fd_check)


# -- fdinfo/ --------------------------------------------------------------------------


def _tfd_line(tfd: int, target: OpenFile, events: int, data: int) -> str:
    return (f"tfd: {tfd:8d} events: {events:8x} data: {data:16x}  pos:{target.f_pos} ino:{target.ino:x} "
            f"sdev:{kdev(target.dev):x}\n")


def _timer(ctx: Ctx, tm: F.Timerfd) -> tuple[int, int]:
    """(ticks not yet read, ns to the next expiry), at ctx's now."""
    now = ctx.kernel.now
    if not tm.expires or now < tm.expires:
        return 0, tm.expires - now if tm.expires else 0
    if not tm.interval:
        return 1, 0
    n = (now - tm.expires) // tm.interval + 1
    return n, tm.expires + n * tm.interval - now


def _ts(ns: int) -> str:
    return f"({ns // 1_000_000_000}, {ns % 1_000_000_000})"


def fdinfo_extra(ctx: Ctx, f: OpenFile) -> str:
    """The file's show_fdinfo lines."""
    k, p = f.kind, f.private
    if k == F.EVENTFD:
        return f"eventfd-count: {p.count:16x}\neventfd-id: {p.id}\neventfd-semaphore: {int(p.semaphore)}\n"
    if k == F.EVENTPOLL:
        return "".join(_tfd_line(tfd, tf, ev, data) for tfd, (tf, ev, data) in sorted(p.items.items()))
    if k == F.TIMERFD:
        ticks, left = _timer(ctx, p)
        return (f"clockid: {p.clockid}\nticks: {ticks}\nsettime flags: 0{p.settime_flags:o}\n"
                f"it_value: {_ts(left)}\nit_interval: {_ts(p.interval)}\n")
    if k == F.SIGNALFD:
        return f"sigmask:\t{p.sigmask:016x}\n"
    if k == F.INOTIFY:
        out = []
        for wd, (inode, mask) in sorted(p.watches.items()):
            handle = (inode.ino & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)  # FILEID_INO32_GEN, generation 0
            out.append(f"inotify wd:{wd:x} ino:{inode.ino:x} sdev:{kdev(inode.dev):x} mask:{mask:x} "
                       f"ignored_mask:0 fhandle-bytes:{len(handle):x} fhandle-type:1 f_handle:{handle.hex()}\n")
        return "".join(out)
    if k == F.SOCK and p.family == F.AF_UNIX:
        return "scm_fds: 0\n"
    return ""


def fdinfo(ctx: Ctx) -> bytes:
    """seq_show() of fs/proc/fd.c: pos, flags (O_CLOEXEC from the fd
    table's bit), mnt_id, ino, then the file's own lines."""
    files = ctx.task.files
    fd = ctx.arg
    if files is None or fd >= files.max_fds or files.fd[fd] is None:
        raise OSError(errno.ENOENT, str(fd))
    f = files.fd[fd]
    flags = f.f_flags | (F.O_CLOEXEC if files.close_on_exec[fd] else 0)
    return (f"pos:\t{f.f_pos}\nflags:\t0{flags:o}\nmnt_id:\t{f.mnt.mnt_id}\nino:\t{f.ino}\n"
            f"{fd_locks(ctx.kernel, f, files)}{fdinfo_extra(ctx, f)}").encode()


FDINFO_FILE = Show("fdinfo", fdinfo, ptrace_open=True)


def _fdinfo_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    t = parent.task
    fd = _fd_number(name)
    files = t.files
    if fd is None or files is None or fd >= files.max_fds or files.fd[fd] is None:
        raise OSError(errno.ENOENT, name)
    return Node("file", FDINFO_FILE, t, parent.thread_view, arg=fd), False


def _fdinfo_check(parent: Node, caller: Caller) -> None:
    """proc_fdinfo_permission(): ptrace read access."""
    if not Ctx(None, caller, parent.task).may_ptrace():
        raise OSError(errno.EACCES, "fdinfo")


FDINFO_DIR = DynDir("fdinfo", lookup=_fdinfo_lookup, readdir=_fd_readdir, permission=_fdinfo_check)


# -- map_files/ -------------------------------------------------------------------------

MAP_FILE_LINK = Link("map_files", lambda ctx: "", ptrace=True)


def _file_vmas(t: Task):
    mm = t.mm
    return [v for v in mm.vmas if v.file is not None] if mm is not None else []


def _map_files_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, int]:
    if not caller.is_root:
        raise OSError(errno.EPERM, name)  # checkpoint_restore_ns_capable()
    start, _, end = name.partition("-")
    try:
        lo, hi = int(start, 16), int(end, 16)
    except ValueError:
        raise OSError(errno.ENOENT, name) from None
    if f"{lo:x}-{hi:x}" != name:
        raise OSError(errno.ENOENT, name)  # dname_to_vma_addr(): no leading zeros
    for v in _file_vmas(parent.task):
        if v.start == lo and v.end == hi:
            perm = 0o400 | (0o200 if v.file.writable and v.flags & 0x8 else 0)
            return Node("link", MAP_FILE_LINK, parent.task, parent.thread_view, v.file.d_path(),
                        mode=S.S_IFLNK | perm, size=FD_LINK_SIZE, ptrace=True), BY_UID
    raise OSError(errno.ENOENT, name)


def _map_files_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return [f"{v.start:x}-{v.end:x}" for v in _file_vmas(parent.task)]


def _map_files_check(parent: Node, caller: Caller) -> None:
    if not _owner_ok(parent.task, caller):
        raise OSError(errno.EACCES, "map_files")


MAP_FILES_DIR = DynDir("map_files", mode=0o500, lookup=_map_files_lookup, readdir=_map_files_readdir,
                       permission=_map_files_check)


# -- exe, cwd, root ----------------------------------------------------------------------


def exe(ctx: Ctx) -> str:
    """mm->exe_file (get_task_exe_file): none for kernel threads and zombies."""
    tg = ctx.task.tg
    if tg.exe_file is None or tg.mm is None:
        raise OSError(errno.ENOENT, "exe")
    return tg.exe_file.d_path()


def cwd(ctx: Ctx) -> str:
    fs = ctx.task.fs
    if fs is None:
        raise OSError(errno.ENOENT, "cwd")
    return fs.pwd


def root(ctx: Ctx) -> str:
    fs = ctx.task.fs
    if fs is None:
        raise OSError(errno.ENOENT, "root")
    return fs.root


__all__ = ["FDINFO_DIR", "FD_DIR", "PseudoInode", "MAP_FILES_DIR", "cwd", "exe", "fdinfo", "root"]
