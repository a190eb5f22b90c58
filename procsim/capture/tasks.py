"""Kernel threads, processes and their threads as scenario entries: ids,
names, command lines, credentials, scheduling, CPU times, the address
space (a `layout` and its `resident` pages), open files, limits, cgroup."""

from __future__ import annotations

import os

from procsim.arch.bugs import ctrls_from_status, modes_from_status
from procsim.capture.parse import (Vma, parse_fdinfo, parse_limits, parse_smaps, parse_stat, parse_status,
                                   socket_families, status_ids)
from procsim.capture.net import SockRow, parse_sockets, socket_keys
from procsim.capture.source import Source
from procsim.layout import LayoutError, parse_maps

PF_KTHREAD = 0x00200000
PF_FORKNOEXEC = 0x00000040
PF_SUPERPRIV = 0x00000100
USER_HZ = 100
TICK_NS = 1_000_000_000 // USER_HZ
POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle"}
STATES = {"R": "R", "S": "S", "D": "D", "T": "T", "t": "T", "Z": "Z", "I": "S", "W": "S", "P": "S"}
# fdinfo flags -> the names scenario_files takes (O_LARGEFILE is the kernel's own on 64-bit)
O_FLAGS = (("O_WRONLY", 0o1), ("O_RDWR", 0o2), ("O_APPEND", 0o2000), ("O_NONBLOCK", 0o4000),
           ("O_DSYNC", 0o10000), ("O_DIRECT", 0o40000), ("O_DIRECTORY", 0o200000), ("O_NOFOLLOW", 0o400000),
           ("O_NOATIME", 0o1000000), ("O_CLOEXEC", 0o2000000))
NS_KINDS = ("user", "mnt", "uts", "ipc", "pid", "net", "cgroup", "time")
O_SYNC_ONLY = 0o4000000
O_TMPFILE_BIT = 0o20000000
ANON_KINDS = {"anon_inode:[eventpoll]": "epoll", "anon_inode:[eventfd]": "eventfd",
              "anon_inode:[signalfd]": "signalfd", "anon_inode:[timerfd]": "timerfd",
              "anon_inode:inotify": "inotify"}


def flag_names(flags: int) -> str:
    if flags & O_TMPFILE_BIT:  # O_TMPFILE includes O_DIRECTORY; the file it made is a plain one
        flags &= ~0o200000
    names = [n for n, bit in O_FLAGS if flags & bit == bit and not (n == "O_DSYNC" and flags & O_SYNC_ONLY)]
    if flags & (O_SYNC_ONLY | 0o10000) == O_SYNC_ONLY | 0o10000:
        names.append("O_SYNC")
    return "|".join(names) or "O_RDONLY"


