"""The OOM files: /proc/PID/{oom_score,oom_score_adj,oom_adj} (fs/proc/base.c),
the [ext] /proc/PID/rss_counters (the RSS counters' approximations and
accuracy ranges) and the [ext] /proc/procsim/oom_log (the OOM killer's
reports, dmesg style)."""

from __future__ import annotations

import errno

from procsim.kstrtox import kstrtoint, strstrip
from procsim.mm import oom as O
from procsim.mm.counter_tree import NR_MM_COUNTERS, RSS_NAMES
from procsim.procfs.context import Ctx
from procsim.units import K

PROC_NUMBUF = 13   # writes: at most PROC_NUMBUF - 1 bytes are looked at, the count is returned


def _parse_write(data: bytes) -> tuple[int, int]:
    """What oom_{score_,}adj_write() read: (count, value)."""
    count = min(len(data), PROC_NUMBUF - 1)
    text = strstrip(data[:count].split(b"\0", 1)[0])
    return count, kstrtoint(text, 0)


def _set(ctx: Ctx, value: int, legacy: bool) -> None:
    k, t = ctx.kernel, ctx.task
    if k.tasks.get(t.pid) is not t:
        raise OSError(errno.ESRCH, "oom_score_adj")
    k.set_oom_score_adj(t.tgid, value, ctx.caller.capable(O.CAP_SYS_RESOURCE), legacy)


def oom_score(ctx: Ctx) -> bytes:
    return f"{O.proc_oom_score(ctx.task.tg, O.total_pages(ctx.kernel))}\n".encode()


def oom_score_adj(ctx: Ctx) -> bytes:
    return f"{ctx.task.tg.oom_score_adj}\n".encode()


def oom_score_adj_write(ctx: Ctx, data: bytes) -> int:
    count, value = _parse_write(data)
    if not O.OOM_SCORE_ADJ_MIN <= value <= O.OOM_SCORE_ADJ_MAX:
        raise OSError(errno.EINVAL, "oom_score_adj takes -1000 to 1000")
    _set(ctx, value, legacy=False)
    return count


def oom_adj(ctx: Ctx) -> bytes:
    return f"{O.oom_adj_of(ctx.task.tg.oom_score_adj)}\n".encode()


def oom_adj_write(ctx: Ctx, data: bytes) -> int:
    count, value = _parse_write(data)
    if not O.OOM_ADJUST_MIN <= value <= O.OOM_ADJUST_MAX and value != O.OOM_DISABLE:
        raise OSError(errno.EINVAL, "oom_adj takes -17 to 15")
    _set(ctx, O.score_adj_of_oom_adj(value), legacy=True)
    return count


def rss_counters(ctx: Ctx) -> bytes:
    """[ext] The mm's four RSS counters: a line naming the counter kind and
    its accuracy (pages: the precise value is within [approx - over,
    approx + under]), then one line per counter: name, precise sum,
    approximate sum, and the range of the precise value the approximation
    allows (min max)."""
    t = ctx.task
    mm = None if t.dead else t.mm
    if mm is None:
        return b""
    r = mm.rss
    s = r.shape
    out = [f"counter {s.describe()} under {s.under} over {s.over}\n"]
    for k in range(NR_MM_COUNTERS):
        lo, hi = r.range(k)
        out.append(f"{RSS_NAMES[k]} {r.precise(k)} {r.approx(k)} {lo} {hi}\n")
    return "".join(out).encode()


# -- the OOM report -------------------------------------------------------------

def _stamp(ns: int) -> str:
    return f"[{ns // 1_000_000_000:5d}.{ns // 1000 % 1_000_000:06d}] "




def event_lines(ev: O.OomEvent) -> list[str]:
    """One event as the kernel logs it (dump_header's first line, dump_tasks,
    dump_oom_victim and __oom_kill_process's line), then the procsim lines
    with the selection: each candidate's pass-1 bounds and precise score."""
    ts = _stamp(ev.time_ns)
    out = [f"{ev.trigger_comm} invoked oom-killer: gfp_mask={O.GFP_USER_FAULT}, order={ev.order}, "
           f"oom_score_adj={ev.trigger_oom_score_adj}",
           "Tasks state (memory values in pages):",
           "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
           "oom_score_adj name"]
    for d in ev.tasks:
        out.append(f"[{d.pid:7d}] {d.uid:5d} {d.tgid:5d} {d.total_vm:8d} {d.rss:8d} {d.rss_anon:8d} "
                   f"{d.rss_file:8d} {d.rss_shmem:9d} {d.pgtables_bytes:8d} {d.swapents:8d}         "
                   f"{d.oom_score_adj:5d} {d.comm}")
    v = ev.victim
    if ev.memcg_lines:  # mem_cgroup_print_oom_meminfo(), in dump_header before the tasks
        out[1:1] = ev.memcg_lines
    if v is not None:
        scope = "global_oom" if ev.oom_memcg is None else f"oom_memcg={ev.oom_memcg}"
        out.append(f"oom-kill:constraint={ev.constraint},nodemask=(null),cpuset=/,mems_allowed=0,{scope},"
                   f"task_memcg={ev.task_memcg},task={v.comm},pid={v.pid},uid={v.uid}")
        what = "Out of memory" if ev.oom_memcg is None else "Memory cgroup out of memory"
        out.append(f"{what}: Killed process {v.pid} ({v.comm}) total-vm:{K(v.total_vm)}kB, "
                   f"anon-rss:{K(v.rss_anon)}kB, file-rss:{K(v.rss_file)}kB, shmem-rss:{K(v.rss_shmem)}kB, "
                   f"UID:{v.uid} pgtables:{v.pgtables_bytes >> 10}kB oom_score_adj:{v.oom_score_adj}")
    sel = "two-pass" if ev.two_pass else "exhaustive"
    best = "-" if ev.best_lo is None else ev.best_lo
    out.append(f"procsim oom: selection {sel} candidates {len(ev.candidates)} precise {ev.precise_evals} "
               f"best_lo {best} totalpages {ev.totalpages}")
    out.append("procsim oom: [  pid  ]           lo           hi       points name")
    for c in ev.candidates:
        pts = "-" if c.points is None else str(c.points)
        out.append(f"procsim oom: [{c.pid:7d}] {c.lo:12d} {c.hi:12d} {pts:>12} {c.comm}")
    if v is None:
        out.append("procsim oom: no killable process: the allocation fails")
    else:
        out.append(f"procsim oom: victim {v.pid} points {ev.victim_points} oom_score {ev.victim_oom_score} "
                   f"free {ev.free_before} -> {'-' if ev.free_after is None else ev.free_after} pages")
    return [ts + line + "\n" for line in out]


def oom_log(ctx: Ctx) -> bytes:
    """[ext] /proc/procsim/oom_log: the last OOM events, oldest first."""
    return "".join(line for ev in ctx.kernel.oom.events for line in event_lines(ev)).encode()
