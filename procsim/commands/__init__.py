"""The command vocabulary shared by scenario activity, live control and the
Python client: a table of commands, each a name, typed parameters
(procsim/params.py) and a kernel call, one module per subsystem (process,
mm, sched, fs, ns, workload, cgroup, block, net, locks, ipc), assembled here.

Every command's arguments are parsed by the table before the kernel is
touched (unknown, missing and ill-typed parameters are EINVAL, named), and
the kernel validates the world before changing it, so a bad command changes
nothing. A query (marked in the table) only reads: it runs under the kernel
lock and leaves `generation`, and so every render cache, as it was; any
other command runs as a Kernel.syscall, whose kernel calls record what
they change.
"""

from __future__ import annotations

import errno
from typing import Any

from procsim.commands import (block, cgctl, cgroup, cpuweight, fs, ipc, locks, mm, modules, net, netfilter, ns,
                              process, reclaim, restore_net, sched, workingset, workload)
from procsim.commands.core import Command, CommandError, parse_args
from procsim.commands.sched import c_sched_setscheduler
from procsim.kernel import Kernel, KernelError
from procsim.mm.mm import MMError
from procsim.mm.page_alloc import OutOfMemory

__all__ = ["COMMANDS", "Command", "CommandError", "c_sched_setscheduler", "execute", "parse_args"]

COMMANDS: dict[str, Command] = {c.name: c for m in (process, mm, sched, workload, fs, ns, cgroup, block, net,
                                                     locks, ipc, reclaim, cgctl, netfilter, modules,
                                                     restore_net, workingset, cpuweight) for c in m.COMMANDS}


def execute(k: Kernel, op: str, args: dict[str, Any]) -> Any:
    """Run one command; every failure is a CommandError with the kernel's errno."""
    c = COMMANDS.get(op)
    if c is None:
        raise CommandError(errno.EINVAL, f"unknown command {op!r} (known: {', '.join(sorted(COMMANDS))})")
    parsed = parse_args(c, args)
    # a query only reads; anything else runs as a syscall, whose failure
    # half-way (out of memory mid-touch) is recorded as a change
    with k.lock if c.is_query(parsed) else k.syscall(op):
        try:
            return c.call(k, **parsed)
        except (KernelError, MMError) as e:
            raise CommandError(e.errno, f"{op}: {e.strerror}") from None
        except OutOfMemory as e:
            raise CommandError(errno.ENOMEM, f"{op}: {e}") from None
        except (ValueError, OverflowError) as e:
            raise CommandError(errno.EINVAL, f"{op}: {e}") from None
