"""comm writes (fs/proc/base.c comm_write) and cmdline/environ after a
process rewrites its argv area (get_mm_cmdline, get_mm_proctitle,
environ_read), against 6.18's rules and, where the host is 6.18, a real
process that rewrites its own argv area the same way."""

from __future__ import annotations

import errno
import inspect
import os
import subprocess
import sys

import pytest

from hostinfo import requires_host
from procsim.kernel import Kernel, KernelError
from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS
from procfs_helpers import errno_of, read_all
from invariants import boot

ARGV = ["python3", "title.py", "MODE", "xy", "zzz"]
ENV = ["A=1", "BB=22"]


def writes(mode: str, arg_len: int, area: int) -> list[tuple[int, bytes]]:
    """The stores of each way of rewriting an argv area: (offset from
    arg_start, bytes); `area` is env_end - arg_start."""
    if mode == "short-pad":  # nginx, postgres: the title, NULs to env_end
        t = b"title: short"
        return [(0, t + bytes(area - len(t)))]
    if mode == "short-nopad":  # a title and its NUL over the start, the old strings after it
        return [(0, b"ab\0")]
    if mode == "short-dot":  # python-setproctitle: NULs, the title, '.' on the old last NUL
        t = b"title: short"
        return [(0, t + bytes(area - len(t))), (arg_len - 1, b".")]
    if mode == "long":  # longer than argv, over the environment, no NUL up to env_end
        return [(0, b"L" * area)]
    if mode == "long-nul":  # over the environment, the last NUL kept
        return [(0, b"X" * (area - 1))]
    raise ValueError(mode)


MODES = ("short-pad", "short-nopad", "short-dot", "long", "long-nul")

CHILD = r"""
import os, sys
f = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
arg_start, arg_end, env_start, env_end = (int(f[i - 3]) for i in (48, 49, 50, 51))
exec(sys.stdin.readline())  # the writes() function, one line
mem = open("/proc/self/mem", "r+b", buffering=0)
for off, data in writes(sys.argv[1], arg_end - arg_start, env_end - arg_start):
    mem.seek(arg_start + off)
    mem.write(data)
print("ready", flush=True)
sys.stdin.readline()
"""


def model(mode: str) -> tuple[Kernel, ProcFS, int]:
    k = boot()
    argv = [a.replace("MODE", mode) for a in ARGV]
    pid = k.spawn(argv, env=list(ENV))
    for off, data in writes(mode, len("\0".join(argv)) + 1, len("\0".join(argv + ENV)) + 1):
        k.write_argv_area(pid, data, off)
    return k, ProcFS(k), pid


@pytest.mark.parametrize("mode", MODES)
def test_rewritten_cmdline_and_environ_rules(mode: str) -> None:
    """6.18's get_mm_cmdline(): NUL at arg_end - 1: [arg_start, arg_end) as
    it is now; otherwise the title up to its first NUL, at most to env_end.
    environ: [env_start, env_end) as it is now."""
    k, fs, pid = model(mode)
    argv = b"\0".join(a.replace("MODE", mode).encode() for a in ARGV) + b"\0"
    env = b"A=1\0BB=22\0"
    want_cmd, want_env = {
        "short-pad": (b"title: short" + bytes(len(argv) - 12), bytes(len(env))),
        "short-nopad": (b"ab\0" + argv[3:], env),
        "short-dot": (b"title: short\0", bytes(len(env))),
        "long": (b"L" * (len(argv) + len(env)), b"L" * len(env)),
        "long-nul": (b"X" * (len(argv) + len(env) - 1) + b"\0", b"X" * (len(env) - 1) + b"\0"),
    }[mode]
    assert read_all(fs, f"/proc/{pid}/cmdline") == want_cmd
    assert read_all(fs, f"/proc/{pid}/environ") == want_env
    assert read_all(fs, f"/proc/{pid}/cmdline", chunk=5) == want_cmd  # a read in pieces agrees


