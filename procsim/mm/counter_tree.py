"""Per-CPU counters for RSS: the hierarchical counter tree (seed-mechanisms
§3, "mm: hierarchical per-cpu counters for RSS tracking", v15/v16) and the
older flat percpu_counter it replaces, behind one interface.

Both keep one full-width int per CPU at level 0 (int32, as the kernel's
per-CPU counters) in one numpy array per group of counters, so an mm's four
RSS counters on a 384-CPU machine cost 4 x 384 x 4 bytes plus the shared
levels above, not a Python int per CPU.

Tree (`TreeShape`): the shape depends only on `order = ceil(log2(nr_cpus))`
(the table of §3.2): L levels with fan-out 2^a_l, thresholds T_0 = batch,
T_l = T_{l-1} * 2^a_{l-1}. An add changes the CPU's level-0 counter and
trickles a carry up, one multiple of T_l per crossing of a multiple of T_l
(floor semantics; the kernel's two's-complement bit tricks compute the same
when nothing overflows), into node `cpu mod N_l` of each level and finally
into the root, which is the approximate sum. The precise sum is the sum of
level 0. The documented accuracy range: with M = L * 2^order,
`precise - batch*M <= approx <= precise + (batch-1)*M`.

Flat (`FlatShape`): percpu_counter_add_batch(): a CPU's residue folds into
the global count when it reaches +-batch, batch = max(32, 2 * nr_cpus)
(percpu_counter_batch); approx = the global count, precise = count plus
every residue, |precise - approx| <= (batch-1) * nr_cpus.
"""

from __future__ import annotations

import numpy as np

RSS_STAT_BATCH_SIZE = 32
COUNTER_KINDS = ("tree", "flat")

# order -> fan-out orders a_0 .. a_{L-1} (seed-mechanisms §3.2)
_FANOUT = {
    0: (), 1: (1,), 2: (1, 1), 3: (1, 1, 1), 4: (2, 1, 1), 5: (2, 2, 1), 6: (2, 2, 2), 7: (3, 2, 2),
    8: (3, 3, 2), 9: (3, 3, 3), 10: (3, 3, 2, 2), 11: (3, 3, 3, 2), 12: (3, 3, 3, 3), 13: (3, 3, 3, 2, 2),
    14: (3, 3, 3, 3, 2), 15: (3, 3, 3, 3, 3), 16: (4, 3, 3, 3, 3), 17: (4, 4, 3, 3, 3), 18: (4, 4, 4, 3, 3),
    19: (4, 4, 4, 4, 3), 20: (4, 4, 4, 4, 4),
}


def _cmp(d: int) -> int:
    return (d > 0) - (d < 0)


