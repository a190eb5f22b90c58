"""Workingset detection and the reclaim of mapped and dirty page cache
(procsim/mm/workingset.py, procsim/mm/vmscan_node.py): shadow entries,
refaults, activations and restores as mm/workingset.c counts them; the
shadows' lifetime; unmapped page cache faulting back as major faults; dirty
page cache written by the flusher before reclaim frees it; kswapd's
watermark counters. Each file agrees with the others: /proc/vmstat, the
root's memory.stat, meminfo, diskstats."""

from __future__ import annotations

import numpy as np
import pytest

from invariants import boot, check_world
from procfs_helpers import read_all
from procsim.cgroup import syscalls as C
from procsim.commands import execute
from procsim.commands.core import CommandError
from procsim.mm import page_alloc as M
from procsim.mm.vmstat import pgpgout_kb
from procsim.procfs.tree import ProcFS
from procsim.units import PAGE_SIZE
from test_reclaim import kv  # "key value" files: meminfo, vmstat, memory.stat

CG = "/sys/fs/cgroup"
MiB = 1 << 20
WS = ("workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
      "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file", "workingset_nodereclaim")


def world(swap: int = 0):
    k = boot(mem_bytes=512 * MiB, swap_bytes=swap)
    fs = ProcFS(k)
    C.mkdir(k, "/job")
    pid = k.spawn(["/usr/bin/reader"])
    C.attach(k, pid, "/job")
    return k, fs, pid


def reclaim_job(k, amount: str = "64M", swappiness: int | None = 0) -> None:
    execute(k, "memory_reclaim", {"path": "/job", "amount": amount, "swappiness": swappiness})


def cached(k, path: str) -> int:
    f = k.vfs.files[path]
    return int(np.count_nonzero(f.cache))


def check_agree(k, fs) -> None:
    """vmstat's workingset events = the root's memory.stat (every LRU folio
    is charged); the LRU sizes of meminfo = vmstat, the root memcg's at most
    those (frames charged to no memcg are the node's only)."""
    v, st, mi = kv(fs, "/proc/vmstat"), kv(fs, f"{CG}/memory.stat"), kv(fs, "/proc/meminfo")
    for name in WS:
        assert v[name] == st[name], name
    for key, lst in (("Active(file)", "active_file"), ("Inactive(file)", "inactive_file"),
                     ("Active(anon)", "active_anon"), ("Inactive(anon)", "inactive_anon")):
        assert mi[key] * 1024 == v[f"nr_{lst}"] * PAGE_SIZE >= st[lst], key
    check_world(k)


def test_a_read_of_an_evicted_page_is_one_refault() -> None:
    k, fs, pid = world()
    k.vfs.file("/srv/data", 16 * MiB)
    k.read(pid, "/srv/data", 16 * MiB, 0)
    reclaim_job(k, "8M")
    evicted = 4096 - cached(k, "/srv/data")
    assert evicted >= 2048
    v0 = kv(fs, "/proc/vmstat")
    assert v0["workingset_refault_file"] == 0 and v0["workingset_nodes"] >= evicted // 64
    k.read(pid, "/srv/data", 16 * MiB, 0)
    v1, job = kv(fs, "/proc/vmstat"), kv(fs, f"{CG}/job/memory.stat")
    assert v1["workingset_refault_file"] == evicted == job["workingset_refault_file"]
    assert v1["workingset_nodes"] == 0  # every shadow taken by a page again
    k.read(pid, "/srv/data", 16 * MiB, 0)  # all cached now: no more refaults
    assert kv(fs, "/proc/vmstat")["workingset_refault_file"] == evicted
    check_agree(k, fs)


