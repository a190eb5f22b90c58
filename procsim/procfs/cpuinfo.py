"""/proc/cpuinfo (spec §19): one block per online CPU, a pure function of
the machine's CPU. Each block is the architecture's c_show()
(procsim/arch/): x86's show_cpuinfo() over boot_cpu_data (procsim/cpu.py),
the fixed identities of arm64 and riscv (a Neoverse N1, a SiFive U74).
"""

from __future__ import annotations

from functools import lru_cache

from procsim import arch
from procsim.config import KernelConfig
from procsim.procfs.context import Ctx


@lru_cache(maxsize=16)
def _cpuinfo(arch_name: str, boot_cpu: object, ncpu: int, hz: int) -> bytes:
    a = arch.get(arch_name)
    return "".join(a.show_cpuinfo(boot_cpu, cpu, ncpu, hz) for cpu in range(ncpu)).encode()


def render(cfg: KernelConfig) -> bytes:
    return _cpuinfo(cfg.arch, cfg.boot_cpu, cfg.nr_cpus, cfg.hz)


def cpuinfo(ctx: Ctx) -> bytes:
    """Every online CPU (all of them: no hotplug); static for a machine, so cached."""
    return render(ctx.kernel.config)
