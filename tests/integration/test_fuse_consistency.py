"""Cross-file agreement on the mount (clients.md §3, spec §7-9), for every
pid, and files that follow live changes at once."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from fusehelpers import PAGE, kb, maps, model, read, stat_fields, statm, status, user_maps

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def check_process(m, pid: int, p: dict) -> None:
    s = status(m, pid)
    st = stat_fields(m, pid)
    sm = statm(m, pid)
    tids = sorted(int(x) for x in os.listdir(f"{m.proc}/{pid}/task"))
    assert tids == sorted(p["threads"])
    assert int(s["Threads"]) == int(st[19]) == len(tids)          # stat field 20: num_threads
    vsize, rss = int(st[22]), int(st[23])                           # fields 23, 24
    assert sm[0] * PAGE == vsize
    assert sm[1] == rss == p["rss_pages"]
    if p["kthread"] or p["zombie"]:
        assert vsize == rss == 0 and sm == [0] * 7 and "VmSize" not in s
        assert read(f"{m.proc}/{pid}/maps") == "" == read(f"{m.proc}/{pid}/smaps")
        for name in ("smaps_rollup", "pagemap"):  # spec §1.6: no mm, no open
            with pytest.raises(OSError) as e:
                open(f"{m.proc}/{pid}/{name}", "rb")
            assert e.value.errno == errno.ESRCH
        return
    check_memory_files(m, pid, s)
    assert kb(s["VmSize"]) * 1024 == vsize
    assert kb(s["VmRSS"]) == rss * 4
    assert kb(s["VmRSS"]) == kb(s["RssAnon"]) + kb(s["RssFile"]) + kb(s["RssShmem"])
    assert sm[2] * 4 == kb(s["RssFile"]) + kb(s["RssShmem"])        # statm shared
    rows = user_maps(maps(m, pid))
    assert all(a < b for a, b, *_ in rows)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(rows, rows[1:])), "maps overlap or are out of order"
    assert sum(b - a for a, b, *_ in rows) == vsize                  # total_vm is the sum of the VMAs
    vmas = m.ctl.vmas(pid=pid)
    assert [(a, b, perms) for a, b, perms, _ in rows] == [(v["start"], v["end"], v["perms"]) for v in vmas]
    assert sum(v["rss_pages"] for v in vmas) == rss
    for tid in tids:  # thread views share the address space
        ts = stat_fields(m, f"{pid}/task/{tid}")
        assert int(ts[0]) == tid and int(ts[22]) == vsize and int(ts[23]) == rss
        assert status(m, f"{pid}/task/{tid}")["VmRSS"] == s["VmRSS"]


def smaps_blocks(text: str) -> list[tuple[str, dict[str, int]]]:
    """(maps line, {key: number}) per smaps block."""
    out: list[tuple[str, dict[str, int]]] = []
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and " " not in key and key != "VmFlags":
            out[-1][1][key] = int(rest.split()[0])
        elif not sep or "-" in key:
            out.append((line, {}))
    return out


def check_memory_files(m, pid: int, s: dict[str, str]) -> None:
    """smaps, smaps_rollup, numa_maps and pagemap against status and maps:
    one instant, one set of numbers (spec §4, §5, §10; clients.md §3)."""
    blocks = smaps_blocks(read(f"{m.proc}/{pid}/smaps"))
    maps_lines = read(f"{m.proc}/{pid}/maps").splitlines()
    assert [b[0] for b in blocks] == maps_lines
    for _, f in blocks:
        assert f["Rss"] == f["Shared_Clean"] + f["Shared_Dirty"] + f["Private_Clean"] + f["Private_Dirty"]
        assert f["Pss"] <= f["Rss"] and f["Pss_Dirty"] <= f["Pss"] and f["AnonHugePages"] <= f["Anonymous"]
    total = {k: sum(f[k] for _, f in blocks) for k in blocks[0][1]}
    assert total["Rss"] == kb(s["VmRSS"])
    assert total["Anonymous"] == kb(s["RssAnon"]) and total["Swap"] == kb(s["VmSwap"])
    rollup = smaps_blocks(read(f"{m.proc}/{pid}/smaps_rollup"))[0][1]
    for key in ("Rss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Anonymous",
                "AnonHugePages", "Swap", "Referenced"):
        assert rollup[key] == total[key], key
    # PSS is cut to kB once in the rollup, once per VMA in smaps (and once
    # per part of its anon/file/shmem split)
    assert total["Pss"] <= rollup["Pss"] < total["Pss"] + len(blocks)
    assert rollup["Pss"] - 2 <= rollup["Pss_Anon"] + rollup["Pss_File"] + rollup["Pss_Shmem"] <= rollup["Pss"]
    # numa_maps leaves out the kernel's vDSO page, which Rss counts
    numa = read(f"{m.proc}/{pid}/numa_maps").splitlines()
    assert [int(l.split()[0], 16) for l in numa] == [int(l.split("-")[0], 16) for l in maps_lines[:-1]]
    n0 = sum(int(w[3:]) for l in numa for w in l.split() if w.startswith("N0="))
    vdso = sum(f["Rss"] for line, f in blocks if line.endswith("[vdso]"))
    assert n0 * 4 == total["Rss"] - vdso
    # pagemap: a present entry for every resident page, and for reads of
    # untouched anonymous memory the zero page (found by its kpageflags bit)
    with open(f"{m.proc}/kpageflags", "rb") as kf:
        low = np.frombuffer(kf.read(8 * 1024), "<u8")
    zero_pfn = int(np.flatnonzero(low >> np.uint64(24) & np.uint64(1))[0])  # KPF_ZERO_PAGE
    present = zero = 0
    with open(f"{m.proc}/{pid}/pagemap", "rb") as pm:
        for line in maps_lines[:-1]:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            e = np.frombuffer(os.pread(pm.fileno(), ((hi - lo) >> 12) * 8, (lo >> 12) * 8), "<u8")
            e = e[(e >> np.uint64(63)) != 0]
            present += len(e)
            zero += int(np.count_nonzero((e & np.uint64((1 << 55) - 1)) == zero_pfn))
    assert (present - zero) * 4 == total["Rss"]


def test_every_pid_agrees(machine):
    ps = model(machine)
    listed = sorted(int(n) for n in os.listdir(machine.proc) if n.isdigit())
    assert listed == sorted(ps)
    for pid, p in ps.items():
        check_process(machine, pid, p)


def test_threads_are_looked_up_but_not_listed(machine):
    ps = model(machine)
    java = next(pid for pid, p in ps.items() if p["comm"] == "java")
    tid = ps[java]["threads"][3]
    assert str(tid) not in os.listdir(machine.proc)
    s = status(machine, tid)  # spec §1.2: /proc/<tid> resolves
    assert (s["Pid"], s["Tgid"]) == (str(tid), str(java))
    assert sorted(int(x) for x in os.listdir(f"{machine.proc}/{tid}/task")) == sorted(ps[java]["threads"])


def snapshot(m, pid: int) -> dict:
    s = status(m, pid)
    return {"VmSize": kb(s["VmSize"]), "VmRSS": kb(s["VmRSS"]), "RssAnon": kb(s["RssAnon"]),
            "Threads": int(s["Threads"]), "maps": user_maps(maps(m, pid)), "statm": statm(m, pid),
            "stat": stat_fields(m, pid)}


def meminfo(m) -> dict[str, int]:
    return {l.split(":")[0]: int(l.split()[1]) for l in read(f"{m.proc}/meminfo").splitlines()}


def test_live_changes_show_at_once(procsim_machine):
    m = procsim_machine
    ctl = m.ctl
    bash = next(pid for pid, p in model(m).items() if p["cmdline"] == ["-bash"])

    # spawn: the new pid is listed and readable at once
    pid = ctl.spawn(argv=["/usr/local/bin/cruncher", "--big"], parent=bash)
    assert str(pid) in os.listdir(m.proc)
    s = status(m, pid)
    assert (s["Name"], s["PPid"]) == ("cruncher", str(bash))
    check_process(m, pid, model(m)[pid])
    base = snapshot(m, pid)

    # mmap: VmSize grows by exactly the length, a new rw-p VMA covers it, RSS does not move
    addr = ctl.mmap(pid=pid, length=64 * MiB)
    after = snapshot(m, pid)
    assert after["VmSize"] == base["VmSize"] + 64 * 1024
    assert after["VmRSS"] == base["VmRSS"]
    assert any(a <= addr and addr + 64 * MiB <= b and perms == "rw-p" for a, b, perms, _ in after["maps"])
    check_process(m, pid, model(m)[pid])

    # touch: every page faulted in is one more resident anonymous page
    mem0 = meminfo(m)
    assert ctl.touch(pid=pid, addr=addr, length=16 * MiB) == 16 * MiB // PAGE
    touched = snapshot(m, pid)
    mem1 = meminfo(m)
    assert touched["VmRSS"] == after["VmRSS"] + 16 * 1024
    assert touched["RssAnon"] == after["RssAnon"] + 16 * 1024
    assert touched["statm"][1] == after["statm"][1] + 16 * MiB // PAGE
    assert int(touched["stat"][23]) == int(after["stat"][23]) + 16 * MiB // PAGE
    assert mem1["AnonPages"] == mem0["AnonPages"] + 16 * 1024
    assert mem1["MemFree"] <= mem0["MemFree"] - 16 * 1024
    check_process(m, pid, model(m)[pid])

    # mprotect of the middle splits the VMA in three; the size does not change
    ctl.mprotect(pid=pid, addr=addr + 16 * MiB, length=16 * MiB, prot="r")
    split = snapshot(m, pid)
    assert split["VmSize"] == after["VmSize"]
    assert (addr + 16 * MiB, addr + 32 * MiB, "r--p", "") in split["maps"]
    check_process(m, pid, model(m)[pid])

    # fork: the child has the same address space layout and size
    child = ctl.fork(pid=pid)
    assert str(child) in os.listdir(m.proc)
    cs = snapshot(m, child)
    assert cs["VmSize"] == split["VmSize"]
    assert [r[:3] for r in cs["maps"]] == [r[:3] for r in split["maps"]]
    assert status(m, child)["PPid"] == str(pid)
    check_process(m, child, model(m)[child])

    # munmap: back to the spawned size and residency
    ctl.munmap(pid=pid, addr=addr, length=64 * MiB)
    gone = snapshot(m, pid)
    assert gone["VmSize"] == base["VmSize"] and gone["VmRSS"] == base["VmRSS"]
    assert gone["maps"] == base["maps"]
    check_process(m, pid, model(m)[pid])

    # a thread comes and goes
    tid = ctl.clone(pid=pid, comm="cruncher-io")
    assert int(status(m, pid)["Threads"]) == 2
    assert sorted(os.listdir(f"{m.proc}/{pid}/task")) == sorted([str(pid), str(tid)])
    assert read(f"{m.proc}/{pid}/task/{tid}/comm") == "cruncher-io\n"
    ctl.exit(pid=tid)
    assert int(status(m, pid)["Threads"]) == 1
    assert os.listdir(f"{m.proc}/{pid}/task") == [str(pid)]
    with pytest.raises(FileNotFoundError):
        os.stat(f"{m.proc}/{pid}/task/{tid}")

    # exit: a zombie until its parent reaps it, then gone at once
    os.stat(f"{m.proc}/{pid}/status")  # have the kernel cache the entries
    ctl.exit_group(pid=pid, code=3)
    zs = stat_fields(m, pid)
    assert zs[2] == "Z" and int(zs[22]) == int(zs[23]) == 0
    assert status(m, pid)["State"] == "Z (zombie)"
    assert statm(m, pid) == [0] * 7
    assert status(m, child)["PPid"] == "1"  # reparented to init
    assert ctl.wait(pid=bash, child=pid) == pid
    for path in (f"{m.proc}/{pid}", f"{m.proc}/{pid}/status", f"{m.proc}/{pid}/task/{pid}"):
        with pytest.raises(OSError) as e:
            os.stat(path)
        assert e.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError):
        open(f"{m.proc}/{pid}/stat").close()
    assert str(pid) not in os.listdir(m.proc)
    assert pid not in model(m)


def test_pid_dentries_go_with_their_task(procsim_machine):
    """proc_flush_pid: the dentries the client's kernel cached (1 s entry
    timeout) of a released thread, /proc/TID and /proc/PID/task/TID, are
    gone at once, and a new owner of a process is seen at once."""
    m = procsim_machine
    ctl = m.ctl
    pid = ctl.spawn(argv=["/usr/bin/python3"])
    tid = ctl.clone(pid=pid)
    paths = (f"{m.proc}/{tid}", f"{m.proc}/{pid}/task/{tid}")
    for path in paths:
        os.stat(path)  # have the kernel cache the entries
    assert os.stat(f"{m.proc}/{pid}").st_uid == 0
    ctl.setuid(pid=pid, uid=1000)
    assert os.stat(f"{m.proc}/{pid}").st_uid == 1000
    assert os.stat(f"{m.proc}/{tid}").st_uid == 1000
    t0 = time.monotonic()
    ctl.exit(pid=tid)
    for path in paths:
        with pytest.raises(FileNotFoundError):
            os.stat(path)
    assert time.monotonic() - t0 < 0.9  # not the entry timeout running out
    assert os.listdir(f"{m.proc}/{pid}/task") == [str(pid)]


def real_zombie_exit_codes() -> dict[str, str]:
    """stat field 52 of real zombies: exit(3), SIGKILL, SIGTERM."""
    out = {}
    for how in ("exit3", "kill9", "kill15"):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.read(r, 1)
            os._exit(3)
        if how == "exit3":
            os.write(w, b"x")
        else:
            os.kill(pid, int(how[4:]))
        for _ in range(1000):
            fields = read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                break
            time.sleep(0.01)
        out[how] = fields[-1]
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    return out


def test_zombie_exit_code_as_on_the_real_kernel(machine):
    """stat field 52 of a zombie is its wait(2) status: code << 8 after exit,
    the bare signal number when killed (the model used to shift both)."""
    real = real_zombie_exit_codes()
    assert real == {"exit3": str(3 << 8), "kill9": "9", "kill15": "15"}
    bash = next(pid for pid, p in model(machine).items() if p["cmdline"] == ["-bash"])
    for how, want in real.items():
        pid = machine.ctl.spawn(argv=["/usr/bin/sleep", "60"], parent=bash)
        if how == "exit3":
            machine.ctl.exit_group(pid=pid, code=3)
        else:
            machine.ctl.kill(pid=pid, sig=int(how[4:]))
        assert stat_fields(machine, pid)[51] == want, how
        assert machine.ctl.wait(pid=bash, child=pid) == pid


LEADER_EXITS = ("import ctypes, threading, time\n"
                "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
                "time.sleep(0.1)\n"
                "ctypes.CDLL(None).pthread_exit(None)\n")


def real_dead_leader() -> dict:
    """A real process whose main thread exited while another thread runs."""
    p = subprocess.Popen([sys.executable, "-c", LEADER_EXITS])
    try:
        for _ in range(500):
            if read(f"/proc/{p.pid}/stat").rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.01)
        return dead_leader_view("/proc", p.pid)
    finally:
        p.kill()
        p.wait()


def dead_leader_view(proc: str, pid: int) -> dict:
    keys = [l.split(":")[0] for l in read(f"{proc}/{pid}/status").splitlines()]
    stat = read(f"{proc}/{pid}/stat").rsplit(")", 1)[1].split()
    tids = sorted(int(t) for t in os.listdir(f"{proc}/{pid}/task"))
    other = read(f"{proc}/{pid}/task/{tids[1]}/status")
    return {"state": stat[0], "vsize_rss": stat[20:22], "statm": read(f"{proc}/{pid}/statm"),
            "maps": read(f"{proc}/{pid}/maps"), "mem_lines": [k for k in keys if k.startswith(("Vm", "Rss"))],
            "umask": "Umask" in keys, "threads": len(tids), "thread_has_vm": "VmRSS:" in other}


def test_leader_exits_before_its_threads(machine):
    """The real kernel shows no memory for an exited leader (its task->mm is
    gone) while the group lives on in its other threads; the model showed the
    group's memory there."""
    real = real_dead_leader()
    assert real == {"state": "Z", "vsize_rss": ["0", "0"], "statm": "0 0 0 0 0 0 0\n", "maps": "",
                    "mem_lines": [], "umask": False, "threads": 2, "thread_has_vm": True}
    bash = next(pid for pid, p in model(machine).items() if p["cmdline"] == ["-bash"])
    pid = machine.ctl.spawn(argv=["/usr/bin/python3", "worker.py"], parent=bash)
    tid = machine.ctl.clone(pid=pid)
    machine.ctl.exit(pid=pid)
    assert dead_leader_view(machine.proc, pid) == real
    rss = model(machine)[pid]["rss_pages"]
    assert rss > 0 and statm(machine, f"{pid}/task/{tid}")[1] == rss  # the live thread still has it all
    assert status(machine, tid)["VmRSS"] == f"{rss * 4:>8} kB"
    ps = machine.run(["ps", "-o", "stat=,rss=,vsz=", "-p", str(pid)], capture_output=True, text=True, timeout=60)
    assert ps.stdout.split() == ["Zl", "0", "0"]  # what ps shows for such a process on Linux
    machine.ctl.exit(pid=tid)
    assert machine.ctl.wait(pid=bash, child=pid) == pid
