"""Resource limits (include/uapi/asm-generic/resource.h, kernel/sys.c):
the 16 rlimits of a thread group's signal struct, their boot values
(INIT_RLIMITS, raised for pid 1 as fork_init() and systemd do), inherited
on fork, changed by prlimit(2)'s rules.

What each limit stops is enforced where Linux enforces it (RLIMIT_NOFILE by
the fd table, RLIMIT_AS and RLIMIT_DATA by mmap and brk, RLIMIT_NPROC by
fork); this module is only the table and its rules."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.errors import KernelError

if TYPE_CHECKING:
    from procsim.kernel import Kernel

RLIM_INFINITY = (1 << 64) - 1

(RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_RSS, RLIMIT_NPROC, RLIMIT_NOFILE,
 RLIMIT_MEMLOCK, RLIMIT_AS, RLIMIT_LOCKS, RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_RTPRIO,
 RLIMIT_RTTIME) = range(16)
RLIM_NLIMITS = 16

# the names prlimit(1) and control use, by index
NAMES = ("cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as", "locks",
         "sigpending", "msgqueue", "nice", "rtprio", "rttime")

_STACK = 8 << 20          # _STK_LIM
MLOCK_LIMIT = 8 << 20     # 6.18's MLOCK_LIMIT
INR_OPEN_CUR, INR_OPEN_MAX = 1024, 4096
NR_OPEN = 1 << 20         # fs.nr_open: the ceiling of RLIMIT_NOFILE's hard limit
MQ_BYTES_MAX = 819200


@dataclass(frozen=True, slots=True)
class Rlimit:
    cur: int
    max: int


def init_rlimits(max_threads: int) -> list[Rlimit]:
    """INIT_RLIMITS, with fork_init()'s RLIMIT_NPROC and RLIMIT_SIGPENDING
    of max_threads / 2."""
    inf = Rlimit(RLIM_INFINITY, RLIM_INFINITY)
    half = Rlimit(max_threads // 2, max_threads // 2)
    r = [inf] * RLIM_NLIMITS
    r[RLIMIT_STACK] = Rlimit(_STACK, RLIM_INFINITY)
    r[RLIMIT_CORE] = Rlimit(0, RLIM_INFINITY)
    r[RLIMIT_NPROC] = half
    r[RLIMIT_SIGPENDING] = half
    r[RLIMIT_NOFILE] = Rlimit(INR_OPEN_CUR, INR_OPEN_MAX)
    r[RLIMIT_MEMLOCK] = Rlimit(MLOCK_LIMIT, MLOCK_LIMIT)
    r[RLIMIT_MSGQUEUE] = Rlimit(MQ_BYTES_MAX, MQ_BYTES_MAX)
    r[RLIMIT_NICE] = Rlimit(0, 0)
    r[RLIMIT_RTPRIO] = Rlimit(0, 0)
    return r


def check_new(old: Rlimit, new: Rlimit, resource: int, may_raise_hard: bool) -> None:
    """do_prlimit()'s checks: soft <= hard (EINVAL), RLIMIT_NOFILE's hard
    at most fs.nr_open (EPERM), and a raised hard limit only with
    CAP_SYS_RESOURCE (EPERM)."""
    if not 0 <= resource < RLIM_NLIMITS:
        raise OSError(errno.EINVAL, "no such resource")
    if new.cur > new.max:
        raise OSError(errno.EINVAL, "soft limit above the hard limit")
    if resource == RLIMIT_NOFILE and new.max > NR_OPEN:
        raise OSError(errno.EPERM, "nofile above fs.nr_open")
    if new.max > old.max and not may_raise_hard:
        raise OSError(errno.EPERM, "raising a hard limit needs CAP_SYS_RESOURCE")


def nproc_overlimit(nr_tasks: int, rlim: list[Rlimit], uid: int, capable: bool) -> bool:
    """copy_process(): the new task would make the real user's count of
    tasks (threads, zombies until reaped) exceed RLIMIT_NPROC; root
    (INIT_USER) and CAP_SYS_RESOURCE/CAP_SYS_ADMIN are exempt (EAGAIN)."""
    return nr_tasks + 1 > rlim[RLIMIT_NPROC].cur and uid != 0 and not capable


# -- what /proc/PID/limits prints (fs/proc/base.c lnames[]) ------------------------------

# (name, unit) by index; a limit without a unit ends its line after the hard limit
LNAMES = (("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
          ("Max stack size", "bytes"), ("Max core file size", "bytes"), ("Max resident set", "bytes"),
          ("Max processes", "processes"), ("Max open files", "files"), ("Max locked memory", "bytes"),
          ("Max address space", "bytes"), ("Max file locks", "locks"), ("Max pending signals", "signals"),
          ("Max msgqueue size", "bytes"), ("Max nice priority", None), ("Max realtime priority", None),
          ("Max realtime timeout", "us"))


def resource_index(name: str) -> int:
    """The index of a limit by its prlimit(1) name (`nofile`, `as`, ...);
    ValueError naming the known ones."""
    try:
        return NAMES.index(name)
    except ValueError:
        raise ValueError(f"no resource {name!r} (known: {', '.join(NAMES)})") from None


# -- the init system's policy (systemd), not the kernel's --------------------------------

# systemd's main() raises pid 1's own limits (bump_rlimit_nofile to fs.nr_open,
# bump_rlimit_memlock to HIGH_RLIMIT_MEMLOCK) and gives its services the limits it
# was started with, except DefaultLimitNOFILE=1024:524288 (HIGH_RLIMIT_NOFILE as
# the hard limit, so select() users keep a soft 1024).
HIGH_RLIMIT_MEMLOCK = 64 << 20
HIGH_RLIMIT_NOFILE = 512 * 1024
SYSTEMD_SERVICE_NOFILE = Rlimit(INR_OPEN_CUR, HIGH_RLIMIT_NOFILE)


def systemd_pid1(rlim: list[Rlimit]) -> list[Rlimit]:
    """pid 1's limits once systemd has bumped its own (never lowered)."""
    out = list(rlim)
    for res, high in ((RLIMIT_NOFILE, NR_OPEN), (RLIMIT_MEMLOCK, HIGH_RLIMIT_MEMLOCK)):
        out[res] = Rlimit(max(high, rlim[res].cur), max(high, rlim[res].max))
    return out


