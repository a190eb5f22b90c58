"""The pytest plugin itself (mountd.pytest_plugin, entry point `procsim`):
procsim_mount with an inline scenario, unmounting when the fixture ends
(pass or fail), and the example a user copies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fusehelpers import EXAMPLES, REPO, model, read, status
from mountd.cli import _pid_alive

pytestmark = pytest.mark.fuse

INLINE = """
description = "plugin test: 3 CPUs, one two-threaded app"
[machine]
nr_cpus = 3
mem = "256M"
kernel_reserved = "16M"
hostname = "plug"
[[process]]
name = "app"
pid = 300
uid = 4242
gid = 4242
argv = ["/opt/app/bin/app", "--serve"]
maps = [{ name = "heap", size = "8M", touch = "2M" }]
threads = [{ comm = "app-io", tid = 301 }]
"""


def check_inline_machine(m) -> None:
    assert read(f"{m.sys}/devices/system/cpu/online") == "0-2\n"
    assert read(f"{m.proc}/meminfo").startswith(f"MemTotal:       {(256 - 16) * 1024:>8} kB\n")
    s = status(m, 300)
    assert (s["Name"], s["Uid"], s["Threads"]) == ("app", "4242\t4242\t4242\t4242", "2")
    assert sorted(os.listdir(f"{m.proc}/300/task")) == ["300", "301"]
    assert read(f"{m.proc}/300/cmdline") == "/opt/app/bin/app\0--serve\0"
    assert sorted(int(n) for n in os.listdir(m.proc) if n.isdigit()) == sorted(model(m))


def test_procsim_mount_inline_scenario(procsim_mount):
    m = procsim_mount(scenario=INLINE)
    assert os.path.ismount(m.mnt) and m.ctl.ping()["pid"] == m.pid
    check_inline_machine(m)
    # a second machine from the same factory is independent of the first
    d = procsim_mount()
    assert d.mnt != m.mnt and len(d.ctl.cpus()) == 8 and len(m.ctl.cpus()) == 3
    d.ctl.spawn(argv=["/usr/bin/sleep", "1"])
    assert 300 in model(m) and 300 not in model(d)


INNER = textwrap.dedent('''
    import json, os
    from fusehelpers import status
    from test_fuse_plugin import INLINE, check_inline_machine

    def record(m):
        with open(os.environ["PROCSIM_RECORD"], "a") as f:
            f.write(json.dumps({"mnt": m.mnt, "pid": m.pid, "socket": m.socket}) + "\\n")

    def test_inline(procsim_mount):
        m = procsim_mount(scenario=INLINE)
        record(m)
        check_inline_machine(m)

    def test_fails_but_still_unmounts(procsim_machine):
        record(procsim_machine)
        assert status(procsim_machine, 1)["Name"] == "systemd"
        assert False, "deliberate failure"
''')


def test_machines_are_unmounted_when_the_fixture_ends(tmp_path):
    """Run a small test session in a subprocess; after it, every machine its
    fixtures mounted is unmounted, its daemon gone and its socket removed."""
    test = tmp_path / "test_inner.py"
    test.write_text(INNER)
    record = tmp_path / "record.jsonl"
    env = {**os.environ, "PROCSIM_RECORD": str(record),
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                        str(test)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert "1 failed, 1 passed" in r.stdout, r.stdout + r.stderr
    assert "deliberate failure" in r.stdout
    machines = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(machines) == 2
    for m in machines:
        assert not os.path.ismount(m["mnt"]), m
        assert not os.path.exists(m["socket"]), m
        assert not _pid_alive(m["pid"]), m


def test_the_example_passes():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", str(EXAMPLES / "test_with_fixture.py")],
                       cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout


def test_umount_after_the_daemon_was_killed(tmp_path):
    """A daemon killed with SIGKILL leaves a stale socket and, until
    auto_unmount gets to it, a dead mount (every stat ENOTCONN); umount
    cleans both up at once (it used to wait out its 10 s timeout, and to take
    the dead mount for no mount at all)."""
    import signal
    import time

    from mountd.cli import is_mounted
    from mountd.pytest_plugin import mount_machine
    m = mount_machine(tmp_path / "mnt")
    try:
        os.kill(m.pid, signal.SIGKILL)  # our own daemon, by pid
        deadline = time.monotonic() + 10
        while is_mounted(m.mnt) and time.monotonic() < deadline:  # the mount table, not stat()
            time.sleep(0.02)
        # fusermount3's auto_unmount usually has removed the mount by now; on a
        # loaded machine it may not have, and then umount must remove the dead one
        assert os.path.exists(m.socket)  # nobody removed it
        t0 = time.monotonic()
        m.umount()
        assert time.monotonic() - t0 < 3
        assert not os.path.exists(m.socket) and not is_mounted(m.mnt)
    finally:
        m.umount()


def test_umount_ends_a_daemon_whose_mount_another_namespace_holds(tmp_path):
    """A process in a private mount namespace that copied the mount keeps the
    FUSE session alive after the unmount here, so the daemon never sees it
    end; umount stops the daemon rather than leaving it behind."""
    import time

    from mountd.cli import is_mounted, unmount
    from mountd.pytest_plugin import mount_machine
    m = mount_machine(tmp_path / "mnt")
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10  # until the copy exists: the holder's namespace lists the mount
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{holder.pid}/mountinfo") as f:
                    if f" {m.mnt} " in f.read() and os.readlink(f"/proc/{holder.pid}/ns/mnt") != \
                            os.readlink("/proc/self/ns/mnt"):
                        break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            pytest.fail("the holder's mount namespace never appeared")
        unmount(m.mnt, timeout=1.0)
        assert not is_mounted(m.mnt) and not os.path.exists(m.socket)
        assert not _pid_alive(m.pid), "the daemon outlived its unmount"
    finally:
        holder.kill()  # ours, by pid
        holder.wait()
        m.umount()
