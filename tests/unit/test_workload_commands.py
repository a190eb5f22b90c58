"""Workload and ground-truth commands (live control and scenarios): every
argument checked, the kernel's errno on bad input, nothing changed."""

from __future__ import annotations

import errno

import pytest

from procsim import scenario
from procsim.commands import CommandError, execute
from procsim.scenario import ScenarioError
from invariants import small

MB = 1 << 20


@pytest.fixture
def k():
    return small()


@pytest.fixture
def region(k):
    pid = 100                                             # the app of ci-small.toml
    addr = execute(k, "mmap", {"pid": pid, "length": 16 * MB})
    return pid, addr


def state(k) -> tuple:
    """What a workload command could change: the workloads and which mms are tracked."""
    tracked = tuple(sorted(g.tgid for g in k.groups.values() if g.mm is not None and g.mm.access_log is not None))
    return repr(k.workloads.list()), k.workloads.next_id, tracked, k.now


def test_start_query_truth_stop(k, region):
    pid, addr = region
    t0 = execute(k, "now", {})
    wid = execute(k, "workload_start", {"pid": pid, "pattern": "scan", "rate": 1000, "addr": addr,
                                        "length": "16M"})
    assert wid == 1
    execute(k, "advance", {"seconds": 1})
    got = execute(k, "wss_truth", {"pid": pid, "since": t0, "ranges": True})
    assert got["pages"] == 1000 and got["bytes"] == 1000 * 4096
    assert got["ranges"] == [[addr, addr + 1000 * 4096]] or got["ranges"] == [(addr, addr + 1000 * 4096)]
    assert got["since"] == t0 and got["until"] is None and got["now"] == t0 + 1
    assert execute(k, "wss_truth", {"pid": pid, "since": t0, "until": t0 + 0.5})["pages"] == 1000  # one step
    [w] = execute(k, "workloads", {"pid": pid})
    assert (w["id"], w["state"], w["pattern"], w["accesses"]) == (1, "running", "scan", 1000)
    assert execute(k, "workloads", {"pid": 1}) == []
    final = execute(k, "workload_stop", {"id": wid})
    assert final["state"] == "stopped"
    execute(k, "advance", {"seconds": 1})
    assert execute(k, "wss_truth", {"pid": pid, "since": t0 + 1})["pages"] == 0


def test_change_through_the_command(k, region):
    pid, addr = region
    wid = execute(k, "workload_start", {"pid": pid, "pattern": "scan", "rate": 100, "addr": addr, "length": "16M"})
    execute(k, "advance", {"seconds": 1})
    t = execute(k, "now", {})
    execute(k, "workload_change", {"id": wid, "rate": 300})
    execute(k, "advance", {"seconds": 1})
    assert execute(k, "wss_truth", {"pid": pid, "since": t})["pages"] == 300
    assert execute(k, "workloads", {})[0]["changes"] == 1


def test_track_without_a_workload_records_touches(k, region):
    pid, addr = region
    with pytest.raises(CommandError) as e:
        execute(k, "wss_truth", {"pid": pid, "since": 0})
    assert e.value.errno == errno.EINVAL                  # not tracked
    t = execute(k, "track", {"pid": pid})
    execute(k, "touch", {"pid": pid, "addr": addr, "length": "1M"})
    assert execute(k, "wss_truth", {"pid": pid, "since": t})["pages"] == 256


def test_clock_query(k):
    assert execute(k, "clock", {}) == {"mode": "manual", "now": k.now / 1e9}


def test_truth_history_lost_is_enodata(k, region):
    pid, addr = region
    t0 = execute(k, "now", {})
    execute(k, "workload_start", {"pid": pid, "pattern": "uniform", "rate": 1000, "addr": addr, "length": "16M"})
    k.group(pid).mm.access_log.history_bytes = 0          # keep no interval history
    execute(k, "advance", {"seconds": 1})
    execute(k, "advance", {"seconds": 1})
    with pytest.raises(CommandError) as e:
        execute(k, "wss_truth", {"pid": pid, "since": t0, "until": t0 + 1})
    assert e.value.errno == errno.ENODATA
    assert execute(k, "wss_truth", {"pid": pid, "since": t0})["pages"] > 0   # since-queries stay exact


GOOD = {"pattern": "uniform", "rate": 100}


