"""A small TOML writer for scenarios: top-level tables, arrays of tables
and sub-arrays of tables (`[[process.threads]]`), inline tables on one
line, multi-line literal strings for maps texts."""

from __future__ import annotations

import re
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _str(k)


def _str(s: str) -> str:
    out = []
    for c in s:
        o = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7f or 0xdc80 <= o <= 0xdcff:
            # control characters, and bytes that were not UTF-8 (surrogateescape): as code points
            out.append(f"\\u{o & 0xff if 0xdc80 <= o <= 0xdcff else o:04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        if "\n" in v[:-1] and "'''" not in v and all(c == "\n" or c == "\t" or 0x20 <= ord(c) < 0x7f for c in v):
            return "'''\n" + v + "'''"  # a literal multi-line string: the first newline is dropped
        return _str(v)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise TypeError(f"no TOML for {v!r}")


def _table_body(d: dict, subtables: tuple[str, ...] = ()) -> list[str]:
    lines = []
    for k, v in d.items():
        if k in subtables:
            continue
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v) and len(v) > 1:
            lines.append(f"{_key(k)} = [")
            lines += [f"  {value(x)}," for x in v]
            lines.append("]")
        else:
            lines.append(f"{_key(k)} = {value(v)}")
    return lines


def dumps(doc: dict, header: str = "") -> str:
    out = [header.rstrip("\n")] if header else []
    for k, v in doc.items():
        if not isinstance(v, (dict, list)) or isinstance(v, list) and not all(isinstance(x, dict) for x in v):
            out.append(f"{_key(k)} = {value(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            out += ["", f"[{_key(k)}]"] + _table_body(v)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for entry in v:
                subs = tuple(sk for sk, sv in entry.items() if sk == "threads" and isinstance(sv, list) and sv)
                out += ["", f"[[{_key(k)}]]"] + _table_body(entry, subs)
                for sk in subs:
                    for sub in entry[sk]:
                        out += [f"[[{_key(k)}.{_key(sk)}]]"] + _table_body(sub)
    return "\n".join(out) + "\n"
