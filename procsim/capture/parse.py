"""Parsers for the /proc files a capture reads. Each takes the text and
raises ValueError on a form it does not know (the caller warns and skips)."""

from __future__ import annotations

from dataclasses import dataclass, field


def parse_stat(text: str) -> dict[str, int | str]:
    """/proc/PID/stat: comm is between the first '(' and the last ')'."""
    lo, hi = text.index("("), text.rindex(")")
    rest = text[hi + 2:].split()
    if len(rest) < 40:
        raise ValueError(f"stat: {len(rest) + 2} fields, expected at least 42")
    num = [int(x) for x in rest[1:]]
    f = {i + 4: v for i, v in enumerate(num)}  # f[n]: field n of proc(5)
    return {"pid": int(text[:lo]), "comm": text[lo + 1:hi], "state": rest[0], "ppid": f[4], "pgrp": f[5],
            "session": f[6], "flags": f[9], "minflt": f[10], "cminflt": f[11], "majflt": f[12],
            "cmajflt": f[13], "rss": f[24], "utime": f[14], "stime": f[15],
            "cutime": f[16], "cstime": f[17], "priority": f[18], "nice": f[19], "num_threads": f[20],
            "starttime": f[22], "processor": f[39], "rt_priority": f[40], "policy": f[41],
            "mm": {"start_code": f[26], "end_code": f[27], "start_stack": f[28],
                   **{k: f[n] for n, k in ((45, "start_data"), (46, "end_data"), (48, "arg_start"),
                                           (49, "arg_end"), (50, "env_start"), (51, "env_end")) if n in f}}}


def parse_status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if not sep:
            raise ValueError(f"status: not a 'Key: value' line: {line!r}")
        out[key] = val.strip()
    return out


def status_ids(status: dict[str, str], key: str) -> list[int]:
    return [int(x) for x in status.get(key, "").split()]


# the rows of /proc/PID/limits, as prlimit(1) names them
LIMIT_NAMES = {"Max cpu time": "cpu", "Max file size": "fsize", "Max data size": "data",
               "Max stack size": "stack", "Max core file size": "core", "Max resident set": "rss",
               "Max processes": "nproc", "Max open files": "nofile", "Max locked memory": "memlock",
               "Max address space": "as", "Max file locks": "locks", "Max pending signals": "sigpending",
               "Max msgqueue size": "msgqueue", "Max nice priority": "nice", "Max realtime priority": "rtprio",
               "Max realtime timeout": "rttime"}


def parse_limits(text: str) -> dict[str, list[int | str]]:
    out: dict[str, list[int | str]] = {}
    for line in text.splitlines()[1:]:
        name = line[:26].strip()
        res = LIMIT_NAMES.get(name)
        if res is None:
            raise ValueError(f"limits: unknown row {name!r}")
        soft, hard = line[26:47].strip(), line[47:68].strip()
        out[res] = [v if v == "unlimited" else int(v) for v in (soft, hard)]
    return out


@dataclass
class Vma:
    """One smaps entry: its maps line and its counters (kB)."""
    line: str
    fields: dict[str, int] = field(default_factory=dict)
    vmflags: str = ""

    @property
    def start(self) -> int:
        return int(self.line.split("-", 1)[0], 16)


def parse_smaps(text: str) -> list[Vma]:
    vmas: list[Vma] = []
    for line in text.split("\n"):
        if not line:
            continue
        key, sep, val = line.partition(":")
        if sep and " " not in key and not key[0:1].isdigit() or (sep and key == "VmFlags"):
            if not vmas:
                raise ValueError(f"smaps: a field before any mapping: {line!r}")
            if key == "VmFlags":
                vmas[-1].vmflags = val.strip()
            else:
                words = val.split()
                vmas[-1].fields[key] = int(words[0]) if words else 0
        else:
            if "-" not in line.split(" ", 1)[0]:
                raise ValueError(f"smaps: not a mapping line: {line!r}")
            vmas.append(Vma(line))
    return vmas


def parse_fdinfo(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if sep and key not in out:
            out[key] = val.strip()
    return out


def parse_kv_kb(text: str) -> dict[str, int]:
    """meminfo-style 'Key:   123 kB' lines."""
    out = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        words = val.split()
        if sep and words:
            try:
                out[key] = int(words[0])
            except ValueError:
                continue
    return out


def socket_families(tables: dict[str, str | None]) -> dict[int, str]:
    """Socket inode -> scenario family, from /proc/net/{unix,tcp,...}."""
    fam = {"unix": "unix", "tcp": "inet", "udp": "inet", "raw": "inet", "tcp6": "inet6", "udp6": "inet6",
           "raw6": "inet6", "netlink": "netlink"}
    out: dict[int, str] = {}
    for name, text in tables.items():
        if not text:
            continue
        lines = text.splitlines()[1:]
        for line in lines:
            w = line.split()
            try:
                ino = int(w[6] if name == "unix" else w[9])
            except (IndexError, ValueError):
                continue
            out[ino] = fam[name]
    return out
