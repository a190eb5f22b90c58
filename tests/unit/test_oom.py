"""The OOM killer: oom_score, oom_score_adj and oom_adj (fs/proc/base.c, as
the real 6.18 kernel answers), two-pass victim selection against an
exhaustive precise scan, and OOM kills from faults."""

from __future__ import annotations

import errno
import os
import re
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from hostinfo import possible_cpus
from procsim import Kernel
from procsim.commands import CommandError, execute
from procsim.mm import oom as O
from procsim.mm.counter_tree import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS
from procsim.mm.sysctl_vm import set_vm_sysctl
from procsim.procfs.context import Caller, Ctx
from procsim.procfs import pid as P
from procsim.procfs import meminfo as meminfo_f
from procsim.procfs.tree import ProcFS

from procfs_helpers import errno_of, read_all
from invariants import boot, check_mappings, check_swap, check_world

MiB = 1 << 20
CAP = 1 << O.CAP_SYS_RESOURCE
NOCAP = Caller(os.getpid(), 0, 0, caps=0)          # root without CAP_SYS_RESOURCE (as in a container)
PRIV = Caller(os.getpid(), 0, 0, caps=CAP)


def machine(**kw) -> Kernel:
    """vm.overcommit_memory = 1, as one sets it on Linux to drive the OOM
    killer: the default heuristic refuses a mapping larger than RAM and
    swap at mmap (ENOMEM) before any fault could run out of memory."""
    k = boot(**kw)
    set_vm_sysctl(k, "overcommit_memory", 1)
    return k


