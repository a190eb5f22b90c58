"""Per-user resource counts (kernel/ucount.c): a struct ucounts for each
(user namespace, uid) holding the rlimit-style counters the kernel charges
to a user rather than a process. procsim keeps UCOUNT_RLIMIT_SIGPENDING:
the signals queued to the user's tasks and the sigqueues its POSIX timers
preallocate, which status prints as SigQ's first number (against the
task's RLIMIT_SIGPENDING)."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.errors import KernelError

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import Task

UCOUNT_RLIMIT_SIGPENDING = "sigpending"


@dataclass
class UCounts:
    sigpending: int = 0


class UCountsTable:
    """alloc_ucounts()'s hash: one UCounts per (user ns, uid), made on first use."""

    def __init__(self) -> None:
        self._by_user: dict[tuple[int, int], UCounts] = {}

    def of(self, user_ns: object, uid: int) -> UCounts:
        key = (id(user_ns) if user_ns is not None else 0, uid)
        uc = self._by_user.get(key)
        if uc is None:
            uc = self._by_user[key] = UCounts()
        return uc

    def task(self, t: "Task") -> UCounts:
        """task_ucounts(): the counts of the task's real uid in its cred's user ns."""
        c = t.tg.cred
        return self.of(c.user_ns, c.uid)


def set_sigpending(k: "Kernel", pid: int, count: int) -> None:
    """Set the sigpending count of `pid`'s user (a capture's SigQ: what the
    source's user had queued, including in tasks the capture did not see);
    EINVAL for a negative or non-integer count."""
    with k.lock:
        t = k.task(pid)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise KernelError(errno.EINVAL, f"sigpending: expected a non-negative integer, got {count!r}")
        k.ucounts.task(t).sigpending = count
        k._changed("restore", pid=t.tgid)
