"""The memory files through ProcFS (no FUSE): smaps, smaps_rollup,
numa_maps, pagemap, kpagecount, kpageflags, clear_refs and the THP sysfs
switches. Formats are checked against the running kernel's own files where
it can show the same thing, numbers against the spec."""

from __future__ import annotations

import errno
import os
import re
import struct

import pytest

from hostinfo import pkeys, requires_host
from procsim import Kernel
from procsim.kernel import MADV_HUGEPAGE
from procsim.procfs.tree import ProcFS
from procfs_helpers import NOBODY, ROOT, errno_of, read_all
from invariants import boot

PAGE = 4096
PM_PRESENT, PM_SWAP, PM_FILE, PM_EXCL = 1 << 63, 1 << 62, 1 << 61, 1 << 56
PFN_MASK = (1 << 55) - 1


def keys(block: str) -> list[str]:
    return [line.split(":")[0] for line in block.splitlines()[1:]]


def blocks(smaps: str) -> list[str]:
    """Split smaps text into per-VMA blocks (each starts with a maps line)."""
    out: list[list[str]] = []
    for line in smaps.splitlines(keepends=True):
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
            out.append([])
        out[-1].append(line)
    return ["".join(b) for b in out]


def field(block: str, name: str) -> int:
    m = re.search(rf"^{name}:\s+(\d+)", block, re.M)
    assert m, name
    return int(m.group(1))


def pread(fs: ProcFS, path: str, size: int, offset: int, caller=ROOT) -> bytes:
    return fs.open(path, os.O_RDONLY, caller).read(size, offset)


def entries(fs: ProcFS, pid: int, addr: int, n: int, caller=ROOT) -> list[int]:
    return list(struct.unpack(f"<{n}Q", pread(fs, f"/proc/{pid}/pagemap", 8 * n, (addr >> 12) * 8, caller)))


# -- smaps -----------------------------------------------------------------------------------


HOST_PKEYS = pkeys()


# the key list is 6.18's; the gate VMA's block is the last one only with vsyscall=xonly
@requires_host(kernel="6.18", arch="x86_64", vsyscall="xonly")
def test_smaps_keys_are_the_real_kernels() -> None:
    """Every block has the real kernel's keys in its order, VmFlags last; the
    gate block too. (ProtectionKey only with protection keys: configured as
    this host has them.)"""
    k = boot(pkeys=HOST_PKEYS, kthreadd=False)
    real = blocks(open("/proc/self/smaps").read())
    real_keys = keys(real[0])
    assert real_keys[-1] == "VmFlags"
    pid = k.spawn(["bash"])
    ours = blocks(read_all(ProcFS(k), f"/proc/{pid}/smaps").decode())
    assert len(ours) == len(k.group(pid).mm.vmas) + 1
    for b in ours:
        assert keys(b) == real_keys, b
    assert ours[-1] == real[-1].split("\n", 1)[0] + "\n" + ours[-1].split("\n", 1)[1]
    assert ours[-1].endswith("THPeligible:           0\n" + "ProtectionKey:         0\n" * HOST_PKEYS
                             + "VmFlags: ex \n")
    assert field(ours[-1], "Size") == 4 and field(ours[-1], "Rss") == 0
    # the unitless lines are label + value in 24 columns too (spec §4 table)
    for b in ours:
        for line in b.splitlines():
            if line.startswith(("THPeligible:", "ProtectionKey:")):
                assert len(line) == 24, line


@requires_host(kernel="6.18", arch="x86_64")
def test_smaps_rollup_keys_and_header_are_the_real_kernels(k: Kernel) -> None:
    real = open("/proc/self/smaps_rollup").read()
    pid = k.spawn(["bash"])
    ours = read_all(ProcFS(k), f"/proc/{pid}/smaps_rollup").decode()
    assert keys(ours) == keys(real)
    mm = k.group(pid).mm
    vmas = list(mm.vmas)
    head = ours.splitlines()[0]
    assert head.startswith(f"{vmas[0].start:08x}-{vmas[-1].end:08x} ---p 00000000 00:00 0 ")
    real_head = real.splitlines()[0]
    assert len(real_head.split()[0]) == len(head.split()[0])  # same address widths: same padding
    assert head.index("[rollup]") == real_head.index("[rollup]") == 73


