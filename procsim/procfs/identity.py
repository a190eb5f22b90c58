"""The audit ids (kernel/auditsc.c through fs/proc/base.c: loginuid,
sessionid) and the LSM attributes (attr/: proc_pid_attr_read).

LSM configuration: procsim models a kernel whose LSMs are capability,
landlock, lockdown, yama and bpf (no SELinux, AppArmor or Smack), as this
host's 6.18 is: none of those implements getprocattr, so reading or
writing attr/current (and the rest of attr/) is EINVAL, and attr/ has no
per-LSM subdirectories."""

from __future__ import annotations

import errno

from procsim.procfs.context import Ctx
from procsim.procfs.kinds import Dir, Show
from procsim.kstrtox import kstrtoull


def loginuid(ctx: Ctx) -> bytes:
    return str(ctx.task.loginuid).encode()  # "%u", no newline


def loginuid_write(ctx: Ctx, data: bytes) -> int:
    """proc_loginuid_write(): only a task itself may set its loginuid
    (EPERM for anyone else, root included); then audit_set_loginuid()."""
    if ctx.kernel.tasks.get(ctx.caller.pid) is not ctx.task:
        raise OSError(errno.EPERM, "loginuid: not the task itself")
    uid = kstrtoull(data, 10)  # kstrtouint(): EINVAL, or ERANGE past UINT_MAX
    if uid > 0xFFFFFFFF:
        raise OSError(errno.ERANGE, "loginuid")
    ctx.kernel.set_loginuid(ctx.task.pid, uid, capable=ctx.caller.capable(30))  # CAP_AUDIT_CONTROL
    return len(data)


def sessionid(ctx: Ctx) -> bytes:
    return str(ctx.task.sessionid).encode()


def _no_lsm(ctx: Ctx) -> bytes:
    raise OSError(errno.EINVAL, "attr")


def _no_lsm_write(ctx: Ctx, data: bytes) -> int:
    raise OSError(errno.EINVAL, "attr")


ATTR_DIR = Dir("attr", tuple(Show(n, _no_lsm, m, _no_lsm_write if m & 0o200 else None) for n, m in (
    ("current", 0o666), ("exec", 0o666), ("fscreate", 0o666), ("keycreate", 0o666), ("prev", 0o444),
    ("sockcreate", 0o666))))
