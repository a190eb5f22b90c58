"""File I/O a workload does besides its memory accesses: sequential
read(2)s and write(2)s of `io_size` bytes on one file at `read_rate` and
`write_rate` bytes per second, in the workload's ticks (tick k does the
calls whose bytes fall in it, so the I/O, like the accesses, depends only
on the ticks run). Reads go through the file from its start and wrap at
its end (a second pass finds the pages cached: rchar grows, read_bytes no
more); writes go from the start of `span` bytes and wrap there (a log
rewritten in place: a page counts in write_bytes each time it is dirtied
again after writeback cleaned it, procsim/block/writeback.py). The counters are the kernel's
(Kernel.read/write, procsim/ioac.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procsim.kernel import Kernel

IO_KEYS = ("file", "read_rate", "write_rate", "io_size", "span")
DEFAULT_IO_SIZE = 64 << 10
DEFAULT_SPAN = 64 << 20
MAX_IO_RATE = 1 << 40  # bytes per second


@dataclass
class FileIo:
    path: str
    read_rate: int
    write_rate: int
    io_size: int
    span: int
    read_pos: int = 0
    write_pos: int = 0
    reads: int = 0       # calls made
    writes: int = 0
    read_backlog: int = 0  # reads due but not made: the reader waits on io.max (blk_throttle.py)
    read_ready: int = 0    # ns: when its last throttled read completes

    def calls(self, rate: int, k0: int, k1: int, tick_s: float) -> int:
        """read or write calls due in ticks [k0, k1) at `rate` bytes per second."""
        done = lambda k: math.floor(rate * k * tick_s) // self.io_size  # noqa: E731
        return done(k1) - done(k0)

    def run(self, k: "Kernel", tid: int, k0: int, k1: int, tick_s: float, start_ns: int | None = None) -> None:
        """The calls of ticks [k0, k1); with `start_ns` (when tick 0 began),
        each call's disk I/O is issued at the instant its bytes fall due
        (the block layer times requests: procsim/block/blk_core.py)."""
        blk = k.block
        # a call falls due within the ticks it belongs to (their starts)
        lo = 0 if start_ns is None else start_ns + int(k0 * tick_s * 1e9)
        hi = 0 if start_ns is None else start_ns + int((k1 - 1) * tick_s * 1e9)
        due = lambda n, rate: min(max(start_ns + n * self.io_size * 1_000_000_000 // rate, lo), hi)  # noqa: E731
        try:
            todo = self.calls(self.read_rate, k0, k1, tick_s) + self.read_backlog
            self.read_backlog = 0
            for i in range(todo):
                if start_ns is not None:
                    # a reader io.max held back waits for its read (blk_throttle.py): later
                    # calls follow it, and those past this span wait for the next
                    at = max(due(self.reads, self.read_rate), self.read_ready)
                    if at > hi:
                        self.read_backlog = todo - i
                        break
                    blk.when = at
                    blk.throttled_until = None
                n = k.read(tid, self.path, self.io_size, self.read_pos)
                if start_ns is not None and blk.throttled_until is not None:
                    self.read_ready = blk.throttled_until
                self.read_pos = 0 if n < self.io_size else self.read_pos + n
                self.reads += 1
            for _ in range(self.calls(self.write_rate, k0, k1, tick_s)):
                if start_ns is not None:
                    blk.when = due(self.writes, self.write_rate)
                k.write(tid, self.path, self.io_size, self.write_pos)
                self.write_pos = (self.write_pos + self.io_size) % self.span
                self.writes += 1
        finally:
            blk.when = None
            blk.throttled_until = None

    def info(self) -> dict:
        return {"file": self.path, "read_calls": self.reads, "write_calls": self.writes,
                "read_backlog": self.read_backlog,
                "read_pos": self.read_pos, "write_pos": self.write_pos}


def parse_io(spec: dict, size: Callable[[Any, str], int], bad: Callable[[str], OSError],
             old: FileIo | None = None) -> FileIo | None:
    """The I/O keys of a workload spec -> FileIo (None without `file`);
    positions carry over from `old` on the same file."""
    given = [key for key in IO_KEYS if key in spec]
    if not given:
        return None
    if "file" not in spec:
        raise bad(f"{given[0]} needs a 'file' to do I/O on")
    path = spec["file"]
    if not isinstance(path, str) or not path.startswith("/"):
        raise bad(f"file: expected an absolute path, got {path!r}")
    rates = {}
    for key in ("read_rate", "write_rate"):
        rates[key] = size(spec.get(key, 0), key)
        if not 0 <= rates[key] <= MAX_IO_RATE:
            raise bad(f"{key}: expected 0 to {MAX_IO_RATE} bytes per second, got {spec[key]!r}")
    if not any(rates.values()):
        raise bad("file: give read_rate and/or write_rate (bytes per second)")
    io_size = size(spec.get("io_size", DEFAULT_IO_SIZE), "io_size")
    span = size(spec.get("span", DEFAULT_SPAN), "span")
    if not 0 < io_size <= 1 << 30 or not io_size <= span <= 1 << 40:
        raise bad("io_size: expected 1 byte to 1 GiB, and span at least io_size")
    io = FileIo(path, rates["read_rate"], rates["write_rate"], io_size, span)
    if old is not None and old.path == path:
        io.read_pos, io.write_pos, io.reads, io.writes = old.read_pos, old.write_pos % span, old.reads, old.writes
    return io
