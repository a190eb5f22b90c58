"""Commands of the module loader (procsim/module/): insmod/modprobe and
rmmod as a process makes them, with the kernel's errnos (EEXIST, ENOENT,
EWOULDBLOCK while in use, EBUSY while not live or permanent, EPERM
without CAP_SYS_MODULE), and the module list."""

from __future__ import annotations

from procsim.commands.core import cmd, p, query
from procsim.kernel import Kernel
from procsim.module import syscalls as M
from procsim.module.main import STATE_NAMES
from procsim.params import BOOL, INT, SIZE, STR


def _uses(text: str) -> list[str]:
    return [u for u in text.split(",") if u]


def c_module_load(k: Kernel, name, size, uses, taints, permanent, refs, init_seconds, pid) -> dict:
    """finit_module(): `name` of `size` core bytes using the modules `uses`
    (comma-separated, each loaded first); `init_seconds`: its init runs that
    long (Loading until then)."""
    m = M.init_module(k, pid, name, size, _uses(uses), taints=taints, permanent=permanent, refs=refs,
                      init_seconds=init_seconds)
    return {"name": m.name, "base": m.base}


def c_modules(k: Kernel) -> list[dict]:
    return [{"name": m.name, "size": m.size, "refcnt": m.refcount(), "holders": list(m.holders),
             "uses": list(m.uses), "state": STATE_NAMES[m.state(k.now)], "taints": m.taints}
            for m in k.modules.listing()]


COMMANDS = (
    cmd("module_load", c_module_load, p("name", STR), p("size", SIZE), p("uses", STR, ""), p("taints", STR, ""),
        p("permanent", BOOL, False), p("refs", INT, 0), p("init_seconds", INT, 0), p("pid", INT, 1)),
    cmd("module_unload", lambda k, name, pid: M.delete_module(k, pid, name), p("name", STR), p("pid", INT, 1),
        doc="delete_module() (rmmod): ENOENT if not loaded, EWOULDBLOCK while used, EBUSY while loading."),
    query("modules", c_modules, doc="The loaded modules, the newest first (lsmod's order)."),
)
