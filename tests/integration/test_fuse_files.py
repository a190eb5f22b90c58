"""cat and grep on the mounted files, compared with the model (control
client), the scenario the machine was built from, and the spec."""

from __future__ import annotations

import re
import subprocess

import pytest

from fusehelpers import PAGE, maps, model, user_maps

pytestmark = pytest.mark.fuse

# From procsim/scenarios/default.toml and the KernelConfig defaults it keeps.
NR_CPUS = 8
MEM_KB = 16 << 20                 # mem = "16G"
RESERVED_KB = 256 << 10           # kernel_reserved_bytes default (256 MiB)
SWAP_KB = (2 << 20) - 4           # swap = "2G", less the swap header page (spec §15)
PID_MAX = 32768                   # spec §0.1 reference platform


def cat(*paths: str) -> str:
    r = subprocess.run(["cat", *paths], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def grep(*args: str) -> list[str]:
    r = subprocess.run(["grep", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r.stdout.splitlines()


@pytest.fixture(scope="module")
def ps(machine):
    return model(machine)


def user_pids(ps) -> list[int]:
    return [p for p, v in ps.items() if not v["kthread"] and not v["zombie"]]


def test_cat_status_of_every_process(machine, ps):
    for pid, p in ps.items():
        text = cat(f"{machine.proc}/{pid}/status")
        f = dict(line.split(":\t", 1) for line in text.splitlines())
        assert f["Name"] == p["comm"]
        assert f["Pid"] == f["Tgid"] == str(pid)
        assert f["PPid"] == str(p["ppid"])
        assert f["Uid"].split("\t")[1] == str(p["uid"])
        assert f["Threads"] == str(len(p["threads"]))
        if p["kthread"]:
            assert "VmRSS" not in f and f["Kthread"] == "1"
        else:
            t = machine.ctl.task(pid=pid)
            assert f["VmRSS"] == f"{p['rss_pages'] * 4:>8} kB"
            assert f["VmSize"] == f"{t['total_vm'] * 4:>8} kB"
            assert f["State"][0] == t["state"]


def test_grep_status_lines(machine, ps):
    java = next(pid for pid, p in ps.items() if p["comm"] == "java")
    lines = grep("-E", r"^(Name|Threads|VmRSS):", f"{machine.proc}/{java}/status")
    assert lines == ["Name:\tjava", f"VmRSS:\t{ps[java]['rss_pages'] * 4:>8} kB",
                     f"Threads:\t{len(ps[java]['threads'])}"]
    # grep across many files at once, as people do
    hits = grep("-H", "^Uid:", *(f"{machine.proc}/{p}/status" for p in user_pids(ps)))
    assert len(hits) == len(user_pids(ps))
    for h in hits:
        pid = int(h.split("/")[-2])
        assert h.split("\t")[2] == str(ps[pid]["uid"])


def test_cat_stat(machine, ps):
    for pid in user_pids(ps):
        s = cat(f"{machine.proc}/{pid}/stat")
        assert s.count("\n") == 1 and s.endswith("\n")
        head, _, rest = s.rstrip("\n").rpartition(") ")
        fields = rest.split()
        assert head == f"{pid} ({ps[pid]['comm']}"
        assert len(fields) == 50  # 52 fields less pid and comm (spec §8)
        t = machine.ctl.task(pid=pid)
        assert int(fields[1]) == ps[pid]["ppid"]            # 4 ppid
        assert int(fields[17]) == len(ps[pid]["threads"])   # 20 num_threads
        assert int(fields[20]) == t["total_vm"] * PAGE      # 23 vsize
        assert int(fields[21]) == ps[pid]["rss_pages"]      # 24 rss
        assert int(fields[36]) == t["cpu"]                  # 39 processor


def test_cat_statm(machine, ps):
    for pid in user_pids(ps):
        v = cat(f"{machine.proc}/{pid}/statm").split()
        assert len(v) == 7
        t = machine.ctl.task(pid=pid)
        assert int(v[0]) == t["total_vm"]
        assert int(v[1]) == ps[pid]["rss_pages"]
        # shared = file + shmem (spec §9); the model's counters are [file, anon, swap, shmem]
        assert int(v[2]) == t["rss"][0] + t["rss"][3]
        assert v[4] == v[6] == "0"
    kthread = next(pid for pid, p in ps.items() if p["kthread"])
    assert cat(f"{machine.proc}/{kthread}/statm") == "0 0 0 0 0 0 0\n"


def test_cat_maps(machine, ps):
    for pid in user_pids(ps):
        text = cat(f"{machine.proc}/{pid}/maps")
        rows = maps(machine, pid)
        vmas = machine.ctl.vmas(pid=pid)
        assert [(r[0], r[1], r[2]) for r in user_maps(rows)] == [(v["start"], v["end"], v["perms"]) for v in vmas]
        # x86: the gate VMA closes every 64-bit process's maps (spec §3)
        assert text.endswith("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0"
                             + " " * 18 + "[vsyscall]\n")
        for line, v in zip(text.splitlines(), vmas):
            if v["path"]:
                assert line.index(v["path"]) == 73  # name column (spec §3.1)
                assert line.endswith(v["path"])


def test_cat_cmdline(machine, ps):
    for pid, p in ps.items():
        raw = subprocess.run(["cat", f"{machine.proc}/{pid}/cmdline"], capture_output=True, check=True).stdout
        if p["kthread"]:
            assert raw == b""
        else:
            # a title rewritten in place (nginx, postgres) is padded with NULs to
            # the argv area's end, which get_mm_cmdline() returns whole
            title = "".join(a + "\0" for a in p["cmdline"]).encode()
            assert raw == title + bytes(max(0, p["arg_len"] - len(title)))


def test_grep_meminfo(machine):
    lines = grep("-E", "^(MemTotal|SwapTotal|SwapFree|HugePages_Total):", f"{machine.proc}/meminfo")
    assert lines == [
        f"MemTotal:       {MEM_KB - RESERVED_KB:>8} kB",
        f"SwapTotal:      {SWAP_KB:>8} kB",
        f"SwapFree:       {SWAP_KB:>8} kB",      # nothing swapped out
        "HugePages_Total:       0",
    ]
    # MemTotal = MemFree + Buffers + Cached + AnonPages + Slab + PageTables
    #            + Percpu + VmallocUsed  (KernelStack is inside VmallocUsed)
    v = {l.split(":")[0]: int(l.split()[1]) for l in cat(f"{machine.proc}/meminfo").splitlines()}
    assert v["MemTotal"] == (v["MemFree"] + v["Buffers"] + v["Cached"] + v["AnonPages"] + v["Slab"]
                             + v["PageTables"] + v["Percpu"] + v["VmallocUsed"])
    assert v["MemAvailable"] <= v["MemTotal"] and v["MemFree"] <= v["MemTotal"]


def test_cat_loadavg(machine, ps):
    text = cat(f"{machine.proc}/loadavg")
    mt = re.fullmatch(r"(\d+\.\d\d) (\d+\.\d\d) (\d+\.\d\d) (\d+)/(\d+) (\d+)\n", text)
    assert mt, text
    threads = [tid for p in ps.values() for tid in p["threads"]]
    assert int(mt[5]) == len(threads)
    running = sum(1 for tid in threads if machine.ctl.task(pid=tid)["state"] == "R")
    assert int(mt[4]) == running  # nr_running(): the reader (a host process) is not counted
    assert int(mt[6]) >= max(ps)  # the last pid handed out
    # an hour of boot history with 6 tasks running for the last 20 minutes or more
    one, five, fifteen = map(float, mt.group(1, 2, 3))
    assert one == pytest.approx(running, abs=0.05) and fifteen <= five <= one


def test_grep_tlb_line_of_interrupts(machine):
    lines = grep("TLB:", f"{machine.proc}/interrupts")
    assert len(lines) == 1
    counts = [c["tlb"] for c in machine.ctl.cpus()]
    assert len(counts) == NR_CPUS
    # spec §20: 3-wide label, per CPU a 10-wide count and a space, then 2 more spaces
    assert lines[0] == "TLB: " + "".join(f"{n:>10} " for n in counts) + "  TLB shootdowns"


def test_cat_uptime(machine):
    up, idle = cat(f"{machine.proc}/uptime").split()
    now = machine.ctl.now()
    assert up == f"{int(now * 100) // 100}.{int(now * 100) % 100:02d}"  # truncated, 2 decimals
    assert re.fullmatch(r"\d+\.\d\d", idle)
    assert float(idle) <= NR_CPUS * now


def test_cat_sysctl_and_sysfs(machine):
    assert cat(f"{machine.proc}/sys/kernel/pid_max") == f"{PID_MAX}\n"
    assert cat(f"{machine.sys}/devices/system/cpu/online") == f"0-{NR_CPUS - 1}\n"
    assert grep("-c", "^processor", f"{machine.proc}/cpuinfo") == [str(NR_CPUS)]
