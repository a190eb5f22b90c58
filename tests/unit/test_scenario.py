"""Scenarios: the TOML format, the default machine, the examples, names,
activity timing and error messages (no FUSE)."""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path

import pytest

from procsim import scenario
from procsim.bitmap import list_str
from procsim.commands import execute
from procsim.procfs import maps, pid as P
from procsim.procfs.context import Caller, Ctx
from procsim.scenario import ScenarioError, build, load, parse_size

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NSEC = 1_000_000_000
MiB = 1 << 20


def status(k, pid: int) -> dict[str, str]:
    text = P.status(Ctx(k, Caller(1, 0, 0), k.tasks[pid], False)).decode()
    return dict(line.split(":\t", 1) for line in text.splitlines())


def snapshot(k) -> tuple:
    """Everything a reader could see, through the command vocabulary and maps."""
    ps = execute(k, "ps", {})
    vmas = {p["pid"]: execute(k, "vmas", {"pid": p["pid"]}) for p in ps if not p["zombie"]}
    tasks = {tid: execute(k, "task", {"pid": tid}) for tid in sorted(k.tasks)}
    text = {p["pid"]: maps.render(Ctx(k, Caller(1, 0, 0), k.tasks[p["pid"]], False))
            for p in ps if not p["zombie"] and not p["kthread"]}
    return ps, vmas, tasks, text, execute(k, "cpus", {})


def pid_of(k, name: str) -> int:
    return scenario.names(k).pid(name)


def at(k, seconds: float) -> None:
    """Move the clock to `seconds` after the world started (boot_uptime)."""
    k.advance_to(int(round((k.config.boot_uptime + seconds) * NSEC)))


def mini(**extra) -> dict:
    doc = {"machine": {"nr_cpus": 8, "mem": "1G"},
           "process": [{"name": "nginx", "argv": ["/usr/sbin/nginx"],
                        "threads": [{"comm": "worker", "name": "w", "count": 2}],
                        "maps": [{"name": "cache", "size": "1M", "touch": "all"}]}]}
    doc.update(extra)
    return doc


# -- the default machine ----------------------------------------------------------

@pytest.fixture(scope="module")
def default():
    t0 = time.perf_counter()
    k = load()
    return k, time.perf_counter() - t0


def test_default_loads_quickly(default) -> None:
    _, seconds = default
    assert seconds < 2.0, f"default scenario took {seconds:.2f} s"


def test_default_is_a_realistic_small_machine(default) -> None:
    k, _ = default
    assert k.config.nr_cpus == 8 and k.config.mem_bytes == 16 << 30
    assert "nginx" in scenario.names(k).description
    ps = {p["pid"]: p for p in execute(k, "ps", {})}
    assert ps[1]["cmdline"] == ["/sbin/init"] and ps[2]["comm"] == "kthreadd"
    kthreads = {p["comm"] for p in ps.values() if p["kthread"]}
    for cpu in range(8):
        assert {f"ksoftirqd/{cpu}", f"migration/{cpu}", f"cpuhp/{cpu}"} <= kthreads
    assert {"rcu_preempt", "kswapd0", "khugepaged"} <= kthreads
    assert all(ps[p]["ppid"] == 2 for p in ps if ps[p]["kthread"] and p != 2)
    comms = [p["comm"] for p in ps.values()]
    for c in ("systemd-journal", "sshd", "bash", "nginx", "java", "postgres", "python3.11"):
        assert c in comms, c
    assert ps[pid_of(k, "bash")]["uid"] == 1000 and ps[pid_of(k, "python")]["uid"] == 1000
    # a multi-threaded server with many mappings
    java = pid_of(k, "java")
    assert len(ps[java]["threads"]) >= 8
    assert len(execute(k, "vmas", {"pid": java})) >= 50
    # a database whose backends share one large MAP_SHARED anonymous segment
    shm = scenario.names(k).addr("postgres:shm", None)
    backends = [p for p in ps.values() if p["ppid"] == pid_of(k, "postgres")]
    assert len(backends) >= 4
    for b in backends + [ps[pid_of(k, "postgres")]]:
        v = next(v for v in execute(k, "vmas", {"pid": b["pid"]}) if v["start"] == shm)
        assert v["perms"] == "rw-s" and v["end"] - v["start"] == 1 << 30
        assert v["path"] == "/dev/zero (deleted)"
    assert int(status(k, backends[0]["pid"])["RssShmem"].split()[0]) > 100 * 1024
    # some CPUs busy, and the machine far from full
    busy = [c for c in execute(k, "cpus", {}) if c["curr"] is not None]
    assert 3 <= len(busy) < 8
    used = k.mem.nr_pages - k.mem.nr_free
    assert 512 * MiB < used * 4096 < 4 << 30


