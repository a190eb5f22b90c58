"""procsim capture on a fake /proc tree on disk: what it writes replays,
and a tree it cannot read fully (a process gone mid-capture, files it may
not read, formats it does not know) is captured as far as it goes, one
warning per skipped item, never a crash. Then the scenario keys of a
capture (scenario/captured.py) and their errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from procsim import scenario
from procsim.capture import capture, to_toml
from procsim.capture.anonymize import anonymize, path as anon_path
from procsim.capture.diff import compare
from procsim.capture.parse import parse_limits, parse_smaps, parse_stat
from procsim.capture.tasks import flag_names
from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS
from procsim.scenario import ScenarioError
from procfs_helpers import read_all

ROOT = Caller(os.getpid(), 0, 0)
EXE = "/usr/bin/app"
MAPS = ("55d000000000-55d000001000 r--p 00000000 fe:01 4242                       /usr/bin/app\n"
        "55d000001000-55d000003000 r-xp 00001000 fe:01 4242                       /usr/bin/app\n"
        "55d000003000-55d000004000 rw-p 00003000 fe:01 4242                       /usr/bin/app\n"
        "55d000100000-55d000200000 rw-p 00000000 00:00 0                          [heap]\n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n")
VSYSCALL = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"


def _stat(pid: int, comm: str, ppid: int, flags: int = 0x400000, start: int = 500, utime: int = 7,
          nice: int = 0, state: str = "S") -> str:
    f = [state, ppid, pid, pid, 0, -1, flags, 120, 0, 3, 0, utime, 2, 0, 0, 20, nice, 1, 0, start,
         1 << 20, 10, 1 << 63, 0x55d000001000, 0x55d000003000, 0x7ffd00020000, 0, 0, 0, 0, 0, 0, 0, 0, 17,
         0, 0, 0, 0, 0, 0, 0x55d000003000, 0x55d000004000, 0x55d000100000, 0x7ffd00020100, 0x7ffd00020200,
         0x7ffd00020200, 0x7ffd00020f00, 0]
    return f"{pid} ({comm}) " + " ".join(map(str, f)) + "\n"


def _status(comm: str, uid: int = 1000) -> str:
    return (f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\nGroups:\t\n"
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004a02\n"
            "CapInh:\t0000000000000400\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000400\n"
            "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000400\nNoNewPrivs:\t1\nSeccomp:\t2\n"
            "Seccomp_filters:\t3\n"
            "Cpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n")


def _smaps() -> str:
    out = []
    for line in MAPS.splitlines():
        out.append(line)
        size = (int(line.split()[0].split("-")[1], 16) - int(line.split()[0].split("-")[0], 16)) >> 10
        rss = 8 if "[heap]" in line or "[stack]" in line else 4
        dirty = rss if "rw-p" in line else 0
        out += [f"Size: {size:>20} kB", f"Rss: {rss:>21} kB", f"Private_Dirty: {dirty:>11} kB",
                "Swap:                  0 kB", "VmFlags: rd wr mr mw me ac"]
    return "\n".join(out) + "\n"


LIMITS = ("Limit                     Soft Limit           Hard Limit           Units     \n"
          "Max cpu time              unlimited            unlimited            seconds   \n"
          "Max open files            1024                 524288               files     \n")


def _process(root: Path, pid: int, comm: str, ppid: int, **kw) -> Path:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "fdinfo").mkdir()
    (d / "task" / str(pid)).mkdir(parents=True)
    (d / "stat").write_text(_stat(pid, comm, ppid, **kw))
    (d / "status").write_text(_status(comm))
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(f"{EXE}\0--serve\0".encode())
    (d / "maps").write_text(MAPS)
    (d / "smaps").write_text(_smaps())
    (d / "limits").write_text(LIMITS)
    (d / "cgroup").write_text("0::/system.slice/app.service\n")
    os.symlink(EXE, d / "exe")
    os.symlink("/srv/app", d / "cwd")
    os.symlink("/dev/null", d / "fd" / "0")
    (d / "fdinfo" / "0").write_text("pos:\t0\nflags:\t0100002\nmnt_id:\t20\nino:\t5\n")
    os.symlink("pipe:[777]", d / "fd" / "1")
    (d / "fdinfo" / "1").write_text("pos:\t0\nflags:\t01\nmnt_id:\t14\nino:\t777\n")
    os.symlink("/var/log/app.log", d / "fd" / "3")
    (d / "fdinfo" / "3").write_text("pos:\t4096\nflags:\t02102001\nmnt_id:\t20\nino:\t9\n")
    return d


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    root.mkdir()
    (root / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
                                  "model name\t: Test CPU\nflags\t\t: fpu sse\n\nprocessor\t: 1\n")
    (root / "meminfo").write_text("MemTotal:        4194304 kB\nSwapTotal:        262140 kB\n")
    (root / "version").write_text("Linux version 6.18.1-test (b@h) (gcc) #1 SMP\n")
    (root / "uptime").write_text("1000.00 1500.00\n")
    (root / "stat").write_text("cpu 1 2 3\nbtime 1767225600\n")
    (root / "sys" / "kernel").mkdir(parents=True)
    (root / "sys" / "kernel" / "hostname").write_text("fakehost\n")
    _process(root, 1, "init", 0, start=30)
    (root / "2").mkdir()
    (root / "2" / "stat").write_text(_stat(2, "kthreadd", 0, flags=0x208040, start=30))
    (root / "3").mkdir()
    (root / "3" / "stat").write_text(_stat(3, "kworker/R-rcu_gp", 2, flags=0x4208060, start=31, nice=-20))
    (root / "3" / "status").write_text("voluntary_ctxt_switches:\t2\nnonvoluntary_ctxt_switches:\t0\n")
    _process(root, 100, "app", 1, start=600, nice=5)
    return root


def test_a_fake_tree_captures_and_replays(fake: Path, tmp_path: Path) -> None:
    warnings: list[str] = []
    doc = capture(str(fake), str(tmp_path / "nosys"), warn=warnings.append)
    assert warnings == []
    m = doc["machine"]
    assert m["nr_cpus"] == 2 and m["cpu"] == "captured" and m["mem"] == (4194304 << 10) + (256 << 20)
    assert m["swap"] == (262140 + 4) << 10 and m["hostname"] == "fakehost" and m["boot_uptime"] == 1000.01
    assert [k["pid"] for k in doc["kthread"]] == [2, 3]  # kthreadd: the replay's own, its counters restored
    app = doc["process"][1]
    assert app["pid"] == 100 and app["argv"] == [EXE, "--serve"] and app["uid"] == 1000 and app["nice"] == 5
    # init holds the same pipe at fd 1 without close-on-exec: the app inherited it (one pipe, shared)
    assert doc["process"][0]["files"][1] == {"kind": "pipe", "end": "write", "cloexec": False, "ino": 777, "fd": 1}
    assert app["files"][1] == {"inherited": True, "fd": 1, "ino": 777}
    assert app["files"][2]["flags"] == "O_WRONLY|O_APPEND" and app["files"][2]["cloexec"] is True
    assert app["limits"]["nofile"] == [1024, 524288]
    text = to_toml(doc)
    assert tomllib.loads(text) == doc  # the writer writes what the reader reads
    path = tmp_path / "c.toml"
    path.write_text(text)
    k = scenario.load(str(path))
    fs = ProcFS(k)
    read = lambda p: read_all(fs, p).decode()  # noqa: E731
    assert read("/proc/100/maps") == MAPS + VSYSCALL
    assert read("/proc/100/cmdline") == f"{EXE}\0--serve\0"
    assert read("/proc/3/comm") == "kworker/R-rcu_gp\n"
    stat = read("/proc/100/stat").split()
    assert stat[13] == "7" and stat[21] == "600" and stat[18] == "5"  # utime, starttime, nice
    assert "voluntary_ctxt_switches:\t12\n" in read("/proc/100/status")
    assert "SigCgt:\t0000000000004a02\n" in read("/proc/100/status")
    caps = ("CapInh:\t0000000000000400\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000400\n"
            "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000400\nNoNewPrivs:\t1\nSeccomp:\t2\n"
            "Seccomp_filters:\t3\n")
    assert app["caps"]["ambient"] == "0x400" and app["seccomp_filters"] == 3
    assert caps in read("/proc/100/status") and caps in read("/proc/100/task/100/status")
    smaps = [v for v in parse_smaps(read("/proc/100/smaps")) if "[vsyscall]" not in v.line]
    assert [(v.fields["Rss"], v.fields["Private_Dirty"]) for v in smaps] == [(4, 0), (4, 0), (4, 4), (8, 8), (8, 8)]
    assert fs.readlink("/proc/100/fd/3", ROOT) == "/var/log/app.log" and fs.readlink("/proc/100/fd/1", ROOT) == "pipe:[777]"
    assert read("/proc/cpuinfo").count("model name\t: Test CPU\n") == 2
    assert read("/proc/100/cgroup") == "0::/system.slice/app.service\n"


def test_a_tree_read_as_far_as_it_goes(fake: Path, tmp_path: Path) -> None:
    """A process gone (only its directory left), one whose stat is of an
    unknown form, one whose maps and fds may not be read (a directory
    where a file should be: EISDIR, as EACCES would), a socket kind with no model."""
    (fake / "200").mkdir()                                    # exited: its files are gone
    bad = _process(fake, 300, "odd", 1, start=700)
    (bad / "stat").write_text("300 (odd) S 1\n")              # too few fields
    hidden = _process(fake, 400, "secret", 1, start=800)
    for name in ("smaps", "maps", "limits"):
        (hidden / name).unlink()
        (hidden / name).mkdir()
    os.symlink("anon_inode:[io_uring]", hidden / "fd" / "5")
    warnings: list[str] = []
    doc = capture(str(fake), str(tmp_path / "nosys"), warn=warnings.append)
    pids = [p["pid"] for p in doc["process"]]
    assert pids == [1, 100, 400]
    assert any("/200/stat: skipped" in w for w in warnings)
    assert any("/300/stat: unknown format" in w for w in warnings)
    assert any("/400/smaps: skipped" in w for w in warnings) and any("/400/limits: skipped" in w for w in warnings)
    assert any("io_uring" in w and "no model" in w for w in warnings)
    assert "layout" not in doc["process"][2] and "limits" not in doc["process"][2]
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    k = scenario.load(str(path))  # what was captured replays
    assert 400 in k.tasks and k.task(400).comm == "secret"


def test_diff_of_a_replay(fake: Path, tmp_path: Path) -> None:
    """diff compares two trees on disk field by field, with reasons."""
    other = tmp_path / "other"
    other.mkdir()
    _process(other, 100, "app", 1, start=600, utime=9, nice=5)
    r = compare(str(fake), str(other))
    assert r.pids == 1
    assert r.same["maps"] == r.total["maps"] == 5
    assert dict(r.fields) == {("stat", "utime"): 1}
    assert "stat utime: 1; a counter that moves" in r.text()


def test_anonymize_is_deterministic_and_keeps_the_shape(fake: Path, tmp_path: Path) -> None:
    a = capture(str(fake), str(tmp_path / "nosys"), anonymize=True)
    b = capture(str(fake), str(tmp_path / "nosys"), anonymize=True)
    assert a == b
    app = a["process"][1]
    assert app["argv"][0] == EXE and app["argv"][1].startswith("arg-") and "--serve" not in str(app)
    assert app["cwd"].startswith("/srv/p") and "/srv/app" not in str(app)
    assert a["machine"]["hostname"] != "fakehost"
    assert anon_path("/home/alice/notes.txt").startswith("/home/p") and anon_path("/home/alice/notes.txt").endswith(".txt")
    assert anon_path("/usr/lib/libc.so.6") == "/usr/lib/libc.so.6"
    from procsim.capture.anonymize import _argv
    title = _argv(["sshd: alice@pts/0", "-D"])
    assert title[0].startswith("sshd: arg-") and "alice" not in str(title)
    shifted = app["layout"].splitlines()
    assert len(shifted) == 5 and shifted[0].endswith("/usr/bin/app") and not shifted[0].startswith("55d000000000")
    path = tmp_path / "a.toml"
    path.write_text(to_toml(a))
    k = scenario.load(str(path))
    assert read_all(ProcFS(k), "/proc/100/maps").decode() == app["layout"] + VSYSCALL


def test_parsers() -> None:
    st = parse_stat(_stat(42, "a) (b", 1, utime=11))
    assert st["comm"] == "a) (b" and st["utime"] == 11 and st["ppid"] == 1 and st["starttime"] == 500
    with pytest.raises(ValueError):
        parse_stat("42 (x) S 1 2\n")
    assert parse_limits(LIMITS) == {"cpu": ["unlimited", "unlimited"], "nofile": [1024, 524288]}
    with pytest.raises(ValueError):
        parse_limits(LIMITS + "Max widgets               1                    1                    \n")
    assert flag_names(0o2102001) == "O_WRONLY|O_APPEND|O_CLOEXEC" and flag_names(0) == "O_RDONLY"


BASE = """
[machine]
nr_cpus = 2
mem = "512M"
kernel_reserved = "16M"
[[process]]
pid = 100
argv = ["/usr/bin/app"]
"""


@pytest.mark.parametrize("extra, message", [
    ('layout = "not a maps line\\n"', "process 'app': layout: layout line 1: not a maps line: 'not a maps line'"),
    (f'layout = """{MAPS}"""\nresident = [{{ addr = 1, rss = 4 }}]', "resident #1: no VMA starts at 0x1"),
    (f'layout = """{MAPS}"""\nresident = [{{ addr = 0x55d000100000, rss = 99999 }}]', "is more than the VMA"),
    ('restore = { utime = -1 }', "restore: utime"),
    ('restore = { cpu = 7 }', "cpu 7: out of range"),
    ('restore = { bogus = 1 }', "restore: unknown key 'bogus'"),
    ('files = [{ kind = "pipe", end = "middle" }]', "end: expected \"read\" or \"write\""),
    ('files = [{ path = "/dev/null", ino = 5, fd = 0 }]', "not a pipe or socket"),
    ('restore_mm = { cpumask = 0xff }', "has CPUs past nr_cpus"),
])
def test_a_capture_that_cannot_be_replayed_names_the_place(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        scenario.build(tomllib.loads(BASE + extra))
    assert message in str(e.value)


def test_restore_sets_counters_over_the_history() -> None:
    doc = tomllib.loads(BASE + 'comm = "app-main"\nrestore = { start = 250, utime = 30, stime = 4, nvcsw = 9 }\n'
                               '[[process.threads]]\ntid = 101\ncomm = "worker"\nstack = 0\n'
                               'restore = { utime = 10, nvcsw = 4 }\n')
    k = scenario.build(doc)
    fs = ProcFS(k)
    stat = read_all(fs, "/proc/100/stat").decode().split()
    assert stat[1] == "(app-main)" and stat[13] == "30" and stat[14] == "4" and stat[21] == "250"
    assert read_all(fs, "/proc/100/task/101/stat").decode().split()[13] == "10"
    assert read_all(fs, "/proc/100/task/100/stat").decode().split()[13] == "20"  # the main thread: the rest
    assert "voluntary_ctxt_switches:\t9\n" in read_all(fs, "/proc/100/status").decode()


def test_eacces_on_another_users_files(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a non-root capturer sees another user's process: smaps, fd links
    and environ refused (EACCES, as ptrace_may_access() refuses them), the
    rest read; the process is captured without them, one warning each."""
    import builtins
    import errno as E
    real_open, real_readlink = builtins.open, os.readlink
    private = (str(fake / "100" / "smaps"), str(fake / "100" / "maps"), str(fake / "100" / "environ"))

    def guarded_open(p, *a, **kw):
        if str(p) in private:
            raise PermissionError(E.EACCES, "Permission denied", str(p))
        return real_open(p, *a, **kw)

    def guarded_readlink(p, *a, **kw):
        if str(p).startswith(str(fake / "100" / "fd") + "/"):
            raise PermissionError(E.EACCES, "Permission denied", str(p))
        return real_readlink(p, *a, **kw)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "readlink", guarded_readlink)
    warnings: list[str] = []
    doc = capture(str(fake), str(tmp_path / "nosys"), env=True, warn=warnings.append)
    monkeypatch.undo()
    app = doc["process"][1]
    assert app["pid"] == 100 and app["argv"] == [EXE, "--serve"] and app["limits"]["nofile"] == [1024, 524288]
    assert "layout" not in app and "env" not in app and app["files"] == []
    assert sum("Permission denied" in w for w in warnings) == 2 + 3  # smaps (maps then quietly), environ; fds 0, 1, 3
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    assert 100 in scenario.load(str(path)).tasks


