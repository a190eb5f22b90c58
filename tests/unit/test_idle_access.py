"""memory.access: vectorised user loads and stores (the hardware side of the
accessed and dirty bits), faults where needed, and the ground-truth hooks."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from procsim.mm.mm import MM_ANONPAGES, ZERO_PFN
from procsim.mm.pagetable import PMD_SIZE, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW, pte_pfn
from procsim.mm.task_mmu import clear_refs
from procsim.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_NONE, PROT_READ, PROT_WRITE
from invariants import boot, check_world

PAGE = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
BASE = 0x100000000


@pytest.fixture
def k():
    k = boot()
    yield k
    check_world(k)


@pytest.fixture
def p(k) -> int:
    return k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)


def ptes(k, p, addr, n):
    return k.group(p).mm.pgtable.read(addr, addr + n * PAGE)


class Log:
    def __init__(self):
        self.pages, self.ranges = [], []

    def record_pages(self, vas):
        self.pages.append(np.array(vas))

    def record_range(self, start, end):
        self.ranges.append((start, end))


def test_first_access_faults_and_later_ones_only_set_bits(k, p):
    k.mmap(p, 8 * PAGE, RW, ANON | MAP_FIXED, BASE)
    rss0 = k.group(p).mm.rss[MM_ANONPAGES]
    vas = BASE + PAGE * np.array([5, 1, 1, 3])
    assert k.access(p, vas, write=True) == 3
    e = ptes(k, p, BASE, 8)
    assert [bool(x & PTE_PRESENT) for x in e] == [False, True, False, True, False, True, False, False]
    mm = k.group(p).mm
    assert mm.rss[MM_ANONPAGES] == rss0 + 3
    clear_refs(mm, 1)
    assert not (ptes(k, p, BASE, 8) & PTE_ACCESSED).any()
    minflt = k.task(p).min_flt
    assert k.access(p, np.array([BASE + 3 * PAGE]), write=False) == 0
    assert k.task(p).min_flt == minflt
    e = ptes(k, p, BASE, 8)
    assert bool(e[3] & PTE_ACCESSED) and not e[1] & PTE_ACCESSED and not e[5] & PTE_ACCESSED


def test_read_maps_the_zero_page_and_a_write_then_breaks_it(k, p):
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE)
    assert k.access(p, np.array([BASE]), write=False) == 1
    e = ptes(k, p, BASE, 1)
    assert pte_pfn(e)[0] == ZERO_PFN and not e[0] & PTE_RW
    assert k.access(p, np.array([BASE]), write=True) == 1  # COW of the zero page
    e = ptes(k, p, BASE, 1)
    assert pte_pfn(e)[0] != ZERO_PFN and e[0] & PTE_RW and e[0] & PTE_DIRTY


def test_store_sets_dirty_load_does_not(k, p):
    k.mmap(p, 2 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, BASE, 2 * PAGE)
    mm = k.group(p).mm
    for _, sl in mm.pgtable.spans(BASE, BASE + 2 * PAGE):
        sl &= ~(PTE_DIRTY | PTE_ACCESSED)
    k.access(p, np.array([BASE]), write=False)
    k.access(p, np.array([BASE + PAGE]), write=True)
    e = ptes(k, p, BASE, 2)
    assert e[0] & PTE_ACCESSED and not e[0] & PTE_DIRTY
    assert e[1] & PTE_ACCESSED and e[1] & PTE_DIRTY


@pytest.mark.parametrize("vas,err", [
    ([BASE, BASE + 4 * PAGE], errno.EFAULT),  # past the end of the VMA
    ([BASE - PAGE], errno.EFAULT),            # before it
    ([BASE + 1], errno.EINVAL),               # not page aligned
])
def test_bad_addresses_fail_before_anything_changes(k, p, vas, err):
    k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, BASE)
    with pytest.raises(OSError) as e:
        k.access(p, np.array(vas), write=True)
    assert e.value.errno == err
    assert not ptes(k, p, BASE, 4).any()


def test_permissions_as_fault(k, p):
    k.mmap(p, PAGE, PROT_READ, ANON | MAP_FIXED, BASE)
    k.mmap(p, PAGE, PROT_NONE, ANON | MAP_FIXED, BASE + PAGE)
    k.access(p, np.array([BASE]), write=False)
    with pytest.raises(OSError) as e:
        k.access(p, np.array([BASE]), write=True)
    assert e.value.errno == errno.EFAULT
    with pytest.raises(OSError) as e:
        k.access(p, np.array([BASE + PAGE]), write=False)
    assert e.value.errno == errno.EFAULT


def test_thp_access_sets_the_one_pmd_bit(k, p):
    k.group(p).mm.mem.thp.enabled = "always"
    k.mmap(p, 2 * PMD_SIZE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, BASE, PMD_SIZE)
    mm = k.group(p).mm
    idx = BASE // PMD_SIZE
    assert idx in mm.pgtable.huge
    mm.pgtable.tables[idx] &= ~PTE_ACCESSED
    k.access(p, np.array([BASE + 7 * PAGE]), write=False)
    assert (mm.pgtable.tables[idx] & PTE_ACCESSED).all()


def test_access_marks_the_pmd_young_again(k, p):
    k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, BASE, 4 * PAGE)
    pt = k.group(p).mm.pgtable
    idx = BASE // PMD_SIZE
    pt.old.add(idx)
    pt.old_pud.add(idx >> 9)
    k.access(p, np.array([BASE + PAGE]), write=False)
    assert idx not in pt.old and (idx >> 9) not in pt.old_pud


def test_many_pages_vectorised(k, p):
    n = 1 << 16
    k.mmap(p, n * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(p, BASE, n * PAGE)
    mm = k.group(p).mm
    clear_refs(mm, 1)
    rng = np.random.default_rng(1)
    pick = rng.choice(n, n // 10, replace=False)
    assert k.access(p, BASE + PAGE * pick, write=False) == 0
    acc = (ptes(k, p, BASE, n) & PTE_ACCESSED) != 0
    assert np.array_equal(np.flatnonzero(acc), np.sort(pick))


def test_access_log_hooks_and_fork_does_not_inherit(k, p):
    k.mmap(p, 4 * PAGE, RW, ANON | MAP_FIXED, BASE)
    mm = k.group(p).mm
    log = mm.access_log = Log()
    k.touch(p, BASE, 2 * PAGE)
    k.access(p, np.array([BASE + 3 * PAGE, BASE]), write=False)
    assert log.ranges == [(BASE, BASE + 2 * PAGE)]
    assert sorted(log.pages[0].tolist()) == [BASE, BASE + 3 * PAGE]
    child = k.fork(p)
    assert k.group(child).mm.access_log is None