def test_smaps_values_anon_thp_fork(k: Kernel) -> None:
    """An 8 MiB MADV_HUGEPAGE region, 4 MiB written: two PMD-mapped THPs
    (AnonHugePages 4096 kB, THPeligible 1). After fork both processes map
    them: all Shared_Dirty, Pss half (spec §4.1; seed §5.7 behaviour 2)."""
    pid = k.spawn(["app"])
    a = k.mmap(pid, 8 << 20)
    a2 = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
    k.madvise(pid, a, 8 << 20, MADV_HUGEPAGE)
    k.touch(pid, a2, 4 << 20)
    fs = ProcFS(k)

    def block(p: int) -> str:
        (b,) = [b for b in blocks(read_all(fs, f"/proc/{p}/smaps").decode())
                if int(b.split("-")[0], 16) == a]
        return b

    b = block(pid)
    assert field(b, "Size") == 8192 and field(b, "Rss") == 4096 and field(b, "AnonHugePages") == 4096
    assert field(b, "Private_Dirty") == 4096 and field(b, "Pss") == 4096 and field(b, "THPeligible") == 1
    assert b.rstrip().endswith("VmFlags: rd wr mr mw me ac hg")
    child = k.fork(pid)
    for p in (pid, child):
        b = block(p)
        assert field(b, "Shared_Dirty") == 4096 and field(b, "Private_Dirty") == 0
        assert field(b, "Pss") == 2048 and field(b, "Pss_Dirty") == 2048


def test_rollup_sums_in_bytes_then_truncates(k: Kernel) -> None:
    """A page mapped by 3 processes has a Pss of 4096/3 bytes: each VMA's
    smaps truncates to whole kB, the rollup sums first (spec §5)."""
    pid = k.spawn(["app"])
    addrs = []
    for _ in range(3):
        a = k.mmap(pid, PAGE)
        k.touch(pid, a, PAGE)
        k.mprotect(pid, a, PAGE, 1)  # keep the three VMAs apart
        addrs.append(a)
    k.fork(pid)
    k.fork(pid)
    fs = ProcFS(k)
    bs = [b for b in blocks(read_all(fs, f"/proc/{pid}/smaps").decode()) if int(b.split("-")[0], 16) in addrs]
    assert [field(b, "Pss") for b in bs] == [1, 1, 1]  # 1365.33 bytes each
    rollup = read_all(fs, f"/proc/{pid}/smaps_rollup").decode()
    total_pss = sum(field(b, "Pss") for b in blocks(read_all(fs, f"/proc/{pid}/smaps").decode()))
    assert field(rollup, "Pss") >= total_pss
    assert field(rollup, "Rss") == sum(field(b, "Rss") for b in blocks(read_all(fs, f"/proc/{pid}/smaps").decode()))


def test_smaps_of_kernel_thread_and_zombie(k: Kernel) -> None:
    fs = ProcFS(k)
    assert read_all(fs, "/proc/2/smaps") == b""
    assert errno_of(fs.open, "/proc/2/smaps_rollup", os.O_RDONLY, ROOT) == errno.ESRCH
    assert errno_of(fs.open, "/proc/2/pagemap", os.O_RDONLY, ROOT) == errno.ESRCH
    parent = k.spawn(["sh"])
    pid = k.spawn(["app"], parent=parent)
    h_smaps = fs.open(f"/proc/{pid}/smaps", os.O_RDONLY, ROOT)
    h_rollup = fs.open(f"/proc/{pid}/smaps_rollup", os.O_RDONLY, ROOT)
    h_pm = fs.open(f"/proc/{pid}/pagemap", os.O_RDONLY, ROOT)
    k.exit_group(pid)
    # spec §1.6: opened alive, read as a zombie
    assert h_smaps.read(4096, 0) == b""
    assert errno_of(h_rollup.read, 4096, 0) == errno.ESRCH
    assert h_pm.read(8, 0) == b""
    assert errno_of(fs.open, f"/proc/{pid}/smaps_rollup", os.O_RDONLY, ROOT) == errno.ESRCH
    assert errno_of(fs.open, f"/proc/{pid}/pagemap", os.O_RDONLY, ROOT) == errno.ESRCH
    k.wait(parent, pid)
    assert h_pm.read(8, 0) == b""