def systemd_service(boot: list[Rlimit]) -> list[Rlimit]:
    """A service's limits: the ones systemd was started with (the kernel's
    boot values), RLIMIT_NOFILE from DefaultLimitNOFILE."""
    out = list(boot)
    out[RLIMIT_NOFILE] = SYSTEMD_SERVICE_NOFILE
    return out


class ResourceSyscalls:
    """prlimit(2) as the Kernel's entry point
    (a Kernel mixin)."""

    def prlimit(self: "Kernel", pid: int, res: int, new: Rlimit | None = None,
                capable: bool | None = None) -> Rlimit:
        """prlimit(2) by the process itself: the old limit; with `new`, set
        it if do_prlimit() allows (a raised hard limit needs CAP_SYS_RESOURCE:
        `capable`, by default whether the process is root; the scenario
        loader sets limits as the init system does, capable)."""
        with self.lock:
            tg = self.task(pid).tg
            if not 0 <= res < RLIM_NLIMITS:
                raise KernelError(errno.EINVAL, f"prlimit: no resource {res}")
            old = tg.rlim[res]
            if new is not None:
                try:
                    check_new(old, new, res, tg.cred.euid == 0 if capable is None else capable)
                except OSError as e:
                    raise KernelError(e.errno, f"prlimit: {e.strerror}") from None
                tg.rlim[res] = new
                self._changed("rlimit", pid=tg.tgid, resource=res)
            return old
