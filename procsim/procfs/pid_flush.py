"""proc_flush_pid(): the pid dentries procfs drops when a task is released.

Linux's release_task() calls proc_flush_pid(), which invalidates every
dentry of the pid (/proc/PID, /proc/TGID/task/PID), so a lookup the VFS
cached cannot outlive the task. Here the VFS is the FUSE client's dentry
cache, kept for the 1 s entry timeout: the kernel tells procfs of each
task it releases (Kernel.on_release), PidFlush turns the task into the
dentries to drop and queues them; whoever serves the mount (mountd's
Invalidator) drains the queue and hands each one to the VFS.

An owner change (a "cred" change) queues the pid's directories as well:
Linux's pid_revalidate() gives a pid inode its task's new owner at the
next lookup, which a cached FUSE entry would skip.

The hooks run under the kernel lock, maybe on the thread serving FUSE
requests, where notifying the VFS could deadlock: they only queue.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

from procsim.kernel import Kernel
from procsim.task import Task

# A dentry to drop: (its parent directory, its name), the parent relative to
# the mount root ("proc", "123"), as the VFS invalidates a name in a directory.
Dentry = tuple[str, str]


def pid_dentries(t: Task) -> list[Dentry]:
    """The dentries of a released task: /proc/TID (every task's, looked up by
    number though only group leaders are listed) and, for a thread that is
    not its group's leader, /proc/TGID/task/TID. A leader is released with
    its whole group, and /proc/TGID/task/TGID goes with /proc/TGID."""
    out = [("proc", str(t.pid))]
    if t.tgid != t.pid:
        out.append((f"proc/{t.tgid}/task", str(t.pid)))
    return out


class PidFlush:
    """Subscribes to `kernel`'s release and change hooks and queues the
    dentries they make stale; `wake` (if set) is called after each queueing."""

    def __init__(self, kernel: Kernel, wake: Callable[[], None] | None = None) -> None:
        self.kernel = kernel
        self.wake = wake
        self._q: queue.SimpleQueue[Dentry] = queue.SimpleQueue()
        kernel.on_release.append(self._released)
        kernel.observers.append(self._changed)

    def close(self) -> None:
        """Stop listening (what is queued stays drainable)."""
        k = self.kernel
        with k.lock:
            if self._released in k.on_release:
                k.on_release.remove(self._released)
            if self._changed in k.observers:
                k.observers.remove(self._changed)

    def drain(self) -> list[Dentry]:
        """Every dentry queued so far, in order, once each; the queue is emptied."""
        out: dict[Dentry, None] = {}
        while True:
            try:
                out[self._q.get_nowait()] = None
            except queue.Empty:
                return list(out)

    # under the kernel lock: queue only

    def _released(self, t: Task) -> None:
        for d in pid_dentries(t):
            self._q.put(d)
        if self.wake is not None:
            self.wake()

    def _changed(self, what: str, info: dict) -> None:
        if what != "cred":
            return
        tg = self.kernel.groups.get(info.get("pid"))
        if tg is None:
            return
        for t in tg.threads:  # every pid of the group has a directory owned by the new creds
            self._q.put(("proc", str(t.pid)))
        if self.wake is not None:
            self.wake()
