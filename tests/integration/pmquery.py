"""PROCMAP_QUERY as a real C caller makes it (ctypes: the struct and the
buffers live at fixed addresses in this process), and a set of cases whose
answers are compared between the real /proc and the mount (imported as
`pmquery`; pytest puts this directory on sys.path).

Answers are printed as text lines, so that two runs (the real kernel on a
real process, the mount on its mirror) compare line for line."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

PROCMAP_QUERY = 0xC0686611
FMT = struct.Struct("<QQQQQQQQQIIIIQQ")
KEYS = ("size query_flags query_addr vma_start vma_end vma_flags vma_page_size vma_offset inode "
        "dev_major dev_minor vma_name_size build_id_size vma_name_addr build_id_addr").split()
SENTINEL = 0xDEAD
NEXT, FILE = 0x10, 0x20
GATE = 0xFFFFFFFFFF600000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int

AUTO = object()


@dataclass
class Answer:
    err: int                  # 0 or errno
    out: dict[str, int]       # the struct after the call (first 104 bytes)
    name: bytes               # the name buffer after the call
    bid: bytes                # the build ID buffer after the call
    struct_untouched: bool    # the struct bytes did not change at all

    def line(self) -> str:
        """Text that is the same for the same answer on two machines."""
        if self.err:
            return f"-1 {errno.errorcode.get(self.err, self.err)} untouched={self.struct_untouched}"
        o = self.out
        s = (f"0 {o['vma_start']:x}-{o['vma_end']:x} flags={o['vma_flags']:#x} psz={o['vma_page_size']:#x} "
             f"off={o['vma_offset']:#x} dev={o['dev_major']}:{o['dev_minor']} ino={o['inode']} "
             f"name_size={o['vma_name_size']} bid_size={o['build_id_size']}")
        if o["vma_name_size"] and o["vma_name_addr"]:
            s += f" name={self.name[: o['vma_name_size']]!r}"
        if o["build_id_size"] and o["build_id_addr"]:
            s += f" bid={self.bid[: o['build_id_size']].hex()}"
        return s


def query(fd: int, addr: int, flags: int = 0, *, name_size: int = 0, bid_size: int = 0, size: int = 104,
          name_ptr: object = AUTO, bid_ptr: object = AUTO, tail: bytes = b"", cmd: int = PROCMAP_QUERY) -> Answer:
    """One ioctl: output fields preset to 0xdead, name/build ID buffers of
    'A'/'B' (their pointers set when their sizes are, unless given)."""
    nbuf = ctypes.create_string_buffer(b"A" * (min(name_size, 1 << 16) + 8))
    bbuf = ctypes.create_string_buffer(b"B" * (bid_size + 8))
    na = (ctypes.addressof(nbuf) if name_size else 0) if name_ptr is AUTO else name_ptr
    ba = (ctypes.addressof(bbuf) if bid_size else 0) if bid_ptr is AUTO else bid_ptr
    raw = FMT.pack(size, flags, addr, *[SENTINEL] * 8, name_size, bid_size, na, ba) + tail
    arg = ctypes.create_string_buffer(raw.ljust(max(len(raw), min(size, 8192), 104), b"\0"))
    before = arg.raw[:104]
    rc = _libc.ioctl(fd, cmd, arg)
    err = ctypes.get_errno() if rc < 0 else 0
    after = arg.raw[:104]
    return Answer(err, dict(zip(KEYS, FMT.unpack(after))), nbuf.raw, bbuf.raw, after == before)


def parse_maps(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, perms, name as printed) per line."""
    out = []
    for line in text.splitlines():
        r, perms = line.split()[:2]
        a, b = (int(x, 16) for x in r.split("-"))
        out.append((a, b, perms, line[73:]))
    return out


