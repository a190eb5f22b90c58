"""Open files through a real mount: lsof, fuser and psutil reading the fd
links, fdinfo, exe, cwd and /proc/mounts of the simulated machine,
compared with the model (the control client's `fds`, `mounts`).

Through FUSE the host kernel follows a link's target itself: a regular
file's target is stat'ed on this host's filesystem (lsof runs with -w: no
"(stat: ...)" warnings for paths this host lacks); pipe:[N], socket:[N]
and anon_inode targets are looked up in fd/, which answers with the
model's inode (procsim/procfs/fd.py), so lsof finds sockets' protocols
and addresses in /proc/net by st_ino."""

from __future__ import annotations

import os
import re

import psutil
import pytest

from fusehelpers import psutil_procfs

pytestmark = pytest.mark.fuse

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
ACCESS = {0: "r", 1: "w", 2: "u"}


def run(m, *argv: str) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r.stdout


def lsof_rows(out: str) -> list[tuple[int, str, str]]:
    """(pid, FD column, NAME) of `lsof -w` lines (NAME is the last column
    group; the columns before it are fixed: COMMAND PID USER FD TYPE ...)."""
    lines = out.splitlines()
    head = lines[0]
    at = head.index("NAME")
    rows = []
    for line in lines[1:]:
        f = line.split()
        # a socket's NAME is its protocol's (addresses: see test_lsof_finds_the_models_sockets)
        rows.append((int(f[1]), f[3], "socket" if f[4] in SOCKET_TYPES else line[at:]))
    return rows


SOCKET_TYPES = ("IPv4", "IPv6", "unix", "sock", "netlink")


def model_rows(m, pid: int) -> set[tuple[str, str]]:
    out = set()
    for e in m.ctl.fds(pid=pid):
        name = e["path"]
        if name.startswith(("pipe:", "socket:")):
            name = name.split(":")[0]
        elif name.startswith("anon_inode:"):
            name = "anon_inode"
        out.add((f"{e['fd']}{ACCESS[e['flags'] & 3]}", name))
    return out


def test_lsof_p_shows_the_models_fds_cwd_and_exe(machine):
    cwd = {1: "/", 102: "/home/alice", 106: "/"}  # default.toml
    for pid in cwd:
        rows = lsof_rows(run(machine, "lsof", "-w", "-p", str(pid)))
        assert {r[0] for r in rows} == {pid}
        fds = {(fd, name) for _, fd, name in rows if fd[:-1].isdigit()}
        assert fds == model_rows(machine, pid), pid
        by_fd = {fd: name for _, fd, name in rows}
        assert by_fd["cwd"] == cwd[pid] == os.readlink(f"{machine.proc}/{pid}/cwd")
        assert by_fd["txt"] == os.readlink(f"{machine.proc}/{pid}/exe")


def test_lsof_over_the_whole_machine(machine):
    """Every process's fds, and nothing else's; deleted files as such."""
    rows = lsof_rows(run(machine, "lsof", "-w"))
    pids = {p["pid"] for p in machine.ctl.ps() if not p["zombie"]}
    got: dict[int, set] = {}
    for pid, fd, name in rows:
        if fd[:-1].isdigit():
            got.setdefault(pid, set()).add((fd, name))
    want = {pid: model_rows(machine, pid) for pid in pids}
    assert got == {pid: rows for pid, rows in want.items() if rows}
    assert ("4u", "/tmp/etl-spool.bin (deleted)") in got[102]


