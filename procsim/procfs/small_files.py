"""Small machine-wide files: /proc/version, the kernel sysctls ps and top
read (osrelease, hostname, domainname, pid_max, threads-max) and /sys/devices/system/cpu/online
and possible."""

from __future__ import annotations

from functools import lru_cache

from procsim.bitmap import list_str
from procsim.procfs.context import Ctx


def version(ctx: Ctx) -> bytes:
    """linux_proc_banner, resolved with osrelease at boot (procsim/utsname.py)."""
    return f"{ctx.kernel.config.version}\n".encode()


def osrelease(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.config.osrelease}\n".encode()


def reader_uts(ctx: Ctx):
    """The uts namespace of the reader (get_uts()): a simulated task's own,
    a real reader's the initial one."""
    return ctx.kernel.uts_of(ctx.kernel.tasks.get(ctx.caller.pid))


def hostname(ctx: Ctx) -> bytes:
    return reader_uts(ctx).nodename


def domainname(ctx: Ctx) -> bytes:
    return reader_uts(ctx).domainname


def pid_max(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.config.pid_max}\n".encode()


def threads_max(ctx: Ctx) -> bytes:
    """kernel.threads-max: the limit fork() enforces (Kernel.max_threads)."""
    return f"{ctx.kernel.max_threads}\n".encode()


def file_nr(ctx: Ctx) -> bytes:
    """fs.file-nr: open files (struct file, not fds), 0, fs.file-max."""
    f = ctx.kernel.files
    return f"{f.nr_files}\t0\t{f.max_files}\n".encode()


def file_max(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.files.max_files}\n".encode()


def nr_open(ctx: Ctx) -> bytes:
    return f"{ctx.kernel.files.nr_open}\n".encode()


@lru_cache(maxsize=16)
def _cpu_list(ncpu: int) -> bytes:
    return f"{list_str((1 << ncpu) - 1)}\n".encode()


def cpu_online(ctx: Ctx) -> bytes:
    return _cpu_list(ctx.kernel.config.nr_cpus)


def cpu_possible(ctx: Ctx) -> bytes:
    """Every possible CPU is online: no hotplug in the model."""
    return _cpu_list(ctx.kernel.config.nr_cpus)

