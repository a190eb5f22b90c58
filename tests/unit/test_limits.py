"""/proc/PID/limits (fs/proc/base.c proc_pid_limits), the boot values an
init system leaves, the prlimit command and the scenario's `limits`."""

from __future__ import annotations

import errno
import os
import resource as host
import stat
import tomllib

import pytest

from hostinfo import requires_host
from procfs_helpers import NOBODY, ROOT, errno_of, read_all
from procsim import Kernel, KernelConfig
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS
from procsim.resource import (HIGH_RLIMIT_MEMLOCK, NAMES, NR_OPEN, RLIM_INFINITY, RLIM_NLIMITS, RLIMIT_MEMLOCK,
                              RLIMIT_NOFILE, RLIMIT_RSS, Rlimit, init_rlimits)
from procsim.scenario import ScenarioError, build


def _host_rlimits() -> list[Rlimit]:
    def conv(v: int) -> int:
        return RLIM_INFINITY if v == host.RLIM_INFINITY else v
    return [Rlimit(*map(conv, host.getrlimit(i))) for i in range(RLIM_NLIMITS)]


def _cmd_errno(k: Kernel, op: str, **args) -> int:
    with pytest.raises(CommandError) as e:
        execute(k, op, args)
    return e.value.errno


@requires_host(kernel="6.18")
def test_limits_byte_for_byte_as_this_hosts(fs: ProcFS) -> None:
    """A simulated process given this process's own limits prints the file
    this host prints for it, for the process and its thread."""
    k = fs.kernel
    p = k.spawn(["/usr/bin/python3"])
    tid = k.clone_thread(p)
    for i, lim in enumerate(_host_rlimits()):
        k.prlimit(p, i, lim, capable=True)
    with open("/proc/self/limits", "rb") as f:
        want = f.read()
    assert read_all(fs, f"/proc/{p}/limits") == want
    assert read_all(fs, f"/proc/{p}/task/{tid}/limits") == want
    assert read_all(fs, f"/proc/{p}/limits", NOBODY) == want  # 0444: anyone


@requires_host(kernel="6.18", features=("kthreadd",))
def test_kthreadd_limits_are_init_rlimits_as_on_this_host() -> None:
    """Kernel threads keep INIT_RLIMITS (no init system touches them): the
    model's kthreadd prints this host's /proc/2/limits, given the host's
    boot threads-max (RLIMIT_NPROC and RLIMIT_SIGPENDING are max_threads/2)."""
    with open("/proc/sys/kernel/threads-max") as f:
        threads_max = int(f.read())
    with open("/proc/2/limits", "rb") as f:
        want = f.read()
    if f"Max processes             {threads_max // 2:<20} ".encode() not in want:
        pytest.skip("threads-max was changed since boot: kthreadd's RLIMIT_NPROC tells another value")
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30))
    k.set_max_threads(threads_max)
    k.create_init()
    k.kthread("kthreadd", pid=2)
    kw = k.kthread("kworker/0:0")
    fs = ProcFS(k)
    assert read_all(fs, "/proc/2/limits") == want
    assert read_all(fs, f"/proc/{kw}/limits") == want


def test_modes_as_this_host(fs: ProcFS) -> None:
    """limits 0444, io 0400, for the process and under task/TID (the host's
    own files say the same)."""
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"], uid=1000, gid=1000)
    for d in (f"/proc/{p}", f"/proc/{p}/task/{p}"):
        assert fs.getattr(f"{d}/limits", ROOT).mode & 0o7777 == 0o444
        assert fs.getattr(f"{d}/io", ROOT).mode & 0o7777 == 0o400
        assert fs.getattr(f"{d}/io", ROOT).uid == 1000
    for name, mode in (("limits", 0o444), ("io", 0o400)):
        if os.path.exists(f"/proc/self/{name}"):
            assert stat.S_IMODE(os.stat(f"/proc/self/{name}").st_mode) == mode
            assert stat.S_IMODE(os.stat(f"/proc/thread-self/{name}").st_mode) == mode


