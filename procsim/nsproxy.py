"""Namespaces (kernel/nsproxy.c, include/linux/proc_ns.h): the objects a
task's nsproxy points at, each known to /proc by its inode number
(`ns/net -> net:[4026531833]`). The initial namespaces have the fixed
numbers of proc_ns.h; new ones get proc_alloc_inum()'s, from 0xF0000000 up.

Each kind's state lives with its subsystem (the mount table with the mount
namespace, pids with the pid namespace); this module is the identity and the
sharing: who points at which namespace."""

from __future__ import annotations

from dataclasses import dataclass, replace

KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
INIT_INO = {"ipc": 0xEFFFFFFF, "uts": 0xEFFFFFFE, "user": 0xEFFFFFFD, "pid": 0xEFFFFFFC,
            "cgroup": 0xEFFFFFFB, "time": 0xEFFFFFFA, "net": 0xEFFFFFF9, "mnt": 0xEFFFFFF8}
PROC_DYNAMIC_FIRST = 0xF0000000


@dataclass(eq=False)
class Namespace:
    kind: str
    inum: int
    parent: "Namespace | None" = None  # pid and user namespaces nest


@dataclass(frozen=True, slots=True)
class Nsproxy:
    """What a task points at; shared by every task that did not unshare."""
    cgroup: Namespace
    ipc: Namespace
    mnt: Namespace
    net: Namespace
    pid_for_children: Namespace
    time_for_children: Namespace
    uts: Namespace

    def with_(self, **changes: Namespace) -> "Nsproxy":
        return replace(self, **changes)


def init_namespaces() -> dict[str, Namespace]:
    return {kind: Namespace(kind, INIT_INO[kind]) for kind in KINDS}


def init_nsproxy(ns: dict[str, Namespace]) -> Nsproxy:
    return Nsproxy(ns["cgroup"], ns["ipc"], ns["mnt"], ns["net"], ns["pid"], ns["time"], ns["uts"])
