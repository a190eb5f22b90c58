"""Scenarios: a TOML description of a machine, turned into a Kernel.

The builder only translates: `[machine]` becomes a KernelConfig, every
process, thread and mapping becomes the syscalls that would have made it
(fork, exec, clone, mmap, mprotect, touch, run, ...), and `[[activity]]`
becomes timed commands of the shared vocabulary (procsim.commands), with
names resolved where pids and addresses go. The format is documented in
docs/scenario-format.md.

Everything is deterministic for a given seed: the only randomness is the
kernel's own `rng`, and TOML tables keep their file order.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import math
import re
import tomllib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from procsim.bitmap import iter_bits, parse_list
from procsim import sched_syscalls, scenario_files
from procsim.commands import COMMANDS, CommandError, c_sched_setscheduler, execute
from procsim.params import INT, SIZE, ParamError
from procsim.config import KernelConfig
from procsim.history import BootHistory
from procsim.kernel import Kernel, KernelError
from procsim.mm.page_alloc import OutOfMemory
from procsim.mm.mm import MMError
from procsim.units import NSEC, PAGE_SIZE

log = logging.getLogger(__name__)

PAGE = PAGE_SIZE
THREAD_STACK = 8 << 20  # glibc's default pthread stack
GUARD = PAGE
QUERIES = {"ps", "vmas", "task", "cpus", "now", "advance", "clock", "workloads", "wss_truth"}
# What an `as` name binds: the result of these commands.
BINDS = {"spawn": "process", "fork": "process", "clone": "thread", "mmap": "map", "mremap": "map"}
PID_ARGS = ("pid", "tid", "parent")
ADDR_ARGS = ("addr", "new_addr")
NAME_RE = re.compile(r"[\w.@/-]+")
_REGISTRY: "weakref.WeakKeyDictionary[Kernel, Names]" = weakref.WeakKeyDictionary()


class ScenarioError(ValueError):
    """A scenario that cannot be built; the message names the place."""


# -- values -------------------------------------------------------------------

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.I)


def parse_size(v: Any, what: str = "size") -> int:
    """Bytes from an integer, "0x1000", or a number with a binary unit ("16G", "1.5M", "4KiB")."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    if isinstance(v, str):
        s = v.strip()
        if s.lower().startswith("0x"):
            try:
                return int(s, 16)
            except ValueError:
                pass
        m = _SIZE_RE.fullmatch(s)
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ScenarioError(f"{what}: bad size {v!r} (bytes, or a number with K, M, G or T)")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _t_str(v, what):
    if not isinstance(v, str):
        raise ScenarioError(f"{what}: expected a string, got {v!r}")
    return v


def _t_int(v, what):
    if not _is_int(v):
        raise ScenarioError(f"{what}: expected an integer, got {v!r}")
    return v


def _t_num(v, what):
    if not (_is_int(v) or isinstance(v, float)) or v < 0 or not math.isfinite(v):
        raise ScenarioError(f"{what}: expected a non-negative number of seconds, got {v!r}")
    return float(v)


def _t_bool(v, what):
    if not isinstance(v, bool):
        raise ScenarioError(f"{what}: expected true or false, got {v!r}")
    return v


def _t_strs(v, what):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ScenarioError(f"{what}: expected a list of strings, got {v!r}")
    return list(v)


def _t_env(v, what):
    if isinstance(v, dict):
        return [f"{k}={_t_str(x, f'{what}.{k}')}" for k, x in v.items()]
    return _t_strs(v, what)


def _t_any(v, what):
    return v


def _t_table(v, what):
    if not isinstance(v, dict):
        raise ScenarioError(f"{what}: expected a table, got {v!r}")
    return v


def _t_tables(v, what):
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ScenarioError(f"{what}: expected a list of tables, got {v!r}")
    return v


