"""Swap (MADV_PAGEOUT, swap entries, swap-in, fork) and hugetlb (the pool,
MAP_HUGETLB, reservations, COW across fork) in the memory model, checked
against what Linux 6.18 showed on the reference machine (each expected
value says where it comes from: "6.18:" is an observation made with a
small test program, a 64 MiB swap file and vm.nr_hugepages=4).

Pages paged out by MADV_PAGEOUT stay in the swap cache until a later
reclaim pass frees them (k.shrink_swap_cache()): a fault then is minor and
finds the old PFN, a read fault keeps the slot (tests/unit/test_swap_cache.py
has the swap cache's own rules).
"""

from __future__ import annotations

import errno

import numpy as np
import pytest

from procsim import Kernel, KernelConfig
from procsim.commands import CommandError, execute
from procsim.kernel import MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_PAGEOUT, MREMAP_FIXED, MREMAP_MAYMOVE
from procsim.mm import stats
from procsim.mm.mm import MM_ANONPAGES, MM_SWAPENTS
from procsim.mm.vma import (MAP_ANONYMOUS, MAP_FIXED, MAP_HUGETLB, MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE,
                            MAP_SHARED, MNEMONICS)
from procsim.procfs import meminfo as meminfo_f
from procsim.procfs import vmstat
from procsim.procfs import pid as P
from procsim.procfs.context import Caller, Ctx
from invariants import check_hugetlb, check_smaps_swap_hugetlb, check_swap, check_world
import invariants

PAGE = 4096
HUGE = 2 << 20
PFN_MASK = (1 << 55) - 1
PRIVATE = MAP_PRIVATE | MAP_ANONYMOUS
SHARED = MAP_SHARED | MAP_ANONYMOUS


def boot(**kw) -> Kernel:
    kw.setdefault("nr_cpus", 2)
    return invariants.boot(**kw)


def check(k: Kernel) -> None:
    check_world(k)
    check_smaps_swap_hugetlb(k)


def smaps(k: Kernel, pid: int, addr: int) -> dict[str, int]:
    """The smaps values of the VMA at addr, in kB as printed."""
    mm = k.group(pid).mm
    s = stats.smaps_vma(mm, mm.vmas.lookup(addr))
    return {"Rss": s.resident >> 10, "Pss": s.pss >> 22, "Pss_Dirty": s.pss_dirty >> 22,
            "Shared_Clean": s.shared_clean >> 10, "Shared_Dirty": s.shared_dirty >> 10,
            "Private_Clean": s.private_clean >> 10, "Private_Dirty": s.private_dirty >> 10,
            "LazyFree": s.lazyfree >> 10, "AnonHugePages": s.anonymous_thp >> 10,
            "Shared_Hugetlb": s.shared_hugetlb >> 10, "Private_Hugetlb": s.private_hugetlb >> 10,
            "Swap": s.swap >> 10, "SwapPss": s.swap_pss >> 22}


def vmflags(k: Kernel, pid: int, addr: int) -> str:
    f = k.group(pid).mm.vmas.lookup(addr).flags
    return " ".join(MNEMONICS[b] for b in range(64) if f >> b & 1 and MNEMONICS.get(b))


def pagemap(k: Kernel, pid: int, addr: int, n: int = 1) -> list[int]:
    return [int(x) for x in stats.pagemap_entries(k.group(pid).mm, addr, addr + n * PAGE)]


def status(k: Kernel, pid: int) -> dict[str, str]:
    text = P.status(Ctx(k, Caller(1, 0, 0), k.tasks[pid])).decode()
    return dict(line.split(":\t", 1) for line in text.splitlines())


def meminfo(k: Kernel) -> dict[str, int]:
    text = meminfo_f.meminfo(Ctx(k, Caller(1, 0, 0))).decode()
    return {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}


def kpf(k: Kernel, pfn: int, n: int = 1) -> list[int]:
    return [int(x) for x in stats.kpageflags(k.mem, pfn, pfn + n)]


def kpc(k: Kernel, pfn: int, n: int = 1) -> list[int]:
    return [int(x) for x in stats.kpagecount(k.mem, pfn, pfn + n)]


KPF_DIRTY, KPF_ANON, KPF_SWAPCACHE, KPF_SWAPBACKED = 1 << 4, 1 << 12, 1 << 13, 1 << 14


# -- swap -----------------------------------------------------------------------


@pytest.fixture
def ks() -> Kernel:
    return boot(swap_bytes=64 << 20)


