"""/proc/schedstat (kernel/sched/stats.c show_schedstat, version 17) over
procsim/sched_stats.py."""

from __future__ import annotations

from procsim.bitmap import mask_str
from procsim.procfs.context import Ctx
from procsim.sched_stats import SCHEDSTAT_VERSION, domains, rq_stats

# per idle type (CPU_IDLE, CPU_NOT_IDLE, CPU_NEWLY_IDLE): lb_count ... lb_nobusyg,
# then the active, exec and fork balancing and wake-affine counters
_DOMAIN_ZEROS = " 0" * (3 * 11 + 12)


def schedstat(ctx: Ctx) -> bytes:
    k = ctx.kernel
    ncpu = k.config.nr_cpus
    # jiffies start at INITIAL_JIFFIES, 5 minutes before the 32-bit wrap
    jiffies = (1 << 32) - 300 * k.config.hz + k.jiffies
    out = [f"version {SCHEDSTAT_VERSION}\n", f"timestamp {jiffies}\n"]
    span = mask_str((1 << ncpu) - 1, ncpu)
    for cpu, r in enumerate(rq_stats(k)):
        out.append(f"cpu{cpu} {r.yld_count} 0 {r.sched_count} {r.sched_goidle} {r.ttwu_count} {r.ttwu_local} "
                   f"{r.rq_cpu_time} {r.run_delay} {r.pcount}\n")
        for d, name in enumerate(domains(ncpu)):
            out.append(f"domain{d} {name} {span}{_DOMAIN_ZEROS}\n")
    return "".join(out).encode()
