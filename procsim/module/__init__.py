"""Loadable kernel modules (kernel/module/): struct module (name, core
size, the modules it uses and those that use it, state, taint, where its
text lies), the list in load order, and what load_module/delete_module
check (main.py). /proc/modules and /sys/module render it."""

from __future__ import annotations

from procsim.module.main import (MODULES_VADDR, Module, ModuleState, STATE_COMING, STATE_GOING, STATE_LIVE,
                                 TAINT_FLAGS)

__all__ = ["MODULES_VADDR", "Module", "ModuleState", "STATE_COMING", "STATE_GOING", "STATE_LIVE", "TAINT_FLAGS"]
