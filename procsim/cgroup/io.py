"""io.stat (block/blk-cgroup.c blkcg_print_stat): bytes and I/Os charged
per device to the cgroup of the task that caused them and its ancestors
(blkg_rwstat, summed up the tree by rstat). There is no block layer yet:
a task's page-cache misses are its reads and the pages it dirties its
writes (the counts task_io_accounting keeps), charged to one disk, 8:0,
one I/O per call that moved bytes. A cgroup with no I/O prints nothing,
as Linux skips devices without stats."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import Task

DEVICE = "8:0"
FIELDS = ("rbytes", "wbytes", "rios", "wios", "dbytes", "dios")


def charge(k: "Kernel", t: "Task", rbytes: int, wbytes: int) -> None:
    if rbytes <= 0 and wbytes <= 0:
        return
    cg = k.cgroups.css_of(t.tg.cgroup, "io")
    for a in cg.ancestors():
        st = a.io.setdefault(DEVICE, [0] * len(FIELDS))
        if rbytes > 0:
            st[0] += rbytes
            st[2] += 1
        if wbytes > 0:
            st[1] += wbytes
            st[3] += 1


def io_stat(cg) -> bytes:
    return "".join(f"{dev} " + " ".join(f"{n}={v}" for n, v in zip(FIELDS, st)) + "\n"
                   for dev, st in sorted(cg.io.items())).encode()
