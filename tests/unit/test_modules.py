"""Loaded modules (procsim/module/): load/unload with delete_module's
errnos and nothing changed, holders and refcounts, Loading until init
returns, taints, and /proc/modules (m_show) and /sys/module/NAME as 6.18
prints them, addresses as kallsyms_show_value() allows."""

from __future__ import annotations

import errno
import os
import re

import pytest

from procfs_helpers import ROOT, errno_of, read_all
from procsim import Kernel, scenario
from procsim.commands import CommandError, execute
from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS

USER = Caller(os.getpid(), 1000, 1000, caps=0)
SYSLOG_ROOT = Caller(os.getpid(), 0, 0, caps=1 << 34)


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    k.create_init()
    return k


def run(k: Kernel, op: str, **args):
    return execute(k, op, args)


def err(k: Kernel, op: str, **args) -> int:
    fs = ProcFS(k)
    before = read_all(fs, "/proc/modules")
    with pytest.raises(CommandError) as e:
        execute(k, op, args)
    assert read_all(ProcFS(k), "/proc/modules") == before
    return e.value.errno


def test_m_show_lines_newest_first_with_users(k):
    run(k, "module_load", name="nf_defrag_ipv4", size=12288)
    run(k, "module_load", name="nf_conntrack", size=196608, uses="nf_defrag_ipv4")
    run(k, "module_load", name="xt_conntrack", size=12288, uses="nf_conntrack")
    run(k, "module_load", name="nf_nat", size=61440, uses="nf_conntrack")
    run(k, "module_load", name="vboxdrv", size=8192, taints="OE", permanent=True)
    text = read_all(ProcFS(k), "/proc/modules").decode()
    lines = text.splitlines()
    # each core after the last, page-aligned: 3, 48, 3 and 15 pages
    assert lines[0] == "vboxdrv 8192 0 [permanent], Live 0xffffffffc0045000 (OE)"
    assert lines[1] == "nf_nat 61440 0 - Live 0xffffffffc0036000"
    assert lines[2] == "xt_conntrack 12288 0 - Live 0xffffffffc0033000"
    assert lines[3] == "nf_conntrack 196608 2 nf_nat,xt_conntrack, Live 0xffffffffc0003000"
    assert lines[4] == "nf_defrag_ipv4 12288 1 nf_conntrack, Live 0xffffffffc0000000"


def test_addresses_follow_kptr_restrict(k):
    run(k, "module_load", name="dummy", size=4096)
    fs = ProcFS(k)
    k.config.kptr_restrict, k.config.perf_event_paranoid = 0, 2  # the defaults of a distribution
    assert read_all(fs, "/proc/modules", USER) == b"dummy 4096 0 - Live 0x0000000000000000\n"
    assert read_all(fs, "/proc/modules", SYSLOG_ROOT) == b"dummy 4096 0 - Live 0xffffffffc0000000\n"
    # kallsyms decides the same way for the same reader
    assert read_all(fs, "/proc/kallsyms", USER).startswith(b"0000000000000000 ")
    k.config.kptr_restrict = 2
    assert read_all(fs, "/proc/modules", SYSLOG_ROOT) == b"dummy 4096 0 - Live 0x0000000000000000\n"


def test_load_and_unload_errnos_change_nothing(k):
    run(k, "module_load", name="a", size=4096)
    run(k, "module_load", name="b", size=4096, uses="a")
    assert err(k, "module_load", name="a", size=4096) == errno.EEXIST
    assert err(k, "module_load", name="c", size=4096, uses="missing") == errno.ENOENT
    assert err(k, "module_load", name="bad-name", size=4096) == errno.EINVAL
    assert err(k, "module_load", name="c", size=4096, taints="Z") == errno.EINVAL
    assert err(k, "module_unload", name="nope") == errno.ENOENT
    assert err(k, "module_unload", name="a") == errno.EWOULDBLOCK  # b uses it
    run(k, "module_load", name="held", size=4096, refs=1)
    assert err(k, "module_unload", name="held") == errno.EWOULDBLOCK
    run(k, "module_load", name="perm", size=4096, permanent=True)
    assert err(k, "module_unload", name="perm") == errno.EBUSY
    user = k.spawn(["/bin/sh"], uid=1000, gid=1000)
    assert err(k, "module_load", name="c", size=4096, pid=user) == errno.EPERM
    assert err(k, "module_unload", name="b", pid=user) == errno.EPERM
    run(k, "module_unload", name="b")
    run(k, "module_unload", name="a")
    assert [m["name"] for m in run(k, "modules")] == ["perm", "held"]


def test_loading_until_init_returns(k):
    run(k, "module_load", name="slow", size=4096, init_seconds=5)
    fs = ProcFS(k)
    assert read_all(fs, "/proc/modules", ROOT).decode().split()[4] == "Loading"
    assert read_all(fs, "/sys/module/slow/initstate") == b"coming\n"
    assert err(k, "module_unload", name="slow") == errno.EBUSY
    k.advance(5)
    assert read_all(fs, "/sys/module/slow/initstate") == b"live\n"
    run(k, "module_unload", name="slow")


def test_sys_module_attributes(k):
    run(k, "module_load", name="a", size=8192, taints="O")
    run(k, "module_load", name="b", size=4096, uses="a")
    fs = ProcFS(k)
    assert read_all(fs, "/sys/module/a/refcnt") == b"1\n"
    assert read_all(fs, "/sys/module/a/coresize") == b"8192\n"
    assert read_all(fs, "/sys/module/a/taint") == b"O\n"
    assert read_all(fs, "/sys/module/b/taint") == b"\n"
    assert fs.readdir("/sys/module/a/holders", ROOT)[-1:] == ["b"]
    assert fs.readlink("/sys/module/a/holders/b", ROOT) == "../../b"
    assert errno_of(fs.getattr, "/sys/module/c", ROOT) == errno.ENOENT
    run(k, "module_unload", name="b")
    assert errno_of(fs.getattr, "/sys/module/b", ROOT) == errno.ENOENT
    assert read_all(fs, "/sys/module/a/refcnt") == b"0\n"


def test_the_default_machine_loads_conntrack_and_its_parameters():
    k = scenario.load()
    fs = ProcFS(k)
    names = [l.split()[0] for l in read_all(fs, "/proc/modules").decode().splitlines()]
    assert names == ["nft_ct", "nf_conntrack", "nf_defrag_ipv6", "nf_defrag_ipv4", "nf_tables", "nfnetlink"]
    assert read_all(fs, "/sys/module/nf_conntrack/parameters/hashsize") == \
        read_all(fs, "/proc/sys/net/netfilter/nf_conntrack_buckets")
    assert k.netfilter.ct(k.net.net(k.init_ns["net"])).enabled
    assert re.fullmatch(rb"nf_conntrack 196608 1 nft_ct, Live 0x[0-9a-f]{16}\n",
                        read_all(fs, "/proc/modules").splitlines(keepends=True)[1])
