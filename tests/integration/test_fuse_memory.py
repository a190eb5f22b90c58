"""Memory accounting on a real mount, read by real tools: pmap -x / -X /
-XX (procps, under the namespace runner), smem (-S MNT) and psutil
(memory_full_info, memory_maps), each compared with the model's smaps
numbers from the control channel, per VMA and per process, under both
mapcount models; and the memory files' bad-input answers through FUSE."""

from __future__ import annotations

import errno
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import psutil
import pytest

from fusehelpers import EXAMPLES, psutil_procfs, read
from mountd.pytest_plugin import mount_machine

pytestmark = pytest.mark.fuse

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
APP = 100
SCENARIO = """
[machine]
nr_cpus = 2
mem = "2G"
swap = "256M"
hugepages = 4
mapcount_model = "{model}"
thp_enabled = "always"
thp_sizes = {{ 64 = "always" }}

[[process]]
name = "app"
pid = 100
argv = ["/usr/bin/app", "--serve"]
"""


@pytest.fixture(scope="module", params=["page", "no_page"])
def world(request):
    """A fork-heavy workload with THPs and mTHPs, swap and hugetlb: the app
    touches 10 MiB of a 16 MiB region (PMD-mapped THPs), 192 KiB of an mTHP
    region and a shared segment, pages out 512 KiB and maps a huge page,
    then forks twice; one child writes inside a THP (COW, PMD split) and
    swaps 64 KiB back in, the other unmaps 1 MiB out of a THP (a partially
    mapped folio) and all three read a file."""
    top = tempfile.mkdtemp(prefix="procsim-mem-")
    os.chmod(top, 0o755)  # unprivileged readers must reach the mount (pytest's tmp dirs are 0700)
    m = mount_machine(os.path.join(top, "mnt"), SCENARIO.format(model=request.param))
    c = m.ctl
    try:
        a = c.mmap(pid=APP, length="16M")
        c.touch(pid=APP, addr=a, length="10M")
        small = c.mmap(pid=APP, length="1M")
        c.madvise(pid=APP, addr=small, length="1M", advice="nohugepage")
        c.touch(pid=APP, addr=small, length="192K")
        s = c.mmap(pid=APP, length="1M", shared=True)
        c.touch(pid=APP, addr=s, length="256K")
        f = c.mmap(pid=APP, length="64K", prot="r", path="/srv/model.bin")
        c.touch(pid=APP, addr=f, length="64K", write=False)
        sw = c.mmap(pid=APP, length="1M", addr=0x30000000, fixed=True)
        c.touch(pid=APP, addr=sw, length="1M")
        c.madvise(pid=APP, addr=sw, length="512K", advice="pageout")  # swap slots shared after fork
        h = c.mmap(pid=APP, length="4M", hugetlb=True)
        c.touch(pid=APP, addr=h, length="2M")  # one huge page, shared with the children
        kids = [c.fork(pid=APP), c.fork(pid=APP)]
        c.touch(pid=kids[0], addr=sw, length="64K")  # swap-in in one child
        c.touch(pid=kids[0], addr=a + (1 << 20), length="64K")
        c.munmap(pid=kids[1], addr=a + (4 << 20), length="1M")
        for k in kids:
            c.touch(pid=k, addr=f, length="64K", write=False)
        m.pids = [APP, *kids]
        m.model = request.param
        yield m
    finally:
        m.umount()
        if not os.path.ismount(m.mnt):
            shutil.rmtree(top, ignore_errors=True)


def run(m, *argv: str) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0 and r.stderr == "", (argv, r.returncode, r.stderr)
    return r.stdout


def kb(nbytes: int) -> int:
    return nbytes >> 10


def vmas(m, pid: int) -> list[dict]:
    return m.ctl.memory(pid=pid)["vmas"]


# -- pmap ---------------------------------------------------------------------------------------


