"""Shared pieces of the integration suite: real FUSE mounts, real programs.

Tests that only read share one machine per module (`machine`, mounted once
with the default scenario and a manual clock); tests that change the world
in ways other tests would notice take their own from the plugin's
`procsim_mount` / `procsim_machine` fixtures.

The module machine lives in a world-traversable directory (not pytest's
0700 tmp dir) so that tests can also read it as an unprivileged user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from hostinfo import missing
from mountd.pytest_plugin import Machine, mount_machine


def fuse_usable() -> str | None:
    """Why the FUSE tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    if not shutil.which("fusermount3"):
        return "needs fusermount3 (fuse3)"
    if why := missing(caps=("CAP_SYS_ADMIN",)):  # mount(2), via fusermount3, and unshare --mount
        return why[0] + " (FUSE mounts need it)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = fuse_usable()
    if why is None:
        return
    for item in items:
        if item.get_closest_marker("fuse"):
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    """The default machine (seed 0, manual clock), shared by one module."""
    top = tempfile.mkdtemp(prefix="procsim-it-")
    os.chmod(top, 0o755)  # readable by the unprivileged reader tests
    m = mount_machine(os.path.join(top, "mnt"))
    try:
        yield m
    finally:
        m.umount()
        if not os.path.ismount(m.mnt):
            shutil.rmtree(top, ignore_errors=True)