class TreeShape:
    """The geometry of a counter tree for nr_cpus and batch: shared by every
    counter of that configuration (all RSS counters of a machine)."""

    kind = "tree"

    def __init__(self, nr_cpus: int, batch: int = RSS_STAT_BATCH_SIZE) -> None:
        if batch < 2 or batch & (batch - 1):
            raise ValueError("batch must be a power of two > 1")
        if nr_cpus < 1:
            raise ValueError("nr_cpus must be at least 1")
        self.nr_cpus, self.batch = nr_cpus, batch
        self.order = order = (nr_cpus - 1).bit_length()
        fan = _FANOUT[order]
        self.levels = nlev = len(fan)
        n = [1 << order]
        t = [batch]
        for a in fan:
            n.append(n[-1] >> a)
            t.append(t[-1] << a)
        self.nodes = n[:nlev]            # N_0 .. N_{L-1}
        self.thresholds = t[:nlev]       # T_0 .. T_{L-1}
        offsets, off = [], 0
        for lvl in range(1, nlev):
            offsets.append(off)
            off += n[lvl]
        self.nitems = off + 1            # levels 1..L-1 and the root
        self.root = off
        self.shift0 = batch.bit_length() - 1
        # per CPU: (item index, log2 T_l) of the node it feeds at each level >= 1
        self.path = [tuple((offsets[lvl - 1] + cpu % n[lvl], t[lvl].bit_length() - 1)
                           for lvl in range(1, nlev)) for cpu in range(nr_cpus)]
        m = nlev << order                # M = sum N_l * T_l / batch = L * 2^order
        self.under = batch * m           # approx may be this far below precise
        self.over = (batch - 1) * m      # ... and this far above

    def add(self, pcpu: np.ndarray, items: np.ndarray, k: int, cpu: int, inc: int) -> None:
        old = int(pcpu[k, cpu])
        new = old + inc
        pcpu[k, cpu] = new
        if not self.levels:              # one CPU: its counter is the root
            return
        s = self.shift0
        c = ((new >> s) - (old >> s)) << s
        if not c:
            return
        for idx, sh in self.path[cpu]:
            o = int(items[k, idx])
            n = o + c
            items[k, idx] = n
            c = ((n >> sh) - (o >> sh)) << sh
            if not c:
                return
        items[k, self.root] += c

    def approx(self, pcpu: np.ndarray, items: np.ndarray, k: int) -> int:
        if not self.levels:
            return int(pcpu[k, 0])
        return int(items[k, self.root])

    def precise(self, pcpu: np.ndarray, items: np.ndarray, k: int) -> int:
        return int(pcpu[k].sum(dtype=np.int64))

    def approx_all(self, pcpu: np.ndarray, items: np.ndarray) -> list[int]:
        return (items[:, self.root] if self.levels else pcpu[:, 0]).tolist()

    def precise_all(self, pcpu: np.ndarray, items: np.ndarray) -> list[int]:
        return pcpu.sum(axis=1, dtype=np.int64).tolist()

    def set(self, pcpu: np.ndarray, items: np.ndarray, k: int, v: int) -> int:
        """percpu_counter_tree_set(): returns the new bias (v - sum of level 0)."""
        return v - self.precise(pcpu, items, k)

    def describe(self) -> str:
        return f"tree nr_cpus {self.nr_cpus} batch {self.batch} levels {self.levels}"


class FlatShape:
    """percpu_counter with the default batch (the RSS counters of 6.2 .. 6.18)."""

    kind = "flat"
    nitems = 1
    levels = 1

    def __init__(self, nr_cpus: int, batch: int | None = None) -> None:
        if nr_cpus < 1:
            raise ValueError("nr_cpus must be at least 1")
        self.nr_cpus = nr_cpus
        # compute_batch_value(): max(32, 2 * online CPUs)
        self.batch = batch if batch is not None else max(32, 2 * nr_cpus)
        self.under = self.over = (self.batch - 1) * nr_cpus

    def add(self, pcpu: np.ndarray, items: np.ndarray, k: int, cpu: int, inc: int) -> None:
        count = int(pcpu[k, cpu]) + inc
        if abs(count) >= self.batch:
            items[k, 0] += count
            pcpu[k, cpu] = 0
        else:
            pcpu[k, cpu] = count

    def approx(self, pcpu: np.ndarray, items: np.ndarray, k: int) -> int:
        return int(items[k, 0])

    def precise(self, pcpu: np.ndarray, items: np.ndarray, k: int) -> int:
        return int(items[k, 0]) + int(pcpu[k].sum(dtype=np.int64))

    def approx_all(self, pcpu: np.ndarray, items: np.ndarray) -> list[int]:
        return items[:, 0].tolist()

    def precise_all(self, pcpu: np.ndarray, items: np.ndarray) -> list[int]:
        return (items[:, 0] + pcpu.sum(axis=1, dtype=np.int64)).tolist()

    def set(self, pcpu: np.ndarray, items: np.ndarray, k: int, v: int) -> int:
        """percpu_counter_set(): every residue to 0, the count to v (no bias)."""
        pcpu[k] = 0
        items[k, 0] = v
        return 0

    def describe(self) -> str:
        return f"flat nr_cpus {self.nr_cpus} batch {self.batch} levels 1"


Shape = TreeShape | FlatShape


def make_shape(kind: str, nr_cpus: int, batch: int = RSS_STAT_BATCH_SIZE) -> Shape:
    """The shape of the RSS counters for a machine: `batch` is the tree's
    (RSS_STAT_BATCH_SIZE); the flat counter takes percpu_counter_batch."""
    if kind == "tree":
        return TreeShape(nr_cpus, batch)
    if kind == "flat":
        return FlatShape(nr_cpus)
    raise ValueError(f"counter kind must be one of {', '.join(COUNTER_KINDS)}")


