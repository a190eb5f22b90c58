"""Workingset detection through a real mount: a reader in a cgroup with a
memory.max smaller than the file it reads twice; memcg reclaim evicts the
file's pages with shadow entries, the second read refaults them. Real grep
and cat read /proc/vmstat and the cgroup's memory.stat; psutil reads
meminfo. The files agree with each other and with the model."""

from __future__ import annotations

import subprocess

import pytest

from fusehelpers import psutil_procfs

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def sh(cmd: str) -> str:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout


def keyed(text: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in text.splitlines() if line.strip()}


def test_refaults_under_a_memory_limit(procsim_machine) -> None:
    m = procsim_machine
    pid = m.ctl.spawn(argv=["/usr/bin/reader"])
    m.ctl.cgroup_attach(pid=pid, path="/job", create=True)
    with open(f"{m.sys}/fs/cgroup/job/memory.max", "w") as f:
        f.write("16M")
    m.ctl.truncate(pid=pid, path="/srv/big.dat", length=64 * MiB)  # a 64 MiB file on the disk
    before = keyed(sh(f"grep ^workingset_ {m.proc}/vmstat"))
    m.ctl.read(pid=pid, length=64 * MiB, path="/srv/big.dat")
    mid = keyed(sh(f"grep ^workingset_ {m.proc}/vmstat"))
    assert mid["workingset_refault_file"] == before["workingset_refault_file"]
    assert mid["workingset_nodes"] > 0  # the evicted pages' shadows
    m.ctl.read(pid=pid, length=64 * MiB, path="/srv/big.dat")
    after = keyed(sh(f"grep ^workingset_ {m.proc}/vmstat"))
    job = keyed(sh(f"cat {m.sys}/fs/cgroup/job/memory.stat"))
    root = keyed(sh(f"cat {m.sys}/fs/cgroup/memory.stat"))
    refaults = after["workingset_refault_file"] - before["workingset_refault_file"]
    # the second read found nearly every page evicted (16M of 64M fit at most)
    assert refaults >= (64 - 16) * MiB // 4096
    assert job["workingset_refault_file"] == refaults
    for key in ("workingset_refault_file", "workingset_activate_file", "workingset_restore_file",
                "workingset_refault_anon", "workingset_nodereclaim"):
        assert root[key] == after[key], key
    assert job["pgsteal"] >= refaults and job["file"] <= 16 * MiB
    vm = keyed(sh(f"cat {m.proc}/vmstat"))
    with psutil_procfs(m):
        import psutil
        vmem = psutil.virtual_memory()
    assert vmem.active == (vm["nr_active_anon"] + vm["nr_active_file"]) * 4096
    assert vmem.inactive == (vm["nr_inactive_anon"] + vm["nr_inactive_file"]) * 4096
    # a truncation to nothing takes the shadows with the pages
    m.ctl.truncate(pid=pid, path="/srv/big.dat", length=0)
    assert keyed(sh(f"grep ^workingset_nodes {m.proc}/vmstat"))["workingset_nodes"] == 0
