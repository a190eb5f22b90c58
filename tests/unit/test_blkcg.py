"""io.stat from the block layer (block/blk-cgroup.c): bios charged at
submission to the submitter's cgroup, writeback to the inode's dirtier,
swap-out to the page's memcg, per whole disk, summed up the tree; the
root's lines are the disks' own counters. Checked against diskstats and
against blkcg_print_one_stat's format (and the host's io.stat where the
host has the io controller on cgroup v2)."""

from __future__ import annotations

import copy
import errno
import os
import re

import pytest

from hostinfo import requires_host
from procfs_helpers import ROOT, errno_of, read_all
from procsim import scenario
from procsim.cgroup import syscalls as C
from procsim.commands import execute
from procsim.kernel import MADV_PAGEOUT
from procsim.procfs.tree import ProcFS
from test_block import DISKS  # the same machine: three disks, a swap partition

CG = "/sys/fs/cgroup"
MiB = 1 << 20
PAGE = 4096

# blkcg_print_one_stat: "%s " then the counters when any of the first four is not 0, then "\n"
LINE = re.compile(r"(\d+):(\d+) (?:rbytes=(\d+) wbytes=(\d+) rios=(\d+) wios=(\d+) dbytes=(\d+) dios=(\d+))?")
LEAVES = ("/a.slice/x.service", "/a.slice/y.service", "/b.slice/z.service")


@pytest.fixture
def world():
    """The block tests' three disks; a process in each of three leaf cgroups
    under two slices, their exec's I/O done."""
    k = scenario.build(copy.deepcopy(DISKS))
    for path in ("/a.slice", "/b.slice", *LEAVES):
        C.mkdir(k, path)
    pids = {}
    for path in LEAVES:
        pids[path] = k.spawn(["/usr/bin/app"])
        C.attach(k, pids[path], path)
    k.advance(0.05)
    return k, ProcFS(k), pids


def io_stat(fs: ProcFS, cg: str) -> list[tuple[str, dict[str, int]]]:
    """The lines of a cgroup's io.stat, in order: (MAJ:MIN, counters)."""
    text = read_all(fs, f"{CG}{cg}/io.stat").decode()
    out = []
    for ln in text.splitlines(keepends=True):
        m = LINE.fullmatch(ln.rstrip("\n"))
        assert m and ln.endswith("\n"), ln
        names = ("rbytes", "wbytes", "rios", "wios", "dbytes", "dios")
        out.append((f"{m[1]}:{m[2]}", {n: int(v or 0) for n, v in zip(names, m.groups()[2:])}))
    return out


def stat_of(fs: ProcFS, cg: str, dev: str) -> dict[str, int]:
    return dict(io_stat(fs, cg)).get(dev, dict.fromkeys(("rbytes", "wbytes", "rios", "wios", "dbytes", "dios"), 0))


def diskstats(fs: ProcFS) -> dict[str, list[int]]:
    return {ln.split()[2]: [int(x) for x in ln.split()[3:]] for ln in read_all(fs, "/proc/diskstats").decode().splitlines()}


def dev(k, name: str) -> str:
    maj, mn = k.block.by_name[name].disk.part0.dev
    return f"{maj}:{mn}"