def test_files_opened_before_exec_show_nothing_after(k: Kernel) -> None:
    """maps/smaps/pagemap fds hold the old address space (spec §1.6)."""
    pid = k.spawn(["app"])
    fs = ProcFS(k)
    hs = [fs.open(f"/proc/{pid}/{f}", os.O_RDONLY, ROOT) for f in ("maps", "smaps", "numa_maps")]
    pm = fs.open(f"/proc/{pid}/pagemap", os.O_RDONLY, ROOT)
    assert all(h.read(4096, 0) for h in hs)
    k.exec(pid, "/usr/bin/bash", ["bash"])
    assert [h.read(4096, 0) for h in hs] == [b"", b"", b""]
    assert pm.read(4096, 0) == b""
    assert read_all(fs, f"/proc/{pid}/maps")  # a new open sees the new image


# -- numa_maps -------------------------------------------------------------------------------


def test_numa_maps_lines(k: Kernel) -> None:
    """Keys as show_numa_map prints them (spec seed §6), checked against the
    forms seen on this kernel: anon lines have anon= dirty= and no mapped=,
    shared anon is /dev/zero\\040(deleted), mapmax= only above 1 (seed §5.7
    behaviour 7: 3 processes mapping a file page -> mapmax=3)."""
    pid = k.spawn(["app"])
    a = k.mmap(pid, 3 * PAGE, addr=0x10000000, flags=0x02 | 0x20 | 0x10)  # apart from other anon VMAs
    k.touch(pid, a, 2 * PAGE)
    s = k.mmap(pid, 2 * PAGE, flags=0x01 | 0x20)  # MAP_SHARED | MAP_ANONYMOUS
    k.touch(pid, s, PAGE)
    f = k.mmap(pid, 4 * PAGE, prot=1, flags=0x02, path="/srv/data")
    k.touch(pid, f, 4 * PAGE, write=False)
    fs = ProcFS(k)
    lines = {int(x.split()[0], 16): x for x in read_all(fs, f"/proc/{pid}/numa_maps").decode().splitlines()}
    assert lines[a] == f"{a:x} default anon=2 dirty=2 active=0 N0=2 kernelpagesize_kB=4"
    assert lines[s] == f"{s:x} default file=/dev/zero\\040(deleted) dirty=1 active=0 N0=1 kernelpagesize_kB=4"
    assert lines[f] == f"{f:x} default file=/srv/data mapped=4 active=0 N0=4 kernelpagesize_kB=4"
    for _ in range(2):
        c = k.fork(pid)
        k.touch(c, f, PAGE, write=False)
    lines = {int(x.split()[0], 16): x for x in read_all(fs, f"/proc/{pid}/numa_maps").decode().splitlines()}
    assert lines[f] == f"{f:x} default file=/srv/data mapped=4 mapmax=3 active=0 N0=4 kernelpagesize_kB=4"
    heap = [x for x in lines.values() if " heap" in x]
    stack = [x for x in lines.values() if " stack" in x]
    assert len(heap) <= 1 and len(stack) == 1


# -- pagemap -------------------------------------------------------------------------------------


