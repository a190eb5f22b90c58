"""The kernel is the only source of change: every mutation is a kernel
method that records it (Kernel._changed, the one place `generation`
moves), queries leave the generation alone, and nothing outside the
kernel reaches into its private parts."""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest

from procsim.commands import COMMANDS, CommandError, execute
from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS
from invariants import small

REPO = Path(__file__).resolve().parents[2]
ROOT = Caller(os.getpid(), 0, 0, caps=(1 << 64) - 1)  # every capability


def _sources(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        p = REPO / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def _generation_stores(path: Path) -> list[int]:
    """Lines of `path` that assign (=, +=, ...) to some `.generation`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        lines += [node.lineno for t in targets if isinstance(t, ast.Attribute) and t.attr == "generation"]
    return lines


def test_only_the_kernel_moves_the_generation() -> None:
    kernel_py = REPO / "procsim" / "kernel.py"
    found = {str(p.relative_to(REPO)): ls for p in _sources("procsim", "mountd") if p != kernel_py
             if (ls := _generation_stores(p))}
    assert found == {}
    # and in the kernel, only Kernel.__init__ and Kernel._changed
    tree = ast.parse(kernel_py.read_text())
    owners = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              for n in ast.walk(f) if isinstance(n, (ast.Assign, ast.AugAssign))
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
              if isinstance(t, ast.Attribute) and t.attr == "generation"}
    assert owners == {"__init__", "_changed"}


def _kernel_expr(node: ast.AST) -> bool:
    """`k`, `kernel`, `<anything>.k` or `<anything>.kernel`: how the layers
    above name the kernel."""
    return (isinstance(node, ast.Name) and node.id in ("k", "kernel")
            or isinstance(node, ast.Attribute) and node.attr in ("k", "kernel"))


def test_no_private_kernel_access_above_the_kernel() -> None:
    """The layers that drive or show the kernel use its public methods
    (workload.py and mm/ are parts of the kernel: not checked)."""
    found = []
    for p in _sources("procsim/commands", "procsim/scenario", "procsim/history.py", "procsim/procfs",
                      "mountd"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and _kernel_expr(node.value)):
                found.append(f"{p.relative_to(REPO)}:{node.lineno}: .{node.attr}")
    assert found == []


# -- commands: queries change nothing -------------------------------------------------

QUERIES = sorted(op for op, c in COMMANDS.items() if c.query)


@pytest.fixture(scope="module")
def world():
    k = small()
    pid = next(p["pid"] for p in execute(k, "ps", {}) if not p["kthread"] and not p["zombie"] and p["pid"] > 1)
    execute(k, "track", {"pid": pid})
    execute(k, "advance", {"seconds": 1.0})
    return k, pid


def _args(op: str, pid: int) -> dict:
    given = {"pid": pid, "since": 0.0}
    args = {}
    for p in COMMANDS[op].params:
        if p.required:
            assert p.name in given, f"{op}: give the test a value for {p.name!r}"
            args[p.name] = given[p.name]
    return args


def test_the_table_marks_the_queries() -> None:
    assert {"ps", "vmas", "memory", "task", "cpus", "swap", "rss_counters", "oom", "oom_select", "now",
            "clock", "workloads", "wss_truth", "oom_score_adj", "hugepages", "thp"} <= set(QUERIES)
    for op in ("spawn", "mmap", "touch", "advance", "kill", "clear_refs", "track", "workload_start"):
        assert not COMMANDS[op].query, op


@pytest.mark.parametrize("op", QUERIES)
def test_a_query_leaves_the_generation(world, op) -> None:
    k, pid = world
    seen = []
    k.observers.append(lambda what, info: seen.append(what))
    try:
        before = k.generation
        execute(k, op, _args(op, pid))  # succeeds: the query really ran
        assert k.generation == before
        assert seen == []
    finally:
        k.observers.pop()


def test_a_failed_query_leaves_the_generation(world) -> None:
    k, _ = world
    before = k.generation
    with pytest.raises(CommandError) as e:
        execute(k, "task", {"pid": 999999})
    assert e.value.errno == errno.ESRCH
    assert k.generation == before


@pytest.mark.parametrize("op, args, what", [
    ("oom_score_adj", {"value": 100}, "oom_score_adj"),
    ("hugepages", {"nr": 1}, "mm"),
    ("thp", {"enabled": "madvise"}, "thp"),
])
def test_a_query_given_a_setter_is_a_change(world, op, args, what) -> None:
    k, pid = world
    seen = []
    k.observers.append(lambda w, info: seen.append(w))
    try:
        before = k.generation
        execute(k, op, _args(op, pid) | args)
        assert k.generation > before
        assert seen == [what]
    finally:
        k.observers.pop()


def test_a_failed_change_is_recorded(world) -> None:
    """A syscall may fail half-way (out of memory mid-touch): its failure is
    a change, so no render cache trusts what it kept."""
    k, pid = world
    seen = []
    k.observers.append(lambda w, info: seen.append((w, info)))
    try:
        with pytest.raises(CommandError):
            execute(k, "munmap", {"pid": pid, "addr": 1, "length": 4096})  # EINVAL: not aligned
        assert seen == [("failed", {"call": "munmap"})]
    finally:
        k.observers.pop()


# -- procfs writes and test-and-clear reads go through kernel methods -----------------

def _recorded(k, fn) -> list[str]:
    seen: list[str] = []
    k.observers.append(lambda w, info: seen.append(w))
    try:
        fn()
    finally:
        k.observers.pop()
    return seen


def test_procfs_writes_and_idle_reads_are_recorded(world) -> None:
    k, pid = world
    fs = ProcFS(k)

    def write(path: str, data: bytes) -> None:
        h = fs.open(path, os.O_WRONLY, ROOT)
        assert h.write(data, 0) == len(data)

    def read(path: str, size: int) -> None:
        assert len(fs.open(path, os.O_RDONLY, ROOT).read(size, 0)) == size

    assert _recorded(k, lambda: write(f"/proc/{pid}/oom_score_adj", b"200\n")) == ["oom_score_adj"]
    assert k.group(pid).oom_score_adj == 200
    assert _recorded(k, lambda: write(f"/proc/{pid}/oom_adj", b"3\n")) == ["oom_score_adj"]
    assert _recorded(k, lambda: write(f"/proc/{pid}/clear_refs", b"1\n")) == ["mm"]
    assert _recorded(k, lambda: write("/proc/sys/kernel/threads-max", b"5000\n")) == ["sysctl"]
    assert k.max_threads == 5000
    # the idle bitmaps' reads test and clear accessed bits: changes
    assert _recorded(k, lambda: read(f"/proc/{pid}/idle_bitmap", 8)) == ["idle"]
    assert _recorded(k, lambda: write(f"/proc/{pid}/idle_bitmap", b"\xff" * 8)) == ["idle"]
    assert _recorded(k, lambda: read("/sys/kernel/mm/page_idle/bitmap", 8)) == ["idle"]
    assert _recorded(k, lambda: write("/sys/kernel/mm/page_idle/bitmap", b"\xff" * 8)) == ["idle"]
    # a refused write changes nothing
    k.set_cred(pid, 1000, 1000)
    user = Caller(os.getpid(), 1000, 1000, caps=0)
    h = fs.open(f"/proc/{pid}/oom_score_adj", os.O_WRONLY, user)
    seen = []
    k.observers.append(lambda w, info: seen.append(w))
    try:
        with pytest.raises(OSError) as e:
            h.write(b"-500\n", 0)  # below the floor without CAP_SYS_RESOURCE
        assert e.value.errno == errno.EACCES
        assert seen == []
    finally:
        k.observers.pop()


def test_every_change_is_recorded() -> None:
    """Commands that change the world, one after another on one machine:
    each moves the generation (so the mount's caches need no dropping)."""
    k = small()
    pid = execute(k, "spawn", {"argv": ["/usr/bin/python3"]})
    addr = None

    def step(op: str, args: dict):
        before = k.generation
        out = execute(k, op, args)
        assert k.generation > before, op
        return out

    addr = step("mmap", {"pid": pid, "length": 1 << 20})
    step("touch", {"pid": pid, "addr": addr, "length": 1 << 16})
    step("track", {"pid": pid})
    wid = step("workload_start", {"pid": pid, "pattern": "uniform", "rate": 1000, "addr": addr,
                                  "length": 1 << 20})
    step("workload_change", {"id": wid, "rate": 2000})
    step("advance", {"seconds": 0.5})
    step("workload_stop", {"id": wid})
    step("clear_refs", {"pid": pid, "value": 1})
    tid = step("clone", {"pid": pid})
    step("nice", {"tid": tid, "nice": 5})
    step("exit", {"pid": tid})
    step("setuid", {"pid": pid, "uid": 1000})
    step("kill", {"pid": pid})
