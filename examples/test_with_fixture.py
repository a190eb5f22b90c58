"""Example: test your own /proc reader in CI against a scripted machine.

`top_memory_consumers` stands for the code under test - a monitoring
agent's "who is eating the memory" check. Instead of hoping the CI runner
has the right processes, the test builds them: procsim's pytest fixture
(installed with procsim; needs root and /dev/fuse) mounts a simulated
machine, the test spawns a process and makes it big through the control
client, and the reader is pointed at MNT/proc.

    pytest examples/test_with_fixture.py
"""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.fuse,
              pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                 reason="procsim mounts need root and /dev/fuse")]


def top_memory_consumers(proc_root: str = "/proc", n: int = 5) -> list[tuple[int, int, str]]:
    """The n processes with the most resident memory, as (VmRSS kB, pid, name)."""
    out = []
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc_root}/{entry}/status") as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we were looking
        if "VmRSS" not in fields:
            continue  # kernel threads and zombies have no memory
        out.append((int(fields["VmRSS"].split()[0]), int(entry), fields["Name"]))
    return sorted(out, reverse=True)[:n]


def test_finds_the_memory_hog(procsim_machine):
    m = procsim_machine
    hog = m.ctl.spawn(argv=["/usr/local/bin/hog", "--leak"], uid=1000, gid=1000)
    addr = m.ctl.mmap(pid=hog, length=4 << 30)        # 4 GiB of address space...
    m.ctl.touch(pid=hog, addr=addr, length=3 << 30)   # ...3 GiB of it resident

    top = top_memory_consumers(m.proc)

    rss_kb, pid, name = top[0]
    assert (pid, name) == (hog, "hog")
    assert rss_kb >= 3 << 20
    # the model agrees with what the reader found
    assert next(p for p in m.ctl.ps() if p["pid"] == hog)["rss_pages"] * 4 == rss_kb


def test_forgets_processes_that_exit(procsim_machine):
    m = procsim_machine
    hog = m.ctl.spawn(argv=["/usr/local/bin/hog"])
    m.ctl.touch(pid=hog, addr=m.ctl.mmap(pid=hog, length=2 << 30), length=2 << 30)
    assert top_memory_consumers(m.proc)[0][1] == hog

    m.ctl.kill(pid=hog)  # its parent (init) reaps it at once

    assert hog not in [pid for _, pid, _ in top_memory_consumers(m.proc)]
