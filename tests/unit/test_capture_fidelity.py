"""What a capture replays beyond the address space: speculation control
(arch/bugs.py), SigQ (ucount.py), children's faults, the fd table's size,
umask, process groups, PF_SUPERPRIV, stat's rss as a flat percpu counter's
residues, private file mappings' COW and shmem pages, a partly touched vDSO.
The model's rules first, then a fake /proc captured and replayed."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from procsim import restore, ucount
from procsim.arch import bugs
from procsim.capture import capture, to_toml
from procsim.errors import KernelError
from procsim.mm.counter_tree import FlatShape, RssStat, TreeShape
from procsim.procfs import pid as P
from procsim.procfs.context import Caller, Ctx
from procsim.scenario import ScenarioError, build
from procsim import scenario

from test_capture import _process, fake  # noqa: F401 (the fixture)


def status(k, pid: int) -> dict[str, str]:
    text = P.status(Ctx(k, Caller(1, 0, 0), k.tasks[pid], False)).decode()
    return dict(line.split(":\t", 1) for line in text.splitlines())


def stat(k, pid: int) -> list[str]:
    return P.stat(Ctx(k, Caller(1, 0, 0), k.tasks[pid], False)).decode().split()


def machine(m: dict | None = None, **proc) -> tuple:
    k = build({"machine": {"nr_cpus": 2, "mem": "1G", **(m or {})},
               "process": [{"name": "svc", "argv": ["/usr/sbin/svc"], **proc}]})
    pid = next(t.tgid for t in k.tasks.values() if t.comm == "svc")
    return k, pid


# -- speculation control -------------------------------------------------------------------

@pytest.mark.parametrize("ssb,ib,lines", [
    ("prctl", "prctl", ("thread vulnerable", "conditional enabled")),
    ("none", "none", ("vulnerable", "always enabled")),
    ("disable", "strict", ("globally mitigated", "always disabled")),
    ("not_affected", "not_affected", ("not vulnerable", "not affected")),
])
def test_the_machine_modes_give_the_status_lines(ssb, ib, lines) -> None:
    k, pid = machine({"ssb_mode": ssb, "spectre_v2_user": ib})
    s = status(k, pid)
    assert (s["Speculation_Store_Bypass"], s["SpeculationIndirectBranch"]) == lines
    assert bugs.modes_from_status(*lines) == (ssb, ib)  # what a capture reads back


def test_prctl_controls_per_task_inherited_by_fork_and_their_errors() -> None:
    k, pid = machine(speculation={"store_bypass": "force-disable", "indirect_branch": "disable"})
    s = status(k, pid)
    assert (s["Speculation_Store_Bypass"], s["SpeculationIndirectBranch"]) == ("thread force mitigated",
                                                                               "conditional disabled")
    with pytest.raises(KernelError) as e:  # force-disabled: no way back
        bugs.spec_ctrl_set(k, pid, bugs.PR_SPEC_STORE_BYPASS, bugs.PR_SPEC_ENABLE)
    assert e.value.errno == errno.EPERM
    with pytest.raises(KernelError) as e:
        bugs.spec_ctrl_set(k, pid, bugs.PR_SPEC_STORE_BYPASS, 1 << 7)
    assert e.value.errno == errno.ERANGE
    bugs.spec_ctrl_set(k, pid, bugs.PR_SPEC_INDIRECT_BRANCH, bugs.PR_SPEC_ENABLE)  # not forced: allowed
    assert status(k, pid)["SpeculationIndirectBranch"] == "conditional enabled"
    child = k.fork(pid)
    assert status(k, child)["Speculation_Store_Bypass"] == "thread force mitigated"
    k2, pid2 = machine({"ssb_mode": "none"})
    with pytest.raises(KernelError) as e:
        bugs.spec_ctrl_set(k2, pid2, bugs.PR_SPEC_STORE_BYPASS, bugs.PR_SPEC_DISABLE)
    assert e.value.errno == errno.ENXIO and status(k2, pid2)["Speculation_Store_Bypass"] == "vulnerable"


def test_a_noexec_disable_ends_at_exec() -> None:
    k, pid = machine()
    bugs.spec_ctrl_set(k, pid, bugs.PR_SPEC_STORE_BYPASS, bugs.PR_SPEC_DISABLE_NOEXEC)
    assert bugs.ssb_prctl_get(k, k.tasks[pid]) == bugs.PR_SPEC_PRCTL | bugs.PR_SPEC_DISABLE_NOEXEC
    k.exec(pid, "/usr/bin/true", ["true"])
    assert status(k, pid)["Speculation_Store_Bypass"] == "thread vulnerable"


def test_a_bad_speculation_key_names_the_place() -> None:
    with pytest.raises(ScenarioError, match="speculation.store_bypass"):
        machine(speculation={"store_bypass": "off"})
    with pytest.raises(ScenarioError, match="ssb_mode"):
        machine({"ssb_mode": "sometimes"})


def _host_lines() -> tuple[str, str] | None:
    with open("/proc/self/status") as f:
        s = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    if "Speculation_Store_Bypass" not in s or "SpeculationIndirectBranch" not in s:
        return None
    return s["Speculation_Store_Bypass"], s["SpeculationIndirectBranch"]


def test_the_hosts_lines_and_prctl_answer_replay() -> None:
    """The host's own status lines, through the modes they imply, read back
    the same; and PR_SET_SPECULATION_CTRL of store bypass fails or succeeds
    on the model as it does on the host (tried on a forked child)."""
    lines = _host_lines()
    if lines is None or os.uname().machine != "x86_64":
        pytest.skip("no speculation lines in this host's status (or not x86)")
    ssb, ib = bugs.modes_from_status(*lines)
    if ssb is None or ib is None or lines[0].startswith("thread ") and lines[0] != "thread vulnerable":
        pytest.skip(f"this host's lines {lines} are not a default task's")
    k, pid = machine({"ssb_mode": ssb, "spectre_v2_user": ib},
                     speculation=bugs.ctrls_from_status(*lines) or {"store_bypass": "enable"}
                     if ssb in ("prctl", "seccomp") else {})
    s = status(k, pid)
    assert (s["Speculation_Store_Bypass"], s["SpeculationIndirectBranch"]) == lines
    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # PR_SET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, PR_SPEC_DISABLE
        rc = libc.prctl(53, 0, bugs.PR_SPEC_DISABLE, 0, 0)
        os.write(w, str(0 if rc == 0 else ctypes.get_errno()).encode())
        os._exit(0)
    os.close(w)
    host = int(os.read(r, 16))
    os.waitpid(child, 0)
    try:
        bugs.spec_ctrl_set(k, pid, bugs.PR_SPEC_STORE_BYPASS, bugs.PR_SPEC_DISABLE)
        model = 0
    except KernelError as e:
        model = e.errno
    assert model == host


# -- SigQ, children's faults, fd table, umask, process groups, PF_SUPERPRIV ------------------

def test_sigq_is_the_users_count() -> None:
    k, pid = machine()
    before = status(k, pid)["SigQ"]
    assert before.startswith("0/")
    ucount.set_sigpending(k, pid, 3)
    assert status(k, pid)["SigQ"] == "3/" + before.split("/")[1]
    assert status(k, 1)["SigQ"].startswith("3/")  # root's, as init is root too
    with pytest.raises(KernelError) as e:
        ucount.set_sigpending(k, pid, -1)
    assert e.value.errno == errno.EINVAL and status(k, pid)["SigQ"].startswith("3/")


def test_a_reaped_child_adds_its_faults() -> None:
    k, pid = machine()
    child = k.fork(pid)
    k.tasks[child].min_flt, k.tasks[child].maj_flt = 120, 4
    k.exit(child, 0)
    k.wait(pid, child)
    f = stat(k, pid)
    assert (f[10], f[12]) == ("120", "4")  # cminflt, cmajflt


def test_fd_table_size_umask_and_their_errors() -> None:
    k, pid = machine()
    restore.restore_files(k, pid, fdsize=512, umask=0o077)
    s = status(k, pid)
    assert s["FDSize"] == "512" and s["Umask"] == "0077"
    for bad in ({"fdsize": 100}, {"fdsize": 256}, {"umask": 0o1000}, {"fdsize": True}):
        with pytest.raises(KernelError) as e:
            restore.restore_files(k, pid, **bad)
        assert e.value.errno == errno.EINVAL
    assert status(k, pid)["FDSize"] == "512" and status(k, pid)["Umask"] == "0077"


def test_process_groups_as_setpgid_allows() -> None:
    k, pid = machine()
    child = k.fork(pid)
    restore.set_pgrp(k, pid, pid)          # its own group
    assert stat(k, pid)[4] == str(pid)
    restore.set_pgrp(k, child, pid)        # joins its parent's (same session)
    assert stat(k, child)[4] == str(pid)
    with pytest.raises(KernelError) as e:
        restore.set_pgrp(k, child, 99999)  # no such group
    assert e.value.errno == errno.EPERM and stat(k, child)[4] == str(pid)
    with pytest.raises(KernelError) as e:
        restore.set_pgrp(k, child, 0, outside=True)  # only init's session may be led from outside
    assert e.value.errno == errno.EINVAL


def test_superpriv_restored_and_not_inherited() -> None:
    k, pid = machine()
    restore.restore_task(k, pid, superpriv=True)
    assert int(stat(k, pid)[8]) & 0x100
    assert not int(stat(k, k.fork(pid))[8]) & 0x100  # copy_process() clears PF_SUPERPRIV


# -- stat's rss: a flat percpu counter's residues ------------------------------------------

def test_residues_move_the_approximation_not_the_sum() -> None:
    r = RssStat(FlatShape(2))
    r.add(0, 300, cpu=0)
    r.add(1, 200, cpu=1)
    r.restore_residues(460)
    assert r.rss_precise() == 500 and r.rss_approx() == 460
    assert all(abs(int(x)) < 32 for x in r.pcpu.flat)
    r.restore_residues(520)  # approx above the sum: negative residues
    assert r.rss_precise() == 500 and r.rss_approx() == 520
    with pytest.raises(ValueError):
        r.restore_residues(300)  # 200 pages: more than 2 CPUs x 31 can hold
    with pytest.raises(ValueError):
        RssStat(TreeShape(2)).restore_residues(0)


# -- a fake /proc captured and replayed ---------------------------------------------------------

def test_a_capture_keeps_what_status_and_stat_showed(fake: Path, tmp_path: Path) -> None:  # noqa: F811
    app = fake / "100"
    st = (app / "stat").read_text().split()
    st[4], st[5] = "100", "1"          # pgrp: its own group, in init's session
    st[8] = str(0x400000 | 0x100)      # PF_SUPERPRIV
    st[10], st[12] = "555", "7"        # cminflt, cmajflt
    (app / "stat").write_text(" ".join(st) + "\n")
    text = (app / "status").read_text()
    text += ("Umask:\t0077\nFDSize:\t256\nSigQ:\t2/15000\nSpeculation_Store_Bypass:\tthread mitigated\n"
             "SpeculationIndirectBranch:\tconditional force disabled\n")
    (app / "status").write_text(text)
    (fake / "1" / "status").write_text((fake / "1" / "status").read_text() + (
        "Speculation_Store_Bypass:\tthread vulnerable\nSpeculationIndirectBranch:\tconditional enabled\n"))
    warnings: list[str] = []
    doc = capture(str(fake), str(tmp_path / "nosys"), warn=warnings.append)
    p = next(p for p in doc["process"] if p["pid"] == 100)
    assert p["pgid"] == 100 and p["speculation"] == {"store_bypass": "disable", "indirect_branch": "force-disable"}
    assert {key: p["restore"][key] for key in ("cminflt", "cmajflt", "umask", "fdsize", "sigq", "superpriv")} == \
        {"cminflt": 555, "cmajflt": 7, "umask": 0o077, "fdsize": 256, "sigq": 2, "superpriv": True}
    assert doc["machine"]["stat_rss"] == "approx" and "rss_approx" in p["restore_mm"]
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    k = scenario.load(str(path))
    s, f = status(k, 100), stat(k, 100)
    assert s["Umask"] == "0077" and s["FDSize"] == "256" and s["SigQ"].startswith("2/")
    assert s["Speculation_Store_Bypass"] == "thread mitigated"
    assert s["SpeculationIndirectBranch"] == "conditional force disabled"
    assert f[4] == "100" and int(f[8]) & 0x100 and (f[10], f[12]) == ("555", "7")
    assert f[23] == st[23]  # rss: the captured get_mm_rss(), the residues restored


def test_a_private_shmem_mapping_replays_its_shmem_pages(fake: Path, tmp_path: Path) -> None:  # noqa: F811
    """A binary run from a memfd (a private mapping of a shmem file): its
    pages are the file's (RssShmem), only Anonymous of them COW copies."""
    app = fake / "100"
    line = "7f0000000000-7f0000010000 r-xp 00000000 00:01 1024                       /memfd:blob (deleted)"
    stack = "7ffd00000000-"  # the new line goes before the stack's (maps are in address order)
    maps = (app / "maps").read_text().replace(stack, line + "\n" + stack)
    (app / "maps").write_text(maps)
    entry = (line + "\nSize:                 64 kB\nRss:                  40 kB\nPrivate_Dirty:        40 kB\n"
             "Anonymous:             8 kB\nSwap:                  0 kB\nVmFlags: rd ex mr mw me\n")
    (app / "smaps").write_text((app / "smaps").read_text().replace(stack, entry + stack))
    doc = capture(str(fake), str(tmp_path / "nosys"), warn=lambda m: None)
    p = next(p for p in doc["process"] if p["pid"] == 100)
    row = next(r for r in p["resident"] if r["addr"] == 0x7f0000000000)
    assert row["anon"] == 8 and row["rss"] == 40
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    k = scenario.load(str(path))
    s = status(k, 100)
    assert s["RssShmem"].split()[0] == "32"
    with pytest.raises(ScenarioError, match="anon"):
        bad = path.read_text().replace("anon = 8", "anon = 80")
        path.write_text(bad)
        scenario.load(str(path))


