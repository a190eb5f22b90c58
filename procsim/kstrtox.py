"""lib/kstrtox.c: the kernel's integer parsing, as /proc's writes use it (and
strstrip(), which they call first).

kstrto*() take a whole string (one trailing newline allowed) and answer
EINVAL or ERANGE; _parse_integer() is the digit loop under them and under
the sysctl parser, which reads a number off the front of a buffer.
"""

from __future__ import annotations

import errno

# isspace() of the kernel's Latin-1 ctype table (lib/ctype.c): NBSP too
SPACE = b" \t\n\v\f\r\xa0"
ULLONG_MAX = (1 << 64) - 1
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
LLONG_MAX = (1 << 63) - 1


def strstrip(s: bytes) -> bytes:
    """lib/string.c strstrip(): the string without isspace() around it."""
    return s.strip(SPACE)


def parse_integer_fixup_radix(s: bytes, base: int) -> tuple[int, int]:
    """(base, prefix length): base 0 takes 0x.. as hex and 0.. as octal;
    base 16 skips a 0x prefix."""
    if base == 0:
        if s[:1] == b"0":
            if s[1:2] in (b"x", b"X") and _digit(s[2:3] or b"\xff") < 16:
                return 16, 2
            return 8, 0
        return 10, 0
    if base == 16 and s[:2] in (b"0x", b"0X"):
        return 16, 2
    return base, 0


def _digit(c: bytes) -> int:
    b = c[0]
    if 48 <= b <= 57:
        return b - 48
    if 97 <= (b | 0x20) <= 102:
        return (b | 0x20) - 87
    return 99


def parse_integer(s: bytes, base: int) -> tuple[int, int, bool]:
    """_parse_integer(): (value, digits used, overflowed past u64)."""
    value, n, overflow = 0, 0, False
    for i in range(len(s)):
        d = _digit(s[i:i + 1])
        if d >= base:
            break
        value = value * base + d
        if value > ULLONG_MAX:
            overflow = True
            value &= ULLONG_MAX
        n += 1
    return value, n, overflow


def _kstrtoull(s: bytes, base: int) -> int:
    base, skip = parse_integer_fixup_radix(s, base)
    s = s[skip:]
    value, n, overflow = parse_integer(s, base)
    if overflow:
        raise OSError(errno.ERANGE, "out of range")
    if not n:
        raise OSError(errno.EINVAL, "not a number")
    rest = s[n:]
    if rest[:1] == b"\n":
        rest = rest[1:]
    if rest:
        raise OSError(errno.EINVAL, "not a number")
    return value


def kstrtoull(s: bytes, base: int) -> int:
    """An unsigned long long: one optional '+' first."""
    return _kstrtoull(s[1:] if s[:1] == b"+" else s, base)


def kstrtoll(s: bytes, base: int) -> int:
    """A long long: '-' then digits (no second sign), or kstrtoull()."""
    if s[:1] == b"-":
        v = _kstrtoull(s[1:], base)
        if v > LLONG_MAX + 1:
            raise OSError(errno.ERANGE, "out of range")
        return -v
    v = kstrtoull(s, base)
    if v > LLONG_MAX:
        raise OSError(errno.ERANGE, "out of range")
    return v


def kstrtoint(s: bytes, base: int) -> int:
    """An int: kstrtoll() then ERANGE outside [INT_MIN, INT_MAX]."""
    v = kstrtoll(s, base)
    if not INT_MIN <= v <= INT_MAX:
        raise OSError(errno.ERANGE, "out of int range")
    return v