def test_pmap_x(world):
    for pid in world.pids:
        model = vmas(world, pid)
        lines = run(world, "pmap", "-x", str(pid)).splitlines()
        assert lines[1].split() == ["Address", "Kbytes", "RSS", "Dirty", "Mode", "Mapping"]
        rows = [l.split() for l in lines[2:-2]]
        assert len(rows) == len(model) + 1  # + the [vsyscall] gate VMA
        for r, v in zip(rows, model):
            assert int(r[0], 16) == v["start"]
            assert [int(x) for x in r[1:4]] == [kb(v["end"] - v["start"]), kb(v["resident"]),
                                                kb(v["shared_dirty"]) + kb(v["private_dirty"])]
        assert rows[-1][:4] == ["ffffffffff600000", "4", "0", "0"]
        total = lines[-1].split()
        assert total[:2] == ["total", "kB"]
        assert [int(x) for x in total[2:5]] == [sum(int(r[i]) for r in rows) for i in (1, 2, 3)]
        # the totals are the process's VmSize and VmRSS (plus the gate page)
        status = read(f"{world.proc}/{pid}/status")
        vmrss = int(re.search(r"VmRSS:\s+(\d+)", status)[1])
        assert int(total[3]) == vmrss


@pytest.mark.parametrize("flag", ["-X", "-XX"])
def test_pmap_X(world, flag):
    """pmap -X/-XX build their columns from the smaps keys (they need the
    same keys in every block); every numeric column equals the model."""
    for pid in world.pids:
        model = vmas(world, pid)
        lines = run(world, "pmap", flag, str(pid)).splitlines()
        head = lines[1].split()
        assert head[:5] == ["Address", "Perm", "Offset", "Device", "Inode"]
        rows = lines[2:2 + len(model)]
        names = {"Rss": "resident", "Pss": "pss", "Pss_Dirty": "pss_dirty", "Shared_Clean": "shared_clean",
                 "Shared_Dirty": "shared_dirty", "Private_Clean": "private_clean",
                 "Private_Dirty": "private_dirty", "Referenced": "referenced", "Anonymous": "anonymous",
                 "LazyFree": "lazyfree", "AnonHugePages": "anonymous_thp", "Swap": "swap", "SwapPss": "swap_pss",
                 "Locked": "pss_locked", "Private_Hugetlb": "private_hugetlb", "Shared_Hugetlb": "shared_hugetlb"}
        checked = 0
        for line, v in zip(rows, model):
            cells = dict(zip(head, line.split()))
            assert int(cells["Address"], 16) == v["start"]
            assert int(cells["Size"]) == kb(v["end"] - v["start"])
            for col, key in names.items():
                if col in cells:
                    assert int(cells[col]) == kb(v[key]), (pid, hex(v["start"]), col)
                    checked += 1
        assert checked == len(model) * (16 if flag == "-XX" else 11)


# -- smem ---------------------------------------------------------------------------------------