def test_a_read_shows_on_its_disks_line_and_its_parents() -> None:
    k = scenario.build(copy.deepcopy(DISKS))
    C.mkdir(k, "/a.slice")
    C.mkdir(k, "/a.slice/x.service")
    C.mkdir(k, "/a.slice/y.service")
    p = k.spawn(["reader"])
    C.attach(k, p, "/a.slice/x.service")
    fs = ProcFS(k)
    assert read_all(fs, f"{CG}/a.slice/x.service/io.stat") == b""  # no bio yet: no blkg, no line
    k.vfs.file("/data/big", 4 * MiB)
    k.read(p, "/data/big", MiB, 0)
    q = k.block.by_name["vdb"].disk.queue
    bios = -(-256 // max(1, q.max_sectors_kb // 4))  # one 256-page bio, split at max_sectors_kb
    want = f"{dev(k, 'vdb')} rbytes={MiB} wbytes=0 rios={bios} wios=0 dbytes=0 dios=0\n".encode()
    assert read_all(fs, f"{CG}/a.slice/x.service/io.stat") == want   # charged at submission: in flight still
    assert read_all(fs, f"{CG}/a.slice/io.stat") == want              # the parent's includes it
    assert read_all(fs, f"{CG}/a.slice/y.service/io.stat") == b""     # a sibling's does not
    # a second disk: its blkg is the newest, listed first (hlist_add_head)
    k.read(p, "/srv/www/index.html", 8192, 0)
    lines = io_stat(fs, "/a.slice/x.service")
    assert [d for d, _ in lines] == [dev(k, "nvme0n1"), dev(k, "vdb")]   # the disk, not the partition 259:1
    assert lines[0][1]["rbytes"] == 8192 and lines[0][1]["rios"] == 1
    assert io_stat(fs, "/a.slice") == lines
    # the parent keeps its children's I/O when they go
    C.attach(k, p, "/a.slice/y.service")
    C.rmdir(k, "/a.slice/x.service")
    assert io_stat(fs, "/a.slice") == lines


def test_leaf_cgroups_sum_to_the_disks_sectors(world) -> None:
    """For I/O only cgroups submitted, the leaves' bytes are diskstats'
    sectors * 512 once the requests are complete, on each disk."""
    k, fs, pids = world
    d0 = diskstats(fs)
    for i, (path, p) in enumerate(pids.items()):
        k.vfs.file(f"/data/in{i}", 2 * MiB)
        k.read(p, f"/data/in{i}", (i + 1) * 256 << 10, 0)
        k.read(p, "/srv/www/index.html", 4096 * (i + 1), 4096 * 8 * i)
        k.write(p, f"/data/out{i}", (i + 1) << 20, 0)
        k.write(p, f"/srv/out{i}", 64 << 10, 0)
    p0 = pids[LEAVES[0]]
    execute(k, "fsync", {"pid": p0, "path": "/data/out0"})
    k.advance(40)  # the flusher writes the rest back
    d1 = diskstats(fs)
    for name in ("vdb", "nvme0n1"):
        leaves = [stat_of(fs, cg, dev(k, name)) for cg in LEAVES]
        assert sum(s["rbytes"] for s in leaves) == (d1[name][2] - d0[name][2]) * 512, name
        assert sum(s["wbytes"] for s in leaves) == (d1[name][6] - d0[name][6]) * 512, name
        assert all(s["rbytes"] and s["wbytes"] for s in leaves), name
        # a slice is the sum of its services, counter by counter
        a = stat_of(fs, "/a.slice", dev(k, name))
        assert a == {n: leaves[0][n] + leaves[1][n] for n in a}
    # fsync's cache flush is a write bio of no bytes from the task (REQ_PREFLUSH)
    x = stat_of(fs, LEAVES[0], dev(k, "vdb"))
    y = stat_of(fs, LEAVES[1], dev(k, "vdb"))
    q = k.block.by_name["vdb"].disk.queue
    pieces = -(-256 // max(1, q.max_sectors_kb // 4))  # a 256-page bio after splitting
    assert x["wbytes"] == MiB and y["wbytes"] == 2 * MiB
    assert x["wios"] == pieces + 1 and y["wios"] == 2 * pieces


def test_root_io_stat_is_the_disks_counters(world) -> None:
    """blkcg_fill_root_iostats(): the root's lines are each disk's diskstats
    (completed I/Os, sectors << 9), a line per disk, newest disk first."""
    k, fs, pids = world
    k.write(pids[LEAVES[0]], "/data/f", MiB, 0)
    k.read(pids[LEAVES[2]], "/boot/vmlinuz", MiB, 0)
    k.read(pids[LEAVES[1]], "/srv/www/index.html", 8192, 0)
    execute(k, "sync", {})
    k.advance(1)
    d = diskstats(fs)
    lines = io_stat(fs, "")
    assert [x for x, _ in lines] == [dev(k, n) for n in ("nvme0n1", "vdb", "vda")]
    for name, (_, s) in zip(("nvme0n1", "vdb", "vda"), lines):
        row = d[name]
        assert s == {"rbytes": row[2] * 512, "wbytes": row[6] * 512, "rios": row[0], "wios": row[4],
                     "dbytes": row[13] * 512, "dios": row[11]}, name
        assert s["rbytes"] or s["wbytes"]


def test_writeback_is_charged_to_the_cgroup_that_dirtied_the_inode(world) -> None:
    k, fs, pids = world
    x, z = pids[LEAVES[0]], pids[LEAVES[2]]
    vdb = dev(k, "vdb")
    k.write(x, "/data/log", 256 << 10, 0)          # dirtied by x.service
    assert stat_of(fs, LEAVES[0], vdb)["wbytes"] == 0   # nothing submitted yet
    C.attach(k, x, LEAVES[2])                      # x moves; its inode's wb stays with its memcg
    execute(k, "fsync", {"pid": x, "path": "/data/log"})
    assert stat_of(fs, LEAVES[0], vdb)["wbytes"] == 256 << 10
    z_stat = stat_of(fs, LEAVES[2], vdb)
    assert z_stat["wbytes"] == 0 and z_stat["wios"] == 1   # the flush: the fsyncing task's
    # the flusher (a kthread) writes what z.service dirtied to z.service
    k.write(z, "/data/z", 64 << 10, 0)
    k.advance(40)
    assert stat_of(fs, LEAVES[2], vdb)["wbytes"] == 64 << 10


def test_swap_io_is_charged(world) -> None:
    """swap-out to the page's memcg (bio_associate_blkg_from_page), one bio
    a page; swap-in to the faulting task's cgroup."""
    k, fs, pids = world
    p = pids[LEAVES[1]]
    vda = dev(k, "vda")
    a = k.mmap(p, 4 << 20)
    k.touch(p, a, 4 << 20)
    before = stat_of(fs, LEAVES[1], vda)
    k.madvise(p, a, 4 << 20, MADV_PAGEOUT)
    out = stat_of(fs, LEAVES[1], vda)
    assert out["wbytes"] - before["wbytes"] == 4 << 20 and out["wios"] - before["wios"] == 1024
    k.advance(0.5)
    assert k.shrink_swap_cache() == 1024
    C.attach(k, p, LEAVES[2])
    z0 = stat_of(fs, LEAVES[2], vda)
    pswpin = k.mem.swap.pswpin
    k.touch(p, a, 1 << 20, write=False)
    inn = k.mem.swap.pswpin - pswpin
    z1 = stat_of(fs, LEAVES[2], vda)
    assert inn > 0 and z1["rbytes"] - z0["rbytes"] == inn * PAGE and z1["rios"] - z0["rios"] == inn
    assert stat_of(fs, LEAVES[1], vda)["rbytes"] == before["rbytes"]


def test_format_is_blkcg_print_one_stat(world) -> None:
    k, fs, pids = world
    k.read(pids[LEAVES[0]], "/boot/vmlinuz", 8192, 0)
    text = read_all(fs, f"{CG}/a.slice/x.service/io.stat").decode()
    assert re.fullmatch(r"254:0 rbytes=8192 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n", text)
    # an idle disk's root blkg prints its name alone
    k2 = scenario.build(copy.deepcopy(DISKS))
    root = read_all(ProcFS(k2), f"{CG}/io.stat").decode().splitlines(keepends=True)
    assert root[0] == f"{dev(k2, 'nvme0n1')} \n"
    # read-only (no write op: kernfs refuses the open for writing, EACCES), even for root
    before = read_all(fs, f"{CG}/a.slice/x.service/io.stat")
    assert errno_of(lambda: fs.open(f"{CG}/a.slice/x.service/io.stat", os.O_WRONLY, ROOT)) == errno.EACCES
    assert read_all(fs, f"{CG}/a.slice/x.service/io.stat") == before


@requires_host(files=("/sys/fs/cgroup/io.stat",))
def test_format_as_the_hosts_io_stat() -> None:
    """Every line of the host's root io.stat has the shape ours have, and
    the root's counters are the host's diskstats, as ours are."""
    host = open("/sys/fs/cgroup/io.stat").read()
    disks = {}
    for ln in open("/proc/diskstats").read().splitlines():
        f = ln.split()
        disks[f"{f[0]}:{f[1]}"] = [int(x) for x in f[3:]]
    for ln in host.splitlines():
        m = LINE.match(ln)
        assert m and m.end() == len(ln), ln
        row = disks.get(f"{m[1]}:{m[2]}")
        assert row is not None, ln   # a whole disk's dev_t (diskstats read after: counters only grow)
        if m[3] is not None:
            assert int(m[3]) <= row[2] * 512 and int(m[5]) <= row[0], ln


def io_some_total(fs: ProcFS, path: str) -> int:
    first = read_all(fs, path).decode().splitlines()[0]
    return int(first.rsplit("total=", 1)[1])


def test_a_read_waits_for_its_requests_as_io_pressure(world) -> None:
    """A read that misses the cache sleeps until its requests complete, as
    the disk serves them (issue to completion): that is its io stall, in
    its cgroup's io.pressure and the system's; a cached read waits not."""
    k, fs, pids = world
    p = pids[LEAVES[0]]
    k.advance(1)
    own, system = f"{CG}/a.slice/x.service/io.pressure", "/proc/pressure/io"
    b_own, b_sys, b_other = io_some_total(fs, own), io_some_total(fs, system), \
        io_some_total(fs, f"{CG}/b.slice/io.pressure")
    k.vfs.file("/data/p", 4 * MiB)
    q = k.block.by_name["vdb"].disk.queue
    max_pages = max(1, q.max_sectors_kb // 4)
    sizes = [min(max_pages, 256 - i) for i in range(0, 256, max_pages)]  # the requests of a 1 MiB read
    wait_ns = sum(q.service_ns(n * 8) for n in sizes)                    # served one after the other
    k.read(p, "/data/p", MiB, 0)
    k.advance(1)
    assert io_some_total(fs, own) - b_own == wait_ns // 1000
    assert io_some_total(fs, system) - b_sys == wait_ns // 1000
    assert io_some_total(fs, f"{CG}/b.slice/io.pressure") == b_other
    a = io_some_total(fs, own)
    k.read(p, "/data/p", MiB, 0)  # cached
    k.advance(1)
    assert io_some_total(fs, own) == a