def test_default_activity_moves_the_world(default) -> None:
    k = load()
    ps0 = execute(k, "ps", {})
    cpus0 = [c["curr"] for c in execute(k, "cpus", {})]
    k.advance(3.1)  # the 3 s ls job is alive
    assert any(p["cmdline"][:1] == ["ls"] for p in execute(k, "ps", {}))
    k.advance(30)
    assert [c["curr"] for c in execute(k, "cpus", {})] != cpus0
    assert sum(c["tlb"] for c in execute(k, "cpus", {})) > 0  # munmaps sent shootdowns
    assert not any(p["cmdline"][:1] == ["ls"] and not p["zombie"] for p in execute(k, "ps", {}))
    assert len(execute(k, "ps", {})) - len(ps0) <= 2
    assert scenario.names(k).skipped == 0, scenario.names(k).last_skip


# -- determinism --------------------------------------------------------------------

def test_same_seed_same_world() -> None:
    a, b = load(seed=7), load(seed=7)
    assert snapshot(a) == snapshot(b)
    a.advance(12.5)
    b.advance(12.5)
    assert snapshot(a) == snapshot(b)


def test_different_seed_different_addresses() -> None:
    a, b = load(seed=1), load(seed=2)
    java_a, java_b = pid_of(a, "java"), pid_of(b, "java")
    starts_a = [v["start"] for v in execute(a, "vmas", {"pid": java_a})]
    starts_b = [v["start"] for v in execute(b, "vmas", {"pid": java_b})]
    assert starts_a != starts_b
    # the same shape, though
    assert [v["perms"] for v in execute(a, "vmas", {"pid": java_a})] == \
        [v["perms"] for v in execute(b, "vmas", {"pid": java_b})]


def test_seed_and_clock_override_the_file() -> None:
    k = load(str(EXAMPLES / "ci-small.toml"), seed=99, clock="wall")
    assert k.config.seed == 99 and k.config.clock == "wall"
    assert load(str(EXAMPLES / "ci-small.toml")).config.seed == 1


# -- the examples -------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_loads_and_runs(path: Path) -> None:
    k = load(str(path))
    k.advance(10)
    assert scenario.names(k).skipped == 0, scenario.names(k).last_skip


def test_many_cpus_active_mm_drifts_from_allowed() -> None:
    k = load(str(EXAMPLES / "many-cpus-64.toml"))
    assert k.config.nr_cpus == 64
    svc = pid_of(k, "svc")
    masks = []
    for _ in range(40):
        k.advance(0.25)
        t = execute(k, "task", {"pid": svc})
        assert t["cpus_allowed"] == (1 << 64) - 1
        masks.append(t["mm_cpumask"])
    assert all(m != (1 << 64) - 1 and m for m in masks)
    assert len(set(masks)) >= 10  # it keeps changing
    # bits come (migrations) and go (the once-a-second trim by TLB shootdowns)
    assert any(a & ~b for a, b in zip(masks, masks[1:]))
    assert any(b & ~a for a, b in zip(masks, masks[1:]))
    s = status(k, svc)
    assert s["Cpus_allowed_list"] == "0-63"
    assert s["Cpus_active_mm_list"] == list_str(masks[-1]) != "0-63"
    assert s["Cpus_active_mm"].count(",") == 1  # two 32-bit chunks
    # every thread shows the same mm mask
    for tid in scenario.names(k).threads[svc]:
        assert status(k, tid)["Cpus_active_mm"] == s["Cpus_active_mm"]
    # the pinned service stays inside its node
    pinned = execute(k, "task", {"pid": pid_of(k, "pinned")})
    assert pinned["mm_cpumask"] and not pinned["mm_cpumask"] & ~pinned["cpus_allowed"]
    assert sum(c["tlb"] for c in execute(k, "cpus", {})) > 0


def test_many_cpus_trim_happens_at_most_once_a_second() -> None:
    k = load(str(EXAMPLES / "many-cpus-64.toml"))
    svc = pid_of(k, "svc")
    drops = []
    prev = execute(k, "task", {"pid": svc})["mm_cpumask"]
    for step in range(1, 81):  # 8 s in 0.1 s steps; munmaps every 0.2 s
        k.advance(0.1)
        m = execute(k, "task", {"pid": svc})["mm_cpumask"]
        if prev & ~m:
            drops.append(step / 10)
        prev = m
    assert len(drops) >= 4
    assert all(b - a >= 0.99 for a, b in zip(drops, drops[1:])), drops


