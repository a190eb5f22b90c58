"""/proc/sys semantics: how an integer or string sysctl is read and written
(kernel/sysctl.c proc_dointvec_minmax and proc_dostring, sysctl_writes_strict
= 1).

The render functions give a sysctl's current text; these wrappers add what
the handler does with offsets and input, and call a kernel setter with a
value that passed the table's [min, max]. Checked on a 6.18 host: see
tests/integration/test_fuse_errors.py.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from procsim.kstrtox import INT_MAX, parse_integer, parse_integer_fixup_radix
from procsim.procfs.context import Ctx
from procsim.utsname import NEW_UTS_LEN
from procsim.units import PAGE_SIZE

TMPBUFLEN = 22       # proc_get_long's buffer: 21 digits is taken as too long
_WSPACE = b" \t\n"   # proc_wspace_sep


def _einval() -> OSError:
    return OSError(errno.EINVAL, "invalid argument")


def _strtoul(s: bytes) -> tuple[int, int]:
    """strtoul_lenient() with base 0 (0x hex, 0 octal): (value, bytes used);
    OverflowError past unsigned long."""
    base, skip = parse_integer_fixup_radix(s, 0)
    v, n, overflow = parse_integer(s[skip:], base)
    if overflow:
        raise OverflowError
    return v, skip + n


def parse_int(data: bytes) -> tuple[int, int]:
    """One integer as proc_dointvec writes it: (value, bytes consumed).

    Leading blanks are skipped; the number (optional '-', decimal, 0x hex or
    0 octal) must be followed by a blank or the end of the write, and blanks
    after it are consumed too; anything else is EINVAL. What follows the
    blanks is not consumed (write(2) then returns less than it was given).
    """
    left = data[: PAGE_SIZE - 1]
    n = len(left)
    p = len(left) - len(left.lstrip(_WSPACE))
    if p == n:
        raise _einval()  # nothing but blanks
    tmp = left[p : p + TMPBUFLEN - 1]
    neg = tmp[:1] == b"-" and n - p > 1
    q = 1 if neg else 0
    if not tmp[q : q + 1].isdigit():
        raise _einval()
    try:
        v, used = _strtoul(tmp[q:])
    except OverflowError:
        raise _einval() from None
    length = q + used
    if length == TMPBUFLEN - 1:
        raise _einval()
    p += length
    if p < n and left[p] not in _WSPACE:
        raise _einval()
    # do_proc_dointvec_conv: the value must fit an int
    if v > (INT_MAX + 1 if neg else INT_MAX):
        raise _einval()
    rest = left[p:]
    p += len(rest) - len(rest.lstrip(_WSPACE))
    return (-v if neg else v), len(data) - (n - p)


def dointvec_read(render: Callable[[Ctx], bytes]) -> Callable[[Ctx, int, int], bytes]:
    """A read of an integer sysctl: the whole value at offset 0, EOF at any
    other offset (the handler formats from the start and refuses *ppos > 0),
    so a reader taking one byte at a time gets only the first digit."""
    def pread(ctx: Ctx, size: int, offset: int) -> bytes:
        return render(ctx)[:size] if offset == 0 else b""
    return pread


def dointvec_minmax_write(lo: int, hi: int, store: Callable[[Ctx, int], None]
                          ) -> Callable[[Ctx, bytes, int], int]:
    """A write of an integer sysctl with the table's [lo, hi]: a bad number
    or one out of range is EINVAL and stores nothing; a write at an offset
    other than 0 is ignored whole (sysctl_writes_strict = 1)."""
    def pwrite(ctx: Ctx, data: bytes, offset: int) -> int:
        if offset != 0 or not data:
            return len(data)
        v, used = parse_int(data)
        if not lo <= v <= hi:
            raise _einval()
        store(ctx, v)
        return used
    return pwrite


# The tables' bounds (kernel/pid.c, kernel/fork.c).
RESERVED_PIDS = 300
PID_MAX_LIMIT = 4 << 20
MAX_THREADS = 0x3FFFFFFF  # FUTEX_TID_MASK

pid_max_write = dointvec_minmax_write(RESERVED_PIDS + 1, PID_MAX_LIMIT, lambda ctx, v: ctx.kernel.set_pid_max(v))
threads_max_write = dointvec_minmax_write(1, MAX_THREADS, lambda ctx, v: ctx.kernel.set_max_threads(v))
# fs/file_table.c, fs/file.c: file-max is an unsigned long sysctl; writes here
# take what an int holds. nr_open: [BITS_PER_LONG, INT_MAX rounded down to it]
file_max_write = dointvec_minmax_write(0, INT_MAX, lambda ctx, v: ctx.kernel.set_file_sysctl("max_files", v))
nr_open_write = dointvec_minmax_write(64, INT_MAX & -64, lambda ctx, v: ctx.kernel.set_file_sysctl("nr_open", v))


# -- strings (proc_dostring, as proc_do_uts_string uses it) ---------------------


def dostring_read(value: Callable[[Ctx], bytes]) -> Callable[[Ctx, int, int], bytes]:
    """A string sysctl read at any offset: the rest of the string from there
    and the newline, EOF past it (so a byte-at-a-time reader gets it all)."""
    def pread(ctx: Ctx, size: int, offset: int) -> bytes:
        data = value(ctx)
        return (data + b"\n")[offset:offset + size] if offset <= len(data) else b""
    return pread


def dostring_write(maxlen: int, value: Callable[[Ctx], bytes], store: Callable[[Ctx, bytes], None]
                   ) -> Callable[[Ctx, bytes, int], int]:
    """A string sysctl write (sysctl_writes_strict = 1): written at its offset
    into the current string, up to a NUL or newline, truncated silently at
    maxlen - 1 bytes; the whole write is taken. Past the string's end it is
    ignored."""
    def pwrite(ctx: Ctx, data: bytes, offset: int) -> int:
        if not data:
            return 0
        old = value(ctx)[:maxlen - 1]
        if offset > len(old):
            return len(data)
        text = data.split(b"\0", 1)[0].split(b"\n", 1)[0]
        store(ctx, (old[:offset] + text)[:maxlen - 1])
        return len(data)
    return pwrite


# kernel/utsname_sysctl.c: the uts strings (sizeof(new_utsname.nodename) = 65)
def _writer_pid(ctx: Ctx) -> int | None:
    """A simulated writer changes its own uts namespace's names."""
    return ctx.caller.pid if ctx.caller.pid in ctx.kernel.tasks else None


hostname_write = dostring_write(NEW_UTS_LEN + 1, lambda ctx: ctx.kernel.uts_of(ctx.kernel.tasks.get(ctx.caller.pid)).nodename,
                                lambda ctx, v: ctx.kernel.sethostname(v, _writer_pid(ctx)))
domainname_write = dostring_write(NEW_UTS_LEN + 1,
                                  lambda ctx: ctx.kernel.uts_of(ctx.kernel.tasks.get(ctx.caller.pid)).domainname,
                                  lambda ctx, v: ctx.kernel.setdomainname(v, _writer_pid(ctx)))