def test_an_accepted_unix_connection_is_not_bound_again() -> None:
    """An accepted unix socket shows its listener's path in /proc/net/unix:
    binding it again would fail (EADDRINUSE); only the listener is bound."""
    from procsim.capture.net import SockRow, TCP_ESTABLISHED, TCP_LISTEN, socket_keys
    rows = {10: SockRow("unix", TCP_LISTEN, "/run/app.sock", type="stream"),
            11: SockRow("unix", TCP_ESTABLISHED, "/run/app.sock", type="stream"),
            12: SockRow("unix", TCP_ESTABLISHED, "/run/other.sock", type="stream")}
    assert socket_keys(rows[10], rows, set()) == {"listen": "/run/app.sock"}
    assert socket_keys(rows[11], rows, set()) == {}
    assert socket_keys(rows[12], rows, set()) == {"bind": "/run/other.sock"}


def test_a_group_the_replay_cannot_join_is_left_out_with_a_warning() -> None:
    from procsim.capture import _groups
    from procsim.capture.source import Source
    warned: list[str] = []
    src = Source("/nonexistent", "/nonexistent", warned.append)
    procs = [{"pid": 1}, {"pid": 10, "parent": 1, "setsid": True}, {"pid": 11, "parent": 10, "pgid": 11},
             {"pid": 12, "parent": 11, "pgid": 11}, {"pid": 13, "parent": 1, "pgid": 11}]
    _groups(procs, src)
    assert [p.get("pgid") for p in procs] == [None, None, 11, 11, None]
    assert len(warned) == 1 and "/13" in warned[0]
