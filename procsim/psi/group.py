"""One psi_group (kernel/sched/psi.c): for each of cpu, memory and io the
time some and all non-idle tasks stalled (total, ns), and the running
averages over 10 s, 60 s and 300 s, updated every psi_period (PSI_FREQ,
2 s and a jiffy) from the stall time of the period ending, as
update_averages() and calc_avgs() do, in FSHIFT fixed point with the
EXP_10s/EXP_60s/EXP_300s factors."""

from __future__ import annotations

from dataclasses import dataclass, field

FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP_10s, EXP_60s, EXP_300s = 1677, 1981, 2034  # 1/exp(2s/10s), 1/exp(2s/60s), 1/exp(2s/300s)
EXPS = (EXP_10s, EXP_60s, EXP_300s)
# the states, in psi.c's order: IO, MEM, CPU, some and full each
STATES = ("io_some", "io_full", "memory_some", "memory_full", "cpu_some", "cpu_full")
RESOURCES = ("io", "memory", "cpu")


def calc_load(load: int, exp: int, active: int) -> int:
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return newload // FIXED_1


def fixed_power_int(x: int, frac_bits: int, n: int) -> int:
    result = 1 << frac_bits
    while n:
        if n & 1:
            result = (result * x + (1 << (frac_bits - 1))) >> frac_bits
        n >>= 1
        if not n:
            break
        x = (x * x + (1 << (frac_bits - 1))) >> frac_bits
    return result


def calc_load_n(load: int, exp: int, active: int, n: int) -> int:
    return calc_load(load, fixed_power_int(exp, FSHIFT, n), active)


def calc_avgs(avg: list[int], missed_periods: int, time: int, period: int) -> None:
    """Decay each average over the periods without a sample, then fold in
    the share of the last period spent stalled."""
    if missed_periods:
        for i, e in enumerate(EXPS):
            avg[i] = calc_load_n(avg[i], e, 0, missed_periods)
    pct = time * 100 // period * FIXED_1
    for i, e in enumerate(EXPS):
        avg[i] = calc_load(avg[i], e, pct)


@dataclass(eq=False)
class PsiGroup:
    period: int                       # psi_period, ns
    avg_next_update: int              # when the averages are next updated
    avg_last_update: int
    total: list[int] = field(default_factory=lambda: [0] * len(STATES))      # ns
    avg_total: list[int] = field(default_factory=lambda: [0] * len(STATES))  # what the averages took
    avg: list[list[int]] = field(default_factory=lambda: [[0, 0, 0] for _ in STATES])

    @classmethod
    def new(cls, now: int, period: int) -> "PsiGroup":
        return cls(period, now + period, now)

    def copy(self) -> "PsiGroup":
        return PsiGroup(self.period, self.avg_next_update, self.avg_last_update, list(self.total),
                        list(self.avg_total), [list(a) for a in self.avg])

    def update_averages(self, now: int) -> None:
        """update_averages(): the clock at fixed psi_period steps (missed
        ones decay the averages with no sample); a sample larger than the
        period is cut to it and the rest carried into the next."""
        expires = self.avg_next_update
        missed = (now - expires) // self.period if now - expires >= self.period else 0
        self.avg_next_update = expires + (1 + missed) * self.period
        period = now - (self.avg_last_update + missed * self.period)
        self.avg_last_update = now
        if period <= 0:
            return
        for s in range(len(STATES)):
            sample = min(self.total[s] - self.avg_total[s], period)
            avg = self.avg[s]
            if not sample and not (avg[0] or avg[1] or avg[2]):
                continue  # calc_avgs() of nothing on zeros: zeros
            self.avg_total[s] += sample
            calc_avgs(avg, missed, sample, period)

    def idle(self) -> bool:
        return self.total == self.avg_total and not any(any(a) for a in self.avg)
