"""Per-task I/O accounting (include/linux/task_io_accounting.h and
task_io_accounting_ops.h): the seven counters /proc/PID/io shows, counted
where Linux counts them.

    rchar, syscr    bytes read(2) returned, read calls (vfs_read)
    wchar, syscw    bytes write(2) took, write calls (vfs_write)
    read_bytes      bytes this task made the block layer read: page-cache
                    misses of reads and of file faults (submit_bio, counted
                    with pgpgin; procsim/mm/filemap.py, Kernel._charge_faults)
    write_bytes     bytes of page cache this task dirtied (folio_account_dirtied)
    cancelled_write_bytes
                    dirty page cache thrown away before writeback (truncate:
                    folio_account_cleaned)

Each task has its own; a thread group's signal->ioac keeps the sums of its
dead threads and of the children it reaped (__exit_signal, wait_task_zombie),
so /proc/PID/io is that plus every live thread's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

FIELDS = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes")


@dataclass(slots=True)
class TaskIoAccounting:
    rchar: int = 0
    wchar: int = 0
    syscr: int = 0
    syscw: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    cancelled_write_bytes: int = 0

    def add(self, other: "TaskIoAccounting") -> None:
        """task_io_accounting_add()."""
        for f in FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def as_dict(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in FIELDS}


assert tuple(f.name for f in fields(TaskIoAccounting)) == FIELDS


def group_ioac(tg) -> TaskIoAccounting:
    """What /proc/PID/io shows: signal->ioac plus each thread's (do_io_accounting, whole)."""
    acct = TaskIoAccounting()
    acct.add(tg.ioac)
    for t in tg.threads:
        acct.add(t.ioac)
    return acct