class Counters:
    """`n` counters of one shape (percpu_counter_tree_init_many): level 0 in
    one int32 array [n, nr_cpus], the levels above in one int64 array.

    Adds happen on a CPU; `cpu` is the CPU adds go to when none is given
    (the kernel sets it to the CPU the task runs on, as smp_processor_id()).
    """

    # _sums: RssStat.sums() of the counters as they stand, None after any
    # change (status, statm and stat each ask; the values, not the walk's
    # cost, are what the model promises)
    __slots__ = ("shape", "pcpu", "items", "bias", "cpu", "_sums")

    def __init__(self, shape: Shape, n: int) -> None:
        self.shape = shape
        self.pcpu = np.zeros((n, shape.nr_cpus), np.int32)
        self.items = np.zeros((n, shape.nitems), np.int64)
        self.bias = [0] * n
        self.cpu = 0
        self._sums: list[int] | None = None

    def add(self, k: int, delta: int, cpu: int | None = None) -> None:
        if delta:
            self._sums = None
            self.shape.add(self.pcpu, self.items, k, self.cpu if cpu is None else cpu, delta)

    def approx(self, k: int) -> int:
        """percpu_counter_tree_approximate_sum(): one load, may be negative."""
        return self.shape.approx(self.pcpu, self.items, k) + self.bias[k]

    def precise(self, k: int) -> int:
        """percpu_counter_tree_precise_sum(): a walk over every CPU."""
        return self.shape.precise(self.pcpu, self.items, k) + self.bias[k]

    def approx_all(self) -> list[int]:
        """Every counter's approximate sum (one read of each root)."""
        return [a + b for a, b in zip(self.shape.approx_all(self.pcpu, self.items), self.bias)]

    def precise_all(self) -> list[int]:
        """Every counter's precise sum (one walk over the CPUs for all of them)."""
        return [a + b for a, b in zip(self.shape.precise_all(self.pcpu, self.items), self.bias)]

    def approx_positive(self, k: int) -> int:
        return max(0, self.approx(k))

    def precise_positive(self, k: int) -> int:
        return max(0, self.precise(k))

    def range(self, k: int) -> tuple[int, int]:
        """Where the precise value lies given the approximation:
        [approx - over, approx + under] (approximate_min_max_range)."""
        a = self.approx(k)
        return a - self.shape.over, a + self.shape.under

    def set(self, k: int, v: int) -> None:
        self._sums = None
        self.bias[k] = self.shape.set(self.pcpu, self.items, k, v)

    def approximate_compare_value(self, k: int, v: int) -> int:
        """1 if v is greater than the counter, -1 if lower, 0 if the
        approximation cannot tell (v within the accuracy range)."""
        lo, hi = self.range(k)
        if v > hi:
            return 1
        if v < lo:
            return -1
        return 0

    def precise_compare_value(self, k: int, v: int) -> int:
        """As approximate_compare_value, but never undecided: the precise
        sum is taken only when the approximation cannot tell."""
        r = self.approximate_compare_value(k, v)
        return r if r else _cmp(v - self.precise(k))

    def __len__(self) -> int:
        return len(self.bias)


class PercpuCounter(Counters):
    """A single counter (percpu_counter_tree or percpu_counter), for tests
    and benchmarks: the kernel API names over counter 0."""

    __slots__ = ()

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape, 1)

    def add(self, cpu: int, inc: int) -> None:  # type: ignore[override]
        if inc:
            self._sums = None
            self.shape.add(self.pcpu, self.items, 0, cpu, inc)

    def approximate_sum(self) -> int:
        return self.approx(0)

    def precise_sum(self) -> int:
        return self.precise(0)

    def accuracy_range(self) -> tuple[int, int]:
        return self.range(0)

    def set_value(self, v: int) -> None:
        self.set(0, v)

    def compare_value(self, v: int) -> int:
        return self.approximate_compare_value(0, v)

    def precise_compare(self, v: int) -> int:
        return self.precise_compare_value(0, v)

    def precise_compare_counter(self, other: "PercpuCounter") -> int:
        """percpu_counter_tree_precise_compare(a=self, b=other): 1 if other
        is greater, -1 if lower, 0 if equal; approximations first, then the
        precise sum of one side, then of the other."""
        a_lo, a_hi = self.range(0)
        b_lo, b_hi = other.range(0)
        if b_lo > a_hi:
            return 1
        if b_hi < a_lo:
            return -1
        pa = self.precise(0)
        if b_lo > pa:
            return 1
        if b_hi < pa:
            return -1
        return _cmp(other.precise(0) - pa)


