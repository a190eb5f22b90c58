"""Command parameters: one strict parser per type.

Live control (JSON), `procsim ctl key=value` and scenario activity (TOML)
all hand the command table loosely typed values; each parameter's type
turns its value into what the kernel call takes, or refuses it. A value
that does not parse is refused before the kernel is touched (the command
layer answers EINVAL naming the parameter), never coerced: `"no"` is not a
true flag, `1.5` is not a pid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from procsim.fs.file import FLAG_NAMES
from procsim.mm.vma import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE

PROT_BITS = {"r": PROT_READ, "w": PROT_WRITE, "x": PROT_EXEC, "-": PROT_NONE}
SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ParamError(ValueError):
    """A value of the wrong type; the message says what was expected."""

    def __init__(self, expected: str, got: Any) -> None:
        super().__init__(f"expected {expected}, got {got!r}")


@dataclass(frozen=True)
class Type:
    name: str                     # what the docs and errors call it
    parse: Callable[[Any], Any]   # raises ParamError
    annotation: Any               # the Python type a client passes


def _integer(v: Any) -> int:
    """An integer, or its text in C's bases ("4096", "0x1000", "-1")."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            return int(v.strip(), 0)
        except ValueError:
            pass
    raise ParamError("an integer", v)


def _size(v: Any) -> int:
    """Bytes: an integer, or text with a binary unit ("2M", "1.5G", "64KiB")."""
    if isinstance(v, str):
        s = v.strip().lower().removesuffix("ib").removesuffix("b")
        if s and s[-1] in SIZE_UNITS:
            try:
                n = float(s[:-1])
            except ValueError:
                raise ParamError('a size in bytes ("4096", "2M")', v) from None
            if math.isfinite(n):
                return int(n * SIZE_UNITS[s[-1]])
    try:
        return _integer(v)
    except ParamError:
        raise ParamError('a size in bytes ("4096", "2M")', v) from None


def _boolean(v: Any) -> bool:
    """A flag: true/false (JSON, TOML) or 0/1, nothing else truthy."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise ParamError("true or false", v)


def _prot(v: Any) -> int:
    """PROT_* bits: letters ("rw", "r-x", "none") or the number."""
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 7:
        return v
    if isinstance(v, str):
        if v in ("none", ""):
            return 0
        if all(c in PROT_BITS for c in v):
            return sum(PROT_BITS[c] for c in set(v))
    raise ParamError("'rwx' letters or 0-7", v)


def _open_flags(v: Any) -> int:
    """open(2) flags: names joined by | or , ("O_WRONLY|O_APPEND|O_CLOEXEC",
    the O_ optional), a list of names, or the number."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    names = v.replace(",", "|").split("|") if isinstance(v, str) else v
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        flags = 0
        for n in names:
            n = n.strip().upper()
            n = n if n.startswith("O_") else "O_" + n
            if n not in FLAG_NAMES:
                break
            flags |= FLAG_NAMES[n]
        else:
            return flags
    raise ParamError('open flags ("O_RDONLY", "O_WRONLY|O_APPEND|O_CLOEXEC")', v)


def _string(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise ParamError("a string", v)


def _strings(v: Any) -> list[str]:
    """A list of strings, or one string split at white space."""
    if isinstance(v, str):
        return v.split()
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    raise ParamError("a list of strings", v)


def _str_map(v: Any) -> dict[str, str]:
    if isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
        return v
    raise ParamError("an object of strings", v)


def _cpulist(v: Any) -> str:
    """A cpulist ("0-3,8") or a list of CPU numbers; the kernel checks the CPUs."""
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return ",".join(map(str, v))
    raise ParamError('a cpulist ("0-3,8") or a list of CPU numbers', v)


def _seconds(v: Any) -> float:
    """Seconds: a finite, non-negative number (or its text)."""
    if not isinstance(v, bool) and isinstance(v, (int, float, str)):
        try:
            s = float(v)
        except ValueError:
            s = math.nan
        if math.isfinite(s) and s >= 0:
            return s
    raise ParamError("seconds (a number >= 0)", v)


def _kilobytes(v: Any) -> int:
    """kB: an integer (or its text) counts kB; text with a unit is bytes ("64k")."""
    if isinstance(v, str) and not v.strip().isdigit():
        return _size(v) // 1024
    try:
        return _integer(v)
    except ParamError:
        raise ParamError('kB ("64") or a size ("64k")', v) from None


def _raw(v: Any) -> Any:
    """Checked by the subsystem that takes it (workload specs, THP modes)."""
    return v


INT = Type("integer", _integer, int)
SIZE = Type("size", _size, int | str)
BOOL = Type("boolean", _boolean, bool)
PROT = Type("prot", _prot, str | int)
STR = Type("string", _string, str)
STRS = Type("strings", _strings, list[str] | str)
STR_MAP = Type("string map", _str_map, dict[str, str])
CPULIST = Type("cpulist", _cpulist, str | list[int])
KB = Type("kB", _kilobytes, int | str)
SECONDS = Type("seconds", _seconds, float)
RAW = Type("value", _raw, Any)
OPEN_FLAGS = Type("open flags", _open_flags, str | int | list[str])

REQUIRED: Any = object()  # a parameter without a default


@dataclass(frozen=True)
class Param:
    name: str
    type: Type
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def parse(self, v: Any) -> Any:
        """The parsed value; None stands for "not given" where the default is None."""
        if v is None and self.default is None:
            return None
        return self.type.parse(v)
