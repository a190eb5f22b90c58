"""procsim/resource.py: the rlimit table, its boot values and prlimit's
rules (kernel/sys.c do_prlimit)."""

from __future__ import annotations

import errno
import resource as host
import subprocess
import sys

import pytest

from procfs_helpers import errno_of
from procsim import Kernel
from procsim.resource import (NR_OPEN, RLIM_INFINITY, RLIMIT_AS, RLIMIT_CORE, RLIMIT_MEMLOCK, RLIMIT_MSGQUEUE,
                              RLIMIT_NICE, RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_RTPRIO, RLIMIT_RTTIME,
                              RLIMIT_SIGPENDING, RLIMIT_STACK, Rlimit)
from invariants import boot


def machine() -> Kernel:
    return boot(nr_cpus=2, kthreadd=False)


def test_boot_values_and_inheritance() -> None:
    k = machine()
    k.kthread("kthreadd", pid=2)
    boot = k.groups[2].rlim  # INIT_RLIMITS (pid 1's nofile is systemd's: test_limits.py)
    assert boot[RLIMIT_NOFILE] == Rlimit(1024, 4096) and boot[RLIMIT_STACK] == Rlimit(8 << 20, RLIM_INFINITY)
    assert boot[RLIMIT_NPROC] == boot[RLIMIT_SIGPENDING] == Rlimit(k.max_threads // 2, k.max_threads // 2)
    p = k.spawn(["app"])
    svc_nofile = k.groups[p].rlim[RLIMIT_NOFILE]
    k.prlimit(p, RLIMIT_NOFILE, Rlimit(65536, 65536))
    child = k.fork(p)
    assert k.groups[child].rlim[RLIMIT_NOFILE] == Rlimit(65536, 65536)
    k.prlimit(child, RLIMIT_NOFILE, Rlimit(10, 10))
    assert k.groups[p].rlim[RLIMIT_NOFILE] == Rlimit(65536, 65536) != svc_nofile  # the parent's own copy


@pytest.mark.parametrize("res", [RLIMIT_STACK, RLIMIT_CORE, RLIMIT_MEMLOCK, RLIMIT_MSGQUEUE, RLIMIT_NICE,
                                 RLIMIT_RTPRIO, RLIMIT_RTTIME, RLIMIT_AS])
def test_boot_values_that_no_init_system_changes_are_the_hosts(res: int) -> None:
    """INIT_RLIMITS as this host's processes inherited them (systemd and
    shells leave these alone)."""
    cur, mx = host.getrlimit(res)
    want = Rlimit(RLIM_INFINITY if cur == host.RLIM_INFINITY else cur, RLIM_INFINITY if mx == host.RLIM_INFINITY else mx)
    k = machine()
    svc = k.spawn(["/usr/sbin/service"])  # what systemd gives a service: the kernel's boot values
    if want != k.groups[svc].rlim[res]:
        pytest.skip(f"this host's limit {res} was changed by its init or login: {want}")
    assert k.groups[svc].rlim[res] == want


def test_prlimit_rules() -> None:
    k = machine()
    p = k.spawn(["app"], uid=1000, gid=1000)
    k.prlimit(p, RLIMIT_NOFILE, Rlimit(1024, 4096))  # (a service's hard limit is systemd's 524288)
    before = list(k.groups[p].rlim)
    assert errno_of(k.prlimit, p, RLIMIT_NOFILE, Rlimit(5000, 4096)) == errno.EINVAL   # soft > hard
    assert errno_of(k.prlimit, p, RLIMIT_NOFILE, Rlimit(1024, 8192)) == errno.EPERM    # raising hard, not root
    assert errno_of(k.prlimit, p, 16, Rlimit(1, 1)) == errno.EINVAL                     # no such resource
    assert k.groups[p].rlim == before
    assert k.prlimit(p, RLIMIT_NOFILE, Rlimit(10, 2048)) == Rlimit(1024, 4096)         # lowering: anyone
    assert errno_of(k.prlimit, p, RLIMIT_NOFILE, Rlimit(10, 4096)) == errno.EPERM      # ... and for good
    r = k.spawn(["root"])
    assert errno_of(k.prlimit, r, RLIMIT_NOFILE, Rlimit(1, NR_OPEN + 1)) == errno.EPERM  # past fs.nr_open
    k.prlimit(r, RLIMIT_NOFILE, Rlimit(NR_OPEN, NR_OPEN))
    assert k.groups[r].rlim[RLIMIT_NOFILE] == Rlimit(NR_OPEN, NR_OPEN)


def test_prlimit_against_this_host() -> None:
    """The same errnos from the real prlimit(2) of an unprivileged child."""
    code = ("import ctypes, os, resource as r\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "s, h = r.getrlimit(r.RLIMIT_NOFILE)\n"
            "out = []\n"
            "for new in ((h + 1, h), (s, h + 1)):\n"
            "    lim = (ctypes.c_uint64 * 2)(*new)\n"
            "    out.append(0 if libc.prlimit(0, r.RLIMIT_NOFILE, lim, None) == 0 else ctypes.get_errno())\n"
            "print(out)")
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot run an unprivileged child here: {res.stderr.strip()[:200]}")
    assert res.stdout.strip() == f"[{errno.EINVAL}, {errno.EPERM}]"