def cases(maps_text: str) -> Iterator[tuple[str, dict]]:
    """Queries that together cover §6: every VMA with its name and build ID,
    every filter from 0 and from each gap, the edges, and every error."""
    rows = parse_maps(maps_text)
    vmas = [r for r in rows if r[3] != "[vsyscall]"]
    first = vmas[0]
    gaps = [a[1] for a, b in zip(vmas, vmas[1:]) if a[1] < b[0]]
    anon = next((v for v in vmas if not v[3]), first)
    n = len(first[3].encode())
    for a, b, perms, name in vmas:
        yield f"vma {a:x}", dict(addr=a, name_size=4096, bid_size=20)
        yield f"vma {a:x} last byte", dict(addr=b - 1)
    for flags in range(0x40):
        yield f"flags {flags:#x} from 0", dict(addr=0, flags=flags, name_size=256)
    for g in gaps[:8]:
        yield f"gap {g:x}", dict(addr=g)
        yield f"gap {g:x} NEXT", dict(addr=g, flags=NEXT)
        yield f"gap {g:x} NEXT|FILE", dict(addr=g, flags=NEXT | FILE, name_size=256)
    yield "end of last vma", dict(addr=vmas[-1][1])
    yield "end of last vma NEXT", dict(addr=vmas[-1][1], flags=NEXT)
    yield "gate vma", dict(addr=GATE)
    yield "gate vma NEXT", dict(addr=GATE, flags=NEXT)
    yield "top of the address space NEXT", dict(addr=(1 << 64) - 1, flags=NEXT)
    yield "anon, name and bid buffers", dict(addr=anon[0], name_size=64, bid_size=64)
    yield "anon, FILE", dict(addr=anon[0], flags=FILE)
    for flags in (0x40, 1 << 63):
        yield f"unknown flag {flags:#x}", dict(addr=first[0], flags=flags)
    yield "name size without addr", dict(addr=first[0], name_size=256, name_ptr=0)
    yield "name addr without size", dict(addr=first[0], name_ptr=0x1000)
    yield "bid size without addr", dict(addr=first[0], bid_size=64, bid_ptr=0)
    yield "bid addr without size", dict(addr=first[0], bid_ptr=0x1000)
    for size in (1, n, n + 1, 1 << 20):
        yield f"name buffer {size}", dict(addr=first[0], name_size=size)
    for size in (4, 19, 20, 64):
        yield f"bid buffer {size}", dict(addr=first[0], bid_size=size)
    yield "bad name pointer", dict(addr=first[0], name_size=256, name_ptr=8)
    yield "bad bid pointer", dict(addr=first[0], bid_size=64, bid_ptr=8)
    yield "bad pointers, anon", dict(addr=anon[0], name_size=256, name_ptr=8, bid_size=64, bid_ptr=8)
    for size in (0, 8, 23, 24, 40, 103, 104, 112, 4096, 4097):
        yield f"size {size}", dict(addr=first[0], size=size)
    yield "size 112 non-zero tail", dict(addr=first[0], size=112, tail=b"\x01")
    yield "size 4096 non-zero last byte", dict(addr=first[0], size=4096, tail=b"\0" * 3991 + b"\x01")
    yield "unknown flag and size 4097", dict(addr=first[0], flags=0x40, size=4097)
    yield "unknown flag and non-zero tail", dict(addr=first[0], flags=0x40, size=112, tail=b"\x01")
    yield "ENOENT and bad pointers", dict(addr=0, name_size=16, name_ptr=8, bid_size=20, bid_ptr=8)
    yield "wrong ioctl number", dict(addr=first[0], cmd=PROCMAP_QUERY + 1)


def run_cases(maps_path: str) -> list[str]:
    """Every case on one fd of maps_path, as text lines."""
    with open(maps_path) as f:
        text = f.read()
    fd = os.open(maps_path, os.O_RDONLY)
    try:
        return [f"{label}: {query(fd, **kw).line()}" for label, kw in cases(text)]
    finally:
        os.close(fd)


def real_build_ids(pid: int) -> dict[str, str]:
    """{name: hex} of every file VMA of a real process, as the real
    PROCMAP_QUERY gives them ("" for files without one)."""
    out: dict[str, str] = {}
    fd = os.open(f"/proc/{pid}/maps", os.O_RDONLY)
    try:
        for a, _, _, _ in parse_maps(open(f"/proc/{pid}/maps").read()):
            r = query(fd, a, name_size=4096, bid_size=20)
            if r.err == 0 and r.out["inode"] and r.out["vma_name_size"]:
                name = r.name[: r.out["vma_name_size"] - 1].decode("utf-8", "surrogateescape")
                if not name.startswith("[anon_shmem:"):
                    out[name] = r.bid[: r.out["build_id_size"]].hex()
    finally:
        os.close(fd)
    return out


class Pages:
    """Anonymous pages of this process at a known address (libc mmap), for
    buffers that must be read-only or end right before an unmapped page."""

    def __init__(self, n: int = 2, prot: int = mmap.PROT_READ | mmap.PROT_WRITE) -> None:
        self.len = n * mmap.PAGESIZE
        self.addr = _mmap(None, self.len, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if self.addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")

    def protect(self, offset: int, length: int, prot: int) -> None:
        if _mprotect(self.addr + offset, length, prot):
            raise OSError(ctypes.get_errno(), "mprotect")

    def close(self) -> None:
        _munmap(self.addr, self.len)


_mmap = _libc.mmap
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_mmap.restype = ctypes.c_void_p
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def query_at(fd: int, arg: int, raw: bytes, cmd: int = PROCMAP_QUERY) -> tuple[int, bytes]:
    """The ioctl with the struct bytes `raw` placed at address `arg` (which
    the caller mapped); returns (errno or 0, the bytes there afterwards)."""
    ctypes.memmove(arg, raw, len(raw))
    rc = _libc.ioctl(fd, cmd, arg)
    return (ctypes.get_errno() if rc < 0 else 0), ctypes.string_at(arg, len(raw))
