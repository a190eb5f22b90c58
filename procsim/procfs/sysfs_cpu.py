"""/sys/devices/system/cpu and /sys/devices/system/node: the CPU devices
(drivers/base/cpu.c, topology.c, cpufreq) and the one memory node
(drivers/base/node.c), from the machine config: nr_cpus, the CPU model's
SMT layout (procsim/cpu.py topology()) and frequency, and the memory
snapshot for node0/meminfo (its lines are /proc/meminfo's, per node)."""

from __future__ import annotations

import errno
from functools import lru_cache

from procsim.bitmap import list_str, mask_str
from procsim.cpu import CpuInfoX86, topology
from procsim.kernel import Kernel
from procsim.mm.show_mem import PAGE_KB, mem_snapshot
from procsim.procfs import small_files
from procsim.procfs.context import Caller, Ctx
from procsim.procfs.kinds import Dir, DynDir, Node, Show

_RO = dict(write_open_errno=errno.EACCES)
NR_CPUS = 256  # CONFIG_NR_CPUS of the reference kernel: kernel_max is NR_CPUS - 1


def _threads(k: Kernel) -> int:
    c = k.config.boot_cpu
    if isinstance(c, CpuInfoX86):
        n = k.config.nr_cpus
        return c.threads_per_core if n % c.threads_per_core == 0 else 1
    return 1


def _text(s: str) -> bytes:
    return f"{s}\n".encode()


