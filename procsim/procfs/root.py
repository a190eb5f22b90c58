"""/proc itself (fs/proc/root.c): the global files, /proc/sys, and, after
the rows, one directory per process (proc_pid_lookup, proc_pid_readdir)."""

from __future__ import annotations

import errno

from procsim.kernel import Kernel
from procsim.procfs import (block, cgroupfs, cpuinfo, crypto, interrupts, meminfo, misc_files, mounts, net,
                            modules, nf_conntrack,
                            observer, oom, pagemap, pressure, schedstat, small_files, stat, sysctl, sysctl_misc,
                            vmstat, zoneinfo)
from procsim.procfs.base import TGID_DIR
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import Bin, Dir, DynDir, Link, Node, Show


def _self(ctx: Ctx) -> str:
    return str(ctx.caller.pid)


def _thread_self(ctx: Ctx) -> str:
    pid = ctx.caller.pid
    return f"{pid}/task/{pid}"


# Global files, with the kernel's EIO for writes to them.
_GLOBAL = dict(write_errno=errno.EIO)
PROC_ENTRIES = (
    Show("buddyinfo", zoneinfo.buddyinfo, **_GLOBAL),
    Show("cgroups", cgroupfs.proc_cgroups, **_GLOBAL),
    Show("cmdline", misc_files.cmdline, **_GLOBAL),
    Show("consoles", misc_files.consoles, **_GLOBAL),
    Show("cpuinfo", cpuinfo.cpuinfo, records=True, **_GLOBAL),
    Show("crypto", crypto.crypto, records=True, **_GLOBAL),
    Show("devices", misc_files.devices, **_GLOBAL),
    Show("diskstats", block.diskstats, records=True, **_GLOBAL),
    Show("filesystems", block.filesystems, **_GLOBAL),
    Show("interrupts", interrupts.interrupts, records=True, **_GLOBAL),
    # read by position, never cached: what it shows depends on the opener's capabilities
    Bin("kallsyms", lambda ctx, size, off: misc_files.kallsyms(ctx)[off:off + size], 0o444, **_GLOBAL),
    Show("key-users", misc_files.key_users, **_GLOBAL),
    Bin("kpagecount", pagemap.kpagecount, **_GLOBAL),
    Bin("kpageflags", pagemap.kpageflags, **_GLOBAL),
    Show("loadavg", stat.loadavg, **_GLOBAL),
    Show("locks", misc_files.locks, **_GLOBAL),
    Show("meminfo", meminfo.meminfo, **_GLOBAL),
    Show("misc", misc_files.misc, **_GLOBAL),
    # read by position, never cached: the addresses depend on the opener (kallsyms_show_value)
    Bin("modules", lambda ctx, size, off: modules.proc_modules(ctx)[off:off + size], 0o444, **_GLOBAL),
    Link("mounts", mounts.self_mounts, size=len("self/mounts")),
    Link("net", net.proc_net_link, size=len("self/net")),
    Show("pagetypeinfo", zoneinfo.pagetypeinfo, 0o400, **_GLOBAL),
    Show("partitions", block.partitions, records=True, **_GLOBAL),
    Dir("pressure", pressure.PRESSURE),
    Dir.of("procsim", Show("oom_log", oom.oom_log, **_GLOBAL)),  # [ext]
    Show("schedstat", schedstat.schedstat, **_GLOBAL),
    Show("slabinfo", misc_files.slabinfo, 0o400, **_GLOBAL),
    Show("softirqs", interrupts.softirqs, **_GLOBAL),
    Show("stat", stat.stat, **_GLOBAL),
    Show("swaps", block.swaps, records=True, **_GLOBAL),
    Dir.of("sysvipc", Show("msg", misc_files.sysvipc_msg, **_GLOBAL), Show("sem", misc_files.sysvipc_sem, **_GLOBAL),
           Show("shm", misc_files.sysvipc_shm_rows, **_GLOBAL)),
    Show("uptime", stat.uptime, **_GLOBAL),
    Show("version", small_files.version, **_GLOBAL),
    Show("vmallocinfo", misc_files.vmallocinfo, 0o400, records=True, **_GLOBAL),
    Show("vmstat", vmstat.vmstat, **_GLOBAL),
    Show("zoneinfo", zoneinfo.zoneinfo, **_GLOBAL),
    Dir.of("sys", Dir.of("fs",
                         sysctl_misc.DCACHE[0],
                         Bin("file-max", sysctl.dointvec_read(small_files.file_max), 0o644, sysctl.file_max_write),
                         Show("file-nr", small_files.file_nr, deny_write=True),
                         *sysctl_misc.DCACHE[1:],
                         Bin("nr_open", sysctl.dointvec_read(small_files.nr_open), 0o644, sysctl.nr_open_write)),
                  Dir.of("kernel",
                         Bin("domainname", sysctl.dostring_read(small_files.domainname), 0o644,
                             sysctl.domainname_write),
                         Bin("hostname", sysctl.dostring_read(small_files.hostname), 0o644, sysctl.hostname_write),
                         sysctl_misc.KPTR_RESTRICT,
                         Show("osrelease", small_files.osrelease, deny_write=True),
                         Show("ostype", sysctl_misc.ostype, deny_write=True),
                         sysctl_misc.PERF_EVENT_PARANOID,
                         Bin("pid_max", sysctl.dointvec_read(small_files.pid_max), 0o644, sysctl.pid_max_write),
                         sysctl_misc.PTY,
                         sysctl_misc.RANDOM,
                         Bin("threads-max", sysctl.dointvec_read(small_files.threads_max), 0o644,
                             sysctl.threads_max_write),
                         Show("version", sysctl_misc.uts_version, deny_write=True)),
                  Dir.of("net", nf_conntrack.NETFILTER, nf_conntrack.MAX_ROW),
                  sysctl_misc.VM),
    Link("self", _self),
    Link("thread-self", _thread_self),
)


def _pid_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    if name.isdigit() and name == str(int(name)):
        t = kernel.tasks.get(int(name))
        if t is not None and not (t.dead and not t.is_leader):
            return Node("dir", TGID_DIR, t), False
        if int(name) == caller.pid:
            # the caller is not simulated: it sees its own real directory
            real = observer.real_path(caller.pid)
            observer.lstat(real)
            return Node("dir", observer=real), True
    raise OSError(errno.ENOENT, name)


def _pid_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return [str(p) for p in sorted(kernel.groups)]


PROC = DynDir("proc", PROC_ENTRIES, lookup=_pid_lookup, readdir=_pid_readdir)
