"""Namespaces, cgroups and the identity files through a real mount: ps's
cgroup and session columns, psutil's ids, the ns links, compared with the
model (the default scenario's systemd layout)."""

from __future__ import annotations

import os

import psutil
import pytest

from fusehelpers import psutil_procfs

pytestmark = pytest.mark.fuse

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def run(m, *argv: str) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r.stdout


def test_ps_cgroup_and_session_columns(machine):
    out = run(machine, "ps", "-eo", "pid,cgroup:60,lsession")
    rows = {}
    for line in out.splitlines()[1:]:
        f = line.split()
        rows[int(f[0])] = f[1:]
    model = machine.ctl.cgroups()
    for path, pids in model.items():
        for pid in pids:
            if pid in rows:
                # procps leaves out the root cgroup ("N:...:/"): "-", as on a real host
                assert rows[pid][0] == (f"0::{path}" if path != "/" else "-"), pid
    session = model["/user.slice/user-1000.slice/session-1.scope"]
    assert session and all(rows[p][1] == "1" for p in session)  # libsystemd: session-1.scope
    assert rows[1][1] == "-"


def test_ns_links_and_identity_files(machine):
    proc = machine.proc
    assert os.readlink(f"{proc}/1/ns/net") == "net:[4026531833]"
    assert sorted(os.listdir(f"{proc}/1/ns")) == sorted(
        ["cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children", "user", "uts"])
    with open(f"{proc}/1/uid_map") as f:
        assert f.read() == "         0          0 4294967295\n"
    bash = next(p["pid"] for p in machine.ctl.ps() if p["cmdline"][:1] == ["-bash"])
    assert open(f"{proc}/{bash}/loginuid").read() == "1000"
    assert open(f"{proc}/{bash}/sessionid").read() == "1"
    assert open(f"{proc}/{bash}/cgroup").read() == "0::/user.slice/user-1000.slice/session-1.scope\n"


def test_psutil_uids_gids(machine):
    model = {p["pid"]: p["uid"] for p in machine.ctl.ps()}
    with psutil_procfs(machine):
        seen = 0
        for pid, euid in model.items():
            p = psutil.Process(pid)
            u, g = p.uids(), p.gids()
            assert u.effective == euid, pid
            assert g.real >= 0
            seen += 1
    assert seen == len(model)
    with psutil_procfs(machine):
        assert psutil.Process(1).uids() == (0, 0, 0)
