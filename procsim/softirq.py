"""Softirq counts (kernel/softirq.c kstat_softirqs_cpu), per softirq and
CPU, a pure function of the interrupt snapshot of procsim/irq.py: the timer,
scheduler and RCU softirqs ride on each CPU's tick; block and network
softirqs follow their device IRQs on the CPU that took them."""

from __future__ import annotations

from procsim.irq import IrqSnapshot

SOFTIRQ_NAMES = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU")


def _device_cpus(s: IrqSnapshot, kind: str, ncpu: int) -> list[int]:
    out = [0] * ncpu
    for line, counts in s.devices:
        if line.kind == kind:
            for i, c in enumerate(counts):
                out[i] += c
    return out


def softirq_counts(s: IrqSnapshot) -> list[list[int]]:
    """Per softirq (SOFTIRQ_NAMES order), the count on each CPU."""
    ncpu = len(s.loc)
    zero = [0] * ncpu
    timer = [t // 3 for t in s.loc]
    return [zero, timer, [n // 100 for n in _device_cpus(s, "net_tx", ncpu)],
            [n * 2 for n in _device_cpus(s, "net_rx", ncpu)], _device_cpus(s, "disk", ncpu), zero, zero,
            [t * 2 // 3 for t in s.loc], zero, timer]
