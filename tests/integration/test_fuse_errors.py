"""Bad input on the mount and on the control channel: the errno the real
kernel gives (asked of this machine's own /proc where it can be), never a
changed world, and a daemon that keeps serving."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import termios
import textwrap
import time

import pytest

from fusehelpers import model, read
from hostinfo import requires_host

pytestmark = pytest.mark.fuse


def err_of(fn) -> int | None:
    try:
        fn()
    except OSError as e:
        return e.errno
    return None


def write_errno(path: str) -> int | None:
    """errno of open(O_WRONLY) + write(b"x"), whichever fails first."""
    def go():
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    return err_of(go)


@pytest.fixture(scope="module")
def real_child():
    """A real process of this machine, for asking the real kernel about pids."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield p.pid
    p.kill()
    p.wait()


# -- writes to read-only files --------------------------------------------------------


@requires_host(caps=("CAP_DAC_OVERRIDE",))  # root's open(O_WRONLY) of a 0444 file succeeds
def test_root_write_to_pid_file_is_einval_as_on_the_real_kernel(machine, real_child):
    real = write_errno(f"/proc/{real_child}/status")
    assert real == errno.EINVAL  # spec §1.4
    for name in ("status", "stat", "statm", "maps", "cmdline"):
        assert write_errno(f"{machine.proc}/1/{name}") == real, name


@requires_host(caps=("CAP_DAC_OVERRIDE",))
def test_root_write_to_global_file_is_eio_as_on_the_real_kernel(machine):
    real = write_errno("/proc/meminfo")
    assert real == errno.EIO  # spec §1.4
    for name in ("meminfo", "stat", "uptime", "loadavg", "interrupts", "vmstat"):
        assert write_errno(f"{machine.proc}/{name}") == real, name


def test_root_write_to_sysfs_file_as_on_the_real_kernel(machine):
    real = write_errno("/sys/devices/system/cpu/online")
    assert real == errno.EACCES
    assert write_errno(f"{machine.sys}/devices/system/cpu/online") == real


NOBODY = 65534
# the venv may sit where uid 65534 cannot reach; the script needs only the stdlib
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
UNPRIVILEGED = textwrap.dedent("""
    import errno, json, os, sys
    def e(fn):
        try:
            fn()
        except OSError as x:
            return errno.errorcode[x.errno]
        return "ok"
    out = {}
    for root in sys.argv[1:]:
        out[root] = {
            "write status": e(lambda: os.close(os.open(root + "/1/status", os.O_WRONLY))),
            "write meminfo": e(lambda: os.close(os.open(root + "/meminfo", os.O_WRONLY))),
            "read status": e(lambda: open(root + "/1/status").read()),
            "read environ": e(lambda: open(root + "/1/environ").read()),
            "read maps": e(lambda: open(root + "/1/maps").read()),
        }
    print(json.dumps(out))
""")


@requires_host(caps=("CAP_SETUID", "CAP_SETGID"))  # to become uid 65534
def test_unprivileged_reader_gets_the_real_kernels_answers(machine):
    """As uid 65534: EACCES for writes to 0444 files and for root's environ
    (0400) and maps (ptrace check at open), reads of status work - the same
    answers the real /proc gives the same user."""
    r = subprocess.run([SYSTEM_PYTHON, "-c", UNPRIVILEGED, "/proc", machine.proc], user=NOBODY, group=NOBODY,
                       extra_groups=[], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["/proc"] == {"write status": "EACCES", "write meminfo": "EACCES", "read status": "ok",
                            "read environ": "EACCES", "read maps": "EACCES"}
    assert out[machine.proc] == out["/proc"]


# -- unknown paths, offsets, ioctls, other operations -------------------------------------


@pytest.mark.parametrize("path", ["nonexistent", "1/nonexistent", "99999", "99999/status", "1/task/99999",
                                  "1/task/1/nonexistent", "sys/kernel/nonexistent", "self/nonexistent"])
def test_unknown_paths_are_enoent(machine, path):
    assert err_of(lambda: os.stat(f"/proc/{path.replace('99999', '4194304')}")) == errno.ENOENT  # real
    assert err_of(lambda: os.stat(f"{machine.proc}/{path}")) == errno.ENOENT
    assert err_of(lambda: open(f"{machine.proc}/{path}").close()) == errno.ENOENT


def test_unknown_sysfs_path_is_enoent(machine):
    assert err_of(lambda: os.stat(f"{machine.sys}/devices/system/cpu/nonexistent")) == errno.ENOENT


@pytest.mark.parametrize("name", ["status", "stat", "statm", "maps", "cmdline"])
def test_absurd_offset_reads_nothing(machine, real_child, name):
    for path in (f"/proc/{real_child}/{name}", f"{machine.proc}/1/{name}"):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 1 << 40) == b""
            assert os.pread(fd, 4096, 0) != b""  # and the file is still readable from the start
        finally:
            os.close(fd)


