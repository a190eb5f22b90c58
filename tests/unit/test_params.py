"""Strict command parameters, generated from the command table: every
typed parameter of every command refuses values of the wrong type with
EINVAL naming the parameter, and the world does not change."""

from __future__ import annotations

import errno
import inspect

import pytest

from mountd.control import Client
from procsim import params as T
from procsim.commands import COMMANDS, CommandError, execute
from invariants import fingerprint, small

# A value of the right type for each parameter type (the kernel may still
# refuse it: these tests stop at the parser). RAW parameters are checked by
# the subsystem that takes them (tests/unit/test_workload_commands.py).
GOOD = {T.INT: 100, T.SIZE: 4096, T.BOOL: True, T.PROT: "r", T.STR: "x", T.STRS: ["x"], T.STR_MAP: {},
        T.CPULIST: "0", T.SECONDS: 1.0, T.KB: 64, T.RAW: "uniform", T.OPEN_FLAGS: "O_RDONLY"}
# Values each type must refuse: the wrong JSON type, and text that is not one
BAD = {
    T.INT: ["no", "4k", 1.5, True, [], {}, "0x"],
    T.SIZE: ["no", "2Q", "nanM", "infG", 1.5, True, [], {}],
    T.BOOL: ["no", "yes", "true", 2, -1, 1.5, [], {}],
    T.PROT: ["rwq", "read", 8, -1, 1.5, True, []],
    T.STR: [5, 1.5, True, [], {}],
    T.STRS: [5, [1], True, {}, [None]],
    T.STR_MAP: ["x", [], {"a": 1}],
    T.CPULIST: [True, 1.5, {}, [True], ["0"]],
    T.SECONDS: ["no", True, [], -1, "nan", "inf", float("inf")],
    T.KB: ["no", "64Q", True, 1.5, []],
    T.OPEN_FLAGS: ["O_BOGUS", "O_RDONLY|", -1, True, 1.5, [], [1], {}],
}
REQUIRED_NONE = object()  # None for a required parameter: a missing value, not "not given"


def _valid_args(cmd) -> dict:
    return {p.name: GOOD[p.type] for p in cmd.params if p.required}


CASES = [(op, p.name, bad)
         for op, cmd in sorted(COMMANDS.items()) for p in cmd.params if p.type in BAD
         for bad in BAD[p.type] + ([None] if p.required else [])]


@pytest.fixture(scope="module")
def world():
    k = small()
    return k, fingerprint(k)


@pytest.mark.parametrize("op, name, bad", CASES, ids=[f"{o}-{n}-{b!r}" for o, n, b in CASES])
def test_wrong_type_is_einval_naming_the_parameter(world, op, name, bad):
    k, before = world
    args = _valid_args(COMMANDS[op]) | {name: bad}
    with pytest.raises(CommandError) as e:
        execute(k, op, args)
    assert e.value.errno == errno.EINVAL
    assert e.value.msg.startswith(f"{op}: {name}: expected "), e.value.msg
    assert e.value.msg.endswith(f"got {bad!r}")


def test_failures_changed_nothing(world):
    """Runs after the cases above on the same world (pytest keeps file order)."""
    k, before = world
    assert fingerprint(k) == before


@pytest.mark.parametrize("op", sorted(op for op, c in COMMANDS.items() if any(p.required for p in c.params)))
def test_missing_parameter_is_named(op):
    k = small()
    cmd = COMMANDS[op]
    for p in cmd.params:
        if not p.required:
            continue
        args = _valid_args(cmd)
        del args[p.name]
        with pytest.raises(CommandError) as e:
            execute(k, op, args)
        assert (e.value.errno, e.value.msg) == (errno.EINVAL, f"{op}: missing parameter '{p.name}'")


def test_several_missing_and_unknown_parameters():
    k = small()
    with pytest.raises(CommandError) as e:
        execute(k, "mmap", {})
    assert e.value.msg == "mmap: missing parameters 'pid' and 'length'"
    with pytest.raises(CommandError) as e:
        execute(k, "munmap", {"pid": 100, "addr": 0, "length": 4096, "colour": "red"})
    assert e.value.msg == "munmap: unknown parameter 'colour' (takes: pid, addr, length)"
    with pytest.raises(CommandError) as e:
        execute(k, "ps", {"pid": 1})
    assert e.value.msg == "ps: unknown parameter 'pid' (takes: no parameters)"


def test_touch_write_no_is_refused_not_a_write():
    """The issue's case: bool("no") is True; the flag parser says no."""
    k = small()
    before = fingerprint(k)
    with pytest.raises(CommandError) as e:
        execute(k, "touch", {"pid": 100, "addr": 0x1000, "length": 4096, "write": "no"})
    assert e.value.msg == "touch: write: expected true or false, got 'no'"
    assert fingerprint(k) == before


@pytest.mark.parametrize("text, want", [("4096", 4096), ("0x1000", 4096), ("2M", 2 << 20), ("1.5G", 3 << 29),
                                        ("64KiB", 64 << 10), (" 8k ", 8192), (4096, 4096), ("-1", -1)])
def test_sizes_parse(text, want):
    assert T.SIZE.parse(text) == want


@pytest.mark.parametrize("v, want", [(True, True), (False, False), (0, False), (1, True)])
def test_flags_parse(v, want):
    assert T.BOOL.parse(v) is want


def test_touch_write_false_reads():
    """write=false really is a read: no dirty pages, where write=true dirties."""
    k = small()
    addr = execute(k, "mmap", {"pid": 100, "length": 1 << 16})

    def vma() -> dict:
        return next(v for v in execute(k, "memory", {"pid": 100})["vmas"] if v["start"] == addr)

    execute(k, "touch", {"pid": 100, "addr": addr, "length": 1 << 16, "write": 0})
    assert vma()["private_dirty"] == 0  # read faults map the zero page
    execute(k, "touch", {"pid": 100, "addr": addr, "length": 1 << 16, "write": True})
    assert vma()["private_dirty"] == 1 << 16


def test_client_methods_are_the_table():
    """One Client method per command, with the table's parameters, defaults and doc."""
    for op, cmd in COMMANDS.items():
        method = getattr(Client, op)
        sig = inspect.signature(method)
        names = list(sig.parameters)[1:]
        assert names == [p.name for p in cmd.params], op
        for p in cmd.params:
            d = sig.parameters[p.name].default
            assert (d is inspect.Parameter.empty) if p.required else d == p.default, (op, p.name)
        assert method.__doc__ == cmd.doc and cmd.doc, op
    assert not hasattr(Client, "no_such_command")


def test_scenario_activity_of_the_wrong_type_is_a_load_error(tmp_path):
    """A timed event with a bad value fails the load, naming it, rather than
    being skipped when it comes due."""
    from procsim import scenario
    doc = """
[machine]
nr_cpus = 2
mem = "1G"
[[process]]
name = "app"
argv = ["/usr/bin/app"]
maps = [{ name = "buf", size = "1M" }]
[[activity]]
at = 5
op = "touch"
pid = "app"
addr = "app:buf"
length = 4096
write = "no"
"""
    f = tmp_path / "bad.toml"
    f.write_text(doc)
    with pytest.raises(scenario.ScenarioError, match=r"activity #1 \(touch\): write: expected true or false, got 'no'"):
        scenario.load(str(f), clock="manual")
    f.write_text(doc.replace('write = "no"', "write = false"))
    scenario.load(str(f), clock="manual")  # names for pid and addr still resolve
