#!/usr/bin/env python3
"""Which mapping holds an address of a process? One PROCMAP_QUERY ioctl per
address (Linux 6.11+), falling back to reading /proc/PID/maps where the
ioctl is unknown (ENOTTY: an older kernel, or not a procfs file).

    addr2map.py [--proc DIR] [--maps] PID ADDR...

ADDR is hex, with or without 0x. For each address it prints the address,
then the mapping as maps shows it (start-end, perms, offset, device, inode,
name), the file offset the address corresponds to, and the file's ELF build
ID when the kernel knows one (PROCMAP_QUERY only). `--maps` skips the ioctl.
Runs unchanged on the real /proc and on a procsim mount (--proc MNT/proc).

    $ addr2map.py 1234 7f48f3661000 0
    0x7f48f3661000 7f48f3660000-7f48f37b6000 r-xp 00026000 fe:00 339380 /usr/lib/x86_64-linux-gnu/libc.so.6 file_offset=0x27000 build_id=93ac61ec...
    0x0 not mapped

Only the standard library; the struct is built with ctypes so that the
kernel can write the name and build ID into buffers of this process.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import struct
import sys
from dataclasses import dataclass

PROCMAP_QUERY = 0xC0686611  # _IOWR('f', 17, struct procmap_query)
QUERY = struct.Struct("<QQQQQQQQQIIIIQQ")  # struct procmap_query, 104 bytes
READABLE, WRITABLE, EXECUTABLE, SHARED = 0x1, 0x2, 0x4, 0x8
NAME_MAX_BYTES = 4096  # PATH_MAX: the kernel never returns more
BUILD_ID_MAX_BYTES = 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    dev: tuple[int, int]
    inode: int
    name: str               # as maps prints it (a newline in a path is \012)
    build_id: bytes | None = None

    def describe(self, addr: int) -> str:
        s = (f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} "
             f"{self.dev[0]:02x}:{self.dev[1]:02x} {self.inode}")
        if self.name:
            s += f" {self.name}"
        if self.inode:  # file-backed: where in the file the address is
            s += f" file_offset={self.offset + addr - self.start:#x}"
        if self.build_id:
            s += f" build_id={self.build_id.hex()}"
        return s


class NoIoctl(Exception):
    """PROCMAP_QUERY is not there: use the maps text."""


class Query:
    """PROCMAP_QUERY on one open maps fd, with buffers reused per call."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.arg = ctypes.create_string_buffer(QUERY.size)
        self.name = ctypes.create_string_buffer(NAME_MAX_BYTES)
        self.build_id = ctypes.create_string_buffer(BUILD_ID_MAX_BYTES)

    def lookup(self, addr: int) -> Mapping | None:
        """The VMA covering addr, or None (ENOENT)."""
        self.arg.raw = QUERY.pack(QUERY.size, 0, addr, 0, 0, 0, 0, 0, 0, 0, 0,
                                  NAME_MAX_BYTES, BUILD_ID_MAX_BYTES,
                                  ctypes.addressof(self.name), ctypes.addressof(self.build_id))
        if _libc.ioctl(self.fd, PROCMAP_QUERY, self.arg) < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            if err == errno.ENOTTY:
                raise NoIoctl
            raise OSError(err, os.strerror(err))
        (_, _, _, start, end, flags, _, offset, inode, major, minor,
         name_size, bid_size, _, _) = QUERY.unpack(self.arg.raw)
        perms = "".join(c if flags & bit else "-" for c, bit in (("r", READABLE), ("w", WRITABLE),
                                                                  ("x", EXECUTABLE)))
        perms += "s" if flags & SHARED else "p"
        raw_name = self.name.raw[: max(name_size - 1, 0)]  # without the NUL
        name = raw_name.decode("utf-8", "surrogateescape")
        if inode:  # maps escapes a newline in a path; print the same
            name = name.replace("\n", "\\012")
        return Mapping(start, end, perms, offset, (major, minor), inode, name,
                       self.build_id.raw[:bid_size] or None)


def parse_maps(text: str) -> list[Mapping]:
    out = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        major, minor = (int(x, 16) for x in fields[3].split(":"))
        out.append(Mapping(lo, hi, fields[1], int(fields[2], 16), (major, minor), int(fields[4]),
                           fields[5].lstrip(" ") if len(fields) > 5 else ""))
    return out


def from_maps(maps: list[Mapping], addr: int) -> Mapping | None:
    """The maps line covering addr. (Unlike PROCMAP_QUERY, maps lists the
    [vsyscall] gate VMA; skip it so both answer alike.)"""
    for m in maps:
        if m.start <= addr < m.end and m.name != "[vsyscall]":
            return m
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proc", default="/proc", help="the proc directory (default /proc)")
    ap.add_argument("--maps", action="store_true", help="read maps instead of using PROCMAP_QUERY")
    ap.add_argument("pid")
    ap.add_argument("addrs", nargs="+", metavar="ADDR")
    a = ap.parse_args(argv)
    try:
        addrs = [int(x, 16) for x in a.addrs]
    except ValueError as e:
        ap.error(str(e))
    path = os.path.join(a.proc, a.pid, "maps")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        print(f"addr2map: {path}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        q = None if a.maps else Query(fd)
        maps: list[Mapping] | None = None
        for addr in addrs:
            m = None
            if q is not None:
                try:
                    m = q.lookup(addr)
                except NoIoctl:
                    q = None
            if q is None:
                if maps is None:
                    with open(fd, closefd=False) as f:
                        maps = parse_maps(f.read())
                m = from_maps(maps, addr)
            print(f"{addr:#x} " + (m.describe(addr) if m else "not mapped"))
    except OSError as e:
        print(f"addr2map: {path}: {e.strerror}", file=sys.stderr)
        return 1
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
