"""The few filesystem facts /proc needs: inodes, devices, sizes and page caches."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable

from procsim.mm.vma import File

ROOT_DEV = (0xFE, 0x00)   # the root block device, as on the reference VM
SHMEM_DEV = (0x00, 0x01)  # tmpfs backing shared anonymous memory

# Sizes of files a realistic exec maps; others get DEFAULT_SIZE.
KNOWN_SIZES = {
    "/usr/lib/x86_64-linux-gnu/libc.so.6": 1926232,
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": 215000,
    "/usr/lib/x86_64-linux-gnu/libm.so.6": 907784,
    "/usr/lib/x86_64-linux-gnu/libpthread.so.0": 14544,
    "/usr/lib/x86_64-linux-gnu/libssl.so.3": 696400,
    "/usr/lib/x86_64-linux-gnu/libcrypto.so.3": 4709656,
    "/usr/lib/x86_64-linux-gnu/libz.so.1": 121280,
    "/usr/bin/bash": 1265648,
    "/usr/sbin/sshd": 925904,
    "/usr/bin/python3.11": 6839208,
}
DEFAULT_SIZE = 256 * 1024

# Shared objects by name: libc.so.6, libtinfo.so.6.4, foo.so, ld-linux-x86-64.so.2
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
_PROGRAM_DIRS = frozenset(("bin", "sbin", "libexec"))


def looks_like_elf(path: str) -> bool:
    """Whether a file at `path` is taken to be an ELF object: a shared object
    by its name, or anything in a bin, sbin or libexec directory. (Data files,
    locale archives, caches are not, and have no build ID.)"""
    head, _, name = path.rpartition("/")
    return bool(_SHARED_OBJECT.search(name)) or not _PROGRAM_DIRS.isdisjoint(head.split("/"))


def default_build_id(path: str) -> bytes:
    """A stable, made-up build ID for the ELF file at `path` (the same on
    every machine and run, different for different paths)."""
    return hashlib.sha1(b"procsim build-id\0" + path.encode("utf-8", "surrogateescape")).digest()


class VFS:
    def __init__(self) -> None:
        self.files: dict[str, File] = {}
        self.root_dev = ROOT_DEV  # the root filesystem's device (a scenario's disks may move it)
        # path -> the device a new inode there is on (the block layer's: the
        # disk of the mount it is under); None: the root's
        self.dev_of: Callable[[str], tuple[int, int]] | None = None
        self._shmem_ino = 1024

    def file(self, path: str, size: int | None = None, writable: bool = False,
             dev: tuple[int, int] | None = None, salt: str = "") -> File:
        """The inode at `path`, created on first use with a stable inode
        number (on `dev`; `salt` makes a path created again after an unlink
        a new inode)."""
        f = self.files.get(path)
        if f is None:
            ino = 100000 + zlib.crc32((path + salt).encode()) % 900000
            if dev is None:
                dev = self.root_dev if self.dev_of is None else self.dev_of(path)
            f = File(path, ino, dev, size or KNOWN_SIZES.get(path, DEFAULT_SIZE))
            if looks_like_elf(path):
                f.build_id = default_build_id(path)
            self.files[path] = f
        elif size and size > f.size:
            f.size = size
        if writable:
            f.writable = True
        return f

    def executable(self, path: str) -> File:
        """The file an exec maps: an ELF object whatever its name, so it has
        a build ID (unless one was set for it)."""
        f = self.file(path)
        if f.build_id is None:
            f.build_id = default_build_id(path)
        return f

    def shmem(self, size: int, path: str = "/dev/zero") -> File:
        """A new shmem inode for a shared anonymous mapping (or memfd / SysV)."""
        self._shmem_ino += 1
        return File(path, self._shmem_ino, SHMEM_DEV, size, shmem=True, deleted=True, writable=True)
