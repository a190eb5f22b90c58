"""`[[activity]]` and a process's `ops`: timed commands of the shared
vocabulary (procsim.commands), checked when the scenario loads, with names
resolved where pids and addresses go when they run."""

from __future__ import annotations

import difflib
import fnmatch
import logging
import math
import re
from typing import Any

from procsim.bitmap import iter_bits, parse_list
from procsim.commands import COMMANDS, CommandError, execute
from procsim.kernel import Kernel, KernelError
from procsim.params import INT, SIZE, ParamError
from procsim.scenario.names import ADDR_ARGS, PID_ARGS, Names
from procsim.scenario.schema import EVENT, ScenarioError, _fields, _is_int, _t_str
from procsim.units import NSEC

log = logging.getLogger("procsim.scenario")

QUERIES = {"ps", "vmas", "task", "cpus", "now", "advance", "clock", "workloads", "wss_truth"}
# What an `as` name binds: the result of these commands.
BINDS = {"spawn": "process", "fork": "process", "clone": "thread", "mmap": "map", "mremap": "map"}


def _seconds(ns: int) -> float:
    """The float s with int(s * NSEC) == ns (or just below), for Kernel.at."""
    s = ns / NSEC
    while int(s * NSEC) > ns:
        s = math.nextafter(s, -math.inf)
    while int(math.nextafter(s, math.inf) * NSEC) <= ns and int(s * NSEC) < ns:
        s = math.nextafter(s, math.inf)
    return s


def _params(op: str) -> tuple[list[str], list[str]]:
    """A command's argument names, and the required ones."""
    ps = COMMANDS[op].params
    return [p.name for p in ps], [p.name for p in ps if p.required]