def _t_prot(v, what):
    if _is_int(v) and 0 <= v <= 7:
        return v
    if isinstance(v, str):
        if v in ("none", "---", ""):
            return 0
        if all(c in "rwx-" for c in v):
            return (1 if "r" in v else 0) | (2 if "w" in v else 0) | (4 if "x" in v else 0)
    raise ScenarioError(f"{what}: expected 'rwx' letters, 'none' or 0-7, got {v!r}")


def _t_name(v, what):
    if not isinstance(v, str) or not NAME_RE.fullmatch(v):
        raise ScenarioError(f"{what}: a name is letters, digits and . _ - @ /, got {v!r}")
    return v


def _t_count(v, what):
    if not _is_int(v) or v < 1:
        raise ScenarioError(f"{what}: expected a positive integer, got {v!r}")
    return v


def _t_size(v, what):
    return parse_size(v, what)


def _t_pid(v, what):
    if not _is_int(v) or v < 1:
        raise ScenarioError(f"{what}: expected a positive integer, got {v!r}")
    return v


def _fields(d: Any, schema: dict[str, Callable], where: str, required: tuple[str, ...] = ()) -> dict:
    """Check a table against a schema: known keys, right types; returns converted values."""
    if not isinstance(d, dict):
        raise ScenarioError(f"{where}: expected a table, got {d!r}")
    out = {}
    for key, v in d.items():
        conv = schema.get(key)
        if conv is None:
            close = difflib.get_close_matches(key, list(schema), 1, 0.75)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(sorted(schema))
            raise ScenarioError(f"{where}: unknown key {key!r} ({hint})")
        out[key] = conv(v, f"{where}: {key}")
    for key in required:
        if key not in out:
            raise ScenarioError(f"{where}: missing key {key!r}")
    return out


# -- schemas --------------------------------------------------------------------

TOP = {"description": _t_str, "machine": _t_table, "process": _t_tables, "kthread": _t_tables,
       "activity": _t_tables}
# scenario key -> KernelConfig field
MACHINE = {"arch": ("arch", _t_str), "nr_cpus": ("nr_cpus", _t_int), "mem": ("mem_bytes", _t_size),
           "swap": ("swap_bytes", _t_size), "hz": ("hz", _t_int), "cpumask_model": ("cpumask_model", _t_str),
           "proc_cpus_active_mm": ("proc_cpus_active_mm", _t_bool), "clock": ("clock", _t_str),
           "seed": ("seed", _t_int), "hostname": ("hostname", _t_str), "osrelease": ("osrelease", _t_str),
           "pid_max": ("pid_max", _t_int), "btime": ("btime", _t_int), "boot_uptime": ("boot_uptime", _t_num),
           "kernel_reserved": ("kernel_reserved_bytes", _t_size), "model_name": ("model_name", _t_str),
           "cpu_mhz": ("cpu_mhz", _t_num), "hugepages": ("hugepages", _t_int)}
# the CPU model (procsim/cpu.py) and the kernel's build banner
MACHINE.update({"cpu": ("cpu", _t_str), "version": ("version", _t_str)})
# the memory-accounting knobs: mapcount model, THP policy, soft-dirty, pkeys
MACHINE.update({"mapcount_model": ("mapcount_model", _t_str), "thp_enabled": ("thp_enabled", _t_str),
                "thp_sizes": ("thp_sizes", _t_table), "mem_soft_dirty": ("mem_soft_dirty", _t_bool),
                "pkeys": ("pkeys", _t_bool)})
# RSS counters and the OOM killer
MACHINE.update({"rss_counter": ("rss_counter", _t_str), "stat_rss": ("stat_rss", _t_str),
                "oom_two_pass": ("oom_two_pass", _t_bool)})
KTHREAD = {"comm": _t_any, "pid": _t_pid, "cpu": _t_int, "cpus": _t_any, "start": _t_num}
PROCESS = {"name": _t_name, "pid": _t_pid, "parent": _t_any, "fork": _t_bool, "argv": _t_strs, "exe": _t_str,
           "env": _t_env, "uid": _t_int, "gid": _t_int, "groups": _t_any, "nice": _t_int, "cpus": _t_any,
           "run_on": _t_any, "state": _t_str, "count": _t_count, "libs": _t_any, "maps": _t_tables,
           "threads": _t_tables, "ops": _t_tables, "workloads": _t_tables, "start": _t_num,
           "files": _t_tables, "cwd": _t_str, "stdio": _t_str,  # files: procsim/scenario_files.py
           "setsid": _t_bool, "policy": _t_any, "rtprio": _t_int}
