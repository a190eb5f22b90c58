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
    # effective capabilities; None: those of the real process `pid` (from the
    # host's /proc), or every capability for root if it cannot be read
    caps: int | None = None

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def capable(self, cap: int) -> bool:
        """capable(cap) for the writer: a root shell in a container may well
        lack CAP_SYS_RESOURCE, and the kernel then refuses what needs it."""
        caps = self.caps if self.caps is not None else _host_cap_eff(self.pid)
        if caps is None:
            return self.is_root
        return bool(caps >> cap & 1)


def _host_cap_eff(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(slots=True)
class Ctx:
    kernel: Kernel
    caller: Caller
    task: Task | None = None
    thread_view: bool = False  # /proc/PID/task/TID/... rather than /proc/PID/...
    # The address space an open of maps, smaps, pagemap... took a reference
    # on (proc_mem_open): reads keep showing it, or nothing once it is gone.
    mm: MM | None = None
    arg: int = -1  # the fd of an fdinfo/N file

    @property
    def tg(self) -> ThreadGroup:
        return self.task.tg

    def may_ptrace(self) -> bool:
        """PTRACE_MODE_READ, as far as the model goes: root or the same uid."""
        if self.caller.is_root:
            return True
        c = self.task.tg.cred
        return self.task.tg.dumpable and self.caller.uid == c.uid == c.euid == c.suid
