"""The vm_event counters are kernel state (procsim/mm/vmstat.py): counted
where Linux counts them, never by a read."""

from __future__ import annotations

import os

import pytest

from procsim.config import KernelConfig
from procsim.kernel import MADV_HUGEPAGE, MADV_PAGEOUT, Kernel
from procsim.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED
from procsim.procfs.context import Caller, Ctx
from procsim.procfs import vmstat
from invariants import boot

PAGE = 4096


def make() -> Kernel:
    return boot(nr_cpus=2, mem_bytes=4 << 30, swap_bytes=64 << 20, kthreadd=False)


def vm(k: Kernel) -> dict[str, int]:
    text = vmstat.vmstat(Ctx(k, Caller(os.getpid(), 0, 0))).decode()
    return {l.split()[0]: int(l.split()[1]) for l in text.splitlines()}


def test_boot_frees_every_free_frame() -> None:
    """memblock_free_all(): pgfree starts at the free frames, pgalloc at 0."""
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30))
    ev = k.mem.vm_events
    assert ev.pgalloc == 0 and ev.pgfree == k.mem.nr_free > 0


def test_a_read_changes_no_counter() -> None:
    k = make()
    p = k.spawn(["/usr/bin/bash"])
    k.touch(p, k.mmap(p, 1 << 20), 1 << 20)
    before = dict(k.mem.vm_events.items())
    assert vm(k) == vm(k)
    assert k.mem.vm_events.items() == before


def test_faults_allocations_and_frees_are_counted_where_they_happen() -> None:
    k = make()
    p = k.spawn(["/usr/bin/bash"])
    v0 = vm(k)
    a = k.mmap(p, 1 << 20)
    assert k.touch(p, a, 1 << 20) == 256
    v1 = vm(k)
    assert v1["pgfault"] - v0["pgfault"] == 256 and v1["pgmajfault"] == v0["pgmajfault"]
    assert v1["pgalloc_normal"] - v0["pgalloc_normal"] == 256
    assert v1["numa_hit"] - v0["numa_hit"] == 256 == v1["numa_local"] - v0["numa_local"]
    k.munmap(p, a, 1 << 20)
    v2 = vm(k)
    assert v2["pgfree"] - v1["pgfree"] == 256 and v2["pgfault"] == v1["pgfault"]
    # the allocator's free frames are what boot released, less allocations, plus frees
    assert v2["pgfree"] - v2["pgalloc_normal"] == k.mem.nr_free


def test_a_large_folio_is_one_allocation() -> None:
    """zone_statistics() counts numa_hit once per allocation, pgalloc per page."""
    k = make()
    k.set_thp(enabled="always")
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 4 << 20)
    k.madvise(p, a, 4 << 20, MADV_HUGEPAGE)
    v0 = vm(k)
    k.touch(p, a + (2 << 20), PAGE)  # one 2 MiB-aligned PMD fault
    v1 = vm(k)
    assert v1["pgalloc_normal"] - v0["pgalloc_normal"] == 512
    assert v1["numa_hit"] - v0["numa_hit"] == 1


def test_pgfault_survives_exit_and_reap() -> None:
    k = make()
    p = k.spawn(["/usr/bin/bash"])
    k.touch(p, k.mmap(p, 1 << 20), 1 << 20)
    before = vm(k)["pgfault"]
    k.exit_group(p)  # a child of init: reaped at once
    assert p not in k.groups and vm(k)["pgfault"] == before


def test_pgpgin_counts_file_reads_once_and_not_shmem() -> None:
    k = make()
    p = k.spawn(["/usr/bin/bash"])
    k.vfs.file("/data/f", size=1 << 20)
    a = k.mmap(p, 1 << 20, prot=1, flags=MAP_PRIVATE, path="/data/f")
    v0 = vm(k)
    k.touch(p, a, 1 << 20, write=False)
    v1 = vm(k)
    assert v1["pgpgin"] - v0["pgpgin"] == 1024  # kB
    q = k.spawn(["/usr/bin/bash"])
    b = k.mmap(q, 1 << 20, prot=1, flags=MAP_PRIVATE, path="/data/f")
    k.touch(q, b, 1 << 20, write=False)  # already in the page cache
    s = k.mmap(q, 1 << 20, flags=MAP_SHARED | MAP_ANONYMOUS)
    k.touch(q, s, 1 << 20)  # shmem pages start zeroed: no I/O
    v2 = vm(k)
    assert v2["pgpgin"] == v1["pgpgin"] and v2["pgfault"] - v1["pgfault"] == 512


def test_swapin_is_a_major_fault() -> None:
    """A swap-in that reads the page is major; one that finds it in the swap
    cache is minor (6.18: 1024 read faults right after MADV_PAGEOUT, 0 major)."""
    k = make()
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 1 << 20)
    k.touch(p, a, 1 << 20)
    k.madvise(p, a, 1 << 20, MADV_PAGEOUT)
    v0 = vm(k)
    assert v0["pswpout"] == 256
    k.touch(p, a, 128 * 4096, write=False)  # still in the swap cache
    v1 = vm(k)
    assert v1["pswpin"] == v0["pswpin"] and v1["pgmajfault"] == v0["pgmajfault"]
    assert v1["pgfault"] - v0["pgfault"] == 128
    k.shrink_swap_cache()  # the other 128 leave the cache
    k.touch(p, a, 1 << 20, write=False)
    v2 = vm(k)
    assert v2["pswpin"] - v1["pswpin"] == 128 == v2["pgmajfault"] - v1["pgmajfault"]
    assert v2["pgfault"] - v1["pgfault"] == 128


@pytest.mark.parametrize("seconds", [1, 60])
def test_pgpgout_follows_the_clock_only(seconds: int) -> None:
    k = make()
    v0 = vm(k)
    k.advance(seconds)
    assert vm(k)["pgpgout"] - v0["pgpgout"] == 2 * seconds


def test_a_small_machine_allocates_from_dma32() -> None:
    """1 GiB lies below 4 GiB: ZONE_NORMAL is empty, DMA32 is the first zone tried."""
    k = boot(nr_cpus=2, kthreadd=False)
    p = k.spawn(["/usr/bin/bash"])
    v0 = vm(k)
    k.touch(p, k.mmap(p, 1 << 20), 1 << 20)
    v1 = vm(k)
    assert v1["pgalloc_dma32"] - v0["pgalloc_dma32"] == 256 and v1["pgalloc_normal"] == 0