THREAD = {"comm": _t_str, "name": _t_name, "tid": _t_pid, "count": _t_count, "cpus": _t_any, "run_on": _t_any,
          "state": _t_str, "nice": _t_int, "stack": _t_size}
MAP = {"name": _t_name, "size": _t_size, "prot": _t_prot, "shared": _t_bool, "path": _t_str, "offset": _t_size,
       "writable": _t_bool, "addr": _t_size, "fixed": _t_bool, "locked": _t_bool, "noreserve": _t_bool,
       "growsdown": _t_bool, "hugetlb": _t_bool, "touch": _t_any, "write": _t_bool, "protect": _t_tables,
       "count": _t_count}
# a process's workloads: the workload_start arguments, and `map` (a mapping's
# name: its start, and its size unless `length` is given) for addr
WORKLOAD = {key: _t_any for key in ("pattern", "rate", "write", "addr", "length", "vmas", "seed", "tick", "hot",
                                    "hot_prob", "hot_offset", "exponent", "offset", "phases", "repeat", "map")}
PROTECT = {"start": _t_size, "size": _t_size, "prot": _t_prot}
LIB = {"path": _t_str, "size": _t_size}
EVENT = {"at": _t_num, "every": _t_num, "count": _t_count, "op": _t_str, "as": _t_str, "cycle": _t_table,
         "random": _t_table}
STATES = ("R", "S", "D", "T")


# -- names ----------------------------------------------------------------------

