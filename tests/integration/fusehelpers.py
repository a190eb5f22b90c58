"""Readers and expectations shared by the integration tests (imported as
`fusehelpers`; pytest puts this directory on sys.path)."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path

from mountd.pytest_plugin import Machine

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
PAGE = 4096


# -- readers -----------------------------------------------------------------------


def read(path: str | os.PathLike) -> str:
    with open(path) as f:
        return f.read()


def status(m: Machine, pid: int | str) -> dict[str, str]:
    """MNT/proc/PID/status as {label: value} (checking the `Key:\\tvalue` form)."""
    out = {}
    for line in read(f"{m.proc}/{pid}/status").splitlines():
        key, sep, val = line.partition(":\t")
        assert sep, f"status line without ':<TAB>': {line!r}"
        out[key] = val
    return out


def status_keys(m: Machine, pid: int | str) -> list[str]:
    return [line.split(":", 1)[0] for line in read(f"{m.proc}/{pid}/status").splitlines()]


def kb(v: str) -> int:
    """'   1234 kB' -> 1234."""
    n, unit = v.split()
    assert unit == "kB"
    return int(n)


def stat_fields(m: Machine, pid: int | str) -> list[str]:
    """MNT/proc/PID/stat split as the spec numbers it: [pid, comm, state, ...]
    (comm is found up to the last ')')."""
    s = read(f"{m.proc}/{pid}/stat")
    assert s.endswith("\n")
    head, _, rest = s.rstrip("\n").rpartition(")")
    pid_s, _, comm = head.partition(" (")
    return [pid_s, comm, *rest.split()]


def statm(m: Machine, pid: int | str) -> list[int]:
    return [int(x) for x in read(f"{m.proc}/{pid}/statm").split()]


MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)(?: +(.*))?$")


def maps(m: Machine, pid: int | str) -> list[tuple[int, int, str, str]]:
    """(start, end, perms, name) per line of MNT/proc/PID/maps."""
    out = []
    for line in read(f"{m.proc}/{pid}/maps").splitlines():
        mt = MAPS_RE.match(line)
        assert mt, f"bad maps line {line!r}"
        out.append((int(mt[1], 16), int(mt[2], 16), mt[3], mt[7] or ""))
    return out


def user_maps(rows: list[tuple[int, int, str, str]]) -> list[tuple[int, int, str, str]]:
    """maps without the x86 [vsyscall] gate line (it is not a VMA of the mm)."""
    return [r for r in rows if r[3] != "[vsyscall]"]


def user_name(uid: int, width: int | None = None) -> str:
    """The name procps prints for uid: the host's passwd name, else the number;
    names wider than `width` are cut to width-1 characters plus '+'."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
    if width is not None and len(name) > width:
        return name[: width - 1] + "+"
    return name


def model(m: Machine) -> dict[int, dict]:
    """The control client's process table, by pid."""
    return {p["pid"]: p for p in m.ctl.ps()}


def mask_hex(mask: int, nbits: int) -> str:
    """Spec §0.3 mask format, written out independently of procsim.bitmap."""
    chunks = []
    for lo in range(0, nbits, 32):
        chunks.append((mask >> lo) & 0xFFFFFFFF)
    top_bits = nbits % 32 or 32
    parts = [format(chunks[-1], "x").rjust((top_bits + 3) // 4, "0")]
    parts += [format(c, "08x") for c in reversed(chunks[:-1])]
    return ",".join(parts)


def mask_list(mask: int) -> str:
    """Spec §0.3 list format."""
    bits = [i for i in range(mask.bit_length()) if mask >> i & 1]
    runs: list[list[int]] = []
    for b in bits:
        if runs and runs[-1][1] == b - 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


@contextlib.contextmanager
def psutil_procfs(m: Machine) -> Iterator[Machine]:
    """psutil reading the machine's mount (psutil.PROCFS_PATH) meanwhile."""
    import psutil
    old = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = m.proc
    try:
        yield m
    finally:
        psutil.PROCFS_PATH = old


# a machine whose db process does file I/O at known rates (its workload's
# read_rate and write_rate), with limits of its own
IO_SCENARIO = """
[machine]
nr_cpus = 2
mem = "2G"

[[process]]
name = "db"
argv = ["/usr/bin/postgres", "-D", "/srv/db"]
uid = 999
limits = { nofile = [4096, 65536], core = "unlimited" }
maps = [{ name = "table", path = "/srv/db/table", size = "64M", prot = "r" }]

[[process.workloads]]
pattern = "uniform"
rate = 0
file = "/srv/db/table"
read_rate = "512K"
write_rate = "128K"
io_size = 4096
span = "32M"
"""