def test_pageout_then_fault_back(ks: Kernel) -> None:
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    mm = k.group(p).mm
    a = k.mmap(p, 8 * PAGE)
    k.touch(p, a, 8 * PAGE)
    old = [e & PFN_MASK for e in pagemap(k, p, a, 8)]
    anon, free = mm.rss[MM_ANONPAGES], k.mem.nr_free
    k.madvise(p, a, 4 * PAGE, MADV_PAGEOUT)
    # 6.18: the first pages paged out got slots 1, 2, 3, 4: 0x4000000000000020...
    assert pagemap(k, p, a, 5)[:4] == [(1 << 62) | (off << 5) for off in (1, 2, 3, 4)]
    assert pagemap(k, p, a + 4 * PAGE)[0] >> 56 == 0x81  # the rest is still present, exclusive
    # unprivileged readers see the flags only
    assert int(stats.pagemap_entries(mm, a, a + PAGE, show_pfn=False)[0]) == 1 << 62
    # 6.18: Swap 16 kB, SwapPss 16 kB, VmSwap 16 kB, SwapFree 65532 - 16
    assert smaps(k, p, a)["Swap"] == smaps(k, p, a)["SwapPss"] == 16
    assert status(k, p)["VmSwap"] == "      16 kB"
    assert meminfo(k)["SwapFree"] == 65532 - 16
    assert mm.rss[MM_ANONPAGES] == anon - 4 and mm.rss[MM_SWAPENTS] == 4
    # 6.18: the folios stay in the swap cache (SwapCached 16 kB, MemFree unchanged)
    assert k.mem.nr_free == free and meminfo(k)["SwapCached"] == 16
    check(k)
    # a later reclaim pass frees them: SwapCached 0, the slots stay
    assert k.shrink_swap_cache() == 4
    assert k.mem.nr_free == free + 4 and meminfo(k)["SwapCached"] == 0
    assert meminfo(k)["SwapFree"] == 65532 - 16
    check(k)
    t = k.task(p)
    minor, major = t.min_flt, t.maj_flt
    assert k.touch(p, a, 2 * PAGE, write=True) == 2
    assert (t.min_flt, t.maj_flt) == (minor, major + 2)  # swap-ins not in the cache are major faults
    new = pagemap(k, p, a, 2)
    assert all(e >> 56 == 0x81 for e in new)
    # 6.18, after a write fault: 0x400005838, dirty, anon, swap-backed, not in the swap cache
    f = kpf(k, new[0] & PFN_MASK)[0]
    assert f & (KPF_DIRTY | KPF_ANON | KPF_SWAPBACKED) == KPF_DIRTY | KPF_ANON | KPF_SWAPBACKED
    assert not f & KPF_SWAPCACHE
    # 6.18: the write fault freed the slot (SwapFree +4 kB per page)
    assert meminfo(k)["SwapFree"] == 65532 - 8 and smaps(k, p, a)["Swap"] == 8
    # a read fault keeps the slot, with the page read into the swap cache
    k.touch(p, a + 2 * PAGE, 2 * PAGE, write=False)
    assert meminfo(k)["SwapFree"] == 65532 - 8 and mm.rss[MM_SWAPENTS] == 0
    assert meminfo(k)["SwapCached"] == 8
    assert pagemap(k, p, a + 2 * PAGE)[0] >> 56 == 0x81
    v = vmstat.vmstat_values(k)
    assert v["pswpout"] == 4 and v["pswpin"] == 4 and v["pgmajfault"] == 4
    check(k)


def test_offsets_continue_after_frees(ks: Kernel) -> None:
    """6.18: later page-outs carried on past the slots an exited process freed."""
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 4 * PAGE)
    k.touch(p, a, 4 * PAGE)
    k.madvise(p, a, 4 * PAGE, MADV_PAGEOUT)
    k.munmap(p, a, 4 * PAGE)
    assert k.mem.swap.nr_free == k.mem.swap.pages
    b = k.mmap(p, PAGE)
    k.touch(p, b, PAGE)
    k.madvise(p, b, PAGE, MADV_PAGEOUT)
    assert pagemap(k, p, b)[0] == (1 << 62) | (5 << 5)
    check(k)


def test_fork_shares_swap_slots(ks: Kernel) -> None:
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 8 * PAGE)
    k.touch(p, a, 8 * PAGE)
    k.madvise(p, a, 2 * PAGE, MADV_PAGEOUT)
    free = meminfo(k)["SwapFree"]
    c = k.fork(p)
    # 6.18: parent and child both Swap 8 kB, SwapPss 4 kB; the child's VmSwap 8 kB
    for pid in (p, c):
        assert (smaps(k, pid, a)["Swap"], smaps(k, pid, a)["SwapPss"]) == (8, 4)
    assert status(k, c)["VmSwap"] == "       8 kB"
    assert list(k.mem.swap.count(np.array([1, 2]))) == [2, 2]
    assert meminfo(k)["SwapFree"] == free  # one slot, however many entries
    assert meminfo(k)["SwapCached"] == 8  # and one cached folio
    check(k)
    # 6.18: MADV_PAGEOUT skips the COW-shared pages (still present, not exclusive)
    k.madvise(p, a + 2 * PAGE, 2 * PAGE, MADV_PAGEOUT)
    assert all(e >> 56 == 0x80 for e in pagemap(k, p, a + 2 * PAGE, 2))
    # 6.18: the parent writes page 0: parent Swap 4 SwapPss 2, child Swap 8 SwapPss 6, SwapFree unchanged
    k.touch(p, a, PAGE)
    assert (smaps(k, p, a)["Swap"], smaps(k, p, a)["SwapPss"]) == (4, 2)
    assert (smaps(k, c, a)["Swap"], smaps(k, c, a)["SwapPss"]) == (8, 6)
    assert meminfo(k)["SwapFree"] == free
    check(k)
    # 6.18: the child exits: parent SwapPss 4, SwapFree +4 kB
    k.exit_group(c)
    assert (smaps(k, p, a)["Swap"], smaps(k, p, a)["SwapPss"]) == (4, 4)
    assert meminfo(k)["SwapFree"] == free + 4
    check(k)