@dataclass
class Names:
    """What scenario names mean in a built world: processes, their threads
    (in declared order, the main thread first) and their named mappings."""
    procs: dict[str, int] = field(default_factory=dict)            # name -> tgid
    ambiguous: dict[str, list[int]] = field(default_factory=dict)  # implicit names used twice
    explicit: set[str] = field(default_factory=set)
    threads: dict[int, list[int]] = field(default_factory=dict)    # tgid -> tids
    thread_names: dict[int, dict[str, int]] = field(default_factory=dict)
    maps: dict[int, dict[str, int]] = field(default_factory=dict)  # tgid -> name -> start
    skipped: int = 0       # activity events that failed at run time (like failed syscalls)
    last_skip: str = ""
    description: str = ""  # the scenario's own

    def add_process(self, name: str | None, tgid: int, implicit: str | None = None) -> None:
        self.threads.setdefault(tgid, [tgid])
        self.thread_names.setdefault(tgid, {})
        self.maps.setdefault(tgid, {})
        if name is not None:
            self.procs[name] = tgid
            self.explicit.add(name)
            self.ambiguous.pop(name, None)
        elif implicit and NAME_RE.fullmatch(implicit) and implicit not in self.explicit:
            if implicit in self.ambiguous:
                self.ambiguous[implicit].append(tgid)
            elif implicit in self.procs:
                self.ambiguous[implicit] = [self.procs.pop(implicit), tgid]
            else:
                self.procs[implicit] = tgid

    def add_thread(self, tgid: int, tid: int, name: str | None) -> None:
        self.threads.setdefault(tgid, [tgid]).append(tid)
        if name:
            self.thread_names.setdefault(tgid, {})[name] = tid

    def label(self, tgid: int) -> str:
        name = next((n for n, p in self.procs.items() if p == tgid), None)
        return f"process {name!r}" if name else f"pid {tgid}"

    def process(self, name: str) -> int:
        if name in self.procs:
            return self.procs[name]
        if name in self.ambiguous:
            pids = ", ".join(map(str, self.ambiguous[name]))
            raise ScenarioError(f"process name {name!r} is ambiguous (pids {pids}); give each a name")
        raise ScenarioError(f"unknown process {name!r}")

    def pid(self, ref: Any) -> int:
        """'nginx' -> its pid; 'nginx:3' -> its 3rd thread (1 is the main
        thread); 'nginx:gc' -> its thread named gc; numbers pass through."""
        if _is_int(ref):
            return ref
        if not isinstance(ref, str):
            raise ScenarioError(f"expected a pid or a process name, got {ref!r}")
        try:
            return int(ref, 0)
        except ValueError:
            pass
        proc, sep, thread = ref.partition(":")
        tgid = self.process(proc)
        if not sep:
            return tgid
        tids = self.threads.get(tgid, [tgid])
        if thread.isdigit():
            n = int(thread)
            if not 1 <= n <= len(tids):
                have = f"threads 1-{len(tids)}" if len(tids) > 1 else "only its main thread, 1"
                raise ScenarioError(f"{ref!r}: process {proc!r} has {have}")
            return tids[n - 1]
        tid = self.thread_names.get(tgid, {}).get(thread)
        if tid is None:
            raise ScenarioError(f"{ref!r}: process {proc!r} has no thread named {thread!r}")
        return tid

    def addr(self, ref: Any, tgid: int | None) -> int:
        """'nginx:cache' or 'cache' (in the command's own process) -> the
        mapping's start; '+0x1000' or '+4K' adds an offset."""
        if _is_int(ref):
            return ref
        if not isinstance(ref, str):
            raise ScenarioError(f"expected an address or a mapping name, got {ref!r}")
        base, plus, off = ref.partition("+")
        offset = parse_size(off, f"{ref!r}") if plus else 0
        try:
            return int(base, 0) + offset
        except ValueError:
            pass
        proc, sep, name = base.rpartition(":")
        owner = self.process(proc) if sep else tgid
        if owner is None:
            raise ScenarioError(f"{ref!r}: say whose mapping it is ('process:{base}')")
        start = self.maps.get(owner, {}).get(name)
        if start is None:
            raise ScenarioError(f"{ref!r}: no mapping named {name!r} in {self.label(owner)}")
        return start + offset

    def expand(self, pattern: str) -> list[str]:
        """A glob over names: 'worker.*' -> those processes, 'java:*' -> its threads."""
        proc, sep, thread = pattern.partition(":")
        out = []
        for name, tgid in sorted(self.procs.items(), key=lambda kv: kv[1]):
            if not fnmatch.fnmatchcase(name, proc):
                continue
            if not sep:
                out.append(name)
                continue
            named = {tid: n for n, tid in self.thread_names.get(tgid, {}).items()}
            for i, tid in enumerate(self.threads.get(tgid, [tgid]), 1):
                if fnmatch.fnmatchcase(str(i), thread) or fnmatch.fnmatchcase(named.get(tid, ""), thread):
                    out.append(f"{name}:{i}")
        return out

    def bind(self, what: str, name: str, value: int, pid: int | None, k: Kernel) -> None:
        """Give the result of a command a name (an activity's or op's `as`)."""
        if what == "process":
            self.procs[name] = value
            self.explicit.add(name)
            self.threads[value] = [value]
            self.thread_names[value] = {}
            # fork copies the address space, and with it the names of mappings
            self.maps[value] = dict(self.maps.get(k.task(pid).tgid, {})) if pid is not None else {}
            return
        proc, sep, short = name.rpartition(":")
        tgid = self.process(proc) if sep else k.task(pid).tgid
        if what == "thread":
            self.add_thread(tgid, value, short)
        else:
            self.maps.setdefault(tgid, {})[short] = value

    def resolve(self, k: Kernel, args: dict) -> dict:
        """Replace names by pids and addresses in a command's arguments."""
        out = dict(args)
        for key in PID_ARGS + ("child",):
            if key in out and isinstance(out[key], str):
                out[key] = self.pid(out[key])
        if any(key in out for key in ADDR_ARGS):
            own = out.get("pid", out.get("tid"))
            tgid = None
            if _is_int(own):
                t = k.tasks.get(own)
                tgid = t.tgid if t is not None else own
            for key in ADDR_ARGS:
                if key in out and isinstance(out[key], str):
                    out[key] = self.addr(out[key], tgid)
        return out


