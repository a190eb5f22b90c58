"""What scenario names mean in a built world (processes, threads, named
mappings), kept per kernel for live control, and their resolution in
command arguments ('nginx:2', 'java:heap+4K')."""

from __future__ import annotations

import fnmatch
import weakref
from dataclasses import dataclass, field
from typing import Any

from procsim.kernel import Kernel
from procsim.scenario.schema import NAME_RE, ScenarioError, _is_int, parse_size

PID_ARGS = ("pid", "tid", "parent")
ADDR_ARGS = ("addr", "new_addr")
_REGISTRY: "weakref.WeakKeyDictionary[Kernel, Names]" = weakref.WeakKeyDictionary()


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
    # which process names a glob matches, until the set of names changes
    # (activity fires every few hundred ms and globs over every process;
    # a spawn that rebinds 'job' or an mmap that names a mapping keeps it)
    _keys_version: int = field(default=0, compare=False, repr=False)
    _matched: dict[str, tuple[int, list[str]]] = field(default_factory=dict, compare=False, repr=False)

    def _set_proc(self, name: str, tgid: int) -> None:
        if name not in self.procs:
            self._keys_version += 1
        self.procs[name] = tgid

    def add_process(self, name: str | None, tgid: int, implicit: str | None = None) -> None:
        self.threads.setdefault(tgid, [tgid])
        self.thread_names.setdefault(tgid, {})
        self.maps.setdefault(tgid, {})
        if name is not None:
            self._set_proc(name, tgid)
            self.explicit.add(name)
            self.ambiguous.pop(name, None)
        elif implicit and NAME_RE.fullmatch(implicit) and implicit not in self.explicit:
            if implicit in self.ambiguous:
                self.ambiguous[implicit].append(tgid)
            elif implicit in self.procs:
                self._keys_version += 1
                self.ambiguous[implicit] = [self.procs.pop(implicit), tgid]
            else:
                self._set_proc(implicit, tgid)

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
        """A glob over names: 'worker.*' -> those processes, 'java:*' -> its
        threads; in pid order. Only the name glob is kept (O(processes));
        the order and the threads come from the few names it matched."""
        proc, sep, thread = pattern.partition(":")
        memo = self._matched.get(proc)
        if memo is None or memo[0] != self._keys_version:
            memo = (self._keys_version, [n for n in self.procs if fnmatch.fnmatchcase(n, proc)])
            self._matched[proc] = memo
        out = []
        for name in sorted(memo[1], key=self.procs.__getitem__):
            tgid = self.procs[name]
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
            self._set_proc(name, value)
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
    """The scenario names of a kernel built from a scenario (for live control)."""
    return _REGISTRY.get(k)


def resolve(k: Kernel, args: dict) -> dict:
    """Resolve scenario names in command arguments (live control may accept
    'nginx:2' or 'java:heap+4K' just as activity does)."""
    n = _REGISTRY.get(k)
    if n is None:
        return dict(args)
    return n.resolve(k, args)