def test_pagemap_entries(k: Kernel) -> None:
    """Spec §10.1's observed entries: private anon written = present +
    exclusive + PFN; file page mapped once = present + file + exclusive;
    hole = 0; after fork the anon page loses exclusive; unprivileged readers
    get the flags without the PFN."""
    pid = k.spawn(["app"])
    a = k.mmap(pid, 2 * PAGE)
    k.touch(pid, a, PAGE)
    f = k.mmap(pid, PAGE, prot=1, flags=0x02, path="/srv/pm")
    k.touch(pid, f, PAGE, write=False)
    fs = ProcFS(k)
    e_anon, e_hole = entries(fs, pid, a, 2)
    assert e_anon >> 55 == (PM_PRESENT | PM_EXCL) >> 55 and e_anon & PFN_MASK and e_hole == 0
    (e_file,) = entries(fs, pid, f, 1)
    assert e_file >> 55 == (PM_PRESENT | PM_FILE | PM_EXCL) >> 55
    assert entries(fs, pid, a, 1, NOBODY.__class__(NOBODY.pid, 0, 0))[0] == e_anon
    k.set_cred(pid, 65534, 65534)
    assert entries(fs, pid, a, 1, NOBODY) == [PM_PRESENT | PM_EXCL]
    k.set_cred(pid, 0, 0)
    k.fork(pid)
    (e_shared,) = entries(fs, pid, a, 1)
    assert e_shared == e_anon & ~PM_EXCL


def test_pagemap_read_rules(k: Kernel) -> None:
    """Spec §10.2: EINVAL unless offset and count are multiples of 8; EOF at
    TASK_SIZE, a read straddling it is short; large reads are whole."""
    pid = k.spawn(["app"])
    fs = ProcFS(k)
    path = f"/proc/{pid}/pagemap"
    assert errno_of(pread, fs, path, 8, 4) == errno.EINVAL
    assert errno_of(pread, fs, path, 12, 0) == errno.EINVAL
    end = (0x7FFFFFFFF000 >> 12) * 8
    assert len(pread(fs, path, 16, end - 8)) == 8
    assert pread(fs, path, 8, end) == b"" and pread(fs, path, 8, 1 << 62) == b""
    assert len(pread(fs, path, 4 << 20, 0)) == 4 << 20
    h = fs.open(path, os.O_RDONLY, ROOT)
    assert errno_of(h.ioctl, 0xC0606610, bytearray(96)) == errno.EINVAL  # any ioctl but PAGEMAP_SCAN
    assert errno_of(fs.open(path, os.O_WRONLY, ROOT).write, b"\0" * 8, 0) == errno.EINVAL
    assert errno_of(fs.open, path, os.O_RDONLY, NOBODY) == errno.EACCES


# -- kpagecount, kpageflags -------------------------------------------------------------------------


def test_kpage_files(k: Kernel) -> None:
    """Spec §13: arrays end at the RAM size rounded to a 128 MiB section;
    alignment EINVAL; a private anon page has kpagecount 1 and the observed
    flags UPTODATE LRU MMAP ANON SWAPBACKED + OWNER_2 (0x400005828) plus what
    the model adds; the zero page has ZERO_PAGE + RESERVED."""
    fs = ProcFS(k)
    nr = k.mem.nr_pages  # 1 GiB: 8 sections exactly
    assert len(read_all(fs, "/proc/kpagecount", chunk=1 << 20)) == nr * 8
    assert pread(fs, "/proc/kpageflags", 16, nr * 8 - 8) and len(pread(fs, "/proc/kpageflags", 16, nr * 8 - 8)) == 8
    assert pread(fs, "/proc/kpagecount", 8, nr * 8) == b""
    assert errno_of(pread, fs, "/proc/kpageflags", 8, 3) == errno.EINVAL
    assert errno_of(pread, fs, "/proc/kpagecount", 7, 0) == errno.EINVAL
    assert errno_of(fs.open("/proc/kpageflags", os.O_WRONLY, ROOT).write, b"x" * 8, 0) == errno.EIO
    assert errno_of(fs.open("/proc/kpageflags", os.O_RDONLY, ROOT).ioctl, 1, bytearray()) == errno.ENOTTY
    pid = k.spawn(["app"])
    a = k.mmap(pid, PAGE)
    k.touch(pid, a, PAGE)
    pfn = entries(fs, pid, a, 1)[0] & PFN_MASK
    (count,) = struct.unpack("<Q", pread(fs, "/proc/kpagecount", 8, pfn * 8))
    (flags,) = struct.unpack("<Q", pread(fs, "/proc/kpageflags", 8, pfn * 8))
    assert count == 1
    assert flags == 0x400005828  # as observed on 6.18 for a written private page
    (zero,) = struct.unpack("<Q", pread(fs, "/proc/kpageflags", 8, 1 * 8))
    assert zero & ((1 << 24) | (1 << 32)) == (1 << 24) | (1 << 32)
    free_pfn = nr - 1
    (buddy,) = struct.unpack("<Q", pread(fs, "/proc/kpageflags", 8, free_pfn * 8))
    assert buddy == 1 << 10