def test_cgroup_limits_are_captured(fake: Path, tmp_path: Path) -> None:
    """The cgroups captured processes are in, with their ancestors: the
    controllers enabled below them and the limits not at their default."""
    cg = tmp_path / "sys" / "fs" / "cgroup"
    app = cg / "system.slice" / "app.service"
    app.mkdir(parents=True)
    for d, sub in ((cg, "cpu memory pids"), (cg / "system.slice", "memory pids"), (app, "")):
        (d / "cgroup.controllers").write_text("cpu memory pids\n")
        (d / "cgroup.subtree_control").write_text(sub + "\n")
    (app / "memory.max").write_text("268435456\n")
    (app / "memory.high").write_text("max\n")
    (app / "pids.max").write_text("64\n")
    (app / "cpu.max").write_text("50000 100000\n")
    doc = capture(str(fake), str(tmp_path / "sys"))
    assert doc["cgroup"] == [
        {"path": "/", "subtree_control": "+cpu +memory +pids"},
        {"path": "/system.slice", "subtree_control": "+memory +pids"},
        {"path": "/system.slice/app.service", "memory_max": 268435456, "cpu_max": "50000 100000", "pids_max": 64},
    ]
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    k = scenario.load(str(path))
    fs = ProcFS(k)
    assert read_all(fs, "/sys/fs/cgroup/system.slice/app.service/memory.max") == b"268435456\n"
    assert read_all(fs, "/sys/fs/cgroup/system.slice/app.service/pids.max") == b"64\n"
