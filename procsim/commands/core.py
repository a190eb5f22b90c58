"""The command table's parts: a command (name, typed parameters, kernel
call, whether it only reads), the parameters many commands share, and the
parsing of a call's arguments."""

from __future__ import annotations

import errno
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from procsim.params import BOOL, INT, REQUIRED, SIZE, Param, ParamError, Type


class CommandError(Exception):
    def __init__(self, err: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = err
        self.msg = msg


@dataclass(frozen=True)
class Command:
    name: str
    call: Callable[..., Any]  # (kernel, **parsed parameters)
    params: tuple[Param, ...]
    doc: str
    # A query reads the kernel and changes nothing: it runs under the lock
    # alone and leaves `generation` (and so every render cache) as it was.
    # `setters`: the parameters that make a query a change when given
    # (hugepages nr=, oom_score_adj value=, thp's knobs).
    query: bool = False
    setters: tuple[str, ...] = ()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def is_query(self, parsed: dict[str, Any]) -> bool:
        """Whether this call of the command (its parsed parameters) only reads."""
        return self.query and all(parsed.get(n) is None for n in self.setters)


def cmd(name: str, call: Callable[..., Any], *params: Param, doc: str | None = None) -> Command:
    """A command that changes the world (it runs as a Kernel.syscall)."""
    return Command(name, call, params, doc or inspect.getdoc(call) or "")


def query(name: str, call: Callable[..., Any], *params: Param, doc: str | None = None,
          setters: tuple[str, ...] = ()) -> Command:
    """A command that only reads (unless one of `setters` is given)."""
    return Command(name, call, params, doc or inspect.getdoc(call) or "", query=True, setters=setters)


def p(name: str, type_: Type, default: Any = REQUIRED) -> Param:
    return Param(name, type_, default)


PID, TID = p("pid", INT), p("tid", INT)
FD, CLOEXEC, NONBLOCK = p("fd", INT), p("cloexec", BOOL, False), p("nonblock", BOOL, False)
ADDR, LENGTH = p("addr", SIZE), p("length", SIZE)


def _names(xs: list[str]) -> str:
    q = [repr(x) for x in xs]
    return q[0] if len(q) == 1 else f"{', '.join(q[:-1])} and {q[-1]}"


def parse_args(c: Command, args: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of `c`, parsed from `args` (defaults filled in);
    CommandError(EINVAL) naming the parameter that is unknown, missing or
    does not parse."""
    op = c.name
    known = {q.name for q in c.params}
    unknown = sorted(set(args) - known)
    if unknown:
        takes = ", ".join(q.name for q in c.params) or "no parameters"
        raise CommandError(errno.EINVAL, f"{op}: unknown parameter {_names(unknown)} (takes: {takes})")
    missing = [q.name for q in c.params if q.required and q.name not in args]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise CommandError(errno.EINVAL, f"{op}: missing parameter{s} {_names(missing)}")
    out = {}
    for q in c.params:
        try:
            out[q.name] = q.parse(args.get(q.name, q.default))
        except ParamError as e:
            raise CommandError(errno.EINVAL, f"{op}: {q.name}: {e}") from None
    return out
