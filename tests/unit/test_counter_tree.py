"""The per-CPU counters behind RSS (seed-mechanisms §3.2-3.4, §3.7): the
hierarchical counter tree and the flat percpu_counter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from procsim.mm.counter_tree import (FlatShape, PercpuCounter, RssStat, TreeShape, MM_ANONPAGES,
                                     NR_MM_COUNTERS, make_shape)


def tree(n: int, batch: int = 32) -> PercpuCounter:
    return PercpuCounter(TreeShape(n, batch))


def flat(n: int) -> PercpuCounter:
    return PercpuCounter(FlatShape(n))


# -- shape: the table of §3.2 and the accuracy table of §3.4 -------------------

@pytest.mark.parametrize("cpus,levels,items,under,over", [
    (1, 0, 1, 0, 0), (2, 1, 1, 64, 62), (4, 2, 3, 256, 248), (8, 3, 7, 768, 744), (16, 3, 7, 1536, 1488),
    (32, 3, 11, 3072, 2976), (64, 3, 21, 6144, 5952), (100, 3, 21, 12288, 11904),
    (128, 3, 21, 12288, 11904), (256, 3, 37, 24576, 23808), (384, 3, 73, 49152, 47616),
    (512, 3, 73, 49152, 47616), (1024, 4, 149, 131072, 126976), (2048, 4, 293, 4 * 2048 * 32, 4 * 2048 * 31),
    (4096, 4, 585, 4 * 4096 * 32, 4 * 4096 * 31)])
def test_tree_shape_follows_the_table(cpus, levels, items, under, over):
    s = TreeShape(cpus, 32)
    assert (s.levels, s.nitems, s.under, s.over) == (levels, items, under, over)


def test_tree_shape_of_384_cpus_is_2_sockets_of_the_seed():
    s = TreeShape(384, 32)
    # order 9: 512 level-0 slots (384 used), 64 and 8 nodes above, thresholds 32, 256, 2048
    assert s.nodes == [512, 64, 8] and s.thresholds == [32, 256, 2048]
    assert s.under * 4096 == 192 << 20  # "the tree guarantees <= 192 MB on that topology"


def test_batch_must_be_a_power_of_two():
    for bad in (0, 1, 3, 48):
        with pytest.raises(ValueError):
            TreeShape(8, bad)


def test_flat_batch_and_accuracy():
    s = FlatShape(384)
    assert s.batch == 768  # percpu_counter_batch = max(32, 2 * nr_cpus)
    assert s.under == s.over == 767 * 384  # ~1.1 GiB of 4 KiB pages: the O(n^2) error of §3.1
    assert FlatShape(8).batch == 32


# -- behaviours of §3.7 ----------------------------------------------------------

def test_8_cpus_carries_reach_the_root_in_multiples_of_128():
    c = tree(8)
    for _ in range(127):
        c.add(0, 1)
    assert (c.precise_sum(), c.approximate_sum()) == (127, 0)
    c.add(0, 1)
    assert (c.precise_sum(), c.approximate_sum()) == (128, 128)


@pytest.mark.parametrize("n", [1, 2047, 2048, 5000, 10000])
def test_256_cpus_single_cpu_increments(n):
    c = tree(256)
    c.add(17, n)  # one add of n crosses the same thresholds as n adds of 1
    assert c.approximate_sum() == 2048 * (n // 2048) and c.precise_sum() == n
    d = tree(256)
    for _ in range(n % 300 + 2048):
        d.add(3, 1)
    assert d.approximate_sum() == 2048 * ((n % 300 + 2048) // 2048)


def test_2_cpus_and_1_cpu():
    c = tree(2)
    for i in range(1, 100):
        c.add(1, 1)
        assert c.approximate_sum() == 32 * (i // 32)
    one = tree(1)
    for v in (5, -3, 100, -200):
        one.add(0, v)
        assert one.approximate_sum() == one.precise_sum()
    assert one.precise_sum() == -98


def test_8_cpus_shared_level_1_node():
    c = tree(8)
    c.add(0, 64)
    c.add(4, 64)  # CPUs 0 and 4 feed the same level-1 node (cpu mod 4)
    assert c.approximate_sum() == 128
    d = tree(8)
    d.add(0, 64)
    d.add(1, 64)
    assert (d.approximate_sum(), d.precise_sum()) == (0, 128)


def test_a_single_decrement_propagates_a_whole_threshold_down():
    c = tree(8)
    c.add(0, -1)
    assert (c.approximate_sum(), c.precise_sum()) == (-128, -1)
    assert c.approx_positive(0) == 0 and c.precise_positive(0) == 0  # get_mm_counter clamps at 0


def test_set_moves_both_sums():
    c = tree(8)
    c.add(3, 1000)
    c.set_value(42)
    assert c.precise_sum() == 42
    lo, hi = c.accuracy_range()
    assert lo <= 42 <= hi
    c.add(5, 10)
    assert c.precise_sum() == 52
    f = flat(8)
    f.add(2, 31)
    f.set_value(7)
    assert f.precise_sum() == f.approximate_sum() == 7


def test_flat_folds_a_cpu_residue_at_the_batch():
    f = flat(8)  # batch 32
    f.add(0, 31)
    assert (f.approximate_sum(), f.precise_sum()) == (0, 31)
    f.add(0, 1)
    assert (f.approximate_sum(), f.precise_sum()) == (32, 32)
    f.add(1, -31)
    assert (f.approximate_sum(), f.precise_sum()) == (32, 1)
    f.add(1, -1)
    assert (f.approximate_sum(), f.precise_sum()) == (0, 0)


# -- properties (hypothesis): many CPUs, random adds from random CPUs ---------

CPUS = st.sampled_from([1, 2, 3, 4, 7, 8, 16, 33, 64, 100, 256, 384, 1024])


@st.composite
def add_sequences(draw):
    n = draw(CPUS)
    adds = draw(st.lists(st.tuples(st.integers(0, n - 1),
                                   st.one_of(st.integers(-3, 3), st.integers(-5000, 5000), st.sampled_from([512, -512]))),
                         max_size=300))
    return n, adds


@settings(max_examples=200, deadline=None)
@given(add_sequences())
def test_tree_precise_is_exact_and_within_the_accuracy_range(seq):
    n, adds = seq
    c = tree(n)
    s = c.shape
    total = 0
    for cpu, inc in adds:
        c.add(cpu, inc)
        total += inc
        assert c.precise_sum() == total
        approx = c.approximate_sum()
        assert total - s.under <= approx <= total + s.over        # documented bound
        lo, hi = c.accuracy_range()
        assert lo <= total <= hi
        # floor carries, nothing in flight: the root never runs ahead of the truth,
        # and stays within the sum of the residues each level can hold
        assert approx <= total
        tight = s.nodes[0] * (s.thresholds[0] - 1) + sum(
            s.nodes[lvl] * (s.thresholds[lvl] - s.thresholds[lvl - 1]) for lvl in range(1, s.levels)) if s.levels else 0
        assert total - approx <= tight


@settings(max_examples=200, deadline=None)
@given(add_sequences())
def test_flat_precise_is_exact_and_within_the_accuracy_range(seq):
    n, adds = seq
    c = flat(n)
    total = 0
    for cpu, inc in adds:
        c.add(cpu, inc)
        total += inc
        assert c.precise_sum() == total
        lo, hi = c.accuracy_range()
        assert lo <= total <= hi
        assert abs(total - c.approximate_sum()) <= c.shape.under


@settings(max_examples=200, deadline=None)
@given(add_sequences(), st.integers(-20000, 20000), st.booleans())
def test_comparisons_agree_with_the_exact_sum(seq, v, use_tree):
    n, adds = seq
    c = tree(n) if use_tree else flat(n)
    total = sum(inc for _, inc in adds)
    for cpu, inc in adds:
        c.add(cpu, inc)
    for value in (v, total, total + 1, total - 1, c.approximate_sum()):
        exact = (value > total) - (value < total)
        assert c.precise_compare(value) == exact
        a = c.compare_value(value)
        lo, hi = c.accuracy_range()
        if lo <= value <= hi:
            assert a == 0          # within the accuracy window: undecided
        else:
            assert a == exact != 0  # outside: a definite and right answer


@settings(max_examples=100, deadline=None)
@given(add_sequences(), st.lists(st.tuples(st.integers(0, 4095), st.integers(-5000, 5000)), max_size=100))
def test_precise_compare_of_two_counters(seq, other_adds):
    n, adds = seq
    a, b = tree(n), tree(n)
    ta = tb = 0
    for cpu, inc in adds:
        a.add(cpu, inc)
        ta += inc
    for cpu, inc in other_adds:
        b.add(cpu % n, inc)
        tb += inc
    assert a.precise_compare_counter(b) == (tb > ta) - (tb < ta)
    b.set_value(ta)
    assert a.precise_compare_counter(b) == 0


# -- the RSS counters of an mm ----------------------------------------------------

def test_rss_stat_reads_precise_and_clamped():
    r = RssStat(TreeShape(8))
    r.add(MM_ANONPAGES, 100, cpu=3)
    r.cpu = 6
    r.add(MM_ANONPAGES, 5)
    assert r[MM_ANONPAGES] == 105 and r.approx(MM_ANONPAGES) == 0
    assert int(r.pcpu[MM_ANONPAGES, 3]) == 100 and int(r.pcpu[MM_ANONPAGES, 6]) == 5
    assert list(r) == [0, 105, 0, 0] and r == [0, 105, 0, 0]
    r.add(MM_ANONPAGES, -106, cpu=1)  # more taken away on another CPU than was added there
    assert r[MM_ANONPAGES] == 0 and r.precise(MM_ANONPAGES) == -1


def test_rss_counters_of_10000_mms_on_384_cpus_are_small():
    shape = make_shape("tree", 384)
    mms = [RssStat(shape) for _ in range(10_000)]
    per_mm = mms[0].pcpu.nbytes + mms[0].items.nbytes
    assert per_mm == NR_MM_COUNTERS * (384 * 4 + 73 * 8)  # int32 per CPU, int64 per node above
    assert sum(m.pcpu.nbytes + m.items.nbytes for m in mms) < 90 << 20
    assert all(m.pcpu.dtype == np.int32 for m in mms[:3])


@given(st.lists(st.tuples(st.sampled_from(("add", "set", "sums")), st.integers(0, NR_MM_COUNTERS - 1),
                          st.integers(-3000, 3000), st.integers(0, 7)), max_size=60), st.booleans())
def test_rss_sums_kept_between_changes_match_a_fresh_walk(ops, use_tree):
    """sums() is kept until a counter changes: after any mix of adds, sets
    and reads it equals the clamped precise walk, and a caller's list is
    its own."""
    r = RssStat(TreeShape(8) if use_tree else FlatShape(8))
    for op, k, v, cpu in ops:
        if op == "add":
            r.add(k, v, cpu=cpu)
        elif op == "set":
            r.set(k, v)
        else:
            got = r.sums()
            got[k] += 1  # must not reach the next reader
        assert r.sums() == [max(0, x) for x in r.precise_all()]
