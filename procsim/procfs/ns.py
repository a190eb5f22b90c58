"""/proc/PID/ns (fs/proc/namespaces.c) and the user namespace's files
(kernel/user_namespace.c: uid_map, gid_map, projid_map, setgroups) and the
time namespace's offsets (kernel/time/namespace.c: timens_offsets).

ns/ is mode 0511; its links are `kind:[inum]`, readable only with ptrace
read access (ns_get_link: EACCES otherwise), listed in ns_entries[] order.

Following one (stat, open) reaches the namespace's nsfs inode, whose st_ino
is the inum (what lsns and `pgrep --ns` compare). Linux jumps there
(nd_jump_link); through FUSE the kernel resolves the link's text as a name
in ns/ instead, so ns/ also looks up `kind:[inum]`, for each of the task's
own targets only (not listed, as it is not a name in Linux's ns/): a
regular 0444 file, owned by root, with the inum as its inode number and no
read (nsfs has no ->read: EINVAL)."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from procsim import nsproxy as N
from procsim.kernel import Kernel
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import BY_UID, DynDir, File, Link, Node


def _nsproxy(ctx: Ctx) -> N.Nsproxy:
    t = ctx.task
    if t.nsproxy is None or t.dead or t.tg.zombie:  # exit_task_namespaces()
        raise OSError(errno.ENOENT, "ns")
    return t.nsproxy


def _link(kind: str, get) -> Link:
    def target(ctx: Ctx) -> str:
        ns = get(ctx)
        return f"{ns.kind}:[{ns.inum}]"
    return Link(kind, target, ptrace=True)


def _pid_for_children(ctx: Ctx) -> N.Namespace:
    ns = _nsproxy(ctx).pid_for_children
    if ns.level > 0 and ns.last_pid == 0:
        raise OSError(errno.ENOENT, "pid_for_children")  # no child reaper yet
    return ns


_NS_LINKS = (
    _link("net", lambda c: _nsproxy(c).net),
    _link("uts", lambda c: _nsproxy(c).uts),
    _link("ipc", lambda c: _nsproxy(c).ipc),
    _link("pid", lambda c: (_nsproxy(c), N.task_pid_ns(c.kernel, c.task))[1]),
    _link("pid_for_children", _pid_for_children),
    _link("user", lambda c: (_nsproxy(c), N.user_ns(c.kernel, c.task))[1]),
    _link("mnt", lambda c: _nsproxy(c).mnt),
    _link("cgroup", lambda c: _nsproxy(c).cgroup),
    _link("time", lambda c: _nsproxy(c).time_ns),
    _link("time_for_children", lambda c: _nsproxy(c).time_for_children),
)


# fs/nsfs.c's ioctls (_IO(0xb7, n)) and the type each kind's NS_GET_NSTYPE gives
NS_GET_USERNS, NS_GET_PARENT, NS_GET_NSTYPE = 0xB701, 0xB702, 0xB703
_NSTYPE = {"mnt": N.CLONE_NEWNS, "uts": N.CLONE_NEWUTS, "ipc": N.CLONE_NEWIPC, "net": N.CLONE_NEWNET,
           "pid": N.CLONE_NEWPID, "cgroup": N.CLONE_NEWCGROUP, "time": N.CLONE_NEWTIME, "user": N.CLONE_NEWUSER}


def _ns_ioctl(kind: str, cmd: int) -> int:
    """ns_ioctl(): the type; the owning and parent namespaces are new fds
    in the caller, which a FUSE server cannot make: EPERM, Linux's answer
    when they are out of the caller's reach (lsns then leaves them out)."""
    if cmd == NS_GET_NSTYPE:
        return _NSTYPE[kind]
    if cmd in (NS_GET_USERNS, NS_GET_PARENT):
        if cmd == NS_GET_PARENT and kind not in ("pid", "user"):
            raise OSError(errno.EINVAL, "nsfs")
        raise OSError(errno.EPERM, "nsfs")
    raise OSError(errno.ENOTTY, "nsfs")


@dataclass(frozen=True, slots=True, eq=False)
class NsFile(File):
    """A namespace's nsfs inode, reached through an ns/ link: one per kind."""
    name: str
    mode: int = 0o444


NS_FILES = {kind: NsFile(kind, ioctl=lambda ctx, cmd, arg, uarg, kind=kind: _ns_ioctl(kind, cmd))
            for kind in _NSTYPE}