class TaskCapture:
    """Reads one /proc's tasks into scenario tables."""

    def __init__(self, src: Source, env: bool = False) -> None:
        self.src = src
        self.env = env
        self._families: dict[int, str] | None = None
        self._sockets: dict[int, SockRow] | None = None
        self.tables: dict[str, str | None] = {}
        self.bound: set[int] = set()
        self._ns: dict[int, dict[str, str]] = {}
        self.uids: dict[int, int] = {}        # pid -> captured euid (a clone needs a root parent)
        self._uid = 0
        self.local_addrs: set[str] = set()   # the machine's own addresses (capture_netdevs)
        self.init_ns: dict[str, str] = {}    # init's namespace links, to tell a process's own
        self.statuses = 0              # status files read, and how many had Cpus_active_mm
        self.cpus_active_mm = 0
        self.nr_cpus = 0                     # the machine's (capture_machine)
        self.rss_approx = False              # stat's rss is get_mm_rss() of a flat counter (capture())
        self.pgrps: dict[int, int] = {}      # pid -> its process group, for its children's
        self.spec_modes: tuple[str | None, str | None] | None = None  # the machine's, from the first status

    # -- one pid ------------------------------------------------------------------

    def stat(self, pid: int, tid: int | None = None) -> dict | None:
        rel = f"{pid}/stat" if tid is None else f"{pid}/task/{tid}/stat"
        text = self.src.read(rel)
        if text is None:
            return None
        try:
            return parse_stat(text)
        except ValueError as e:
            self.src.warn(f"{self.src.path(rel)}: unknown format ({e}), skipped")
            return None

    def status(self, rel: str, quiet: bool = False) -> dict[str, str] | None:
        text = self.src.read(rel, quiet=quiet)
        if text is None:
            return None
        try:
            status = parse_status(text)
            self.statuses += 1
            self.cpus_active_mm += "Cpus_active_mm" in status
            if self.spec_modes is None and "Speculation_Store_Bypass" in status:
                self.spec_modes = modes_from_status(status["Speculation_Store_Bypass"],
                                                    status.get("SpeculationIndirectBranch", ""))
            return status
        except ValueError as e:
            self.src.warn(f"{self.src.path(rel)}: unknown format ({e}), skipped")
            return None

    def kthread(self, st: dict) -> dict:
        status = self.status(f"{st['pid']}/status", quiet=True) or {}
        r = self._counters(st) | self._ctxt(status)
        if st["nice"]:
            r["nice"] = st["nice"]
        out = {"pid": st["pid"], "comm": self._comm(st["pid"], st["comm"]), "restore": r}
        cpus = status.get("Cpus_allowed_list", "")
        if cpus.isdigit() and st["pid"] != 2 and self.nr_cpus > 1:  # kthread_bind() to one CPU
            out["cpu"] = int(cpus)
        return out

    def _comm(self, pid: int, fallback: str, tid: int | None = None) -> str:
        rel = f"{pid}/comm" if tid is None else f"{pid}/task/{tid}/comm"
        text = self.src.read(rel, quiet=True)
        return text[:-1] if text and text.endswith("\n") else fallback

    @staticmethod
    def _counters(st: dict) -> dict:
        out = {"start": st["starttime"], "utime": st["utime"], "stime": st["stime"],
               "minflt": st["minflt"], "majflt": st["majflt"], "cpu": st["processor"]}
        if st["flags"] & PF_SUPERPRIV:  # it used a capability (ns_capable() marks it)
            out["superpriv"] = True
        return out

    def process(self, st: dict) -> dict:
        """A `[[process]]` table for a user process whose stat is `st`."""
        src, pid = self.src, st["pid"]
        p: dict = {"pid": pid}
        if pid != 1:
            p["parent"] = st["ppid"]
        raw = src.read_bytes(f"{pid}/cmdline")
        argv = raw.decode("utf-8", "surrogateescape").split("\0") if raw else []
        if argv and argv[-1] == "":
            argv.pop()
        exe = src.readlink(f"{pid}/exe", quiet=True)  # none for a zombie (or a fork, in a procsim mount)
        if exe is not None and exe.endswith(" (deleted)"):
            exe = exe[:-len(" (deleted)")]
        p["argv"] = argv or [exe or st["comm"]]
        if exe is not None and exe.startswith("/"):
            p["exe"] = exe
        p["comm"] = self._comm(pid, st["comm"])
        status = self.status(f"{pid}/status") or {}
        self._ids(p, status, st)
        if self.env:
            envb = src.read_bytes(f"{pid}/environ")
            if envb is not None:
                p["env"] = [e for e in envb.decode("utf-8", "surrogateescape").split("\0") if e]
        cg = src.read(f"{pid}/cgroup", quiet=True)
        if cg:
            v2 = [line[3:] for line in cg.splitlines() if line.startswith("0::")]
            if v2 and v2[0] != "/":
                p["cgroup"] = v2[0]
        limits = src.read(f"{pid}/limits")
        if limits is not None:
            try:
                p["limits"] = parse_limits(limits)
            except ValueError as e:
                src.warn(f"{src.path(f'{pid}/limits')}: unknown format ({e}), skipped")
        cwd = src.readlink(f"{pid}/cwd")
        if cwd is not None and cwd.startswith("/") and not cwd.endswith(" (deleted)"):
            p["cwd"] = cwd
        self._memory(p, pid)
        if "exe" not in p and "layout" in p:  # no exe link: the first file mapping is the executable
            first = next((ln.split(None, 5)[5] for ln in p["layout"].splitlines()
                          if len(ln.split(None, 5)) == 6 and ln.split(None, 5)[5].startswith("/")), None)
            if first is not None:
                p["exe"] = first.removesuffix(" (deleted)")
        self.uids[pid] = p.get("uid", 0)
        self._namespaces(p, pid, st["ppid"])
        self._uid = p.get("uid", 0)
        files = self._files(pid)
        if files is not None:
            p["inherit_fds"] = False
            p["files"] = files
        p["threads"] = self._threads(pid)
        p["restore"] = self._counters(st) | {"cutime": st["cutime"], "cstime": st["cstime"]}
        p["restore"] |= {key: st[key] for key in ("cminflt", "cmajflt") if st[key]}
        p["restore"] |= self._ctxt(status)
        if status.get("FDSize", "").isdigit() and int(status["FDSize"]) > 64:  # NR_OPEN_DEFAULT: the fork's
            p["restore"]["fdsize"] = int(status["FDSize"])
        if status.get("Umask", "0022") != "0022":
            try:
                p["restore"]["umask"] = int(status["Umask"], 8)
            except ValueError:
                pass
        sigq = status.get("SigQ", "").partition("/")[0]
        if sigq.isdigit() and int(sigq):  # the user's queued signals (ucounts), seen from this process
            p["restore"]["sigq"] = int(sigq)
        if st["flags"] & PF_FORKNOEXEC:
            p["restore"]["forknoexec"] = True
        mmf = st["mm"]
        if mmf.get("start_code", 0) > 1 and mmf.get("arg_start"):  # 0 or 1: stat hid them (no ptrace access)
            p["restore_mm"] = mmf
            if self.rss_approx:
                self._rss_approx(p, st)
            for key, name in (("VmPeak", "hiwater_vm"), ("VmHWM", "hiwater_rss"), ("VmPTE", "pgtables")):
                words = status.get(key, "").split()
                if words and words[0].isdigit():
                    p["restore_mm"][name] = int(words[0]) // 4  # kB -> pages
            mask = status.get("Cpus_active_mm", "").replace(",", "")
            if mask:
                try:
                    p["restore_mm"]["cpumask"] = int(mask, 16)
                except ValueError:
                    pass
        if pid == 1:  # init's credentials are the kernel's (root), its parent none
            for key in ("uid", "gid", "groups", "setsid"):
                p.pop(key, None)
        return p

    def ns_links(self, pid: int) -> dict[str, str]:
        """kind -> the ns link's text (`net:[4026531840]`), of those readable."""
        if pid not in self._ns:
            self._ns[pid] = {}
            for kind in NS_KINDS:
                link = self.src.readlink(f"{pid}/ns/{kind}", quiet=True)
                if link is not None:
                    self._ns[pid][kind] = link
        return self._ns[pid]

    def _namespaces(self, p: dict, pid: int, ppid: int) -> None:
        """`clone`: the namespaces a process has that its parent (or init,
        for an uncaptured parent) is not in, as clone(CLONE_NEW*) made them."""
        if pid == 1:
            return
        mine = self.ns_links(pid)
        theirs = (self.ns_links(ppid) if ppid > 1 else {}) or self.ns_links(1)
        own = [k for k in NS_KINDS if k in mine and k in theirs and mine[k] != theirs[k]]
        if not own:
            return
        if "user" not in own and self.uids.get(ppid, 0) != 0:
            self.src.warn(f"{self.src.path(f'{pid}/ns')}: namespaces {'|'.join(own)} of a non-root parent's "
                          f"child without a user namespace: not captured")
            return
        p["clone"] = "|".join(own)

    def _ids(self, p: dict, status: dict[str, str], st: dict) -> None:
        uid, gid = status_ids(status, "Uid"), status_ids(status, "Gid")
        if uid:
            p["uid"] = uid[1]
        if gid:
            p["gid"] = gid[1]
        if "Groups" in status:
            p["groups"] = status_ids(status, "Groups")
        if st["session"] == st["pid"] and st["pid"] != 1:
            p["setsid"] = True
        elif st["pid"] == 1 and st["pgrp"] == 0 and st["session"] == 0:
            p["pgid"] = 0  # a container's init: its session and group are led from outside its namespace
        elif st["pid"] != 1 and st["pgrp"] != self.pgrps.get(st["ppid"], 1):
            p["pgid"] = st["pgrp"]  # setpgid(): its own group, or another of its session (checked: capture())
        self.pgrps[st["pid"]] = st["pgrp"]
        self._sched(p, status, st)
        self._caps(p, status)
        state = STATES.get(st["state"])
        if state not in (None, "S"):
            p["state"] = state

    @staticmethod
    def _caps(p: dict, status: dict[str, str]) -> None:
        """The capability sets and seccomp state status shows (the leader's,
        for all threads), as scenario/caps.py takes them."""
        caps = {name: "0x" + status[key].lstrip("0").rjust(1, "0")
                for name, key in (("inheritable", "CapInh"), ("permitted", "CapPrm"), ("effective", "CapEff"),
                                  ("bounding", "CapBnd"), ("ambient", "CapAmb")) if key in status}
        if caps:
            p["caps"] = caps
        if status.get("NoNewPrivs") == "1":
            p["no_new_privs"] = True
        spec = ctrls_from_status(status.get("Speculation_Store_Bypass", ""), status.get("SpeculationIndirectBranch", ""))
        if spec:
            p["speculation"] = spec
        mode = status.get("Seccomp", "0")
        if mode in ("1", "2"):
            p["seccomp"] = int(mode)
            if status.get("Seccomp_filters", "").isdigit():
                p["seccomp_filters"] = int(status["Seccomp_filters"])

    @staticmethod
    def _sched(p: dict, status: dict[str, str], st: dict) -> None:
        p["nice"] = st["nice"]  # even 0: a child inherits its parent's
        if "Cpus_allowed_list" in status:
            p["cpus"] = status["Cpus_allowed_list"]
        if st["policy"]:
            p["policy"] = POLICIES.get(st["policy"], st["policy"])
            if st["rt_priority"]:
                p["rtprio"] = st["rt_priority"]

    @staticmethod
    def _ctxt(status: dict[str, str]) -> dict:
        out = {}
        for key, name in (("SigBlk", "sigblk"), ("SigIgn", "sigign"), ("SigCgt", "sigcgt")):
            try:
                if int(status.get(key, "0"), 16):
                    out[name] = int(status[key], 16)
            except ValueError:
                pass
        for key, name in (("voluntary_ctxt_switches", "nvcsw"), ("nonvoluntary_ctxt_switches", "nivcsw")):
            if status.get(key, "").isdigit():
                out[name] = int(status[key])
        return out

    def _threads(self, pid: int) -> list[dict]:
        out = []
        for name in sorted(self.src.listdir(f"{pid}/task", quiet=True), key=lambda n: int(n) if n.isdigit() else 0):
            if not name.isdigit() or int(name) == pid:
                continue
            tid = int(name)
            st = self.stat(pid, tid)
            if st is None:
                continue
            th: dict = {"tid": tid, "comm": self._comm(pid, st["comm"], tid), "stack": 0}
            status = self.status(f"{pid}/task/{tid}/status") or {}
            self._sched(th, status, st)
            th.pop("policy", None), th.pop("rtprio", None)
            state = STATES.get(st["state"])
            if state not in (None, "S", "Z"):
                th["state"] = state
            th["restore"] = self._counters(st) | self._ctxt(status)
            th["restore"].pop("sigign", None), th["restore"].pop("sigcgt", None)  # the process's
            out.append(th)
        return out

    def _rss_approx(self, p: dict, st: dict) -> None:
        """stat's rss against the resident pages smaps counted: what the
        source's flat percpu counters had not folded, if the CPUs can hold it."""
        if "layout" not in p or "resident" not in p:  # a default image: its pages are the model's
            return
        precise = sum(r["rss"] for r in p["resident"]) // 4
        batch = max(32, 2 * self.nr_cpus)
        if abs(st["rss"] - precise) <= (batch - 1) * max(1, self.nr_cpus):
            p["restore_mm"]["rss_approx"] = st["rss"]
        else:
            self.src.warn(f"{self.src.path(str(st['pid']))}: stat rss {st['rss']} is too far from smaps' "
                          f"{precise} pages for per-CPU residues (it moved): not restored")

    # -- the address space ------------------------------------------------------------

    def _memory(self, p: dict, pid: int) -> None:
        """The layout and resident pages from smaps; read again once if the
        text does not replay (a process changing its mappings while smaps
        is read in pieces), then left out with a warning."""
        for attempt in (1, 2):
            vmas = self._smaps(pid)
            layout = "".join(v.line + "\n" for v in vmas)
            try:
                if vmas:
                    parse_maps(layout)
                break
            except LayoutError as e:
                if attempt == 2:
                    self.src.warn(f"{self.src.path(f'{pid}/smaps')}: {e}: the process keeps a default image")
                    return
        self._resident(p, pid, vmas)

    def _smaps(self, pid: int) -> list[Vma]:
        text = self.src.read(f"{pid}/smaps")
        vmas: list[Vma] = []
        if text is not None:
            try:
                vmas = parse_smaps(text)
            except ValueError as e:
                self.src.warn(f"{self.src.path(f'{pid}/smaps')}: unknown format ({e}); using maps")
        if not vmas:
            maps = self.src.read(f"{pid}/maps", quiet=text is None) or ""
            vmas = [Vma(line) for line in maps.splitlines()]
        return vmas

    def _resident(self, p: dict, pid: int, vmas: list[Vma]) -> None:
        if not vmas:
            return
        p["layout"] = "".join(v.line + "\n" for v in vmas)
        resident = []
        for v in vmas:
            f = v.fields
            rss, swap = f.get("Rss", 0), f.get("Swap", 0)
            if v.line.endswith("[vdso]") and rss < f.get("Size", 1):  # exec maps it all in: say what is not
                resident.append({"addr": v.start, "rss": rss})
            if not (rss or swap) or v.line.endswith(("[vsyscall]", "[vvar]", "[vvar_vclock]", "[vdso]")):
                continue
            dirty = f.get("Private_Dirty", 0) + f.get("Shared_Dirty", 0)
            row = {"addr": v.start, "rss": rss}
            if dirty:
                row["dirty"] = dirty
            perms = v.line.split(None, 2)[1] if len(v.line.split(None, 2)) > 1 else ""
            named = len(v.line.split(None, 5)) == 6
            anon = f.get("Anonymous")
            if named and perms.endswith("p") and anon is not None and anon != dirty:
                row["anon"] = anon  # a private file mapping: its COW copies; the rest is the file's (shmem's) pages
            if swap:
                row["swap"] = swap
            if f.get("AnonHugePages"):
                row["anon_huge"] = f["AnonHugePages"]
            resident.append(row)
        if resident:
            p["resident"] = resident

    # -- open files ----------------------------------------------------------------------

    def families(self) -> dict[int, str]:
        if self._families is None:
            names = ("unix", "tcp", "tcp6", "udp", "udp6", "raw", "raw6", "netlink")
            tables = {n: self.src.read(f"net/{n}", quiet=True) for n in names}
            self.tables = tables  # one read for the families, the sockets' keys and the pairs (conn.py)
            self._families = socket_families(tables)
            self._sockets = parse_sockets(tables)
        return self._families

    def _protoname(self, pid: int, fd: int, ino: int) -> str:
        """The family of a socket no /proc/net table lists: sockfs's
        system.sockprotoname xattr says (TCPv6, UDP...); without it, inet
        (every unix and netlink socket is in its table, an unbound inet one
        is in none)."""
        try:
            name = os.getxattr(self.src.path(f"{pid}/fd/{fd}"), "system.sockprotoname").rstrip(b"\0").decode()
        except (OSError, UnicodeDecodeError):
            return "inet"
        if name.startswith("UNIX"):
            return "unix"
        if name == "NETLINK":
            return "netlink"
        return "inet6" if name.endswith("v6") else "inet"

    def sockets(self) -> dict[int, SockRow]:
        self.families()
        return self._sockets or {}

    def _files(self, pid: int) -> list[dict] | None:
        src = self.src
        names = src.listdir(f"{pid}/fd")
        if not names and not os.path.isdir(src.path(f"{pid}/fd")):
            return None
        out = []
        for fd in sorted(int(n) for n in names if n.isdigit()):
            target = src.readlink(f"{pid}/fd/{fd}")
            if target is None:
                continue
            info = parse_fdinfo(src.read(f"{pid}/fdinfo/{fd}", quiet=True) or "")
            try:
                flags = int(info.get("flags", "0"), 8)
            except ValueError:
                flags = 0
            entry = self._file(pid, fd, target, flags, info)
            if entry is not None:
                entry["fd"] = fd
                out.append(entry)
        return out

    def _file(self, pid: int, fd: int, target: str, flags: int, info: dict[str, str]) -> dict | None:
        cloexec = bool(flags & 0o2000000)
        nonblock = bool(flags & 0o4000)
        common: dict = {}
        if nonblock:
            common["nonblock"] = True
        if target.startswith("/memfd:"):
            name = target[len("/memfd:"):].removesuffix(" (deleted)")
            return {"kind": "memfd", "name": name, "cloexec": cloexec} | common
        if target.startswith("/"):
            e: dict = {"path": target.removesuffix(" (deleted)"), "flags": flag_names(flags & ~0o2000000 & ~0o4000)}
            if cloexec:
                e["cloexec"] = True
            e |= common
            pos = int(info.get("pos", "0") or 0)
            if pos:
                e["pos"] = pos
            if target.endswith(" (deleted)"):
                e["unlink"] = True
            return e
        if target.startswith("socket:["):
            ino = int(target[8:-1])
            e = {"kind": "socket", "family": self.families().get(ino) or self._protoname(pid, fd, ino),
                 "cloexec": cloexec}
            row = self.sockets().get(ino)
            if row is not None and ino not in self.bound:  # a socket held by several: made once
                self.bound.add(ino)
                keys = socket_keys(row, self.sockets(), self.local_addrs)
                port = keys.get("listen", keys.get("bind", ""))
                if self._uid and row.table != "unix" and port and 0 < int(port.rsplit(":", 1)[1]) < 1024:
                    self.src.warn(f"{self.src.path(f'{pid}/fd/{fd}')}: port {port} held by uid {self._uid} "
                                  f"(bound as root before a setuid): left unbound")
                    keys = {k: v for k, v in keys.items() if k == "type"}
                e |= keys
            return e | {"ino": ino} | common
        if target.startswith("pipe:["):
            return {"kind": "pipe", "end": "write" if flags & 0o3 else "read", "cloexec": cloexec,
                    "ino": int(target[6:-1])} | common
        kind = ANON_KINDS.get(target)
        if kind is None:
            self.src.warn(f"{self.src.path(f'{pid}/fd/{fd}')}: {target}: no model for it, skipped")
            return None
        e = {"kind": kind, "cloexec": cloexec} | common
        if kind == "signalfd" and "sigmask" in info:
            e["mask"] = int(info["sigmask"], 16)
        if kind == "eventfd" and "eventfd-count" in info:
            e["value"] = int(info["eventfd-count"], 16)
        return e
