"""`[[process]]` and its threads: the fork, exec and clone calls that make
them, their credentials, affinity, nice, states and placement on CPUs."""

from __future__ import annotations

from typing import Any

from procsim import nsproxy, resource, sched_syscalls, scenario_files
from procsim.cgroup import syscalls as cgroup_syscalls
from procsim.commands import c_sched_setscheduler
from procsim.kernel import Kernel
from procsim.params import RLIM, ParamError
from procsim.scenario.memory import PAGE
from procsim.scenario.names import Names
from procsim.scenario.schema import NAME_RE, PROCESS, STATES, THREAD, ScenarioError, _fields, _is_int

THREAD_STACK = 8 << 20  # glibc's default pthread stack
GUARD = PAGE


class ProcessBuilder:
    """Processes and threads: a part of the scenario builder (builder.py's _Builder, which
    holds the kernel, the names and the boot history, and wraps errors: _call)."""

    k: Kernel
    names: Names
    workloads: list[tuple[int, Any, str]]

    def _process(self, d: Any, i: int, init: bool = False) -> None:
        label = f"#{i + 1}"
        if isinstance(d, dict):
            if isinstance(d.get("name"), str):
                label = repr(d["name"])
            elif isinstance(d.get("argv"), list) and d["argv"] and isinstance(d["argv"][0], str):
                label = repr(d["argv"][0].rsplit("/", 1)[-1])
        v = _fields(d, PROCESS, f"process {label}")
        count = v.get("count", 1)
        if count > 1 and "pid" in v:
            raise ScenarioError(f"process {label}: a fixed pid and count > 1 do not mix")
        for r in range(count):
            name = v.get("name")
            if name is not None and count > 1:
                name = f"{name}.{r + 1}"
            where = f"process {name!r}" if name else f"process {label}"
            if count > 1 and not name:
                where += f" #{r + 1}"
            vr = v
            if "count" in v and "argv" in v:
                vr = dict(v, argv=[_numbered(a, r) for a in v["argv"]])
            if r and "start" in v:  # the first replica starts then, the others after it
                vr = {key: val for key, val in vr.items() if key != "start"}
            self._one_process(vr, r, name, where, init)

    def _one_process(self, v: dict, r: int, name: str | None, where: str, init: bool) -> None:
        k, names = self.k, self.names
        if name is not None and name in names.explicit:
            raise ScenarioError(f"{where}: the name {name!r} is already taken")
        fork = v.get("fork", False)
        if init:
            for bad in ("parent", "fork", "uid", "gid", "groups", "count"):
                if bad in v:
                    raise ScenarioError(f"{where}: init (pid 1) takes no {bad!r}")
            argv = v.get("argv", ["/sbin/init"])
            self._enter(v, "init", where)
            pid = self._call(where, k.create_init, argv)
            if "exe" in v or "env" in v:
                self._call(where, k.exec, 1, v.get("exe", "/usr/lib/systemd/systemd"), argv,
                           v.get("env", ["HOME=/", "TERM=linux"]))
            names.add_process(name or "init", pid)
        else:
            parent = v.get("parent", 1)
            try:
                ppid = names.pid(parent)
            except ScenarioError:
                raise ScenarioError(f"{where}: parent {parent!r} is not a process defined above") from None
            if ppid not in k.tasks:
                raise ScenarioError(f"{where}: parent {parent!r}: no such pid")
            self._enter(v, "service" if ppid == 1 else "child", where, k.tasks[ppid].start_time)
            # None: the parent's (the documented default); gid follows an explicit uid
            uid = v.get("uid")
            gid = v.get("gid", uid)
            groups = v.get("groups", [])
            if not isinstance(groups, list) or not all(_is_int(g) for g in groups):
                raise ScenarioError(f"{where}: groups: expected a list of gids")
            flags = 0
            if "clone" in v:
                try:
                    flags = nsproxy.parse_flags(v["clone"])
                except ValueError as e:
                    raise ScenarioError(f"{where}: clone: {e}") from None
            if fork:
                for bad in ("exe", "env"):
                    if bad in v:
                        raise ScenarioError(f"{where}: {bad!r} needs an exec; a forked process keeps its parent's")
                pid = self._call(where, k.fork, ppid, v.get("pid"), flags)
                if "uid" in v or "gid" in v or groups:
                    pc = k.group(ppid).cred
                    self._call(where, k.set_cred, pid, pc.euid if uid is None else uid,
                               pc.egid if gid is None else gid, tuple(groups))
                if "argv" in v:
                    _setproctitle(k, pid, v["argv"])
                names.add_process(name, pid, k.task(pid).comm)
                names.maps[pid] = dict(names.maps.get(k.task(ppid).tgid, {}))
            else:
                if "argv" not in v:
                    raise ScenarioError(f"{where}: missing key 'argv' (or fork = true)")
                pid = self._call(where, k.spawn, v["argv"], parent=ppid, uid=uid, gid=gid,
                                 groups=tuple(groups), exe=v.get("exe"), env=v.get("env"), pid=v.get("pid"),
                                 clone_flags=flags)
                names.add_process(name, pid, k.task(pid).comm)
        self._captured(pid, v, where)  # captured.py: layout, comm, fds, resident pages
        if not init and v.get("setsid", False):
            self._call(where, sched_syscalls.setsid, k, pid)
        self._identity(pid, v, where, init)
        if "cpus" in v:
            self._call(where, k.set_affinity, pid, self._cpus(v["cpus"], f"{where}: cpus"))
        if "nice" in v:
            self._call(where, k.set_nice, pid, v["nice"])
        for res, lim in v.get("limits", {}).items():
            self._limit(pid, res, lim, f"{where}: limits.{res}")
        if "policy" in v:
            self._call(where, c_sched_setscheduler, k, pid, v["policy"], v.get("rtprio", 0))
        libs = v.get("libs", [])
        if not isinstance(libs, list):
            raise ScenarioError(f"{where}: libs: expected a list of paths or tables")
        for j, lib in enumerate(libs):
            self._lib(pid, lib, f"{where} lib #{j + 1}")
        placements = []
        nthread = 1
        for j, t in enumerate(v.get("threads", [])):
            tv = _fields(t, THREAD, f"{where} thread #{j + 1}")
            for rr in range(tv.get("count", 1)):
                nthread += 1
                tw = f"{where} thread {nthread}"
                self.history.enter(self.history.default_start("thread"))
                placements.append((self._thread(pid, tv, rr, tw), tv, rr, tw))
        # after the thread stacks: a stack's guard page then separates them from the maps
        for j, m in enumerate(v.get("maps", [])):
            self._map(pid, m, j, where)
        scenario_files.setup(self, pid, v, where)
        self._captured_inos(pid, v, where)  # captured.py: pipe and socket inode numbers
        for j, op in enumerate(v.get("ops", [])):
            self._op(pid, op, f"{where} ops #{j + 1}")
        for j, wl in enumerate(v.get("workloads", [])):
            self.workloads.append((pid, wl, f"{where} workload #{j + 1}"))
        self._place(pid, v, r, where, main=True)
        for tid, tv, rr, tw in placements:
            self._place(tid, tv, rr, tw)
        if v.get("state") == "Z":
            if k.task(pid).tg.parent is None or k.task(pid).tg.parent.tgid in (1, 2):
                raise ScenarioError(f"{where}: a zombie needs a parent that is not init (init reaps at once)")
            self._call(where, k.exit_group, pid, 0)
        for tid in [pid] + [tid for tid, *_ in placements]:
            if tid in k.tasks:
                self.history.started(tid)
        self._restore_later(pid, v, where, [(tid, tv["restore"]) for tid, tv, _, _ in placements if "restore" in tv])

    def _identity(self, pid: int, v: dict, where: str, init: bool) -> None:
        """Its cgroup (made as needed, as systemd does before the exec), its
        uts namespace's hostname, its audit login (pam_loginuid)."""
        k = self.k
        if init and "clone" in v:
            raise ScenarioError(f"{where}: init (pid 1) takes no 'clone'")
        if "cgroup" in v:
            self._call(where, cgroup_syscalls.attach, k, pid, v["cgroup"], True)
            ns = k.task(pid).nsproxy.cgroup
            if ns is not k.init_ns["cgroup"] and ns is not k.task(pid).tg.parent.leader.nsproxy.cgroup:
                # a runtime moves the process, then unshares the cgroup
                # namespace: the namespace is rooted at its cgroup
                ns.cgroup_root = k.task(pid).tg.cgroup
        if "hostname" in v:
            if k.task(pid).nsproxy.uts is k.init_ns["uts"]:
                raise ScenarioError(f"{where}: hostname needs its own uts namespace (clone = \"uts\")")
            self._call(where, k.sethostname, v["hostname"].encode(), pid)
        if "loginuid" in v:
            self._call(where, k.set_loginuid, pid, v["loginuid"])
        self._caps(pid, v, where)  # caps.py: capability sets, no_new_privs, seccomp

    def _thread(self, pid: int, tv: dict, r: int, where: str) -> int:
        k = self.k
        if "tid" in tv and tv.get("count", 1) > 1:
            raise ScenarioError(f"{where}: a fixed tid and count > 1 do not mix")
        comm = tv.get("comm")
        if comm is not None and "count" in tv:
            comm = _numbered(comm, r)
        tid = self._call(where, k.clone_thread, pid, comm, tv.get("tid"))
        tname = tv.get("name")
        if tname and tv.get("count", 1) > 1:
            tname = f"{tname}.{r + 1}"
        comm = k.task(tid).comm
        if not tname and NAME_RE.fullmatch(comm) and comm not in self.names.thread_names.get(pid, {}):
            tname = comm
        self.names.add_thread(pid, tid, tname)
        if "cpus" in tv:
            self._call(where, k.set_affinity, tid, self._cpus(tv["cpus"], f"{where}: cpus"))
        if "nice" in tv:
            self._call(where, k.set_nice, tid, tv["nice"])
        stack = tv.get("stack", THREAD_STACK)
        if stack:  # glibc's allocate_stack: PROT_NONE, then all but the guard made rw
            size = -(-stack // PAGE) * PAGE + GUARD
            base = self._exec(where, "mmap", pid=tid, length=size, prot="none")
            self._exec(where, "mprotect", pid=tid, addr=base + GUARD, length=size - GUARD, prot="rw")
            self._exec(where, "touch", pid=tid, addr=base + size - 2 * PAGE, length=2 * PAGE, write=True)
        return tid

    def _place(self, tid: int, v: dict, r: int, where: str, main: bool = False) -> None:
        k = self.k
        state = v.get("state")
        if state is not None and state not in STATES + (("Z",) if main else ()):
            allowed = ", ".join(STATES + (("Z",) if main else ()))
            raise ScenarioError(f"{where}: state: expected one of {allowed}, got {state!r}")
        cpu = v.get("run_on")
        if isinstance(cpu, list):  # one cpu per replica; replicas past the end are not placed
            cpu = cpu[r] if r < len(cpu) else None
        if cpu is not None:
            if state not in (None, "R"):
                raise ScenarioError(f"{where}: a task that runs on a cpu is in state R, not {state}")
            cpu = self._cpu(cpu, f"{where}: run_on")
            self.history.yield_cpu(cpu)  # a boot-history burst there ends
            curr = k.sched.cpus[cpu].curr
            if curr is not None and curr.pid != tid:
                raise ScenarioError(f"{where}: cpu {cpu} already runs pid {curr.pid} ({curr.comm}); "
                                    "a cpu runs one task")
            self._call(where, k.run, tid, cpu)
        elif state == "R":
            self._call(where, k.wake, tid)
        elif state in ("D", "T"):
            self._call(where, k.sleep, tid, state)


    def _limit(self, pid: int, res: str, lim: Any, where: str) -> None:
        """One of a process's `limits`: a value (soft and hard) or [soft,
        hard], set as the init system sets a unit's limits (privileged)."""
        try:
            idx = resource.resource_index(res)
            pair = lim if isinstance(lim, list) else [lim, lim]
            if len(pair) != 2:
                raise ParamError("a limit or [soft, hard]", lim)
            soft, hard = (RLIM.parse(x) for x in pair)
        except (ValueError, ParamError) as e:
            raise ScenarioError(f"{where}: {e}") from None
        self._call(where, self.k.prlimit, pid, idx, resource.Rlimit(soft, hard), True)


def _numbered(text: str, r: int) -> str:
    """Replica r of a counted entry: {n} counts from 1, {i} from 0."""
    return text.replace("{n}", str(r + 1)).replace("{i}", str(r))


def _setproctitle(k: Kernel, pid: int, argv: list[str]) -> None:
    """A forked process rewriting its own argv area, as setproctitle() does."""
    k.set_proctitle(pid, argv)