@requires_host(min_kernel="6.18", files=("/proc/self/mem",))
@pytest.mark.parametrize("mode", MODES)
def test_rewritten_cmdline_as_a_real_process(mode: str, tmp_path) -> None:
    """A real process (same argv and environment) makes the same stores into
    its own argv area through /proc/self/mem: the same cmdline and environ."""
    (tmp_path / "title.py").write_text(CHILD)
    argv = [a.replace("MODE", mode) for a in ARGV]
    one_line = "exec(" + repr(inspect.getsource(writes)) + ")\n"
    p = subprocess.Popen(argv, executable=sys.executable, cwd=tmp_path, env=dict(e.split("=") for e in ENV),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        p.stdin.write(one_line.encode())
        p.stdin.flush()
        assert p.stdout.readline() == b"ready\n"
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            host_cmd = f.read()
        with open(f"/proc/{p.pid}/environ", "rb") as f:
            host_env = f.read()
    finally:
        p.stdin.close()
        p.wait(10)
    k, fs, pid = model(mode)
    assert read_all(fs, f"/proc/{pid}/cmdline") == host_cmd
    assert read_all(fs, f"/proc/{pid}/environ") == host_env


def test_set_proctitle_as_nginx_does() -> None:
    """The title and NULs to env_end: cmdline keeps argv's length (ps and
    pgrep stop at the first trailing NUL), environ is all NULs; a title
    longer than the area is cut with its last byte a NUL; a forked child
    keeps the rewritten area, an exec starts afresh."""
    k = boot()
    pid = k.spawn(["/usr/sbin/nginx", "-g", "daemon on; master_process on;"], env=["LANG=C"])
    fs = ProcFS(k)
    k.set_proctitle(pid, ["nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"])
    assert read_all(fs, f"/proc/{pid}/cmdline") == b"nginx: master process /usr/sbin/nginx -g daemon on; mas\0"
    assert read_all(fs, f"/proc/{pid}/environ") == b"n; mas\0"  # the title ran over it
    w = k.fork(pid)
    k.set_proctitle(w, ["nginx: worker process"])
    assert read_all(fs, f"/proc/{w}/cmdline") == b"nginx: worker process" + bytes(49 - 21)
    assert k.group(w).cmdline == ["nginx: worker process"]
    assert read_all(fs, f"/proc/{pid}/cmdline").startswith(b"nginx: master")
    c = k.fork(w)
    assert read_all(fs, f"/proc/{c}/cmdline") == read_all(fs, f"/proc/{w}/cmdline")
    k.exec(c, "/usr/bin/true", ["true"], ["X=1"])
    assert read_all(fs, f"/proc/{c}/cmdline") == b"true\0"
    assert read_all(fs, f"/proc/{c}/environ") == b"X=1\0"


def test_write_argv_area_outside_is_efault() -> None:
    k = boot()
    pid = k.spawn(["a"], env=["B=1"])
    gen = k.generation
    for off, data in ((-1, b"x"), (6, b"x"), (0, b"1234567")):
        with pytest.raises(KernelError) as e:
            k.write_argv_area(pid, data, off)
        assert e.value.errno == errno.EFAULT
    assert k.generation == gen and k.group(pid).mm.argv_area is None
    k.write_argv_area(pid, b"123456", 0)  # the whole area: "a\0" and "B=1\0"
    assert read_all(ProcFS(k), f"/proc/{pid}/cmdline") == b"123456"


def _comm_write(fs: ProcFS, path: str, data: bytes, caller: Caller) -> int:
    h = fs.open(path, os.O_WRONLY, caller)
    return h.write(data, 0)


def test_comm_write_within_the_thread_group() -> None:
    """comm_write(): a task of the writer's group (a thread writing its
    leader's comm too) takes the first 15 bytes, up to a NUL, a newline
    kept (as `echo x > comm` leaves it on 6.18); the whole count returns."""
    k = boot()
    pid = k.spawn(["/usr/bin/python3"])
    tid = k.clone_thread(pid)
    fs = ProcFS(k)
    me = Caller(tid, 0, 0)
    assert _comm_write(fs, f"/proc/{pid}/task/{tid}/comm", b"thr", me) == 3
    assert read_all(fs, f"/proc/{pid}/task/{tid}/comm") == b"thr\n"
    assert _comm_write(fs, f"/proc/{pid}/comm", b"lead-by-thread-123456789", me) == 24
    assert read_all(fs, f"/proc/{pid}/comm") == b"lead-by-thread-\n"
    assert _comm_write(fs, f"/proc/{pid}/comm", b"abc\n", Caller(pid, 0, 0)) == 4
    assert read_all(fs, f"/proc/{pid}/comm") == b"abc\n\n"
    assert _comm_write(fs, f"/proc/{pid}/comm", b"x\0yz", Caller(pid, 0, 0)) == 4
    assert read_all(fs, f"/proc/{pid}/comm") == b"x\n"
    assert read_all(fs, f"/proc/{pid}/stat").split(b" ")[1] == b"(x)"


def test_comm_write_from_another_thread_group_is_einval() -> None:
    """A writer outside the group (another process, root included, or a
    reader that is no simulated task): EINVAL, nothing changed."""
    k = boot()
    pid = k.spawn(["/usr/bin/python3"])
    other = k.spawn(["/usr/bin/sleep"])
    fs = ProcFS(k)
    gen = k.generation
    for caller in (Caller(other, 0, 0), Caller(10**7, 0, 0)):
        h = fs.open(f"/proc/{pid}/comm", os.O_WRONLY, caller)
        assert errno_of(h.write, b"child", 0) == errno.EINVAL
    assert read_all(fs, f"/proc/{pid}/comm") == b"python3\n" and k.generation == gen


def test_argv_area_addresses_count_bytes() -> None:
    """stat's arg_start..env_end span the strings' bytes (UTF-8), as
    cmdline and environ return them."""
    k = boot()
    pid = k.spawn(["/usr/bin/caf\u00e9", "\u00fc"], env=["N=\u00e9t\u00e9"])
    mm = k.group(pid).mm
    fs = ProcFS(k)
    assert mm.arg_end - mm.arg_start == len(read_all(fs, f"/proc/{pid}/cmdline")) == 18
    assert mm.env_end - mm.env_start == len(read_all(fs, f"/proc/{pid}/environ")) == 8
