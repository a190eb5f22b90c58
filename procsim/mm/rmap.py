"""Reverse map: from a folio to every PTE that maps it, as rmap_walk() finds
them for idle page tracking.

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

import numpy as np

from procsim.mm import page_alloc as M
from procsim.mm.pagetable import (PAGE_SHIFT, PMD_SHIFT, POOL_ROWS, PTE_ACCESSED, PTE_PRESENT, PTRS_PER_TABLE,
                                  PageTable, pte_pfn)

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


def set_anon_rmap(mem: M.MemMap, v, va: int, ptes: np.ndarray) -> None:
    """folio_add_new_anon_rmap() for the anonymous pages among `ptes` (the
    entries of v from address va) that have no mapping yet."""
    if v.anon_vma is None:
        return
    present = np.flatnonzero(ptes & PTE_PRESENT)
    if not len(present):
        return
    pfns = pte_pfn(ptes[present])
    new = ((mem.flags[pfns] & M.PG_ANON) != 0) & (mem.rmap_mapping[pfns] == 0) \
        & ((mem.flags[pfns] & (M.PG_RESERVED | M.PG_HUGETLB)) == 0)
    if not new.any():
        return
    p = pfns[new]
    mem.rmap_mapping[p] = v.anon_vma.root
    mem.rmap_index[p] = v.pgoff + ((va - v.start) >> PAGE_SHIFT) + present[new]


def set_file_rmap(mem: M.MemMap, file, pfns: np.ndarray, pgoffs: np.ndarray) -> None:
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


def _candidates(mem: M.MemMap) -> dict[int, list]:
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


def clear_young(mem: M.MemMap, heads: np.ndarray) -> np.ndarray:
    """page_idle_clear_pte_refs() for the folios with head PFNs `heads`:
    walk every PTE (or huge PMD) that maps each, clear its accessed bit,
    and say which folios had one set. Returns bool per head."""
    young = np.zeros(len(heads), bool)
    if not len(heads):
        return young
    mapping = mem.rmap_mapping[heads]
    index = mem.rmap_index[heads]
    nr = np.int64(1) << mem.order[heads].astype(np.int64)
    ids = np.unique(mapping[mapping != 0]).tolist()
    if not ids:
        return young
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
            young[rep[hit]] = True
    return young


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