def _ns_target_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, int]:
    """`kind:[inum]`: the namespace one of the task's links points at (ns_get_link's ptrace check)."""
    kind, sep, rest = name.partition(":[")
    if not sep or not rest.endswith("]") or not rest[:-1].isdigit():
        raise OSError(errno.ENOENT, name)
    ctx = Ctx(kernel, caller, parent.task, parent.thread_view)
    for row in _NS_LINKS:
        try:
            if row.target(ctx) != name:
                continue
        except OSError:
            continue
        if not ctx.may_ptrace():
            raise OSError(errno.EACCES, name)
        return Node("file", NS_FILES[kind], None, parent.thread_view, ino=int(rest[:-1])), BY_UID
    raise OSError(errno.ENOENT, name)


NS_DIR = DynDir("ns", _NS_LINKS, mode=0o511, lookup=_ns_target_lookup, readdir=lambda parent, kernel: [])


# -- the user namespace's id maps -------------------------------------------------


def _map_id_up(ns: N.Namespace, which: str, id_: int) -> int:
    """map_id_up() into `ns`'s parent, up to the initial namespace (what a
    reader there sees as the lower ids)."""
    n = ns
    while n is not None and n.parent is not None:
        for first, lower, count in getattr(n, which):
            if first <= id_ < first + count:
                id_ = lower + id_ - first
                break
        else:
            return 4294967295
        n = n.parent
    return id_


def _id_map(which: str):
    def show(ctx: Ctx) -> bytes:
        ns = N.user_ns(ctx.kernel, ctx.task)
        extents = N.IDENTITY_MAP if which == "projid_map" and ns.parent is None else getattr(ns, which, ())
        out = []
        for first, lower, count in extents:
            if ns.parent is not None and ns.parent.parent is not None:
                lower = _map_id_up(ns.parent, which, lower)
            out.append(f"{first:>10} {lower:>10} {count:>10}\n")
        return "".join(out).encode()
    return show


def _id_map_write(which: str):
    def write(ctx: Ctx, data: bytes) -> int:
        lines = []
        try:
            for line in data.decode().splitlines():
                if line.strip():
                    a, b, c = (int(x) for x in line.split())
                    lines.append((a, b, c))
        except ValueError:
            raise OSError(errno.EINVAL, which) from None
        ctx.kernel.set_id_map(ctx.task.tgid, which, tuple(lines))
        return len(data)
    return write


uid_map, gid_map, projid_map = _id_map("uid_map"), _id_map("gid_map"), _id_map("projid_map")
uid_map_write, gid_map_write = _id_map_write("uid_map"), _id_map_write("gid_map")


def projid_map_write(ctx: Ctx, data: bytes) -> int:
    raise OSError(errno.EPERM, "projid_map")  # the initial maps are fixed; we model no project ids


def setgroups(ctx: Ctx) -> bytes:
    return b"allow\n" if N.user_ns(ctx.kernel, ctx.task).setgroups else b"deny\n"


def setgroups_write(ctx: Ctx, data: bytes) -> int:
    """proc_setgroups_write(): "allow" or "deny"; deny only before gid_map
    is written, and never back to allow (EPERM)."""
    word = data.decode(errors="replace").strip()
    if word not in ("allow", "deny"):
        raise OSError(errno.EINVAL, "setgroups")
    ctx.kernel.set_setgroups(ctx.task.tgid, word == "allow")
    return len(data)


# -- the time namespace -------------------------------------------------------


def timens_offsets(ctx: Ctx) -> bytes:
    """proc_timens_show_offsets(): the offsets of time_for_children."""
    ns = _nsproxy(ctx).time_for_children
    mono, boot = ns.time_offsets
    return (f"{'monotonic':<10} {mono[0]:>10} {mono[1]:>9}\n"
            f"{'boottime':<10} {boot[0]:>10} {boot[1]:>9}\n").encode()


def timens_offsets_write(ctx: Ctx, data: bytes) -> int:
    """proc_timens_set_offset(): `<clock> <secs> <nsecs>` lines (clock by
    name or number: 1 monotonic, 7 boottime); EACCES once a task is in the
    namespace, EPERM without CAP_SYS_TIME, EINVAL for a bad line."""
    _nsproxy(ctx)
    new: dict[int, tuple[int, int]] = {}
    try:
        for line in data.decode().splitlines():
            if not line.strip():
                continue
            clock, secs, nsecs = line.split()
            idx = {"monotonic": 0, "1": 0, "boottime": 1, "7": 1}[clock]
            s, n = int(secs), int(nsecs)
            if not 0 <= n < 1_000_000_000:
                raise ValueError
            new[idx] = (s, n)
    except (ValueError, KeyError):
        raise OSError(errno.EINVAL, "timens_offsets") from None
    ctx.kernel.set_timens_offsets(ctx.task.tgid, new, ctx.caller.capable(25))  # CAP_SYS_TIME
    return len(data)
