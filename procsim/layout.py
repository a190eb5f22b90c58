"""Replaying a real address space: the text of a real /proc/PID/maps ->
the mm an exec installs, with exactly those VMAs.

So that a simulated process has "the same shape" as a real one (same
addresses, permissions, offsets, files, devices, inodes and names) and
PROCMAP_QUERY, maps, pmap... can be compared with the real kernel's answers
for it. Each line becomes one VMA, installed as it is (never merged with its
neighbours); the result is checked by rendering it, so what maps shows for
the process is the input, byte for byte (the [vsyscall] line aside: the
renderer adds the gate VMA itself).

What a maps line does not say is chosen as mmap and the ELF loaders would
have: VM_MAY* flags, VM_ACCOUNT on private writable mappings and on RELRO
segments (_is_relro), VM_NORESERVE without it on glibc's thread-arena heaps
(_mark_malloc_heaps), VM_SHARED on writable (or shmem) shared ones, a
read-only open for other shared file mappings, VM_GROWSDOWN on [stack];
hugetlb mappings reserve their huge pages as mmap does (HugePages_Rsvd), none
being touched. No page is touched except the vDSO's.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field

import numpy as np

from procsim.binfmt_elf import set_args
from procsim.mm import page_alloc as M
from procsim.mm.hugetlb import HPAGE_ORDER, HPAGE_SHIFT, HPAGE_SIZE, HUGETLB_ANON_PATH, HUGETLBFS_DEV
from procsim.mm import memory
from procsim.mm.maps_format import maps_line
from procsim.mm.mmap import exit_mmap, install_vma
from procsim.mm.mm import MM, MMError
from procsim.mm.vma import (VM_ACCOUNT, VM_DONTEXPAND, VM_EXEC, VM_GROWSDOWN, VM_HUGETLB,
                            VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_NORESERVE,
                            VM_PROT_MASK, VM_READ, VM_SHARED, VM_VVAR, VM_WRITE, VMA, File)
from procsim.units import PAGE_SHIFT, PAGE_SIZE, TASK_SIZE
from procsim.vfs import SHMEM_DEV, VFS, default_build_id, looks_like_elf

BUILD_ID_SIZE_MAX = 20
DELETED = " (deleted)"
SPECIALS = ("[vdso]", "[vvar]", "[vvar_vclock]", "[uprobes]")
_MAY = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
_LINE = re.compile(r"([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([ps]) ([0-9a-f]+) "
                   r"([0-9a-f]+):([0-9a-f]+) ([0-9]+) ?(.*)")
_ANON_NAME = re.compile(r"\[anon(_shmem)?:([\x20-\x7e]{1,79})\]")


class LayoutError(ValueError):
    """The layout cannot be replayed (the exec fails with EINVAL)."""


@dataclass(frozen=True, slots=True)
class MapsLine:
    """One parsed line of a maps file; `name` as get_vma_name() gives it
    (a path with real newlines, " (deleted)" kept)."""
    text: str
    start: int
    end: int
    prot: int            # VM_READ | VM_WRITE | VM_EXEC
    shared: bool         # 's': VM_MAYSHARE
    offset: int
    dev: tuple[int, int]
    ino: int
    name: str

    @property
    def is_file(self) -> bool:
        return self.dev != (0, 0) or self.ino != 0


def parse_maps(text: str) -> list[MapsLine]:
    """The lines of a maps text, checked for form, order and alignment; a
    trailing [vsyscall] line (the gate VMA, not part of the mm) is dropped."""
    rows = text.split("\n")
    if rows and rows[-1] == "":
        rows.pop()  # the final newline (a shell's $(cat maps) has none)
    if rows and rows[-1].endswith(" [vsyscall]"):
        rows.pop()
    lines = [_parse_line(i + 1, r) for i, r in enumerate(rows)]
    if not lines:
        raise LayoutError("layout: no VMAs")
    prev_end = 0
    for ln in lines:
        if ln.start < prev_end:
            raise LayoutError(f"layout: {ln.text!r} overlaps or is out of order")
        prev_end = ln.end
    return lines


def _parse_line(no: int, text: str) -> MapsLine:
    m = _LINE.fullmatch(text)
    if m is None:
        raise LayoutError(f"layout line {no}: not a maps line: {text!r}")
    start, end, offset = int(m[1], 16), int(m[2], 16), int(m[7], 16)
    prot = (VM_READ if m[3] == "r" else 0) | (VM_WRITE if m[4] == "w" else 0) | (VM_EXEC if m[5] == "x" else 0)
    dev, ino = (int(m[8], 16), int(m[9], 16)), int(m[10])
    name = m[11].lstrip(" ")
    if (dev != (0, 0) or ino) and not name.startswith("["):
        name = name.replace("\\012", "\n")  # seq_path() escaped the path's newlines
    if not (start < end <= TASK_SIZE and start % PAGE_SIZE == 0 == end % PAGE_SIZE == offset % PAGE_SIZE):
        raise LayoutError(f"layout line {no}: bad range or offset: {text!r}")
    return MapsLine(text, start, end, prot, m[6] == "s", offset, dev, ino, name)


@dataclass
class Replay:
    """An mm built from a layout, not yet installed: `commit()` makes the
    files it introduces part of the VFS and sets their build IDs; `abort()`
    frees it. Until commit, the world is as it was."""
    mm: MM
    vfs: VFS
    new_files: dict[str, File] = field(default_factory=dict)
    grow: list[tuple[File, int]] = field(default_factory=list)
    build_ids: dict[int, tuple[File, bytes | None]] = field(default_factory=dict)

    def commit(self) -> MM:
        for path, f in self.new_files.items():
            self.vfs.files.setdefault(path, f)
        for f, size in self.grow:
            f.size = max(f.size, size)
        for f, bid in self.build_ids.values():
            f.build_id = bid
        return self.mm

    def abort(self) -> None:
        exit_mmap(self.mm)


class _Builder:
    def __init__(self, mem: M.MemMap, vfs: VFS, mmap_base: int) -> None:
        self.vfs = vfs
        self.mm = MM(mem, mmap_base)
        self.replay = Replay(self.mm, vfs)
        self.files: dict[tuple, File] = {}      # this layout's files, by (dev, ino, name)
        self.sizes: dict[int, tuple[File, int]] = {}

    def vma(self, ln: MapsLine) -> VMA:
        if ln.is_file:
            return self._file_vma(ln)
        if ln.offset:
            raise LayoutError(f"layout: an anonymous VMA with an offset: {ln.text!r}")
        flags = ln.prot | _MAY
        special = None
        if ln.name in SPECIALS:
            special = ln.name
            flags = (ln.prot & VM_READ) | VM_VVAR if ln.name.startswith("[vvar") else flags | VM_DONTEXPAND
        elif ln.shared:
            raise LayoutError(f"layout: a shared anonymous VMA has a shmem file: {ln.text!r}")
        elif ln.prot & VM_WRITE:
            flags |= VM_ACCOUNT
        if ln.name == "[stack]":
            flags |= VM_GROWSDOWN
        anon_name = self._anon_name(ln, shmem=False) if ln.name.startswith("[anon") else None
        if ln.name and not (special or anon_name or ln.name in ("[heap]", "[stack]")):
            raise LayoutError(f"layout: unknown name for an anonymous VMA: {ln.text!r}")
        pgoff = 0 if special else ln.start >> PAGE_SHIFT  # as map_region() gives anonymous VMAs
        return VMA(ln.start, ln.end, flags, pgoff, None, special, anon_name)

    @staticmethod
    def _anon_name(ln: MapsLine, shmem: bool) -> str:
        m = _ANON_NAME.fullmatch(ln.name)
        if m is None or bool(m[1]) != shmem or any(c in m[2] for c in "\\`$[]"):
            raise LayoutError(f"layout: bad anon name: {ln.text!r}")
        return m[2]

    def _file_vma(self, ln: MapsLine) -> VMA:
        hugetlb = ln.dev == HUGETLBFS_DEV or ln.name == HUGETLB_ANON_PATH + DELETED
        shmem = ln.dev == SHMEM_DEV and not hugetlb
        anon_name = self._anon_name(ln, shmem=True) if shmem and ln.name.startswith("[anon_shmem:") else None
        if not ln.name or ln.name.startswith("[") and anon_name is None:
            raise LayoutError(f"layout: a file VMA needs a path: {ln.text!r}")
        f = self._file(ln, shmem, hugetlb)
        flags = ln.prot | _MAY
        if ln.shared:
            flags |= VM_MAYSHARE
            if ln.prot & VM_WRITE or shmem or hugetlb:
                flags |= VM_SHARED
            else:  # a file opened read-only: no VM_SHARED, no VM_MAYWRITE
                flags &= ~VM_MAYWRITE
        elif ln.prot & VM_WRITE and not hugetlb:
            flags |= VM_ACCOUNT
        if hugetlb:
            if (ln.start | ln.end | ln.offset) % HPAGE_SIZE:
                raise LayoutError(f"layout: a hugetlb VMA not 2 MiB aligned: {ln.text!r}")
            flags |= VM_HUGETLB | VM_DONTEXPAND
        pgoff = ln.offset >> PAGE_SHIFT
        self._need_size(f, ln.offset + ln.end - ln.start)
        return VMA(ln.start, ln.end, flags, pgoff, f, None, anon_name)

    def _file(self, ln: MapsLine, shmem: bool, hugetlb: bool) -> File:
        """The file of a line: one object per (dev, ino, name) in the layout,
        the VFS's own when it is the same inode at the same path."""
        key = (ln.dev, ln.ino, ln.name)
        f = self.files.get(key)
        if f is not None:
            return f
        deleted = ln.name.endswith(DELETED)
        path = ln.name.removesuffix(DELETED) if deleted else ln.name
        if shmem or hugetlb:
            if path.startswith("[anon_shmem:"):  # a named shared anonymous mapping
                path, deleted = "/dev/zero", True
            f = File(path, ln.ino, ln.dev, 0, shmem=shmem, deleted=deleted, writable=True, hugetlb=hugetlb,
                     resv=set() if hugetlb else None)
        else:
            known = None if deleted else self.vfs.files.get(path)
            if known is not None and (known.dev, known.ino) == (ln.dev, ln.ino):
                f = known
            else:
                f = File(path, ln.ino, ln.dev, 0, deleted=deleted)
                if looks_like_elf(path):
                    f.build_id = default_build_id(path)
                if known is None and not deleted:
                    self.replay.new_files[path] = f
        self.files[key] = f
        return f

    def _need_size(self, f: File, size: int) -> None:
        old = self.sizes.get(id(f))
        self.sizes[id(f)] = (f, max(size, old[1] if old else 0))

    def finish(self) -> None:
        for f, size in self.sizes.values():
            if f.size == 0:
                f.size = size  # a new file: sized to cover its mappings
            elif size > f.size:
                self.replay.grow.append((f, size))