def test_fuser_finds_the_simulated_holders(procsim_mount):
    m = procsim_mount()
    holders = sorted((102, 106, 1))
    for pid in holders:
        m.ctl.open(pid=pid, path="/etc/passwd")
    r = m.run(["fuser", "-v", "/etc/passwd"], capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    assert sorted(map(int, r.stdout.split())) == holders  # the pids on stdout, the table on stderr
    # -v's table on stderr (its PID column goes to stdout): f for a file open read-only
    # (/proc/net/unix is the network model's: fuser says it cannot open it)
    table = re.findall(r"^(?:/etc/passwd:)?\s+(\S+)\s+f\.\.\.\. (\S+)$", r.stderr, re.M)
    ps = {p["pid"]: p for p in m.ctl.ps()}
    assert sorted(c for _, c in table) == sorted(ps[pid]["comm"] for pid in holders), r.stderr
    for pid in holders:
        fd = next(e["fd"] for e in m.ctl.fds(pid=pid) if e["path"] == "/etc/passwd")
        m.ctl.close_fd(pid=pid, fd=fd)
    r = m.run(["fuser", "/etc/passwd"], capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 1 and r.stdout.strip() == ""


def test_psutil_open_files_num_fds_cwd_exe(procsim_mount):
    m = procsim_mount()
    pid = 102
    a = m.ctl.open(pid=pid, path="/etc/passwd")
    m.ctl.lseek(pid=pid, fd=a, offset=123)
    b = m.ctl.open(pid=pid, path="/etc/hostname", flags="O_RDWR|O_APPEND")
    with psutil_procfs(m):
        p = psutil.Process(pid)
        fds = m.ctl.fds(pid=pid)
        assert p.num_fds() == len(fds)
        assert p.cwd() == "/home/alice" == os.readlink(f"{m.proc}/{pid}/cwd")
        assert p.exe() == "/usr/bin/python3.11"
        files = {f.fd: f for f in p.open_files()}
        # psutil lists the regular files whose paths exist on the reading host
        want = {e["fd"]: e for e in fds if e["kind"] == "reg" and os.path.isfile(e["path"])}
        assert sorted(files) == sorted(want) and a in files and b in files
        for fd, f in files.items():
            assert (f.path, f.position, f.flags) == (want[fd]["path"], want[fd]["pos"], want[fd]["flags"])
        assert files[a].mode == "r" and files[b].mode == "a+"
        m.ctl.chdir(pid=pid, path="/var/tmp")
        m.ctl.unlink(path="/usr/bin/python3.11")
        assert p.cwd() == "/var/tmp"
        assert os.readlink(f"{m.proc}/{pid}/exe") == "/usr/bin/python3.11 (deleted)"


def test_proc_mounts_is_the_machines_table(machine):
    """/proc/mounts (-> self/mounts) for a reader that is not simulated: the
    machine's initial mount namespace, as df and lsof read it."""
    assert os.readlink(f"{machine.proc}/mounts") == "self/mounts"
    text = run(machine, "cat", "/proc/mounts")
    assert [line.split()[1] for line in text.splitlines()] == [e["mountpoint"] for e in machine.ctl.mounts()]
    info = run(machine, "cat", "/proc/self/mountinfo").splitlines()
    assert [int(line.split()[0]) for line in info] == [e["mnt_id"] for e in machine.ctl.mounts()]


def test_stat_follows_socket_and_pipe_links_to_the_models_inodes(machine):
    """stat -L of an fd link reaches the socket's or pipe's inode: the
    model's number (the link's `[N]`) and type; lstat is the link."""
    pid = 102  # default.toml: a socket and two pipes
    seen = set()
    for e in machine.ctl.fds(pid=pid):
        if e["kind"] not in ("sock", "pipe"):
            continue
        path = f"{machine.proc}/{pid}/fd/{e['fd']}"
        r = machine.run(["stat", "-L", "-c", "%i %F %a", path], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        want = "socket 777" if e["kind"] == "sock" else "fifo 600"
        assert r.stdout.split(None, 1) == [str(e["ino"]), want + "\n"], e
        assert f"[{e['ino']}]" in os.readlink(path) and os.lstat(path).st_ino != e["ino"]
        seen.add(e["kind"])
    assert seen == {"sock", "pipe"}
    assert not [n for n in os.listdir(f"{machine.proc}/{pid}/fd") if not n.isdigit()]  # targets are not listed
