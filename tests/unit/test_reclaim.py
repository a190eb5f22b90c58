"""LRU aging and node reclaim (procsim/mm/lru.py, vmscan_node.py), memcg
protection (procsim/cgroup/protection.py) and memory.reclaim: what reclaim
did agrees with /proc/vmstat, /proc/meminfo and memory.stat; bad writes
get the kernel's errnos and change nothing."""

from __future__ import annotations

import errno

import pytest

from invariants import boot, check_world
from procfs_helpers import errno_of, read_all
from procsim.cgroup import protection
from procsim.cgroup import syscalls as C
from procsim.commands import execute
from procsim.mm.sysctl_vm import set_vm_sysctl
from procsim.procfs.tree import ProcFS
from procsim.units import PAGE_SIZE

CG = "/sys/fs/cgroup"
MiB = 1 << 20
KB = PAGE_SIZE // 1024


def kv(fs: ProcFS, path: str) -> dict[str, int]:
    out = {}
    for line in read_all(fs, path).decode().splitlines():
        name, val = line.replace(":", " ").split()[:2]
        out[name] = int(val)
    return out


def write(fs: ProcFS, path: str, data: bytes) -> int:
    from procfs_helpers import ROOT
    h = fs.open(path, 1, ROOT)
    try:
        return h.write(data, 0)
    finally:
        h.release()


def test_new_folios_start_inactive_and_a_second_read_activates() -> None:
    """6.18 without MGLRU: anon and page cache start on the inactive lists
    (the reference VM: Active(anon) 168 kB of 1.4 GB); a page-cache page
    read twice is activated (pgactivate)."""
    k = boot()
    fs = ProcFS(k)
    pid = k.spawn(["/usr/bin/app"])
    a = k.mmap(pid, 8 * MiB)
    k.touch(pid, a, 8 * MiB)
    k.vfs.file("/srv/f", 4 * MiB)
    m0, v0 = kv(fs, "/proc/meminfo"), kv(fs, "/proc/vmstat")
    k.read(pid, "/srv/f", 4 * MiB, 0)
    m1 = kv(fs, "/proc/meminfo")
    assert m1["Inactive(file)"] - m0["Inactive(file)"] == 4096 and m1["Active(file)"] == m0["Active(file)"]
    k.read(pid, "/srv/f", 4 * MiB, 0)
    m2, v2 = kv(fs, "/proc/meminfo"), kv(fs, "/proc/vmstat")
    assert m2["Active(file)"] - m1["Active(file)"] == 4096
    assert v2["pgactivate"] - v0["pgactivate"] == 1024
    assert m2["Active(anon)"] == m0["Active(anon)"] and m2["Active(anon)"] < 8 * 1024  # the 8 MiB: inactive
    check_world(k)


def fill(k, pid, cache: int, anon: int) -> None:
    k.vfs.file("/srv/big", cache)
    k.read(pid, "/srv/big", cache, 0)
    a = k.mmap(pid, anon)
    k.touch(pid, a, anon)


def reclaim_counters(v: dict[str, int]) -> tuple[int, int]:
    scanned = v["pgscan_kswapd"] + v["pgscan_direct"] + v["pgscan_proactive"]
    stolen = v["pgsteal_kswapd"] + v["pgsteal_direct"] + v["pgsteal_proactive"]
    return scanned, stolen


