#!/usr/bin/env python3
"""One workload, two kernels: CONFIG_PAGE_MAPCOUNT next to CONFIG_NO_PAGE_MAPCOUNT.

    sudo .venv/bin/python examples/mapcount_models.py

Mounts two simulated machines that differ only in `mapcount_model`, runs the
same workload on both through the control channel, then reads each
process's numbers the way any tool would, from the mounts: PSS and USS from
smaps_rollup, the pagemap exclusive bit (PM_MMAP_EXCLUSIVE) of its
anonymous pages, and meminfo's AnonPages. It prints them side by side.

The workload: `app` writes 4 MiB in a MADV_HUGEPAGE region (two PMD-mapped
THPs) and 1 MiB in a small region that gets 64 KiB mTHPs; it forks
`worker`, which forks `job` (a third mm: the folios' two MM-ID slots are
taken, so job is "untracked"); worker exits; job unmaps half of the first
THP; app unmaps its small region; job unmaps half of one 64 KiB folio.

Why the numbers differ. With a per-page mapcount (CONFIG_PAGE_MAPCOUNT) the
kernel knows for every 4 KiB page how many page tables map it, so a page is
shared exactly when two processes map it. NO_PAGE_MAPCOUNT drops that
per-page counter and keeps, per large folio, a total and two (mm, count)
owner slots with a sticky "maybe mapped shared" flag. From those it can
only estimate: a page's mapcount is the folio's average, rounded; a folio is
private only if it is certainly exclusive. So, after job unmapped half a
THP, the half only app still maps is private (USS) and has full PSS under
the per-page model, but stays "shared" under NO_PAGE_MAPCOUNT, with PSS from
the average. And once app drops the small region, job alone maps those
mTHPs, yet job was never in a slot, so the flag cannot clear: USS
undercounts and the exclusive bit stays off (never the other way: the
estimate may call private memory shared, never shared memory private).
AnonPages counts a whole large folio as soon as any page of it is mapped:
the 32 KiB job unmapped still count until the folio is split.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mountd.pytest_plugin import Machine, mount_machine  # noqa: E402

SCENARIO = """
[machine]
nr_cpus = 2
mem = "1G"
mapcount_model = "{model}"
thp_enabled = "madvise"
thp_sizes = {{ 64 = "always" }}

[[process]]
name = "app"
pid = 100
argv = ["/usr/bin/app"]
"""
MiB = 1 << 20
PM_PRESENT, PM_EXCLUSIVE, PM_FILE = 1 << 63, 1 << 56, 1 << 61


def workload(m: Machine) -> dict[str, int]:
    c = m.ctl
    big = c.mmap(pid=100, length="8M")
    c.madvise(pid=100, addr=big, length="8M", advice="hugepage")
    thp = (big + 2 * MiB - 1) & ~(2 * MiB - 1)
    c.touch(pid=100, addr=thp, length="4M")
    small = c.mmap(pid=100, length="1M", prot="rw", addr=0x20000000, fixed=True)
    c.touch(pid=100, addr=small, length="1M")
    worker = c.fork(pid=100)
    job = c.fork(pid=worker)
    c.exit_group(pid=worker)
    c.wait(pid=100, child=worker)
    c.munmap(pid=job, addr=thp, length="1M")
    c.munmap(pid=100, addr=small, length="1M")
    c.munmap(pid=job, addr=small, length="32K")  # half of one 64 KiB folio nobody else maps
    return {"app": 100, "job": job}


def rollup(m: Machine, pid: int) -> dict[str, int]:
    out = {}
    with open(f"{m.proc}/{pid}/smaps_rollup") as f:
        for line in f.readlines()[1:]:
            key, value = line.split(":")
            out[key] = int(value.split()[0])
    return out


def exclusive_pages(m: Machine, pid: int) -> int:
    """Anonymous pages of the process with PM_MMAP_EXCLUSIVE set."""
    n = 0
    fd = os.open(f"{m.proc}/{pid}/pagemap", os.O_RDONLY)
    try:
        with open(f"{m.proc}/{pid}/maps") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 5 or fields[1][1] != "w":
                    continue  # named (file, heap, stack) or read-only: not the workload's memory
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                data = os.pread(fd, ((hi - lo) >> 12) * 8, (lo >> 12) * 8)
                for (e,) in struct.iter_unpack("<Q", data):
                    if e & PM_PRESENT and not e & PM_FILE and e & PM_EXCLUSIVE:
                        n += 1
    finally:
        os.close(fd)
    return n


def anon_pages_kb(m: Machine) -> int:
    with open(f"{m.proc}/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("AnonPages:"))


def measure(model: str, top: str) -> dict:
    m = mount_machine(os.path.join(top, model), SCENARIO.format(model=model))
    try:
        pids = workload(m)
        out = {"AnonPages": anon_pages_kb(m)}
        for name, pid in pids.items():
            r = rollup(m, pid)
            out[name] = {"Rss": r["Rss"], "Pss": r["Pss"], "USS": r["Private_Clean"] + r["Private_Dirty"],
                         "exclusive": exclusive_pages(m, pid) * 4}
        return out
    finally:
        m.umount()


def main() -> int:
    top = tempfile.mkdtemp(prefix="procsim-mapcount-")
    try:
        res = {model: measure(model, top) for model in ("page", "no_page")}
    finally:
        shutil.rmtree(top, ignore_errors=True)  # the mounts are gone: only scenario files and logs
    print("kB, from smaps_rollup and pagemap   PAGE_MAPCOUNT   NO_PAGE_MAPCOUNT   difference")
    for proc in ("app", "job"):
        for key in ("Rss", "Pss", "USS", "exclusive"):
            a, b = res["page"][proc][key], res["no_page"][proc][key]
            print(f"{proc:>4} {key:<30} {a:>14} {b:>18} {b - a:>12}")
    a, b = res["page"]["AnonPages"], res["no_page"]["AnonPages"]
    print(f"meminfo AnonPages                   {a:>14} {b:>18} {b - a:>12}")
    print("\n(exclusive: kB of anonymous pages with the pagemap PM_MMAP_EXCLUSIVE bit; see the docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
