"""/proc/modules (kernel/module/procfs.c m_show) and /sys/module/NAME
(kernel/module/sysfs.c and main.c's module attributes: refcnt,
initstate, coresize, initsize, taint, holders/, parameters/) over
procsim/module/. A module directory's node carries the module's id."""

from __future__ import annotations

import errno

from procsim.kallsyms import CAP_SYSLOG, show_value
from procsim.kernel import Kernel
from procsim.module.main import INITSTATE, STATE_NAMES, Module
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import Dir, DynDir, Link, Node, Show


def _line(m: Module, now: int, show: bool) -> str:
    """m_show(): name, size, refcount, users (or -), state, text address, taints."""
    users = "".join(f"{h}," for h in m.holders) + ("[permanent]," if m.permanent else "")
    line = f"{m.name} {m.size} {m.refcount()} {users or '-'} {STATE_NAMES[m.state(now)]} 0x{m.base if show else 0:016x}"
    if m.taints:
        line += f" ({m.taints})"
    return line + "\n"


def proc_modules(ctx: Ctx) -> bytes:
    """The newest module first; addresses as kallsyms_show_value() lets the opener see them."""
    k = ctx.kernel
    cfg = k.config
    show = show_value(cfg.kptr_restrict, cfg.perf_event_paranoid, ctx.caller.capable(CAP_SYSLOG))
    return "".join(_line(m, k.now, show) for m in k.modules.listing()).encode()


def module_flags(m: Module, now: int) -> str:
    """module_flags() as the taint attribute asks for it: the taint letters alone."""
    return m.taints


# -- /sys/module ------------------------------------------------------------------------


def _mod(ctx: Ctx) -> Module:
    m = ctx.kernel.modules.by_id.get(ctx.arg)
    if m is None:
        raise OSError(errno.ENOENT, "module")
    return m


def _attr(fn):
    return lambda ctx: f"{fn(ctx, _mod(ctx))}\n".encode()


def _holders_names(parent: Node, kernel: Kernel) -> list[str]:
    m = kernel.modules.by_id.get(parent.arg)
    return list(m.holders) if m is not None else []


_HOLDER = Link("HOLDER", lambda ctx: "")


def _holders_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    if name not in _holders_names(parent, kernel):
        raise OSError(errno.ENOENT, name)
    return Node("link", _HOLDER, None, target=f"../../{name}"), False


def _param_names(parent: Node, kernel: Kernel) -> list[str]:
    m = kernel.modules.by_id.get(parent.arg)
    return sorted(m.params) if m is not None else []


def _param_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    m = kernel.modules.by_id.get(parent.arg)
    if m is None or name not in m.params:
        raise OSError(errno.ENOENT, name)
    mode = m.params[name][1]
    row = _PARAM_ROWS.get((name, mode))
    if row is None:
        row = _PARAM_ROWS[(name, mode)] = Show(name, _param_render(name), mode, deny_write=True)
    return Node("file", row, None, arg=parent.arg), False


_PARAM_ROWS: dict[tuple[str, int], Show] = {}


def _param_render(name: str):
    def render(ctx: Ctx) -> bytes:
        m = _mod(ctx)
        if m.name == "nf_conntrack" and name == "hashsize":  # nf_conntrack_htable_size itself
            return f"{ctx.kernel.netfilter.htable_size}\n".encode()
        return f"{m.params[name][0]}\n".encode()
    return render


MODULE_DIR = Dir("MODULE", (
    Show("coresize", _attr(lambda ctx, m: m.size), deny_write=True),
    DynDir("holders", lookup=_holders_lookup, readdir=_holders_names, mode=0o755),
    Show("initsize", _attr(lambda ctx, m: 0), deny_write=True),
    Show("initstate", _attr(lambda ctx, m: INITSTATE[m.state(ctx.kernel.now)]), deny_write=True),
    DynDir("parameters", lookup=_param_lookup, readdir=_param_names, mode=0o755),
    Show("refcnt", _attr(lambda ctx, m: m.refcount()), deny_write=True),
    Show("taint", _attr(lambda ctx, m: module_flags(m, ctx.kernel.now)), deny_write=True),
), 0o755)


def _module_names(parent: Node, kernel: Kernel) -> list[str]:
    return sorted(kernel.modules.by_name)


def _module_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    m = kernel.modules.by_name.get(name)
    if m is None:
        raise OSError(errno.ENOENT, name)
    return Node("dir", MODULE_DIR, None, arg=m.id), False


SYS_MODULE = DynDir("module", lookup=_module_lookup, readdir=_module_names, mode=0o755)
