"""The module calls as a task makes them (finit_module, delete_module):
CAP_SYS_MODULE in the task's effective set, then kernel/module/main.c's
checks; and what a module's going takes with it (nf_conntrack: the
tracking of every namespace and its tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.module.main import CAP_SYS_MODULE, Module, ModuleState

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def boot(k: "Kernel") -> ModuleState:
    st = ModuleState()
    st.on_unload.append(lambda m: _unloaded(k, m))
    return st


def _unloaded(k: "Kernel", m: Module) -> None:
    if m.name == "nf_conntrack":  # nf_conntrack_cleanup_net(): its tables go with it
        for c in k.netfilter.nets.values():
            c.enabled = False
            c.flush()


def _privileged(k: "Kernel", pid: int | None) -> bool:
    """CAP_SYS_MODULE in `pid`'s effective set (None: the boot, systemd-modules-load)."""
    if pid is None:
        return True
    return bool(k.task(pid).tg.cred.cap_effective >> CAP_SYS_MODULE & 1)


def init_module(k: "Kernel", pid: int | None, name: str, size: int, uses: list[str], **kw) -> Module:
    with k.lock:
        m = k.modules.load(name, size, uses, k.now, _privileged(k, pid), **kw)
        k._changed("module", name=name)
        return m


def delete_module(k: "Kernel", pid: int | None, name: str) -> None:
    with k.lock:
        k.modules.delete(name, k.now, _privileged(k, pid))
        k._changed("module", name=name)
