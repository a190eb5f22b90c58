"""kernel/module/main.c: struct module and the module list; load_module()
(EEXIST for a loaded name, ENOENT for a dependency that is not loaded: its
symbols are unknown, EPERM without CAP_SYS_MODULE) and delete_module()
(ENOENT, EWOULDBLOCK while another module uses it or a reference is held,
EBUSY while it is not live or has no exit function). Each call checks
everything before changing anything.

A module is Loading (MODULE_STATE_COMING) until its init function has run
(`init_ns` of virtual time after the load), then Live: a pure function of
the clock. Its core is placed in the module area from MODULES_VADDR, one
page-aligned region after another in load order."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from procsim.errors import KernelError
from procsim.units import NSEC, PAGE_SIZE

MODULES_VADDR = 0xffffffffc0000000  # x86_64's module area (no KASLR offset)
STATE_LIVE, STATE_COMING, STATE_GOING = 0, 1, 2
STATE_NAMES = {STATE_LIVE: "Live", STATE_COMING: "Loading", STATE_GOING: "Unloading"}
INITSTATE = {STATE_LIVE: "live", STATE_COMING: "coming", STATE_GOING: "going"}
# the taint flags a module can carry, in taint bit order (kernel/panic.c's taint_flags[])
TAINT_FLAGS = "PFCOEKXTN"
CAP_SYS_MODULE = 16
MODULE_NAME_LEN = 56


@dataclass
class Module:
    """struct module (the parts /proc/modules and /sys/module show)."""
    name: str
    size: int                       # the core's bytes (text, data, rodata): coresize
    uses: list[str]                 # the modules it depends on (whose symbols it uses)
    taints: str = ""
    params: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (value, sysfs mode)
    permanent: bool = False         # an init function and no exit: it cannot be unloaded
    refs: int = 0                   # references held besides its users' (an open device, a ruleset)
    base: int = 0
    live_at: int = 0                # ns: when its init returns
    id: int = 0
    holders: list[str] = field(default_factory=list)  # source_list: its users, the newest first

    def state(self, now: int) -> int:
        return STATE_COMING if now < self.live_at else STATE_LIVE

    def refcount(self) -> int:
        """module_refcount(): one per user module, plus the others held."""
        return len(self.holders) + self.refs


class ModuleState:
    """The `modules` list: in load order (/proc/modules shows the newest first)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Module] = {}
        self.by_id: dict[int, Module] = {}
        self.next_base = MODULES_VADDR
        self.next_id = 0
        self.on_unload: list = []   # told of each module that goes (netfilter drops conntrack with it)

    def listing(self) -> list[Module]:
        return list(reversed(self.by_name.values()))

    def load(self, name: str, size: int, uses: list[str], now: int, privileged: bool = True, taints: str = "",
             params: dict[str, tuple[str, int]] | None = None, permanent: bool = False, refs: int = 0,
             init_seconds: float = 0) -> Module:
        """load_module()."""
        if not privileged:
            raise KernelError(errno.EPERM, "loading a module needs CAP_SYS_MODULE")
        if not name or len(name) >= MODULE_NAME_LEN or not all(c.isalnum() or c == "_" for c in name):
            raise KernelError(errno.EINVAL, f"module name {name!r}")
        if name in self.by_name:
            raise KernelError(errno.EEXIST, f"{name}: already loaded")
        if not 0 < size < 1 << 31:
            raise KernelError(errno.EINVAL, "size: 1 byte to 2 GiB")
        if any(c not in TAINT_FLAGS for c in taints):
            raise KernelError(errno.EINVAL, f"taints: of {TAINT_FLAGS}")
        if refs < 0 or init_seconds < 0:
            raise KernelError(errno.EINVAL, "refs and init_seconds are not negative")
        for dep in uses:
            if dep not in self.by_name:
                raise KernelError(errno.ENOENT, f"{name}: unknown symbols of {dep} (not loaded)")
        if len(set(uses)) != len(uses) or name in uses:
            raise KernelError(errno.EINVAL, "uses: distinct other modules")
        self.next_id += 1
        m = Module(name, size, list(uses), "".join(c for c in TAINT_FLAGS if c in taints), dict(params or {}),
                   permanent, refs, self.next_base, now + int(init_seconds * NSEC), self.next_id)
        self.next_base += -(-size // PAGE_SIZE) * PAGE_SIZE
        for dep in uses:
            self.by_name[dep].holders.insert(0, name)  # add_module_usage(): list_add
        self.by_name[name] = m
        self.by_id[m.id] = m
        return m

    def delete(self, name: str, now: int, privileged: bool = True) -> Module:
        """delete_module()."""
        if not privileged:
            raise KernelError(errno.EPERM, "unloading a module needs CAP_SYS_MODULE")
        m = self.by_name.get(name)
        if m is None:
            raise KernelError(errno.ENOENT, f"{name}: not loaded")
        if m.holders:
            raise KernelError(errno.EWOULDBLOCK, f"{name}: in use by {','.join(m.holders)}")
        if m.state(now) != STATE_LIVE:
            raise KernelError(errno.EBUSY, f"{name}: not live")
        if m.permanent:
            raise KernelError(errno.EBUSY, f"{name}: has no exit function")
        if m.refs:
            raise KernelError(errno.EWOULDBLOCK, f"{name}: {m.refs} references held")
        del self.by_name[name]
        del self.by_id[m.id]
        for dep in m.uses:
            self.by_name[dep].holders.remove(name)
        for cb in self.on_unload:
            cb(m)
        return m
