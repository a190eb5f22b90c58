"""/proc/PID/clear_refs (spec §11): a write-only file taking one integer."""

from __future__ import annotations

import errno

from procsim.kstrtox import kstrtoint, strstrip
from procsim.procfs.context import Ctx

MAX_WRITE = 12  # the kernel copies at most this much of a write and reports it written


def write(ctx: Ctx, data: bytes) -> int:
    count = min(len(data), MAX_WRITE)
    # a C string: it ends at the first NUL; strstrip() drops isspace() around it
    text = strstrip(data[:count].split(b"\0", 1)[0])
    value = kstrtoint(text, 10)
    if not 1 <= value <= 5:
        raise OSError(errno.EINVAL, "clear_refs takes 1 to 5")
    k, t = ctx.kernel, ctx.task
    if k.tasks.get(t.pid) is not t:
        raise OSError(errno.ESRCH, "clear_refs")
    if not t.dead:  # get_task_mm(): an exited thread has none, nothing happens
        k.clear_refs(t.tgid, value)
    return count