def build(mem: M.MemMap, vfs: VFS, vdso_pages: np.ndarray, path: str, argv: list[str], envp: list[str],
          text: str, build_ids: dict[str, str]) -> Replay:
    """The mm of `text` (a maps file), with argv and envp on its [stack] and
    `build_ids` (a name as PROCMAP_QUERY returns it -> hex, "" for none)
    for its files. LayoutError when it cannot be replayed exactly."""
    lines = parse_maps(text)
    b = _Builder(mem, vfs, _mmap_base(lines))
    mm = b.mm
    try:
        vmas = [b.vma(ln) for ln in lines]
        for v, w in zip(vmas, vmas[1:]):
            if _is_relro(v, w):
                v.flags |= VM_ACCOUNT
        _mark_malloc_heaps(vmas)
        b.finish()
        for v in vmas:
            install_vma(mm, v)
            if v.is_hugetlb:  # once installed, so that abort() releases it
                _reserve_hugetlb(mem, v)
        _set_brk(mm, vmas, lines)
        _set_stack(mm, vmas, lines, path, argv, envp)
        _set_code(mm, vmas, path)
        _map_vdso(mm, vmas, vdso_pages)
        _set_build_ids(b, vmas, path, build_ids)
        _check_round_trip(mm, lines)
    except MMError as e:
        b.replay.abort()
        if e.errno != errno.EINVAL:
            raise  # e.g. ENOMEM: the hugetlb pool cannot cover the reservations
        raise LayoutError(str(e)) from None
    except BaseException:
        b.replay.abort()
        raise
    return b.replay