def smem(m) -> dict[int, dict[str, int]]:
    r = subprocess.run(["smem", "-S", m.mnt, "-n", "-H", "-c", "pid uss pss rss swap"],
                       capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = {}
    for line in r.stdout.splitlines():
        pid, uss, pss, rss, swap = map(int, line.split())
        out[pid] = dict(uss=uss, pss=pss, rss=rss, swap=swap)
    return out


def per_vma_totals(model: list[dict]) -> dict[str, int]:
    """What a tool summing smaps' per-VMA kB lines gets."""
    return dict(uss=sum(kb(v["private_clean"]) + kb(v["private_dirty"]) for v in model),
                pss=sum(kb(v["pss"]) for v in model), rss=sum(kb(v["resident"]) for v in model),
                swap=sum(kb(v["swap"]) for v in model))


def test_smem(world):
    got = smem(world)
    for pid in world.pids:
        assert got[pid] == per_vma_totals(vmas(world, pid)), pid
    assert set(got) == {p["pid"] for p in world.ctl.ps() if not p["kthread"] and not p["zombie"]}


# -- psutil -------------------------------------------------------------------------------------


@pytest.fixture
def procfs(world):
    with psutil_procfs(world) as m:
        yield m


def test_psutil_memory_full_info_and_maps(procfs):
    for pid in procfs.pids:
        mem = procfs.ctl.memory(pid=pid)
        r = mem["rollup"]
        full = psutil.Process(pid).memory_full_info()
        # from smaps_rollup: summed in bytes, then cut to kB once
        assert full.uss == (kb(r["private_clean"] + r["private_dirty"] + r["private_hugetlb"])) * 1024
        assert full.pss == kb(r["pss"]) * 1024
        assert full.swap == kb(r["swap"]) * 1024
        assert full.rss == r["resident"]
        maps = psutil.Process(pid).memory_maps(grouped=False)
        assert len(maps) == len(mem["vmas"]) + 1
        for pm, v in zip(maps, mem["vmas"]):
            assert int(pm.addr.split("-")[0], 16) == v["start"]
            assert (pm.rss, pm.size, pm.pss, pm.private_clean, pm.private_dirty, pm.shared_clean,
                    pm.shared_dirty, pm.anonymous, pm.swap) == tuple(kb(x) * 1024 for x in (
                        v["resident"], v["end"] - v["start"], v["pss"], v["private_clean"], v["private_dirty"],
                        v["shared_clean"], v["shared_dirty"], v["anonymous"], v["swap"]))


def test_tools_agree(procfs):
    """One user, three tools, the same USS and PSS: USS exactly (it is a sum
    of whole pages), PSS up to the rollup's single truncation (spec §5)."""
    got = smem(procfs)
    for pid in procfs.pids:
        full = psutil.Process(pid).memory_full_info()
        rows = run(procfs, "pmap", "-XX", str(pid)).splitlines()
        head = rows[1].split()
        cells = [dict(zip(head, l.split())) for l in rows[2:-2]]
        pmap_uss = sum(int(c["Private_Clean"]) + int(c["Private_Dirty"]) for c in cells)
        pmap_pss = sum(int(c["Pss"]) for c in cells)
        assert got[pid]["uss"] == pmap_uss == full.uss // 1024
        assert got[pid]["pss"] == pmap_pss
        assert pmap_pss <= full.pss // 1024 < pmap_pss + len(cells)


# -- the files through FUSE: PFN hiding, bad input ------------------------------------------------


def test_pagemap_pfns_hidden_from_unprivileged(world):
    """An unprivileged owner reads its pagemap with the flags but no PFNs;
    root sees the PFN (spec §1.5, §10.1)."""
    c = world.ctl
    pid = c.spawn(argv=["nobody-app"], uid=65534, gid=65534)
    a = c.mmap(pid=pid, length="64K")
    c.touch(pid=pid, addr=a, length="4K")
    path = f"{world.proc}/{pid}/pagemap"
    with open(path, "rb") as fh:
        (root_e,) = struct.unpack("<Q", os.pread(fh.fileno(), 8, (a >> 12) * 8))
    assert root_e >> 63 and root_e & ((1 << 55) - 1)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                        f"dd if={path} bs=8 skip={a >> 12} count=1 status=none | od -An -tu8"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert int(r.stdout) == root_e & ~((1 << 55) - 1)
    c.exit_group(pid=pid)


def test_pagemap_and_kpage_reads_through_fuse(world):
    path = f"{world.proc}/{APP}/pagemap"
    fd = os.open(path, os.O_RDONLY)
    try:
        for size, off in ((8, 4), (12, 0), (1, 0)):
            with pytest.raises(OSError) as e:
                os.pread(fd, size, off)
            assert e.value.errno == errno.EINVAL
        assert len(os.pread(fd, 4 << 20, 0)) == 4 << 20  # filled completely (FUSE splits it)
        end = (0x7FFFFFFFF000 >> 12) * 8
        assert len(os.pread(fd, 16, end - 8)) == 8 and os.pread(fd, 8, end) == b""
        wfd = os.open(path, os.O_WRONLY)
        try:
            with pytest.raises(OSError) as e:
                os.write(wfd, b"\0" * 8)
        finally:
            os.close(wfd)  # left open, it kept the FUSE session alive after the unmount
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    fd = os.open(f"{world.proc}/kpageflags", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            os.pread(fd, 8, 3)
        assert e.value.errno == errno.EINVAL
        nr = (2 << 30) >> 12  # 2 GiB: whole sections
        assert len(os.pread(fd, 16, nr * 8 - 8)) == 8 and os.pread(fd, 8, nr * 8) == b""
    finally:
        os.close(fd)
    for name in ("kpagecount", "kpageflags"):
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat",
                            f"{world.proc}/{name}"], capture_output=True, text=True)
        assert r.returncode != 0 and "Permission denied" in r.stderr


