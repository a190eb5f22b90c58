"""`procsim capture` of a procsim mount replays it: mount the default
scenario (manual clock), capture its /proc, mount the capture through the
pytest plugin and diff the two trees. Every pid and every compared file
is there; what differs is a short list of known, justified exceptions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from procsim.capture import capture, to_toml
from procsim.capture.diff import compare

pytestmark = pytest.mark.fuse

# what the replay cannot reproduce, and why (the README's limitations): the
# page tables follow where the replay faulted the resident pages in (smaps
# gives how many per VMA, not which), so VmPTE may differ by a table
JUSTIFIED = {("status", "VmPTE")}
# the sockets' kernel addresses (%pK, hashed): the replay's socket objects are its own
JUSTIFIED |= {(kind, "pointer") for kind in ("net/tcp", "net/tcp6", "net/udp", "net/udp6", "net/unix")}
NET_BLOCK = ("net/dev", "net/tcp", "net/tcp6", "net/unix", "diskstats", "partitions", "swaps")


def test_a_captured_mount_replays(procsim_mount, tmp_path) -> None:
    src = procsim_mount()
    warnings: list[str] = []
    doc = capture(src.proc, src.sys, warn=warnings.append)
    assert warnings == []
    out = tmp_path / "captured.toml"
    out.write_text(to_toml(doc))
    dst = procsim_mount(scenario=str(out))
    r = compare(src.proc, dst.proc)
    assert r.pids == len([n for n in os.listdir(src.proc) if n.isdigit()])
    for kind in ("cmdline", "comm", "maps", "limits", "cgroup", "cpuinfo", "version", "meminfo"):
        assert r.same[kind] == r.total[kind], (kind, r.text())
    for kind in ("fd", "stat", "statm", "smaps"):  # smaps: Size, Rss and Swap of every VMA
        assert r.same[kind] == r.total[kind], (kind, r.text())
    for kind in NET_BLOCK:  # the default machine has listeners, unix sockets, a disk and a swap file
        assert r.total[kind] > 0, (kind, r.text())
        pointers = r.fields.get((kind, "pointer"), 0)
        assert r.same[kind] + pointers == r.total[kind], (kind, r.text())
    assert any(kind in r.total for kind in ("net/tcp", "net/tcp6"))
    unexplained = {key: n for key, n in r.fields.items() if key not in JUSTIFIED}
    assert unexplained == {}, r.text()
    assert r.fields[("status", "VmPTE")] <= 5, r.text()


def test_capture_and_diff_commands(procsim_mount, tmp_path) -> None:
    src = procsim_mount()
    out = tmp_path / "c.toml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run([sys.executable, "-m", "mountd.cli", "capture", str(out), "--root", src.proc,
                          "--sys", src.sys, "--pids", "1,100-110", "--anonymize"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "processes" in run.stderr and out.exists()
    dst = procsim_mount(scenario=str(out))
    d = subprocess.run([sys.executable, "-m", "mountd.cli", "diff", src.proc, dst.proc, "--pids", "100-110"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert d.returncode == 1 and "pids compared" in d.stdout  # anonymized: the command lines differ
    assert "cmdline" in d.stdout