def test_spec_worked_example(ks: Kernel) -> None:
    """Spec §4.1: a 19-page anon VMA in the parent after fork: Rss 48, Pss 30,
    Pss_Dirty 26, Shared_Clean 8, Shared_Dirty 28, Private_Dirty 12, Swap 8,
    SwapPss 4. Here the two clean shared pages are made clean by MADV_FREE
    (so LazyFree shows 8 kB, which the example does not list): the model's
    anonymous pages are dirty from their first write."""
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 19 * PAGE, 3, PRIVATE | MAP_FIXED, 0x600000000000)  # alone: no neighbour to merge with
    k.touch(p, a, 14 * PAGE)
    k.madvise(p, a, 2 * PAGE, MADV_PAGEOUT)                # pages 0-1: swapped
    k.madvise(p, a + 2 * PAGE, 2 * PAGE, MADV_FREE)        # pages 2-3: clean
    k.fork(p)
    k.touch(p, a + 11 * PAGE, 3 * PAGE)                    # pages 11-13: COW copies
    s = smaps(k, p, a)
    assert {n: s[n] for n in ("Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                              "Private_Dirty", "Swap", "SwapPss")} == dict(
        Rss=48, Pss=30, Pss_Dirty=26, Shared_Clean=8, Shared_Dirty=28, Private_Clean=0, Private_Dirty=12,
        Swap=8, SwapPss=4)
    check(k)


def test_pageout_refusals_and_skips(ks: Kernel) -> None:
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    # 6.18: EINVAL on an mlocked range
    a = k.mmap(p, 2 * PAGE)
    k.touch(p, a, 2 * PAGE)
    k.mlock(p, a, 2 * PAGE)
    with pytest.raises(OSError) as e:
        k.madvise(p, a, 2 * PAGE, MADV_PAGEOUT)
    assert e.value.errno == errno.EINVAL
    # 6.18: clean MADV_FREE pages are dropped (pagemap 0, no slot); a re-dirtied one stays
    b = k.mmap(p, 4 * PAGE)
    k.touch(p, b, 4 * PAGE)
    k.madvise(p, b, 4 * PAGE, MADV_FREE)
    k.touch(p, b + 3 * PAGE, PAGE)
    used = k.mem.swap.inuse_pages
    k.madvise(p, b, 4 * PAGE, MADV_PAGEOUT)
    pm = pagemap(k, p, b, 4)
    assert pm[:3] == [0, 0, 0] and pm[3] >> 56 == 0x81 and k.mem.swap.inuse_pages == used
    # 6.18: MADV_FREE on swap entries frees them (SwapFree +8 kB, pagemap 0)
    c = k.mmap(p, 4 * PAGE, 3, PRIVATE | MAP_NORESERVE)  # not merged with b
    k.touch(p, c, 4 * PAGE)
    k.madvise(p, c, 4 * PAGE, MADV_PAGEOUT)
    free = meminfo(k)["SwapFree"]
    k.madvise(p, c, 2 * PAGE, MADV_FREE)
    assert pagemap(k, p, c, 2) == [0, 0] and meminfo(k)["SwapFree"] == free + 8
    # 6.18: the zero page stays; a PROT_NONE anonymous page is swapped
    z = k.mmap(p, PAGE)
    k.touch(p, z, PAGE, write=False)
    n = k.mmap(p, PAGE, 3, PRIVATE | MAP_NORESERVE)
    k.touch(p, n, PAGE)
    k.mprotect(p, n, PAGE, 0)
    k.madvise(p, z, PAGE, MADV_PAGEOUT)
    k.madvise(p, n, PAGE, MADV_PAGEOUT)
    assert pagemap(k, p, z)[0] >> 56 == 0x80 and pagemap(k, p, n)[0] >> 62 == 1
    # shared anonymous memory is not paged out (simplification: 6.18 swaps shmem too)
    s = k.mmap(p, 2 * PAGE, 3, SHARED)
    k.touch(p, s, 2 * PAGE)
    k.madvise(p, s, 2 * PAGE, MADV_PAGEOUT)
    assert all(e >> 63 for e in pagemap(k, p, s, 2))
    check(k)


def test_pageout_splits_an_exclusive_thp(ks: Kernel) -> None:
    """6.18: a PMD-mapped THP paged out whole fell back to small pages
    (thp_swpout_fallback 1, thp_split_page 1, thp_split_pmd 1, pswpout 512)."""
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    raw = k.mmap(p, 6 << 20)
    a = (raw + HUGE - 1) & ~(HUGE - 1)
    k.madvise(p, a, 4 << 20, MADV_HUGEPAGE)
    k.touch(p, a, 4 << 20)
    assert smaps(k, p, a)["AnonHugePages"] == 4096
    split_pmds, split_folios = k.mem.split_pmds, k.mem.split_folios
    k.madvise(p, a, HUGE, MADV_PAGEOUT)
    assert (k.mem.split_pmds, k.mem.split_folios) == (split_pmds + 1, split_folios + 1)
    pm = pagemap(k, p, a, 512)
    assert all(e >> 62 == 1 for e in pm)
    s = smaps(k, p, a)
    assert s["Swap"] == 2048 and s["AnonHugePages"] == 2048  # the other THP is untouched
    # part of the second one: split, 8 pages out
    k.madvise(p, a + HUGE, 8 * PAGE, MADV_PAGEOUT)
    s = smaps(k, p, a)
    assert s["Swap"] == 2080 and s["AnonHugePages"] == 0 and s["Rss"] == 2048 - 32
    check(k)


def test_pageout_skips_a_shared_thp(ks: Kernel) -> None:
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    raw = k.mmap(p, 4 << 20)
    a = (raw + HUGE - 1) & ~(HUGE - 1)
    k.madvise(p, a, HUGE, MADV_HUGEPAGE)
    k.touch(p, a, HUGE)
    k.fork(p)
    k.madvise(p, a, HUGE, MADV_PAGEOUT)
    assert smaps(k, p, a)["AnonHugePages"] == 2048 and k.mem.swap.inuse_pages == 0
    check(k)


def test_a_full_swap_area_leaves_the_rest_resident() -> None:
    k = boot(swap_bytes=64 * PAGE)  # 63 usable slots
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 100 * PAGE)
    k.touch(p, a, 100 * PAGE)
    k.madvise(p, a, 100 * PAGE, MADV_PAGEOUT)  # no error
    assert k.mem.swap.nr_free == 0 and meminfo(k)["SwapFree"] == 0
    pm = pagemap(k, p, a, 100)
    assert sum(e >> 62 == 1 for e in pm) == 63 and sum(e >> 63 for e in pm) == 37
    check(k)