def test_ci_small_activity_runs_at_the_right_times() -> None:
    k = load(str(EXAMPLES / "ci-small.toml"))
    worker = pid_of(k, "app:worker")
    assert worker == 101 and pid_of(k, "app") == 100
    rss = lambda pid: next(p["rss_pages"] for p in execute(k, "ps", {}) if p["pid"] == pid)  # noqa: E731
    assert execute(k, "task", {"pid": worker})["cpu"] == 1
    at(k, 0.999)
    assert execute(k, "task", {"pid": worker})["cpu"] == 1
    at(k, 1.0)
    assert execute(k, "task", {"pid": worker})["cpu"] == 0
    assert execute(k, "task", {"pid": 100})["state"] == "S"
    before = rss(100)
    at(k, 1.999)
    assert rss(100) == before
    at(k, 2.0)
    assert rss(100) == before - 16 * MiB // 4096
    at(k, 3.0)
    assert 200 in k.groups and k.groups[200].parent.tgid == 100
    at(k, 3.5)
    assert k.groups[200].zombie
    at(k, 4.0)
    assert 200 not in k.groups
    helper = rss(110)
    for n in range(1, 9):
        at(k, 4 + n)
        assert rss(110) == helper + n * 256
    at(k, 30)
    assert rss(110) == helper + 8 * 256  # count = 8


# -- activity -----------------------------------------------------------------------

def test_every_and_count_fire_at_exact_virtual_times() -> None:
    doc = mini(activity=[{"at": 0.3, "every": 0.1, "count": 3, "op": "touch", "pid": "nginx",
                          "cycle": {"addr": ["t", "t+4K", "t+8K"]}, "length": 4096},
                         {"at": 0.1, "op": "mmap", "pid": "nginx", "length": "64K", "as": "t"}])
    k = build(doc)
    nginx = pid_of(k, "nginx")
    rss = lambda: execute(k, "task", {"pid": nginx})["rss"][1]  # noqa: E731 (anon pages)
    r0 = rss()
    seen = []
    for ms in range(0, 700, 50):
        at(k, ms / 1000)
        seen.append((ms, rss() - r0))
    assert seen == [(0, 0), (50, 0), (100, 0), (150, 0), (200, 0), (250, 0), (300, 1), (350, 1),
                    (400, 2), (450, 2), (500, 3), (550, 3), (600, 3), (650, 3)]


def test_events_at_zero_are_part_of_the_loaded_world() -> None:
    k = build(mini(activity=[{"at": 0, "op": "run", "tid": "nginx:w.2", "cpu": 3}]))
    assert execute(k, "cpus", {})[3]["curr"] == pid_of(k, "nginx:3")


def test_random_choices_use_the_seeded_rng_and_globs() -> None:
    doc = mini(activity=[{"at": 0.1, "every": 0.1, "op": "migrate",
                          "random": {"tid": "nginx:w.*", "cpu": "4-7"}}])
    runs = []
    for _ in range(2):
        k = build(doc)
        trace = []
        for _ in range(20):
            k.advance(0.1)
            trace.append(tuple((c["cpu"], c["curr"]) for c in execute(k, "cpus", {}) if c["curr"]))
        runs.append(trace)
        workers = set(scenario.names(k).threads[pid_of(k, "nginx")][1:])
        assert {cur for step in trace for _, cur in step} <= workers
        assert {cpu for step in trace for cpu, _ in step} <= {4, 5, 6, 7}
    assert runs[0] == runs[1]


def test_failed_events_are_skipped_at_run_time() -> None:
    doc = mini(activity=[{"at": 1, "op": "exit_group", "pid": "nginx"},
                         {"at": 2, "op": "touch", "pid": "nginx", "addr": "cache", "length": 4096}])
    k = build(doc)
    k.advance(3)
    n = scenario.names(k)
    assert n.skipped == 1 and "activity #2 (touch)" in n.last_skip