@pytest.mark.parametrize("data,err", [(b"abc", errno.EINVAL), (b"0x1", errno.EINVAL), (b"6", errno.EINVAL),
                                      (b"4294967297", errno.ERANGE), (b"", None)])
def test_clear_refs_bad_input_through_fuse(world, data, err):
    path = f"{world.proc}/{APP}/clear_refs"
    before = read(f"{world.proc}/{APP}/smaps")
    fd = os.open(path, os.O_WRONLY)
    try:
        if err is None:
            assert os.write(fd, data) == 0
        else:
            with pytest.raises(OSError) as e:
                os.write(fd, data)
            assert e.value.errno == err
    finally:
        os.close(fd)
    assert read(f"{world.proc}/{APP}/smaps") == before
    assert world.ctl.ping()


def test_clear_refs_through_fuse(world):
    """echo 1 > clear_refs zeroes Referenced everywhere; a 13-byte write is
    short (12, spec §11.1)."""
    pid = world.ctl.fork(pid=APP)
    path = f"{world.proc}/{pid}/clear_refs"
    with open(path, "wb", buffering=0) as fh:
        assert fh.write(b"1") == 1
        assert os.write(fh.fileno(), b"1" + b" " * 12) == 12
    smaps = read(f"{world.proc}/{pid}/smaps")
    assert set(re.findall(r"^Referenced:\s+(\d+) kB", smaps, re.M)) == {"0"}
    world.ctl.exit_group(pid=pid)


def test_thp_sysfs_through_fuse(world):
    top = f"{world.sys}/kernel/mm/transparent_hugepage"
    assert read(f"{top}/enabled") == "[always] madvise never\n"
    assert read(f"{top}/hugepages-64kB/enabled") == "[always] inherit madvise never\n"
    path = f"{top}/hugepages-32kB/enabled"
    with open(path, "w") as fh:
        fh.write("madvise\n")
    assert read(path) == "always inherit [madvise] never\n"
    fd = os.open(path, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"sometimes")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert read(path) == "always inherit [madvise] never\n"
    assert world.ctl.thp()["sizes"]["32kB"] == "madvise"
    with open(path, "w") as fh:
        fh.write("never")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                        f"echo always > {path}"], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_anon_huge_pages_agree_across_files(world):
    """meminfo AnonHugePages counts each PMD-mapped THP once; each process's
    smaps counts the THPs it maps by PMD, so the sum over processes is at
    least meminfo's and the app's own is at most it."""
    meminfo = {l.split(":")[0]: int(l.split()[1]) for l in read(f"{world.proc}/meminfo").splitlines()}
    per_proc = {pid: sum(kb(v["anonymous_thp"]) for v in vmas(world, pid)) for pid in world.pids}
    assert meminfo["AnonHugePages"] > 0
    assert per_proc[APP] <= meminfo["AnonHugePages"] <= sum(per_proc.values())