def test_no_swap_device() -> None:
    k = boot()
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 4 * PAGE)
    k.touch(p, a, 4 * PAGE)
    k.madvise(p, a, 4 * PAGE, MADV_PAGEOUT)
    assert all(e >> 63 for e in pagemap(k, p, a, 4))
    assert meminfo(k)["SwapTotal"] == meminfo(k)["SwapFree"] == 0
    check(k)


def test_swap_entries_move_and_go(ks: Kernel) -> None:
    """mremap moves swap entries; munmap and exit free their slots."""
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    mm = k.group(p).mm
    a = k.mmap(p, 8 * PAGE)
    k.touch(p, a, 8 * PAGE)
    k.madvise(p, a, 8 * PAGE, MADV_PAGEOUT)
    b = k.mremap(p, a, 8 * PAGE, 16 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, a + (64 << 20))
    assert mm.swap_entries(b, b + 8 * PAGE) == 8 and mm.rss[MM_SWAPENTS] == 8
    assert pagemap(k, p, b)[0] == (1 << 62) | (1 << 5)
    check(k)
    k.munmap(p, b, 4 * PAGE)
    assert k.mem.swap.inuse_pages == 4 and mm.rss[MM_SWAPENTS] == 4
    k.fork(p)
    k.exit_group(p)
    assert k.mem.swap.inuse_pages == 4  # the child still has them
    check(k)


def test_swapped_pages_come_back_on_mlock(ks: Kernel) -> None:
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 4 * PAGE)
    k.touch(p, a, 4 * PAGE)
    k.madvise(p, a, 4 * PAGE, MADV_PAGEOUT)
    major = k.task(p).maj_flt
    k.mlock(p, a, 4 * PAGE)  # populate swaps them in (from the swap cache: minor faults)
    assert k.task(p).maj_flt == major and k.mem.swap.inuse_pages == 0
    assert k.mem.swap_cache.nr_swapcached == 0
    check(k)
    # once reclaim has freed the cache, they are read back (major faults)
    k.mlock(p, a, 4 * PAGE, False)
    k.madvise(p, a, 4 * PAGE, MADV_PAGEOUT)
    assert k.shrink_swap_cache() == 4
    k.mlock(p, a, 4 * PAGE)
    assert k.task(p).maj_flt == major + 4 and k.mem.swap.inuse_pages == 0
    check(k)


# -- hugetlb ------------------------------------------------------------------------


@pytest.fixture
def kh() -> Kernel:
    return boot(hugepages=4)


