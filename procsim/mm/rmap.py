"""Reverse map (mm/rmap.c): from a folio to every PTE that maps it, as
rmap_walk() finds them for idle page tracking; and the folio mapcounts the
rmap add/remove functions keep (FolioMapcounts, a base of MemMap).

Per frame the mem_map keeps two fields (12 bytes): `rmap_mapping`, the id
of the anon_vma root (anonymous pages) or of the file (page cache, shmem)
the folio belongs to, and `rmap_index`, its page index there: the linear
page index `vma.pgoff + (va - vma.start) >> PAGE_SHIFT` for anonymous pages
(Linux's folio->index), the file offset in pages for page-cache pages. A
VMA that may map the folio is one whose anon_vma root or file has that id
and whose [pgoff, pgoff + npages) holds the index; the address follows from
the VMA's start, so an mremap move (start changes, pgoff does not) keeps
pages findable, as vma->vm_pgoff does in Linux.

Simplification: the children of a fork share their parent's anon_vma root
id (Linux chains a new anon_vma per child to the parent's). The walk may so
visit VMAs that do not map the page; it only acts on PTEs whose PFN is the
folio's, so the answer is the same.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from procsim.mm.vma import VM_EXEC
from procsim.mm.page_flags import PG_ANON, PG_FILE, PG_HUGETLB, PG_MAYBE_SHARED, PG_RESERVED, PG_SHMEM, PG_SWAPCACHE
from procsim.mm.pagetable import (PAGE_SHIFT, PMD_SHIFT, POOL_ROWS, PTE_ACCESSED, PTE_PRESENT, PTRS_PER_TABLE,
                                  PageTable, pte_pfn)

if TYPE_CHECKING:
    from procsim.mm.page_alloc import MemMap

_ids = itertools.count(1)
_YOUNG = PTE_PRESENT | PTE_ACCESSED


def new_mapping_id() -> int:
    return next(_ids)


class AnonVma:
    """A VMA's anon_vma: identity decides merges (two VMAs with different
    ones never merge); `root` is the rmap id its pages carry."""

    __slots__ = ("root",)

    def __init__(self, root: int | None = None) -> None:
        self.root = root if root is not None else new_mapping_id()


def file_mapping_id(file) -> int:
    """The rmap id of a file's page cache (assigned on first use)."""
    if not file.rmap_id:
        file.rmap_id = new_mapping_id()
    return file.rmap_id


def set_anon_rmap(mem: MemMap, v, va: int, ptes: np.ndarray) -> None:
    """folio_add_new_anon_rmap() for the anonymous pages among `ptes` (the
    entries of v from address va) that have no mapping yet."""
    if v.anon_vma is None:
        return
    present = np.flatnonzero(ptes & PTE_PRESENT)
    if not len(present):
        return
    pfns = pte_pfn(ptes[present])
    new = ((mem.flags[pfns] & PG_ANON) != 0) & (mem.rmap_mapping[pfns] == 0) \
        & ((mem.flags[pfns] & (PG_RESERVED | PG_HUGETLB)) == 0)
    if not new.any():
        return
    p = pfns[new]
    mem.rmap_mapping[p] = v.anon_vma.root
    mem.rmap_index[p] = v.pgoff + ((va - v.start) >> PAGE_SHIFT) + present[new]


def set_file_rmap(mem: MemMap, file, pfns: np.ndarray, pgoffs: np.ndarray) -> None:
    """Page-cache pages of `file` at `pgoffs` (folio->mapping, folio->index)."""
    mem.rmap_mapping[pfns] = file_mapping_id(file)
    mem.rmap_index[pfns] = pgoffs


def _vma_ids(v) -> list[int]:
    ids = []
    if v.anon_vma is not None:
        ids.append(v.anon_vma.root)
    if v.file is not None and v.file.rmap_id and not v.file.hugetlb:
        ids.append(v.file.rmap_id)
    return ids


def _candidates(mem: MemMap) -> dict[int, list]:
    """mapping id -> the (mm, VMA) pairs that may map its pages."""
    out: dict[int, list] = {}
    for mm in list(mem.mms):
        if not mm.mm_id:
            continue  # torn down
        for v in mm.vmas:
            # special VMAs count too: a written [vdso] holds anonymous copies
            if v.is_hugetlb:
                continue
            for i in _vma_ids(v):
                out.setdefault(i, []).append((mm, v))
    return out


