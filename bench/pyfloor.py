"""The binding's floor: a plain mfusepy server with the daemon's settings
(libfuse3, nothreads, raw_fi, direct_io per open, procsim's mount options)
serving the C floor's layout from memory: /status of N bytes, /p/1..334
with stat, status and cmdline of the C floor's sizes (content.h). What it
costs over cfs_ll is the binding's; what procsim costs over it is ours.

    python bench/pyfloor.py STATUS_BYTES MNT     (foreground; SIGTERM unmounts)
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mfusepy  # noqa: E402

from mountd.fs import MOUNT_OPTIONS  # noqa: E402

NP, STAT_SZ, CMDLINE_SZ = 334, 300, 48  # content.h's NP, STAT_SZ, CMDLINE_SZ
DIR_MODE, REG_MODE = stat.S_IFDIR | 0o555, stat.S_IFREG | 0o444
PID_FILES = ("stat", "status", "cmdline")


class FloorOps(mfusepy.Operations):
    """Only what the C floor answers; the bytes are fixed (ASCII fill)."""

    use_ns = True  # (mfusepy warns otherwise; no utimens here anyway)

    def __init__(self, status_size: int) -> None:
        status = b"x" * (status_size - 1) + b"\n"
        self.files = {"/status": status}
        for p in range(1, NP + 1):
            self.files[f"/p/{p}/stat"] = b"s" * (STAT_SZ - 1) + b"\n"
            self.files[f"/p/{p}/status"] = status
            self.files[f"/p/{p}/cmdline"] = b"c" * CMDLINE_SZ
        self.dirs = {"/": ["p", "status"], "/p": [str(p) for p in range(1, NP + 1)]}
        self.dirs.update({f"/p/{p}": list(PID_FILES) for p in range(1, NP + 1)})
        # use_ino (the daemon's option): every node has its own st_ino
        self.attrs = {path: {"st_mode": DIR_MODE, "st_nlink": 2, "st_ino": 1 + i}
                      for i, path in enumerate(self.dirs)}
        self.attrs.update({path: {"st_mode": REG_MODE, "st_nlink": 1, "st_size": 0, "st_ino": 1 + len(self.dirs) + i}
                           for i, path in enumerate(self.files)})
        self.fhs: dict[int, bytes] = {}
        self.next_fh = 1

    def getattr(self, path: str, fh: int | None = None) -> dict:
        a = self.attrs.get(path)
        if a is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return a

    def readdir(self, path: str, fh: int) -> list:
        base = path.rstrip("/")
        return [(".", self.attrs[path], 0), ("..", self.attrs["/"], 0),
                *((n, self.attrs[f"{base}/{n}"], 0) for n in self.dirs[path])]

    def open(self, path: str, fi) -> int:
        data = self.files.get(path)
        if data is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        fi.fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.fhs[fi.fh] = data
        fi.direct_io = 1  # as the daemon: st_size is 0, every read reaches us
        return 0

    def read(self, path: str, size: int, offset: int, fi) -> bytes:
        return self.fhs[fi.fh][offset:offset + size]

    def release(self, path: str, fi) -> int:
        self.fhs.pop(fi.fh, None)
        return 0


def main() -> None:
    size, mnt = int(sys.argv[1]), sys.argv[2]
    try:
        mfusepy.FUSE(FloorOps(size), mnt, foreground=True, nothreads=True, raw_fi=True, **MOUNT_OPTIONS)
    except RuntimeError:
        pass  # libfuse's 8: a signal ended the loop (the bench's SIGTERM)


if __name__ == "__main__":
    main()