def test_format_columns_and_unlimited(fs: ProcFS) -> None:
    """The kernel's layout: %-25s %-20s %-20s %-10s, `unlimited` for
    RLIM_INFINITY, no unit column for the nice and rtprio limits."""
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"])
    k.prlimit(p, RLIMIT_RSS, Rlimit(12345, RLIM_INFINITY))
    lines = read_all(fs, f"/proc/{p}/limits").decode().split("\n")
    assert lines[0] == "Limit                     Soft Limit           Hard Limit           Units     "
    assert len(lines) == 18 and lines[-1] == ""
    assert lines[6] == "Max resident set          12345                unlimited            bytes     "
    assert lines[14] == "Max nice priority         0                    0                    "
    assert lines[15] == "Max realtime priority     0                    0                    "
    assert lines[16] == "Max realtime timeout      unlimited            unlimited            us        "
    # stat field 25 (rsslim) is the same limit's soft value
    st = read_all(fs, f"/proc/{p}/stat").decode()
    assert st[st.rindex(")") + 2:].split()[22] == "12345"


def test_boot_values_an_init_system_sets() -> None:
    """systemd's policy: pid 1 bumps its own nofile to fs.nr_open and
    memlock to 64 MiB; a service gets nofile 1024:524288 and the kernel's
    other values; its children inherit; kernel threads keep INIT_RLIMITS."""
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30))
    k.create_init()
    k.kthread("kthreadd", pid=2)
    kw = k.kthread("kworker/0:1")
    boot = init_rlimits(k.max_threads)
    init = k.groups[1].rlim
    assert init[RLIMIT_NOFILE] == Rlimit(NR_OPEN, NR_OPEN)
    assert init[RLIMIT_MEMLOCK] == Rlimit(HIGH_RLIMIT_MEMLOCK, HIGH_RLIMIT_MEMLOCK)
    assert k.groups[kw].rlim == k.groups[2].rlim == boot
    svc = k.spawn(["/usr/sbin/sshd", "-D"])
    want = list(boot)
    want[RLIMIT_NOFILE] = Rlimit(1024, 524288)
    assert k.groups[svc].rlim == want
    shell = k.spawn(["/usr/bin/bash"], parent=svc, uid=1000, gid=1000)
    assert k.groups[shell].rlim == want
    assert k.groups[k.fork(1)].rlim == init  # a plain fork of pid 1 inherits pid 1's own


def test_prlimit_command_sets_and_refuses() -> None:
    k = build(tomllib.loads('[[process]]\nname = "app"\nargv = ["/usr/bin/app"]\nuid = 1000\n'), clock="manual")
    p = next(g.tgid for g in k.groups.values() if g.cmdline == ["/usr/bin/app"])
    r = execute(k, "prlimit", {"pid": p, "resource": "nofile", "soft": "100"})
    assert r == {"resource": "nofile", "soft": 100, "hard": 524288, "old_soft": 1024, "old_hard": 524288}
    assert execute(k, "prlimit", {"pid": p, "resource": "core", "soft": "unlimited"})["soft"] == "unlimited"
    all_ = execute(k, "prlimit", {"pid": p})
    assert list(all_) == list(NAMES) and all_["nofile"] == {"soft": 100, "hard": 524288}
    before = list(k.groups[p].rlim)
    assert _cmd_errno(k, "prlimit", pid=p, resource="nofile", soft=600000) == errno.EINVAL   # soft > hard
    assert _cmd_errno(k, "prlimit", pid=p, resource="nofile", hard=600000) == errno.EPERM    # raise, not root
    assert _cmd_errno(k, "prlimit", pid=p, resource="nofiles", soft=1) == errno.EINVAL       # no such name
    assert _cmd_errno(k, "prlimit", pid=p, resource="nofile", soft="lots") == errno.EINVAL   # not a limit
    assert _cmd_errno(k, "prlimit", pid=p, resource="nofile", soft=-1) == errno.EINVAL       # not a limit
    assert _cmd_errno(k, "prlimit", pid=p, resource="nofile", soft=True) == errno.EINVAL     # not a number
    assert _cmd_errno(k, "prlimit", pid=p, soft=1) == errno.EINVAL                          # no resource
    assert _cmd_errno(k, "prlimit", pid=99999, resource="nofile") == errno.ESRCH
    assert _cmd_errno(k, "prlimit", pid=p, resource="nofile", hard=600000, privileged="yes") == errno.EINVAL
    assert k.groups[p].rlim == before
    r = execute(k, "prlimit", {"pid": p, "resource": "nofile", "hard": 600000, "privileged": True})
    assert (r["soft"], r["hard"]) == (100, 600000)                                           # an administrator
    # root may raise a hard limit, up to fs.nr_open for nofile
    assert execute(k, "prlimit", {"pid": 1, "resource": "as", "soft": "1G", "hard": "2G"})["hard"] == 2 << 30
    assert execute(k, "prlimit", {"pid": 1, "resource": "as", "hard": "unlimited"})["hard"] == "unlimited"
    assert _cmd_errno(k, "prlimit", pid=1, resource="nofile", hard=NR_OPEN + 1) == errno.EPERM


