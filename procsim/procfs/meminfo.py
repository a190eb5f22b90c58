"""/proc/meminfo (spec §15): meminfo_proc_show() over the kernel's memory
snapshot (procsim/mm/show_mem.py)."""

from __future__ import annotations

from procsim.mm.show_mem import HPAGE_KB, PAGE_KB, direct_map, mem_snapshot
from procsim.procfs.context import Ctx

VMALLOC_TOTAL_KB = 34359738367  # x86_64 with 4-level paging


def meminfo(ctx: Ctx) -> bytes:
    k = ctx.kernel
    m = mem_snapshot(k)
    p = PAGE_KB
    k4, m2, g1 = direct_map(k.config.mem_bytes >> 10)
    slab = m.slab_reclaimable + m.slab_unreclaimable
    rows = (
        ("MemTotal", m.total * p), ("MemFree", m.free * p), ("MemAvailable", m.available * p),
        ("Buffers", m.buffers * p), ("Cached", m.cached * p), ("SwapCached", m.swapcached * p),
        ("Active", (m.active_anon + m.active_file) * p),
        ("Inactive", (m.inactive_anon + m.inactive_file) * p),
        ("Active(anon)", m.active_anon * p), ("Inactive(anon)", m.inactive_anon * p),
        ("Active(file)", m.active_file * p), ("Inactive(file)", m.inactive_file * p),
        ("Unevictable", m.unevictable * p), ("Mlocked", m.mlocked * p),
        ("SwapTotal", m.swap_total * p), ("SwapFree", m.swap_free * p),
        ("Zswap", 0), ("Zswapped", 0), ("Dirty", 0), ("Writeback", 0),
        ("AnonPages", m.anon * p), ("Mapped", m.mapped * p), ("Shmem", m.shmem * p),
        ("KReclaimable", m.slab_reclaimable * p), ("Slab", slab * p),
        ("SReclaimable", m.slab_reclaimable * p), ("SUnreclaim", m.slab_unreclaimable * p),
        ("KernelStack", m.kernel_stack_kb), ("PageTables", m.pagetables * p), ("SecPageTables", 0),
        ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
        ("CommitLimit", m.commit_limit * p), ("Committed_AS", m.committed * p),
        ("VmallocTotal", VMALLOC_TOTAL_KB), ("VmallocUsed", m.vmalloc_used * p), ("VmallocChunk", 0),
        ("Percpu", m.percpu * p),
        ("AnonHugePages", m.anon_thp * p), ("ShmemHugePages", 0), ("ShmemPmdMapped", 0), ("FileHugePages", 0),
        ("FilePmdMapped", 0), ("Balloon", 0),
    )
    tail = (("Hugepagesize", HPAGE_KB), ("Hugetlb", m.hugetlb * p),
            ("DirectMap4k", k4), ("DirectMap2M", m2), ("DirectMap1G", g1))
    out = [f"{name + ':':<16}{v:>8} kB\n" for name, v in rows]
    # hugetlb_report_meminfo(): the page counts have no unit ("%5lu" after the label)
    # (no surplus pages in the model: Surp is 0)
    out += [f"HugePages_Total:   {m.huge_total:>5}\n", f"HugePages_Free:    {m.huge_free:>5}\n",
            f"HugePages_Rsvd:    {m.huge_rsvd:>5}\n", f"HugePages_Surp:    {0:>5}\n"]
    out += [f"{name + ':':<16}{v:>8} kB\n" for name, v in tail]
    return "".join(out).encode()

