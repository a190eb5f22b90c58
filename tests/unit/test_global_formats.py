"""Machine-wide files against the spec (§15–§20) and against the layout of
the real kernel's files on the reference VM (labels, order, spacing), plus
the invariants that tie their values to the model.

Comparisons with the live /proc run only where the host can show the same
file (tests/hostinfo.py: kernel, vendor, config); the spec-derived checks run
everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostinfo import INTERRUPTS_CONFIG, MEMINFO_CONFIG, VMSTAT_CONFIG, possible_cpus, requires_host
from procsim import Kernel, KernelConfig
from procsim.procfs import cpuinfo
from procsim import irq
from procsim.mm import show_mem
from procsim.mm import zone
from procsim.procfs import interrupts
from procsim.procfs import meminfo as meminfo_f
from procsim.procfs import small_files
from procsim.procfs import stat as proc_stat
from procsim.procfs import vmstat
from procsim.procfs.context import Caller, Ctx
from invariants import boot

MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE = 0x01, 0x02, 0x20, 0x4000
SELFCHECK = Path("/work/shared/spec/procfs-check/formats_selfcheck.py")

# spec §15.2: the lines the reference config prints, in order
MEMINFO_LABELS = """MemTotal MemFree MemAvailable Buffers Cached SwapCached Active Inactive Active(anon)
Inactive(anon) Active(file) Inactive(file) Unevictable Mlocked SwapTotal SwapFree Zswap Zswapped Dirty
Writeback AnonPages Mapped Shmem KReclaimable Slab SReclaimable SUnreclaim KernelStack PageTables
SecPageTables NFS_Unstable Bounce WritebackTmp CommitLimit Committed_AS VmallocTotal VmallocUsed
VmallocChunk Percpu AnonHugePages ShmemHugePages ShmemPmdMapped FileHugePages FilePmdMapped Balloon
HugePages_Total HugePages_Free HugePages_Rsvd HugePages_Surp Hugepagesize Hugetlb DirectMap4k
DirectMap2M DirectMap1G""".split()
X86_ARCH = "NMI LOC SPU PMI IWI RTR RES CAL TLB TRM HYP ERR MIS PIN NPI PIW".split()


def make_kernel(**cfg) -> Kernel:
    cfg.setdefault("nr_cpus", 8)
    cfg.setdefault("mem_bytes", 4 << 30)
    return boot(**cfg)


@pytest.fixture
def k() -> Kernel:
    k = make_kernel()
    k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    return k


def render(k: Kernel, fn) -> str:
    return fn(Ctx(k, Caller(1, 0, 0))).decode()


def real(path: str) -> str:
    with open(path) as f:
        return f.read()


def kv(text: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}


def blank_digits(line: str) -> str:
    """Layout only: numbers right-aligned in a fixed width keep their place."""
    return re.sub(r"\d", " ", line)


def stat_field(text: str, key: str) -> list[int]:
    line = next(l for l in text.splitlines() if l.split()[0] == key)
    return [int(x) for x in line.split()[1:]]


def interrupt_row(text: str, label: str) -> list[int]:
    line = next(l for l in text.splitlines() if l.split(":")[0].strip() == label)
    return [int(x) for x in line.split(":", 1)[1].split() if x.isdigit()]


# -- meminfo -------------------------------------------------------------------------------


def test_meminfo_labels_and_line_format(k: Kernel) -> None:
    lines = render(k, meminfo_f.meminfo).splitlines(keepends=True)
    assert [l.split(":")[0] for l in lines] == MEMINFO_LABELS
    for l in lines:  # rebuilt with the spec §15.1 rules, as formats_selfcheck.py does
        name, val = l.split(":", 1)
        v = int(val.split()[0])
        if name == "HugePages_Total":
            want = f"HugePages_Total:   {v:>5}\n"
        elif name.startswith("HugePages_"):
            want = f"{name}:    {v:>5}\n"
        else:
            want = f"{name + ':':<16}{v:>8} kB\n"
        assert l == want


@requires_host(kernel="6.18", arch="x86_64", config=MEMINFO_CONFIG, cpu_flags=("pdpe1gb",))  # pdpe1gb: DirectMap1G
def test_meminfo_labels_order_and_layout_as_real(k: Kernel) -> None:
    ours, theirs = render(k, meminfo_f.meminfo).splitlines(), real("/proc/meminfo").splitlines()
    assert [l.split(":")[0] for l in ours] == [l.split(":")[0] for l in theirs]
    for a, b in zip(ours, theirs):
        assert blank_digits(a) == blank_digits(b)


def test_meminfo_parts_sum_exactly(k: Kernel) -> None:
    m = kv(render(k, meminfo_f.meminfo))
    # MemTotal: RAM less the frames the kernel reserved at boot
    assert m["MemTotal"] == (4 << 20) - KernelConfig().kernel_reserved_bytes // 1024
    # the documented split (MemSnapshot): stacks are part of VmallocUsed
    parts = (m["MemFree"] + m["Buffers"] + m["Cached"] + m["AnonPages"] + m["Slab"] + m["KernelStack"]
             + m["PageTables"] + m["Percpu"] + m["VmallocUsed"] - m["KernelStack"])
    assert parts == m["MemTotal"]
    assert m["Active"] == m["Active(anon)"] + m["Active(file)"]
    assert m["Inactive"] == m["Inactive(anon)"] + m["Inactive(file)"]
    assert m["Active(anon)"] + m["Inactive(anon)"] + m["Active(file)"] + m["Inactive(file)"] + \
        m["Unevictable"] == m["AnonPages"] + m["Shmem"] + m["Cached"] - m["Shmem"] + m["Buffers"]
    assert m["Slab"] == m["SReclaimable"] + m["SUnreclaim"] and m["KReclaimable"] == m["SReclaimable"]
    assert m["Mapped"] <= m["Cached"] and m["Shmem"] <= m["Cached"]
    assert m["CommitLimit"] == m["MemTotal"] // 4 * 50 // 100 * 4 + m["SwapTotal"]
    assert m["KernelStack"] == 16 * (k.nr_threads() + 8)  # every task plus 8 idle tasks
    assert sum(m[f"DirectMap{s}"] for s in ("4k", "2M", "1G")) == 4 << 20


def test_meminfo_follows_the_model(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    before = kv(render(k, meminfo_f.meminfo))
    a = k.mmap(p, 64 << 20)
    k.touch(p, a, 64 << 20)
    shm = k.mmap(p, 8 << 20, 3, MAP_SHARED | MAP_ANONYMOUS)
    k.touch(p, shm, 8 << 20)
    m = kv(render(k, meminfo_f.meminfo))  # the memoised snapshot follows kernel.generation
    assert m["AnonPages"] - before["AnonPages"] == 64 << 10
    assert m["Shmem"] - before["Shmem"] == 8 << 10
    assert m["Cached"] - before["Cached"] == 8 << 10  # shmem is page cache
    assert m["Mapped"] - before["Mapped"] == 8 << 10
    assert m["Committed_AS"] - before["Committed_AS"] == (64 + 8) << 10
    assert m["PageTables"] > before["PageTables"]
    assert before["MemFree"] - m["MemFree"] >= 72 << 10
    k.mlock(p, a, 4 << 20)
    m2 = kv(render(k, meminfo_f.meminfo))
    assert m2["Mlocked"] == m2["Unevictable"] == 4 << 10
    assert m2["Active(anon)"] + m2["Inactive(anon)"] == m["Active(anon)"] + m["Inactive(anon)"] - (4 << 10)
    k.exit_group(p)
    m3 = kv(render(k, meminfo_f.meminfo))
    assert m3["AnonPages"] <= before["AnonPages"] and m3["Mlocked"] == 0
    assert m3["MemFree"] - m["MemFree"] >= 64 << 10


def test_meminfo_available_and_watermarks(k: Kernel) -> None:
    m = kv(render(k, meminfo_f.meminfo))
    snap = show_mem.mem_snapshot(k)
    z = snap.zones
    pagecache = snap.active_file + snap.inactive_file
    want = (snap.free - z.totalreserve + pagecache - min(pagecache // 2, z.wmark_low)
            + snap.slab_reclaimable - min(snap.slab_reclaimable // 2, z.wmark_low))
    assert m["MemAvailable"] == max(want, 0) * 4
    # The VM's 1268277 managed pages give its vm.min_free_kbytes = 67584 (THP's recommendation)
    assert zone.zones(1268277).min_free * 4 == 67584
    assert zone.zones(16384).min_free * 4 == 3276  # 64 MiB: the recommendation is capped to RAM/20
    assert zone.zones(64).min_free * 4 == 128  # floor of the sqrt rule


def test_swap_and_direct_map() -> None:
    k = make_kernel(swap_bytes=64 << 20, mem_bytes=26 << 30)
    m = kv(render(k, meminfo_f.meminfo))
    assert m["SwapTotal"] == m["SwapFree"] == 65532  # the header page is not swap space
    # the reference VM: 26 GiB of RAM with the PCI hole at 3 GiB
    assert (m["DirectMap4k"], m["DirectMap2M"], m["DirectMap1G"]) == (26624, 2070528, 25165824)
    for gib in (1, 2, 3, 5, 64):
        assert sum(show_mem.direct_map(gib << 20)) == gib << 20
    assert sum(show_mem.direct_map((1 << 20) + 12)) == (1 << 20) + 12


def test_meminfo_wide_values_push_right() -> None:
    k = make_kernel(mem_bytes=256 << 30)
    line = render(k, meminfo_f.meminfo).splitlines()[0]
    assert re.fullmatch(r"MemTotal:       \d{9} kB", line)


# -- /proc/stat ------------------------------------------------------------------------------


def test_proc_stat_layout(k: Kernel) -> None:
    text = render(k, proc_stat.stat)
    lines = text.splitlines()
    assert re.fullmatch(r"cpu  \d+( \d+){9}", lines[0])
    assert all(re.fullmatch(rf"cpu{i}( \d+){{10}}", lines[1 + i]) for i in range(8))
    intr = lines[9].split()
    assert intr[0] == "intr" and len(intr) == 2 + irq.nr_irqs("x86", 8)
    assert int(intr[1]) > sum(map(int, intr[2:]))  # the total holds the arch counters
    keys = [l.split()[0] for l in lines[10:]]
    assert keys == ["ctxt", "btime", "processes", "procs_running", "procs_blocked", "softirq"]
    soft = stat_field(text, "softirq")
    assert len(soft) == 11 and soft[0] == sum(soft[1:])
    assert "  " not in text.replace("cpu  ", "", 1) and text.endswith("\n") and " \n" not in text
    assert stat_field(text, "btime") == [k.btime] and stat_field(text, "processes") == [k.nr_forks]


@requires_host(files=("/proc/stat",))
def test_proc_stat_keys_as_real(k: Kernel) -> None:
    ours = [l.split()[0] for l in render(k, proc_stat.stat).splitlines() if not l.startswith("cpu")]
    theirs = [l.split()[0] for l in real("/proc/stat").splitlines() if not l.startswith("cpu")]
    assert ours == theirs


@requires_host(arch="x86_64", features=("no-legacy-irqs",))
def test_nr_irqs_as_real() -> None:
    assert len(real("/proc/stat").split("intr ")[1].split("\n")[0].split()) - 1 == \
        irq.nr_irqs("x86", possible_cpus())  # nr_cpu_ids, not the online CPUs


def test_nr_irqs_as_reference_vm() -> None:
    assert irq.nr_irqs("x86", 2) == 424  # spec §0.1
    assert interrupts.irq_prec(424) == 3 and interrupts.irq_prec(1000) == 4 and interrupts.irq_prec(999) == 3


def test_cpu_columns_follow_cpu_time(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    k.run(p, 3)
    k.advance(10)
    text = render(k, proc_stat.stat)
    cpu3 = stat_field(text, "cpu3")
    c = k.sched.cpus[3]
    ns = (c.user, c.nice, c.system, c.idle, c.iowait, c.irq, c.softirq)
    assert cpu3 == [x // 10_000_000 for x in ns] + [0, 0, 0]
    assert cpu3[0] + cpu3[2] == 1000  # ten seconds busy: 1000 USER_HZ ticks of user + system
    rows = [stat_field(text, f"cpu{i}") for i in range(8)]
    agg = stat_field(text, "cpu")
    for col in range(10):  # the aggregate converts summed ns: at most ncpu-1 ticks more
        assert 0 <= agg[col] - sum(r[col] for r in rows) < 8


def test_time_moves_stat_uptime_loadavg(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    k.run(p, 0)
    s0, u0, i0 = render(k, proc_stat.stat), render(k, proc_stat.uptime), render(k, interrupts.interrupts)
    k.advance(60)
    s1, u1, i1 = render(k, proc_stat.stat), render(k, proc_stat.uptime), render(k, interrupts.interrupts)
    assert stat_field(s1, "ctxt")[0] > stat_field(s0, "ctxt")[0]
    assert stat_field(s1, "intr")[0] > stat_field(s0, "intr")[0]  # vmstat's "in" moves
    loc0, loc1 = interrupt_row(i0, "LOC"), interrupt_row(i1, "LOC")
    assert loc1[0] - loc0[0] == 60 * 250  # busy CPU 0: a tick per jiffy at HZ=250
    assert 0 < loc1[1] - loc0[1] < 60 * 250 // 10  # idle CPUs: NO_HZ
    assert stat_field(s1, "procs_running") == [1]
    up0, up1 = float(u0.split()[0]), float(u1.split()[0])
    assert up1 - up0 == pytest.approx(60, abs=0.011)
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d\n", u1)
    la = render(k, proc_stat.loadavg)
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n", la)
    assert float(la.split()[0]) > 0.5  # one task ran for a minute
    assert la.split()[3] == f"1/{k.nr_threads()}" and la.split()[4] == str(k.last_pid)


def test_uptime_idle_is_the_cpus_idle_time(k: Kernel) -> None:
    k.run(k.spawn(["/usr/bin/bash"]), 2)
    k.advance(12.345)
    up, idle = render(k, proc_stat.uptime).split()
    # both convert summed ns to 1/100 s: uptime's idle equals /proc/stat's idle column
    assert int(idle.replace(".", "")) == stat_field(render(k, proc_stat.stat), "cpu")[3]
    assert up == f"{k.now // 10**9}.{k.now % 10**9 // 10**7:02d}"  # truncated, not rounded
    assert float(idle) == pytest.approx(8 * float(up) - 12.345, abs=0.1)


def test_loadavg_rounds_like_the_kernel(k: Kernel) -> None:
    # LOAD_INT/LOAD_FRAC of avenrun + FIXED_1/200: the spec's "1.39 1.01 0.47"
    k.avenrun = [2847, 2069, 963]
    assert render(k, proc_stat.loadavg).split()[:3] == ["1.39", "1.01", "0.47"]
    k.avenrun = [1013, 1014, 2048]  # 0.4946 + 0.005 truncates to 0.49; 0.4951 to 0.50
    assert render(k, proc_stat.loadavg).split()[:3] == ["0.49", "0.50", "1.00"]


def test_procs_running_and_blocked(k: Kernel) -> None:
    a, b, c = (k.spawn(["/usr/bin/bash"]) for _ in range(3))
    k.run(a, 0)
    k.run(b, 1)
    k.sleep(c, "D")
    text = render(k, proc_stat.stat)
    assert stat_field(text, "procs_running") == [2] and stat_field(text, "procs_blocked") == [1]
    assert render(k, proc_stat.loadavg).split()[3].startswith("2/")


def test_procs_running_is_exact_when_nothing_runs(k: Kernel) -> None:
    # nr_running() counts simulated run queues; the reading process is a host
    # one, so an idle world reads 0 (the old floor of 1 counted a phantom reader)
    assert all(t.state != "R" for t in k.tasks.values())
    assert stat_field(render(k, proc_stat.stat), "procs_running") == [0]
    assert render(k, proc_stat.loadavg).split()[3] == f"0/{k.nr_threads()}"
    woken = k.spawn(["/usr/bin/bash"])
    k.wake(woken)  # runnable but on no CPU: still on a run queue
    assert stat_field(render(k, proc_stat.stat), "procs_running") == [1]
    assert render(k, proc_stat.loadavg).split()[3] == f"1/{k.nr_threads()}"


# -- /proc/interrupts ------------------------------------------------------------------------


def test_interrupts_layout(k: Kernel) -> None:
    lines = render(k, interrupts.interrupts).splitlines()
    assert lines[0] == " " * 11 + "".join(f"CPU{i:<8}" for i in range(8))
    arch = [l.split(":")[0].strip() for l in lines[1:] if not l.split(":")[0].strip().isdigit()]
    assert arch == X86_ARCH
    assert "NMI: " + "         0 " * 8 + "  Non-maskable interrupts" in lines
    assert "ERR:          0" in lines and "MIS:          0" in lines
    assert " 24:          1" + "          0" * 7 + "  IO-APIC   5-edge      ACPI:Ged" in lines
    for l in lines[1:]:  # spec §20 arch-line rule, as formats_selfcheck.py rebuilds it
        name, rest = l[:4], l[4:].split()
        if name[:3].strip().isdigit():
            continue
        if name in ("ERR:", "MIS:"):
            assert l == f"{name} {int(rest[0]):>10}"
        else:
            assert l == name + " " + "".join(f"{int(c):>10} " for c in rest[:8]) + "  " + " ".join(rest[8:])


@requires_host(kernel="6.18", arch="x86_64", config=INTERRUPTS_CONFIG, cpu_flags=("hypervisor",))
def test_interrupts_layout_as_real() -> None:
    theirs = real("/proc/interrupts").splitlines()
    ncpu = theirs[0].count("CPU")
    k = make_kernel(nr_cpus=ncpu)
    ours = render(k, interrupts.interrupts).splitlines()
    assert ours[0] == theirs[0]  # header with its trailing spaces
    label = lambda l: l.split(":")[0].strip()
    real_rows = {label(l): l for l in theirs[1:]}
    assert [label(l) for l in ours[1:] if not label(l).isdigit()] == \
        [label(l) for l in theirs[1:] if not label(l).isdigit()]
    for l in ours[1:]:  # every line of ours the VM also has: same layout, numbers aside
        if label(l) in real_rows:
            assert blank_digits(l) == blank_digits(real_rows[label(l)])


def test_stat_intr_agrees_with_interrupts(k: Kernel) -> None:
    k.run(k.spawn(["/usr/bin/bash"]), 5)
    k.advance(7)
    intr = stat_field(render(k, proc_stat.stat), "intr")
    text = render(k, interrupts.interrupts)
    arch_total = 0
    for l in text.splitlines()[1:]:
        name, rest = l.split(":", 1)
        ncols = 1 if name.strip() in ("ERR", "MIS") else 8
        counts = [int(x) for x in rest.split() if x.isdigit()][:ncols]
        if name.strip().isdigit():
            assert intr[1 + int(name)] == sum(counts)
        else:
            arch_total += sum(counts)
    assert intr[0] == sum(intr[1:]) + arch_total


def test_tlb_row_counts_shootdowns(k: Kernel) -> None:
    """seed-mechanisms §1.6 #5: threads of P on CPUs 1 and 2; mprotect from
    CPU 1 IPIs CPU 2 only. The IPI arrives as a function call, so CAL moves too."""
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    k.run(p, 1)
    k.run(t, 2)
    a = k.mmap(p, 4096)
    i0, s0 = render(k, interrupts.interrupts), render(k, proc_stat.stat)
    k.mprotect(p, a, 4096, 1)
    i1, s1 = render(k, interrupts.interrupts), render(k, proc_stat.stat)
    diff = lambda row: [b - a_ for a_, b in zip(interrupt_row(i0, row), interrupt_row(i1, row))]
    assert diff("TLB") == [0, 0, 1, 0, 0, 0, 0, 0]
    assert diff("CAL") == [0, 0, 1, 0, 0, 0, 0, 0]
    assert stat_field(s1, "intr")[0] - stat_field(s0, "intr")[0] == 2


def test_interrupts_with_many_cpus_widen_the_label_column() -> None:
    k = make_kernel(nr_cpus=128)
    assert irq.nr_irqs("x86", 128) >= 1000
    lines = render(k, interrupts.interrupts).splitlines()
    assert lines[0].startswith(" " * 12 + "CPU0       CPU1") and lines[0].endswith("CPU127     ")
    assert lines[1].startswith("  24:") and "  IO-APIC    5-edge      ACPI:Ged" in lines[1]
    assert lines[-16].startswith(" NMI:          0") and " ERR:          0" in lines


def test_other_arches_interrupts() -> None:
    arm = render(make_kernel(arch="arm64", nr_cpus=2), interrupts.interrupts).splitlines()
    assert re.fullmatch(r" 11:( {1,10}\d+){2}    GICv3  27 Level     arch_timer", arm[1])
    assert arm[-9].startswith("IPI0:") and arm[-9].endswith(" 0       Rescheduling interrupts")
    assert arm[-1] == "Err:          0" and not any(l.startswith("TLB") for l in arm)
    rv = render(make_kernel(arch="riscv", nr_cpus=2), interrupts.interrupts).splitlines()
    assert rv[-1].startswith("IPI7:") and rv[-1].endswith("0  KGDB roundup interrupts")
    assert any(l.endswith("RISC-V INTC   5 Edge      riscv-timer") for l in rv)


# -- /proc/vmstat ----------------------------------------------------------------------------


def test_vmstat_format_and_consistency_with_meminfo(k: Kernel) -> None:
    text = render(k, vmstat.vmstat)
    assert all(re.fullmatch(r"[a-z0-9_]+ \d+", l) for l in text.splitlines())
    v = {l.split()[0]: int(l.split()[1]) for l in text.splitlines()}
    assert list(v) == list(vmstat.VMSTAT_KEYS) and len(v) == 192
    assert {"pgpgin", "pgpgout", "pswpin", "pswpout"} <= set(v)  # psutil swap_memory()
    assert not any(key.startswith("nr_tlb_") for key in v)  # no CONFIG_DEBUG_TLBFLUSH
    m = kv(render(k, meminfo_f.meminfo))
    assert v["nr_free_pages"] * 4 == m["MemFree"]
    assert v["nr_anon_pages"] * 4 == m["AnonPages"] and v["nr_shmem"] * 4 == m["Shmem"]
    assert v["nr_file_pages"] * 4 == m["Cached"] + m["Buffers"]
    assert v["nr_mapped"] * 4 == m["Mapped"] and v["nr_page_table_pages"] * 4 == m["PageTables"]
    assert v["nr_kernel_stack"] == m["KernelStack"]  # kB, not pages
    assert v["nr_active_anon"] * 4 == m["Active(anon)"] == v["nr_zone_active_anon"] * 4
    assert v["nr_slab_reclaimable"] * 4 == m["SReclaimable"]
    assert 0 < v["nr_dirty_background_threshold"] <= v["nr_dirty_threshold"]


@requires_host(kernel="6.18", arch="x86_64", config=VMSTAT_CONFIG)
def test_vmstat_keys_as_real(k: Kernel) -> None:
    ours = [l.split()[0] for l in render(k, vmstat.vmstat).splitlines()]
    assert ours == [l.split()[0] for l in real("/proc/vmstat").splitlines()]


def test_vmstat_event_counters_only_grow(k: Kernel) -> None:
    vm = lambda: {l.split()[0]: int(l.split()[1]) for l in render(k, vmstat.vmstat).splitlines()}
    q = k.spawn(["/usr/bin/bash"])
    v0 = vm()
    a = k.mmap(q, 1 << 20)
    faults = k.touch(q, a, 1 << 20)
    v1 = vm()
    assert faults == 256 and v1["pgfault"] - v0["pgfault"] == faults
    # memblock_free_all() counts every frame freed to the buddy allocator at
    # boot into pgfree, so pgfree - pgalloc is the allocator's free frames
    # (the host: see test_pgfree_exceeds_pgalloc_as_real)
    assert v1["pgfree"] - v1["pgalloc_normal"] == k.mem.nr_free and v1["pgfree"] > 0
    assert v1["pgalloc_normal"] - v0["pgalloc_normal"] == faults  # one page per anonymous fault
    k.exit_group(q)  # reaped at once by init: its faults leave the task list
    k.advance(5)
    v2 = vm()
    counters = ("pgfault", "pgmajfault", "pgpgin", "pgpgout", "pgalloc_normal", "pgfree", "numa_hit")
    assert all(v2[c] >= v1[c] for c in counters)
    assert v2["pgpgout"] > v1["pgpgout"]  # writes trickle with time


def test_pgfree_exceeds_pgalloc_as_real(k: Kernel) -> None:
    """Boot frees count: pgfree is above the allocations by about the free
    pages, on the host and here (nr_free_pages leaves the model's kernel
    pools out, which Linux allocates from the buddy allocator)."""
    ours = {l.split()[0]: int(l.split()[1]) for l in render(k, vmstat.vmstat).splitlines()}
    host = {l.split()[0]: int(l.split()[1]) for l in real("/proc/vmstat").splitlines()}
    for v in (ours, host):
        alloc = sum(n for key, n in v.items() if key.startswith("pgalloc_"))
        assert v["pgfree"] - alloc >= v["nr_free_pages"] * 9 // 10
    assert ours["numa_hit"] == ours["numa_local"] <= ours["pgalloc_normal"]


# -- small files ---------------------------------------------------------------------------


def test_small_files(k: Kernel) -> None:
    assert render(k, small_files.cpu_online) == render(k, small_files.cpu_possible) == "0-7\n"
    assert render(make_kernel(nr_cpus=1), small_files.cpu_online) == "0\n"
    assert render(k, small_files.pid_max) == "32768\n"
    # pid_idr_init(): 1024 pids per possible CPU above 32 CPUs
    assert render(make_kernel(nr_cpus=64), small_files.pid_max) == "65536\n"
    assert render(make_kernel(nr_cpus=384), small_files.pid_max) == "393216\n"
    assert render(k, small_files.osrelease) == "6.18.0-procsim\n"
    assert int(render(k, small_files.threads_max)) == k.max_threads
    assert re.fullmatch(r"Linux version 6\.18\.0-procsim \(\S+@\S+\) \(gcc \(GCC\) [\d.]+, GNU ld "
                        r"\(GNU Binutils\) [\d.]+\) #1 SMP PREEMPT_DYNAMIC \w{3} \w{3} [ \d]\d "
                        r"\d\d:\d\d:\d\d UTC \d{4}\n", render(k, small_files.version))


# -- the spec's own checker -------------------------------------------------------------------


@pytest.mark.skipif(not SELFCHECK.exists(), reason="procfs-check scripts not available")
@pytest.mark.parametrize("ncpu", [2, 8, 128])
def test_formats_selfcheck_script(tmp_path: Path, ncpu: int) -> None:
    """formats_selfcheck.py --root rebuilds meminfo, stat, uptime, loadavg,
    interrupts, cpuinfo and a process's maps, smaps, smaps_rollup, status,
    statm and stat byte for byte. The process has THPs, swap entries shared
    with a child and a hugetlb page, so every smaps line has a value."""
    from procsim.kernel import MADV_HUGEPAGE, MADV_PAGEOUT
    from procsim.mm.vma import MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE
    from procsim.procfs.tree import ProcFS
    k = make_kernel(nr_cpus=ncpu, swap_bytes=2 << 30, hugepages=2)
    pid = k.spawn(["/usr/bin/bash"])
    k.run(pid, 0)
    a = k.mmap(pid, 8 << 20)
    k.madvise(pid, a, 8 << 20, MADV_HUGEPAGE)
    k.touch(pid, a, 8 << 20)
    k.madvise(pid, a, 1 << 20, MADV_PAGEOUT)
    h = k.mmap(pid, 2 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    k.touch(pid, h, 2 << 20)
    k.fork(pid)
    k.advance(30)
    (tmp_path / "cpuinfo").write_bytes(cpuinfo.render(k.config))
    files = {"meminfo": meminfo_f.meminfo, "stat": proc_stat.stat, "uptime": proc_stat.uptime,
             "loadavg": proc_stat.loadavg, "interrupts": interrupts.interrupts, "vmstat": vmstat.vmstat}
    for name, show in files.items():
        (tmp_path / name).write_bytes(show(Ctx(k, Caller(1, 0, 0))))
    fs = ProcFS(k)
    (tmp_path / str(pid)).mkdir()
    for name in ("maps", "smaps", "smaps_rollup", "status", "statm", "stat"):
        h = fs.open(f"/proc/{pid}/{name}", os.O_RDONLY, Caller(1, 0, 0))
        data, off = b"", 0
        while chunk := h.read(1 << 20, off):
            data, off = data + chunk, off + len(chunk)
        (tmp_path / str(pid) / name).write_bytes(data)
    r = subprocess.run([sys.executable, str(SELFCHECK), "--root", str(tmp_path), str(pid)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr


def test_committed_as_is_the_vm_account_charge(k: Kernel) -> None:
    """mmap of private writable memory charges it (VM_ACCOUNT); mprotect to
    read-only keeps the charge (as a RELRO segment keeps `ac`); munmap
    returns it; read-only and MAP_NORESERVE mappings are never charged."""
    p = k.spawn(["/usr/bin/bash"])

    def committed() -> int:
        return kv(render(k, meminfo_f.meminfo))["Committed_AS"]

    c0 = committed()
    a = k.mmap(p, 16 << 20)
    assert committed() - c0 == 16 << 10
    k.mprotect(p, a, 8 << 20, 1)  # PROT_READ: the first half keeps VM_ACCOUNT
    assert committed() - c0 == 16 << 10
    k.mmap(p, 4 << 20, 1)  # read-only: nothing to commit
    k.mmap(p, 4 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
    assert committed() - c0 == 16 << 10
    k.munmap(p, a, 16 << 20)
    assert committed() == c0
