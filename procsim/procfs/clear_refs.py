"""/proc/PID/clear_refs (spec §11): a write-only file taking one integer."""

from __future__ import annotations

import errno

from procsim.procfs.context import Ctx

MAX_WRITE = 12  # the kernel copies at most this much of a write and reports it written
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1


def parse_int(text: bytes) -> int:
    """kstrtoint(text, 10): an optional sign and decimal digits, nothing else;
    EINVAL for anything else, ERANGE outside int."""
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if not digits or not digits.isdigit():
        raise OSError(errno.EINVAL, "not a decimal integer")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise OSError(errno.ERANGE, "out of int range")
    return value


def write(ctx: Ctx, data: bytes) -> int:
    count = min(len(data), MAX_WRITE)
    # a C string: it ends at the first NUL; strstrip() drops isspace() around it
    text = data[:count].split(b"\0", 1)[0].strip(b" \t\n\v\f\r")
    value = parse_int(text)
    if not 1 <= value <= 5:
        raise OSError(errno.EINVAL, "clear_refs takes 1 to 5")
    k, t = ctx.kernel, ctx.task
    if k.tasks.get(t.pid) is not t:
        raise OSError(errno.ESRCH, "clear_refs")
    if not t.dead:  # get_task_mm(): an exited thread has none, nothing happens
        k.clear_refs(t.tgid, value)
    return count