def names(k: Kernel) -> Names | None:
    """The scenario names of a kernel built by this module (for live control)."""
    return _REGISTRY.get(k)


def resolve(k: Kernel, args: dict) -> dict:
    """Resolve scenario names in command arguments (live control may accept
    'nginx:2' or 'java:heap+4K' just as activity does)."""
    n = _REGISTRY.get(k)
    if n is None:
        return dict(args)
    return n.resolve(k, args)


# -- time -----------------------------------------------------------------------

def _seconds(ns: int) -> float:
    """The float s with int(s * NSEC) == ns (or just below), for Kernel.at."""
    s = ns / NSEC
    while int(s * NSEC) > ns:
        s = math.nextafter(s, -math.inf)
    while int(math.nextafter(s, math.inf) * NSEC) <= ns and int(s * NSEC) < ns:
        s = math.nextafter(s, math.inf)
    return s


# -- the builder ------------------------------------------------------------------

def _params(op: str) -> tuple[list[str], list[str]]:
    """A command's argument names, and the required ones."""
    ps = COMMANDS[op].params
    return [p.name for p in ps], [p.name for p in ps if p.required]


class _Builder:
    def __init__(self, doc: dict, source: str) -> None:
        self.doc = doc
        self.source = source
        self.names = Names()
        self.building = True
        self.dynamic: set[str] = set()  # names only activity `as` will bind
        self.map_sizes: dict[tuple[str, int], int] = {}  # (map name, start) -> size as declared
        self.workloads: list[tuple[int, Any, str]] = []  # started when the world starts

    # errors ---------------------------------------------------------------

    def _call(self, where: str, fn: Callable, *args, **kw):
        try:
            return fn(*args, **kw)
        except ScenarioError as e:
            raise ScenarioError(f"{where}: {e}") from None
        except CommandError as e:
            raise ScenarioError(f"{where}: {e.msg}") from None
        except (KernelError, MMError) as e:
            raise ScenarioError(f"{where}: {e.strerror}") from None
        except OutOfMemory as e:
            raise ScenarioError(f"{where}: out of memory: {e}") from None

    def _cpu(self, v: Any, where: str) -> int:
        n = self.k.config.nr_cpus
        if not _is_int(v):
            raise ScenarioError(f"{where}: expected a cpu number, got {v!r}")
        if not 0 <= v < n:
            raise ScenarioError(f"{where}: cpu {v} out of range 0-{n - 1}")
        return v

    def _cpus(self, v: Any, where: str) -> int:
        n = self.k.config.nr_cpus
        if v == "all":
            return (1 << n) - 1
        if isinstance(v, list) and all(_is_int(x) for x in v):
            v = ",".join(map(str, v))
        if not isinstance(v, str):
            raise ScenarioError(f"{where}: expected a cpu list like \"0-3,8\" or \"all\", got {v!r}")
        try:
            mask = parse_list(v, n)
        except ValueError as e:
            msg = str(e) if "out of" in str(e) else f"bad cpu list {v!r}"
            raise ScenarioError(f"{where}: {msg}") from None
        if not mask:
            raise ScenarioError(f"{where}: empty cpu list")
        return mask

    # whole scenario ----------------------------------------------------------

    def build(self, seed: int | None, clock: str | None) -> Kernel:
        top = _fields(self.doc, TOP, self.source)
        self.k = k = Kernel(self._machine(top.get("machine", {}), seed, clock), at_boot=True)
        self.history = BootHistory(k)
        _REGISTRY[k] = self.names
        self.names.description = top.get("description", "")
        procs = top.get("process", [])
        inits = [i for i, p in enumerate(procs) if isinstance(p, dict) and p.get("pid") == 1]
        if inits and inits[0] != 0:
            raise ScenarioError(f"process #{inits[0] + 1}: init (pid 1) must be the first process")
        if inits:
            self._process(procs[0], 0, init=True)
        else:
            self.history.enter(self.history.default_start("init"))
            k.create_init()
            self.names.add_process("init", 1)
            self.history.started(1)
        k.kthread("kthreadd", pid=2)  # rest_init(): right after init
        self.names.add_process("kthreadd", 2)
        self.history.started(2)
        for i, d in enumerate(top.get("kthread", [])):
            self._kthread(d, i)
        for i, d in enumerate(procs[1:] if inits else procs, 1 if inits else 0):
            self._process(d, i)
        self.history.finish()
        for pid, wl, where in self.workloads:  # access patterns run from the start on
            self._workload(pid, wl, where)
        events = top.get("activity", [])
        self.dynamic = {e["as"] for e in events if isinstance(e, dict) and isinstance(e.get("as"), str)}
        start = k.now
        for i, d in enumerate(events):
            self._activity(d, i, start)
        k.advance_to(k.now)  # what happens at 0 s is part of the world as loaded
        self.building = False
        return k

    def _machine(self, d: dict, seed: int | None, clock: str | None) -> KernelConfig:
        schema = {key: conv for key, (_, conv) in MACHINE.items()}
        vals = _fields(d, schema, "machine")
        kw = {MACHINE[key][0]: v for key, v in vals.items()}
        if seed is not None:
            kw["seed"] = seed
        if clock is not None:
            kw["clock"] = clock
        try:
            return KernelConfig.from_dict(kw)
        except (ValueError, TypeError) as e:
            raise ScenarioError(f"machine: {e}") from None

    # kernel threads -----------------------------------------------------------

    def _kthread(self, d: Any, i: int) -> None:
        where = f"kthread #{i + 1}"
        v = _fields(d, KTHREAD, where, ("comm",))
        comms = v["comm"] if isinstance(v["comm"], list) else [v["comm"]]
        if not comms or not all(isinstance(c, str) and c for c in comms):
            raise ScenarioError(f"{where}: comm: expected a name or a list of names")
        where = f"kthread {comms[0]!r}"
        if "pid" in v and (len(comms) > 1 or "cpus" in v):
            raise ScenarioError(f"{where}: pid needs a single comm and no cpus")
        if "cpus" in v:
            if "cpu" in v:
                raise ScenarioError(f"{where}: give cpu (bound) or cpus (one per cpu), not both")
            mask = self._cpus(v["cpus"], f"{where}: cpus")
            bad = [c for c in comms if "{cpu}" not in c]
            if bad:
                raise ScenarioError(f"{where}: with cpus, each comm needs a {{cpu}} placeholder ({bad[0]!r})")
            first = True
            for cpu in iter_bits(mask):
                for c in comms:
                    self._new_kthread(c.replace("{cpu}", str(cpu)), None, cpu, where, v if first else {})
                    first = False
            return
        cpu = self._cpu(v["cpu"], f"{where}: cpu") if "cpu" in v else None
        if any("{cpu}" in c for c in comms):
            raise ScenarioError(f"{where}: a {{cpu}} placeholder needs cpus (the cpus to make one for)")
        for j, c in enumerate(comms):
            self._new_kthread(c, v.get("pid"), cpu, where, v if j == 0 else {})

    def _new_kthread(self, comm: str, pid: int | None, cpu: int | None, where: str, v: dict) -> None:
        self._enter(v, "kthread", where)
        pid = self._call(where, self.k.kthread, comm, pid, cpu)
        self.names.add_process(None, pid, comm)
        self.history.started(pid)

    def _enter(self, v: dict, what: str, where: str, parent_start: int | None = None) -> None:
        """Move the clock to the task's creation: its `start` (seconds after
        boot) or a default staggered after what came before."""
        h, k = self.history, self.k
        if "start" not in v:
            h.enter(h.default_start(what, parent_start))
            return
        at = int(round(v["start"] * NSEC))
        if not 0 <= at <= h.t0:
            raise ScenarioError(f"{where}: start: {v['start']} s is outside 0..{k.config.boot_uptime:g} "
                                "(boot_uptime, when the world starts)")
        if at < k.now:
            raise ScenarioError(f"{where}: start: {v['start']} s is before the task created before it "
                                f"({k.now / NSEC:g} s): tasks are created in the order declared")
        h.enter(at)

    # processes ------------------------------------------------------------------

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
            if fork:
                for bad in ("exe", "env"):
                    if bad in v:
                        raise ScenarioError(f"{where}: {bad!r} needs an exec; a forked process keeps its parent's")
                pid = self._call(where, k.fork, ppid, v.get("pid"))
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
                                 groups=tuple(groups), exe=v.get("exe"), env=v.get("env"), pid=v.get("pid"))
                names.add_process(name, pid, k.task(pid).comm)
        if not init and v.get("setsid", False):
            self._call(where, sched_syscalls.setsid, k, pid)
        if "cpus" in v:
            self._call(where, k.set_affinity, pid, self._cpus(v["cpus"], f"{where}: cpus"))
        if "nice" in v:
            self._call(where, k.set_nice, pid, v["nice"])
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

    # memory ---------------------------------------------------------------------

    def _exec(self, where: str, op: str, **args) -> Any:
        return self._call(where, execute, self.k, op, args)

    def _lib(self, pid: int, lib: Any, where: str) -> None:
        """What ld.so does for a shared library: map the file, then make the
        text r-x, RELRO read-only after relocation, and data rw-."""
        if isinstance(lib, str):
            lib = {"path": lib}
        v = _fields(lib, LIB, where, ("path",))
        path = v["path"]
        size = v.get("size") or self.k.vfs.file(path).size
        n = max(6, -(-size // PAGE))
        hdr, text = max(1, n // 12), max(1, (n - 3) * 3 // 5)  # rodata keeps at least a page
        base = self._exec(where, "mmap", pid=pid, length=n * PAGE, prot="r", path=path)
        tx, relro = base + hdr * PAGE, base + (n - 2) * PAGE  # data: the last page, rw-
        self._exec(where, "mprotect", pid=pid, addr=tx, length=text * PAGE, prot="rx")
        self._exec(where, "mprotect", pid=pid, addr=relro, length=2 * PAGE, prot="rw")
        self._exec(where, "touch", pid=pid, addr=relro, length=2 * PAGE, write=True)
        self._exec(where, "mprotect", pid=pid, addr=relro, length=PAGE, prot="r")
        self._exec(where, "touch", pid=pid, addr=base, length=PAGE, write=False)
        self._exec(where, "touch", pid=pid, addr=tx, length=max(1, text // 3) * PAGE, write=False)

    def _map(self, pid: int, m: Any, j: int, where: str) -> None:
        label = f"map {m['name']!r}" if isinstance(m, dict) and isinstance(m.get("name"), str) else f"map #{j + 1}"
        v = _fields(m, MAP, f"{where} {label}", ("size",))
        for r in range(v.get("count", 1)):
            name = v.get("name")
            w = f"{where} {label}"
            if name and v.get("count", 1) > 1:
                name = f"{name}.{r + 1}"
                w = f"{where} map {name!r}"
            size = v["size"]
            if size <= 0:
                raise ScenarioError(f"{w}: size must be positive")
            prot = v.get("prot", 3)
            args = {"pid": pid, "length": size, "prot": prot, "shared": v.get("shared", False),
                    "path": v.get("path"), "offset": v.get("offset", 0), "addr": v.get("addr", 0)}
            for flag in ("fixed", "locked", "noreserve", "growsdown", "writable", "hugetlb"):
                if flag in v:
                    args[flag] = v[flag]
            if "offset" in v and "path" not in v:
                raise ScenarioError(f"{w}: offset is for file mappings (give a path)")
            addr = self._exec(w, "mmap", **args)
            if name:
                self.names.maps.setdefault(pid, {})[name] = addr
                self.map_sizes[(name, addr)] = size
            for p in v.get("protect", []):
                pv = _fields(p, PROTECT, f"{w} protect", ("size",))
                start = pv.get("start", 0)
                if start + pv["size"] > size:
                    raise ScenarioError(f"{w}: protect range {start:#x}+{pv['size']:#x} is outside the map")
                self._exec(w, "mprotect", pid=pid, addr=addr + start, length=pv["size"], prot=pv.get("prot", 3))
            length = self._touch_length(v.get("touch", 0), size, f"{w}: touch")
            if length:
                # by default a touch writes when the memory it starts in is writable
                first = next((p.get("prot", 3) for p in reversed(v.get("protect", []))
                              if parse_size(p.get("start", 0)) == 0), prot)
                write = v.get("write", bool(_t_prot(first, f"{w}: protect") & 2))
                self._exec(w, "touch", pid=pid, addr=addr, length=length, write=write)

    def _workload(self, pid: int, d: Any, where: str) -> None:
        """A workload_start on the process (procsim/workload.py); `map`
        names the region: its start, and its declared size unless `length`."""
        v = _fields(d, WORKLOAD, where, ("pattern",))
        if "map" in v:
            if "addr" in v or "vmas" in v:
                raise ScenarioError(f"{where}: give map, addr or vmas, not two of them")
            ref = v.pop("map")
            if not isinstance(ref, str):
                raise ScenarioError(f"{where}: map: expected a mapping name, got {ref!r}")
            v["addr"] = self._call(where, self.names.addr, ref, pid)
            if "length" not in v:
                base = ref.split("+", 1)[0].rsplit(":", 1)[-1]
                start = self.names.addr(ref.split("+", 1)[0], pid)
                v["length"] = self.map_sizes.get((base, start), 0) - (v["addr"] - start)
        elif isinstance(v.get("addr"), str):
            v["addr"] = self._call(where, self.names.addr, v["addr"], pid)
        self._exec(where, "workload_start", pid=pid, **v)

    @staticmethod
    def _touch_length(t: Any, size: int, where: str) -> int:
        if t is True or t == "all":
            return size
        if t is False or t == 0:
            return 0
        if isinstance(t, float):
            if not 0 <= t <= 1:
                raise ScenarioError(f"{where}: a fraction is between 0.0 and 1.0, got {t}")
            return max(PAGE, int(size * t)) if t else 0
        try:
            n = parse_size(t, where)
        except ScenarioError:
            raise ScenarioError(f'{where}: expected bytes ("300M"), a fraction (0.5) or "all", got {t!r}') from None
        if n > size:
            raise ScenarioError(f"{where}: {n} bytes is more than the map's {size}")
        return n

    # commands -----------------------------------------------------------------

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


def _numbered(text: str, r: int) -> str:
    """Replica r of a counted entry: {n} counts from 1, {i} from 0."""
    return text.replace("{n}", str(r + 1)).replace("{i}", str(r))


def _setproctitle(k: Kernel, pid: int, argv: list[str]) -> None:
    """A forked process rewriting its own argv area, as setproctitle() does."""
    k.set_proctitle(pid, argv)


# -- entry points ------------------------------------------------------------------

def build(doc: dict, *, seed: int | None = None, clock: str | None = None,
          source: str = "scenario") -> Kernel:
    """A Kernel from an already parsed scenario (tomllib's dict)."""
    return _Builder(doc, source).build(seed, clock)


def load(path: str | None = None, *, seed: int | None = None, clock: str | None = None) -> Kernel:
    """A Kernel from a scenario file; None loads the default scenario shipped
    with the package. seed and clock override the file's [machine] values."""
    if path is None:
        text = resources.files("procsim").joinpath("scenarios/default.toml").read_text()
        source = "default scenario"
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ScenarioError(f"{path}: {e.strerror}") from None
        source = str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: {e}") from None
    try:
        return build(doc, seed=seed, clock=clock, source=source)
    except ScenarioError as e:
        msg = str(e)
        raise ScenarioError(msg if msg.startswith(source) else f"{source}: {msg}") from None
