"""Commands a restorer uses to remake connections between processes:
pidfd_getfd (a copy of another process's fd) and unix_diag (sock_diag's
peers of unix sockets, which no /proc file shows: what `procsim capture`
of a procsim mount asks instead of netlink)."""

from __future__ import annotations

from procsim.commands.core import FD, PID, cmd, p, query
from procsim.kernel import Kernel
from procsim.net import diag
from procsim.params import INT
from procsim.pidfd import pidfd_getfd


def c_unix_diag(k: Kernel, pid) -> list[dict]:
    """The unix sockets of `pid`'s network namespace: inode, type, state,
    peer (UNIX_DIAG_PEER) and a listener's waiting clients (icons)."""
    return diag.unix_diag(k, pid)


COMMANDS = (
    cmd("pidfd_getfd", lambda k, pid, target, fd: pidfd_getfd(k, pid, target, fd), PID, p("target", INT), FD,
        doc="pidfd_getfd(): process `pid` gets a copy of `target`'s fd `fd` at its lowest free fd "
            "(close-on-exec). ESRCH, EPERM (not root nor the same uid), EBADF, EMFILE."),
    query("unix_diag", c_unix_diag, p("pid", INT, 1)),
)