def test_meminfo_hugetlb_and_swap_lines() -> None:
    plain = boot(mem_bytes=2 << 30)
    k = boot(mem_bytes=2 << 30, hugepages=4, swap_bytes=64 << 20)
    m0, m = meminfo(plain), meminfo(k)
    # 6.18 after echo 4 > nr_hugepages: Total 4, Free 4, Rsvd 0, Surp 0, Hugetlb 8192 kB
    assert [m[f"HugePages_{n}"] for n in ("Total", "Free", "Rsvd", "Surp")] == [4, 4, 0, 0]
    assert m["Hugetlb"] == 8192 and m["Hugepagesize"] == 2048
    # MemTotal unchanged, MemFree 8192 kB lower
    assert m["MemTotal"] == m0["MemTotal"] and m0["MemFree"] - m["MemFree"] == 8192
    # CommitLimit: (MemTotal - pool) * 50 % + SwapTotal (6.18: -4096 kB with the pool)
    assert m["CommitLimit"] == (m["MemTotal"] // 4 - 2048) * 50 // 100 * 4 + 65532
    assert m["SwapTotal"] == m["SwapFree"] == 65532
    parts = (m["MemFree"] + m["Buffers"] + m["Cached"] + m["AnonPages"] + m["Slab"] + m["PageTables"]
             + m["Percpu"] + m["VmallocUsed"] + m["Hugetlb"])
    assert parts == m["MemTotal"]
    text = meminfo_f.meminfo(Ctx(k, Caller(1, 0, 0))).decode()
    assert "HugePages_Total:       4\nHugePages_Free:        4\n" in text


def test_hugetlb_private(kh: Kernel) -> None:
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    mm = k.group(p).mm
    st0 = status(k, p)
    committed = meminfo(k)["Committed_AS"]
    a = k.mmap(p, 3 << 20, 3, PRIVATE | MAP_HUGETLB)
    v = mm.vmas.lookup(a)
    # 6.18: 3 MiB became a 2 MiB-aligned 4 MiB VMA `rw-p 00000000 00:11 <ino> /anon_hugepage (deleted)`
    assert a % HUGE == 0 and v.end - v.start == 4 << 20 and v.pgoff == 0
    assert (v.perms(), v.file.dev, v.file.d_path()) == ("rw-p", (0, 0x11), "/anon_hugepage (deleted)")
    assert vmflags(k, p, a) == "rd wr mr mw me de ht" and v.is_hugetlb
    m = meminfo(k)
    assert (m["HugePages_Free"], m["HugePages_Rsvd"]) == (4, 2)
    assert m["Committed_AS"] == committed  # never VM_ACCOUNT
    # 6.18: VmSize and VmData +4096 kB
    assert int(status(k, p)["VmData"].split()[0]) - int(st0["VmData"].split()[0]) == 4096
    k.touch(p, a, PAGE)
    m = meminfo(k)
    # 6.18: Free 3, Rsvd 1; Private_Hugetlb 2048, HugetlbPages 2048 kB, VmRSS unchanged
    assert (m["HugePages_Free"], m["HugePages_Rsvd"]) == (3, 1)
    s = smaps(k, p, a)
    assert (s["Rss"], s["Pss"], s["Private_Hugetlb"], s["Shared_Hugetlb"]) == (0, 0, 2048, 0)
    st = status(k, p)
    assert st["HugetlbPages"] == "    2048 kB" and st["VmRSS"] == st0["VmRSS"]
    # 6.18: pagemap 0x81... with PFN head + index; kpageflags 0x400029808 / 0x400031808; kpagecount 1
    pm = pagemap(k, p, a, 512)
    head = pm[0] & PFN_MASK
    assert all(e >> 56 == 0x81 for e in pm)
    assert [e & PFN_MASK for e in pm] == list(range(head, head + 512)) and head % 512 == 0
    assert pagemap(k, p, a + HUGE)[0] == 0
    assert kpf(k, head, 2) == [0x400029808, 0x400031808] and kpf(k, head + 511) == [0x400031808]
    assert kpc(k, head, 2) == [1, 1]
    # a read fault on the second page takes the last reservation (6.18: Free 2, Rsvd 0)
    k.touch(p, a + HUGE, PAGE, write=False)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (2, 0)
    check(k)
    k.munmap(p, a, 4 << 20)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (4, 0)
    assert status(k, p)["HugetlbPages"] == "       0 kB"
    check(k)


def test_hugetlb_shared_and_fork(kh: Kernel) -> None:
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    s = k.mmap(p, 1 << 20, 3, SHARED | MAP_HUGETLB)
    # 6.18: `rw-s`, VmFlags rd wr sh mr mw me ms de ht, another inode on 00:11
    assert vmflags(k, p, s) == "rd wr sh mr mw me ms de ht"
    assert k.group(p).mm.vmas.lookup(s).end - s == HUGE
    k.touch(p, s, PAGE)
    pm = pagemap(k, p, s)[0]
    head = pm & PFN_MASK
    # 6.18: 0xa1... (present, file, exclusive); kpageflags head 0x28818, tail 0x30818
    assert pm >> 56 == 0xa1 and kpf(k, head, 2) == [0x28818, 0x30818]
    assert smaps(k, p, s)["Private_Hugetlb"] == 2048
    c = k.fork(p)
    # 6.18: the child does not get the shared page at fork (pagemap 0, no Hugetlb)
    assert pagemap(k, c, s)[0] == 0 and smaps(k, c, s)["Private_Hugetlb"] == 0
    assert status(k, c)["HugetlbPages"] == "       0 kB"
    k.touch(c, s, PAGE)
    # 6.18: both Shared_Hugetlb 2048; pagemap 0xa0... (not exclusive); kpagecount 2
    for pid in (p, c):
        assert (smaps(k, pid, s)["Shared_Hugetlb"], smaps(k, pid, s)["Private_Hugetlb"]) == (2048, 0)
        assert pagemap(k, pid, s)[0] >> 56 == 0xa0
    assert kpc(k, head) == [2] and (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (3, 0)
    check(k)
    # 6.18: the parent unmaps: nothing returns; the child unmaps too: the page does
    k.munmap(p, s, HUGE)
    assert meminfo(k)["HugePages_Free"] == 3
    k.munmap(c, s, HUGE)
    assert meminfo(k)["HugePages_Free"] == 4
    check(k)


def test_hugetlb_private_fork_and_cow(kh: Kernel) -> None:
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 2 * HUGE, 3, PRIVATE | MAP_HUGETLB)
    k.touch(p, a, 2 * HUGE)
    head = pagemap(k, p, a)[0] & PFN_MASK
    c = k.fork(p)
    # 6.18: both Shared_Hugetlb 4096, the child's HugetlbPages 4096 kB; kpagecount 2;
    # kpageflags 0x29818 (dirty, no longer anon-exclusive); pagemap 0x80...
    for pid in (p, c):
        assert (smaps(k, pid, a)["Shared_Hugetlb"], smaps(k, pid, a)["Private_Hugetlb"]) == (4096, 0)
        assert pagemap(k, pid, a)[0] == (0x80 << 56) | head
    assert status(k, c)["HugetlbPages"] == "    4096 kB"
    assert kpc(k, head) == [2] and kpf(k, head, 2) == [0x29818, 0x31818]
    check(k)
    # 6.18: the parent writes its first page: a copy (Free 2 -> 1), Shared 2048 + Private 2048
    free = meminfo(k)["HugePages_Free"]
    k.touch(p, a, PAGE)
    assert meminfo(k)["HugePages_Free"] == free - 1
    assert (smaps(k, p, a)["Shared_Hugetlb"], smaps(k, p, a)["Private_Hugetlb"]) == (2048, 2048)
    assert pagemap(k, p, a)[0] & PFN_MASK != head
    check(k)
    # 6.18: the child exits: the parent's pages are private again, the old copy back in the pool
    k.exit_group(c)
    assert (smaps(k, p, a)["Shared_Hugetlb"], smaps(k, p, a)["Private_Hugetlb"]) == (0, 4096)
    assert meminfo(k)["HugePages_Free"] == free
    # the remaining page is mapped once: a write reuses it (no copy)
    k.touch(p, a + HUGE, PAGE)
    assert meminfo(k)["HugePages_Free"] == free
    check(k)


def test_hugetlb_sigbus_without_a_free_unreserved_page(kh: Kernel) -> None:
    """6.18 (Free 2, Rsvd 2): a fork child's fault on an untouched private page
    and its COW of a touched one got SIGBUS; a read was fine; a shared
    mapping's reserved page was fine."""
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    s = k.mmap(p, 2 * HUGE, 3, SHARED | MAP_HUGETLB)
    k.touch(p, s, PAGE)
    a = k.mmap(p, 2 * HUGE, 3, PRIVATE | MAP_HUGETLB)
    k.touch(p, a, PAGE)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (2, 2)
    c = k.fork(p)
    for addr in (a + HUGE, a):
        with pytest.raises(OSError) as e:
            k.touch(c, addr, PAGE)
        assert e.value.errno == errno.EFAULT
    k.touch(c, a, PAGE, write=False)
    k.touch(c, s + HUGE, PAGE)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (1, 1)
    check(k)


def test_hugetlb_reservations_and_enomem(kh: Kernel) -> None:
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    # 6.18: 5 pages with 4 in the pool: ENOMEM, private and shared
    for flags in (PRIVATE, SHARED):
        with pytest.raises(OSError) as e:
            k.mmap(p, 5 * HUGE, 3, flags | MAP_HUGETLB)
        assert e.value.errno == errno.ENOMEM
    # MAP_NORESERVE is accepted (VmFlags `... de nr ht`) and reserves nothing;
    # 6.18: the fifth page touched got SIGBUS
    n = k.mmap(p, 5 * HUGE, 3, PRIVATE | MAP_HUGETLB | MAP_NORESERVE)
    assert vmflags(k, p, n) == "rd wr mr mw me de nr ht" and meminfo(k)["HugePages_Rsvd"] == 0
    k.touch(p, n, 4 * HUGE)
    with pytest.raises(OSError) as e:
        k.touch(p, n + 4 * HUGE, PAGE)
    assert e.value.errno == errno.EFAULT
    k.munmap(p, n, 5 * HUGE)
    # 6.18: 3 private, 1 touched: Rsvd 2; unmap untouched p2: Rsvd 1; unmap p0: Free 4; the rest: Rsvd 0
    a = k.mmap(p, 3 * HUGE, 3, PRIVATE | MAP_HUGETLB)
    k.touch(p, a, PAGE)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (3, 2)
    k.munmap(p, a + 2 * HUGE, HUGE)
    assert meminfo(k)["HugePages_Rsvd"] == 1
    k.munmap(p, a, HUGE)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (4, 1)
    k.munmap(p, a + HUGE, HUGE)
    assert meminfo(k)["HugePages_Rsvd"] == 0
    # 6.18: 4 pages reserved, one more: ENOMEM
    k.mmap(p, 4 * HUGE, 3, PRIVATE | MAP_HUGETLB)
    with pytest.raises(OSError):
        k.mmap(p, HUGE, 3, PRIVATE | MAP_HUGETLB)
    check(k)


def test_hugetlb_alignment_rules(kh: Kernel) -> None:
    """What 6.18 refused with EINVAL and what it accepted."""
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    mm = k.group(p).mm
    a = k.mmap(p, 4 * HUGE, 3, PRIVATE | MAP_HUGETLB)

    def einval(fn, *args):
        with pytest.raises(OSError) as e:
            fn(*args)
        assert e.value.errno == errno.EINVAL

    einval(k.munmap, p, a + PAGE, PAGE)
    einval(k.munmap, p, a, PAGE)  # aligned start, the end inside a huge page
    einval(k.mprotect, p, a + HUGE + PAGE, PAGE, 1)
    einval(k.mprotect, p, a + HUGE, PAGE, 1)
    k.mprotect(p, a + HUGE + PAGE, PAGE, 3)  # no change, no split: accepted
    einval(k.madvise, p, a + 2 * HUGE + PAGE, PAGE, MADV_DONTNEED)
    einval(k.madvise, p, a, HUGE, MADV_PAGEOUT)
    einval(k.madvise, p, a, HUGE, MADV_FREE)
    einval(k.mmap, p, HUGE, 3, PRIVATE | MAP_HUGETLB | MAP_FIXED, a + PAGE)
    einval(k.mremap, p, a + 3 * HUGE, HUGE, 2 * HUGE, MREMAP_MAYMOVE)  # no growing
    # 2 MiB mprotect splits; the parts never merge back (VM_DONTEXPAND)
    k.mprotect(p, a + HUGE, HUGE, 1)
    k.mprotect(p, a + HUGE, HUGE, 3)
    assert len([v for v in mm.vmas if v.is_hugetlb]) == 3
    # DONTNEED of 4 KiB at an aligned start drops the whole page and gives the
    # reservation back (6.18: Free 3 -> 4, Rsvd 3 -> 4)
    k.touch(p, a + 2 * HUGE, PAGE)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (3, 3)
    k.madvise(p, a + 2 * HUGE, PAGE, MADV_DONTNEED)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (4, 4)
    assert pagemap(k, p, a + 2 * HUGE)[0] == 0
    # MADV_HUGEPAGE takes (6.18: `... de ht hg`); mlock does not lock (VmLck 0,
    # no `lo`) but populates (6.18: Free 4 -> 3, Rsvd 2 -> 1, HugetlbPages 2048 kB)
    k.madvise(p, a + 2 * HUGE, HUGE, MADV_HUGEPAGE)
    assert vmflags(k, p, a + 2 * HUGE) == "rd wr mr mw me de ht hg"
    k.mlock(p, a + 2 * HUGE + PAGE, PAGE)
    assert status(k, p)["VmLck"] == "       0 kB" and "lo" not in vmflags(k, p, a + 2 * HUGE)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (3, 3)
    assert status(k, p)["HugetlbPages"] == "    2048 kB"
    # mremap: a move works, shrinking works
    k.touch(p, a + 3 * HUGE, PAGE)
    head = pagemap(k, p, a + 3 * HUGE)[0] & PFN_MASK
    b = k.mremap(p, a + 3 * HUGE, HUGE, HUGE, MREMAP_MAYMOVE | MREMAP_FIXED, a + (64 << 20))
    assert pagemap(k, p, b)[0] & PFN_MASK == head and mm.hugetlb_usage == 2 * 512
    check(k)
    assert k.mremap(p, a + HUGE, HUGE, PAGE) == a + HUGE  # rounded up to 2 MiB: nothing to do
    assert mm.vmas.lookup(a + HUGE).end == a + 2 * HUGE
    k.exit_group(p)
    assert (meminfo(k)["HugePages_Free"], meminfo(k)["HugePages_Rsvd"]) == (4, 0)
    check(k)


def test_hugetlb_mremap_shrinks(kh: Kernel) -> None:
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 2 * HUGE, 3, PRIVATE | MAP_HUGETLB)
    assert k.mremap(p, a, 2 * HUGE, PAGE) == a  # the new length rounds up to one huge page
    assert k.group(p).mm.vmas.lookup(a).end == a + HUGE and meminfo(k)["HugePages_Rsvd"] == 1
    check(k)


