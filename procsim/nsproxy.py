"""Namespaces (kernel/nsproxy.c, include/linux/proc_ns.h): the objects a
task's nsproxy points at, each known to /proc by its inode number
(`ns/net -> net:[4026531833]`). The initial namespaces have the fixed
numbers of proc_ns.h; new ones get proc_alloc_inum()'s, from 0xF0000000 up
(an ida per kernel: the same sequence on every run).

Each kind's state lives with its subsystem (the mount table with the mount
namespace in fs/, the cgroup root in cgroup.py); what small state a kind has
of its own is here: a pid namespace's numbering (kernel/pid_namespace.c), a
uts namespace's names, a user namespace's id maps, a time namespace's
offsets. This module is also the sharing: who points at which namespace,
and unshare()/clone()'s CLONE_NEW* (create_new_namespaces)."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from procsim.errors import KernelError
from procsim.utsname import UtsName

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import Task

KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
INIT_INO = {"ipc": 0xEFFFFFFF, "uts": 0xEFFFFFFE, "user": 0xEFFFFFFD, "pid": 0xEFFFFFFC,
            "cgroup": 0xEFFFFFFB, "time": 0xEFFFFFFA, "net": 0xEFFFFFF9, "mnt": 0xEFFFFFF8}
PROC_DYNAMIC_FIRST = 0xF0000000

# include/uapi/linux/sched.h
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_FLAG = {"CLONE_NEWNS": CLONE_NEWNS, "CLONE_NEWUTS": CLONE_NEWUTS, "CLONE_NEWIPC": CLONE_NEWIPC,
              "CLONE_NEWNET": CLONE_NEWNET, "CLONE_NEWPID": CLONE_NEWPID, "CLONE_NEWCGROUP": CLONE_NEWCGROUP,
              "CLONE_NEWTIME": CLONE_NEWTIME, "CLONE_NEWUSER": CLONE_NEWUSER}
# unshare(2) accepts these (and more we do not model, which are EINVAL here)
UNSHARE_FLAGS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP \
    | CLONE_NEWTIME | CLONE_NEWUSER
MAX_PID_NS_LEVEL = 32
CAP_SYS_ADMIN = 21
# an id map line: `first-inside first-outside count`, "%10u %10u %10u\n"
IdMap = tuple[tuple[int, int, int], ...]
IDENTITY_MAP: IdMap = ((0, 0, 4294967295),)


@dataclass(eq=False)
class Namespace:
    kind: str
    inum: int
    parent: "Namespace | None" = None  # pid and user namespaces nest
    level: int = 0
    # pid: the numbers given in this namespace (alloc_pid walks every level)
    last_pid: int = 0
    nrs: dict = field(default_factory=dict)  # global pid -> the number here
    uts: UtsName | None = None                # uts: nodename, domainname
    uid_map: IdMap = ()                       # user: empty until written
    gid_map: IdMap = ()
    setgroups: bool = True                    # user: "allow" / "deny"
    cgroup_root: str = "/"                    # cgroup: the cgroup it was made in
    # time: (secs, nsecs) of CLOCK_MONOTONIC and CLOCK_BOOTTIME; frozen once a task entered it
    time_offsets: tuple = ((0, 0), (0, 0))
    frozen: bool = False

    def alloc_nr(self, gpid: int) -> int:
        self.last_pid += 1
        self.nrs[gpid] = self.last_pid
        return self.last_pid


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
    time: "Namespace | None" = None  # a task's own time ns; None: time_for_children's (as at fork)

    def with_(self, **changes: Namespace) -> "Nsproxy":
        return replace(self, **changes)

    @property
    def time_ns(self) -> Namespace:
        return self.time if self.time is not None else self.time_for_children


def init_namespaces(uts: UtsName | None = None) -> dict[str, Namespace]:
    ns = {kind: Namespace(kind, INIT_INO[kind]) for kind in KINDS}
    ns["uts"].uts = uts
    ns["user"].uid_map = ns["user"].gid_map = IDENTITY_MAP
    return ns


def init_nsproxy(ns: dict[str, Namespace]) -> Nsproxy:
    return Nsproxy(ns["cgroup"], ns["ipc"], ns["mnt"], ns["net"], ns["pid"], ns["time"], ns["uts"])


def task_pid_ns(k: "Kernel", t: "Task") -> Namespace:
    """task_active_pid_ns(): the namespace the task's own pid was made in."""
    return t.pid_ns if t.pid_ns is not None else k.init_ns["pid"]


def ns_chain(k: "Kernel", ns: Namespace) -> list[Namespace]:
    """A pid namespace and its ancestors, outermost (init) first."""
    out = []
    n: Namespace | None = ns
    while n is not None:
        out.append(n)
        n = n.parent
    return out[::-1]