@pytest.mark.parametrize("args, err", [
    ({}, errno.EINVAL),                                                   # no pattern
    ({"pattern": "random", "rate": 1}, errno.EINVAL),
    ({"pattern": "uniform"}, errno.EINVAL),                               # no rate
    ({**GOOD, "rate": -1}, errno.EINVAL),
    ({**GOOD, "rate": "nan"}, errno.EINVAL),
    ({**GOOD, "rate": 1e12}, errno.EINVAL),
    ({**GOOD, "rate": True}, errno.EINVAL),
    ({**GOOD, "write": 1.5}, errno.EINVAL),
    ({**GOOD, "write": "some"}, errno.EINVAL),
    ({**GOOD, "addr": "REGION+1", "length": "1M"}, errno.EINVAL),        # unaligned
    ({**GOOD, "addr": "REGION"}, errno.EINVAL),                          # length missing
    ({**GOOD, "addr": "REGION", "length": 0}, errno.EINVAL),
    ({**GOOD, "addr": "BELOW", "length": "2M"}, errno.EFAULT),           # starts in the hole below it
    ({**GOOD, "addr": 0x1000, "length": 4096}, errno.EFAULT),
    ({**GOOD, "addr": "REGION", "length": "1M", "vmas": "writable"}, errno.EINVAL),
    ({**GOOD, "vmas": "all"}, errno.EINVAL),
    ({**GOOD, "seed": -1}, errno.EINVAL),
    ({**GOOD, "seed": "x"}, errno.EINVAL),
    ({**GOOD, "tick": 0}, errno.EINVAL),
    ({**GOOD, "tick": 3600}, errno.EINVAL),
    ({**GOOD, "exponent": 1.0}, errno.EINVAL),                           # not a uniform key
    ({**GOOD, "pattern": "zipf", "exponent": 0}, errno.EINVAL),
    ({**GOOD, "pattern": "hot_cold", "hot": 1.5}, errno.EINVAL),
    ({**GOOD, "pattern": "hot_cold", "hot": "1000"}, errno.EINVAL),      # not whole pages
    ({**GOOD, "pattern": "hot_cold", "hot_prob": 2}, errno.EINVAL),
    ({**GOOD, "pattern": "hot_cold", "addr": "REGION", "length": "16M", "hot": "8M", "hot_offset": "9M"},
     errno.EINVAL),                                                       # hot set past the region
    ({**GOOD, "pattern": "scan", "addr": "REGION", "length": "16M", "offset": "16M"}, errno.EINVAL),
    ({**GOOD, "pattern": "phases"}, errno.EINVAL),                        # no phases
    ({**GOOD, "pattern": "phases", "phases": []}, errno.EINVAL),
    ({**GOOD, "pattern": "phases", "phases": [1, 2]}, errno.EINVAL),
    ({**GOOD, "pattern": "phases", "phases": [{"pattern": "uniform"}]}, errno.EINVAL),   # no duration
    ({**GOOD, "pattern": "phases", "phases": [{"pattern": "phases", "duration": 1}]}, errno.EINVAL),
    ({**GOOD, "pattern": "phases", "phases": [{"pattern": "uniform", "duration": 1, "addr": 0}]}, errno.EINVAL),
    ({**GOOD, "pattern": "phases", "phases": [{"pattern": "uniform", "duration": -1}]}, errno.EINVAL),
    ({**GOOD, "pattern": "phases", "repeat": "yes", "phases": [{"pattern": "uniform", "duration": 1}]},
     errno.EINVAL),
    ({"pattern": "phases", "phases": [{"pattern": "uniform", "duration": 1}]}, errno.EINVAL),  # no rate anywhere
    ({**GOOD, "pid": 99999}, errno.ESRCH),
    ({**GOOD, "pid": 2}, errno.EINVAL),                                   # kthreadd has no mm
    ({**GOOD, "bogus": 1}, errno.EINVAL),
])
def test_bad_workload_start_changes_nothing(k, region, args, err):
    pid, addr = region
    assert not k.group(pid).mm.vmas.overlapping(addr - MB, addr)    # mmap placed it top-down
    args = {key: (v.replace("REGION", hex(addr)).replace("BELOW", hex(addr - MB)) if isinstance(v, str) else v)
            for key, v in args.items()}
    args.setdefault("pid", pid)
    before = state(k)
    with pytest.raises(CommandError) as e:
        execute(k, "workload_start", args)
    assert e.value.errno == err, e.value.msg
    assert state(k) == before
    execute(k, "advance", {"seconds": 0.1})                # and nothing runs


