"""/proc/version and /proc/sys/kernel/osrelease: one utsname release, as
linux_proc_banner prints it (init/version.c); checked against this host's
kernel, whose banner carries its own `uname -r`."""

from __future__ import annotations

import json
import os
import re
import stat as S
import subprocess
import sys

import pytest

from procsim.procfs.tree import ProcFS
from procsim.scenario import ScenarioError, build

from procfs_helpers import ROOT, read_all

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


# -- hostname and domainname: proc_do_uts_string over proc_dostring ----------------------

# (data, offset) written to /proc/sys/kernel/hostname one after another, and
# what a 6.18 host answered (write(2)'s return, then the file): at an offset
# the text goes in there and ends the string; past the end nothing; NUL and
# newline end the text; 64 bytes at most, silently
UTS_WRITES = [(b"web01", 0), (b"abc\n", 0), (b"xy", 1), (b"q", 10), (b"z", 3), (b"a" * 70, 0),
              (b"foo\0bar", 0), (b"", 0), (b"p\nq", 0)]
HOST_ANSWERS = [[5, "web01\n"], [4, "abc\n"], [2, "axy\n"], [1, "axy\n"], [1, "axyz\n"], [70, "a" * 64 + "\n"],
                [7, "foo\n"], [0, "foo\n"], [3, "p\n"]]

_HOST_SCRIPT = """
import json, os, sys
out = []
for data, off in json.loads(sys.argv[1]):
    fd = os.open("/proc/sys/kernel/hostname", os.O_WRONLY)
    n = os.pwrite(fd, bytes.fromhex(data), off)
    os.close(fd)
    out.append([n, open("/proc/sys/kernel/hostname").read()])
print(json.dumps(out))
"""


def simulated_answers(fs: ProcFS) -> list[list]:
    out = []
    for data, off in UTS_WRITES:
        n = fs.open("/proc/sys/kernel/hostname", os.O_WRONLY, ROOT).write(data, off)
        out.append([n, read_all(fs, "/proc/sys/kernel/hostname").decode()])
    return out


def test_hostname_and_domainname_files() -> None:
    fs = ProcFS(build({"machine": {"mem": "512M", "nr_cpus": 2, "hostname": "web01"}}))
    assert read_all(fs, "/proc/sys/kernel/hostname") == b"web01\n"
    assert read_all(fs, "/proc/sys/kernel/domainname") == b"(none)\n"
    h = fs.open("/proc/sys/kernel/domainname", os.O_RDONLY, ROOT)
    assert [h.read(100, o) for o in (3, 6, 7)] == [b"ne)\n", b"\n", b""]  # as the host's: see below
    for name in ("hostname", "domainname"):
        assert S.S_IMODE(fs.getattr(f"/proc/sys/kernel/{name}", ROOT).mode) == 0o644


def test_hostname_writes_as_the_host_answered() -> None:
    fs = ProcFS(build({"machine": {"mem": "512M", "nr_cpus": 2}}))
    assert simulated_answers(fs) == HOST_ANSWERS
    assert fs.kernel.uts.nodename == b"p"
    fs.open("/proc/sys/kernel/domainname", os.O_WRONLY, ROOT).write(b"example.org\n", 0)
    assert read_all(fs, "/proc/sys/kernel/domainname") == b"example.org\n"


@pytest.mark.parametrize("name", ["x" * 65, "a\nb", 5])
def test_bad_hostname_keys_are_load_errors(name) -> None:
    with pytest.raises(ScenarioError, match="hostname"):
        build({"machine": {"mem": "512M", "hostname": name}})


def test_hostname_writes_against_this_host() -> None:
    """The same writes in a new UTS namespace of this host (needs CAP_SYS_ADMIN)."""
    arg = json.dumps([[d.hex(), o] for d, o in UTS_WRITES])
    try:
        real = subprocess.run(["unshare", "--uts", sys.executable, "-c", _HOST_SCRIPT, arg],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no unshare(1) on this host")
    if real.returncode:
        pytest.skip(f"cannot make a UTS namespace here (no CAP_SYS_ADMIN?): {real.stderr.strip()[:200]}")
    assert json.loads(real.stdout) == HOST_ANSWERS
    assert simulated_answers(ProcFS(build({"machine": {"mem": "512M", "nr_cpus": 2}}))) == json.loads(real.stdout)
