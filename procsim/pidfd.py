"""pidfd_getfd(2) (kernel/pid.c): a copy of another process's open file
at a new fd of the caller, close-on-exec, as a restorer hands a socket
made in one process to the others that hold it (CRIU passes them over
SCM_RIGHTS; the effect on the fd tables is the same). The caller needs
PTRACE_MODE_ATTACH_REALCREDS over the target: root, or the same uid."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def pidfd_getfd(k: "Kernel", pid: int, target: int, fd: int) -> int:
    """The new fd in `pid` (the lowest free one, FD_CLOEXEC set: pidfd_getfd
    always sets it). ESRCH for a target that is gone, EPERM without the
    right to ptrace it, EBADF for a closed fd, EMFILE for a full table."""
    with k.lock:
        def run() -> int:
            t, files = k._files_of(pid)
            if target not in k.tasks:
                raise OSError(errno.ESRCH, f"no process {target}")
            other, ofiles = k._files_of(target)
            me, them = t.tg.cred, other.tg.cred
            if me.euid != 0 and (me.euid, me.euid, me.euid) != (them.uid, them.euid, them.suid):
                raise OSError(errno.EPERM, f"{pid} may not ptrace {target}")
            f = ofiles.get(fd)
            k._check_room(t, files, 1)
            nfd = k._install(t, files, f, True)
            k._fd_changed(t)
            return nfd
        return k._errors(run)