def test_spawn_as_binds_a_name_for_later_events() -> None:
    doc = mini(activity=[{"at": 1, "every": 2, "op": "spawn", "parent": "nginx", "argv": ["/bin/true"], "as": "job"},
                         {"at": 1.5, "every": 2, "op": "exit", "pid": "job"},
                         {"at": 1.6, "every": 2, "op": "wait", "pid": "nginx", "child": "job"}])
    k = build(doc)
    seen = set()
    for _ in range(31):  # to 7.75 s: the 4th job (7 s) has exited (7.5 s) and been reaped (7.6 s)
        k.advance(0.25)
        seen |= {p["pid"] for p in execute(k, "ps", {}) if p["comm"] == "true"}
    assert len(seen) == 4 and not any(p["comm"] == "true" for p in execute(k, "ps", {}) if p["zombie"])
    assert scenario.names(k).skipped == 0


# -- names and building blocks ----------------------------------------------------------

def test_names_resolve_processes_threads_and_maps() -> None:
    k = build(mini(process=mini()["process"] + [
        {"name": "child", "parent": "nginx", "fork": True, "argv": ["nginx: worker process"],
         "ops": [{"op": "touch", "addr": "cache+4K", "length": "4K"}]}]))
    n = scenario.names(k)
    nginx = pid_of(k, "nginx")
    assert n.pid("nginx:1") == nginx and n.pid("nginx:2") == n.pid("nginx:w.1") == nginx + 1
    assert n.pid("nginx:w.2") == nginx + 2 and n.pid(42) == 42 and n.pid("0x10") == 16
    cache = n.addr("nginx:cache", None)
    assert n.addr("nginx:cache+0x1000", None) == n.addr("cache+4K", nginx) == cache + 4096
    child = pid_of(k, "child")
    assert n.addr("child:cache", None) == cache  # fork keeps the address space and its names
    assert k.groups[child].cmdline == ["nginx: worker process"]
    assert k.groups[child].parent.tgid == nginx
    assert scenario.resolve(k, {"tid": "nginx:w.2", "addr": "nginx:cache+8K", "length": 1}) == \
        {"tid": nginx + 2, "addr": cache + 8192, "length": 1}
    assert n.expand("nginx:w.*") == ["nginx:2", "nginx:3"]
    with pytest.raises(ScenarioError, match="threads 1-3"):
        n.pid("nginx:4")
    # a glob's answer is kept, but a name added later is matched at once
    n.expand("nginx:w.*").append("nginx:9")  # (the caller's copy)
    n.add_thread(nginx, 4242, "w.3")
    assert n.expand("nginx:w.*") == ["nginx:2", "nginx:3", "nginx:4"]
    n.bind("process", "child2", 4343, None, k)
    assert n.expand("child*") == ["child", "child2"]
    # a name rebound to a later pid (a spawn's `as`) moves in the pid order
    n.bind("process", "child", 5000, None, k)
    assert n.expand("child*") == ["child2", "child"]


def test_processes_threads_and_maps_become_the_right_kernel_state() -> None:
    doc = {"machine": {"nr_cpus": 4, "mem": "1G", "seed": 3},
           "process": [
               {"pid": 1, "argv": ["/sbin/init", "splash"]},
               {"name": "db", "pid": 500, "uid": 106, "gid": 113, "groups": [4], "nice": 5, "cpus": "1-2",
                "argv": ["/usr/bin/db", "--x"], "env": {"A": "1", "B": "2"},
                "libs": ["/usr/lib/x86_64-linux-gnu/libz.so.1"],
                "threads": [{"comm": "io-{n}", "name": "io", "count": 2, "stack": "1M", "run_on": [2]}],
                "maps": [{"name": "seg", "size": "64M", "shared": True, "touch": 0.5},
                         {"name": "file", "path": "/var/lib/db/data", "size": "8M", "prot": "r", "touch": "1M"},
                         {"name": "arena", "count": 2, "size": "4M", "prot": "none",
                          "protect": [{"size": "1M", "prot": "rw"}], "touch": "512K"}],
                "run_on": 1},
               {"name": "zombie", "parent": "db", "argv": ["/usr/bin/sleep", "1"], "state": "Z"},
               {"name": "disk", "argv": ["/usr/bin/dd"], "state": "D"}]}
    k = build(doc)
    n = scenario.names(k)
    assert k.groups[1].cmdline == ["/sbin/init", "splash"]
    db = k.groups[500]
    assert db.cmdline == ["/usr/bin/db", "--x"] and db.environ == ["A=1", "B=2"]
    assert (db.cred.uid, db.cred.gid, db.cred.groups) == (106, 113, (4,))
    assert [t.comm for t in db.threads] == ["db", "io-1", "io-2"]
    assert all(t.cpus_allowed == 0b0110 and t.nice == 5 for t in db.threads)
    assert [c["curr"] for c in execute(k, "cpus", {})] == [None, 500, n.pid("db:io.1"), None]
    assert k.tasks[n.pid("db:io.2")].state == "S"
    vmas = {v["start"]: v for v in execute(k, "vmas", {"pid": 500})}
    seg = vmas[n.addr("db:seg", None)]
    assert seg["perms"] == "rw-s" and seg["rss_pages"] == 64 * MiB // 2 // 4096
    f = vmas[n.addr("db:file", None)]
    assert f["perms"] == "r--p" and f["path"] == "/var/lib/db/data" and f["rss_pages"] == 256
    for a in ("db:arena.1", "db:arena.2"):
        head = vmas[n.addr(a, None)]
        assert head["perms"] == "rw-p" and head["end"] - head["start"] == MiB and head["rss_pages"] == 128
        assert vmas[head["end"]]["perms"] == "---p"
    libz = [v["perms"] for v in vmas.values() if v["path"] == "/usr/lib/x86_64-linux-gnu/libz.so.1"]
    assert libz == ["r--p", "r-xp", "r--p", "r--p", "rw-p"]
    guards = [v for v in vmas.values() if v["perms"] == "---p" and v["end"] - v["start"] == 4096]
    assert len(guards) == 2  # one per thread stack, right below it
    assert all(vmas[g["end"]]["perms"] == "rw-p" and vmas[g["end"]]["end"] - g["end"] == MiB for g in guards)
    assert k.groups[n.pid("zombie")].zombie and k.groups[n.pid("disk")].leader.state == "D"


