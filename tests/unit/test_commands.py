"""The command vocabulary: bad commands get an errno and change nothing."""

from __future__ import annotations

import errno
import inspect

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from procsim.commands import COMMANDS, CommandError, execute
from invariants import fingerprint, small

QUERIES = {"ps", "vmas", "task", "cpus", "now"}


def test_spawn_without_program_leaves_nothing_behind():
    k = small()
    before = fingerprint(k)
    with pytest.raises(CommandError) as e:
        execute(k, "spawn", {"argv": []})
    assert e.value.errno == errno.ENOENT
    assert fingerprint(k) == before


def test_spawn_credentials_default_to_the_parent():
    k = small()
    app = 100  # uid 1000 in ci-small.toml
    assert k.group(app).cred.euid == 1000
    child = execute(k, "spawn", {"argv": ["/usr/bin/true"], "parent": app})
    assert (k.group(child).cred.euid, k.group(child).cred.egid) == (1000, 1000)
    root = execute(k, "spawn", {"argv": ["/usr/bin/true"], "parent": app, "uid": 0, "gid": 0})
    assert (k.group(root).cred.euid, k.group(root).cred.egid) == (0, 0)


@pytest.mark.parametrize("op, args, err", [
    ("no_such_op", {}, errno.EINVAL),
    ("mmap", {"pid": 100}, errno.EINVAL),                                  # missing length
    ("mmap", {"pid": 100, "length": "lots"}, errno.EINVAL),
    ("mmap", {"pid": 99999, "length": 4096}, errno.ESRCH),
    ("mmap", {"pid": 100, "length": 0}, errno.EINVAL),
    ("munmap", {"pid": 100, "addr": 1, "length": 4096}, errno.EINVAL),     # unaligned
    ("mprotect", {"pid": 100, "addr": 0x1000, "length": 4096, "prot": "r"}, errno.ENOMEM),
    ("touch", {"pid": 100, "addr": 0x1000, "length": 4096}, errno.EFAULT),
    ("run", {"tid": 100, "cpu": 2}, errno.EINVAL),                         # 2 CPUs: 0-1
    ("affinity", {"tid": 100, "cpus": "5"}, errno.EINVAL),
    ("affinity", {"tid": 100, "cpus": "1-"}, errno.EINVAL),
    ("exit", {"pid": 99999}, errno.ESRCH),
    ("clone", {"pid": 1, "comm": 1}, errno.EINVAL),                        # found by the fuzz below
    ("advance", {"seconds": 1e9}, errno.EINVAL),                         # would wedge the daemon
    ("advance", {"seconds": -1}, errno.EINVAL),
    ("advance", {"seconds": "nan"}, errno.EINVAL),
    ("madvise", {"pid": 100, "addr": 0, "length": 4096, "advice": "willneed"}, errno.EINVAL),
])
def test_bad_command_gets_errno_and_changes_nothing(op, args, err):
    k = small()
    before = fingerprint(k)
    with pytest.raises(CommandError) as e:
        execute(k, op, args)
    assert e.value.errno == err, e.value.msg
    assert fingerprint(k) == before


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([0, 1, 100, 101, 110, 4096, 2**47]),
    st.text(max_size=6), st.sampled_from(["rw", "0-1", "1M", "x", "", "-1", "0x1000"]),
    st.lists(st.integers(-3, 3), max_size=3), st.lists(st.text(max_size=3), max_size=2),
)
_mutating = sorted(set(COMMANDS) - QUERIES - {"advance"})


@st.composite
def garbage_command(draw):
    op = draw(st.sampled_from(_mutating))
    params = [p.name for p in COMMANDS[op].params]
    names = draw(st.lists(st.sampled_from(params + ["bogus"]), unique=True, max_size=len(params) + 1))
    return op, {n: draw(_values) for n in names}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage_command())
def test_garbage_never_crashes_and_failures_change_nothing(cmd):
    op, args = cmd
    k = small()
    before = fingerprint(k)
    try:
        execute(k, op, args)
    except CommandError as e:
        assert e.errno > 0 and e.msg
        assert fingerprint(k) == before, (op, args)