def test_scenario_limits() -> None:
    doc = tomllib.loads('''
[[process]]
name = "db"
argv = ["/usr/bin/postgres"]
uid = 999
limits = { nofile = [4096, 65536], core = "unlimited", memlock = "64M", nproc = 100 }
[[process]]
name = "child"
parent = "db"
argv = ["/usr/bin/postgres", "worker"]
''')
    k = build(doc, clock="manual")
    db, child = (next(g.tgid for g in k.groups.values() if g.cmdline[:2] == argv)
                 for argv in (["/usr/bin/postgres"], ["/usr/bin/postgres", "worker"]))
    r = k.groups[db].rlim
    # set as the service manager does, before the uid changes: a raised hard limit is allowed
    assert r[RLIMIT_NOFILE] == Rlimit(4096, 65536) and r[RLIMIT_MEMLOCK] == Rlimit(64 << 20, 64 << 20)
    assert r[4] == Rlimit(RLIM_INFINITY, RLIM_INFINITY) and r[6] == Rlimit(100, 100)
    assert k.groups[child].rlim == r
    fs = ProcFS(k)
    assert b"Max open files            4096                 65536                files     \n" in \
        read_all(fs, f"/proc/{db}/limits")
    for bad, msg in (('{ nofiles = 1 }', "no resource 'nofiles'"), ('{ nofile = [1, 2, 3] }', "[soft, hard]"),
                     ('{ nofile = [10, 5] }', "soft limit above the hard limit"), ('{ as = "big" }', "expected a limit"),
                     ('{ nofile = 2000000 }', "fs.nr_open")):
        with pytest.raises(ScenarioError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            build(tomllib.loads(f'[[process]]\nargv = ["/usr/bin/x"]\nlimits = {bad}\n'), clock="manual")


def test_zombie_and_kernel_thread_limits(fs: ProcFS) -> None:
    """A zombie's signal struct (and limits) stay until it is reaped;
    kernel threads have limits too."""
    k = fs.kernel
    parent = k.spawn(["/usr/bin/bash"])
    z = k.spawn(["/usr/bin/true"], parent=parent)
    k.prlimit(z, RLIMIT_NOFILE, Rlimit(77, 77))
    k.exit_group(z)
    assert b"Max open files            77 " in read_all(fs, f"/proc/{z}/limits")
    k.wait(parent, z)
    assert errno_of(read_all, fs, f"/proc/{z}/limits") == errno.ENOENT
    assert read_all(fs, "/proc/2/limits").startswith(b"Limit ")


def test_scenario_limits_come_before_the_policy() -> None:
    """A non-root process may take SCHED_FIFO up to its RLIMIT_RTPRIO, so
    `limits` is applied before `policy` (without it: EPERM)."""
    doc = '[[process]]\nargv = ["/usr/bin/audio"]\nuid = 1000\npolicy = "fifo"\nrtprio = 5\n'
    k = build(tomllib.loads(doc + "limits = { rtprio = 10 }\n"), clock="manual")
    t = next(g.leader for g in k.groups.values() if g.cmdline == ["/usr/bin/audio"])
    assert (t.policy, t.rt_priority) == (1, 5)
    with pytest.raises(ScenarioError):
        build(tomllib.loads(doc), clock="manual")