def test_parse_size() -> None:
    assert parse_size("16G") == 16 << 30 and parse_size("1.5M") == 3 << 19
    assert parse_size("4KiB") == parse_size("4kb") == parse_size(4096) == parse_size("0x1000") == 4096
    for bad in ("16Q", "-1", "G", 1.5, True, ""):
        with pytest.raises(ScenarioError):
            parse_size(bad)


def test_the_documented_example_builds() -> None:
    text = (ROOT / "docs" / "scenario-format.md").read_text()
    k = build(tomllib.loads(re.search(r"```toml\n(.*?)```", text, re.S).group(1)))
    k.advance(5)
    assert scenario.names(k).skipped == 0
    assert [c["curr"] is not None for c in execute(k, "cpus", {})][6:] == [True, True]


# -- errors ----------------------------------------------------------------------------

def bad(doc: dict, pattern: str) -> None:
    with pytest.raises(ScenarioError, match=pattern):
        build(doc)


def test_error_unknown_keys() -> None:
    bad({"machin": {}}, r"unknown key 'machin' \(did you mean 'machine'\?\)")
    bad({"machine": {"cpus": 4}}, r"machine: unknown key 'cpus'")
    bad(mini(process=[{"name": "db", "argv": ["/x"], "thread": []}]),
        r"process 'db': unknown key 'thread' \(did you mean 'threads'\?\)")
    bad(mini(process=[{"name": "db", "argv": ["/x"], "maps": [{"size": 4096, "sise": 1}]}]),
        r"process 'db' map #1: unknown key 'sise'")
    bad(mini(activity=[{"at": 1, "op": "munmap", "pid": "nginx", "addr": "cache", "len": 4096}]),
        r"activity #1 \(munmap\): munmap takes no argument 'len' \(takes: pid, addr, length\)")


def test_error_bad_cpu() -> None:
    doc = mini()
    doc["process"][0]["threads"] = [{"comm": "worker", "run_on": 9}]
    bad(doc, r"^process 'nginx' thread 2: run_on: cpu 9 out of range 0-7$")
    bad(mini(activity=[{"at": 1, "op": "migrate", "tid": "nginx", "cpu": 8}]),
        r"activity #1 \(migrate\): cpu: cpu 8 out of range 0-7")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "cpus": "0-9"}]), r"process 'a': cpus: .*out of 0-7")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "run_on": 1}, {"name": "b", "argv": ["/y"], "run_on": 1}]),
        r"process 'b': cpu 1 already runs pid \d+ \(x\)")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "cpus": "0-1", "run_on": 4}]),
        r"process 'a': cpu 4 is not in the affinity")