@pytest.mark.parametrize("op, args, err", [
    ("workload_change", {"id": 99}, errno.ENOENT),
    ("workload_change", {"id": 1}, errno.EINVAL),                         # nothing to change
    ("workload_change", {"id": 1, "rate": -5}, errno.EINVAL),
    ("workload_change", {"id": 1, "pattern": "zipf", "exponent": -1}, errno.EINVAL),
    ("workload_change", {"id": 1, "length": "1G"}, errno.EINVAL),         # addr goes with it
    ("workload_change", {"id": "one", "rate": 5}, errno.EINVAL),
    ("workload_change", {"id": 1, "seed": 5}, errno.EINVAL),              # the seed stays
    ("workload_stop", {"id": 99}, errno.ENOENT),
    ("workload_stop", {}, errno.EINVAL),
    ("workloads", {"pid": "x"}, errno.EINVAL),
    ("wss_truth", {"pid": 100}, errno.EINVAL),                            # since missing
    ("wss_truth", {"pid": 100, "since": -1}, errno.EINVAL),
    ("wss_truth", {"pid": 100, "since": "inf"}, errno.EINVAL),
    ("wss_truth", {"pid": 100, "since": 0, "until": "x"}, errno.EINVAL),
    ("wss_truth", {"pid": 100, "since": 0, "ranges": "yes"}, errno.EINVAL),
    ("wss_truth", {"pid": 99999, "since": 0}, errno.ESRCH),
    ("track", {"pid": 99999}, errno.ESRCH),
    ("track", {"pid": 2}, errno.EINVAL),
])
def test_bad_control_commands_change_nothing(k, region, op, args, err):
    pid, addr = region
    execute(k, "workload_start", {"pid": pid, "pattern": "uniform", "rate": 100, "addr": addr, "length": "16M"})
    before = state(k)
    with pytest.raises(CommandError) as e:
        execute(k, op, args)
    assert e.value.errno == err, e.value.msg
    assert state(k) == before


def test_change_of_a_stopped_workload_is_einval(k, region):
    pid, addr = region
    wid = execute(k, "workload_start", {"pid": pid, "pattern": "uniform", "rate": 100, "addr": addr, "length": "16M"})
    execute(k, "workload_stop", {"id": wid})
    with pytest.raises(CommandError) as e:
        execute(k, "workload_change", {"id": wid, "rate": 5})
    assert e.value.errno == errno.EINVAL


# -- scenarios -------------------------------------------------------------------------------

SCEN = """
[machine]
nr_cpus = 2
mem = "1G"
clock = "manual"

[[process]]
name = "db"
argv = ["/usr/bin/db"]
maps = [{ name = "cache", size = "16M" }, { name = "log", size = "4M" }]
{extra}
"""


def load(extra: str):
    import tomllib
    return scenario.build(tomllib.loads(SCEN.replace("{extra}", extra)))


def test_scenario_workload_on_a_named_map():
    k = load('workloads = [{ pattern = "scan", rate = 1000, map = "cache" }]')
    pid = scenario.names(k).pid("db")
    cache = scenario.names(k).addr("cache", pid)
    [w] = k.workloads.list(pid)
    assert w["ranges"] == [[cache, cache + 16 * MB]] and w["pages"] == 4096
    t = k.now / 1e9
    k.advance(1)
    assert (k.wss_truth(pid, t) - (cache >> 12)).tolist() == list(range(1000))


def test_scenario_workload_on_part_of_a_map_and_phases():
    k = load("""
[[process.workloads]]
pattern = "phases"
rate = 5000
map = "cache+8M"
phases = [{ pattern = "hot_cold", duration = 1, hot = "256K", hot_prob = 1.0 },
          { pattern = "scan", duration = 1, rate = 10 }]
""")
    pid = scenario.names(k).pid("db")
    cache = scenario.names(k).addr("cache", pid)
    [w] = k.workloads.list(pid)
    assert w["ranges"] == [[cache + 8 * MB, cache + 16 * MB]]      # the rest of the map
    t = k.now / 1e9
    k.advance(1)
    k.advance(1)
    base = (cache + 8 * MB) >> 12
    assert (k.wss_truth(pid, t, t + 1) - base).tolist() == list(range(64))
    assert (k.wss_truth(pid, t + 1) - base).tolist() == list(range(10))


def test_scenario_activity_changes_and_stops_workloads():
    k = load("""
workloads = [{ pattern = "uniform", rate = 100, map = "log" }]

[[activity]]
at = 1
op = "workload_change"
id = 1
rate = 1000

[[activity]]
at = 2
op = "workload_stop"
id = 1

[[activity]]
at = 2.5
op = "workload_start"
pid = "db"
pattern = "scan"
rate = 10
addr = "cache"
length = "1M"
""")
    k.advance(3)
    a, b = k.workloads.list()
    assert (a["state"], a["changes"], a["accesses"]) == ("stopped", 1, 100 + 1000)
    assert (b["state"], b["accesses"], b["ranges"][0][0]) == ("running", 5, scenario.names(k).addr("db:cache", None))


