"""What a render function gets: the machine, the task a per-process file is
about, and who is reading."""

from __future__ import annotations

from dataclasses import dataclass

from procsim.kernel import Kernel
from procsim.mm.mm import MM
from procsim.task import Task, ThreadGroup


@dataclass(frozen=True, slots=True)
class Caller:
    """The process making a FUSE request (host ids, from fuse_get_context)."""
    pid: int
    uid: int
    gid: int

    @property
    def is_root(self) -> bool:
        return self.uid == 0


@dataclass(slots=True)
class Ctx:
    kernel: Kernel
    caller: Caller
    task: Task | None = None
    thread_view: bool = False  # /proc/PID/task/TID/... rather than /proc/PID/...
    # The address space an open of maps, smaps, pagemap... took a reference
    # on (proc_mem_open): reads keep showing it, or nothing once it is gone.
    mm: MM | None = None

    @property
    def tg(self) -> ThreadGroup:
        return self.task.tg

    def may_ptrace(self) -> bool:
        """PTRACE_MODE_READ, as far as the model goes: root or the same uid."""
        if self.caller.is_root:
            return True
        c = self.task.tg.cred
        return self.task.tg.dumpable and self.caller.uid == c.uid == c.euid == c.suid
