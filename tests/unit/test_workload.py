"""Workloads: each pattern touches the pages its definition says, as the
clock moves, deterministically; the access log is the ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from procsim import Kernel
from procsim.commands import execute
from procsim.mm import show_mem
from procsim.mm.mm import MM_ANONPAGES
from procsim.mm.sysctl_vm import set_vm_sysctl
import invariants

P = 4096
MB = 1 << 20


def boot(seed: int = 0, mem: int = 1 << 30) -> Kernel:
    return invariants.boot(nr_cpus=2, mem_bytes=mem, clock="manual", seed=seed)


def proc(k: Kernel, length: int = 16 * MB) -> tuple[int, int]:
    pid = k.spawn(["/usr/bin/app"])
    addr = execute(k, "mmap", {"pid": pid, "length": length})
    return pid, addr


def pages(k: Kernel, pid: int, addr: int, since: float, until: float | None = None) -> np.ndarray:
    """Touched page indices relative to addr."""
    return k.wss_truth(pid, since, until) - (addr >> 12)


def expected_distinct(p: np.ndarray, n: int) -> float:
    """E[distinct pages] after n independent draws with probabilities p."""
    return float(np.sum(-np.expm1(n * np.log1p(-np.minimum(p, 1 - 1e-16)))))


# -- patterns ---------------------------------------------------------------------

def test_hot_set_at_a_high_rate_touches_all_of_it_and_nothing_else():
    k = boot()
    pid, addr = proc(k)                                   # 4096 pages
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="hot_cold", rate=20000, addr=addr, length=16 * MB,
                      hot="1M", hot_offset="4M", hot_prob=1.0)
    k.advance(1)
    got = pages(k, pid, addr, t0)
    # 20000 draws over 256 pages: a page is missed with probability (255/256)**20000 ~ 1e-34
    assert got.tolist() == list(range(1024, 1024 + 256))


def test_hot_cold_cold_part_follows_the_probabilities():
    k = boot()
    pid, addr = proc(k)
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="hot_cold", rate=10000, addr=addr, length=16 * MB, hot=0.0625, hot_prob=0.8)
    k.advance(1)
    got = pages(k, pid, addr, t0)
    hot, cold = got[got < 256], got[got >= 256]
    assert len(hot) == 256                                # 8000 draws over 256 pages
    # ~2000 draws over 3840 cold pages (the split is binomial: sd of the count ~ 40 draws)
    e = expected_distinct(np.full(3840, 1 / 3840), 2000)
    assert abs(len(cold) - e) < 0.06 * e, (len(cold), e)


def test_uniform_distinct_pages_match_the_birthday_expectation():
    k = boot()
    pid, addr = proc(k)
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="uniform", rate=4000, addr=addr, length=16 * MB)
    k.advance(1)
    got = pages(k, pid, addr, t0)
    e = 4096 * (1 - (1 - 1 / 4096) ** 4000)               # ~2555, sd ~ 22
    assert abs(len(got) - e) < 100
    assert got.min() >= 0 and got.max() < 4096


def test_zipf_matches_its_distribution():
    k = boot()
    pid, addr = proc(k, 64 * MB)                          # 16384 pages
    t0 = k.now / 1e9
    s, n, N = 1.2, 6000, 16384
    k.workloads.start(pid, pattern="zipf", rate=n, addr=addr, length=64 * MB, exponent=s)
    k.advance(1)
    got = pages(k, pid, addr, t0)
    # page i holds [i+1, i+2) of the power law over [1, N+1)
    F = lambda x: (x ** (1 - s) - 1) / ((N + 1) ** (1 - s) - 1)  # noqa: E731
    i = np.arange(N, dtype=float)
    e = expected_distinct(F(i + 2) - F(i + 1), n)
    assert abs(len(got) - e) < 0.05 * e, (len(got), e)
    assert got[:10].tolist() == list(range(10))           # the head is always hit
    assert len(got) < 0.5 * expected_distinct(np.full(N, 1 / N), n)  # much more skewed than uniform


def test_scan_touches_exactly_rate_times_dt_pages_in_order_and_wraps():
    k = boot()
    pid, addr = proc(k)                                   # 4096 pages
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="scan", rate=1000, addr=addr, length=16 * MB)
    k.advance(1.5)
    t1 = k.now / 1e9
    assert pages(k, pid, addr, t0).tolist() == list(range(1500))
    k.advance(3)                                          # 3000 more: 1500..4095, then 0..403
    got = pages(k, pid, addr, t1)
    assert got.tolist() == list(range(404)) + list(range(1500, 4096))
    t2 = k.now / 1e9
    k.advance(5)                                          # 5000 > 4096: all of it
    assert len(pages(k, pid, addr, t2)) == 4096


def test_phases_move_the_working_set_and_repeat():
    k = boot()
    pid, addr = proc(k)
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="phases", rate=20000, addr=addr, length=16 * MB, phases=[
        {"pattern": "hot_cold", "duration": 1, "hot": "512K", "hot_prob": 1.0},
        {"pattern": "hot_cold", "duration": 1, "hot": "512K", "hot_offset": "8M", "hot_prob": 1.0},
        {"pattern": "scan", "duration": 0.5, "rate": 100, "offset": "12M"},
    ])
    for _ in range(6):
        k.advance(0.5)
    a, b, c = list(range(128)), list(range(2048, 2048 + 128)), list(range(3072, 3072 + 50))
    assert pages(k, pid, addr, t0, t0 + 1).tolist() == a
    assert pages(k, pid, addr, t0 + 1, t0 + 2).tolist() == b
    assert pages(k, pid, addr, t0 + 2, t0 + 2.5).tolist() == c   # its own rate: 50 pages
    assert pages(k, pid, addr, t0 + 2.5).tolist() == a            # the cycle starts again


def test_phases_without_repeat_stay_in_the_last():
    k = boot()
    pid, addr = proc(k)
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="phases", rate=10000, addr=addr, length=16 * MB, repeat=False, phases=[
        {"pattern": "hot_cold", "duration": 1, "hot": "512K", "hot_prob": 1.0},
        {"pattern": "hot_cold", "duration": 1, "hot": "512K", "hot_offset": "8M", "hot_prob": 1.0},
    ])
    k.advance(1)
    k.advance(3)                                          # one step: stamped at t0 + 1
    assert pages(k, pid, addr, t0 + 1).tolist() == list(range(2048, 2048 + 128))


# -- reads, writes and the mm ----------------------------------------------------------

def test_writes_fault_in_memory_and_reads_map_the_zero_page():
    k = boot()
    pid, addr = proc(k)
    mm = k.group(pid).mm
    before = mm.rss[MM_ANONPAGES]
    k.workloads.start(pid, pattern="scan", rate=1000, addr=addr, length=16 * MB)      # loads
    k.advance(1)
    assert mm.rss[MM_ANONPAGES] == before                 # the zero page is not RSS
    t = k.now / 1e9
    wid = k.workloads.start(pid, pattern="scan", rate=1000, addr=addr, length=16 * MB, offset="8M", write=1.0)
    k.advance(1)
    assert mm.rss[MM_ANONPAGES] == before + 1000          # 1000 stores to new pages
    info = k.workloads.stop(wid)
    assert (info["writes"], info["reads"], info["faults"]) == (1000, 0, 1000)
    assert len(pages(k, pid, addr, t)) == 2000


def test_write_fraction_splits_loads_and_stores():
    k = boot()
    pid, addr = proc(k)
    wid = k.workloads.start(pid, pattern="uniform", rate=10000, addr=addr, length=16 * MB, write=0.25)
    k.advance(1)
    info = k.workloads.list()[0]
    assert info["id"] == wid and info["accesses"] == 10000
    assert abs(info["writes"] - 2500) < 200               # binomial sd ~ 43
    assert info["reads"] + info["writes"] == 10000


def test_accesses_set_the_pte_accessed_bit():
    from procsim.mm.pagetable import PTE_ACCESSED
    k = boot()
    pid, addr = proc(k)
    execute(k, "touch", {"pid": pid, "addr": addr, "length": 16 * MB})
    execute(k, "clear_refs", {"pid": pid, "value": 1})
    mm = k.group(pid).mm
    assert not (mm.pgtable.read(addr, addr + 16 * MB) & PTE_ACCESSED).any()
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="hot_cold", rate=5000, addr=addr, length=16 * MB, hot="256K", hot_prob=1.0)
    k.advance(1)
    young = np.flatnonzero(mm.pgtable.read(addr, addr + 16 * MB) & PTE_ACCESSED)
    assert young.tolist() == list(range(64)) == pages(k, pid, addr, t0).tolist()


def test_whole_writable_vmas_by_default():
    k = boot()
    pid, addr = proc(k)
    ro = execute(k, "mmap", {"pid": pid, "length": MB, "prot": "r"})
    wid = k.workloads.start(pid, pattern="uniform", rate=50000)
    mm = k.group(pid).mm
    writable = [(v.start, v.end) for v in mm.vmas if v.flags & 2 and not v.special]   # VM_WRITE
    info = k.workloads.list()[0]
    assert info["ranges"] == [list(r) for r in writable]
    assert info["pages"] == sum(e - s for s, e in writable) // P
    k.advance(1)
    got = k.wss_truth(pid, 0) << 12
    assert not ((got >= ro) & (got < ro + MB)).any()
    assert ((got >= addr) & (got < addr + 16 * MB)).sum() > 3000
    assert k.workloads.stop(wid)["dropped"] == 0


def test_unmapped_part_is_dropped_and_the_workload_goes_on():
    k = boot()
    pid, addr = proc(k)
    wid = k.workloads.start(pid, pattern="uniform", rate=8000, addr=addr, length=16 * MB)
    k.advance(0.5)
    execute(k, "munmap", {"pid": pid, "addr": addr + 8 * MB, "length": 8 * MB})
    t = k.now / 1e9
    k.advance(1)
    got = pages(k, pid, addr, t)
    assert got.max() < 2048 and len(got) > 1000
    info = k.workloads.list()[0]
    assert info["state"] == "running" and info["error"] == ""
    assert abs(info["dropped"] - 4000) < 250              # half of the 8000 draws of the last second
    execute(k, "mprotect", {"pid": pid, "addr": addr, "length": 8 * MB, "prot": "none"})
    t = k.now / 1e9
    k.advance(1)
    assert len(pages(k, pid, addr, t)) == 0
    assert k.workloads.list()[0]["state"] == "running"
    assert k.workloads.stop(wid)["state"] == "stopped"


def test_workload_ends_with_its_task_and_with_exec():
    k = boot()
    pid, addr = proc(k)
    k.workloads.start(pid, pattern="uniform", rate=100, addr=addr, length=16 * MB)
    execute(k, "exit_group", {"pid": pid})
    k.advance(1)
    assert k.workloads.list()[0]["state"] == "exited"
    pid2, addr2 = proc(k)
    k.workloads.start(pid2, pattern="uniform", rate=100, addr=addr2, length=16 * MB)
    execute(k, "exec", {"pid": pid2, "path": "/usr/bin/other"})
    k.advance(1)
    w = k.workloads.list(pid2)[0]
    assert w["state"] == "exited" and "exec" in w["error"]
    assert not k.workloads.active
    assert all(w.mm is None for w in k.workloads.items.values())   # the old address spaces are let go


def test_out_of_memory_fails_the_workload_and_the_clock_goes_on():
    k = boot(mem=512 * MB)
    set_vm_sysctl(k, "overcommit_memory", 1)  # else the heuristic refuses 1 GiB at mmap
    pid = k.spawn(["/usr/bin/app"])
    addr = execute(k, "mmap", {"pid": pid, "length": 1 << 30})
    k.workloads.start(pid, pattern="scan", rate=300000, addr=addr, length=1 << 30, write=1.0)
    k.advance(1)
    w = k.workloads.list()[0]
    # the OOM killer finds the workload's own task the only victim: it dies,
    # and its workload with it
    assert w["state"] == "failed" and "out of memory" in w["error"]
    assert [e.victim.pid for e in k.oom.events] == [pid]
    k.advance(1)
    assert k.now / 1e9 == pytest.approx(k.config.boot_uptime + 2)


def test_change_replaces_parameters_from_now_on():
    k = boot()
    pid, addr = proc(k)
    wid = k.workloads.start(pid, pattern="hot_cold", rate=10000, addr=addr, length=16 * MB, hot="256K",
                            hot_prob=1.0)
    k.advance(1)
    t = k.now / 1e9
    k.workloads.change(wid, hot_offset="1M")              # keeps rate, hot, hot_prob
    k.advance(1)
    assert pages(k, pid, addr, t).tolist() == list(range(256, 320))
    t = k.now / 1e9
    k.workloads.change(wid, pattern="scan", rate=100)     # the hot_cold keys go
    k.advance(1)
    assert pages(k, pid, addr, t).tolist() == list(range(100))
    assert k.workloads.list()[0]["spec"] == {"pattern": "scan", "rate": 100, "addr": addr, "length": 16 * MB}


# -- determinism -------------------------------------------------------------------------

def run_world(seed: int, steps: list[float]) -> np.ndarray:
    k = boot(seed=seed)
    pid, addr = proc(k)
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="phases", rate=3000, addr=addr, length=16 * MB, write=0.5, phases=[
        {"pattern": "zipf", "duration": 0.3, "exponent": 0.9},
        {"pattern": "uniform", "duration": 0.2},
        {"pattern": "hot_cold", "duration": 0.4},
    ])
    for s in steps:
        k.advance(s)
    return pages(k, pid, addr, t0)


def test_same_seed_same_truth_whatever_the_steps():
    a = run_world(7, [2.0])
    assert len(a) > 1000
    assert np.array_equal(a, run_world(7, [2.0]))
    assert np.array_equal(a, run_world(7, [0.25] * 8))
    assert np.array_equal(a, run_world(7, [0.013, 0.5, 1.487]))
    assert not np.array_equal(a, run_world(8, [2.0]))


def test_explicit_seed_overrides_the_kernel_seed():
    def touched(kseed: int, seed: int) -> list[int]:
        k = boot(seed=kseed)
        pid, addr = proc(k)
        k.workloads.start(pid, pattern="uniform", rate=500, addr=addr, length=16 * MB, seed=seed)
        k.advance(1)
        return pages(k, pid, addr, 0).tolist()
    assert touched(1, 42) == touched(2, 42) != touched(1, 43)


def test_ticks_follow_the_clock_not_the_calls():
    k = boot()
    pid, addr = proc(k)
    k.workloads.start(pid, pattern="scan", rate=1000, addr=addr, length=16 * MB, tick=0.1)
    k.advance(0.05)                                       # tick 0 starts at 0: 100 accesses
    assert k.workloads.list()[0]["accesses"] == 100
    k.advance(0.04)                                       # no tick starts in (0.05, 0.09]
    assert k.workloads.list()[0]["accesses"] == 100
    k.advance(0.02)                                       # tick 1 at 0.1
    assert k.workloads.list()[0]["accesses"] == 200


def test_large_rates_are_batched_and_fast_enough():
    k = boot(mem=2 << 30)
    pid, addr = proc(k, 256 * MB)                         # 65536 pages
    execute(k, "touch", {"pid": pid, "addr": addr, "length": 256 * MB})
    t0 = k.now / 1e9
    k.workloads.start(pid, pattern="uniform", rate=3e6, addr=addr, length=256 * MB)
    k.advance(1)
    w = k.workloads.list()[0]
    assert w["accesses"] == 3_000_000 and w["faults"] == 0
    n = len(pages(k, pid, addr, t0))
    assert n == pytest.approx(65536 * (1 - math.exp(-3e6 / 65536)), abs=2)   # all of them, in effect


def test_a_failing_workload_does_not_stop_the_clock(monkeypatch):
    k = boot()
    pid, addr = proc(k)
    k.workloads.start(pid, pattern="uniform", rate=100, addr=addr, length=16 * MB)

    def broken(*a, **kw):
        raise AssertionError("a bug in the mm")
    monkeypatch.setattr(k, "access", broken)
    before = k.now
    k.advance(1)
    assert k.now == before + 10**9
    w = k.workloads.list()[0]
    assert w["state"] == "failed" and "a bug in the mm" in w["error"]


def test_meminfo_page_tables_follow_the_faults_a_tick_makes():
    # A workload's stores fault as the clock moves, adding PTE tables that
    # meminfo's PageTables sums over every mm; show_mem.mm_totals keeps
    # that sum per struct_generation, so those faults must move it.
    k = boot()
    pid, addr = proc(k, 64 * MB)
    k.workloads.start(pid, pattern="scan", rate=4096, addr=addr, length=64 * MB, write=1.0)
    before = show_mem.mm_totals(k)
    k.advance(4)  # 16,384 new pages: 64 MiB, 32 PMD-sized regions
    after = show_mem.mm_totals(k)
    assert after == show_mem._mm_totals(k)
    assert after.pgtables_bytes >= before.pgtables_bytes + 32 * P
