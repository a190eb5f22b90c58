"""/proc/PID/smaps and /proc/PID/smaps_rollup (spec §4, §5): the maps line
of each VMA followed by its mem_size_stats, which procsim.mm.stats computes
from the page tables under the configured mapcount model."""

from __future__ import annotations

import errno

from procsim.mm import stats
from procsim.mm.mm import MM
from procsim.mm.stats import PSS_SHIFT, MemSizeStats
from procsim.mm.vma import MNEMONICS, VM_HUGETLB, VMA
from procsim.procfs import maps
from procsim.procfs.context import Ctx

# The gate VMA's block: only the sizes of one page (spec §4.3).
_GATE_TAIL = ("Size:                  4 kB\nKernelPageSize:        4 kB\nMMUPageSize:           4 kB\n"
              + "".join(f"{label:<16}{0:>8} kB\n" for label in (
                  "Rss:", "Pss:", "Pss_Dirty:", "Shared_Clean:", "Shared_Dirty:", "Private_Clean:",
                  "Private_Dirty:", "Referenced:", "Anonymous:", "KSM:", "LazyFree:", "AnonHugePages:",
                  "ShmemPmdMapped:", "FilePmdMapped:", "Shared_Hugetlb:"))
              + "Private_Hugetlb:       0 kB\n"
              + "".join(f"{label:<16}{0:>8} kB\n" for label in ("Swap:", "SwapPss:", "Locked:"))
              + "THPeligible:           0\n")


def vm_flags(flags: int) -> str:
    """The VmFlags line: the code of every set bit, in bit order, each with
    a trailing space; a bit without a code prints ??."""
    out = []
    bit = 0
    while flags >> bit:
        if flags >> bit & 1:
            code = MNEMONICS.get(bit, "??")
            if code:
                out.append(code + " ")
        bit += 1
    return "VmFlags: " + "".join(out) + "\n"


def _kb(label: str, nbytes: int) -> str:
    return f"{label:<16}{nbytes >> 10:>8} kB\n"


def _pss_kb(label: str, pss: int) -> str:
    return f"{label:<16}{pss >> PSS_SHIFT >> 10:>8} kB\n"


def _usage(st: MemSizeStats, rollup: bool) -> str:
    """__show_smap(): the lines from Rss to Locked, in the kernel's order."""
    out = [_kb("Rss:", st.resident), _pss_kb("Pss:", st.pss), _pss_kb("Pss_Dirty:", st.pss_dirty)]
    if rollup:
        out += [_pss_kb("Pss_Anon:", st.pss_anon), _pss_kb("Pss_File:", st.pss_file),
                _pss_kb("Pss_Shmem:", st.pss_shmem)]
    out += [_kb("Shared_Clean:", st.shared_clean), _kb("Shared_Dirty:", st.shared_dirty),
            _kb("Private_Clean:", st.private_clean), _kb("Private_Dirty:", st.private_dirty),
            _kb("Referenced:", st.referenced), _kb("Anonymous:", st.anonymous), _kb("KSM:", st.ksm),
            _kb("LazyFree:", st.lazyfree), _kb("AnonHugePages:", st.anonymous_thp),
            _kb("ShmemPmdMapped:", st.shmem_thp), _kb("FilePmdMapped:", st.file_thp),
            _kb("Shared_Hugetlb:", st.shared_hugetlb),
            f"Private_Hugetlb: {st.private_hugetlb >> 10:>7} kB\n",
            _kb("Swap:", st.swap), _pss_kb("SwapPss:", st.swap_pss), _pss_kb("Locked:", st.pss_locked)]
    return "".join(out)


def smaps_block(ctx: Ctx, mm: MM, v: VMA, vdso_users: int) -> str:
    k = ctx.kernel
    page_kb = 2048 if v.flags & VM_HUGETLB else 4
    out = [maps.maps_line(mm, v), _kb("Size:", v.end - v.start),
           f"KernelPageSize:  {page_kb:>8} kB\n", f"MMUPageSize:     {page_kb:>8} kB\n",
           _usage(stats.smaps_vma(mm, v, special_mapcount=vdso_users), rollup=False),
           f"THPeligible:     {int(k.mem.thp.thp_eligible(v)):>8}\n"]
    if k.config.pkeys:
        out.append(f"ProtectionKey:   {(v.flags >> 32) & 0xF:>8}\n")
    out.append(vm_flags(v.flags))
    return "".join(out)


def _gate_block(pkeys: bool) -> str:
    return (maps.VSYSCALL.decode() + _GATE_TAIL + ("ProtectionKey:          0\n" if pkeys else "")
            + "VmFlags: ex \n")


def smaps(ctx: Ctx) -> bytes:
    mm = maps.bound_mm(ctx)
    if mm is None:
        return b""
    users = ctx.kernel.vdso_mapcount
    body = "".join(smaps_block(ctx, mm, v, users) for v in mm.vmas)
    cfg = ctx.kernel.config
    return (body + _gate_block(cfg.pkeys) if cfg.arch == "x86" else body).encode()


def smaps_rollup(ctx: Ctx) -> bytes:
    mm = maps.bound_mm(ctx)
    if mm is None:  # the process died after open: mmget fails
        raise OSError(errno.ESRCH, "smaps_rollup")
    st = stats.smaps_rollup(mm, special_mapcount=ctx.kernel.vdso_mapcount)
    first, last = next(iter(mm.vmas), None), mm.vmas.last()
    start, end = (first.start, last.end) if first is not None else (0, 0)
    head = f"{start:08x}-{end:08x} ---p 00000000 00:00 0 ".ljust(72) + " [rollup]\n"
    return (head + _usage(st, rollup=True)).encode()
