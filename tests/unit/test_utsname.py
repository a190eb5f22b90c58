"""/proc/version and /proc/sys/kernel/osrelease: one utsname release, as
linux_proc_banner prints it (init/version.c); checked against this host's
kernel, whose banner carries its own `uname -r`."""

from __future__ import annotations

import os
import re

import pytest

from procsim.procfs.tree import ProcFS
from procsim.scenario import ScenarioError, build

from procfs_helpers import read_all

HOST_BANNER = "Linux version 6.18.44-fc-v1272 (builder@sandboxing) (gcc (GCC) 15.3.0, GNU ld (GNU Binutils) 2.46) " \
              "#1 SMP PREEMPT_DYNAMIC @0"  # a real 6.18 banner


def files(machine: dict) -> tuple[str, str]:
    fs = ProcFS(build({"machine": {"mem": "512M", "nr_cpus": 2, **machine}}))
    return read_all(fs, "/proc/version").decode(), read_all(fs, "/proc/sys/kernel/osrelease").decode()


def test_default_banner_is_procsims_own_build() -> None:
    version, release = files({})
    assert release == "6.18.0-procsim\n"
    assert re.fullmatch(r"Linux version 6\.18\.0-procsim \(builder@procsim\) \(gcc \(GCC\) [\d.]+, GNU ld "
                        r"\(GNU Binutils\) [\d.]+\) #1 SMP PREEMPT_DYNAMIC Thu Dec 18 00:00:00 UTC 2025\n", version)


def test_overridden_osrelease_is_the_banners_release() -> None:
    version, release = files({"osrelease": "6.1.0-18-amd64"})
    assert release == "6.1.0-18-amd64\n"
    assert version.startswith("Linux version 6.1.0-18-amd64 (") and "procsim" not in version


def test_version_sets_the_release() -> None:
    version, release = files({"version": HOST_BANNER})
    assert version == HOST_BANNER + "\n" and release == "6.18.44-fc-v1272\n"
    assert files({"version": HOST_BANNER, "osrelease": "6.18.44-fc-v1272"}) == (version, release)


@pytest.mark.parametrize("machine, msg", [
    ({"version": HOST_BANNER, "osrelease": "6.18.0"}, r"machine: osrelease '6\.18\.0' disagrees with the release"),
    ({"version": "6.18.0 (me@there)"}, r"machine: version must begin with 'Linux version '"),
    ({"version": "Linux version "}, r"machine: version must begin"),
    ({"version": HOST_BANNER + "\nx"}, r"machine: version must be one line"),
    ({"version": 618}, r"machine: version: expected a string"),
])
def test_bad_versions(machine: dict, msg: str) -> None:
    with pytest.raises(ScenarioError, match=msg):
        build({"machine": {"mem": "512M", **machine}})


@pytest.mark.skipif(not os.path.exists("/proc/version"), reason="host has no /proc/version")
def test_version_host_is_the_hosts_kernel() -> None:
    with open("/proc/version") as f:
        theirs = f.read()
    # the real kernel's banner and uname agree on the release: the rule procsim keeps
    assert theirs.startswith(f"Linux version {os.uname().release} ")
    version, release = files({"version": "host"})
    assert version == theirs and release == os.uname().release + "\n"
