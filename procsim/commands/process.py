"""Commands of processes: spawn, fork, clone, exec, exit, kill, wait, credentials, rlimits."""

from __future__ import annotations

import errno
import inspect

from procsim import resource
from procsim.commands.core import PID, CommandError, cmd, p
from procsim.commands.ns import _clone_flags
from procsim.kernel import Kernel
from procsim.params import BOOL, INT, RLIM, STR, STR_MAP, STRS


def c_spawn(k: Kernel, argv, parent, uid, gid, pid, exe, env) -> int:
    """Start a process: fork `parent` and exec `argv` (`exe`: the program's
    path when it is not argv[0]); returns its pid. uid/gid default to the
    parent's."""
    return k.spawn(argv, parent=parent, uid=uid, gid=gid, pid=pid, exe=exe, env=env)


def c_exec(k: Kernel, pid, path, argv, env, layout, build_ids) -> None:
    """exec; `layout`: the text of a real /proc/PID/maps to replay exactly
    (procsim/layout.py), `build_ids`: {name: hex} for its files."""
    k.exec(pid, path, argv if argv is not None else [path], env, layout, build_ids)


def _rlim_json(v: int) -> int | str:
    return "unlimited" if v == resource.RLIM_INFINITY else v


def c_prlimit(k: Kernel, pid, resource_, soft, hard, privileged=False) -> dict:
    """prlimit(2) by process `pid` on itself: with `soft` and/or `hard` (a
    number or "unlimited"; the one not given keeps its value) set the limit
    `resource` (prlimit(1)'s names: nofile, as, data, memlock, nproc, ...),
    as the process may (a raised hard limit needs root; soft above hard is
    EINVAL); `privileged`: as root with CAP_SYS_RESOURCE does it (prlimit
    --pid by an administrator). Returns the limit as it is now and as it
    was; without `resource`, every limit."""
    tg = k.group(pid)
    if resource_ is None:
        if soft is not None or hard is not None:
            raise CommandError(errno.EINVAL, "prlimit: soft and hard need a resource")
        return {name: {"soft": _rlim_json(r.cur), "hard": _rlim_json(r.max)}
                for name, r in zip(resource.NAMES, tg.rlim)}
    try:
        res = resource.resource_index(resource_)
    except ValueError as e:
        raise CommandError(errno.EINVAL, f"prlimit: resource: {e}") from None
    old = tg.rlim[res]
    new = None
    if soft is not None or hard is not None:
        new = resource.Rlimit(old.cur if soft is None else soft, old.max if hard is None else hard)
    k.prlimit(pid, res, new, True if privileged else None)
    now = k.group(pid).rlim[res]
    return {"resource": resource_, "soft": _rlim_json(now.cur), "hard": _rlim_json(now.max),
            "old_soft": _rlim_json(old.cur), "old_hard": _rlim_json(old.max)}


COMMANDS = (
    cmd("spawn", c_spawn, p("argv", STRS), p("parent", INT, 1), p("uid", INT, None), p("gid", INT, None),
         p("pid", INT, None), p("exe", STR, None), p("env", STRS, None)),
    cmd("fork", lambda k, pid, child, flags: k.fork(pid, child, _clone_flags(flags)), PID, p("child", INT, None),
         p("flags", STR, None),
         doc="fork(): a copy of `pid` (COW), optionally with pid `child`; `flags`: clone()'s CLONE_NEW* for "
             "the child (as unshare's); returns the child's pid."),
    cmd("clone", lambda k, pid, comm, tid: k.clone_thread(pid, comm, tid), PID, p("comm", STR, None),
         p("tid", INT, None), doc="A new thread in `pid`'s group (CLONE_VM|CLONE_THREAD); returns its tid."),
    cmd("exec", c_exec, PID, p("path", STR), p("argv", STRS, None), p("env", STRS, None),
         p("layout", STR, None), p("build_ids", STR_MAP, None)),
    cmd("exit", lambda k, pid, code: k.exit(pid, code), PID, p("code", INT, 0),
         doc="exit() of one thread (the group exits with its last thread)."),
    cmd("exit_group", lambda k, pid, code: k.exit_group(pid, code), PID, p("code", INT, 0),
         doc="exit_group(): every thread of `pid`'s group."),
    cmd("kill", lambda k, pid, sig: k.kill(pid, sig), PID, p("sig", INT, 9),
         doc="Send signal `sig` (default SIGKILL) to a process."),
    cmd("wait", lambda k, pid, child: k.wait(pid, child), PID, p("child", INT, None),
         doc="wait(): `pid` reaps a zombie child (`child`, or any); returns its pid."),
    cmd("setuid", lambda k, pid, uid, gid: k.set_cred(pid, uid, uid if gid is None else gid), PID,
         p("uid", INT), p("gid", INT, None), doc="Set real, effective, saved and fs ids (gid defaults to uid)."),
    cmd("prlimit", lambda k, pid, resource, soft, hard, privileged: c_prlimit(k, pid, resource, soft, hard,
                                                                               privileged), PID,
         p("resource", STR, None), p("soft", RLIM, None), p("hard", RLIM, None), p("privileged", BOOL, False),
         doc=inspect.getdoc(c_prlimit)),
)