def clear_young(mem: MemMap, heads: np.ndarray) -> np.ndarray:
    """page_idle_clear_pte_refs() for the folios with head PFNs `heads`:
    walk every PTE (or huge PMD) that maps each, clear its accessed bit,
    and say which folios had one set. Returns bool per head."""
    return folio_referenced(mem, heads)[0] > 0


def folio_referenced(mem: MemMap, heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """folio_referenced()'s rmap walk over the folios with head PFNs `heads`:
    every PTE (or huge PMD) that maps each has its accessed bit tested and
    cleared. Returns, per head, the mappings (VMAs) found young, and whether
    one of those VMAs is VM_EXEC (the vm_flags reclaim asks of it)."""
    refs = np.zeros(len(heads), np.int64)
    exe = np.zeros(len(heads), bool)
    if not len(heads):
        return refs, exe
    mapping = mem.rmap_mapping[heads]
    index = mem.rmap_index[heads]
    nr = np.int64(1) << mem.order[heads].astype(np.int64)
    ids = np.unique(mapping[mapping != 0]).tolist()
    if not ids:
        return refs, exe
    cands = _candidates(mem)
    for mid in ids:
        of = mapping == mid
        for mm, v in cands.get(mid, ()):
            sel = of & (index < v.pgoff + v.npages) & (index + nr > v.pgoff)
            if not sel.any():
                continue
            f = np.flatnonzero(sel)
            # every page of each folio: pfn head + j at index + j
            cnt = nr[f]
            if (cnt == 1).all():
                rep, j, idx = f, np.zeros(len(f), np.int64), index[f]
            else:
                rep = np.repeat(f, cnt)
                j = np.arange(len(rep), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                idx = index[rep] + j
                inside = (idx >= v.pgoff) & (idx < v.pgoff + v.npages)
                rep, j, idx = rep[inside], j[inside], idx[inside]
            vas = v.start + ((idx - v.pgoff) << PAGE_SHIFT)
            hit = test_clear_young_ptes(mm.pgtable, vas, heads[rep] + j)
            young = np.unique(rep[hit])  # folio_referenced_one(): one per VMA that found it young
            refs[young] += 1
            if v.flags & VM_EXEC:
                exe[young] = True
    return refs, exe


def test_clear_young_ptes(pt: PageTable, vas: np.ndarray, pfns: np.ndarray) -> np.ndarray:
    """ptep_clear_young_notify() at each address whose PTE maps the expected
    PFN (pmdp_clear_young_notify() for a huge PMD: one bit for all 512).
    Returns, per address, whether the bit was set. The entries of all the
    tables are gathered at once from the table pool."""
    out = np.zeros(len(vas), bool)
    tables = pt.tables
    pmd = vas >> PMD_SHIFT
    rows = tables.rows
    upmd, inv = np.unique(pmd, return_inverse=True)
    g = np.array([rows.get(i, -1) for i in upmd.tolist()], np.int64)[inv]
    off = (vas >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)
    block = g // POOL_ROWS
    huge = set(pt.huge) if pt.huge else ()
    for b in np.unique(block[g >= 0]).tolist():
        sel = np.flatnonzero(block == b)
        flat = (g[sel] % POOL_ROWS) * PTRS_PER_TABLE + off[sel]
        arr = tables.blocks[b].reshape(-1)
        e = arr[flat]
        acc = ((e & _YOUNG) == _YOUNG) & (pte_pfn(e) == pfns[sel])
        if not acc.any():
            continue
        out[sel[acc]] = True
        arr[flat[acc]] = e[acc] & ~PTE_ACCESSED
    if huge:
        for i in set(pmd[out].tolist()) & huge:
            t = tables[i]
            t &= ~PTE_ACCESSED  # the huge PMD's one bit, in all its copies
    return out


class FolioMapcounts:
    """The mapcounts of MemMap's folios (folio_add/remove_rmap_*,
    folio_mapcount and the MM-ID owner slots; a base of MemMap, whose
    arrays it keeps): PTE and PMD mappings counted per page and per folio,
    large folios queued for deferred split when partly unmapped."""

    # -- MM-ID owner tracking (folio_add/sub_return_large_mapcount) ---------

    def _mm_id_add(self, heads: np.ndarray, n: np.ndarray, mm_id: int, total: np.ndarray) -> None:
        """mm_id adds n mappings to each folio; `total` is the new large mapcount."""
        assert mm_id > 0, "large folios are mapped by mms with an MM ID"
        id0, id1 = self.mm_id0[heads], self.mm_id1[heads]
        own0 = id0 == mm_id
        own1 = (id1 == mm_id) & ~own0
        self.mm_cnt0[heads[own0]] += n[own0].astype(np.int32)
        self.mm_cnt1[heads[own1]] += n[own1].astype(np.int32)
        rest = ~own0 & ~own1
        f0 = rest & (id0 == 0)
        h = heads[f0]
        self.mm_id0[h] = mm_id
        self.mm_cnt0[h] = n[f0]
        # other mms map it already: maybe shared
        self.flags[h[total[f0] != n[f0]]] |= PG_MAYBE_SHARED
        f1 = rest & ~f0 & (id1 == 0)
        h = heads[f1]
        self.mm_id1[h] = mm_id
        self.mm_cnt1[h] = n[f1]
        self.flags[h] |= PG_MAYBE_SHARED  # slot 0 has mappings too
        # neither slot free: mm_id is untracked; the flag is already set

    def _mm_id_sub(self, heads: np.ndarray, n: np.ndarray, mm_id: int, total: np.ndarray) -> None:
        id0, id1 = self.mm_id0[heads], self.mm_id1[heads]
        own0 = id0 == mm_id
        own1 = (id1 == mm_id) & ~own0
        c0 = self.mm_cnt0[heads] - np.where(own0, n, 0)
        c1 = self.mm_cnt1[heads] - np.where(own1, n, 0)
        keep = (own0 & (c0 > 0)) | (own1 & (c1 > 0))
        # a per-MM count that reaches zero (or underflows: some mappings were
        # added while the mm was untracked) frees the slot
        drop0, drop1 = own0 & (c0 <= 0), own1 & (c1 <= 0)
        c0[drop0] = 0
        c1[drop1] = 0
        self.mm_cnt0[heads] = c0
        self.mm_cnt1[heads] = c1
        self.mm_id0[heads[drop0]] = 0
        self.mm_id1[heads[drop1]] = 0
        # untracked, or its slot just went: if one slot owns every remaining
        # mapping the folio is exclusive again (total 0 clears it too)
        excl = ~keep & ((c0 == total) | (c1 == total))
        self.flags[heads[excl]] &= ~np.uint32(PG_MAYBE_SHARED)

    # -- rmap: PTE mappings ---------------------------------------------------

    def _small_mapped(self, pfns: np.ndarray, sign: int) -> None:
        fl = self.flags[pfns]
        self.nr_mapped_file += sign * int(np.count_nonzero(fl & (PG_FILE | PG_SHMEM)))
        na = sign * int(np.count_nonzero(fl & PG_ANON))
        self.nr_anon_mapped_page += na
        self.nr_anon_mapped_folio += na

    def map_pages(self, pfns: np.ndarray, mm_id: int = 0) -> None:
        """One more PTE mapping of each frame (frames are distinct), by mm_id
        (folio_add_{new_,}anon_rmap_ptes / folio_add_file_rmap_ptes)."""
        if not len(pfns):
            return
        before = self.mapcount[pfns]
        self.mapcount[pfns] = before + 1
        order = self.order[pfns]
        large = order != 0
        if not large.any():
            self._small_mapped(pfns[before == 0], +1)
            return
        self._small_mapped(pfns[~large & (before == 0)], +1)
        lp = pfns[large]
        heads, lo = self.folio_head(lp)
        self.nr_anon_mapped_page += int(np.count_nonzero((before[large] == 0) & (self.entire_mapcount[heads] == 0)))
        uh, first, cnt = np.unique(heads, return_index=True, return_counts=True)
        old = self.large_mapcount[uh]
        new = old + cnt
        self.large_mapcount[uh] = new
        self.nr_anon_mapped_folio += int((np.int64(1) << lo[first])[old == 0].sum())
        self._mm_id_add(uh, cnt, mm_id, new)

    def unmap_pages(self, pfns: np.ndarray, mm_id: int = 0) -> None:
        """One PTE mapping fewer; anonymous folios nobody maps any more are
        freed (but those the swap cache holds), partially mapped ones go on
        the deferred split queue."""
        if not len(pfns):
            return
        after = self.mapcount[pfns] - 1
        self.mapcount[pfns] = after
        order = self.order[pfns]
        large = order != 0
        small_gone = pfns[~large & (after == 0)]
        if len(small_gone):
            self._small_mapped(small_gone, -1)
            fl = self.flags[small_gone]
            self.free(small_gone[(fl & (PG_ANON | PG_SWAPCACHE)) == PG_ANON])
        if not large.any():
            return
        lp = pfns[large]
        heads, lo = self.folio_head(lp)
        self.nr_anon_mapped_page -= int(np.count_nonzero((after[large] == 0) & (self.entire_mapcount[heads] == 0)))
        uh, first, cnt = np.unique(heads, return_index=True, return_counts=True)
        new = self.large_mapcount[uh] - cnt
        self.large_mapcount[uh] = new
        self._mm_id_sub(uh, cnt, mm_id, new)
        for h in uh[new == 0].tolist():
            self.nr_anon_mapped_folio -= 1 << int(self.order[h])
            self.free_folio(h)
        self._check_partial(uh[new > 0])

    def _check_partial(self, heads: np.ndarray) -> None:
        """deferred_split_folio() for folios that became partially mapped, as
        each model can tell: exactly (some page unmapped) with page mapcounts,
        by "fewer mappings than pages and no PMD" without (so a folio whose
        remaining pages are mapped twice is missed)."""
        for h in heads.tolist():
            if h in self.deferred_split or self.entire_mapcount[h]:
                continue
            nr = 1 << int(self.order[h])
            if self.mapcount_model == "page":
                partial = not self.mapcount[h: h + nr].all()
            else:
                partial = self.large_mapcount[h] < nr
            if partial:
                self.deferred_split.add(h)

    # -- rmap: PMD mappings ---------------------------------------------------

    def map_pmd(self, head: int, mm_id: int) -> None:
        """folio_add_{new_,}anon_rmap_pmd: one PMD maps the whole folio."""
        nr = 1 << int(self.order[head])
        e, old = int(self.entire_mapcount[head]), int(self.large_mapcount[head])
        self.entire_mapcount[head] = e + 1
        self.large_mapcount[head] = old + 1
        if e == 0:
            self.nr_anon_mapped_page += int(np.count_nonzero(self.mapcount[head: head + nr] == 0))
            self.nr_anon_thps += nr
        if old == 0:
            self.nr_anon_mapped_folio += nr
        h = np.array([head], np.int64)
        self._mm_id_add(h, np.array([1], np.int32), mm_id, np.array([old + 1], np.int32))

    def unmap_pmd(self, head: int, mm_id: int) -> None:
        nr = 1 << int(self.order[head])
        e, new = int(self.entire_mapcount[head]) - 1, int(self.large_mapcount[head]) - 1
        self.entire_mapcount[head] = e
        self.large_mapcount[head] = new
        if e == 0:
            self.nr_anon_mapped_page -= int(np.count_nonzero(self.mapcount[head: head + nr] == 0))
            self.nr_anon_thps -= nr
        h = np.array([head], np.int64)
        self._mm_id_sub(h, np.array([1], np.int32), mm_id, np.array([new], np.int32))
        if new == 0:
            self.nr_anon_mapped_folio -= nr
            self.free_folio(head)
        else:
            self._check_partial(h)


    # -- what the kernel can know, per mapcount model ---------------------------

    def folio_mapcount(self, pfns: np.ndarray) -> np.ndarray:
        """folio_mapcount(): total mappings of each frame's folio (also its
        reference count here, less the swap cache's: no GUP is modelled)."""
        heads, order = self.folio_head(pfns)
        return np.where(order > 0, self.large_mapcount[heads], self.mapcount[pfns])

    def precise_page_mapcount(self, pfns: np.ndarray) -> np.ndarray:
        """folio_precise_page_mapcount(): PTE mappings of the page + PMD ones."""
        heads, order = self.folio_head(pfns)
        return self.mapcount[pfns] + np.where(order > 0, self.entire_mapcount[heads], 0)

    def average_page_mapcount(self, pfns: np.ndarray) -> np.ndarray:
        """folio_average_page_mapcount() (seed-mechanisms §5.2)."""
        heads, order = self.folio_head(pfns)
        m = self.large_mapcount[heads].astype(np.int64)
        e = self.entire_mapcount[heads].astype(np.int64)
        nr = np.int64(1) << order
        avg = np.maximum(((m - e + nr // 2) >> order) + e, 1)
        large = np.where(m <= 0, 0, np.where(m <= e, e, avg))
        return np.where(order > 0, large, self.mapcount[pfns])

    def maybe_mapped_shared(self, pfns: np.ndarray) -> np.ndarray:
        """folio_maybe_mapped_shared(): never a false "exclusive". hugetlb
        folios have no MM-ID slots: shared when mapped more than once."""
        heads, order = self.folio_head(pfns)
        fl = self.flags[heads]
        flag = ((fl & PG_MAYBE_SHARED) != 0) | ((fl & PG_HUGETLB) != 0)
        return np.where(order > 0, (self.large_mapcount[heads] > 1) & flag, self.mapcount[pfns] > 1)

    def kpagecount(self, pfns: np.ndarray) -> np.ndarray:
        """What /proc/kpagecount reports for each frame (spec §13)."""
        if self.mapcount_model == "page":
            return self.precise_page_mapcount(pfns)
        return self.average_page_mapcount(pfns)

    def page_mapped_exclusively(self, pfns: np.ndarray) -> np.ndarray:
        """__folio_page_mapped_exclusively(): pagemap PM_MMAP_EXCLUSIVE."""
        if self.mapcount_model == "page":
            return self.precise_page_mapcount(pfns) == 1
        return ~self.maybe_mapped_shared(pfns)


def try_to_unmap_file(mem: "MemMap", pfns: np.ndarray) -> np.ndarray:
    """try_to_unmap() of order-0 page-cache folios: every PTE that maps one
    (found through the file's VMAs, rmap_walk_file) is cleared, the mm's
    file RSS and the folio's mapcount drop. Returns, per folio, whether a
    PTE it had was dirty (the caller dirties the folio: folio_mark_dirty)."""
    from procsim.mm.mm import MM_FILEPAGES
    from procsim.mm.pagetable import PTE_DIRTY
    from procsim.units import PAGE_SIZE
    dirty = np.zeros(len(pfns), bool)
    if not len(pfns):
        return dirty
    mapping = mem.rmap_mapping[pfns]
    index = mem.rmap_index[pfns]
    cands = _candidates(mem)
    for mid in np.unique(mapping[mapping != 0]).tolist():
        of = np.flatnonzero(mapping == mid)
        for mm, v in cands.get(mid, ()):
            if v.file is None or v.file.rmap_id != mid:
                continue
            sel = of[(index[of] >= v.pgoff) & (index[of] < v.pgoff + v.npages)]
            if not len(sel):
                continue
            vas = v.start + ((index[sel] - v.pgoff) << PAGE_SHIFT)
            hit = []
            for i, a in zip(sel.tolist(), vas.tolist()):
                for _, sl in mm.pgtable.spans(a, a + PAGE_SIZE):  # (a view of the table: cleared in place)
                    e = sl[:1]
                    if e[0] & PTE_PRESENT and int(pte_pfn(e)[0]) == int(pfns[i]):
                        dirty[i] |= bool(e[0] & PTE_DIRTY)
                        sl[0] = 0
                        hit.append(i)
            if hit:
                mm.update_hiwater_rss()
                mm.rss.add(MM_FILEPAGES, -len(hit))
                mem.unmap_pages(pfns[np.array(hit, np.int64)], mm.mm_id)
    return dirty