# -- clear_refs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data,result", [
    (b"1", 1), (b"1\n", 2), (b" 1 ", 3), (b"\t2\n", 3), (b"01", 2), (b"+1", 2), (b"5", 1),
    (b"1\0junk", 6), (b"4" + b" " * 20, 12),
    (b"1x", errno.EINVAL), (b"0x1", errno.EINVAL), (b"abc", errno.EINVAL), (b"", errno.EINVAL),
    (b"0", errno.EINVAL), (b"6", errno.EINVAL), (b"-1", errno.EINVAL), (b"+-1", errno.EINVAL),
    (b"4294967297", errno.ERANGE), (b"1111111111111", errno.ERANGE),
])
def test_clear_refs_parsing(k: Kernel, data: bytes, result: int) -> None:
    """Spec §11.1 (the kernel answers for each of these were checked there):
    a good write returns min(count, 12), errors leave the world alone."""
    pid = k.spawn(["app"])
    fs = ProcFS(k)
    h = fs.open(f"/proc/{pid}/clear_refs", os.O_WRONLY, ROOT)
    expect_ok = data not in (b"1x", b"0x1", b"abc", b"", b"0", b"6", b"-1", b"+-1", b"4294967297", b"1111111111111")
    if expect_ok:
        assert h.write(data, 0) == result
    else:
        before = read_all(fs, f"/proc/{pid}/smaps")
        assert errno_of(h.write, data, 0) == result
        assert read_all(fs, f"/proc/{pid}/smaps") == before


def test_clear_refs_effects(k: Kernel) -> None:
    """Spec §11.2: 3 clears Referenced of file VMAs only, 2 of anon, 1 of
    all; accesses set it again; 5 drops VmHWM to VmRSS; read is EINVAL."""
    pid = k.spawn(["app"])
    a = k.mmap(pid, 4 * PAGE)
    k.touch(pid, a, 4 * PAGE)
    fs = ProcFS(k)

    def referenced() -> tuple[int, int]:
        anon = file = 0
        for b in blocks(read_all(fs, f"/proc/{pid}/smaps").decode()):
            name = b.splitlines()[0][73:] if len(b.splitlines()[0]) > 73 else ""
            if name.startswith("/"):
                file += field(b, "Referenced")
            else:
                anon += field(b, "Referenced")
        return anon, file

    def clear(v: bytes) -> None:
        fs.open(f"/proc/{pid}/clear_refs", os.O_WRONLY, ROOT).write(v, 0)

    anon0, file0 = referenced()
    assert anon0 >= 16 and file0 > 0
    clear(b"3")
    assert referenced() == (anon0, 0)
    clear(b"2")
    assert referenced() == (0, 0)
    k.touch(pid, a, PAGE, write=False)
    assert referenced() == (4, 0)
    clear(b"1")
    assert referenced() == (0, 0)
    k.munmap(pid, a, 4 * PAGE)

    def hwm_rss() -> tuple[int, int]:
        s = read_all(fs, f"/proc/{pid}/status").decode()
        return field(s, "VmHWM"), field(s, "VmRSS")

    hwm, rss = hwm_rss()
    assert hwm > rss
    clear(b"5")
    assert hwm_rss() == (rss, rss)
    h = fs.open(f"/proc/{pid}/clear_refs", os.O_RDWR, ROOT)
    assert errno_of(h.read, 4096, 0) == errno.EINVAL


