"""Commands of namespaces and audit identity (cgroups: commands/cgroup.py)."""

from __future__ import annotations

import errno

from procsim import nsproxy
from procsim.commands.core import PID, CommandError, cmd, p, query
from procsim.kernel import Kernel
from procsim.params import INT, STR


def _clone_flags(flags: str | None) -> int:
    if flags is None:
        return 0
    try:
        return nsproxy.parse_flags(flags)
    except ValueError as e:
        raise CommandError(errno.EINVAL, f"flags: {e}") from None


def c_unshare(k: Kernel, pid, flags) -> None:
    """unshare(2) by `pid`: `flags` "CLONE_NEWPID|CLONE_NEWNS" (or short
    names pid, mnt, uts, ipc, net, cgroup, time, user, or a number). EINVAL
    for an unknown flag, EPERM for anything but a user namespace without
    root (euid 0), ESRCH for an exited process. CLONE_NEWPID and
    CLONE_NEWTIME take effect for its children only."""
    k.unshare(pid, _clone_flags(flags))


def c_namespaces(k: Kernel, pid) -> dict:
    """`pid`'s namespaces: {kind: inode number}, and its pid at each level."""
    t = k.task(pid)
    if t.nsproxy is None:
        raise CommandError(errno.ESRCH, f"{pid} has exited")
    n = t.nsproxy
    out = {kind: getattr(n, kind).inum for kind in ("cgroup", "ipc", "mnt", "net", "uts")}
    out.update(pid=nsproxy.task_pid_ns(k, t).inum, pid_for_children=n.pid_for_children.inum,
               time=n.time_ns.inum, time_for_children=n.time_for_children.inum,
               user=nsproxy.user_ns(k, t).inum, nspid=nsproxy.pid_nrs(k, t.pid, nsproxy.task_pid_ns(k, t)))
    return out


COMMANDS = (
    cmd("unshare", c_unshare, PID, p("flags", STR)),
    cmd("sethostname", lambda k, name, pid: k.sethostname(name.encode(), pid), p("name", STR),
         p("pid", INT, None), doc="sethostname(2) in `pid`'s uts namespace (default: the initial one)."),
    cmd("login", lambda k, pid, uid: k.set_loginuid(pid, uid), PID, p("uid", INT),
         doc="audit_set_loginuid() (pam_loginuid): `pid`'s loginuid, and a new session id."),
    query("namespaces", c_namespaces, PID),
)
