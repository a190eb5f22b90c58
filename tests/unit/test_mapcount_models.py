"""CONFIG_PAGE_MAPCOUNT vs CONFIG_NO_PAGE_MAPCOUNT (seed-mechanisms §5.2, §5.7)."""

from __future__ import annotations

import numpy as np
import pytest

from procsim.mm import page_alloc as M
from procsim.mm import stats
from invariants import boot, check_world

EXCL = np.uint64(stats.PM_MMAP_EXCLUSIVE)


def mthp_world(model):
    k = boot(mapcount_model=model)
    k.spawn(["/usr/bin/bash"], pid=100)
    k.set_thp(size_kb=64, mode="always")
    a = k.mmap(100, 128 << 10)
    a = (a + (64 << 10) - 1) & ~((64 << 10) - 1)
    k.touch(100, a, 64 << 10)
    return k, a


@pytest.mark.parametrize("model", ["page", "no_page"])
def test_untracked_survivor_is_sticky_shared_only_without_page_mapcount(model):
    """§5.7.4: parent slot 0, child 1 slot 1, child 2 untracked; the first two exit."""
    k, a = mthp_world(model)
    c1 = k.fork(100)
    c2 = k.fork(100)
    k.exit_group(c1)
    k.exit_group(100)
    mm = k.task(c2).mm
    pm = stats.pagemap_entries(mm, a, a + (64 << 10))
    st = stats.smaps_vma(mm, mm.vmas.lookup(a))
    if model == "page":
        assert (pm & EXCL != 0).all() and st.shared_dirty == 0
    else:
        assert not (pm & EXCL).any() and st.shared_dirty >= 64 << 10
    check_world(k)


@pytest.mark.parametrize("model", ["page", "no_page"])
def test_single_remaining_mapping_is_exclusive_in_both(model):
    k, a = mthp_world(model)
    c1 = k.fork(100)
    c2 = k.fork(100)
    k.munmap(c2, a + 4096, (64 << 10) - 4096)  # c2 keeps one PTE
    k.exit_group(c1)
    k.exit_group(100)
    mm = k.task(c2).mm
    assert stats.pagemap_entries(mm, a, a + 4096)[0] & EXCL


def test_kpagecount_average_rounding():
    """§5.7.5 on a 512-page folio with PTE-only mappings, by direct rmap calls."""
    mem = M.MemMap(1 << 16, 1024, "no_page")
    head = mem.alloc_folio(9, M.PG_ANON)
    pages = np.arange(head, head + 512, dtype=np.int64)

    def count():
        return int(mem.kpagecount(pages[:1])[0])
    mem.map_pages(pages[:1], 1)
    assert count() == 1
    mem.map_pages(pages[1:], 1)         # 512
    mem.map_pages(pages[:255], 2)       # 767
    assert count() == 1
    mem.map_pages(pages[255:256], 2)    # 768
    assert count() == 2
    mem.map_pages(pages[256:], 2)
    mem.map_pages(pages[:256], 3)       # 1280
    assert count() == 3
    page = M.MemMap(1 << 16, 1024, "page")
    h2 = page.alloc_folio(9, M.PG_ANON)
    page.map_pmd(h2, 1)
    page.map_pages(np.arange(h2, h2 + 100, dtype=np.int64), 2)
    assert page.kpagecount(np.array([h2, h2 + 200]))[0] == 2 and page.kpagecount(np.array([h2 + 200]))[0] == 1
    page.mapcount_model = "no_page"   # e = 1, avg(100) = 0 -> 1
    assert page.kpagecount(np.array([h2 + 200]))[0] == 1


@pytest.mark.parametrize("model", ["page", "no_page"])
def test_partially_mapped_folio_anonpages_and_kpagecount(model):
    """§5.7.6: one page of a 512-page folio still mapped."""
    mem = M.MemMap(1 << 16, 1024, model)
    head = mem.alloc_folio(9, M.PG_ANON)
    pages = np.arange(head, head + 512, dtype=np.int64)
    mem.map_pages(pages, 1)
    mem.unmap_pages(pages[1:], 1)
    assert mem.nr_anon_mapped == (1 if model == "page" else 512)
    assert int(mem.kpagecount(pages[5:6])[0]) == (0 if model == "page" else 1)
    assert head in mem.deferred_split


def world_pss(k):
    total_pss = 0
    for tg in k.groups.values():
        if tg.mm is not None:
            total_pss += stats.smaps_rollup(tg.mm).pss
    return total_pss


def test_pss_sums_to_mapped_pages_and_no_page_never_overreports_uss():
    res = {}
    for model in ("page", "no_page"):
        k, a = mthp_world(model)
        k.set_thp(enabled="always")
        b = k.mmap(100, 6 << 20)
        k.touch(100, b, 6 << 20)
        c = k.fork(100)
        k.touch(c, a, 4096)
        k.munmap(c, b + (1 << 20), 1 << 20)
        k.fork(c)
        uss = {}
        for pid, tg in k.groups.items():
            if tg.mm is not None:
                st = stats.smaps_rollup(tg.mm, special_mapcount=1)
                assert st.resident == st.shared_clean + st.shared_dirty + st.private_clean + st.private_dirty
                assert st.resident == tg.mm.rss_pages * 4096
                uss[pid] = st.private_clean + st.private_dirty
        if model == "page":
            # every mapped normal page's PSS adds up to its size, over all processes
            pss_pages = world_pss_exact(k)
            assert abs(pss_pages[0] - pss_pages[1]) <= pss_pages[2]  # rounding of 1/n shares
        res[model] = uss
        check_world(k)
    for pid in res["page"]:
        assert res["no_page"][pid] <= res["page"][pid]


def world_pss_exact(k):
    """(sum of Pss in bytes << 12, mapped bytes << 12, rounding slack)."""
    total = 0
    mapped = set()
    nentries = 0
    for tg in k.groups.values():
        mm = tg.mm
        if mm is None:
            continue
        for v in mm.vmas:
            if v.special is not None:
                continue
            total += stats.smaps_vma(mm, v).pss
            for _, sl in mm.pgtable.spans(v.start, v.end):
                p = (sl[sl != 0] >> np.uint64(12)).astype(np.int64)
                p = p[p != 1]
                nentries += len(p)
                mapped.update(p.tolist())
    return total, len(mapped) * (4096 << 12), nentries