def _is_relro(v: VMA, nxt: VMA) -> bool:
    """Whether `v` is an ELF object's RELRO segment, which keeps VM_ACCOUNT
    (smaps `ac`): the loaders (ld.so; the kernel's for the executable) map
    the writable PT_LOAD private and writable, so accounted, and once
    relocated mprotect() its start read-only, which keeps VM_ACCOUNT. A maps
    text has no history: as the loaders lay segments out, a private r--p
    VMA of a file directly followed by a private writable VMA of the same
    file is that start. (So on every object of this host's processes, lld's
    separate RELRO segment too; an object without RELRO whose last
    read-only segment touches its data would be marked as well: maps cannot
    tell them apart.)"""
    return (v.file is not None and nxt.file is v.file and not v.is_hugetlb and v.end == nxt.start
            and v.flags & (VM_READ | VM_WRITE | VM_EXEC | VM_MAYSHARE) == VM_READ
            and nxt.flags & (VM_WRITE | VM_MAYSHARE) == VM_WRITE)


# glibc's arena heaps (malloc/arena.c new_heap): HEAP_MAX_SIZE on 64-bit
HEAP_MAX_SIZE = 64 << 20


def _mark_malloc_heaps(vmas: list[VMA]) -> None:
    """glibc maps each thread arena's heap MAP_NORESERVE and PROT_NONE,
    HEAP_MAX_SIZE long and aligned, then mprotect()s its used start
    read-write, which (VM_NORESERVE) charges nothing: VmFlags `nr`, no `ac`.
    In a maps text that is a run of unnamed private anonymous VMAs, a
    read-write one first and PROT_NONE after it, that tiles one aligned
    HEAP_MAX_SIZE block exactly; anything else mapped so is rare enough to
    take that shape only by design."""
    i = 0
    while i < len(vmas):
        v = vmas[i]
        j = i + 1
        if _plain_anon(v) and v.start % HEAP_MAX_SIZE == 0 and v.flags & VM_PROT_MASK == VM_READ | VM_WRITE:
            while (j < len(vmas) and vmas[j].start == vmas[j - 1].end and _plain_anon(vmas[j])
                   and not vmas[j].flags & VM_PROT_MASK and vmas[j - 1].end < v.start + HEAP_MAX_SIZE):
                j += 1
            if vmas[j - 1].end == v.start + HEAP_MAX_SIZE:
                for h in vmas[i:j]:
                    h.flags = (h.flags & ~VM_ACCOUNT) | VM_NORESERVE
        i = j


