"""Commands of the block layer (procsim/block/): sync, fsync, and the
`disks` query (every block device's size, mount and counters)."""

from __future__ import annotations

import errno

from procsim.block import syscalls as B
from procsim.commands.core import PID, CommandError, cmd, p, query
from procsim.kernel import Kernel
from procsim.params import STR


def c_disks(k: Kernel, name) -> list[dict] | dict:
    """Every block device (disks and their partitions, in /proc/diskstats
    order) with its dev, size in sectors, start, mount, whether swap is on
    it, and its counters as diskstats shows them; `name`: only that one
    (ENOENT if there is none)."""
    info = B.disks_info(k)
    if name is None:
        return info
    for d in info:
        if d["name"] == name:
            return d
    raise CommandError(errno.ENOENT, f"disks: no block device {name!r}")


COMMANDS = (
    cmd("sync", lambda k: B.do_sync(k),
        doc="sync(2): every dirty file written back, a cache flush on each mounted disk; returns the pages "
            "written."),
    cmd("fsync", lambda k, pid, path: B.do_fsync(k, pid, path), PID, p("path", STR),
        doc="fsync(2) of `path` by `pid`: its dirty pages written, a flush on its disk; returns the pages written."),
    query("disks", c_disks, p("name", STR, None)),
)