# RSS counters (include/linux/mm_types_task.h order)
MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = range(4)
NR_MM_COUNTERS = 4
RSS_NAMES = ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES")
_DEFAULT_SHAPE = TreeShape(1)


class RssStat(Counters):
    """mm->rss_stat[NR_MM_COUNTERS]. Indexing and iteration give the precise,
    clamped sums (get_mm_counter_sum), as /proc shows them."""

    __slots__ = ()

    def __init__(self, shape: Shape | None = None) -> None:
        super().__init__(shape or _DEFAULT_SHAPE, NR_MM_COUNTERS)

    @classmethod
    def for_mem(cls, mem) -> "RssStat":
        """The RSS counters of a new mm on the machine owning `mem` (the
        kernel puts its counter shape on the mem_map as `rss_shape`)."""
        return cls(getattr(mem, "rss_shape", None))

    def __getitem__(self, k: int) -> int:
        return self.precise_positive(k)

    def __iter__(self):
        return iter(self.sums())

    def sums(self) -> list[int]:
        """Every counter's precise sum clamped at 0 (get_mm_counter_sum), by
        counter index, from one walk over the CPUs (kept until a counter
        changes)."""
        v = self._sums
        if v is None:
            v = self._sums = [max(0, x) for x in self.precise_all()]
        return v.copy()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return self is other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RssStat({list(self)}, approx={[self.approx(k) for k in range(NR_MM_COUNTERS)]})"

    def rss_precise(self) -> int:
        """get_mm_rss_sum(): file + anon + shmem, precise (one walk over the CPUs)."""
        v = self.sums()
        return v[MM_FILEPAGES] + v[MM_ANONPAGES] + v[MM_SHMEMPAGES]

    def rss_approx(self) -> int:
        """get_mm_rss(): file + anon + shmem, each approximate and clamped at 0."""
        return self.approx_positive(MM_FILEPAGES) + self.approx_positive(MM_ANONPAGES) + \
            self.approx_positive(MM_SHMEMPAGES)

    def restore_residues(self, approx: int) -> None:
        """Leave the precise sums as they are and put residues on the CPUs
        so that rss_approx() reads `approx`: the per-CPU deltas a captured
        flat percpu_counter had not folded (what its stat rss showed against
        statm). The residue goes to the largest counters first, none of them
        read below 0, each CPU's below the batch. ValueError (EINVAL) for a
        tree, or a residue more than the CPUs can hold."""
        shape = self.shape
        if not isinstance(shape, FlatShape):
            raise ValueError("rss residues: only the flat percpu_counter is restored")
        ks = (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES)
        precise = {k: max(0, self.precise(k) - self.bias[k]) for k in ks}
        left = sum(precise.values()) - approx  # what the CPUs hold, summed
        cap = (shape.batch - 1) * shape.nr_cpus
        plan: dict[int, int] = {k: 0 for k in ks}
        for k in sorted(ks, key=lambda k: -precise[k]):
            take = max(-cap, min(left, precise[k], cap)) if left >= 0 else max(left, -cap)
            plan[k], left = take, left - take
        if left:
            raise ValueError(f"rss residues: {sum(precise.values()) - approx} pages do not fit in "
                             f"{shape.nr_cpus} CPUs' residues (batch {shape.batch})")
        self._sums = None  # the sums stay; the memo goes with any write
        for k, res in plan.items():
            self.pcpu[k] = 0
            self.items[k, 0] = precise[k] - res
            for cpu in range(shape.nr_cpus):  # |residue| < batch on each CPU
                part = max(-(shape.batch - 1), min(shape.batch - 1, res))
                self.pcpu[k, cpu] = part
                res -= part