def _topology(cpu: int) -> Dir:
    def mask(fn):
        def render(ctx: Ctx) -> bytes:
            return _text(mask_str(fn(ctx.kernel), ctx.kernel.config.nr_cpus))
        return render

    def lst(fn):
        return lambda ctx: _text(list_str(fn(ctx.kernel)))

    def core(k: Kernel) -> int:
        t = _threads(k)
        return ((1 << t) - 1) << (cpu // t * t)

    def pkg(k: Kernel) -> int:
        return (1 << k.config.nr_cpus) - 1

    def core_id(ctx: Ctx) -> bytes:
        k = ctx.kernel
        c = k.config.boot_cpu
        if isinstance(c, CpuInfoX86):
            return _text(str(topology(c, cpu, k.config.nr_cpus).core_id))
        return _text(str(cpu))

    rows = [("cluster_cpus", mask(core)), ("cluster_cpus_list", lst(core)),
            ("cluster_id", lambda ctx: b"65535\n"),
            ("core_cpus", mask(core)), ("core_cpus_list", lst(core)), ("core_id", core_id),
            ("core_siblings", mask(pkg)), ("core_siblings_list", lst(pkg)),
            ("die_cpus", mask(pkg)), ("die_cpus_list", lst(pkg)), ("die_id", lambda ctx: b"0\n"),
            ("package_cpus", mask(pkg)), ("package_cpus_list", lst(pkg)),
            ("physical_package_id", lambda ctx: b"0\n"),
            ("thread_siblings", mask(core)), ("thread_siblings_list", lst(core))]
    return Dir.of("topology", *(Show(name, fn, **_RO) for name, fn in rows))


def _khz(ctx: Ctx) -> int:
    c = ctx.kernel.config.boot_cpu
    return getattr(c, "khz", None) or 0


def _cpufreq(cpu: int) -> Dir:
    """A fixed-frequency CPU under the performance governor: every
    frequency is the model's (cpu MHz of /proc/cpuinfo)."""
    freq = lambda ctx: _text(str(_khz(ctx)))  # noqa: E731
    one = lambda ctx: _text(str(cpu))  # noqa: E731
    rows = [("affected_cpus", one, 0o444), ("cpuinfo_cur_freq", freq, 0o400), ("cpuinfo_max_freq", freq, 0o444),
            ("cpuinfo_min_freq", freq, 0o444), ("cpuinfo_transition_latency", lambda ctx: b"0\n", 0o444),
            ("related_cpus", one, 0o444),
            ("scaling_available_governors", lambda ctx: b"performance\n", 0o444),
            ("scaling_cur_freq", freq, 0o444), ("scaling_driver", lambda ctx: b"procsim-cpufreq\n", 0o444),
            ("scaling_governor", lambda ctx: b"performance\n", 0o644),
            ("scaling_max_freq", freq, 0o644), ("scaling_min_freq", freq, 0o644),
            ("scaling_setspeed", lambda ctx: b"<unsupported>\n", 0o644)]
    return Dir.of("cpufreq", *(Show(name, fn, mode, **_RO) for name, fn, mode in rows))


@lru_cache(maxsize=1024)
def cpu_dir(cpu: int, with_online: bool, with_cpufreq: bool) -> Dir:
    rows: list = []
    if with_cpufreq:
        rows.append(_cpufreq(cpu))
    if with_online:  # x86's boot CPU cannot be offlined: it has no online file
        rows.append(Show("online", lambda ctx: b"1\n", 0o644, **_RO))
    rows.append(_topology(cpu))
    return Dir(f"cpu{cpu}", tuple(rows), mode=0o755)


def _cpu_lookup(parent: Node, name: str, caller: Caller, kernel: Kernel) -> tuple[Node, bool]:
    n = kernel.config.nr_cpus
    if name.startswith("cpu") and name[3:].isdigit() and name[3:] == str(int(name[3:])) and int(name[3:]) < n:
        cpu = int(name[3:])
        online = not (cpu == 0 and kernel.config.arch == "x86")
        return Node("dir", cpu_dir(cpu, online, bool(getattr(kernel.config.boot_cpu, "khz", None)))), False
    raise OSError(errno.ENOENT, name)


def _cpu_readdir(parent: Node, kernel: Kernel) -> list[str]:
    return [f"cpu{i}" for i in range(kernel.config.nr_cpus)]


def _all_cpus(ctx: Ctx) -> bytes:
    return _text(list_str((1 << ctx.kernel.config.nr_cpus) - 1))


CPU_ROWS = (
    Show("isolated", lambda ctx: b"\n", **_RO),
    Show("kernel_max", lambda ctx: _text(str(NR_CPUS - 1)), **_RO),
    Show("offline", lambda ctx: b"\n", **_RO),
    Show("online", small_files.cpu_online, **_RO),
    Show("possible", small_files.cpu_possible, **_RO),
    Show("present", _all_cpus, **_RO),
)
CPU = DynDir("cpu", CPU_ROWS, mode=0o755, lookup=_cpu_lookup, readdir=_cpu_readdir)


# -- node0 ------------------------------------------------------------------------


def node_meminfo(ctx: Ctx) -> bytes:
    """node_read_meminfo(): the node's share of /proc/meminfo (all of it: one node)."""
    k = ctx.kernel
    m = mem_snapshot(k)
    p = PAGE_KB
    slab = m.slab_reclaimable + m.slab_unreclaimable
    rows = (("MemTotal", m.total * p), ("MemFree", m.free * p), ("MemUsed", (m.total - m.free) * p),
            ("SwapCached", m.swapcached * p), ("Active", (m.active_anon + m.active_file) * p),
            ("Inactive", (m.inactive_anon + m.inactive_file) * p),
            ("Active(anon)", m.active_anon * p), ("Inactive(anon)", m.inactive_anon * p),
            ("Active(file)", m.active_file * p), ("Inactive(file)", m.inactive_file * p),
            ("Unevictable", m.unevictable * p), ("Mlocked", m.mlocked * p),
            ("Dirty", k.mem.nr_file_dirty * p), ("Writeback", 0), ("FilePages", m.file_pages * p),
            ("Mapped", m.mapped * p), ("AnonPages", m.anon * p), ("Shmem", m.shmem * p),
            ("KernelStack", m.kernel_stack_kb), ("PageTables", m.pagetables * p), ("SecPageTables", 0),
            ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0), ("KReclaimable", m.slab_reclaimable * p),
            ("Slab", slab * p), ("SReclaimable", m.slab_reclaimable * p),
            ("SUnreclaim", m.slab_unreclaimable * p), ("AnonHugePages", m.anon_thp * p),
            ("ShmemHugePages", 0), ("ShmemPmdMapped", 0), ("FileHugePages", 0), ("FilePmdMapped", 0))
    out = [f"Node 0 {name + ':':<16}{v:>8} kB\n" for name, v in rows]
    out += [f"Node 0 HugePages_Total: {m.huge_total:>5}\n", f"Node 0 HugePages_Free:  {m.huge_free:>5}\n",
            f"Node 0 HugePages_Surp:  {0:>5}\n"]
    return "".join(out).encode()


def node_numastat(ctx: Ctx) -> bytes:
    """node_read_numastat(): every allocation is local on the one node."""
    hit = ctx.kernel.mem.vm_events.numa_hit
    return (f"numa_hit {hit}\nnuma_miss 0\nnuma_foreign 0\ninterleave_hit 0\nlocal_node {hit}\n"
            f"other_node 0\n").encode()


def _node_cpumap(ctx: Ctx) -> bytes:
    n = ctx.kernel.config.nr_cpus
    return _text(mask_str((1 << n) - 1, n))


NODE = Dir("node", (
    Show("has_cpu", lambda ctx: b"0\n", **_RO),
    Show("has_memory", lambda ctx: b"0\n", **_RO),
    Show("has_normal_memory", lambda ctx: b"0\n", **_RO),
    Dir("node0", (
        Show("cpulist", _all_cpus, **_RO),
        Show("cpumap", _node_cpumap, **_RO),
        Show("distance", lambda ctx: b"10\n", **_RO),
        Show("meminfo", node_meminfo, **_RO),
        Show("numastat", node_numastat, **_RO),
    ), mode=0o755),
    Show("online", lambda ctx: b"0\n", **_RO),
    Show("possible", lambda ctx: b"0\n", **_RO),
), mode=0o755)