def _plain_anon(v: VMA) -> bool:
    return v.file is None and v.special is None and v.anon_name is None and not v.flags & (VM_MAYSHARE | VM_GROWSDOWN)


def _reserve_hugetlb(mem: M.MemMap, v: VMA) -> None:
    """The reservations mmap makes for a hugetlb VMA (hugetlbfs_file_mmap)."""
    pool = mem.hugetlb
    first = v.pgoff >> HPAGE_ORDER
    try:
        reserved = pool.reserve_pages(first, first + ((v.end - v.start) >> HPAGE_SHIFT),
                                      v.file if v.flags & VM_MAYSHARE else None)
    except OSError as e:
        raise MMError(e.errno, f"layout: {e.strerror}") from None
    pool.set_vma_resv(v, reserved)


def _mmap_base(lines: list[MapsLine]) -> int:
    """Where later mmaps search down from: the top of the mapped area below
    the stack (the real mmap_base is a little above it)."""
    stack = next((ln.start for ln in lines if ln.name == "[stack]"), TASK_SIZE)
    return max((ln.end for ln in lines if ln.end <= stack), default=stack)


def _set_brk(mm: MM, vmas: list[VMA], lines: list[MapsLine]) -> None:
    """start_brk and brk around the [heap] VMAs, so that they, and only they,
    get the name (is_initial_heap() is `start <= brk && end >= start_brk`).
    No [heap]: both 0, which names nothing."""
    heap = [v for v, ln in zip(vmas, lines) if ln.name == "[heap]"]
    if not heap:
        return
    mm.start_brk, mm.brk = heap[0].start, heap[-1].end
    # an anonymous neighbour touching the heap is a heap too unless the
    # bounds stop short of it: an unaligned brk (as the brk syscall stores
    # it) does that. (File and special VMAs take their own names first.)
    others = [v for v in vmas if v.is_anon and v not in heap]
    if any(v.end == mm.start_brk for v in others):
        mm.start_brk += 1
    if any(v.start == mm.brk for v in others):
        mm.brk -= 1


