"""smaps and numa_maps as seq_files on the lock-free maps walk (Linux
6.17+): the same text as a one-instant rendering when nothing changes, whole
records per read, the no-gap rule across a change between reads, and a
writer that waits for a reader only on the VMA being shown."""

from __future__ import annotations

import os
import threading
import time

import pytest

from procsim.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED
from procsim.procfs import numa_maps, smaps
from procsim.procfs.context import Ctx
from procsim.procfs.tree import ProcFS

from procfs_helpers import ROOT, read_all

P = 4096
RW, RO, NONE = 3, 1, 0
RENDER = {"smaps": smaps.smaps, "numa_maps": numa_maps.numa_maps}


def _proc(fs: ProcFS, n: int = 40) -> tuple[int, int]:
    """n 3-page VMAs alternating rw/r-- (no merging), some pages touched,
    one shared file mapping, so the numbers are not all zero."""
    k = fs.kernel
    pid = k.spawn(["/usr/bin/app"])
    base = 0x10000000
    for i in range(n):
        k.mmap(pid, 3 * P, RW if i % 2 == 0 else RO, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, base + 3 * P * i)
        if i % 2 == 0:
            k.touch(pid, base + 3 * P * i, (i % 3 + 1) * P)
    addr = k.mmap(pid, 8 * P, RW, MAP_SHARED, path="/usr/share/data.bin")
    k.touch(pid, addr, 4 * P, write=False)
    return pid, base


def _one_instant(fs: ProcFS, pid: int, name: str) -> bytes:
    k = fs.kernel
    with k.lock:
        return RENDER[name](Ctx(k, ROOT, k.tasks[pid]))


def _blocks(text: bytes, name: str) -> list[str]:
    """The records: smaps blocks (each starts with its maps line), numa_maps lines."""
    lines = text.decode().splitlines(keepends=True)
    if name == "numa_maps":
        return lines
    out: list[str] = []
    for line in lines:
        if "-" in line.split()[0]:
            out.append(line)
        else:
            out[-1] += line
    return out


def _start(record: str) -> int:
    return int(record.split()[0].split("-")[0], 16)


@pytest.mark.parametrize("name", ["smaps", "numa_maps"])
@pytest.mark.parametrize("chunk", [7, 1000, 4096, 1 << 20])
def test_chunked_reads_equal_one_instant(fs, name, chunk):
    pid, _ = _proc(fs)
    text = read_all(fs, f"proc/{pid}/{name}", chunk=chunk)
    assert text == _one_instant(fs, pid, name)
    assert b"Rss:" in text if name == "smaps" else b"anon=" in text  # real numbers, not all zero


@pytest.mark.parametrize("name", ["smaps", "numa_maps"])
def test_each_read_is_whole_records_below_one_page(fs, name):
    pid, _ = _proc(fs)
    full = _blocks(_one_instant(fs, pid, name), name)
    h = fs.open(f"proc/{pid}/{name}", os.O_RDONLY, ROOT)
    off, i = 0, 0
    while data := h.read(1 << 20, off):
        assert len(data) < 4096
        got = _blocks(data, name)
        # exactly the records that fit in the 4096-byte buffer (a record fits if shorter)
        n, size = 0, 0
        while i + n < len(full) and size + len(full[i + n]) < 4096:
            size += len(full[i + n])
            n += 1
        assert got == full[i: i + n]
        i += n
        off += len(data)
    assert i == len(full)


@pytest.mark.parametrize("name", ["smaps", "numa_maps"])
def test_change_between_reads_hides_no_vma_that_stayed(fs, name):
    k = fs.kernel
    pid, base = _proc(fs, 160)  # numa_maps lines are short: more than a page of them
    h = fs.open(f"proc/{pid}/{name}", os.O_RDONLY, ROOT)
    first = h.read(1 << 20, 0)
    last = _start(_blocks(first, name)[-1])
    # split the VMA after the last one shown, and unmap one further on
    nxt = last + 3 * P
    k.mprotect(pid, nxt + P, P, NONE)
    k.munmap(pid, nxt + 6 * P, 3 * P)
    rest, off = b"", len(first)
    while data := h.read(1 << 20, off):
        rest += data
        off += len(data)
    shown = [_start(r) for r in _blocks(first + rest, name)]
    assert shown == sorted(shown)  # vm_start increasing: nothing repeated here
    after = [_start(r) for r in _blocks(_one_instant(fs, pid, name), name)]
    # every VMA of the new state past the read boundary is there, in order
    assert [s for s in shown if s > last] == [s for s in after if s > last]
    assert nxt + 6 * P not in shown and nxt + P in shown


def test_writer_waits_for_a_smaps_reader_only_on_the_vma_being_shown(fs, monkeypatch):
    k = fs.kernel
    pid, base = _proc(fs, 8)
    target = base + 3 * P  # the second VMA
    in_show, release = threading.Event(), threading.Event()
    block = smaps.smaps_block

    def slow_block(ctx, mm, v, kb):
        if v.start == target:
            in_show.set()
            assert release.wait(10)
        return block(ctx, mm, v, kb)

    monkeypatch.setattr(smaps, "smaps_block", slow_block)
    h = fs.open(f"proc/{pid}/smaps", os.O_RDONLY, ROOT)
    got = {}
    reader = threading.Thread(target=lambda: got.setdefault("text", h.read(1 << 20, 0)))
    reader.start()
    assert in_show.wait(5)
    # a change elsewhere goes ahead while the reader is in the middle of the file
    other = threading.Thread(target=k.mprotect, args=(pid, base + 6 * P, P, NONE))
    other.start()
    other.join(5)
    assert not other.is_alive()
    # a change to the VMA being shown waits for that reader
    mine = threading.Thread(target=k.mprotect, args=(pid, target, P, NONE))
    mine.start()
    time.sleep(0.2)
    assert mine.is_alive()
    release.set()
    reader.join(5)
    mine.join(5)
    assert not reader.is_alive() and not mine.is_alive()
    recs = _blocks(got["text"], "smaps")
    # the block shown is the VMA as it was, whole: 3 pages
    mine_rec = next(r for r in recs if _start(r) == target)
    assert mine_rec.split()[0] == f"{target:08x}-{target + 3 * P:08x}"
    assert "Size:                 12 kB" in mine_rec


def test_smaps_of_a_reaped_task_is_esrch_and_of_an_exited_mm_eof(fs):
    k = fs.kernel
    parent = k.spawn(["/usr/bin/sh"])
    pid = k.spawn(["/usr/bin/app"], parent=parent)
    h = fs.open(f"proc/{pid}/smaps", os.O_RDONLY, ROOT)
    k.exit(pid)
    assert h.read(4096, 0) == b""  # zombie: the mm is gone
    k.wait(parent, pid)
    with pytest.raises(OSError) as e:
        h.read(4096, 0)
    assert e.value.errno == 3  # ESRCH