def status_pages(k: Kernel, pid: int) -> dict[str, int]:
    text = P.status(Ctx(k, PRIV, k.tasks[pid])).decode()
    return {m[1]: int(m[2]) // 4 for m in re.finditer(r"^(\w+):\s+(\d+) kB$", text, re.M)}


def write(fs: ProcFS, path: str, data: bytes, caller: Caller = NOCAP) -> int:
    return fs.open(path, os.O_WRONLY, caller).write(data, 0)


def read(fs: ProcFS, path: str) -> str:
    return read_all(fs, path, PRIV).decode()


# -- oom_score -----------------------------------------------------------------------

def expected_score(k: Kernel, pid: int, adj: int) -> int:
    """proc_oom_score() from status numbers: (1000 + badness*1000/totalpages)*2/3,
    badness = rss + swap + page-table pages + adj * (totalpages / 1000)."""
    s = status_pages(k, pid)
    tp = s_total = (k.mem.nr_pages - k.mem.first_free) + k.mem.swap.pages
    assert tp == s_total
    b = s["VmRSS"] + s["VmSwap"] + s["VmPTE"] + adj * (tp // 1000)
    q = abs(b) * 1000 // tp  # C division truncates toward zero: -235.99 is -235
    return (1000 + (q if b >= 0 else -q)) * 2 // 3


def test_oom_score_follows_rss_and_adj():
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"])
    a = execute(k, "mmap", {"pid": p, "length": 256 * MiB})
    execute(k, "touch", {"pid": p, "addr": a, "length": 200 * MiB})
    tp = 196608  # 1 GiB less the 256 MiB reserved, no swap
    assert O.total_pages(k) == tp
    s = status_pages(k, p)
    assert s["VmRSS"] > 200 * MiB // 4096
    base = expected_score(k, p, 0)
    assert read(fs, f"/proc/{p}/oom_score") == f"{base}\n"
    assert base == (1000 + (s["VmRSS"] + s["VmPTE"]) * 1000 // tp) * 2 // 3 == 841  # 200 MiB of 768: (1000 + 262) * 2 / 3
    assert expected_score(k, p, -500) == 510  # (51603 - 98000) * 1000 / 196608 = -235
    for adj in (1000, 500, -500, -999):
        k.groups[p].oom_score_adj = adj
        k.generation += 1
        assert read(fs, f"/proc/{p}/oom_score") == f"{expected_score(k, p, adj)}\n"
    k.groups[p].oom_score_adj = -1000
    k.generation += 1
    assert read(fs, f"/proc/{p}/oom_score") == "0\n"      # OOM_SCORE_ADJ_MIN: LONG_MIN -> 0
    assert read(fs, "/proc/1/oom_score") == "0\n"          # init is unkillable
    assert read(fs, "/proc/2/oom_score") == "0\n"          # so are kernel threads
    assert read(fs, f"/proc/{p}/task/{p}/oom_score") == "0\n"


def test_oom_score_formula_matches_the_real_kernel():
    """The same formula on a real process of this machine (the oracle)."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        pid = proc.pid
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write("411")
        real = int(open(f"/proc/{pid}/oom_score").read())
        st_ = {m[1]: int(m[2]) // 4 for m in re.finditer(r"^(\w+):\s+(\d+) kB$", open(f"/proc/{pid}/status").read(), re.M)}
        mi = {m[1]: int(m[2]) // 4 for m in re.finditer(r"^(\w+):\s+(\d+) kB$", open("/proc/meminfo").read(), re.M)}
        tp = mi["MemTotal"] + mi["SwapTotal"]
        # the real oom_badness reads the approximate per-CPU counters: allow their error
        slack = 3 * 31 * possible_cpus()  # nr_cpu_ids: the per-CPU counters of every possible CPU
        b = st_["VmRSS"] + st_["VmSwap"] + st_["VmPTE"] + 411 * (tp // 1000)
        lo, hi = ((1000 + (b + d) * 1000 // tp) * 2 // 3 for d in (-slack, slack))
        assert lo <= real <= hi
        assert real == (1000 + 411) * 2 // 3 or tp < 1000 * slack  # a few MiB are nothing on a big machine
    finally:
        proc.kill()
        proc.wait()


# -- oom_score_adj writes: parsing and errnos as 6.18 (checked on the real /proc) -----

# (bytes written, the write's result: the count returned or -errno, the value read back
# after), from 0, by a writer without CAP_SYS_RESOURCE
WRITES = [
    (b"-1001", -errno.EINVAL, 0), (b"1001", -errno.EINVAL, 0), (b"abc", -errno.EINVAL, 0), (b"", -errno.EINVAL, 0),
    (b" 5\n", 3, 5), (b"0x10", 4, 16), (b"010", 3, 8), (b"08", -errno.EINVAL, 0), (b"-0x10", -errno.EACCES, 0),
    (b"+7", 2, 7), (b"-+7", -errno.EINVAL, 0), (b"1000", 4, 1000), (b"-1000", -errno.EACCES, 0),
    (b"1 2", -errno.EINVAL, 0), (b"5\n\n", 3, 5), (b"5\x00zz", 4, 5), (b"0000000000005", 12, 0),
    (b"99999999999", -errno.ERANGE, 0), (b"2147483648", -errno.ERANGE, 0), (b"\n", -errno.EINVAL, 0),
    (b"0x", -errno.EINVAL, 0), (b"1e3", -errno.EINVAL, 0), (b"\xa05", 2, 5), (b"\x0b5\x0c", 3, 5), (b"0", 1, 0),
    (b"-0", 2, 0), (b"0X1f", 4, 31), (b"-", -errno.EINVAL, 0), (b"+", -errno.EINVAL, 0),
]


@pytest.mark.parametrize("data,result,after", WRITES)
def test_oom_score_adj_write(data, result, after):
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"])
    tg = k.groups[p]
    if result < 0:
        assert errno_of(write, fs, f"/proc/{p}/oom_score_adj", data) == -result
    else:
        assert write(fs, f"/proc/{p}/oom_score_adj", data) == result
    assert (tg.oom_score_adj, tg.oom_score_adj_min) == (after, 0)
    assert read(fs, f"/proc/{p}/oom_score_adj") == f"{after}\n"


def test_oom_score_adj_floor_and_capability():
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"])
    tg = k.groups[p]
    path = f"/proc/{p}/oom_score_adj"
    assert write(fs, path, b"300") == 3
    assert write(fs, path, b"100") == 3          # lower, but not below the floor (0): allowed
    assert errno_of(write, fs, path, b"-1") == errno.EACCES
    assert write(fs, path, b"-500", PRIV) == 4   # CAP_SYS_RESOURCE: any value, and it sets the floor
    assert (tg.oom_score_adj, tg.oom_score_adj_min) == (-500, -500)
    assert write(fs, path, b"-400") == 4 and write(fs, path, b"-500") == 4
    assert errno_of(write, fs, path, b"-501") == errno.EACCES
    assert (tg.oom_score_adj, tg.oom_score_adj_min) == (-500, -500)
    assert write(fs, f"/proc/{p}/task/{p}/oom_score_adj", b"20") == 2  # the thread view: the same signal struct
    assert read(fs, path) == "20\n"
    child = k.fork(p)
    assert (k.groups[child].oom_score_adj, k.groups[child].oom_score_adj_min) == (20, -500)  # copy_signal()
    assert read(fs, "/proc/2/oom_score_adj") == "0\n"


def test_oom_score_adj_write_to_a_reaped_task_is_esrch():
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"])
    h = fs.open(f"/proc/{p}/oom_score_adj", os.O_WRONLY, PRIV)
    k.kill(p)  # init's child: reaped at once
    with pytest.raises(OSError) as e:
        h.write(b"5", 0)
    assert e.value.errno == errno.ESRCH
    with pytest.raises(OSError) as e:  # a bad value is refused before the task is looked up
        h.write(b"x", 0)
    assert e.value.errno == errno.EINVAL


# -- oom_adj: the legacy scale ------------------------------------------------------

@pytest.mark.parametrize("score_adj,oom_adj", [(0, 0), (1000, 15), (500, 8), (411, 6), (-1000, -17), (5, 0),
                                                (-59, -1), (-58, 0), (999, 15), (-941, -15)])
def test_oom_adj_is_derived(score_adj, oom_adj):
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"])
    k.groups[p].oom_score_adj = score_adj
    k.generation += 1
    assert read(fs, f"/proc/{p}/oom_adj") == f"{oom_adj}\n"


def test_oom_adj_write():
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"])
    tg = k.groups[p]
    path = f"/proc/{p}/oom_adj"
    for data, want in ((b"-17", errno.EACCES), (b"-16", errno.EACCES), (b"16", errno.EINVAL),
                       (b"-18", errno.EINVAL), (b"abc", errno.EINVAL)):
        assert errno_of(write, fs, path, data) == want
        assert tg.oom_score_adj == 0
    assert write(fs, path, b"7") == 1
    assert (tg.oom_score_adj, read(fs, path)) == (411, "6\n")  # 7*1000/17; read back 411*17/1000
    assert write(fs, path, b"15\n") == 3
    assert (tg.oom_score_adj, read(fs, path)) == (1000, "15\n")
    # the legacy file checks against the current value, not the floor
    assert errno_of(write, fs, path, b"1") == errno.EACCES
    assert write(fs, path, b"-17", PRIV) == 3
    assert (tg.oom_score_adj, tg.oom_score_adj_min, read(fs, path)) == (-1000, 0, "-17\n")
    assert write(fs, f"/proc/{p}/oom_score_adj", b"0") == 1  # back up to the floor (0): allowed
    assert write(fs, path, b"-16", PRIV) == 3 and tg.oom_score_adj == -941


def test_modes():
    k = machine()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"], uid=1000, gid=1000)
    for name, mode in (("oom_score", 0o444), ("oom_score_adj", 0o644), ("oom_adj", 0o644), ("rss_counters", 0o444)):
        for path in (f"/proc/{p}/{name}", f"/proc/{p}/task/{p}/{name}"):
            a = fs.getattr(path, PRIV)
            assert (a.mode & 0o7777, a.uid) == (mode, 1000), path
    assert fs.getattr("/proc/procsim/oom_log", PRIV).mode & 0o7777 == 0o444
    assert errno_of(write, fs, f"/proc/{p}/oom_score", b"1") == errno.EINVAL


# -- counters on the task's CPU, and what the files read -----------------------------

def test_faults_add_on_the_cpu_the_task_runs_on_and_files_show_precise_sums():
    k = machine(nr_cpus=8)
    p = k.spawn(["/usr/bin/app"])
    a = execute(k, "mmap", {"pid": p, "length": 64 * MiB})
    k.run(p, 5)
    execute(k, "touch", {"pid": p, "addr": a, "length": 100 * 4096})
    mm = k.groups[p].mm
    r = mm.rss
    assert int(r.pcpu[MM_ANONPAGES, 5]) == 100
    k.run(p, 2)
    execute(k, "munmap", {"pid": p, "addr": a, "length": 40 * 4096})
    assert int(r.pcpu[MM_ANONPAGES, 2]) == -40
    anon = r.precise(MM_ANONPAGES)
    assert r.approx(MM_ANONPAGES) != anon  # the approximation lags (8 CPUs: multiples of 128 at the root)
    s = status_pages(k, p)
    assert s["RssAnon"] == anon and s["VmRSS"] == mm.rss_pages == r.rss_precise()
    assert s["VmRSS"] == r.precise(MM_ANONPAGES) + r.precise(MM_FILEPAGES) + r.precise(MM_SHMEMPAGES)
    statm = P.statm(Ctx(k, PRIV, k.tasks[p])).decode().split()
    assert int(statm[1]) == s["VmRSS"]
    stat = P.stat(Ctx(k, PRIV, k.tasks[p])).decode().rsplit(")", 1)[1].split()
    assert int(stat[21]) == s["VmRSS"]
    k.config.stat_rss = "approx"
    stat = P.stat(Ctx(k, PRIV, k.tasks[p])).decode().rsplit(")", 1)[1].split()
    assert int(stat[21]) == r.rss_approx() < s["VmRSS"]
    text = P.status(Ctx(k, PRIV, k.tasks[p])).decode()
    assert f"VmRSS:\t{s['VmRSS'] * 4:>8} kB\n" in text


def test_rss_counters_file():
    k = machine(nr_cpus=8)
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/app"])
    r = k.groups[p].mm.rss
    lines = read(fs, f"/proc/{p}/rss_counters").splitlines()
    assert lines[0] == "counter tree nr_cpus 8 batch 32 levels 3 under 768 over 744"
    for i, (line, name) in enumerate(zip(lines[1:], ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES"))):
        f = line.split()
        assert f[0] == name
        precise, approx, lo, hi = map(int, f[1:])
        assert (precise, approx) == (r.precise(i), r.approx(i))
        assert (lo, hi) == (approx - 744, approx + 768) and lo <= precise <= hi
    assert len(lines) == 5
    kf = machine(nr_cpus=8, rss_counter="flat")
    pf = kf.spawn(["/usr/bin/app"])
    assert read(ProcFS(kf), f"/proc/{pf}/rss_counters").splitlines()[0] == \
        "counter flat nr_cpus 8 batch 32 levels 1 under 248 over 248"
    assert execute(kf, "rss_counters", {"pid": pf})["kind"] == "flat"
    k.kill(p)
    assert errno_of(fs.open, f"/proc/{p}/rss_counters", os.O_RDONLY, PRIV) == errno.ENOENT


# -- two-pass selection == exhaustive precise scan --------------------------------------

@st.composite
def populations(draw):
    n_cpus = draw(st.sampled_from([1, 2, 8, 64, 384]))
    procs = draw(st.lists(st.tuples(
        st.sampled_from([-1000, -200, 0, 0, 0, 1, 300, 1000]),                  # oom_score_adj
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, n_cpus - 1),
                           st.one_of(st.sampled_from([0, 5000, 20000]), st.integers(-300, 40000))),
                 max_size=8)),                                                   # (counter, cpu, pages)
        min_size=1, max_size=10))
    return n_cpus, procs


def build(n_cpus: int, procs, counter: str = "tree") -> Kernel:
    k = boot(nr_cpus=n_cpus, rss_counter=counter)
    for adj, adds in procs:
        p = k.spawn(["/usr/bin/app"])
        tg = k.groups[p]
        tg.oom_score_adj = adj
        for counter_idx, cpu, pages in adds:
            tg.mm.rss.add(counter_idx, pages, cpu)  # RSS as counted, without pages behind it
    return k


@settings(max_examples=60, deadline=None)
@given(populations(), st.sampled_from(["tree", "flat"]))
def test_two_pass_picks_the_exhaustive_scans_victim(pop, counter):
    k = build(*pop, counter=counter)
    tp = O.total_pages(k)
    groups = list(k.groups.values())
    full = O.select_bad_process(groups, tp, two_pass=False, record=True)
    two = O.select_bad_process(groups, tp, two_pass=True, record=True)
    assert two.chosen is full.chosen and two.points == full.points
    # the reference: the last process with the highest precise badness, never init/kthreads/-1000
    scores = [(O.oom_badness(g, tp), i, g) for i, g in enumerate(groups)]
    eligible = [(b, i, g) for b, i, g in scores if b != O.LONG_MIN]
    assert all(g.tgid != 1 and g.mm is not None and g.oom_score_adj != -1000 for _, _, g in eligible)
    if eligible:
        best = max(b for b, _, _ in eligible)
        assert full.chosen is [g for b, i, g in eligible if b == best][-1]
    else:
        assert full.chosen is None
    # precise sums only for candidates whose upper bound reaches best_lo
    assert two.precise_evals == sum(1 for c in two.candidates if c.hi >= two.best_lo)
    assert full.precise_evals == len(eligible)
    for c in two.candidates:
        exact = O.oom_badness(k.groups[c.pid], tp)
        assert c.lo <= exact <= c.hi
        assert c.points in (None, exact)


def test_two_pass_prunes_on_a_big_machine():
    procs = [(0, [(1, i % 384, 100 + i)]) for i in range(30)] + [(0, [(1, 7, 900_000)])]
    k = build(384, procs)
    tp = O.total_pages(k)
    sel = O.select_bad_process(list(k.groups.values()), tp, two_pass=True, record=True)
    assert sel.chosen.tgid == sel.candidates[-1].pid
    assert sel.precise_evals == 1 and len(sel.candidates) == 31


def test_ties_go_to_the_later_process():
    k = build(8, [(0, [(1, 0, 5000)]), (0, [(1, 3, 5000)]), (0, [(1, 1, 4000)])])
    tp = O.total_pages(k)
    pids = [g.tgid for g in k.groups.values() if g.mm is not None and g.tgid != 1]
    for two_pass in (True, False):
        sel = O.select_bad_process(list(k.groups.values()), tp, two_pass)
        assert sel.chosen.tgid == pids[1]


# -- OOM kills from faults ------------------------------------------------------------

def meminfo_free_kb(k: Kernel) -> int:
    text = meminfo_f.meminfo(Ctx(k, PRIV)).decode()
    return int(re.search(r"^MemFree:\s+(\d+) kB", text, re.M)[1])


def spawn_touched(k: Kernel, mib: int, name: str = "app") -> int:
    p = k.spawn([f"/usr/bin/{name}"])
    a = execute(k, "mmap", {"pid": p, "length": mib * MiB})
    execute(k, "touch", {"pid": p, "addr": a, "length": mib * MiB})
    return p


def test_a_fault_that_cannot_be_satisfied_kills_the_biggest_process():
    k = machine()
    fs = ProcFS(k)
    small, big, mid = spawn_touched(k, 100, "small"), spawn_touched(k, 300, "big"), spawn_touched(k, 200, "mid")
    guarded = spawn_touched(k, 50, "guarded")
    k.groups[guarded].oom_score_adj = -1000
    free_before = meminfo_free_kb(k)
    big_mm = k.groups[big].mm
    hog = k.spawn(["/usr/bin/hog"])
    a = execute(k, "mmap", {"pid": hog, "length": 1 << 30})
    n = execute(k, "touch", {"pid": hog, "addr": a, "length": 200 * MiB})
    # check_mm() at teardown: every counter of the victim's mm back to exactly 0
    assert big_mm.rss.precise_all() == [0, 0, 0, 0]
    assert all(big_mm.rss.precise_compare_value(i, 0) == 0 for i in range(4))
    assert n == 200 * MiB // 4096                 # the allocation was retried and satisfied
    assert big not in k.groups and {small, mid, guarded, hog} <= set(k.groups)
    ev = k.oom.events[-1]
    assert ev.victim.tgid == big and ev.trigger_pid == hog and ev.free_after > ev.free_before
    assert {c.pid for c in ev.candidates} == {small, big, mid, hog}  # not init, kthreadd or the -1000 one
    assert guarded in {d.tgid for d in ev.tasks}                    # the dump lists it all the same
    assert ev.victim_points == max(c.points for c in ev.candidates if c.points is not None)
    log = read(fs, "/proc/procsim/oom_log")
    assert re.search(rf"^\[ *\d+\.\d{{6}}\] Out of memory: Killed process {big} \(big\) total-vm:\d+kB, "
                     rf"anon-rss:{ev.victim.rss_anon * 4}kB, file-rss:\d+kB, shmem-rss:0kB, UID:0 pgtables:\d+kB "
                     rf"oom_score_adj:0$", log, re.M)
    assert re.search(r"^\[ *\d+\.\d{6}\] hog invoked oom-killer: gfp_mask=0x140dca\(GFP_HIGHUSER_MOVABLE\|"
                     r"__GFP_COMP\|__GFP_ZERO\), order=0, oom_score_adj=0$", log, re.M)
    assert re.search(rf"^\[ *\d+\.\d{{6}}\] \[ *{guarded}\] +0 +{guarded} .* -1000 guarded$", log, re.M)
    # the victim's 300 MiB went back: MemFree is higher than before the hog's 200 MiB
    assert meminfo_free_kb(k) > free_before + 50 * 1024
    assert execute(k, "oom", {})[-1]["victim"]["tgid"] == big


def test_the_faulting_process_itself_may_be_the_victim():
    k = machine()
    others = [spawn_touched(k, 60) for _ in range(2)]
    hog = k.spawn(["/usr/bin/hog"])
    a = execute(k, "mmap", {"pid": hog, "length": 2 << 30})
    with pytest.raises(CommandError) as e:
        execute(k, "touch", {"pid": hog, "addr": a, "length": 2 << 30})
    assert e.value.errno == errno.ENOMEM and "killed" in e.value.msg
    assert hog not in k.groups and all(p in k.groups for p in others)  # it grew biggest before memory ran out
    ev = k.oom.events[-1]
    assert ev.victim.tgid == hog and ev.free_after > ev.free_before


def test_no_killable_process_fails_the_allocation():
    k = machine()
    p = spawn_touched(k, 10)
    k.groups[p].oom_score_adj = -1000
    mm = k.groups[p].mm
    rss = mm.rss_pages
    a = execute(k, "mmap", {"pid": p, "length": 2 << 30})
    with pytest.raises(CommandError) as e:
        execute(k, "touch", {"pid": p, "addr": a, "length": 2 << 30})
    assert e.value.errno == errno.ENOMEM
    assert p in k.groups and k.oom.events[-1].victim is None
    assert mm.rss_pages > rss  # the pages it got before memory ran out stay, as on Linux


def test_a_zombie_keeps_no_memory_and_is_never_chosen():
    k = machine()
    bash = k.spawn(["/bin/bash"])
    child = k.spawn(["/usr/bin/app"], parent=bash)
    k.exit_group(child)
    assert k.groups[child].zombie
    sel = O.select_bad_process(list(k.groups.values()), O.total_pages(k), record=True)
    assert child not in {c.pid for c in sel.candidates} and sel.chosen.tgid == bash


# -- OOM kills mid-fault leave a consistent world (the state machine's checks) ---------

@st.composite
def oom_worlds(draw):
    return dict(
        swap=draw(st.sampled_from([0, 8 << 20])),
        thp=draw(st.sampled_from(["never", "always"])),
        procs=draw(st.lists(st.tuples(st.integers(1, 3000),              # pages touched
                                      st.sampled_from([0, 0, -1000, 500]),  # oom_score_adj
                                      st.integers(0, 64),                 # pages paged out
                                      st.booleans()),                     # forked from the previous one
                            min_size=1, max_size=4)),
        hog=draw(st.integers(2000, 20000)),
        hog_adj=draw(st.sampled_from([0, -1000, 1000])),
        reswap=draw(st.booleans()),
    )


@settings(max_examples=25, deadline=None)
@given(oom_worlds())
def test_oom_kills_mid_fault_keep_the_world_consistent(w):
    k = boot(nr_cpus=2, mem_bytes=64 << 20, kernel_reserved_bytes=16 << 20,
             swap_bytes=w["swap"], thp_enabled=w["thp"])
    prev = region = None
    for pages, adj, out, forked in w["procs"]:
        p = k.fork(prev) if forked and prev is not None else k.spawn(["/usr/bin/app"])
        k.groups[p].oom_score_adj = adj
        try:
            a = execute(k, "mmap", {"pid": p, "length": pages * 4096})
            execute(k, "touch", {"pid": p, "addr": a, "length": pages * 4096})
            if out:
                execute(k, "madvise", {"pid": p, "addr": a, "length": out * 4096, "advice": "pageout"})
            region = (a, pages)
        except CommandError as e:
            assert e.errno == errno.ENOMEM
        prev = p if p in k.groups else None
        check_world(k, meminfo=False)
    try:
        if w["reswap"] and prev is not None and region is not None:
            # swap-ins and new pages in one fault: the last region grown by the hog's size
            hog, (a, pages) = prev, region
            k.groups[hog].oom_score_adj = w["hog_adj"]
            a = execute(k, "mremap", {"pid": hog, "addr": a, "old_length": pages * 4096,
                                      "new_length": (pages + w["hog"]) * 4096, "maymove": True})
            length = (pages + w["hog"]) * 4096
        else:
            hog = k.spawn(["/usr/bin/hog"])
            k.groups[hog].oom_score_adj = w["hog_adj"]
            a = execute(k, "mmap", {"pid": hog, "length": w["hog"] * 4096})
            length = w["hog"] * 4096
        execute(k, "touch", {"pid": hog, "addr": a, "length": length})
    except CommandError as e:
        assert e.errno == errno.ENOMEM
    check_world(k, meminfo=False)
    for ev in k.oom.events:
        assert ev.victim is None or ev.victim.tgid not in k.groups or k.groups[ev.victim.tgid].zombie


def test_swap_ins_then_out_of_memory_in_one_fault_stay_consistent():
    """A fault that swaps pages in and then cannot get frames for new pages
    (no victim) keeps the swap-ins: the swap entries used to stay in the page
    table with their slots freed and RSS already counting the pages."""
    k = boot(nr_cpus=2, mem_bytes=64 << 20, kernel_reserved_bytes=16 << 20, swap_bytes=8 << 20,
             thp_enabled="never")
    from procsim.mm.sysctl_vm import set_vm_sysctl
    set_vm_sysctl(k, "swappiness", 0)  # no anon to scan: kswapd would swap the hog out below the watermarks
    p = k.spawn(["/usr/bin/app"])
    k.groups[p].oom_score_adj = -1000
    a = execute(k, "mmap", {"pid": p, "length": 150 * 4096})
    execute(k, "touch", {"pid": p, "addr": a, "length": 100 * 4096})
    execute(k, "madvise", {"pid": p, "addr": a, "length": 50 * 4096, "advice": "pageout"})
    execute(k, "shrink_swapcache", {})  # the swap-ins must read the pages into new frames
    h = k.spawn(["/usr/bin/hog"])
    k.groups[h].oom_score_adj = -1000
    for _ in range(3):  # (kswapd may drop a few clean page-cache pages on the way: top up)
        fill = k.mem.nr_free - 70
        if fill <= 0:
            break
        b = execute(k, "mmap", {"pid": h, "length": fill * 4096})
        execute(k, "touch", {"pid": h, "addr": b, "length": fill * 4096})
    assert k.mem.nr_free == 70  # room for the 50 swap-ins, not for them and 50 new pages
    with pytest.raises(CommandError) as e:
        execute(k, "touch", {"pid": p, "addr": a, "length": 150 * 4096})
    assert e.value.errno == errno.ENOMEM
    mm = k.groups[p].mm
    assert mm.rss[MM_SWAPENTS] == 0 and mm.swap_entries(a, a + 150 * 4096) == 0 and k.mem.swap.inuse_pages == 0
    assert mm.rss[MM_ANONPAGES] >= 100 and mm.present_pages(a, a + 150 * 4096) == 100
    mms, _ = check_mappings(k)
    check_swap(k, mms)


def test_cow_fault_out_of_memory_changes_nothing():
    """A write to copy-on-write pages that cannot get frames (no victim)
    fails before the old pages lose their mapping: mapcounts stay right."""
    k = boot(nr_cpus=2, mem_bytes=64 << 20, kernel_reserved_bytes=16 << 20, thp_enabled="never")
    p = k.spawn(["/usr/bin/app"])
    k.groups[p].oom_score_adj = -1000
    a = execute(k, "mmap", {"pid": p, "length": 100 * 4096})
    execute(k, "touch", {"pid": p, "addr": a, "length": 100 * 4096})
    child = k.fork(p)
    h = k.spawn(["/usr/bin/hog"])
    k.groups[h].oom_score_adj = -1000
    fill = k.mem.nr_free - 50
    b = execute(k, "mmap", {"pid": h, "length": fill * 4096})
    execute(k, "touch", {"pid": h, "addr": b, "length": fill * 4096})
    # reclaim can also unmap and free the page cache the programs map (their
    # text, ld.so, libc): the hog takes that too, a little at a time
    from procsim.mm import page_alloc as M
    for _ in range(400):
        if k.mem.nr_free + k.mem.nr_flag[M.PG_FILE] < 80:
            break
        try:
            c = execute(k, "mmap", {"pid": h, "length": 16 * 4096})
            execute(k, "touch", {"pid": h, "addr": c, "length": 16 * 4096})
        except CommandError:
            break
    with pytest.raises(CommandError) as e:
        execute(k, "touch", {"pid": p, "addr": a, "length": 100 * 4096})
    assert e.value.errno == errno.ENOMEM and child in k.groups
    check_mappings(k)
