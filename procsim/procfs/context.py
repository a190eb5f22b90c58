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


CAP_SYS_PTRACE = 19


def ptrace_may_read(ctx: Ctx) -> bool:
    """__ptrace_may_access(PTRACE_MODE_READ_FSCREDS) of the reader on the
    task: the same uid and gid in all three (real, effective, saved), or
    CAP_SYS_PTRACE; a non-dumpable mm needs CAP_SYS_PTRACE; then commoncap:
    the task's capabilities within the reader's (its effective set stands
    for the permitted one), or CAP_SYS_PTRACE."""
    caller, c, tg = ctx.caller, ctx.task.tg.cred, ctx.task.tg
    same = caller.uid == c.uid == c.euid == c.suid and caller.gid == c.gid == c.egid == c.sgid
    ptracer = None  # capable(CAP_SYS_PTRACE), looked up once if needed

    def has_ptrace() -> bool:
        nonlocal ptracer
        if ptracer is None:
            ptracer = caller.capable(CAP_SYS_PTRACE)
        return ptracer

    if not same and not has_ptrace():
        return False
    if tg.mm is not None and not tg.dumpable and not has_ptrace():
        return False
    caps = caller.caps if caller.caps is not None else _host_cap_eff(caller.pid)
    if caps is None:
        caps = c.cap_eff if caller.is_root else 0
    return c.cap_eff & ~caps == 0 or has_ptrace()
