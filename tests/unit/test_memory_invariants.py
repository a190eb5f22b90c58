"""The mapcount-model behaviours of seed-mechanisms §5.7 (1-6) that
test_mapcount_models.py and test_folio.py leave open, end to end: syscalls
in, the rendered /proc files (pagemap, kpagecount, smaps, meminfo) out,
under both CONFIG_PAGE_MAPCOUNT ("page") and CONFIG_NO_PAGE_MAPCOUNT
("no_page"). Every expected number comes from the spec's formulas:

* precise page mapcount = the page's PTE mappings + its folio's PMD mappings;
* average page mapcount (512-page folio, total mapcount m, PMD mappings e):
  m <= e -> e, else max(floor((m - e + 256) / 512) + e, 1);
* Pss per page = 4096 << 12 if the mapcount is < 2, else (4096 << 12) // mapcount;
* pagemap bit 56 = precise mapcount == 1 / not folio_maybe_mapped_shared().

Each test ends with the state machine's invariants (check_world, check_smaps,
check_pagemap). The last two guard model bugs they found (the vDSO's Pss
divisor, the width of two smaps lines).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from procsim.kernel import MADV_HUGEPAGE
from procsim.mm.pagetable import PMD_SHIFT, PMD_SIZE
from procsim.mm.vma import MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE
from procsim.mm import stats
from procsim.procfs import meminfo as meminfo_f
from procsim.procfs import pagemap as PM
from procsim.procfs import smaps as SM
from procsim.procfs.context import Ctx
from invariants import (ROOT_CALLER, boot, check_pagemap, check_smaps, check_world, kb_lines, mm_ctx,
                                       read_pagemap)

KiB, MiB = 1 << 10, 1 << 20
PAGE = 4096
FULL = PAGE << stats.PSS_SHIFT  # one page's Pss in smaps' fixed point
EXCL = np.uint64(stats.PM_MMAP_EXCLUSIVE)
PFN = np.uint64(stats.PM_PFRAME_MASK)
MODELS = ["page", "no_page"]
PROT_READ, PROT_RW = 1, 3


def check_all(k):
    maps = check_world(k)
    check_smaps(k, maps)
    check_pagemap(k, maps)


def world(model):
    k = boot(mapcount_model=model)
    k.spawn(["/usr/bin/bash"], pid=100)
    return k


def thp(k, pid=100):
    """A written 2 MiB THP mapped by a PMD in pid; its address."""
    a = k.mmap(pid, 2 * PMD_SIZE)
    a = (a + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    k.madvise(pid, a, PMD_SIZE, MADV_HUGEPAGE)
    k.touch(pid, a, PMD_SIZE)
    assert (a >> PMD_SHIFT) in k.task(pid).mm.pgtable.huge
    return a


def split_pmd(k, pid, a):
    """mprotect() one page read-only and back: the PMD becomes 512 PTEs,
    every page still mapped (the VMA merges back)."""
    k.mprotect(pid, a + 64 * PAGE, PAGE, PROT_READ)
    k.mprotect(pid, a + 64 * PAGE, PAGE, PROT_RW)
    assert (a >> PMD_SHIFT) not in k.task(pid).mm.pgtable.huge


def pagemap(k, pid, a, npages):
    return read_pagemap(mm_ctx(k, k.task(pid).mm), a, a + npages * PAGE)


def pfns_of(k, pid, a, npages):
    return (pagemap(k, pid, a, npages) & PFN).astype(np.int64)


def kpagecount(k, pfns):
    """/proc/kpagecount entries of `pfns`, each read as a tool does."""
    ctx = Ctx(k, ROOT_CALLER)
    return np.array([int(np.frombuffer(PM.kpagecount(ctx, 8, int(p) * 8), "<u8")[0]) for p in pfns])


def usage(k, pid, lo, hi):
    """smaps numbers (bytes, Pss fixed point) summed over the VMAs that
    overlap [lo, hi), as the smaps renderer computes them."""
    mm = k.task(pid).mm
    out = stats.MemSizeStats()
    for st in stats.smaps_vmas(mm, mm.vmas.overlapping(lo, hi), k.vdso_mapcount):
        out.add(st)
    return out


def private(st):
    return st.private_clean + st.private_dirty


def shared(st):
    return st.shared_clean + st.shared_dirty


def meminfo(k):
    return kb_lines(meminfo_f.meminfo(Ctx(k, ROOT_CALLER)).decode())


# -- §5.7.1 ------------------------------------------------------------------------------


def test_pmd_thp_is_exclusive_with_kpagecount_one_without_page_mapcount():
    """§5.7.1 under NO_PAGE_MAPCOUNT (test_folio covers PAGE_MAPCOUNT): one
    PMD mapping, m = e = 1 -> average 1; a single mm -> not maybe shared."""
    k = world("no_page")
    a = thp(k)
    pm = pagemap(k, 100, a, 512)
    assert (pm & EXCL != 0).all()
    pfn = (pm & PFN).astype(np.int64)
    assert pfn[0] % 512 == 0 and (pfn == pfn[0] + np.arange(512)).all()
    assert (kpagecount(k, pfn) == 1).all()
    st = usage(k, 100, a, a + PMD_SIZE)
    assert private(st) == 2 * MiB and shared(st) == 0 and st.pss == 2 * MiB << stats.PSS_SHIFT
    assert st.anonymous_thp == 2 * MiB
    check_all(k)


# -- §5.7.2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_fork_child_maps_the_thp_by_ptes_parent_by_pmd(model):
    """§5.7.2, the PTE case: the child's PMD is split, the parent keeps its
    PMD. Per page: precise = 1 PTE + 1 PMD = 2; average: m = 512 + 1,
    e = 1 -> floor((512 + 256) / 512) + 1 = 2. So kpagecount 2, bit 56
    clear in both processes, all 2 MiB shared and Pss 1 MiB each."""
    k = world(model)
    a = thp(k)
    child = k.fork(100)
    split_pmd(k, child, a)
    assert (a >> PMD_SHIFT) in k.task(100).mm.pgtable.huge
    pfn = pfns_of(k, 100, a, 512)
    assert (pfns_of(k, child, a, 512) == pfn).all()
    assert (kpagecount(k, pfn) == 2).all()
    for pid in (100, child):
        assert not (pagemap(k, pid, a, 512) & EXCL).any(), pid
        st = usage(k, pid, a, a + PMD_SIZE)
        assert shared(st) == 2 * MiB and private(st) == 0, pid
        assert st.pss == 512 * (FULL // 2) == MiB << stats.PSS_SHIFT, pid
    assert usage(k, 100, a, a + PMD_SIZE).anonymous_thp == 2 * MiB
    assert usage(k, child, a, a + PMD_SIZE).anonymous_thp == 0  # PTE-mapped: not AnonHugePages
    check_all(k)


# -- §5.7.3 ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_child_exit_makes_a_pte_mapped_thp_exclusive_and_a_write_reuses_it(model):
    """§5.7.3 with the parent's THP PTE-mapped: after the child exits the
    parent's MM-ID slot holds every mapping again (flag cleared): bit 56
    set, Private 2 MiB, Pss 2 MiB, kpagecount 1 (average (512 + 256) // 512);
    a write fault on a read-only PTE of it reuses the folio (§5.1: large
    mapcount 512 > 1, not maybe shared): same PFN, no frame allocated,
    AnonPages and MemFree unchanged."""
    k = world(model)
    a = thp(k)
    split_pmd(k, 100, a)
    child = k.fork(100)
    assert not (pagemap(k, 100, a, 512) & EXCL).any()
    k.exit_group(child)
    pm = pagemap(k, 100, a, 512)
    assert (pm & EXCL != 0).all()
    pfn = (pm & PFN).astype(np.int64)
    assert (kpagecount(k, pfn) == 1).all()
    st = usage(k, 100, a, a + PMD_SIZE)
    assert private(st) == 2 * MiB and shared(st) == 0 and st.pss == 2 * MiB << stats.PSS_SHIFT
    free0, mi0 = k.mem.nr_free, meminfo(k)
    k.touch(100, a + 100 * PAGE, PAGE)  # the fork left every PTE read-only
    after = pagemap(k, 100, a, 512)
    assert (after == pm).all(), "the written page moved: the folio was copied, not reused"
    assert k.mem.nr_free == free0
    mi = meminfo(k)
    assert mi["AnonPages"] == mi0["AnonPages"] and mi["MemFree"] == mi0["MemFree"]
    check_all(k)


# -- §5.7.4 ------------------------------------------------------------------------------


def mthp_world(model):
    """A written 16-page (64 KiB) mTHP in pid 100, in a VMA of its own
    (MAP_NORESERVE: no merging with the accounted anonymous VMAs around it)."""
    k = world(model)
    k.set_thp(size_kb=64, mode="always")
    a = k.mmap(100, 128 * KiB, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
    a = (a + 64 * KiB - 1) & ~(64 * KiB - 1)
    k.touch(100, a, 64 * KiB)
    assert k.mem.order[pfns_of(k, 100, a, 1)[0]] == 4
    return k, a


@pytest.mark.parametrize("model", MODELS)
def test_untracked_survivor_pss_private_and_kpagecount(model):
    """§5.7.4: parent (slot 0) and child 1 (slot 1) exit, the untracked
    child 2 remains with all 16 PTEs. Its smaps: PAGE_MAPCOUNT Private 64 KiB;
    NO_PAGE_MAPCOUNT Shared 64 KiB (sticky flag, total 16 > 1) yet Pss the
    full 64 KiB, because the average is floor((16 + 8) / 16) = 1 < 2.
    kpagecount 1 for every page in both (precise 1, average 1)."""
    k, a = mthp_world(model)
    c1 = k.fork(100)
    c2 = k.fork(100)
    pfn = pfns_of(k, 100, a, 16)
    assert (kpagecount(k, pfn) == 3).all()  # precise 3; average floor((48 + 8) / 16) = 3
    k.exit_group(c1)
    k.exit_group(100)
    st = usage(k, c2, a, a + 64 * KiB)
    assert st.resident == 64 * KiB and st.pss == 64 * KiB << stats.PSS_SHIFT
    if model == "page":
        assert private(st) == 64 * KiB and shared(st) == 0
    else:
        assert shared(st) == 64 * KiB and private(st) == 0
    assert (kpagecount(k, pfn) == 1).all()
    check_all(k)


@pytest.mark.parametrize("model", MODELS)
def test_survivor_with_a_single_pmd_mapping_is_exclusive_in_both(model):
    """§5.7.4 edge, the PMD case: three mms map a THP by PMD (the third is
    untracked); with two of them gone the survivor's one PMD is the folio's
    only mapping (total mapcount 1 -> not maybe shared). While all three map
    it: kpagecount 3 (precise 0 + 3; m = e = 3) and Pss (4096 << 12) // 3
    per page in each; afterwards bit 56, Private 2 MiB, Pss 2 MiB, kpagecount 1."""
    k = world(model)
    a = thp(k)
    c1 = k.fork(100)
    c2 = k.fork(100)
    pfn = pfns_of(k, 100, a, 512)
    assert (kpagecount(k, pfn) == 3).all()
    for pid in (100, c1, c2):
        st = usage(k, pid, a, a + PMD_SIZE)
        assert st.pss == 512 * (FULL // 3) and shared(st) == 2 * MiB, pid
        assert not (pagemap(k, pid, a, 512) & EXCL).any()
    check_all(k)
    k.exit_group(100)
    k.exit_group(c1)
    assert (a >> PMD_SHIFT) in k.task(c2).mm.pgtable.huge
    assert (pagemap(k, c2, a, 512) & EXCL != 0).all()
    assert (kpagecount(k, pfn) == 1).all()
    st = usage(k, c2, a, a + PMD_SIZE)
    assert private(st) == 2 * MiB and shared(st) == 0 and st.pss == 2 * MiB << stats.PSS_SHIFT
    check_all(k)


# -- §5.7.5 ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_kpagecount_rounding_through_fork_and_munmap(model):
    """§5.7.5 end to end (test_mapcount_models drives the rmap directly): a
    PTE-mapped 512-page folio in up to three mms, shrunk by munmap(). The
    average rounds to nearest: 1536 -> 3, 1280 -> 3, 1279 -> 2, 768 -> 2,
    767 -> 1, 1 -> 1 (for every page, mapped or not); the precise count is
    the number of mms mapping that page, 0 for an unmapped one."""
    k = world(model)
    a = thp(k)
    split_pmd(k, 100, a)
    pfn = pfns_of(k, 100, a, 512)
    c1 = k.fork(100)
    c2 = k.fork(100)
    steps = [
        (None, 0, 0, 1536, np.full(512, 3)),
        (c2, 0, 256, 1280, np.r_[np.full(256, 2), np.full(256, 3)]),
        (c2, 256, 1, 1279, np.r_[np.full(257, 2), np.full(255, 3)]),
    ]
    for pid, first, n, m, precise in steps:
        if pid is not None:
            k.munmap(pid, a + first * PAGE, n * PAGE)
        assert int(k.mem.large_mapcount[pfn[0]]) == m
        want = precise if model == "page" else np.full(512, max((m + 256) // 512, 1))
        assert (kpagecount(k, pfn) == want).all(), (m, model)
    k.exit_group(c2)
    steps = [
        (c1, 0, 256, 768, np.r_[np.full(256, 1), np.full(256, 2)]),
        (c1, 256, 1, 767, np.r_[np.full(257, 1), np.full(255, 2)]),
    ]
    for pid, first, n, m, precise in steps:
        k.munmap(pid, a + first * PAGE, n * PAGE)
        assert int(k.mem.large_mapcount[pfn[0]]) == m
        want = precise if model == "page" else np.full(512, (m + 256) // 512)
        assert (kpagecount(k, pfn) == want).all(), (m, model)
    k.exit_group(c1)
    k.munmap(100, a + PAGE, 511 * PAGE)  # one PTE left: average max(floor(257 / 512), 1) = 1
    want = np.r_[1, np.zeros(511, int)] if model == "page" else np.ones(512, int)
    assert (kpagecount(k, pfn) == want).all()
    check_all(k)
    k.munmap(100, a, PAGE)  # the folio is gone: free frames read 0
    assert (kpagecount(k, pfn) == 0).all()
    check_all(k)


@pytest.mark.parametrize("model", MODELS)
def test_kpagecount_of_a_pmd_plus_100_ptes(model):
    """§5.7.5: the parent maps a THP by PMD, the child by 100 PTEs:
    e = 1, m = 101 -> floor((100 + 256) / 512) + 1 = 1 for every page;
    precise: 2 for the child's 100 pages, 1 for the others."""
    k = world(model)
    a = thp(k)
    child = k.fork(100)
    split_pmd(k, child, a)
    k.munmap(child, a + 100 * PAGE, 412 * PAGE)
    pfn = pfns_of(k, 100, a, 512)
    want = np.r_[np.full(100, 2), np.ones(412, int)] if model == "page" else np.ones(512, int)
    assert (kpagecount(k, pfn) == want).all()
    check_all(k)


# -- §5.7.6 ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_partially_mapped_thp_in_meminfo_and_kpagecount(model):
    """§5.7.6 through /proc/meminfo: a 512-page THP of which one page stays
    mapped adds 2048 kB to AnonPages under NO_PAGE_MAPCOUNT (the folio counts
    whole while any page is mapped), 4 kB under PAGE_MAPCOUNT; an unmapped
    page of it has kpagecount 1 (average, >= 1) vs 0 (precise). The
    deferred split frees the 511 pages: 4 kB in both, MemFree + 2044 kB."""
    k = world(model)
    anon0 = meminfo(k)["AnonPages"]
    a = thp(k)
    pfn = pfns_of(k, 100, a, 512)
    assert meminfo(k)["AnonPages"] - anon0 == 2048
    k.munmap(100, a + PAGE, PMD_SIZE - PAGE)
    mi = meminfo(k)
    assert mi["AnonPages"] - anon0 == (4 if model == "page" else 2048)
    assert mi["AnonHugePages"] == 0  # no PMD maps it any more
    assert kpagecount(k, pfn[:1])[0] == 1
    assert kpagecount(k, pfn[1:2])[0] == (0 if model == "page" else 1)
    check_all(k)
    k.shrink_deferred_split()
    after = meminfo(k)
    assert after["AnonPages"] - anon0 == 4
    assert after["MemFree"] - mi["MemFree"] == 511 * 4
    assert (kpagecount(k, pfn[1:]) == 0).all()
    check_all(k)


# -- regressions: model bugs these tests found (fixed in 8d7b109) --------------------------


def test_vdso_pss_follows_the_page_mappings():
    """Spec §4.1: Pss += 4 KiB / mapcount, mapcount = the page-table mappings
    of the page; the vDSO text is a normal page (observed [vdso] Rss 4 kB).
    After spawn + fork, init and bash map both vDSO pages and the child maps
    none (fork copies no PTEs of a VMA without anon pages): each page has 2
    mappings, so bash's [vdso] Pss is 2 x 4096 / 2 = 4 kB (the model said 3
    "users", 2 kB), and the Pss of all [vdso] VMAs adds up to 2 pages."""
    k = boot()
    k.spawn(["/usr/bin/bash"], pid=100)
    child = k.fork(100)
    total = 0
    for tg in k.groups.values():
        mm = tg.mm
        if mm is None:
            continue
        text = SM.smaps(mm_ctx(k, mm)).decode()
        block = text[text.index("[vdso]"):]
        rss, pss = (int(re.search(rf"^{f}:\s+(\d+) kB", block, re.M)[1]) for f in ("Rss", "Pss"))
        assert rss == (0 if tg.tgid == child else 8)
        if tg.tgid == 100:
            assert pss == 4, f"bash's [vdso] Pss is {pss} kB"
        v = next(v for v in mm.vmas if v.special == "[vdso]")
        total += stats.smaps_vma(mm, v, k.vdso_mapcount).pss
    assert total == 2 * FULL


def test_smaps_size_lines_are_24_columns():
    """Spec §4: every `label: value kB` line of smaps is the label padded to
    16 columns and the value right-aligned in 8 (Private_Hugetlb: 16 + 1 + 7):
    24 characters before " kB" while values are below 10^7 kB; the kernel's
    show_smap() prints "KernelPageSize: " and "MMUPageSize:    " (16 each)."""
    k = world("page")
    text = SM.smaps(mm_ctx(k, k.task(100).mm)).decode()
    bad = [line for line in text.splitlines() if line.endswith(" kB") and len(line) != 24 + 3]
    assert not bad, bad[:3]
