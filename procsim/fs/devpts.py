"""Unix98 ptys (drivers/tty/pty.c, fs/devpts): each open of /dev/ptmx makes
a master/slave pair that lives while that open file does. kernel.pty.nr
counts the pairs, kernel.pty.max limits them (ENOSPC beyond: the initial
devpts instance may use the reserve too, so its limit is max itself), and
kernel.pty.reserve is what other instances must leave to it."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.kernel import Kernel

PTMX = "/dev/ptmx"
NR_UNIX98_PTY_DEFAULT = 4096
NR_UNIX98_PTY_RESERVE = 1024


class PtyLimits:
    __slots__ = ("max", "reserve")

    def __init__(self) -> None:
        self.max = NR_UNIX98_PTY_DEFAULT
        self.reserve = NR_UNIX98_PTY_RESERVE


def nr_ptys(k: "Kernel") -> int:
    """The pty pairs: the open files of /dev/ptmx (shared by dup and fork)."""
    masters: set[int] = set()
    seen: set[int] = set()
    for t in k.tasks.values():
        ft = t.files
        if ft is None or id(ft) in seen:
            continue
        seen.add(id(ft))
        masters.update(id(f) for _, f in ft.items() if f.inode is not None and f.inode.path == PTMX)
    return len(masters)


def check_new_pty(k: "Kernel") -> None:
    """devpts_new_index(): ENOSPC once kernel.pty.max pairs exist."""
    if nr_ptys(k) >= k.files.pty.max:
        raise OSError(errno.ENOSPC, f"kernel.pty.max ({k.files.pty.max}) ptys exist")


def set_pty_limit(k: "Kernel", field: str, value: int) -> None:
    """kernel.pty.max or kernel.pty.reserve (proc_dointvec_minmax, 0 to INT_MAX)."""
    with k.lock:
        setattr(k.files.pty, field, value)
        k._changed("sysctl", name=f"kernel.pty.{field}")