def test_hugetlb_map_locked_populates(kh: Kernel) -> None:
    """6.18: MAP_LOCKED|MAP_HUGETLB: the page is there, VmLck 0, no `lo`."""
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, HUGE, 3, PRIVATE | MAP_HUGETLB | MAP_LOCKED)
    assert vmflags(k, p, a) == "rd wr mr mw me de ht"
    assert status(k, p)["VmLck"] == "       0 kB" and status(k, p)["HugetlbPages"] == "    2048 kB"
    assert meminfo(k)["HugePages_Free"] == 3
    check(k)


def test_kpageflags_of_pool_pages() -> None:
    """6.18: fresh pool pages 0x28000 (head) / 0x30000 (tail); used and freed
    0x28018 / 0x30018; kpagecount 0."""
    k = boot(hugepages=1)
    head = k.mem.hugetlb._free[0]
    assert kpf(k, head, 2) == [0x28000, 0x30000] and kpc(k, head) == [0]
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, HUGE, 3, PRIVATE | MAP_HUGETLB)
    k.touch(p, a, PAGE)
    k.munmap(p, a, HUGE)
    assert kpf(k, head, 2) == [0x28018, 0x30018] and kpc(k, head) == [0]


def test_nr_hugepages_resize(kh: Kernel) -> None:
    k = kh
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, HUGE, 3, PRIVATE | MAP_HUGETLB)
    k.touch(p, a, PAGE)
    k.mmap(p, HUGE, 3, PRIVATE | MAP_HUGETLB)  # one reserved
    free = meminfo(k)["MemFree"]
    assert k.set_nr_hugepages(0) == 2  # in use and reserved pages stay
    assert meminfo(k)["MemFree"] - free == 2 * 2048
    assert k.set_nr_hugepages(6) == 6
    assert (meminfo(k)["HugePages_Total"], meminfo(k)["HugePages_Free"]) == (6, 5)
    check(k)