@pytest.mark.parametrize("swappiness", [60, 0])
def test_kswapd_and_direct_reclaim_below_the_watermarks(swappiness: int) -> None:
    """A machine filled past its low watermark: kswapd reclaims to the high
    watermark, an allocation below min reclaims directly (allocstall);
    vmstat's kinds and types add up, meminfo agrees, the world is
    consistent. With swappiness 0 only page cache is scanned."""
    k = boot(mem_bytes=512 * MiB, swap_bytes=256 * MiB)
    set_vm_sysctl(k, "swappiness", swappiness)
    fs = ProcFS(k)
    pid = k.spawn(["/usr/bin/app"])
    z = k.reclaim.watermarks()
    free = k.reclaim.free_pages()
    fill(k, pid, (free - z.wmark_low) * PAGE_SIZE // 2, (free - z.wmark_min // 2) * PAGE_SIZE // 2 + 8 * MiB)
    v, mi = kv(fs, "/proc/vmstat"), kv(fs, "/proc/meminfo")
    assert v["pageoutrun"] >= 1 and v["pgscan_kswapd"] > 0 and v["pgsteal_kswapd"] > 0
    scanned, stolen = reclaim_counters(v)
    assert scanned == v["pgscan_anon"] + v["pgscan_file"] and stolen == v["pgsteal_anon"] + v["pgsteal_file"]
    assert 0 < stolen <= scanned
    assert v["nr_free_pages"] >= z.wmark_min and mi["MemFree"] == v["nr_free_pages"] * KB
    if swappiness == 0:
        assert v["pgscan_anon"] == 0 and v["pswpout"] == 0
    assert v["pswpout"] * KB == mi["SwapTotal"] - mi["SwapFree"] or v["pswpout"] >= (mi["SwapTotal"] - mi["SwapFree"]) // KB
    root = kv(fs, f"{CG}/memory.stat") if False else None  # (the root has memory.stat: checked below)
    del root
    st = kv(fs, f"{CG}/memory.stat")
    assert st["pgscan_kswapd"] == v["pgscan_kswapd"] and st["pgsteal_kswapd"] == v["pgsteal_kswapd"]
    check_world(k)


def test_no_swap_means_file_only() -> None:
    k = boot(mem_bytes=512 * MiB)
    fs = ProcFS(k)
    pid = k.spawn(["/usr/bin/app"])
    free = k.reclaim.free_pages()
    fill(k, pid, free * PAGE_SIZE // 2, free * PAGE_SIZE // 2)
    v = kv(fs, "/proc/vmstat")
    assert v["pgscan_file"] > 0 and v["pgscan_anon"] == 0 and v["pswpout"] == 0
    check_world(k)


def test_get_scan_count_fractions() -> None:
    """SCAN_FRACT with no recorded costs: swappiness : 200 - swappiness."""
    from procsim.mm.vmscan_node import ScanControl
    k = boot(swap_bytes=64 * MiB)
    sizes = {("anon", False): 1 << 20, ("anon", True): 0, ("file", False): 1 << 20, ("file", True): 0}
    for sw, (a, f) in {60: (60, 140), 100: (100, 100), 200: (200, 0)}.items():
        sc = ScanControl(32, "direct", None, sw)
        sc.priority = 0 if sw == 200 else 2
        got = k.reclaim.get_scan_count(sc, sizes)
        if sw == 200:  # priority 0 with swappiness: SCAN_EQUAL
            assert got["anon", False] == got["file", False] == 1 << 20
        else:
            assert got["anon", False] == (1 << 18) * a // 200 and got["file", False] == (1 << 18) * f // 200
    k2 = boot()  # no swap: SCAN_FILE
    got = k2.reclaim.get_scan_count(ScanControl(32, "direct", None, 60), sizes)
    assert got["anon", False] == 0 and got["file", False] == (1 << 20) >> 12


def test_effective_protection_is_shared_among_siblings() -> None:
    """A parent with memory.low 8M whose two children each claim 8M: the
    parent's effective low is split in proportion (4M each)."""
    k = boot()
    C.mkdir(k, "/p")
    C.subtree_control(k, "/p", b"+memory")
    C.mkdir(k, "/p/a")
    C.mkdir(k, "/p/b")
    pids = {}
    for n in ("a", "b"):
        pids[n] = k.spawn([f"/usr/bin/{n}"])
        C.attach(k, pids[n], f"/p/{n}")
        k.vfs.file(f"/srv/{n}", 16 * MiB)
        k.read(pids[n], f"/srv/{n}", 16 * MiB, 0)
        C.set_memory(k, f"/p/{n}", "low", b"8M")
    C.set_memory(k, "/p", "low", b"8M")
    prot = protection.calculate(k, k.memcg.root)
    by = {m.cgroup.path: v for m, v in prot.items()}
    assert by["/p"] == (0, 2048)
    assert by["/p/a"] == (0, 1024) and by["/p/b"] == (0, 1024)
    got = execute(k, "memory_protection", {"path": "/"})
    assert got["/p/a"]["elow"] == 4 * MiB


def test_memory_min_is_never_reclaimed_and_low_only_as_a_last_resort() -> None:
    k = boot(swap_bytes=0)
    fs = ProcFS(k)
    ids = {}
    for n in ("a", "b", "c"):
        C.mkdir(k, f"/{n}")
        pid = k.spawn([f"/usr/bin/{n}"])
        C.attach(k, pid, f"/{n}")
        k.vfs.file(f"/srv/{n}", 16 * MiB)
        k.read(pid, f"/srv/{n}", 8 * MiB, 0)
        ids[n] = k.cgroups.get(f"/{n}").memcg
    write(fs, f"{CG}/a/memory.min", b"8M")
    write(fs, f"{CG}/b/memory.low", b"8M")
    # 4M from the root: c alone gives it, nobody's low is breached
    write(fs, f"{CG}/memory.reclaim", b"4M")
    assert ids["a"].usage == ids["b"].usage == 2048 and ids["c"].usage <= 1024
    assert kv(fs, f"{CG}/b/memory.events")["low"] == 0
    # more than c has: c empties, then b's low is breached (counted), a's min never
    assert errno_of(lambda: write(fs, f"{CG}/memory.reclaim", b"64M")) == errno.EAGAIN
    assert ids["a"].usage == 2048 and ids["b"].usage == 0 and ids["c"].usage == 0
    ev, loc = kv(fs, f"{CG}/b/memory.events"), kv(fs, f"{CG}/b/memory.events.local")
    assert ev["low"] >= 1 and loc["low"] == ev["low"]
    assert kv(fs, f"{CG}/a/memory.events")["low"] == 0
    st = kv(fs, f"{CG}/b/memory.stat")
    assert st["pgsteal_proactive"] == 2048 and st["pgsteal"] == 2048 and st["file"] == 0
    check_world(k)


@pytest.mark.parametrize("data, err", [(b"", errno.EINVAL), (b"abc", errno.EINVAL), (b"1M bogus", errno.EINVAL),
                                       (b"1M swappiness=201", errno.EINVAL), (b"1M swappiness=-1", errno.EINVAL),
                                       (b"1M swappiness=x", errno.EINVAL)])
def test_memory_reclaim_bad_writes_change_nothing(data: bytes, err: int) -> None:
    k = boot()
    fs = ProcFS(k)
    C.mkdir(k, "/a")
    pid = k.spawn(["/usr/bin/a"])
    C.attach(k, pid, "/a")
    k.vfs.file("/srv/a", 8 * MiB)
    k.read(pid, "/srv/a", 8 * MiB, 0)
    before = k.cgroups.get("/a").memcg.usage
    assert errno_of(lambda: write(fs, f"{CG}/a/memory.reclaim", data)) == err
    assert k.cgroups.get("/a").memcg.usage == before
    assert "pgscan_proactive 0" in read_all(fs, f"{CG}/a/memory.stat").decode()


def test_memory_reclaim_is_write_only_and_swappiness_max_takes_anon() -> None:
    k = boot(swap_bytes=64 * MiB)
    fs = ProcFS(k)
    C.mkdir(k, "/a")
    pid = k.spawn(["/usr/bin/a"])
    C.attach(k, pid, "/a")
    k.vfs.file("/srv/a", 8 * MiB)
    k.read(pid, "/srv/a", 8 * MiB, 0)
    a = k.mmap(pid, 8 * MiB)
    k.touch(pid, a, 8 * MiB)
    from procfs_helpers import ROOT
    assert fs.getattr(f"{CG}/a/memory.reclaim", ROOT).mode & 0o777 == 0o200
    write(fs, f"{CG}/a/memory.reclaim", b"2M swappiness=max")
    v = kv(fs, "/proc/vmstat")
    assert v["pgscan_file"] == 0 and v["pswpout"] >= 512
    execute(k, "memory_reclaim", {"path": "/a", "amount": "1M", "swappiness": 0})
    assert kv(fs, "/proc/vmstat")["pgsteal_file"] >= 256
    check_world(k)


SWAPPINESS_WRITES = [b"201\n", b"-1\n", b"abc\n", b"60 61\n", b"  7\n", b"200\n", b"0\n"]


def _swappiness_write(write_fn) -> list:
    out = []
    for data in SWAPPINESS_WRITES:
        try:
            out.append(write_fn(data))
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    return out


def test_vm_swappiness_writes() -> None:
    """proc_dointvec_minmax with 0..200: EINVAL out of range or not a number
    (the value unchanged); a second number is left unwritten (a short write)."""
    k = boot()
    fs = ProcFS(k)
    got = _swappiness_write(lambda d: write(fs, "/proc/sys/vm/swappiness", d))
    assert got == ["EINVAL", "EINVAL", "EINVAL", 3, 4, 4, 2]
    assert read_all(fs, "/proc/sys/vm/swappiness") == b"0\n" and k.mem.sysctl.swappiness == 0


def test_vm_swappiness_writes_as_host() -> None:
    import os
    path = "/proc/sys/vm/swappiness"
    try:
        old = open(path, "rb").read()
        fd = os.open(path, os.O_WRONLY)
        os.close(fd)
    except OSError:
        pytest.skip("the host's vm.swappiness is not writable here")

    def host(d: bytes) -> int:
        fd = os.open(path, os.O_WRONLY)
        try:
            return os.write(fd, d)
        finally:
            os.close(fd)
    # only writes that leave the host's value as it is (bad ones, and its own value)
    cur = old.strip()
    datas = [b"201\n", b"-1\n", b"abc\n", b"", cur + b" 61\n", b"  " + cur + b"\n", cur + b"\n"]

    def each(fn) -> list:
        out = []
        for d in datas:
            try:
                out.append(fn(d))
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        return out
    try:
        want = each(host)
    finally:
        host(old)
    k = boot()
    fs = ProcFS(k)
    write(fs, "/proc/sys/vm/swappiness", old)
    assert each(lambda d: write(fs, "/proc/sys/vm/swappiness", d)) == want


def test_reclaim_state_and_kswapd_commands() -> None:
    k = boot(mem_bytes=512 * MiB)
    st = execute(k, "reclaim_state", {})
    assert st["min"] < st["low"] < st["high"] and st["free"] > st["high"]
    assert execute(k, "kswapd", {}) == 0  # nothing to do above the high watermark
