"""The kernel state machine of test_kernel_state_machine, with user accesses
(memory.access), idle bitmap reads and page_idle writes added to its syscalls,
and three more invariants checked after every step:

* rmap: every present PTE of a user page (anonymous, page cache, shmem) in
  an ordinary VMA is where the rmap says: the frame's mapping id is the
  VMA's anon_vma root (anonymous pages) or its file's id (page cache), and
  its index is the VMA's pgoff plus the page's offset in the VMA;
* upper-level accessed bits: a PMD (or PUD) the idle walk left old holds no
  accessed PTE, so skipping it loses no access;
* a page_idle write leaves no accessed bit on any PTE of the pages it
  marked, in any process (found by scanning every page table, not by the
  rmap under test).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from procsim.mm import idle
from procsim.mm import page_alloc as M
from procsim.mm.mm import ZERO_PFN
from procsim.mm.pagetable import PAGE_SHIFT, PMD_SHIFT, PTE_ACCESSED, PTE_PRESENT, pte_pfn
from test_kernel_state_machine import KernelMachine, idx

PAGE = 4096
_YOUNG = PTE_PRESENT | PTE_ACCESSED


def _ordinary(v) -> bool:
    return v.special is None and not v.is_hugetlb


def _user_ptes(k, mm, v):
    """(vas, pfns, ptes) of the present PTEs of user pages in VMA v."""
    ptes = mm.pgtable.read(v.start, v.end)
    pres = np.flatnonzero(ptes & PTE_PRESENT)
    pfns = pte_pfn(ptes[pres])
    fl = k.mem.flags[pfns]
    user = (pfns != ZERO_PFN) & ((fl & M.PG_RESERVED) == 0) & ((fl & M.PG_LRU) != 0)
    return v.start + (pres[user] << PAGE_SHIFT), pfns[user], ptes[pres[user]]


class IdleMachine(KernelMachine):

    def mms(self):
        return [tg.mm for tg in self.user_groups()]

    @rule(i=idx, j=idx, off=st.integers(0, 40), npages=st.integers(1, 64), write=st.booleans(),
          seed=st.integers(0, 1 << 16))
    def access(self, i, j, off, npages, write, seed):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        addr, length = self.area(self.k.tasks[tid].mm, j, off, npages, clip=True)
        rng = np.random.default_rng(seed)
        pages = rng.integers(0, length // PAGE, size=max(1, length // PAGE // 2))
        self.call(self.k.access, tid, addr + pages.astype(np.int64) * PAGE, write)

    @rule(i=idx, j=idx, again=st.booleans(), seed=st.integers(0, 1 << 16))
    def idle_read(self, i, j, again, seed):
        """Read one VMA's idle bits (in whole words) and check them against
        the page tables as they were: 0 exactly where a present PTE (or a
        hugetlb huge PTE) had its accessed bit. `again`: then access some of
        its pages (their PMDs are old now) and check a second read."""
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        mm = self.k.tasks[tid].mm
        v = self.pick(list(mm.vmas), j)
        self._check_read(mm, v)
        if again and v.special is None:
            rng = np.random.default_rng(seed)
            pages = rng.integers(0, v.npages, size=max(1, min(64, v.npages // 2)))
            self.call(self.k.access, tid, v.start + pages.astype(np.int64) * PAGE, False)
            self._check_read(mm, v)

    def _check_read(self, mm, v):
        start, end = v.start & ~(64 * PAGE - 1), -(-v.end // (64 * PAGE)) * (64 * PAGE)
        pt = mm.pgtable
        acc = (pt.read(start, end) & _YOUNG) == _YOUNG
        for h in pt.hugetlb_in(start, end):
            if pt.hugetlb[h] & int(_YOUNG) == int(_YOUNG):
                lo = max(h << PMD_SHIFT, start)
                hi = min((h + 1) << PMD_SHIFT, end)
                acc[(lo - start) >> PAGE_SHIFT: (hi - start) >> PAGE_SHIFT] = True
        # the rest of the PTE tables the range touches must keep their bits
        # (huge PMDs excepted: one bit for all 512 entries)
        wlo, whi = start & ~((1 << PMD_SHIFT) - 1), -(-end >> PMD_SHIFT) << PMD_SHIFT
        before = pt.read(wlo, whi)
        with self.k.lock:
            got = idle.idle_read(pt, start, end)
        assert np.array_equal(np.unpackbits(got, bitorder="little").astype(bool), ~acc)
        assert not ((pt.read(start, end) & PTE_ACCESSED) != 0).any()
        after = pt.read(wlo, whi)
        outside = np.ones(len(before), bool)
        outside[(start - wlo) >> PAGE_SHIFT: (end - wlo) >> PAGE_SHIFT] = False
        for h in pt.huge_in(wlo, whi):
            outside[((h << PMD_SHIFT) - wlo) >> PAGE_SHIFT: (((h + 1) << PMD_SHIFT) - wlo) >> PAGE_SHIFT] = False
        assert np.array_equal(before[outside], after[outside]), "a read changed entries outside its range"

    @rule(i=idx, j=idx)
    def page_idle_write(self, i, j):
        tid = self.pick(self.user_tids(), i)
        if tid is None:
            return
        mm = self.k.tasks[tid].mm
        v = self.pick([v for v in mm.vmas if _ordinary(v)], j)
        if v is None:
            return
        _, pfns, _ = _user_ptes(self.k, mm, v)
        heads, _ = self.k.mem.folio_head(pfns)
        marked = np.unique(heads)
        with self.k.lock:
            idle.page_idle_write(self.k.mem, marked)
        assert (self.k.mem.flags[marked] & M.PG_IDLE).all()
        # no PTE of any process still has an accessed bit on those folios
        for other in self.mms():
            for w in other.vmas:
                if not _ordinary(w):
                    continue
                vas, p, ptes = _user_ptes(self.k, other, w)
                h, _ = self.k.mem.folio_head(p)
                hit = np.isin(h, marked)
                assert not (ptes[hit] & PTE_ACCESSED).any(), (hex(w.start), "an accessed PTE the rmap missed")

    @invariant()
    def rmap_finds_every_pte(self):
        if not hasattr(self, "k"):
            return
        mem = self.k.mem
        for mm in self.mms():
            for v in mm.vmas:
                if not _ordinary(v):
                    continue
                vas, pfns, _ = _user_ptes(self.k, mm, v)
                if not len(pfns):
                    continue
                anon = (mem.flags[pfns] & M.PG_ANON) != 0
                ids = np.where(anon, v.anon_vma.root if v.anon_vma is not None else -1,
                               v.file.rmap_id if v.file is not None else -1)
                assert np.array_equal(mem.rmap_mapping[pfns], ids), hex(v.start)
                assert np.array_equal(mem.rmap_index[pfns], v.pgoff + ((vas - v.start) >> PAGE_SHIFT)), hex(v.start)

    @invariant()
    def old_pmds_hold_no_accessed_pte(self):
        if not hasattr(self, "k"):
            return
        for mm in self.mms():
            pt = mm.pgtable
            for i in pt.old:
                t = pt.tables.get(i)
                if t is not None:
                    assert not ((t & _YOUNG) == _YOUNG).any(), f"old PMD {i:#x} has an accessed PTE"
                e = pt.hugetlb.get(i)
                if e is not None:
                    assert e & int(_YOUNG) != int(_YOUNG)
            for p in pt.old_pud:
                for i in pt.tables.irange(p << 9, (p << 9) + 511):
                    assert not ((pt.tables[i] & _YOUNG) == _YOUNG).any(), f"old PUD {p:#x}"


TestIdleMachine = IdleMachine.TestCase
TestIdleMachine.settings = settings(max_examples=15, stateful_step_count=30, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