def test_config_validation() -> None:
    for bad in (-1, True, "4"):
        with pytest.raises(ValueError):
            KernelConfig(hugepages=bad)
    with pytest.raises(ValueError):
        KernelConfig(mem_bytes=1 << 30, hugepages=512)  # 1 GiB of pool: nothing left for the kernel
    with pytest.raises(ValueError):
        KernelConfig(swap_bytes=-4096)
    assert KernelConfig(swap_bytes=64 << 20, hugepages=8).hugepages == 8


# -- control commands and scenarios -------------------------------------------------


def test_commands(ks: Kernel) -> None:
    k = ks
    p = k.spawn(["/usr/bin/bash"])
    assert execute(k, "hugepages", {"nr": 2}) == {"total": 2, "free": 2, "rsvd": 0, "surp": 0, "size_kb": 2048}
    h = execute(k, "mmap", {"pid": p, "length": "3M", "hugetlb": True})
    assert h % HUGE == 0 and execute(k, "hugepages", {})["rsvd"] == 2
    a = execute(k, "mmap", {"pid": p, "length": "16K"})
    execute(k, "touch", {"pid": p, "addr": a, "length": "16K"})
    execute(k, "madvise", {"pid": p, "addr": a, "length": "16K", "advice": "pageout"})
    assert execute(k, "swap", {})["used"] == 4 and execute(k, "swap", {})["cached"] == 4
    vm = {v["start"]: v for v in execute(k, "vmas", {"pid": p})}
    assert vm[a]["swap_pages"] == 4 and vm[h]["hugetlb_pages"] == 0
    execute(k, "touch", {"pid": p, "addr": a, "length": "4K"})
    assert execute(k, "task", {"pid": p})["maj_flt"] == 0  # found in the swap cache
    assert execute(k, "shrink_swapcache", {}) == 3 and execute(k, "swap", {})["cached"] == 0
    execute(k, "touch", {"pid": p, "addr": a + PAGE, "length": "4K"})
    assert execute(k, "task", {"pid": p})["maj_flt"] == 1
    for args in ({"pid": p, "length": "2M", "hugetlb": "yes"}, {"pid": p, "length": "2M", "hugetlb": 2},
                 {"pid": p, "length": "2M", "hugetlb": True, "path": "/srv/x"}):
        with pytest.raises(CommandError) as e:
            execute(k, "mmap", args)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(CommandError) as e:
        execute(k, "madvise", {"pid": p, "addr": h, "length": "2M", "advice": "pageout"})
    assert e.value.errno == errno.EINVAL
    with pytest.raises(CommandError) as e:
        execute(k, "hugepages", {"nr": -1})
    assert e.value.errno == errno.EINVAL
    check(k)