@pytest.mark.parametrize("name", ["1/status", "1/stat", "1/maps", "meminfo", "interrupts"])
def test_ioctl_is_enotty(machine, real_child, name):
    real = f"/proc/{real_child}/{name[2:]}" if name.startswith("1/") else f"/proc/{name}"
    for path in (real, f"{machine.proc}/{name}"):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert err_of(lambda: fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)) == errno.ENOTTY, path
        finally:
            os.close(fd)


@pytest.mark.parametrize("op,real_path,mnt_path", [
    ("mkdir", "/proc/self/newdir", "1/newdir"),
    ("unlink", "/proc/self/status", "1/status"),
    ("create", "/proc/newfile", "newfile"),
])
# without it the VFS refuses write access to the 0555 directory (EACCES) before FUSE is asked
@requires_host(caps=("CAP_DAC_OVERRIDE",))
def test_namespace_changes_get_the_real_errno(machine, op, real_path, mnt_path):
    def do(path):
        if op == "mkdir":
            return err_of(lambda: os.mkdir(path))
        if op == "unlink":
            return err_of(lambda: os.unlink(path))
        return err_of(lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)))
    real = do(real_path)
    assert real in (errno.ENOENT, errno.EPERM)
    assert do(f"{machine.proc}/{mnt_path}") == real


# -- files of a process that exits ----------------------------------------------------


NAMES = ("status", "stat", "statm", "maps", "cmdline")


