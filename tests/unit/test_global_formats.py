"""Machine-wide files against the spec (§15–§20) and the layout of the real
kernel's files on this machine (labels, order, spacing)."""

from __future__ import annotations

import re

import pytest

from procsim import Kernel, KernelConfig
from procsim.procfs import global_files as G
from procsim.procfs.context import Caller, Ctx


@pytest.fixture
def k() -> Kernel:
    k = Kernel(KernelConfig(nr_cpus=8, mem_bytes=4 << 30))
    k.create_init()
    k.kthread("kthreadd", pid=2)
    return k


def render(k: Kernel, fn) -> str:
    return fn(Ctx(k, Caller(1, 0, 0))).decode()


def real(path: str) -> str:
    with open(path) as f:
        return f.read()


def kv(text: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}


def test_meminfo_labels_order_and_spacing_as_real(k: Kernel) -> None:
    ours, theirs = render(k, G.meminfo), real("/proc/meminfo")
    assert [l.split(":")[0] for l in ours.splitlines()] == [l.split(":")[0] for l in theirs.splitlines()]
    for a, b in zip(ours.splitlines(), theirs.splitlines()):
        # same layout when the numbers have the same width: replace digits with a fixed number
        norm = lambda s: re.sub(r"( *)(\d+)", lambda m: " " * (len(m.group(0)) - 1) + "0", s)
        if len(a) == len(b):
            assert norm(a) == norm(b)
        assert re.fullmatch(r"[A-Za-z_()0-9]+: +\d+( kB)?", a)


def test_meminfo_parts_sum_and_follow_the_model(k: Kernel) -> None:
    before = kv(render(k, G.meminfo))
    p = k.spawn(["/usr/bin/bash"])
    k.touch(p, k.mmap(p, 64 << 20), 64 << 20)
    shm = k.mmap(p, 8 << 20, 3, 0x01 | 0x20)
    k.touch(p, shm, 8 << 20)
    m = kv(render(k, G.meminfo))
    assert m["AnonPages"] - before["AnonPages"] >= 64 << 10
    assert m["Shmem"] - before["Shmem"] == 8 << 10
    assert m["Active"] == m["Active(anon)"] + m["Active(file)"]
    assert m["Inactive"] == m["Inactive(anon)"] + m["Inactive(file)"]
    assert m["Active(anon)"] + m["Inactive(anon)"] == m["AnonPages"] + m["Shmem"]
    assert m["Slab"] == m["SReclaimable"] + m["SUnreclaim"]
    used = m["MemFree"] + m["AnonPages"] + m["Cached"] + m["Slab"] + m["KernelStack"] + m["PageTables"]
    assert used == m["MemTotal"]
    assert m["DirectMap4k"] + m["DirectMap2M"] + m["DirectMap1G"] >= m["MemTotal"]
    assert m["MemTotal"] == (4 << 20) - KernelConfig().kernel_reserved_bytes // 1024


def test_proc_stat_layout(k: Kernel) -> None:
    text = render(k, G.stat)
    lines = text.splitlines()
    assert lines[0].startswith("cpu  ") and len(lines[0].split()) == 11
    assert [l.split()[0] for l in lines[1:9]] == [f"cpu{i}" for i in range(8)]
    assert all(len(l.split()) == 11 for l in lines[1:9])
    intr = lines[9].split()
    assert intr[0] == "intr" and len(intr) == 2 + G.NR_IRQS
    assert int(intr[1]) > sum(map(int, intr[2:]))
    rest = [l.split()[0] for l in lines[10:]]
    assert rest == [l.split()[0] for l in real("/proc/stat").splitlines() if not l.startswith(("cpu", "intr"))]
    assert len(lines[-1].split()) == 12 and "  " not in text.replace("cpu  ", "")
    assert int(lines[0].split()[1]) == sum(int(l.split()[1]) for l in lines[1:9])


def test_time_moves_stat_uptime_loadavg(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    k.run(p, 0)
    s0, u0 = render(k, G.stat), render(k, G.uptime)
    k.advance(60)
    s1, u1 = render(k, G.stat), render(k, G.uptime)
    ctxt = lambda s: int(re.search(r"ctxt (\d+)", s).group(1))
    assert ctxt(s1) > ctxt(s0)
    up0, up1 = float(u0.split()[0]), float(u1.split()[0])
    assert up1 - up0 == pytest.approx(60, abs=0.02)
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d\n", u1)
    idle = float(u1.split()[1])
    assert 7 * up1 - 0.1 <= idle <= 8 * up1  # 8 CPUs, one busy for the last minute
    la = render(k, G.loadavg)
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n", la)
    assert float(la.split()[0]) > 0.5  # one task ran for a minute
    assert la.split()[3].split("/")[1] == str(k.nr_threads())


def test_interrupts_layout_and_tlb_row(k: Kernel) -> None:
    text = render(k, G.interrupts)
    lines = text.splitlines()
    assert lines[0] == " " * 11 + "".join(f"CPU{i:<8}" for i in range(8))
    ours = [l.split(":")[0].strip() for l in lines[1:] if not l.split(":")[0].strip().isdigit()]
    theirs = [l.split(":")[0].strip() for l in real("/proc/interrupts").splitlines()[1:]
              if not l.split(":")[0].strip().isdigit()]
    assert ours == theirs
    nmi = next(l for l in lines if l.startswith("NMI:"))
    assert nmi == "NMI: " + "         0 " * 8 + "  Non-maskable interrupts"
    assert "ERR:          0" in lines
    # a shootdown: two threads of one process on CPUs 1 and 2; mprotect from CPU 1
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p)
    k.run(p, 1)
    k.run(t, 2)
    a = k.mmap(p, 4096)
    before = next(l for l in render(k, G.interrupts).splitlines() if l.startswith("TLB:")).split()[1:9]
    k.mprotect(p, a, 4096, 1)
    after = next(l for l in render(k, G.interrupts).splitlines() if l.startswith("TLB:")).split()[1:9]
    assert [int(b) - int(a_) for a_, b in zip(before, after)] == [0, 0, 1, 0, 0, 0, 0, 0]


def test_cpuinfo_layout_as_real(k: Kernel) -> None:
    ours = render(k, G.cpuinfo)
    assert ours.endswith("\n\n") and ours.count("processor\t: ") == 8
    first = ours.split("\n\n")[0].splitlines()
    theirs = real("/proc/cpuinfo").split("\n\n")[0].splitlines()
    assert [l.split(":")[0] for l in first] == [l.split(":")[0] for l in theirs]


def test_vmstat_keys_as_real(k: Kernel) -> None:
    ours = render(k, G.vmstat)
    assert [l.split()[0] for l in ours.splitlines()] == [l.split()[0] for l in real("/proc/vmstat").splitlines()]
    assert all(re.fullmatch(r"[a-z0-9_]+ \d+", l) for l in ours.splitlines())


def test_small_files(k: Kernel) -> None:
    assert render(k, G.cpu_online) == "0-7\n"
    assert render(k, G.pid_max) == "32768\n"
    assert render(k, G.osrelease) == "6.18.0-procsim\n"
    assert int(render(k, G.threads_max)) == k.max_threads
    assert render(k, G.version).startswith("Linux version 6.18.0-procsim ")