def test_scenario_keys() -> None:
    from procsim.scenario import build
    k = build({"machine": {"nr_cpus": 2, "mem": "1G", "swap": "64M", "hugepages": 3},
               "process": [{"name": "db", "argv": ["/usr/bin/db"],
                            "maps": [{"name": "buf", "size": "3M", "hugetlb": True, "touch": "all"},
                                     {"name": "heap", "size": "1M", "touch": "all"}],
                            "ops": [{"op": "madvise", "addr": "heap", "length": "64K", "advice": "pageout"}]}]})
    m = meminfo(k)
    assert (m["HugePages_Total"], m["HugePages_Free"], m["HugePages_Rsvd"]) == (3, 1, 0)
    assert m["SwapTotal"] - m["SwapFree"] == 64
    check(k)


def test_map_fixed_file_over_part_of_a_huge_page_changes_nothing():
    """MAP_FIXED of a file over 16 KiB inside a hugetlb VMA would split a huge
    page: EINVAL, and the file is not even created (found by the state
    machine: the inode used to be made, and grown, first)."""
    k = boot(hugepages=2)
    pid = k.spawn(["app"])
    h = k.mmap(pid, 2 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    with pytest.raises(OSError) as e:
        k.mmap(pid, 16 << 10, 3, MAP_SHARED | MAP_FIXED, addr=h + (16 << 10), path="/srv/new")
    assert e.value.errno == errno.EINVAL
    assert "/srv/new" not in k.vfs.files
    check(k)
