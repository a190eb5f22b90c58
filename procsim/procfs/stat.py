"""/proc/stat, /proc/uptime and /proc/loadavg (spec §16–§18): CPU times,
the interrupt counts of procsim/irq.py, the scheduler's counts and the load
averages, all kernel state."""

from __future__ import annotations

from functools import lru_cache

from procsim.irq import IrqSnapshot, irq_snapshot
from procsim.procfs.context import Ctx
from procsim.sched import CPU
from procsim.softirq import softirq_counts
from procsim.units import clock_t


@lru_cache(maxsize=64)
def _zeros(n: int) -> str:
    """The runs of ' 0' that make up most of the intr line."""
    return " 0" * n


def _intr_line(s: IrqSnapshot) -> str:
    parts = [f"intr {s.total}"]
    pos = 0
    for line, counts in s.devices:  # ascending IRQ numbers
        parts.append(_zeros(line.irq - pos))
        parts.append(f" {sum(counts)}")
        pos = line.irq + 1
    parts.append(_zeros(s.nr_irqs - pos))
    return "".join(parts)


def _softirqs(s: IrqSnapshot) -> list[int]:
    """HI TIMER ... RCU: the per-CPU counts of /proc/softirqs, summed."""
    return [sum(row) for row in softirq_counts(s)]


def _cpu_row(c: CPU) -> list[int]:
    """The 7 modelled columns in ns; steal, guest and guest_nice are 0."""
    return [c.user, c.nice, c.system, c.idle, c.iowait, c.irq, c.softirq]


def stat(ctx: Ctx) -> bytes:
    k = ctx.kernel
    cpus = k.sched.cpus
    rows = [_cpu_row(c) for c in cpus]
    # The aggregate converts the summed ns, so it may exceed the per-CPU sum.
    agg = [sum(col) for col in zip(*rows)]
    lines = ["cpu  " + " ".join(str(clock_t(v)) for v in agg) + " 0 0 0"]
    lines += [f"cpu{c.id} " + " ".join(str(clock_t(v)) for v in r) + " 0 0 0" for c, r in zip(cpus, rows)]
    irqs = irq_snapshot(k)
    lines.append(_intr_line(irqs))
    running, blocked = k.sched.nr_running(), k.sched.nr_uninterruptible()
    soft = _softirqs(irqs)
    lines += [f"ctxt {sum(c.nr_switches for c in cpus)}", f"btime {k.btime}", f"processes {k.nr_forks}",
              f"procs_running {running}", f"procs_blocked {blocked}",
              f"softirq {sum(soft)} " + " ".join(map(str, soft))]
    return ("\n".join(lines) + "\n").encode()


def uptime(ctx: Ctx) -> bytes:
    """Both numbers truncated to 1/100 s; idle sums all CPUs (iowait excluded)."""
    k = ctx.kernel
    up = clock_t(k.now)
    idle = clock_t(sum(c.idle for c in k.sched.cpus))
    return f"{up // 100}.{up % 100:02d} {idle // 100}.{idle % 100:02d}\n".encode()


FSHIFT = 11
FIXED_1 = 1 << FSHIFT


def _load(avenrun: int) -> str:
    """LOAD_INT.LOAD_FRAC of avenrun + FIXED_1/200 (rounds to 1/100)."""
    v = avenrun + FIXED_1 // 200
    return f"{v >> FSHIFT}.{((v & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"


def loadavg(ctx: Ctx) -> bytes:
    k = ctx.kernel
    a = k.avenrun
    running = k.sched.nr_running()
    return f"{_load(a[0])} {_load(a[1])} {_load(a[2])} {running}/{k.nr_threads()} {k.last_pid}\n".encode()

