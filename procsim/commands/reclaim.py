"""Commands of reclaim and pressure (procsim/mm/vmscan_node.py,
procsim/cgroup/protection.py, procsim/psi/trigger.py): the node's reclaim
state, a kswapd wake-up, proactive reclaim of a cgroup, and the PSI
triggers registered on pressure files and what they fired."""

from __future__ import annotations

from procsim.cgroup import protection
from procsim.cgroup import syscalls as C
from procsim.commands.core import cmd, p, query
from procsim.kernel import Kernel
from procsim.mm.show_mem import mem_snapshot
from procsim.params import INT, SIZE, STR


def c_reclaim_state(k: Kernel) -> dict:
    """Free pages and the watermarks (pages), vm.swappiness, the LRU lists'
    sizes as meminfo shows them, the reclaim costs get_scan_count weighs,
    and the reclaim counters of /proc/vmstat."""
    r = k.reclaim
    z = r.watermarks()
    m = mem_snapshot(k)
    return {"free": r.free_pages(), "min": z.wmark_min, "low": z.wmark_low, "high": z.wmark_high,
            "swappiness": k.mem.sysctl.swappiness,
            "lru": {"active_anon": m.active_anon, "inactive_anon": m.inactive_anon,
                    "active_file": m.active_file, "inactive_file": m.inactive_file, "unevictable": m.unevictable},
            "cost": {"anon": r.anon_cost, "file": r.file_cost},
            "events": dict(sorted(k.mem.vm_events.reclaim.items())),
            "pgactivate": k.mem.vm_events.pgactivate, "pgdeactivate": k.mem.vm_events.pgdeactivate}


def c_kswapd(k: Kernel) -> int:
    """wakeup_kswapd(): balance_pgdat() now; the pages it freed (0 when free
    pages are at the high watermark already)."""
    return k.reclaim.wakeup_kswapd()


def c_memory_protection(k: Kernel, path: str) -> dict:
    """The effective memory.min and memory.low (bytes) of every memcg below
    `path` for a reclaim rooted there (mem_cgroup_calculate_protection)."""
    cg = C.lookup(k, path)
    root = cg.memcg if cg.memcg is not None else k.memcg.root
    out = {}
    for m, (emin, elow) in protection.calculate(k, root).items():
        out[m.cgroup.path] = {"usage": m.usage * 4096, "emin": emin * 4096, "elow": elow * 4096}
    return out


def c_memory_reclaim(k: Kernel, path: str, amount: int, swappiness: int | None) -> None:
    """A write of "AMOUNT [swappiness=N]" to PATH/memory.reclaim: EAGAIN if it
    cannot reclaim that much, EINVAL for a bad swappiness."""
    data = str(amount).encode() + (b"" if swappiness is None else b" swappiness=%d" % swappiness)
    C.memory_reclaim(k, path, data)


def c_psi_triggers(k: Kernel) -> list[dict]:
    """The PSI triggers open pressure files hold: group (cgroup id), state,
    threshold and window (us), privileged (CAP_SYS_RESOURCE: the rtpoll
    worker) or not (the averages' work), events fired, and whether one waits
    for a poll."""
    return k.psi.triggers.describe()


COMMANDS = (
    query("reclaim_state", c_reclaim_state),
    cmd("kswapd", c_kswapd, doc="Wake kswapd: reclaim to the high watermark; returns the pages freed."),
    query("memory_protection", c_memory_protection, p("path", STR, "/")),
    cmd("memory_reclaim", c_memory_reclaim, p("path", STR), p("amount", SIZE), p("swappiness", INT, None),
        doc="Proactive reclaim of a cgroup, as a write to its memory.reclaim."),
    query("psi_triggers", c_psi_triggers),
)
