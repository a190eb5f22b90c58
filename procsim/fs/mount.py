"""struct mount and the mount namespace's list (fs/mount.h, fs/namespace.c).

A mount has its ids (mnt_id, the parent's), the superblock's device, the
root of the mount within its filesystem, where it is mounted, the per-mount
options, the propagation tags, and the superblock's type, source and
options: what /proc/PID/mountinfo prints of it. A mount namespace's mounts
are kept in mount order (6.18 keeps them in a tree sorted by the unique
id, which is that order). The kernel-internal mounts (pipefs, sockfs,
anon_inodefs, shm_mnt) belong to no namespace: files on them show their
mnt_id in fdinfo only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class Mount:
    mnt_id: int
    parent_id: int
    dev: tuple[int, int]     # s_dev: major, minor
    root: str                # the mount's root within its filesystem
    mountpoint: str
    opts: str                # per-mount flags: rw/ro, nosuid, nodev, noexec, relatime ...
    fstype: str
    source: str
    super_opts: str          # the superblock's: rw/ro and the filesystem's own
    propagation: str = ""    # optional fields: "shared:1", "master:2" ...

    def covers(self, path: str) -> bool:
        mp = self.mountpoint
        return mp == "/" or path == mp or path.startswith(mp + "/")


# The kernel-internal mounts (kern_mount at boot), with the ids and devices
# this machine's 6.18 gives them (read from the fdinfo and fstat of its
# pipes, sockets, anon inodes and memfds).
SOCKFS = Mount(10, 0, (0, 9), "/", "/", "rw", "sockfs", "sockfs", "rw")
PIPEFS = Mount(16, 0, (0, 15), "/", "/", "rw", "pipefs", "pipefs", "rw")
ANON_INODEFS = Mount(17, 0, (0, 16), "/", "/", "rw", "anon_inodefs", "anon_inodefs", "rw")
SHM_MNT = Mount(0, 0, (0, 1), "/", "/", "rw", "tmpfs", "shm", "rw")
ANON_INODE_INO = 17  # the one inode every anon_inode file shares (anon_inode_inode)

# The default machine's table: a systemd host booted from /dev/vda, as
# mountinfo shows it (an initramfs moved the API filesystems before the
# root mount was made, hence their lower ids; the root's parent is the
# invisible rootfs, id 1).
_BOOT = (
    # id parent dev      mountpoint          opts                                   prop       type      source      super options
    (22, 27, (0, 21), "/sys", "rw,nosuid,nodev,noexec,relatime", "shared:7", "sysfs", "sysfs", "rw"),
    (23, 27, (0, 22), "/proc", "rw,nosuid,nodev,noexec,relatime", "shared:13", "proc", "proc", "rw"),
    (24, 27, (0, 6), "/dev", "rw,nosuid,relatime", "shared:2", "devtmpfs", "udev",
     "rw,size=4008636k,nr_inodes=1002159,mode=755,inode64"),
    (25, 24, (0, 23), "/dev/pts", "rw,nosuid,noexec,relatime", "shared:3", "devpts", "devpts",
     "rw,gid=5,mode=620,ptmxmode=000"),
    (26, 27, (0, 24), "/run", "rw,nosuid,nodev,noexec,relatime", "shared:5", "tmpfs", "tmpfs",
     "rw,size=813416k,mode=755,inode64"),
    (27, 1, (254, 0), "/", "rw,relatime", "shared:1", "ext4", "/dev/vda", "rw,discard,errors=remount-ro"),
    (28, 22, (0, 7), "/sys/kernel/security", "rw,nosuid,nodev,noexec,relatime", "shared:8", "securityfs",
     "securityfs", "rw"),
    (29, 24, (0, 25), "/dev/shm", "rw,nosuid,nodev", "shared:4", "tmpfs", "tmpfs", "rw,inode64"),
    (30, 26, (0, 26), "/run/lock", "rw,nosuid,nodev,noexec,relatime", "shared:6", "tmpfs", "tmpfs",
     "rw,size=5120k,inode64"),
    (31, 22, (0, 27), "/sys/fs/cgroup", "rw,nosuid,nodev,noexec,relatime", "shared:9", "cgroup2", "cgroup2",
     "rw,nsdelegate,memory_recursiveprot"),
    (32, 22, (0, 28), "/sys/fs/pstore", "rw,nosuid,nodev,noexec,relatime", "shared:10", "pstore", "pstore", "rw"),
    (33, 22, (0, 29), "/sys/fs/bpf", "rw,nosuid,nodev,noexec,relatime", "shared:11", "bpf", "bpf", "rw,mode=700"),
    (34, 23, (0, 30), "/proc/sys/fs/binfmt_misc", "rw,relatime", "shared:12", "autofs", "systemd-1",
     "rw,fd=29,pgrp=1,timeout=0,minproto=5,maxproto=5,direct,pipe_ino=1981"),
    (35, 24, (0, 20), "/dev/mqueue", "rw,nosuid,nodev,noexec,relatime", "shared:14", "mqueue", "mqueue", "rw"),
    (36, 22, (0, 8), "/sys/kernel/debug", "rw,nosuid,nodev,noexec,relatime", "shared:15", "debugfs", "debugfs",
     "rw"),
    (37, 22, (0, 12), "/sys/kernel/tracing", "rw,nosuid,nodev,noexec,relatime", "shared:16", "tracefs",
     "tracefs", "rw"),
    (38, 22, (0, 31), "/sys/fs/fuse/connections", "rw,nosuid,nodev,noexec,relatime", "shared:17", "fusectl",
     "fusectl", "rw"),
    (39, 22, (0, 32), "/sys/kernel/config", "rw,nosuid,nodev,noexec,relatime", "shared:18", "configfs",
     "configfs", "rw"),
    (40, 27, (0, 33), "/tmp", "rw,nosuid,nodev", "shared:19", "tmpfs", "tmpfs",
     "rw,size=4067084k,nr_inodes=1048576,inode64"),
)


class MntNamespace:
    """The mounts of one mount namespace, in mount order."""

    __slots__ = ("mounts",)

    def __init__(self, mounts: list[Mount]) -> None:
        self.mounts = mounts

    @classmethod
    def boot(cls) -> "MntNamespace":
        return cls([Mount(i, p, dev, "/", mp, opts, fstype, src, sopts, prop)
                    for i, p, dev, mp, opts, prop, fstype, src, sopts in _BOOT])

    def lookup(self, path: str) -> Mount:
        """The mount `path` (absolute, normalised) is on: the last mounted
        of those with the longest mountpoint covering it."""
        best: Mount | None = None
        for m in self.mounts:
            if m.covers(path) and (best is None or len(m.mountpoint) >= len(best.mountpoint)):
                best = m
        assert best is not None, "a namespace without a root mount"
        return best

    def copy(self, next_id: int) -> "MntNamespace":
        """copy_mnt_ns(): the same tree with new ids (CLONE_NEWNS)."""
        ids = {m.mnt_id: next_id + i for i, m in enumerate(self.mounts)}
        return MntNamespace([Mount(ids[m.mnt_id], ids.get(m.parent_id, m.parent_id), m.dev, m.root, m.mountpoint,
                                   m.opts, m.fstype, m.source, m.super_opts, "")
                             for m in self.mounts])


def mangle(s: str) -> str:
    """seq_escape(s, " \\t\\n\\\\"): what mount files print of a path or name."""
    if not any(c in s for c in " \t\n\\"):
        return s
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in s)


def kdev(dev: tuple[int, int]) -> int:
    """The kernel's internal dev_t (MKDEV: major << 20 | minor), as fdinfo's sdev: prints it."""
    return dev[0] << 20 | dev[1]


def _unmangle(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text: str) -> MntNamespace:
    """A mount table from a real /proc/PID/mountinfo (the inverse of its
    rendering): to give a machine this host's mounts, or to check the format."""
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split(" ")
        fstype, source, sopts = right.split(" ", 2)
        major, minor = f[2].split(":")
        mounts.append(Mount(int(f[0]), int(f[1]), (int(major), int(minor)), _unmangle(f[3]), _unmangle(f[4]), f[5],
                            _unmangle(fstype), _unmangle(source), sopts, " ".join(f[6:])))
    return MntNamespace(mounts)
