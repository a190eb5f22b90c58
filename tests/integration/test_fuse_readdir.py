"""Directory listings through a real mount: READDIRPLUS in many replies
(each entry with its offset and attributes), inode numbers, and a listing
that follows exits."""

from __future__ import annotations

import os
import stat as S

import pytest

pytestmark = pytest.mark.fuse


def test_a_long_listing_in_many_replies(procsim_mount):
    m = procsim_mount()
    for _ in range(400):  # about 30 names fit in one 4 KiB READDIRPLUS reply
        m.ctl.spawn(argv=["/usr/bin/sleep", "600"])
    pids = sorted(p["pid"] for p in m.ctl.ps())
    with os.scandir(m.proc) as it:
        entries = list(it)
    listed = [int(e.name) for e in entries if e.name.isdigit()]
    assert listed == pids  # every pid once, in ascending order
    assert len({e.name for e in entries}) == len(entries)
    by_name = {e.name: e for e in entries}
    assert by_name[str(pids[-1])].is_dir(follow_symlinks=False)
    assert by_name["self"].is_symlink() and by_name["meminfo"].is_file(follow_symlinks=False)
    # the attributes READDIRPLUS gave are what stat says, and inode numbers are unique
    inos = set()
    for pid in pids:
        st = os.lstat(f"{m.proc}/{pid}")
        assert S.S_ISDIR(st.st_mode) and st.st_ino not in inos
        inos.add(st.st_ino)
    assert os.stat(m.mnt).st_ino == 1


def test_an_exit_leaves_the_listing_and_the_dentry(procsim_mount):
    """The Invalidator finds the parent's node id (name_to_handle_at) with
    use_ino on: a reaped pid is gone at once, even though READDIRPLUS made
    its dentry (no lookup of it before)."""
    m = procsim_mount()
    bash = next(p["pid"] for p in m.ctl.ps() if p["cmdline"] == ["-bash"])
    pid = m.ctl.spawn(argv=["/usr/bin/sleep", "600"], parent=bash)
    assert str(pid) in os.listdir(m.proc)
    m.ctl.exit_group(pid=pid, code=0)
    assert m.ctl.wait(pid=bash, child=pid) == pid
    assert not os.path.exists(f"{m.proc}/{pid}")
    assert str(pid) not in os.listdir(m.proc)