def pid_nrs(k: "Kernel", gpid: int, ns: Namespace) -> list[int]:
    """The numbers of global pid `gpid` at every level down to `ns`
    (status NSpid): 0 in a namespace that cannot see it, as pid_nr_ns()."""
    return [gpid if n.level == 0 else n.nrs.get(gpid, 0) for n in ns_chain(k, ns)]


def alloc_pid_nrs(k: "Kernel", gpid: int, ns: Namespace) -> None:
    """alloc_pid(): a number in `ns` and in each ancestor below init (the
    init level's number is the kernel's own pid)."""
    n: Namespace | None = ns
    while n is not None and n.level > 0:
        n.alloc_nr(gpid)
        n = n.parent


def free_pid_nrs(k: "Kernel", gpid: int, ns: Namespace | None) -> None:
    n = ns
    while n is not None and n.level > 0:
        n.nrs.pop(gpid, None)
        n = n.parent


def proc_alloc_inum(k: "Kernel") -> int:
    inum = k.ns_next_inum
    k.ns_next_inum += 1
    return inum


def user_ns(k: "Kernel", t: "Task") -> Namespace:
    u = t.tg.cred.user_ns
    return u if u is not None else k.init_ns["user"]


def create_new_namespaces(k: "Kernel", t: "Task", flags: int, capable: bool) -> tuple[Nsproxy, Namespace | None]:
    """unshare(2) of `flags` for `t` (checks first, then builds: nothing
    changes on error). Returns the new nsproxy and the new user ns (or None).
    EINVAL for flags outside UNSHARE_FLAGS; EPERM without CAP_SYS_ADMIN for
    anything but CLONE_NEWUSER (a new user ns gives its creator every
    capability inside it, so NEWUSER with others is allowed)."""
    if flags & ~UNSHARE_FLAGS or flags < 0:
        raise OSError(errno.EINVAL, f"unshare: unsupported flags {flags & ~UNSHARE_FLAGS:#x}")
    if flags & CLONE_NEWUSER:
        if len(t.tg.threads) > 1 and len(t.tg.live_threads) > 1:
            raise OSError(errno.EINVAL, "unshare(CLONE_NEWUSER) of a multithreaded process")
        if user_ns(k, t).level >= MAX_PID_NS_LEVEL:
            raise OSError(errno.EUSERS, "user namespaces nest 32 deep")
    elif flags and not capable:
        raise OSError(errno.EPERM, "unshare: needs CAP_SYS_ADMIN")
    if flags & CLONE_NEWNS and t.fs is None:
        raise OSError(errno.EINVAL, "unshare: no fs")
    cur = t.nsproxy
    if flags & CLONE_NEWPID and cur.pid_for_children.level >= MAX_PID_NS_LEVEL:
        raise OSError(errno.ENOSPC, "pid namespaces nest 32 deep")
    new_user = None
    if flags & CLONE_NEWUSER:
        parent = user_ns(k, t)
        new_user = Namespace("user", proc_alloc_inum(k), parent, parent.level + 1)
    ch: dict[str, Namespace] = {}
    # the kernel's order (create_new_namespaces): mnt, uts, ipc, pid, cgroup, net, time
    if flags & CLONE_NEWNS:
        ch["mnt"] = Namespace("mnt", proc_alloc_inum(k))
        k.copy_mnt_ns(cur.mnt, ch["mnt"])
    if flags & CLONE_NEWUTS:
        old = cur.uts.uts
        ch["uts"] = Namespace("uts", proc_alloc_inum(k), uts=UtsName(old.nodename, old.domainname))
    if flags & CLONE_NEWIPC:
        ch["ipc"] = Namespace("ipc", proc_alloc_inum(k))
    if flags & CLONE_NEWPID:
        p = cur.pid_for_children
        ch["pid_for_children"] = Namespace("pid", proc_alloc_inum(k), p, p.level + 1)
    if flags & CLONE_NEWCGROUP:
        ch["cgroup"] = Namespace("cgroup", proc_alloc_inum(k), cgroup_root=t.tg.cgroup)
    if flags & CLONE_NEWNET:
        ch["net"] = Namespace("net", proc_alloc_inum(k))
    if flags & CLONE_NEWTIME:
        # the task keeps its time ns; only its children enter the new one
        ch["time"] = cur.time_ns
        ch["time_for_children"] = Namespace("time", proc_alloc_inum(k))
    return cur.with_(**ch), new_user


