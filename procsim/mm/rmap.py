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

from procsim.mm import memory as M
from procsim.mm.pagetable import (PAGE_SHIFT, PMD_SHIFT, PTE_ACCESSED, PTE_PRESENT, PTRS_PER_TABLE,
                                  PageTable, pte_pfn)

_ids = itertools.count(1)


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
    live = mapping != 0
    if not live.any():
        return young
    for mm in list(mem.mms):
        if not mm.mm_id:
            continue  # torn down
        for v in mm.vmas:
            ids = _vma_ids(v)
            if not ids or v.special is not None or v.is_hugetlb:
                continue
            sel = live & np.isin(mapping, ids) & (index < v.pgoff + v.npages) & (index + nr > v.pgoff)
            if not sel.any():
                continue
            f = np.flatnonzero(sel)
            # every page of each folio: pfn head + j at index + j
            cnt = nr[f]
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
    Returns, per address, whether the bit was set."""
    out = np.zeros(len(vas), bool)
    order = np.argsort(vas, kind="stable")
    vas, pfns = vas[order], pfns[order]
    pmd = vas >> PMD_SHIFT
    cut = np.flatnonzero(np.diff(pmd)) + 1
    los = np.concatenate(([0], cut)).tolist()
    his = np.concatenate((cut, [len(vas)])).tolist()
    for lo, hi, i in zip(los, his, pmd[los].tolist()):
        t = pt.tables.get(i)
        if t is None:
            continue
        off = (vas[lo:hi] >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)
        e = t[off]
        match = ((e & PTE_PRESENT) != 0) & (pte_pfn(e) == pfns[lo:hi])
        acc = match & ((e & PTE_ACCESSED) != 0)
        if not acc.any():
            continue
        out[order[lo:hi][acc]] = True
        if i in pt.huge:
            t &= ~PTE_ACCESSED
        else:
            t[off[acc]] &= ~PTE_ACCESSED
    return out
