"""`[machine]`: the scenario's keys for the hardware and the kernel's knobs,
turned into a KernelConfig."""

from __future__ import annotations

from procsim.config import KernelConfig
from procsim.scenario.schema import ScenarioError, _fields, _t_bool, _t_int, _t_num, _t_size, _t_str, _t_table

# scenario key -> KernelConfig field
MACHINE = {"arch": ("arch", _t_str), "nr_cpus": ("nr_cpus", _t_int), "mem": ("mem_bytes", _t_size),
           "swap": ("swap_bytes", _t_size), "hz": ("hz", _t_int), "cpumask_model": ("cpumask_model", _t_str),
           "proc_cpus_active_mm": ("proc_cpus_active_mm", _t_bool), "clock": ("clock", _t_str),
           "seed": ("seed", _t_int), "hostname": ("hostname", _t_str), "osrelease": ("osrelease", _t_str),
           "pid_max": ("pid_max", _t_int), "btime": ("btime", _t_int), "boot_uptime": ("boot_uptime", _t_num),
           "kernel_reserved": ("kernel_reserved_bytes", _t_size), "model_name": ("model_name", _t_str),
           "cpu_mhz": ("cpu_mhz", _t_num), "hugepages": ("hugepages", _t_int)}
# the CPU model (procsim/cpu.py) and the kernel's build banner
MACHINE.update({"cpu": ("cpu", _t_str), "version": ("version", _t_str)})
# a captured machine's CPU block (cpu = "captured", procsim/capture/)
MACHINE.update({"cpuinfo": ("cpuinfo", _t_str), "threads_max": ("threads_max", _t_int)})
# the memory-accounting knobs: mapcount model, THP policy, soft-dirty, pkeys
MACHINE.update({"mapcount_model": ("mapcount_model", _t_str), "thp_enabled": ("thp_enabled", _t_str),
                "thp_sizes": ("thp_sizes", _t_table), "mem_soft_dirty": ("mem_soft_dirty", _t_bool),
                "pkeys": ("pkeys", _t_bool)})
# RSS counters and the OOM killer
MACHINE.update({"rss_counter": ("rss_counter", _t_str), "stat_rss": ("stat_rss", _t_str),
                "oom_two_pass": ("oom_two_pass", _t_bool)})
MACHINE.update({"ssb_mode": ("ssb_mode", _t_str), "spectre_v2_user": ("spectre_v2_user", _t_str)})  # arch/bugs.py


def machine_config(d: dict, seed: int | None, clock: str | None) -> KernelConfig:
    """The KernelConfig of a `[machine]` table; seed and clock override its values."""
    schema = {key: conv for key, (_, conv) in MACHINE.items()}
    vals = _fields(d, schema, "machine")
    kw = {MACHINE[key][0]: v for key, v in vals.items()}
    if seed is not None:
        kw["seed"] = seed
    if clock is not None:
        kw["clock"] = clock
    try:
        return KernelConfig.from_dict(kw)
    except (ValueError, TypeError) as e:
        raise ScenarioError(f"machine: {e}") from None