class ActivityBuilder:
    """Activity and ops: a part of the scenario builder (builder.py's _Builder, which
    holds the kernel, the names and the boot history, and wraps errors: _call)."""

    k: Kernel
    names: Names
    dynamic: set[str]
    building: bool

    def _check(self, op: str, keys: set[str], where: str) -> tuple[list[str], str | None]:
        if op not in COMMANDS:
            close = difflib.get_close_matches(op, list(COMMANDS), 1, 0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ScenarioError(f"{where}: unknown op {op!r}{hint}")
        if op in QUERIES:
            raise ScenarioError(f"{where}: {op!r} only reads the world; activity changes it")
        params, required = _params(op)
        unknown = sorted(keys - set(params))
        if unknown:
            raise ScenarioError(f"{where}: {op} takes no argument {unknown[0]!r} (takes: {', '.join(params)})")
        missing = [p for p in required if p not in keys]
        if missing:
            raise ScenarioError(f"{where}: {op} needs {', '.join(repr(m) for m in missing)}")
        return params, BINDS.get(op)

    def _typecheck(self, op: str, args: dict, where: str) -> None:
        """Values of the wrong type are load errors, not events skipped later.
        Text for a pid or an address may be a name, resolved when it runs."""
        for key, v in args.items():
            p = COMMANDS[op].param(key)
            if isinstance(v, str) and p.type in (INT, SIZE):
                continue
            try:
                p.parse(v)
            except ParamError as e:
                raise ScenarioError(f"{where}: {key}: {e}") from None

    def _run(self, op: str, args: dict, bind: str | None, what: str | None) -> Any:
        """Resolve names, execute one command, name its result."""
        k = self.k
        args = self.names.resolve(k, args)
        result = execute(k, op, args)
        if bind:  # a spawned process starts with no named mappings; the others have an owner
            self.names.bind(what, bind, result, None if op == "spawn" else args.get("pid"), k)
        return result

    def _op(self, pid: int, d: Any, where: str) -> None:
        """A process's own setup command: pid/tid/parent default to it."""
        if not isinstance(d, dict) or not isinstance(d.get("op"), str):
            raise ScenarioError(f"{where}: expected a table with an op")
        args = {key: val for key, val in d.items() if key not in ("op", "as")}
        op = d["op"]
        where = f"{where} ({op})"
        if op in COMMANDS:
            for key in ("pid", "tid", "parent"):
                if key in _params(op)[0] and key not in args:
                    args[key] = pid
        _, what = self._check(op, set(args), where)
        if "as" in d:
            if what is None:
                raise ScenarioError(f"{where}: as: {op} returns nothing to name")
            _t_str(d["as"], f"{where}: as")
        if "cpu" in args:
            self._cpu(args["cpu"], f"{where}: cpu")
        self._call(where, self._run, op, args, d.get("as"), what)

    def _activity(self, d: Any, i: int, start: int) -> None:
        where = f"activity #{i + 1}"
        if not isinstance(d, dict):
            raise ScenarioError(f"{where}: expected a table")
        meta = _fields({key: val for key, val in d.items() if key in EVENT}, EVENT, where, ("at", "op"))
        op = meta["op"]
        where = f"activity #{i + 1} ({op})"
        args = {key: val for key, val in d.items() if key not in EVENT}
        cycle, rand = meta.get("cycle", {}), meta.get("random", {})
        for key, vals in list(cycle.items()) + list(rand.items()):
            if key in args:
                raise ScenarioError(f"{where}: {key!r} is given twice (fixed and in cycle/random)")
            if key in cycle and key in rand:
                raise ScenarioError(f"{where}: {key!r} is in both cycle and random")
        _, what = self._check(op, set(args) | set(cycle) | set(rand), where)
        self._typecheck(op, args, where)
        bind = meta.get("as")
        if bind is not None and what is None:
            raise ScenarioError(f"{where}: as: {op} returns nothing to name")
        if "count" in meta and "every" not in meta:
            raise ScenarioError(f"{where}: count needs every")
        if meta.get("every", 1) <= 0:
            raise ScenarioError(f"{where}: every must be positive")
        choices = {key: self._choices(vals, key, args, f"{where}: cycle" if key in cycle else f"{where}: random")
                   for key, vals in list(cycle.items()) + list(rand.items())}
        if "cpu" in args:
            self._cpu(args["cpu"], f"{where}: cpu")
        self._static_refs(args, where)
        n = [0]

        def fire() -> None:
            rep = n[0]
            n[0] += 1
            a = dict(args)
            try:
                for key, ch in choices.items():
                    vals = self._live(ch)
                    if not vals:
                        raise ScenarioError(f"{key}: nothing to choose from")
                    a[key] = vals[rep % len(vals)] if key in cycle else self.k.rng.choice(vals)
                self._run(op, a, bind, what)
            except (CommandError, ScenarioError, KernelError) as e:
                msg = f"{where}: {getattr(e, 'msg', None) or getattr(e, 'strerror', None) or e}"
                if self.building:
                    raise ScenarioError(msg) from None
                self.names.skipped += 1
                self.names.last_skip = f"at {self.k.now / NSEC:.3f} s: {msg}"
                log.info("skipped %s", self.names.last_skip)

        self.k.at(_seconds(start + round(meta["at"] * NSEC)), fire, meta.get("every"), meta.get("count"))

    def _choices(self, vals: Any, key: str, args: dict, where: str) -> list:
        """cycle/random values: a list, a cpu list string ("0-63"), or name globs."""
        if isinstance(vals, str) and re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", vals):
            if key == "cpu":
                return list(iter_bits(self._cpus(vals, f"{where}: {key}")))
            return list(iter_bits(parse_list(vals, 1 << 22)))
        if not isinstance(vals, list):
            vals = [vals]
        if not vals:
            raise ScenarioError(f"{where}: {key}: empty list")
        for x in vals:
            if key == "cpu":
                self._cpu(x, f"{where}: {key}")
            elif isinstance(x, str) and "*" in x:
                if not self.names.expand(x) and not self._dynamic(x):
                    raise ScenarioError(f"{where}: {key}: {x!r} matches nothing")
            else:
                self._static_refs({**args, key: x}, where)
        return vals

    def _live(self, vals: list) -> list:
        """Expand globs against the names as they are now, keeping live tasks."""
        out = []
        for x in vals:
            if isinstance(x, str) and "*" in x:
                for ref in self.names.expand(x):
                    try:
                        t = self.k.tasks.get(self.names.pid(ref))
                    except ScenarioError:
                        continue
                    if t is not None and not t.dead:
                        out.append(ref)
            else:
                out.append(x)
        return out

    def _dynamic(self, ref: str) -> bool:
        """Whether a name will only exist once activity binds it."""
        head = ref.split("+", 1)[0]
        parts = {head, head.split(":", 1)[0], head.rsplit(":", 1)[-1]}
        return any(fnmatch.fnmatchcase(dyn, p) or fnmatch.fnmatchcase(dyn.rsplit(":", 1)[-1], p)
                   for p in parts for dyn in self.dynamic)

    def _static_refs(self, args: dict, where: str) -> None:
        """Check at load time the names an activity uses, unless activity itself binds them."""
        for key in PID_ARGS + ("child",) + ADDR_ARGS:
            ref = args.get(key)
            if not isinstance(ref, str) or self._dynamic(ref):
                continue
            try:
                if key in ADDR_ARGS:
                    own = args.get("pid", args.get("tid"))
                    tgid = None
                    if isinstance(own, str) and not self._dynamic(own):
                        tgid = self.k.task(self.names.pid(own)).tgid
                    elif _is_int(own):
                        tgid = own
                    if tgid is None and ":" not in ref.split("+", 1)[0]:
                        try:
                            int(ref.split("+", 1)[0], 0)
                        except ValueError:
                            continue  # its process is bound at run time
                    self.names.addr(ref, tgid)
                else:
                    self.names.pid(ref)
            except (ScenarioError, KernelError) as e:
                raise ScenarioError(f"{where}: {key}: {getattr(e, 'strerror', None) or e}") from None