def parse_flags(text: str) -> int:
    """"CLONE_NEWPID|CLONE_NEWNS" (or "pid|mnt", or a number) -> the flags."""
    text = text.strip()
    if not text:
        return 0
    try:
        return int(text, 0)
    except ValueError:
        pass
    short = {"mnt": "CLONE_NEWNS", "ns": "CLONE_NEWNS", "uts": "CLONE_NEWUTS", "ipc": "CLONE_NEWIPC",
             "net": "CLONE_NEWNET", "pid": "CLONE_NEWPID", "cgroup": "CLONE_NEWCGROUP", "time": "CLONE_NEWTIME",
             "user": "CLONE_NEWUSER"}
    out = 0
    for name in text.replace(",", "|").split("|"):
        name = name.strip()
        name = short.get(name.lower(), name.upper())
        if name not in CLONE_FLAG:
            raise ValueError(f"unknown clone flag {name!r}")
        out |= CLONE_FLAG[name]
    return out


class NsSyscalls:
    """unshare(2), the user namespace's map writes, the time namespace's
    offsets and copy_mnt_ns() as the Kernel's entry points
    (a Kernel mixin)."""

    def unshare(self: "Kernel", pid: int, flags: int) -> None:
        """unshare(2) by `pid` (a thread: its own nsproxy). CLONE_NEWPID and
        CLONE_NEWTIME change only what its children get."""
        with self.lock:
            t = self.task(pid)
            if t.tg.zombie or t.dead or t.nsproxy is None:
                raise KernelError(errno.ESRCH, f"{pid} has exited")
            capable = t.tg.cred.euid == 0
            try:
                new, user = create_new_namespaces(self, t, flags, capable)
            except OSError as e:
                raise KernelError(e.errno, str(e.strerror or e)) from None
            t.nsproxy = new
            if user is not None:
                # a new user ns: the creator's ids are unmapped (overflow ids
                # until uid_map is written) but it holds every capability there
                t.tg.cred = replace(t.tg.cred, user_ns=user)
            self._changed("ns", pid=pid)

    def set_id_map(self: "Kernel", pid: int, which: str, lines: tuple[tuple[int, int, int], ...]) -> None:
        """A write of /proc/PID/uid_map or gid_map (map_write): once, by a
        process with the right in the parent namespace; EPERM if written."""
        with self.lock:
            t = self.task(pid)
            ns = user_ns(self, t)
            if ns.parent is None or getattr(ns, which):
                raise KernelError(errno.EPERM, f"{which}: already set")
            if not lines or len(lines) > 340:
                raise KernelError(errno.EINVAL, f"{which}: 1 to 340 lines")
            for first, lower, count in lines:
                if count == 0 or first + count > 1 << 32 or lower + count > 1 << 32:
                    raise KernelError(errno.EINVAL, f"{which}: bad extent")
            if which == "gid_map" and ns.setgroups and t.tg.cred.euid != 0:
                raise KernelError(errno.EPERM, "gid_map: setgroups must be denied first")
            setattr(ns, which, tuple(lines))
            self._changed("ns", pid=pid)

    def set_setgroups(self: "Kernel", pid: int, allow: bool) -> None:
        """proc_setgroups_write(): deny only before gid_map is written, and
        never back to allow (EPERM)."""
        with self.lock:
            ns = user_ns(self, self.task(pid))
            if allow and not ns.setgroups or not allow and ns.gid_map:
                raise KernelError(errno.EPERM, "setgroups")
            if ns.setgroups != allow:
                ns.setgroups = allow
                self._changed("ns", pid=pid)

    def set_timens_offsets(self: "Kernel", pid: int, offsets: dict[int, tuple[int, int]], capable: bool = True) -> None:
        """proc_timens_set_offset() of pid's time_for_children: EACCES once a
        task is in it (or for the initial one), EPERM without CAP_SYS_TIME."""
        with self.lock:
            t = self.task(pid)
            ns = t.nsproxy.time_for_children
            if ns is self.init_ns["time"] or ns.frozen:
                raise KernelError(errno.EACCES, "timens_offsets: the namespace has tasks")
            if not capable:
                raise KernelError(errno.EPERM, "timens_offsets: needs CAP_SYS_TIME")
            new = list(ns.time_offsets)
            for i, v in offsets.items():
                new[i] = v
            ns.time_offsets = tuple(new)
            self._changed("ns", pid=pid)

    def copy_mnt_ns(self: "Kernel", old, new) -> None:
        """copy_mnt_ns(): the new namespace's table, a copy of the old's."""
        src = self.mnt_ns_table(old)
        top = max(m.mnt_id for tab in self.files.mnt_ns.values() for m in tab.mounts)
        self.files.mnt_ns[new] = src.copy(top + 1)
