"""Capability sets, no_new_privs and seccomp: the rules of fork, exec and
setuid (security/commoncap.c), /proc/PID/status's lines, the scenario keys,
compared with this host where setpriv can make the same process."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from procsim import capability
from procsim.procfs import pid as P
from procsim.procfs.context import Caller, Ctx
from procsim.scenario import ScenarioError, build
from procsim.task import CAP_FULL

NET_BIND_SERVICE = 1 << 10
CAP_LINES = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")


def status(k, pid: int) -> dict[str, str]:
    text = P.status(Ctx(k, Caller(1, 0, 0), k.tasks[pid], False)).decode()
    return {key: val for key, val in (line.split(":\t", 1) for line in text.splitlines()) if key in CAP_LINES}


def host_status(*setpriv: str) -> dict[str, str]:
    """The capability lines of a `cat /proc/self/status` run under setpriv."""
    out = subprocess.run(["setpriv", *setpriv, "cat", "/proc/self/status"], check=True,
                         capture_output=True, text=True).stdout
    return {key: val for key, val in (line.split(":\t", 1) for line in out.splitlines()) if key in CAP_LINES}


def machine(**proc) -> tuple:
    k = build({"machine": {"nr_cpus": 2, "mem": "1G"},
               "process": [{"name": "svc", "argv": ["/usr/sbin/svc"], **proc}]})
    pid = next(t.tgid for t in k.tasks.values() if t.comm == "svc")
    return k, pid


needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                                   reason="needs setpriv (util-linux) run as root")


def test_root_default_lines() -> None:
    k, pid = machine()
    assert status(k, pid) == {"CapInh": "0000000000000000", "CapPrm": "000001ffffffffff",
                              "CapEff": "000001ffffffffff", "CapBnd": "000001ffffffffff",
                              "CapAmb": "0000000000000000", "NoNewPrivs": "0", "Seccomp": "0",
                              "Seccomp_filters": "0"}


def test_non_root_exec_keeps_only_ambient() -> None:
    k, pid = machine(uid=1000)
    assert status(k, pid)["CapPrm"] == status(k, pid)["CapEff"] == "0000000000000000"
    capability.set_caps(k, pid, permitted=NET_BIND_SERVICE | 1, effective=1, inheritable=NET_BIND_SERVICE,
                        ambient=NET_BIND_SERVICE)
    k.exec(pid, "/usr/bin/cat", ["cat"])
    s = status(k, pid)
    assert (s["CapPrm"], s["CapEff"], s["CapAmb"], s["CapInh"]) == ("0000000000000400",) * 4


def test_root_exec_gets_bounding_and_inheritable() -> None:
    k, pid = machine()
    capability.set_caps(k, pid, permitted=0, effective=0, bounding=0xff, inheritable=NET_BIND_SERVICE)
    k.exec(pid, "/usr/bin/cat", ["cat"])
    s = status(k, pid)
    assert s["CapPrm"] == s["CapEff"] == "00000000000004ff"
    assert s["CapBnd"] == "00000000000000ff"


def test_setuid_from_root_clears_and_fork_copies() -> None:
    k, pid = machine(no_new_privs=True, seccomp=2, seccomp_filters=3)
    capability.set_caps(k, pid, inheritable=NET_BIND_SERVICE, ambient=NET_BIND_SERVICE)
    k.set_cred(pid, 1000, 1000)
    s = status(k, pid)
    assert (s["CapPrm"], s["CapEff"], s["CapAmb"]) == ("0000000000000000",) * 3
    assert s["CapInh"] == "0000000000000400"
    child = k.fork(pid)
    assert status(k, child) == s
    assert (s["NoNewPrivs"], s["Seccomp"], s["Seccomp_filters"]) == ("1", "2", "3")


def test_setuid_euid_only_drops_effective() -> None:
    c = capability.task_fix_setuid
    from dataclasses import replace
    from procsim.task import Cred
    root = Cred.of(0, 0)
    new = c(root, replace(root, euid=1000, fsuid=1000))
    assert (new.cap_permitted, new.cap_effective) == (CAP_FULL, 0)
    back = c(new, replace(new, euid=0, fsuid=0))
    assert back.cap_effective == CAP_FULL


@needs_setpriv
def test_host_non_root_exec_with_ambient() -> None:
    host = host_status("--reuid=1000", "--regid=1000", "--clear-groups", "--inh-caps=+net_bind_service",
                       "--ambient-caps=+net_bind_service")
    bnd = int(host_status()["CapBnd"], 16)
    k, pid = machine()
    capability.set_caps(k, pid, bounding=bnd)
    k.set_cred(pid, 1000, 1000)
    # setpriv keeps caps over the setuid, then raises pI and pA (prctl PR_CAP_AMBIENT_RAISE)
    capability.set_caps(k, pid, permitted=NET_BIND_SERVICE, inheritable=NET_BIND_SERVICE,
                        ambient=NET_BIND_SERVICE)
    k.exec(pid, "/usr/bin/cat", ["cat"])
    assert status(k, pid) == host


@needs_setpriv
def test_host_root_exec_and_no_new_privs() -> None:
    host = host_status("--no-new-privs", "--inh-caps=+net_bind_service")
    bnd = int(host["CapBnd"], 16)
    k, pid = machine(no_new_privs=True, seccomp=int(host["Seccomp"]),
                     seccomp_filters=int(host["Seccomp_filters"]))
    capability.set_caps(k, pid, bounding=bnd, permitted=bnd, effective=bnd, inheritable=NET_BIND_SERVICE)
    k.exec(pid, "/usr/bin/cat", ["cat"])
    assert status(k, pid) == host


@pytest.mark.parametrize("proc, key", [
    ({"caps": {"permitted": "0xzz"}}, "caps.permitted"),
    ({"caps": {"permitted": "0x1" + "0" * 16}}, "permitted"),
    ({"caps": {"effective": "0x1", "permitted": "0x0"}}, "effective"),
    ({"caps": {"ambient": "0x400"}}, "ambient"),
    ({"caps": {"sticky": "0x0"}}, "caps.sticky"),
    ({"seccomp": 3}, "seccomp"),
    ({"seccomp": 1, "seccomp_filters": 2}, "seccomp_filters"),
    ({"no_new_privs": 1}, "no_new_privs"),
])
def test_scenario_errors_name_the_key(proc: dict, key: str) -> None:
    with pytest.raises(ScenarioError, match=key):
        machine(**proc)


def test_scenario_keys_render() -> None:
    k, pid = machine(uid=1000, caps={"permitted": "0x400", "effective": "0x400", "inheritable": "0x400",
                                     "ambient": "0x400", "bounding": "000001ffffffffff"},
                     no_new_privs=True, seccomp=2, seccomp_filters=1)
    s = status(k, pid)
    assert (s["CapPrm"], s["CapEff"], s["CapInh"], s["CapAmb"]) == ("0000000000000400",) * 4
    assert (s["NoNewPrivs"], s["Seccomp"], s["Seccomp_filters"]) == ("1", "2", "1")