def test_a_refault_within_the_workingset_size_activates() -> None:
    """Without an active list the refault distance (>= 1) exceeds the
    workingset (0): no activation. With a large active file list the same
    refaults are activated, straight onto the active list (no pgactivate)."""
    for hot_mib, expect_active in ((0, False), (64, True)):
        k, fs, pid = world()
        if hot_mib:
            k.vfs.file("/srv/hot", hot_mib * MiB)
            k.read(pid, "/srv/hot", hot_mib * MiB, 0)
            k.read(pid, "/srv/hot", hot_mib * MiB, 0)  # a second read: active
        k.vfs.file("/srv/cold", 8 * MiB)
        k.read(pid, "/srv/cold", 8 * MiB, 0)
        # one reclaim batch over the cold file's pages (shrink_inactive_list)
        cold = k.vfs.files["/srv/cold"].cache[:512].copy()
        before = cached(k, "/srv/cold")
        k.reclaim.shrink_inactive_list(_sc(k), "file", cold)
        evicted = before - cached(k, "/srv/cold")
        assert evicted >= 256
        v0, m0 = kv(fs, "/proc/vmstat"), kv(fs, "/proc/meminfo")
        k.read(pid, "/srv/cold", 8 * MiB, 0)
        v1, m1 = kv(fs, "/proc/vmstat"), kv(fs, "/proc/meminfo")
        refaults = v1["workingset_refault_file"] - v0["workingset_refault_file"]
        activated = v1["workingset_activate_file"] - v0["workingset_activate_file"]
        assert refaults == evicted
        assert activated == (evicted if expect_active else 0)
        # the pages that stayed were read before: the reread activates them too
        resident = 8 * MiB // PAGE_SIZE - evicted
        assert (m1["Active(file)"] - m0["Active(file)"]) * 1024 == (resident + activated) * PAGE_SIZE
        # the reread's folio_mark_accessed activates the pages that stayed (pgactivate), not the refaults
        assert v1["pgactivate"] - v0["pgactivate"] == 8 * MiB // PAGE_SIZE - evicted
        check_agree(k, fs)


def test_a_refault_of_a_deactivated_page_is_a_restore() -> None:
    """Pages that were active, aged to the inactive list (PG_workingset) and
    evicted refault as restores."""
    k, fs, pid = world()
    k.vfs.file("/srv/ws", 32 * MiB)
    k.read(pid, "/srv/ws", 32 * MiB, 0)
    k.read(pid, "/srv/ws", 32 * MiB, 0)  # all active
    reclaim_job(k, "24M")  # the active list ages into the inactive one, then goes
    evicted = 8192 - cached(k, "/srv/ws")
    assert evicted > 0
    v0 = kv(fs, "/proc/vmstat")
    assert v0["pgdeactivate"] >= evicted
    k.read(pid, "/srv/ws", 32 * MiB, 0)
    v1 = kv(fs, "/proc/vmstat")
    assert v1["workingset_refault_file"] - v0["workingset_refault_file"] == evicted
    # every evicted page had been active (PG_workingset): each recent one is a restore
    activated = v1["workingset_activate_file"] - v0["workingset_activate_file"]
    assert 0 < activated < evicted
    assert v1["workingset_restore_file"] - v0["workingset_restore_file"] == activated
    check_agree(k, fs)


