"""The scenario builder: it only translates. `[machine]` becomes a
KernelConfig, every kthread, process, thread and mapping becomes the
syscalls that would have made it, and activity becomes timed commands;
each concern is a part of the builder (processes.py, memory.py,
activity.py, sysctl.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procsim.bitmap import iter_bits, parse_list
from procsim.commands import CommandError
from procsim.history import BootHistory
from procsim.kernel import Kernel, KernelError
from procsim.mm.page_alloc import OutOfMemory
from procsim.mm.mm import MMError
from procsim.scenario.activity import ActivityBuilder
from procsim.scenario.block import BlockBuilder
from procsim.scenario.caps import CapsBuilder
from procsim.scenario.captured import CapturedBuilder
from procsim.scenario.cgroups import CgroupBuilder
from procsim.scenario.connections import ConnectionsBuilder
from procsim.scenario.machine import machine_config
from procsim.scenario.memory import MemoryBuilder
from procsim.scenario.modules import ModulesBuilder
from procsim.scenario.names import _REGISTRY, Names
from procsim.scenario.net import NetBuilder
from procsim.scenario.processes import ProcessBuilder
from procsim.scenario.schema import KTHREAD, TOP, ScenarioError, _fields, _is_int
from procsim.scenario.sysctl import SysctlBuilder
from procsim.units import NSEC


class _Builder(ProcessBuilder, MemoryBuilder, ActivityBuilder, CgroupBuilder, BlockBuilder, NetBuilder, ModulesBuilder,
               CapturedBuilder, SysctlBuilder, CapsBuilder, ConnectionsBuilder):
    """One build: the document, the kernel it makes, the names it gives."""

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
        self.k = k = Kernel(machine_config(top.get("machine", {}), seed, clock), at_boot=True)
        self.history = BootHistory(k)
        self._disks(top)  # the disks and what is mounted on them, before anything does I/O
        _REGISTRY[k] = self.names
        self.names.description = top.get("description", "")
        self._sysctls(top.get("sysctl", {}))  # before any process: the policies their mappings meet
        self._cgroups(top.get("cgroup", []))  # the hierarchy and its limits, before anyone is in it
        self._netdevs(top.get("netdev", []))
        self._modules(top.get("module", []))  # loaded at boot, then conntrack that needs one of them
        self._netfilter(top.get("netfilter", {}))
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
        self._connections()  # connections.py: between processes made in any order
        self._restore_counters()  # a captured machine's counters, over what the history made
        self._restore_disk_stats()
        self._restore_netdev_stats()
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
        if pid == 2 and comm == "kthreadd":  # rest_init() made it: a captured machine's counters for it
            self._restore_later(2, v, where)
            return
        self._enter(v, "kthread", where)
        pid = self._call(where, self.k.kthread, comm, pid, cpu)
        self._restore_later(pid, v, where)
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