def test_clear_refs_reaped_and_zombie(k: Kernel) -> None:
    """Spec §11.1/§1.6: a zombie's write returns the count; a reaped one ESRCH
    (after the value check: a bad value is still EINVAL)."""
    parent = k.spawn(["sh"])
    pid = k.spawn(["app"], parent=parent)
    fs = ProcFS(k)
    h = fs.open(f"/proc/{pid}/clear_refs", os.O_WRONLY, ROOT)
    k.exit_group(pid)
    assert h.write(b"1", 0) == 1
    k.wait(parent, pid)
    assert errno_of(h.write, b"1", 0) == errno.ESRCH
    assert errno_of(h.write, b"9", 0) == errno.EINVAL
    assert fs.open("/proc/2/clear_refs", os.O_WRONLY, ROOT).write(b"1", 0) == 1  # kthread: no mm


# -- THP sysfs ---------------------------------------------------------------------------------------


def test_thp_sysfs_switches(k: Kernel) -> None:
    """Formats and write rules as this kernel's sysfs shows them (checked:
    `always [madvise] never`, `always inherit madvise [never]`; 'always\\n'
    accepted, ' always', 'always\\n\\n' and 'inherit' at the top EINVAL)."""
    fs = ProcFS(k)
    top = "/sys/kernel/mm/transparent_hugepage/enabled"
    size = "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled"
    assert read_all(fs, top) == b"always [madvise] never\n"
    assert read_all(fs, size) == b"always inherit madvise [never]\n"
    assert read_all(fs, "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled") == \
        b"always [inherit] madvise never\n"
    assert read_all(fs, "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") == b"2097152\n"
    names = fs.readdir("/sys/kernel/mm/transparent_hugepage", ROOT)
    assert [n for n in names if n.startswith("hugepages-")] == [
        f"hugepages-{kb}kB" for kb in (16, 32, 64, 128, 256, 512, 1024, 2048)]
    w = fs.open(top, os.O_WRONLY, ROOT)
    assert w.write(b"always\n", 0) == 7
    assert read_all(fs, top) == b"[always] madvise never\n"
    for bad in (b" always", b"always\n\n", b"inherit", b"x"):
        assert errno_of(w.write, bad, 0) == errno.EINVAL
    assert read_all(fs, top) == b"[always] madvise never\n"
    fs.open(size, os.O_WRONLY, ROOT).write(b"inherit", 0)
    assert read_all(fs, size) == b"always [inherit] madvise never\n"
    assert k.mem.thp.per_order[4] == "inherit"
    # and the next fault in a 64 KiB-aligned anon VMA gets a 64 KiB folio
    pid = k.spawn(["app"])
    a = k.mmap(pid, 1 << 20)
    k.touch(pid, (a + 0xFFFF) & ~0xFFFF, PAGE)
    assert k.mem.mthp_fault_alloc[4] == 1


def test_major_faults_of_all_threads_in_stat() -> None:
    """Swap-ins are major faults (mm_account_fault); /proc/PID/stat field 12
    sums them over the group's threads, exited ones included, as minflt."""
    from procsim.kernel import MADV_PAGEOUT
    k = boot(nr_cpus=2, swap_bytes=64 << 20, kthreadd=False)
    pid = k.spawn(["app"])
    a = k.mmap(pid, 16 * PAGE)
    k.touch(pid, a, 16 * PAGE)
    k.madvise(pid, a, 16 * PAGE, MADV_PAGEOUT)
    k.shrink_swap_cache()  # out of the swap cache too: the swap-ins read them back
    tid = k.clone_thread(pid)
    k.touch(tid, a, 16 * PAGE)
    fs = ProcFS(k)

    def majflt(path: str) -> int:
        text = read_all(fs, path).decode()
        return int(text[text.rindex(")") + 2:].split()[9])

    assert majflt(f"/proc/{pid}/task/{tid}/stat") == 16 and majflt(f"/proc/{pid}/task/{pid}/stat") == 0
    assert majflt(f"/proc/{pid}/stat") == 16
    k.exit(tid)
    assert majflt(f"/proc/{pid}/stat") == 16