@pytest.mark.parametrize("extra, msg", [
    ('workloads = [{ pattern = "scan", rate = 10, map = "nope" }]', "no mapping named 'nope'"),
    ('workloads = [{ pattern = "scan", rate = 10, map = "cache", vmas = "writable" }]', "not two"),
    ('workloads = [{ pattern = "scan", rate = 10, mapp = "cache" }]', "did you mean 'map'"),
    ('workloads = [{ rate = 10, map = "cache" }]', "missing key 'pattern'"),
    ('workloads = [{ pattern = "scan", rate = -1, map = "cache" }]', "rate"),
    ('workloads = [{ pattern = "scan", rate = 10, map = "cache", length = "32M" }]', "not all mapped"),
    ('workloads = [{ pattern = "scan", rate = 10, map = 5 }]', "mapping name"),
    ('workloads = "scan"', "expected"),
])
def test_scenario_workload_errors_name_the_place(extra, msg):
    with pytest.raises(ScenarioError) as e:
        load(extra)
    assert "process 'db' workload #1" in str(e.value) or "process 'db'" in str(e.value)
    assert msg in str(e.value), str(e.value)


@pytest.mark.parametrize("op", ["workloads", "wss_truth", "clock"])
def test_queries_are_not_activity(op):
    with pytest.raises(ScenarioError) as e:
        load(f'[[activity]]\nat = 1\nop = "{op}"\n'.replace("[[activity]]", "\n[[activity]]"))
    assert "only reads the world" in str(e.value)


def test_the_demo_scenario_runs_its_workloads():
    k = scenario.load("examples/wss-demo.toml", clock="manual")
    n = scenario.names(k)
    ws = {w["pid"]: w for w in k.workloads.list()}
    assert set(ws) == {n.pid("cache"), n.pid("batch"), n.pid("web")}
    assert [ws[n.pid(p)]["pages"] for p in ("cache", "batch", "web")] == [262144, 131072, 196608]
    t = k.now / 1e9
    k.advance(1)
    assert len(k.wss_truth(n.pid("batch"), t)) == 25000          # the scan
    hot = len(k.wss_truth(n.pid("cache"), t))
    assert 32768 < hot < 32768 + 25000                           # the hot 128 MiB, and some cold pages
    assert all(w["state"] == "running" and w["faults"] == 0 for w in k.workloads.list())


def test_every_scenario_workload_key_reaches_the_workload():
    k = load("""
[[process.workloads]]
pattern = "hot_cold"
rate = 500
write = 0.5
addr = "cache+1M"
length = "2M"
seed = 99
tick = 0.05
hot = "64K"
hot_offset = "1M"
hot_prob = 0.7

[[process.workloads]]
pattern = "zipf"
rate = 10
map = "log"
exponent = 2.5

[[process.workloads]]
pattern = "scan"
rate = 10
vmas = "readable"
offset = 0.5

[[process.workloads]]
pattern = "phases"
rate = 10
map = "log"
repeat = false
phases = [{ pattern = "uniform", duration = 1, rate = 20, write = 1.0 }]
""")
    pid = scenario.names(k).pid("db")
    cache = scenario.names(k).addr("cache", pid)
    log = scenario.names(k).addr("log", pid)
    a, b, c, d = k.workloads.list(pid)
    assert a["spec"] == {"pattern": "hot_cold", "rate": 500, "write": 0.5, "addr": cache + MB, "length": "2M",
                         "seed": 99, "tick": 0.05, "hot": "64K", "hot_offset": "1M", "hot_prob": 0.7}
    assert a["seed"] == 99 and a["ranges"] == [[cache + MB, cache + 3 * MB]]
    ph = k.workloads.items[a["id"]].phases[0]
    assert (ph.hot, ph.hot_offset, ph.hot_prob, ph.write) == (16, 256, 0.7, 0.5)
    assert k.workloads.items[a["id"]].tick_ns == 50_000_000
    assert k.workloads.items[b["id"]].phases[0].exponent == 2.5 and b["ranges"] == [[log, log + 4 * MB]]
    mm = k.group(pid).mm
    readable = [[v.start, v.end] for v in mm.vmas if v.flags & 1 and not v.special]   # VM_READ
    assert c["ranges"] == readable
    assert k.workloads.items[c["id"]].phases[0].offset == c["pages"] // 2
    wd = k.workloads.items[d["id"]]
    assert (wd.repeat, wd.phases[0].rate, wd.phases[0].write, wd.phases[0].ticks) == (False, 20, 1.0, 100)