def _set_stack(mm: MM, vmas: list[VMA], lines: list[MapsLine], path: str, argv: list[str],
               envp: list[str]) -> None:
    """argv and envp at the top of [stack], start_stack below them (as the
    ELF loader lays them out), kept inside the VMA."""
    stack = next((v for v, ln in zip(vmas, lines) if ln.name == "[stack]"), None)
    if stack is None:
        return
    sp = set_args(mm, stack.end, path, argv, envp)
    mm.start_stack = min(max(sp, stack.start + 16), stack.end - 16)


def _set_code(mm: MM, vmas: list[VMA], path: str) -> None:
    """start_code..end_code over the executable's text, data up to its end."""
    exe = [v for v in vmas if v.file is not None and v.file.path == path and not v.file.deleted]
    text = [v for v in exe if v.flags & VM_EXEC]
    if not text:
        return
    mm.start_code, mm.end_code = text[0].start, text[-1].end
    mm.start_data = next((v.start for v in exe if v.flags & VM_WRITE), mm.end_code)
    mm.end_data = exe[-1].end


def _map_vdso(mm: MM, vmas: list[VMA], vdso_pages: np.ndarray) -> None:
    """The vDSO text pages are mapped from exec on (as _exec_mm does)."""
    for v in vmas:
        if v.special == "[vdso]" and v.npages == len(vdso_pages):
            memory.fault(mm, v.start, v.end, False, vdso_pages)


def _set_build_ids(b: _Builder, vmas: list[VMA], path: str, build_ids: dict[str, str]) -> None:
    """Build IDs to set at commit: the executable always has one (it is an
    ELF object, whatever its name); `build_ids` overrides, by name."""
    by_name = {v.file.d_path(): v.file for v in vmas if v.file is not None and v.anon_name is None}
    plan = b.replay.build_ids
    exe = by_name.get(path)
    if exe is not None and exe.build_id is None:
        plan[id(exe)] = (exe, default_build_id(path))
    for name, hexid in build_ids.items():
        f = by_name.get(name)
        if f is None:
            raise LayoutError(f"build_ids: no file {name!r} in the layout")
        try:
            bid = bytes.fromhex(hexid)
        except (ValueError, TypeError):
            raise LayoutError(f"build_ids: {name!r}: not a hex string: {hexid!r}") from None
        if len(bid) > BUILD_ID_SIZE_MAX:
            raise LayoutError(f"build_ids: {name!r}: more than {BUILD_ID_SIZE_MAX} bytes")
        plan[id(f)] = (f, bid or None)


def _check_round_trip(mm: MM, lines: list[MapsLine]) -> None:
    """What maps will show must be the input."""
    for v, ln in zip(mm.vmas, lines):
        got = maps_line(mm, v).rstrip("\n")
        if got != ln.text:
            raise LayoutError(f"layout: cannot be replayed exactly: {ln.text!r} would show as {got!r}")
