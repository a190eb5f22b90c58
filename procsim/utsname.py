"""utsname: the kernel's release and build banner (init/version.c), and the
names a system sets at run time (nodename, domainname). /proc/version is
linux_proc_banner, "Linux version <release> (<by>@<host>) (<compiler>)
<UTS_VERSION>", and its release is the same utsname release that
/proc/sys/kernel/osrelease prints, so one cannot disagree with the other.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.errors import KernelError

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import Task

NEW_UTS_LEN = 64  # __NEW_UTS_LEN: the longest nodename or domainname
DEFAULT_RELEASE = "6.18.0-procsim"
COMPILER = "gcc (GCC) 14.2.0, GNU ld (GNU Binutils) 2.43.1"
HOST_VERSION = "/proc/version"
BANNER = "Linux version "


def _built(btime: int) -> str:
    # UTS_VERSION carries `LC_ALL=C date` of the build (two weeks before boot)
    return time.strftime("%a %b %e %H:%M:%S UTC %Y", time.gmtime(btime - 14 * 86400))


def default_banner(release: str, btime: int) -> str:
    """procsim's own build for its own release; any other release gets a
    neutral build identity rather than claiming procsim built it."""
    host = "procsim" if release == DEFAULT_RELEASE else "localhost"
    return f"{BANNER}{release} (builder@{host}) ({COMPILER}) #1 SMP PREEMPT_DYNAMIC {_built(btime)}"


def banner_release(banner: str) -> str:
    if not banner.startswith(BANNER) or not banner[len(BANNER):].split(" ", 1)[0]:
        raise ValueError(f"version must begin with {BANNER!r} and the release, got {banner!r}")
    return banner[len(BANNER):].split(" ", 1)[0]


def read_host() -> str:
    try:
        with open(HOST_VERSION) as f:
            return f.read().rstrip("\n")
    except OSError as e:
        raise ValueError(f"version = host: cannot read {HOST_VERSION}: {e.strerror}") from None


def resolve(osrelease: str | None, version: str | None, btime: int) -> tuple[str, str]:
    """(osrelease, banner) from the scenario's keys: the banner's release is
    the osrelease; given both, they must agree; given neither, procsim's own."""
    if version is None:
        release = osrelease or DEFAULT_RELEASE
        return release, default_banner(release, btime)
    banner = read_host() if version == "host" else version
    if "\n" in banner:
        raise ValueError("version must be one line")
    release = banner_release(banner)
    if osrelease is not None and osrelease != release:
        raise ValueError(f"osrelease {osrelease!r} disagrees with the release in version ({release!r})")
    return release, banner


@dataclass
class UtsName:
    """The names sethostname(2) and setdomainname(2) change (the rest of
    utsname is fixed at build: release and version, above)."""
    nodename: bytes
    domainname: bytes = b"(none)"


class UtsSyscalls:
    """sethostname(2), setdomainname(2) and a task's utsname() as the Kernel's
    entry points
    (a Kernel mixin)."""

    def sethostname(self: "Kernel", name: bytes, pid: int | None = None) -> None:
        """sethostname(2): the utsname nodename (of `pid`'s uts namespace;
        None: the initial one)."""
        self._set_uts("nodename", name, pid)

    def setdomainname(self: "Kernel", name: bytes, pid: int | None = None) -> None:
        """setdomainname(2): the utsname domainname (NIS)."""
        self._set_uts("domainname", name, pid)

    def uts_of(self: "Kernel", t: Task | None) -> UtsName:
        """utsname(): the names of t's uts namespace (None: init_uts_ns)."""
        if t is None or t.nsproxy is None:
            return self.uts
        return t.nsproxy.uts.uts

    def _set_uts(self: "Kernel", field: str, name: bytes, pid: int | None = None) -> None:
        if len(name) > NEW_UTS_LEN:
            raise KernelError(errno.EINVAL, f"{field}: longer than {NEW_UTS_LEN} bytes")
        with self.lock:
            setattr(self.uts_of(None if pid is None else self.task(pid)), field, name)
            self._changed("uts", field=field)
