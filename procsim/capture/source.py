"""Reading a live /proc (the host's, a container's, a procsim mount's) as
far as it goes: every read that fails (a process exiting mid-capture,
EACCES on another user's files, a file this kernel does not have) is one
warning naming the file, and the capture goes on without it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class Source:
    """A /proc root and a /sys root, with the warnings of what could not be read."""

    def __init__(self, proc: str = "/proc", sys_root: str = "/sys",
                 warn: Callable[[str], None] | None = None) -> None:
        self.proc = proc.rstrip("/") or "/"
        self.sys = sys_root.rstrip("/") or "/"
        self.warnings: list[str] = []
        self._warn = warn

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        if self._warn is not None:
            self._warn(msg)

    def path(self, rel: str, sysfs: bool = False) -> str:
        return os.path.join(self.sys if sysfs else self.proc, rel)

    def read_bytes(self, rel: str, sysfs: bool = False, quiet: bool = False) -> bytes | None:
        p = self.path(rel, sysfs)
        try:
            with open(p, "rb") as f:
                return f.read()
        except OSError as e:
            if not quiet:
                self.warn(f"{p}: skipped ({os.strerror(e.errno) if e.errno else e})")
            return None

    def read(self, rel: str, sysfs: bool = False, quiet: bool = False) -> str | None:
        b = self.read_bytes(rel, sysfs, quiet)
        return None if b is None else b.decode("utf-8", "surrogateescape")

    def readlink(self, rel: str, quiet: bool = False) -> str | None:
        p = self.path(rel)
        try:
            return os.readlink(p)
        except OSError as e:
            if not quiet:
                self.warn(f"{p}: skipped ({os.strerror(e.errno) if e.errno else e})")
            return None

    def listdir(self, rel: str, quiet: bool = False) -> list[str]:
        p = self.path(rel)
        try:
            return os.listdir(p)
        except OSError as e:
            if not quiet:
                self.warn(f"{p}: skipped ({os.strerror(e.errno) if e.errno else e})")
            return []

    def pids(self) -> list[int]:
        return sorted(int(n) for n in self.listdir("") if n.isdigit())


def stderr_progress(msg: str) -> None:
    print(f"procsim capture: {msg}", file=sys.stderr, flush=True)