def test_error_unknown_names() -> None:
    bad(mini(process=[{"name": "a", "argv": ["/x"], "parent": "nope"}]),
        r"process 'a': parent 'nope' is not a process defined above")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "parent": "b"}, {"name": "b", "argv": ["/y"]}]),
        r"parent 'b' is not a process defined above")
    bad(mini(activity=[{"at": 1, "op": "sleep", "tid": "ngnix"}]), r"activity #1 \(sleep\): tid: unknown process")
    bad(mini(activity=[{"at": 1, "op": "munmap", "pid": "nginx", "addr": "nginx:cahce", "length": 1}]),
        r"no mapping named 'cahce'")
    bad(mini(process=[{"argv": ["/usr/bin/x"]}, {"argv": ["/usr/bin/x"]}],
             activity=[{"at": 1, "op": "sleep", "tid": "x"}]), r"'x' is ambiguous \(pids \d+, \d+\)")
    bad(mini(process=[{"name": "a", "argv": ["/x"]}, {"name": "a", "argv": ["/y"]}]), r"'a' is already taken")


def test_error_bad_values() -> None:
    bad({"machine": {"mem": "16Q"}}, r"^machine: mem: bad size '16Q'")
    bad({"machine": {"nr_cpus": "8"}}, r"machine: nr_cpus: expected an integer")
    bad({"machine": {"nr_cpus": 5000}}, r"machine: nr_cpus must be between 1 and 4096")
    bad(mini(process=[{"name": "a", "argv": "/x"}]), r"process 'a': argv: expected a list of strings")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "maps": [{"size": "1M", "touch": "lots"}]}]),
        r"process 'a' map #1: touch: expected bytes")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "state": "Q"}]), r"state: expected one of R, S, D, T, Z")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "state": "Z"}]), r"a zombie needs a parent")
    bad(mini(process=[{"name": "a"}]), r"process 'a': missing key 'argv' \(or fork = true\)")
    bad(mini(process=[{"name": "a", "fork": True, "exe": "/x"}]), r"'exe' needs an exec")
    bad(mini(process=[{"name": "a", "argv": ["/x"], "pid": 2}]), r"process 'a': pid 2 is in use")
    bad({"process": [{"name": "a", "argv": ["/x"]}, {"pid": 1, "argv": ["/init"]}]}, r"must be the first")
    bad({"kthread": [{"comm": "ksoftirqd/{cpu}"}]}, r"kthread 'ksoftirqd/\{cpu\}': a \{cpu\} placeholder needs cpus")
    bad({"process": {"name": "a"}}, r"process: expected a list of tables")


def test_error_bad_activity() -> None:
    bad(mini(activity=[{"op": "sleep", "tid": "nginx"}]), r"activity #1: missing key 'at'")
    bad(mini(activity=[{"at": 1, "op": "slep", "tid": "nginx"}]), r"unknown op 'slep' \(did you mean 'sleep'\?\)")
    bad(mini(activity=[{"at": 1, "op": "ps"}]), r"'ps' only reads the world")
    bad(mini(activity=[{"at": 1, "op": "munmap", "pid": "nginx", "addr": "cache"}]), r"munmap needs 'length'")
    bad(mini(activity=[{"at": 1, "count": 3, "op": "sleep", "tid": "nginx"}]), r"count needs every")
    bad(mini(activity=[{"at": -1, "op": "sleep", "tid": "nginx"}]), r"at: expected a non-negative number")
    bad(mini(activity=[{"at": 1, "op": "sleep", "tid": "nginx", "as": "x"}]), r"sleep returns nothing to name")
    bad(mini(activity=[{"at": 1, "op": "migrate", "tid": "nginx", "random": {"cpu": "0-3"}, "cpu": 1}]),
        r"'cpu' is given twice")
    bad(mini(activity=[{"at": 1, "op": "migrate", "cycle": {"tid": "nomatch.*"}, "cpu": 1}]), r"matches nothing")
    # what fails at 0 s fails the load
    bad(mini(activity=[{"at": 0, "op": "munmap", "pid": "nginx", "addr": 4096, "length": 4096, "x": 1}]),
        r"takes no argument 'x'")
    bad(mini(activity=[{"at": 0, "op": "touch", "pid": "nginx", "addr": "0x1000", "length": 4096}]),
        r"activity #1 \(touch\): touch: ")


def test_load_reports_the_file(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[machine]\nmem = "16Q"\n')
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(p))}: machine: mem: bad size"):
        load(str(p))
    p.write_text("[machine\n")
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(p))}: "):
        load(str(p))
    with pytest.raises(ScenarioError, match="No such file"):
        load(str(tmp_path / "missing.toml"))
