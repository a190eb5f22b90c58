"""Commands of System V IPC (procsim/ipc/): shared memory segments."""

from __future__ import annotations

from procsim.commands.core import PID, cmd, p
from procsim.ipc import shm
from procsim.kernel import Kernel
from procsim.params import BOOL, INT, SIZE


def c_shmget(k: Kernel, pid, size, key, mode, create, excl) -> int:
    """shmget(): the id of the segment with `key` (0: IPC_PRIVATE, always
    new); `create` (IPC_CREAT) makes it if missing, with `excl` EEXIST if it exists."""
    flags = (mode & 0o777) | (shm.IPC_CREAT if create else 0) | (shm.IPC_EXCL if excl else 0)
    return shm.shmget(k, pid, key, size, flags)


COMMANDS = (
    cmd("shmget", c_shmget, PID, p("size", SIZE), p("key", INT, 0), p("mode", INT, 0o600),
        p("create", BOOL, True), p("excl", BOOL, False)),
    cmd("shmat", lambda k, pid, shmid, addr, readonly: shm.shmat(k, pid, shmid, addr, readonly), PID,
        p("shmid", INT), p("addr", SIZE, 0), p("readonly", BOOL, False),
        doc="shmat(): attach segment `shmid` shared (`readonly`: SHM_RDONLY); returns the address."),
    cmd("shmdt", lambda k, pid, addr: shm.shmdt(k, pid, addr), PID, p("addr", SIZE),
        doc="shmdt(): detach the attach at `addr`."),
    cmd("shm_rmid", lambda k, pid, shmid: shm.shmctl_rmid(k, pid, shmid), PID, p("shmid", INT),
        doc="shmctl(IPC_RMID): remove segment `shmid` (its pages go with the last attach)."),
)