def real_exit_answers() -> dict:
    """Open a real child's files, let it exit (zombie), read; reap it, read."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    fds = {n: os.open(f"/proc/{pid}/{n}", os.O_RDONLY) for n in NAMES}
    try:
        os.write(w, b"x")
        for _ in range(1000):  # until it is a zombie
            if read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.01)
        zombie = {n: os.pread(fd, 4096, 0) for n, fd in fds.items()}
        os.waitpid(pid, 0)
        reaped = {n: err_of(lambda: os.pread(fd, 4096, 0)) for n, fd in fds.items()}
        reopen = err_of(lambda: os.open(f"/proc/{pid}/status", os.O_RDONLY))
    finally:
        for fd in fds.values():
            os.close(fd)
        os.close(r)
        os.close(w)
    return {"zombie": zombie, "reaped": reaped, "reopen": reopen}


def test_reads_of_an_exited_pid(procsim_machine):
    real = real_exit_answers()
    assert real["zombie"]["maps"] == b"" and real["zombie"]["statm"] == b"0 0 0 0 0 0 0\n"
    assert set(real["reaped"].values()) == {errno.ESRCH} and real["reopen"] == errno.ENOENT  # spec §1.6

    m = procsim_machine
    bash = next(pid for pid, p in model(m).items() if p["cmdline"] == ["-bash"])
    pid = m.ctl.spawn(argv=["/usr/bin/sleep", "5"], parent=bash)
    fds = {n: os.open(f"{m.proc}/{pid}/{n}", os.O_RDONLY) for n in NAMES}
    try:
        assert all(os.pread(fd, 4096, 0) for n, fd in fds.items())
        m.ctl.exit(pid=pid)
        zombie = {n: os.pread(fd, 4096, 0) for n, fd in fds.items()}
        assert zombie["maps"] == real["zombie"]["maps"] == b""
        assert zombie["statm"] == real["zombie"]["statm"]
        assert zombie["cmdline"] == real["zombie"]["cmdline"] == b""
        assert b"State:\tZ (zombie)" in zombie["status"] and b"VmRSS" not in zombie["status"]
        assert zombie["stat"].split(b") ")[1][:1] == b"Z"
        m.ctl.wait(pid=bash, child=pid)
        assert {n: err_of(lambda: os.pread(fd, 4096, 0)) for n, fd in fds.items()} == real["reaped"]
        assert err_of(lambda: os.open(f"{m.proc}/{pid}/status", os.O_RDONLY)) == real["reopen"]
    finally:
        for fd in fds.values():
            os.close(fd)
    assert read(f"{m.proc}/{bash}/status").startswith("Name:\tbash\n")  # still serving


# -- malformed and impossible control commands -------------------------------------------


def fingerprint(m, pids: list[int]) -> tuple:
    ps = m.ctl.ps()
    files = tuple(read(f"{m.proc}/{f}") for f in ("meminfo", "stat", "loadavg", "interrupts", "vmstat", "uptime"))
    per_pid = tuple((m.ctl.vmas(pid=p), read(f"{m.proc}/{p}/status"), read(f"{m.proc}/{p}/maps")) for p in pids)
    return json.dumps(ps, sort_keys=True), files, per_pid, m.ctl.now(), m.ctl.cpus()


def test_bad_control_commands_change_nothing(procsim_machine):
    m = procsim_machine
    ctl = m.ctl
    ps = model(m)
    bash = next(pid for pid, p in ps.items() if p["cmdline"] == ["-bash"])
    kthread = next(pid for pid, p in ps.items() if p["kthread"])
    dead = ctl.spawn(argv=["/usr/bin/true"])
    ctl.exit_group(pid=dead)  # init's child: reaped at once
    zombie = ctl.spawn(argv=["/usr/bin/false"], parent=bash)
    ctl.exit_group(pid=zombie, code=1)
    victim = ctl.spawn(argv=["/usr/local/bin/victim"], parent=bash)
    addr = ctl.mmap(pid=victim, length=32 << 30, noreserve=True)  # more than the machine's RAM
    ctl.touch(pid=victim, addr=addr, length=1 << 20)
    vmas = ctl.vmas(pid=victim)
    hole = vmas[0]["start"] - (1 << 20)  # nothing is mapped below the executable
    before = fingerprint(m, [1, bash, victim])

    cases = [
        ("frobnicate", {}, errno.EINVAL),
        ("mmap", {"pid": victim}, errno.EINVAL),                            # missing length
        ("mmap", {"pid": victim, "length": "lots"}, errno.EINVAL),
        ("mmap", {"pid": victim, "length": 4096, "colour": "red"}, errno.EINVAL),
        ("mmap", {"pid": victim, "length": True}, errno.EINVAL),
        ("mmap", {"pid": dead, "length": 4096}, errno.ESRCH),               # reaped
        ("mmap", {"pid": zombie, "length": 4096}, errno.ESRCH),
        ("mmap", {"pid": victim, "length": 0}, errno.EINVAL),               # mmap(2): EINVAL
        ("mmap", {"pid": victim, "length": 1 << 50}, errno.ENOMEM),         # beyond TASK_SIZE
        ("mmap", {"pid": victim, "length": 4096, "addr": 4097, "fixed": True}, errno.EINVAL),
        ("touch", {"pid": victim, "addr": hole, "length": 4096}, errno.EFAULT),  # nothing mapped there
        # (a touch of more than free RAM runs the OOM killer, which changes the world: test_fuse_oom.py)
        ("touch", {"pid": kthread, "addr": addr, "length": 4096}, errno.EINVAL),
        ("munmap", {"pid": victim, "addr": addr + 1, "length": 4096}, errno.EINVAL),
        ("mprotect", {"pid": victim, "addr": hole, "length": 4096, "prot": "r"}, errno.ENOMEM),
        ("mprotect", {"pid": victim, "addr": addr, "length": 4096, "prot": "rwz"}, errno.EINVAL),
        ("mremap", {"pid": victim, "addr": hole, "old_length": 4096, "new_length": 8192}, errno.EFAULT),
        ("run", {"tid": victim, "cpu": 8}, errno.EINVAL),                   # 8 CPUs: 0-7
        ("run", {"tid": dead, "cpu": 0}, errno.ESRCH),
        ("affinity", {"tid": victim, "cpus": "9-12"}, errno.EINVAL),
        ("kill", {"pid": dead}, errno.ESRCH),
        ("kill", {"pid": dead, "sig": 0}, errno.ESRCH),                   # kill(2) with 0 only checks
        ("kill", {"pid": victim, "sig": 99}, errno.EINVAL),                # kill(2): no such signal
        ("kill", {"pid": zombie}, errno.ESRCH),
        ("wait", {"pid": bash, "child": 1}, errno.ECHILD),
        ("spawn", {"argv": ["/bin/x"], "pid": 1}, errno.EEXIST),           # clone3 set_tid in use
        ("spawn", {"argv": []}, errno.ENOENT),
        ("spawn", {"argv": ["/bin/x"], "parent": dead}, errno.ESRCH),
        ("exec", {"pid": victim, "path": "relative/path"}, errno.ENOENT),
        ("advance", {"seconds": -1}, errno.EINVAL),
        ("advance", {"seconds": "nan"}, errno.EINVAL),
        ("vmas", {"pid": dead}, errno.ESRCH),
        ("task", {"pid": dead}, errno.ESRCH),
    ]
    for op, args, want in cases:
        with pytest.raises(OSError) as e:
            ctl.call(op, **args)
        assert e.value.errno == want, (op, args, e.value)
        assert str(e.value.msg), (op, args)  # a reason, not an empty error
    # requests the transport itself refuses
    for req in ({"op": 5}, {"op": "ps", "args": [1]}, {"args": {}}, [1, 2]):
        rep = ctl.request(req)
        assert rep["ok"] is False and rep["errno"] == errno.EINVAL, req
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(m.socket)
        s.sendall(b"this is not json\n" + b'{"op": "ping", "id": 7}\n')
        f = s.makefile("rb")
        assert json.loads(f.readline())["errno"] == errno.EINVAL
        assert json.loads(f.readline()) == {"ok": True, "result": {"pid": m.pid, "mnt": m.mnt}, "id": 7}

    assert fingerprint(m, [1, bash, victim]) == before
    ctl.kill(pid=victim, sig=0)  # succeeds and changes nothing either
    assert fingerprint(m, [1, bash, victim]) == before
    # and the daemon still serves, files and commands
    assert read(f"{m.proc}/{victim}/status").startswith("Name:\tvictim\n")
    ctl.munmap(pid=victim, addr=addr, length=32 << 30)
    assert len(ctl.vmas(pid=victim)) == len(vmas) - 1


def test_cli_ctl_reports_the_errno(procsim_machine):
    r = subprocess.run([sys.executable, "-m", "mountd.cli", "ctl", procsim_machine.mnt, "kill", "pid=31000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("procsim: error: ") and "(ESRCH)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "mountd.cli", "ctl", procsim_machine.mnt, "ps"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == procsim_machine.ctl.ps()


def test_daemon_survives_a_client_that_vanishes(procsim_machine):
    m = procsim_machine
    s = socket.socket(socket.AF_UNIX)
    s.connect(m.socket)
    s.sendall(b'{"op": "ps"')  # half a request, then gone
    s.close()
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import socket, time
        s = socket.socket(socket.AF_UNIX); s.connect({m.socket!r})
        s.sendall(b'{{"op": "ps"}}\\n' * 50); time.sleep(60)""")])
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert m.ctl.ping()["pid"] == m.pid
    assert sorted(int(n) for n in os.listdir(m.proc) if n.isdigit()) == sorted(model(m))


def test_fd_of_a_reaped_pid_stays_dead_when_the_pid_is_reused(procsim_machine):
    m = procsim_machine
    pid = m.ctl.spawn(argv=["/usr/bin/old-one"])
    fd = os.open(f"{m.proc}/{pid}/status", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0).startswith(b"Name:\told-one\n")
        m.ctl.kill(pid=pid)  # init's child: reaped at once
        assert m.ctl.spawn(argv=["/usr/bin/new-one"], pid=pid) == pid
        assert read(f"{m.proc}/{pid}/status").startswith("Name:\tnew-one\n")
        # the real kernel binds the fd to the old struct pid: ESRCH (spec §1.6)
        assert err_of(lambda: os.pread(fd, 4096, 0)) == errno.ESRCH
    finally:
        os.close(fd)
