"""/proc/PID/io and /proc/PID/task/TID/io (fs/proc/base.c do_io_accounting):
the task's I/O counters (procsim/ioac.py), the whole thread group's for
/proc/PID/io. Mode 0400, and each read checks PTRACE_MODE_READ_FSCREDS
(EACCES): a reader the mode lets open (root without CAP_SYS_PTRACE) may
still be refused."""

from __future__ import annotations

import errno

from procsim.ioac import group_ioac
from procsim.procfs.context import Ctx, ptrace_may_read


def proc_io(ctx: Ctx) -> bytes:
    if not ptrace_may_read(ctx):
        raise OSError(errno.EACCES, "io")
    a = ctx.task.ioac if ctx.thread_view else group_ioac(ctx.task.tg)
    return (f"rchar: {a.rchar}\nwchar: {a.wchar}\nsyscr: {a.syscr}\nsyscw: {a.syscw}\n"
            f"read_bytes: {a.read_bytes}\nwrite_bytes: {a.write_bytes}\n"
            f"cancelled_write_bytes: {a.cancelled_write_bytes}\n").encode()
