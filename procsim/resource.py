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
