"""AccessLog: the ground truth of touched pages, by time."""

from __future__ import annotations

import numpy as np
import pytest

from procsim.mm.access_log import AccessLog, HistoryLost, bitmap, ranges

P = 4096


class Clock:
    def __init__(self) -> None:
        self.t = 1000

    def __call__(self) -> int:
        return self.t


def va(*vpns: int) -> np.ndarray:
    return np.array(vpns, np.int64) << 12


def test_pages_and_ranges_since_a_time():
    c = Clock()
    log = AccessLog(c)
    log.record_pages(va(5, 3, 5, 700))          # repeats and two chunks
    c.t = 2000
    log.record_range(0x200000, 0x200000 + 3 * P)  # vpns 512..514
    assert log.touched(1000).tolist() == [3, 5, 512, 513, 514, 700]
    assert log.touched(1001).tolist() == [512, 513, 514]   # the range was made at 2000
    assert log.touched(2001).tolist() == []
    assert log.count(0) == 6


def test_a_page_touched_again_moves_to_the_later_time_but_intervals_keep_the_first():
    c = Clock()
    log = AccessLog(c)
    log.record_pages(va(1, 2))
    c.t = 2000
    log.record_pages(va(2, 9))
    c.t = 3000
    log.record_pages(va(4))
    assert log.touched(1500).tolist() == [2, 4, 9]           # since 1500, up to now
    assert log.touched(1000, 2000).tolist() == [1, 2]        # from the history
    assert log.touched(1000, 3000).tolist() == [1, 2, 9]
    assert log.touched(2000, 3000).tolist() == [2, 9]
    assert log.touched(2000, 2000).tolist() == []
    assert log.touched(1000, 10**9).tolist() == [1, 2, 4, 9]  # ends after the newest epoch


def test_records_at_one_instant_are_one_epoch():
    c = Clock()
    log = AccessLog(c)
    log.record_pages(va(1))
    log.record_range(10 * P, 12 * P)
    c.t = 5000
    log.record_pages(va(1000))
    assert log.epochs() == [(1000, 3), (5000, 1)]


def test_range_over_many_chunks_with_partial_edges():
    c = Clock()
    log = AccessLog(c)
    start, end = 500 * P, (3 * 512 + 7) * P       # ends 7 pages into the 4th chunk
    log.record_range(start, end)
    got = log.touched(0)
    assert got.tolist() == list(range(500, 3 * 512 + 7))
    c.t += 1
    log.record_pages(va(0))
    assert log.touched(1000, 1001).tolist() == list(range(500, 3 * 512 + 7))


def test_many_chunks_in_random_order_grow_the_slots():
    c = Clock()
    log = AccessLog(c)
    rng = np.random.default_rng(1)
    vpns = rng.choice(1 << 30, 20000, replace=False)   # 4 TiB of address space
    for part in np.array_split(vpns, 7):
        log.record_pages(part << 12)
        c.t += 10
    assert log.touched(0).tolist() == sorted(vpns.tolist())
    assert log.touched(0, c.t - 10).tolist() == sorted(np.concatenate(np.array_split(vpns, 7)[:6]).tolist())


def test_history_bound_drops_old_epochs_but_since_stays_exact():
    c = Clock()
    log = AccessLog(c, history_bytes=3 * 72)   # three one-chunk epochs fit
    for i in range(6):
        log.record_pages(va(i * 512))              # each epoch: one page of its own chunk
        c.t += 1000
    log.record_pages(va(1))                        # epoch 7, at 7000
    # the query closes epoch 7: epochs at 5000, 6000, 7000 stay, 1000-4000 are dropped
    with pytest.raises(HistoryLost):
        log.touched(4000, 6000)
    assert log.touched(5000, 7000).tolist() == [4 * 512, 5 * 512]
    assert log.touched(1000).tolist() == [0, 1] + [i * 512 for i in range(1, 6)]
    assert log.nbytes < 1 << 20


def test_since_before_the_first_record_and_after_the_last():
    c = Clock()
    log = AccessLog(c)
    assert log.touched(0).tolist() == []
    log.record_pages(va(7))
    assert log.touched(-5).tolist() == [7]
    assert log.touched(1001).tolist() == []


def test_ranges_and_bitmap_helpers():
    vpns = np.array([1, 2, 3, 7, 64, 65], np.int64)
    assert ranges(vpns) == [(P, 4 * P), (7 * P, 8 * P), (64 * P, 66 * P)]
    assert ranges(vpns[:0]) == []
    bm = bitmap(vpns, 0, 72 * P)
    assert len(bm) == 9
    assert bm[0] == 0b10001110
    assert bm[8] == 0b00000011
    assert bitmap(vpns, 64 * P, 66 * P).tolist() == [0b11]
