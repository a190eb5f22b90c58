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


CONTAINER = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "container.toml")


def _ns_inums(proc: str, pid: int) -> dict[str, int]:
    """What each ns/ link names (`net:[4026531833]`), as the model says it."""
    out = {}
    for kind in ("mnt", "net", "pid", "uts", "ipc", "cgroup", "user", "time"):
        target = os.readlink(f"{proc}/{pid}/ns/{kind}")
        assert target.startswith(f"{kind}:[") and target.endswith("]"), target
        out[kind] = int(target[len(kind) + 2:-1])
    return out


def test_ns_links_stat_to_the_namespace_inode(procsim_mount):
    """stat() follows an ns link to the namespace's nsfs inode: st_ino is
    the inum (Linux: a regular 0444 file of nsfs); lstat is the link."""
    m = procsim_mount(scenario=CONTAINER)
    web = next(p["pid"] for p in m.ctl.ps() if p["comm"] == "nginx" and p["uid"] == 0)
    for pid in (1, web):
        for kind, inum in _ns_inums(m.proc, pid).items():
            st = os.stat(f"{m.proc}/{pid}/ns/{kind}")
            assert (st.st_ino, st.st_mode, st.st_uid) == (inum, 0o100444, 0), (pid, kind)
            assert os.lstat(f"{m.proc}/{pid}/ns/{kind}").st_ino != inum
    assert os.stat(f"{m.proc}/{web}/ns/net").st_ino != os.stat(f"{m.proc}/1/ns/net").st_ino
    assert os.stat(f"{m.proc}/{web}/ns/user").st_ino == os.stat(f"{m.proc}/1/ns/user").st_ino
    # the target's name is not in ns/'s listing, and another name is not there
    assert sorted(os.listdir(f"{m.proc}/{web}/ns"))[0] == "cgroup"
    net = os.readlink(f"{m.proc}/1/ns/net")
    with pytest.raises(FileNotFoundError):
        os.stat(f"{m.proc}/{web}/ns/{net}")  # not one of this task's namespaces
    with open(f"{m.proc}/1/ns/net", "rb") as f:  # nsfs has no ->read
        with pytest.raises(OSError) as e:
            f.read()
        assert e.value.errno == 22


def test_lsns_and_pgrep_ns(procsim_mount):
    m = procsim_mount(scenario=CONTAINER)
    ps = m.ctl.ps()
    container = sorted(p["pid"] for p in ps if p["comm"] == "nginx")
    web = container[0]
    inside, host = _ns_inums(m.proc, web), _ns_inums(m.proc, 1)
    rows = {}
    for line in run(m, "lsns", "-n", "-o", "NS,TYPE,NPROCS,PID").splitlines():
        ns, kind, nprocs, pid = line.split()
        rows[int(ns)] = (kind, int(nprocs), int(pid))
    for kind in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
        assert rows[inside[kind]] == (kind, len(container), web), kind
        assert rows[host[kind]] == (kind, len(ps) - len(container), 1), kind
    assert rows[host["user"]] == ("user", len(ps), 1)  # no user namespace of its own
    # pgrep --ns: the processes sharing every namespace of a pid (or those named)
    assert sorted(map(int, run(m, "pgrep", "--ns", str(web)).split())) == container
    assert sorted(map(int, run(m, "pgrep", "--ns", str(web), "--nslist", "user").split())) == \
        sorted(p["pid"] for p in ps)
    assert web not in map(int, run(m, "pgrep", "--ns", "1", "--nslist", "net").split())


def test_pkill_0_and_pgrep_net_ns_match_as_the_model_says(procsim_mount):
    """pkill -0 --ns PID signals nothing but exits 0 when a process matches, 1
    when none does (procps); pgrep --ns PID --nslist net names the processes of
    PID's network namespace. A process unshared into a namespace of its own
    matches alone, then with its fork; the host's processes match only theirs."""
    m = procsim_mount(scenario=CONTAINER)
    loner = m.ctl.call("spawn", argv=["/usr/bin/sleeper"])
    m.ctl.call("unshare", pid=loner, flags="net")

    def model_net(pid: int) -> list[int]:
        mine = _ns_inums(m.proc, pid)["net"]
        return sorted(p["pid"] for p in m.ctl.ps() if _ns_inums(m.proc, p["pid"])["net"] == mine)

    def pgrep_net(pid: int) -> list[int]:
        return sorted(map(int, run(m, "pgrep", "--ns", str(pid), "--nslist", "net").split()))

    def pkill0(*argv: str) -> int:
        r = m.run(["pkill", "-0", *argv], capture_output=True, text=True, timeout=120, env=ENV)
        assert r.returncode in (0, 1), r.stderr
        return r.returncode

    assert pgrep_net(loner) == model_net(loner) == [loner]
    assert pkill0("--ns", str(loner), "--nslist", "net", "sleeper") == 0
    assert pkill0("--ns", str(loner), "--nslist", "net", "nginx") == 1  # nginx lives elsewhere
    assert pkill0("--ns", "1", "--nslist", "net", "sleeper") == 1
    child = m.ctl.call("fork", pid=loner)
    assert pgrep_net(loner) == model_net(loner) == sorted([loner, child])
    assert loner not in pgrep_net(1) and pgrep_net(1) == model_net(1)
    m.ctl.call("exit", pid=loner)
    m.ctl.call("exit", pid=child)
    assert pkill0("--ns", "1", "--nslist", "net", "sleeper") == 1
