"""The C baseline (../shared/bench/fuse-floor, or $PROCSIM_FUSE_FLOOR) and the
client that times every target.

The sources are compiled at run time into a temporary build directory; they
are never copied into the repository. `cfs_ll` is built with its status size
set to the size of the mount's status file, so both servers serve same-size
files. When the sources are missing, the C-baseline columns are skipped and a
Python client with the same loops (pyclient.py) times the mount and the real
/proc instead of fbench.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import REPO, BuildError, CServer, build_c, log, median

HERE = Path(__file__).resolve().parent


def floor_dir() -> Path | None:
    d = Path(os.environ.get("PROCSIM_FUSE_FLOOR") or (REPO / ".." / "shared" / "bench" / "fuse-floor")).resolve()
    if all((d / f).is_file() for f in ("cfs_ll.c", "fbench.c", "content.h")):
        return d
    return None


def _pkg_config_fuse3() -> list[str] | None:
    try:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True,
                             check=True).stdout
        return out.split()
    except (OSError, subprocess.CalledProcessError):
        return None


class Floor:
    """Builds fbench once and cfs_ll once per status size, in a temp dir."""

    def __init__(self) -> None:
        self.src = floor_dir()
        self.build = Path(tempfile.mkdtemp(prefix="procsim-bench-floor-"))
        self.fbench: str | None = None
        self.reason: str | None = None  # why the C baseline is unavailable
        self._servers: dict[int, str] = {}
        if self.src is None:
            self.reason = ("C baseline sources not found (set PROCSIM_FUSE_FLOOR or provide "
                           "../shared/bench/fuse-floor); C-baseline columns skipped, Python client used")
            return
        try:
            self.fbench = build_c(self.src / "fbench.c", self.build / "fbench")
        except BuildError as e:
            self.reason = f"cannot build fbench: {e}"

    @property
    def available(self) -> bool:
        return self.src is not None and self.fbench is not None and self.reason is None

    def server(self, status_size: int) -> str | None:
        """Path of a cfs_ll binary whose /status (and /p/N/status) is status_size bytes."""
        if not self.available:
            return None
        if status_size in self._servers:
            return self._servers[status_size]
        flags = _pkg_config_fuse3()
        if flags is None:
            self.reason = "pkg-config fuse3 not found (apt-get install libfuse3-dev pkg-config)"
            return None
        d = self.build / f"s{status_size}"
        d.mkdir()
        shutil.copy(self.src / "cfs_ll.c", d)
        content = (self.src / "content.h").read_text()
        patched, n = re.subn(r"#define STATUS_SZ \d+", f"#define STATUS_SZ {status_size}", content)
        if n != 1:
            log("warning: could not set STATUS_SZ in content.h; the C /status keeps its own size")
            patched = content
        (d / "content.h").write_text(patched)
        try:
            self._servers[status_size] = build_c(d / "cfs_ll.c", d / "cfs_ll", *flags)
        except BuildError as e:
            self.reason = f"cannot build cfs_ll: {e}"
            return None
        return self._servers[status_size]

    def cleanup(self) -> None:
        shutil.rmtree(self.build, ignore_errors=True)


class FloorServer(CServer):
    """cfs_ll as configured for the spec's FLOOR row: low-level fuse3,
    single-threaded (-s), entry/attr timeouts 1 s, direct_io."""

    def __init__(self, binary: str) -> None:
        super().__init__([binary], "status", dict(os.environ, FB_MT="0", FB_TIMEOUT="1", FB_DIRECT_IO="1"))


class PyFloorServer(CServer):
    """bench/pyfloor.py: a plain mfusepy server with the daemon's settings
    serving the C floor's layout from memory (the binding's own cost)."""

    def __init__(self, status_size: int) -> None:
        super().__init__([sys.executable, str(HERE / "pyfloor.py"), str(status_size)], "status")


@dataclass
class ClientRun:
    """One client invocation: ns per op for each repetition."""
    ns_per_op: list[float]
    bytes_per_op: int | None = None
    files_per_scan: int | None = None
    client: str = "fbench"

    @property
    def median_us(self) -> float:
        return median(self.ns_per_op) / 1000.0


_FB_RE = re.compile(r"ns_per_op=([\d,]+)(?: bytes_per_op=(\d+))?(?: files_per_scan=(\d+))?")


def run_client(floor: Floor, mode: str, path: str, seconds: float, reps: int,
               cpu: int | None = None) -> ClientRun:
    """Time `mode` (read or scan) on `path` with fbench, or with the Python
    fallback client when fbench is unavailable. `cpu` pins the client."""
    if floor.fbench:
        cmd = [floor.fbench, "-t", str(seconds), "-r", str(reps), mode, path]
        client = "fbench"
    else:
        cmd = [sys.executable, str(HERE / "pyclient.py"), "-t", str(seconds), "-r", str(reps), mode, path]
        client = "pyclient"
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + seconds * reps * 4)
    m = _FB_RE.search(p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stdout.strip()} {p.stderr.strip()}")
    return ClientRun([float(x) for x in m.group(1).split(",")],
                     int(m.group(2)) if m.group(2) else None,
                     int(m.group(3)) if m.group(3) else None, client)
