"""The tools' C floor: a snapshot of the mount's /proc served by snapfs.c.

`capture(MNT/proc, FILE)` walks a mounted tree as a tool sees it (lstat,
readdir order, file bytes, link targets, and for an fd/ link whose target
is not a path, the target's stat and `system.sockprotoname`, which the
kernel asks the link's directory for when a tool stats or getxattrs the
link) and writes it in snapfs's format. `SnapServer` serves it; a tool run
with it bound over /proc (`over_proc`) makes the same FUSE requests as over
the mount, each answered from memory in C. The tool's time over the mount
divided by its time over snapfs, in the same run, is procsim's share.

As over the mount, a reader finds itself: `self` and `thread-self` name
its pid, and its own /proc/PID (ps and top look themselves up) is made
when first looked up: its stat, status and the like read from the real
/proc, its mounts and net/ those of the snapshot's pid 1 (the mount's
observer sees the machine's initial namespaces).

Captured in a process directory: every entry's attributes; the bytes of
the files the benchmarked tools read (PID_FILES; the others are served
empty); the fd/, fdinfo/ and ns/ directories; net/ of pid 1 only. Global
files are captured whole, but for the binary ones as large as memory
(SKIP). A file's bytes are capped at 1 MiB; one that cannot be read is
served with the errno its open or read gave.
"""

from __future__ import annotations

import errno
import os
import stat as S
import struct
import subprocess
import time
from pathlib import Path

from common import BuildError, CServer, build_c

HERE = Path(__file__).resolve().parent
MAGIC = b"SNAPFS1\n"
REC = struct.Struct("<IIIIQQIIIIIi")  # mode uid gid nlink ino size parent flags name_len data_len xattr_len err
HIDDEN = 1
SKIP = frozenset(("kcore", "kpagecount", "kpageflags", "kpagecgroup", "kmsg"))
# what ps, top, lsof, pidstat and psutil read in a process directory
PID_FILES = frozenset(("cgroup", "cmdline", "comm", "environ", "io", "limits", "loginuid", "maps", "mountinfo",
                       "mounts", "oom_score", "oom_score_adj", "sched", "schedstat", "sessionid", "smaps_rollup",
                       "stat", "statm", "status", "wchan"))
PID_DIRS = frozenset(("fd", "fdinfo", "ns"))
CAP = 1 << 20
SELF = {"self": 2, "thread-self": 4}  # snapfs answers these links with the reader's pid


class _Writer:
    def __init__(self) -> None:
        self.recs: list[bytes] = []
        self.targets: set[tuple[int, str]] = set()  # (fd/ record, target name) already added

    def add(self, st: os.stat_result, parent: int, name: bytes, data: bytes = b"", xattr: bytes = b"",
            err: int = 0, flags: int = 0) -> int:
        self.recs.append(REC.pack(st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_ino, st.st_size, parent,
                                  flags, len(name), len(data), len(xattr), err) + name + data + xattr)
        return len(self.recs) - 1

    def write(self, path: str) -> int:
        with open(path, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(self.recs)))
            for r in self.recs:
                f.write(r)
            return f.tell()


def _read(path: str) -> tuple[bytes, int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        return b"", e.errno or errno.EIO
    try:
        out = bytearray()
        while len(out) < CAP:
            b = os.read(fd, 65536)
            if not b:
                break
            out += b
        return bytes(out[:CAP]), 0
    except OSError as e:
        return b"", e.errno or errno.EIO
    finally:
        os.close(fd)


def capture(root: str, out: str) -> dict:
    """Snapshot the tree at `root` (MNT/proc) into `out`; returns counts."""
    t0 = time.perf_counter()
    w = _Writer()
    w.add(os.lstat(root), 0, b"")
    stack = [(root, 0, 0)]  # (path, record, depth below root)
    while stack:
        path, idx, depth = stack.pop()
        try:
            names = os.listdir(path)  # the server's order
        except OSError:
            continue
        fd_dir = path.endswith("/fd") and depth == 2
        in_pid = depth == 1 and os.path.basename(path).isdigit()
        for name in names:
            p = f"{path}/{name}"
            try:
                st = os.lstat(p)
            except OSError:
                continue  # gone between the listing and the lstat
            nb = os.fsencode(name)
            if S.S_ISDIR(st.st_mode):
                i = w.add(st, idx, nb)
                if not in_pid or name in PID_DIRS or (name == "net" and path == f"{root}/1"):
                    stack.append((p, i, depth + 1))
            elif S.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(p)
                except OSError as e:  # a kthread's exe: ENOENT
                    w.add(st, idx, nb, err=e.errno or errno.EIO)
                    continue
                w.add(st, idx, nb, os.fsencode(target), flags=SELF.get(name, 0) if depth == 0 else 0)
                if fd_dir and not target.startswith("/"):
                    _fd_target(w, idx, p, target)
            else:
                skip = (name not in PID_FILES) if in_pid else (depth == 0 and name in SKIP)
                data, err = (b"", 0) if skip else _read(p)
                w.add(st, idx, nb, data, err=err)
    size = w.write(out)
    return {"records": len(w.recs), "bytes": size, "seconds": time.perf_counter() - t0}


def _fd_target(w: _Writer, dir_idx: int, link: str, target: str) -> None:
    """`socket:[N]`, `pipe:[N]`, `anon_inode:...` as a hidden name in fd/:
    what a stat() or getxattr() through the link looks up."""
    if (dir_idx, target) in w.targets:
        return
    try:
        st = os.stat(link)
    except OSError:
        return
    try:
        xattr = os.getxattr(link, "system.sockprotoname")
    except OSError:
        xattr = b""
    w.targets.add((dir_idx, target))
    w.add(st, dir_idx, os.fsencode(target), xattr=xattr, flags=HIDDEN)


def build(workdir: str) -> str:
    """snapfs built into workdir; BuildError when libfuse3's headers are missing."""
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"pkg-config fuse3: {e}") from None
    return build_c(HERE / "snapfs.c", Path(workdir) / "snapfs", *flags)


class SnapServer(CServer):
    """snapfs serving `snapshot` at a temporary mount point (`mnt`)."""

    def __init__(self, binary: str, snapshot: str) -> None:
        super().__init__([binary, snapshot], "meminfo")

    def over_proc(self, argv: list[str]) -> list[str]:
        """argv run in a private mount namespace with the snapshot over /proc."""
        inner = 'mount --bind "$0" /proc && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", inner, self.mnt, *argv]