def test_truncation_and_unlink_free_the_shadows() -> None:
    k, fs, pid = world()
    for name in ("/srv/t", "/srv/u"):
        k.vfs.file(name, 4 * MiB)
        k.read(pid, name, 4 * MiB, 0)
    reclaim_job(k, "8M")
    n0 = kv(fs, "/proc/vmstat")["workingset_nodes"]
    assert n0 >= 2 * (1024 // 64) - 2 and not cached(k, "/srv/t")
    k.truncate(pid, "/srv/t", 2 * MiB)  # the second half's shadows go
    n1 = kv(fs, "/proc/vmstat")["workingset_nodes"]
    assert n1 == n0 - (512 // 64)
    k.truncate(pid, "/srv/t", 0)
    k.unlink("/srv/u", pid)
    assert kv(fs, "/proc/vmstat")["workingset_nodes"] == 0
    k.truncate(pid, "/srv/t", 4 * MiB)
    k.read(pid, "/srv/t", 4 * MiB, 0)  # a read of a hole: no shadow, no refault
    assert kv(fs, "/proc/vmstat")["workingset_refault_file"] == 0
    check_agree(k, fs)


def test_writes_take_their_slots_without_refaults() -> None:
    """A page added to the cache for a write (__GFP_WRITE) is no refault."""
    k, fs, pid = world()
    k.vfs.file("/srv/w", 4 * MiB)
    k.read(pid, "/srv/w", 4 * MiB, 0)
    reclaim_job(k, "4M")
    k.write(pid, "/srv/w", 4 * MiB, 0)
    v = kv(fs, "/proc/vmstat")
    assert v["workingset_refault_file"] == 0 and v["workingset_nodes"] == 0


def diskstats_sectors(fs: ProcFS, dev: tuple[int, int]) -> tuple[int, int]:
    """(sectors read, sectors written) of the device `dev` in /proc/diskstats."""
    for line in read_all(fs, "/proc/diskstats").decode().splitlines():
        f = line.split()
        if (int(f[0]), int(f[1])) == dev:
            return int(f[5]), int(f[9])
    raise AssertionError(f"{dev} not in diskstats")


def test_dirty_page_cache_is_written_by_the_flusher_before_it_is_freed() -> None:
    """Reclaim does not write page cache (6.18's pageout()): dirty pages get
    PG_reclaim and are activated (nr_vmscan_immediate_reclaim); a batch of
    nothing but dirty pages wakes the flusher, which writes them through the
    block layer (diskstats: 8 sectors a page); written, they rotate to the
    inactive list (pgrotated) and a later pass frees them (pgsteal counts
    only those). nr_vmscan_write stays 0: nothing went to swap."""
    k, fs, pid = world()
    f = k.vfs.file("/srv/dirty", 0)
    k.write(pid, "/srv/dirty", 4 * MiB, 0)
    pages = 4 * MiB // PAGE_SIZE
    dev = f.dev
    r0, w0 = diskstats_sectors(fs, dev)
    v0, m0 = kv(fs, "/proc/vmstat"), kv(fs, "/proc/meminfo")
    assert m0["Dirty"] >= 4096
    t0 = k.now
    reclaim_job(k, "4M")
    v1, m1 = kv(fs, "/proc/vmstat"), kv(fs, "/proc/meminfo")
    assert m1["Dirty"] == m0["Dirty"] - 4096 and v1["nr_written"] - v0["nr_written"] == pages
    k.advance(1.0)  # the writes complete; the disk also took the journal's commits meanwhile
    r1, w1 = diskstats_sectors(fs, dev)
    journal = 2 * (pgpgout_kb(k.now) - pgpgout_kb(t0))
    assert w1 - w0 == pages * 8 + journal
    assert v1["nr_vmscan_immediate_reclaim"] > 0 and v1["pgrotated"] > 0
    assert v1["nr_vmscan_write"] == 0
    freed = pages - cached(k, "/srv/dirty")
    assert freed > 0
    stolen = (v1["pgsteal_proactive"] - v0["pgsteal_proactive"])
    assert stolen == freed  # the only page cache freed is this file's
    # a second reclaim finds nothing (EAGAIN) and writes nothing more
    with pytest.raises(CommandError):
        reclaim_job(k, "1M")
    assert diskstats_sectors(fs, dev)[1] == w1 and kv(fs, "/proc/vmstat")["nr_written"] == v1["nr_written"]
    check_agree(k, fs)


def test_mapped_page_cache_is_unmapped_and_faults_back_as_major_faults() -> None:
    """Mapped file pages found young (and referenced by their fault) are
    activated; aged back to the inactive list and found idle they are
    unmapped from every PTE and freed; the next access is a major fault
    that reads the disk (pgmajfault, maj_flt, diskstats reads) and a
    refault."""
    k, fs, pid = world()
    f = k.vfs.file("/srv/mapped", 4 * MiB)
    a = k.mmap(pid, 4 * MiB, prot=1, flags=0x02, path="/srv/mapped")
    k.touch(pid, a, 4 * MiB, write=False)
    pages = 1024
    t = k.task(pid)
    maj0 = t.maj_flt
    assert maj0 >= pages  # reading them in the first time was major too
    mine = f.cache[:pages].copy()
    rss0 = rss_file(fs, pid)
    # young, and PG_referenced from the fault: activated at the first look
    k.reclaim.shrink_inactive_list(_sc(k), "file", mine)
    assert rss_file(fs, pid) == rss0 and (k.mem.flags[mine] & M.PG_ACTIVE).all()
    k.reclaim.shrink_active_list(_sc(k), "file", mine)  # not young since, not exec: deactivated
    assert not (k.mem.flags[mine] & M.PG_ACTIVE).any()
    k.reclaim.shrink_inactive_list(_sc(k), "file", mine)  # not young, not referenced: unmapped and freed
    k._changed("reclaim")
    gone = pages - cached(k, "/srv/mapped")
    assert gone == pages and rss_file(fs, pid) == rss0 - 4096
    k.advance(1.0)  # the reads so far complete
    v0 = kv(fs, "/proc/vmstat")
    r0, _ = diskstats_sectors(fs, f.dev)
    k.touch(pid, a, 4 * MiB, write=False)
    v1 = kv(fs, "/proc/vmstat")
    k.advance(0.1)  # the reads complete
    r1, _ = diskstats_sectors(fs, f.dev)
    assert t.maj_flt - maj0 == gone
    assert v1["pgmajfault"] - v0["pgmajfault"] == gone and r1 - r0 == gone * 8
    assert v1["workingset_refault_file"] - v0["workingset_refault_file"] == gone
    assert kv(fs, f"{CG}/job/memory.stat")["pgmajfault"] >= gone
    check_agree(k, fs)


def test_young_executable_file_pages_are_activated_and_stay_active() -> None:
    """folio_check_references(): a young page of a VM_EXEC file mapping is
    activated at the first look; shrink_active_list gives it another trip
    on the active list while it stays young."""
    k, fs, pid = world()
    k.vfs.file("/srv/lib.so", 2 * MiB)
    a = k.mmap(pid, 2 * MiB, prot=1 | 4, flags=0x02, path="/srv/lib.so")
    k.touch(pid, a, 2 * MiB, write=False)
    f = k.vfs.files["/srv/lib.so"]
    pfns = f.cache[:512]
    assert not (k.mem.flags[pfns] & M.PG_ACTIVE).any()
    pfns = pfns.copy()
    k.reclaim.shrink_inactive_list(_sc(k), "file", pfns)
    assert (k.mem.flags[pfns] & M.PG_ACTIVE).all() and cached(k, "/srv/lib.so") == 512
    k.touch(pid, a, 2 * MiB, write=False)  # young again
    k.reclaim.shrink_active_list(_sc(k), "file", pfns)
    assert (k.mem.flags[pfns] & M.PG_ACTIVE).all()
    k.reclaim.shrink_active_list(_sc(k), "file", pfns)  # not young now: deactivated, PG_workingset
    assert not (k.mem.flags[pfns] & M.PG_ACTIVE).any() and (k.mem.flags[pfns] & M.PG_WORKINGSET).all()
    check_world(k)


def rss_file(fs: ProcFS, pid: int) -> int:
    for line in read_all(fs, f"/proc/{pid}/status").decode().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile")


def _sc(k):
    """A scan control for one direct call into reclaim (which then counts as
    a change of the machine: readers' cached views go)."""
    from procsim.mm.vmscan_node import ScanControl
    k._changed("reclaim")
    return ScanControl(32, "proactive", None, 60)


def test_anon_refaults_through_swap() -> None:
    k, fs, pid = world(swap=256 * MiB)
    a = k.mmap(pid, 8 * MiB)
    k.touch(pid, a, 8 * MiB)
    execute(k, "memory_reclaim", {"path": "/job", "amount": "8M", "swappiness": 200})
    v0 = kv(fs, "/proc/vmstat")
    assert v0["pswpout"] > 0 and v0["nr_vmscan_write"] == v0["pswpout"]
    out = v0["pswpout"] - k.mem.swap_cache.nr_swapcached
    k.touch(pid, a, 8 * MiB)
    v1 = kv(fs, "/proc/vmstat")
    assert v1["pswpin"] - v0["pswpin"] == v1["workingset_refault_anon"] == out > 0
    assert kv(fs, f"{CG}/job/memory.stat")["workingset_refault_anon"] == out
    check_agree(k, fs)


def test_kswapd_hits_the_low_watermark_quickly() -> None:
    """kswapd balances, naps HZ/10; a wake-up inside the nap counts
    kswapd_low_wmark_hit_quickly, one after it does not."""
    k = boot(mem_bytes=512 * MiB)
    fs = ProcFS(k)
    pid = k.spawn(["/usr/bin/app"])
    z = k.reclaim.watermarks()

    def push_below_low() -> None:
        need = k.reclaim.free_pages() - z.wmark_low + 64
        k.vfs.file(f"/srv/fill{k.now}", need * PAGE_SIZE)
        k.read(pid, f"/srv/fill{k.now}", need * PAGE_SIZE, 0)

    push_below_low()
    v0 = kv(fs, "/proc/vmstat")
    assert v0["pageoutrun"] == 1 and v0["kswapd_low_wmark_hit_quickly"] == 0
    k.advance(0.05)
    push_below_low()
    v1 = kv(fs, "/proc/vmstat")
    assert v1["pageoutrun"] == 2 and v1["kswapd_low_wmark_hit_quickly"] == 1
    k.advance(1.0)
    push_below_low()
    v2 = kv(fs, "/proc/vmstat")
    assert v2["pageoutrun"] == 3 and v2["kswapd_low_wmark_hit_quickly"] == 1
    assert v2["kswapd_high_wmark_hit_quickly"] == 0
    check_world(k)


def test_the_shadow_shrinker_reclaims_sparse_shadow_nodes() -> None:
    """One shadow per xarray node: more nodes than node_present_pages >> 3
    are trimmed by half the excess a pass (workingset_nodereclaim)."""
    k = boot(mem_bytes=64 * MiB, kernel_reserved_bytes=8 * MiB)
    fs = ProcFS(k)
    pid = k.spawn(["/usr/bin/app"])
    f = k.vfs.file("/srv/sparse", 4096 * 64 * PAGE_SIZE)
    ws = k.mem.workingset
    idx = np.arange(0, 4096 * 64, 64, dtype=np.int64)
    ws.store_file(f, idx, ws.eviction(None, np.zeros(len(idx), np.int64)))
    limit = k.mem.nr_pages >> 3
    assert ws.nr_nodes == 4096 > limit
    freed = ws.shrink_shadow_nodes()
    assert freed == (4096 - limit) // 2 and ws.nr_nodes == 4096 - freed
    v = kv(fs, "/proc/vmstat")
    assert v["workingset_nodereclaim"] == freed == kv(fs, f"{CG}/memory.stat")["workingset_nodereclaim"]
    assert v["workingset_nodes"] == 4096 - freed
    del pid


def test_the_same_commands_give_the_same_bytes() -> None:
    def run() -> bytes:
        k, fs, pid = world(swap=64 * MiB)
        k.vfs.file("/srv/d", 16 * MiB)
        k.read(pid, "/srv/d", 16 * MiB, 0)
        k.write(pid, "/srv/e", 2 * MiB, 0)
        reclaim_job(k, "12M", 60)
        k.read(pid, "/srv/d", 16 * MiB, 0)
        return read_all(fs, "/proc/vmstat") + read_all(fs, f"{CG}/job/memory.stat")
    assert run() == run()


def test_a_mapped_anon_page_young_once_gets_a_second_look() -> None:
    """folio_check_references(): young in one mapping and not referenced
    before (anon faults set no PG_referenced): kept, PG_referenced set;
    young again at the next look: activated."""
    k, fs, pid = world(swap=64 * MiB)
    a = k.mmap(pid, 1 * MiB)
    k.touch(pid, a, 1 * MiB)
    pfns = np.array([k.mem.flags.size and 0], np.int64)
    mm = k.task(pid).mm
    from procsim.mm.pagetable import pte_pfn
    pfns = pte_pfn(mm.pgtable.read(a, a + MiB)).astype(np.int64)
    k.reclaim.shrink_inactive_list(_sc(k), "anon", pfns)
    fl = k.mem.flags[pfns]
    assert (fl & M.PG_REFERENCED).all() and not (fl & M.PG_ACTIVE).any()
    assert kv(fs, "/proc/vmstat")["pswpout"] == 0
    k.touch(pid, a, 1 * MiB, write=False)
    k.reclaim.shrink_inactive_list(_sc(k), "anon", pfns)
    assert (k.mem.flags[pfns] & M.PG_ACTIVE).all()
    check_world(k)