def test_example_mapcount_models():
    """examples/mapcount_models.py runs and shows the differences worked out
    by hand from seed-mechanisms §5.2 for its workload: app's half-THP only
    it maps is private under PAGE_MAPCOUNT (USS +1024 kB, PSS 1536 vs 1024
    for that folio); job's 64 KiB folios, which only job maps after its two
    slot owners left, stay "maybe shared" (USS and exclusive 992 kB -> 0);
    AnonPages still counts the unmapped 32 KiB under NO_PAGE_MAPCOUNT."""
    r = subprocess.run([sys.executable, str(EXAMPLES / "mapcount_models.py")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 5 and parts[2].lstrip("-").isdigit():
            rows[(parts[0], parts[1])] = tuple(int(x) for x in parts[2:])
    assert rows[("app", "Pss")][2] == -512
    assert rows[("app", "USS")][2] == rows[("app", "exclusive")][2] == -1024
    assert rows[("job", "USS")][1:] == rows[("job", "exclusive")][1:] == (0, -992)
    assert rows[("job", "Pss")][2] == 0 and rows[("app", "Rss")][2] == rows[("job", "Rss")][2] == 0
    assert rows[("meminfo", "AnonPages")][2] == 32


@pytest.mark.parametrize("name,err", [("smaps", errno.EINVAL), ("smaps_rollup", errno.EINVAL),
                                      ("numa_maps", errno.EINVAL), ("pagemap", errno.EINVAL)])
def test_writes_to_read_only_memory_files(world, name, err):
    """Root may open them for writing (CAP_DAC_OVERRIDE); the write gets the
    kernel's EINVAL (spec §1.4) and changes nothing."""
    before = read(f"{world.proc}/{APP}/smaps_rollup")
    fd = os.open(f"{world.proc}/{APP}/{name}", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"1\n")
        assert e.value.errno == err
    finally:
        os.close(fd)
    assert read(f"{world.proc}/{APP}/smaps_rollup") == before


def test_swap_and_hugetlb_numbers(world):
    """The workload's swap and hugetlb, worked out by hand from spec §4.1
    and §15: the app's 128 paged-out pages are shared with both children
    (count 3), except the 16 the first child swapped back in (count 2), so
    SwapPss = (16 x 4096/2 + 112 x 4096/3) in fixed point, cut to kB = 181;
    its one touched huge page is mapped by all three (Shared_Hugetlb); the
    pool of 4 has 3 free and, of the 2 pages reserved at mmap, 1 still
    reserved; the swap area has 128 slots in use."""
    rollup = {l.split(":")[0]: int(l.split()[1]) for l in read(f"{world.proc}/{APP}/smaps_rollup").splitlines()[1:]}
    full = 4096 << 12
    assert rollup["Swap"] == 512
    assert rollup["SwapPss"] == (16 * (full // 2) + 112 * (full // 3)) >> 22 == 181
    assert rollup["Shared_Hugetlb"] == 2048 and rollup["Private_Hugetlb"] == 0
    status = read(f"{world.proc}/{APP}/status")
    assert re.search(r"^VmSwap:\s+512 kB$", status, re.M) and re.search(r"^HugetlbPages:\s+2048 kB$", status, re.M)
    meminfo = {l.split(":")[0]: int(l.split()[1]) for l in read(f"{world.proc}/meminfo").splitlines()}
    assert meminfo["SwapTotal"] == (256 << 10) - 4 and meminfo["SwapFree"] == meminfo["SwapTotal"] - 512
    assert (meminfo["HugePages_Total"], meminfo["HugePages_Free"], meminfo["HugePages_Rsvd"]) == (4, 3, 1)
    assert meminfo["Hugetlb"] == 4 * 2048
    kid0 = world.pids[1]
    kid_rollup = {l.split(":")[0]: int(l.split()[1]) for l in read(f"{world.proc}/{kid0}/smaps_rollup").splitlines()[1:]}
    assert kid_rollup["Swap"] == 512 - 64
