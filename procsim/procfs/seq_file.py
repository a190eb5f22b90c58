"""seq_file reads (fs/seq_file.c, seq_read_iter and traverse): records are
produced one at a time by an iterator as each read() asks for them, into a
buffer that holds whole records only, one page at first and doubled for a
record that does not fit in it alone. A read() returns what is left in the
buffer, then at most one more bufferful; the iterator's position (`index`)
carries over between reads, so a file that changes between two reads gives
a stream matching no single instant, exactly as on Linux. A read at offset
0 restarts; a read at any other offset than where the last one ended
re-walks the records from the start up to it.
"""

from __future__ import annotations

from typing import Any, Protocol

from procsim.units import PAGE_SIZE



class SeqOps(Protocol):
    """struct seq_operations: positions are the iterator's `index` (m->index)."""

    def start(self, index: int) -> tuple[Any, int]: ...      # (record or None at EOF, index)
    def next(self, rec: Any, index: int) -> tuple[Any, int]: ...
    def stop(self, rec: Any) -> None: ...
    def show(self, rec: Any) -> bytes: ...


class SeqFile:
    __slots__ = ("ops", "size", "buf", "from_", "index", "read_pos")

    def __init__(self, ops: SeqOps) -> None:
        self.ops = ops
        self.size = PAGE_SIZE   # the buffer's size; a record fits if shorter (the NUL)
        self.buf = b""          # the last bufferful; what is not yet copied starts at from_
        self.from_ = 0
        self.index = 0
        self.read_pos = 0

    def read(self, want: int, pos: int) -> bytes:
        if want <= 0:
            return b""
        if pos == 0:
            self.index, self.buf, self.from_ = 0, b"", 0
        if pos != self.read_pos:
            try:
                while not self._traverse(pos):
                    pass
            except BaseException:
                self.read_pos = self.index = 0
                self.buf, self.from_ = b"", 0
                raise
            self.read_pos = pos
        out = b""
        if self.from_ < len(self.buf):  # something left in the buffer: copy it first
            out = self.buf[self.from_: self.from_ + want]
            self.from_ += len(out)
            if self.from_ < len(self.buf):
                return self._copied(out)
            want -= len(out)
        try:
            fresh = self._fill(want)
        except OSError:
            if out:  # the kernel returns what it copied and drops the error
                return self._copied(out)
            raise
        n = min(len(fresh), want)
        self.buf, self.from_ = fresh, n
        return self._copied(out + fresh[:n])

    def _copied(self, out: bytes) -> bytes:
        self.read_pos += len(out)
        return out

    def _fill(self, want: int) -> bytes:
        """One bufferful: at least one non-empty record, then more while they
        fit and the reader wants more; the iterator advances past each one shown."""
        ops = self.ops
        self.buf, self.from_ = b"", 0
        rec, self.index = ops.start(self.index)
        try:
            while True:
                if rec is None:
                    return b""
                text = ops.show(rec)
                if not text:
                    rec, self.index = ops.next(rec, self.index)
                    continue
                if len(text) < self.size:
                    break
                ops.stop(rec)  # a record bigger than the buffer: double it, start again
                rec = None
                self.size <<= 1
                rec, self.index = ops.start(self.index)
            parts, count = [text], len(text)
            while True:
                before = self.index
                rec, self.index = ops.next(rec, self.index)
                if self.index == before:
                    self.index += 1
                if rec is None or count >= want:
                    break
                text = ops.show(rec)
                if count + len(text) >= self.size:  # overflow: this record waits for the next read
                    break
                parts.append(text)
                count += len(text)
            return b"".join(parts)
        finally:
            ops.stop(rec)

    def _traverse(self, offset: int) -> bool:
        """Walk from the first record to `offset` (lseek or pread elsewhere
        than where the last read ended). False: the buffer had to grow, again."""
        ops = self.ops
        self.index, self.buf, self.from_ = 0, b"", 0
        if not offset:
            return True
        pos = 0
        rec, self.index = ops.start(self.index)
        try:
            while rec is not None:
                text = ops.show(rec)
                if len(text) >= self.size:
                    self.size <<= 1
                    return False
                rec, self.index = ops.next(rec, self.index)
                if pos + len(text) > offset:
                    self.buf, self.from_ = text, offset - pos
                    break
                pos += len(text)
                if pos == offset:
                    break
            return True
        finally:
            ops.stop(rec)
