"""`procsim run`'s namespace binds what tools read of /sys about the
machine (MNT/sys/devices/system/{cpu,node} and kernel/mm, mountd/cli.py
SYS_BINDS) and leaves the rest of the host's /sys: lscpu and htop, unmodified,
see the simulated CPUs."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time

import pytest

from fusehelpers import read

pytestmark = pytest.mark.fuse


def ncpus(machine) -> int:
    return len([l for l in read(f"{machine.proc}/cpuinfo").splitlines() if l.startswith("processor")])


def test_run_binds_the_cpu_and_node_sysfs(machine):
    """`procsim run`'s namespace: the simulated CPUs and node under /sys, the
    host's /sys/fs/cgroup still there."""
    ncpu = ncpus(machine)
    r = machine.run(["sh", "-c", "ls /sys/devices/system/cpu; cat /sys/devices/system/cpu/online "
                     "/sys/devices/system/node/node0/cpulist; ls /sys/fs | grep -c ."],
                    capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert [x for x in lines if x.startswith("cpu") and x[3:].isdigit()] == [f"cpu{i}" for i in range(ncpu)]
    want = "0" if ncpu == 1 else f"0-{ncpu - 1}"
    assert lines[-3:-1] == [want, want]
    assert int(lines[-1]) > 0  # the host's /sys/fs stays



@pytest.mark.skipif(not shutil.which("lscpu"), reason="needs lscpu (util-linux)")
def test_lscpu_counts_the_simulated_cpus(machine):
    r = machine.run(["lscpu"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    fields = dict(l.split(":", 1) for l in r.stdout.splitlines() if ":" in l)
    n = ncpus(machine)
    assert int(fields["CPU(s)"]) == n and fields["On-line CPU(s) list"].strip() == f"0-{n - 1}"


def _htop_meters(argv: list[str], seconds: float = 3.0) -> list[int]:
    """The CPU meter numbers htop draws on a 200x50 terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm", HOME=os.environ.get("TMPDIR", "/tmp"))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out, end = b"", time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
    finally:
        p.terminate()
        p.wait(timeout=10)
        os.close(master)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]", b" ", out).decode(errors="replace")
    return sorted({int(x) for x in re.findall(r"(?<![0-9])([0-9]{1,3})\s*\[", text)})


@pytest.mark.skipif(not shutil.which("htop"), reason="needs htop")
def test_htop_draws_the_simulated_cpu_meters(machine):
    from mountd.cli import namespace_argv
    assert _htop_meters(namespace_argv(machine.mnt, ["htop", "-d", "10"])) == list(range(ncpus(machine)))
