"""What the rlimits stop, where Linux stops it (procsim/mm/rlimit.py and
resource.nproc_overlimit): RLIMIT_AS and RLIMIT_DATA in mmap, brk and
mremap (ENOMEM; brk keeps the old break), RLIMIT_MEMLOCK in mlock (ENOMEM,
EPERM at 0), MAP_LOCKED and mremap of locked memory (EAGAIN), RLIMIT_NPROC
at fork (EAGAIN). Each refusal changes nothing; the same sequence on this
host's kernel gives the same answers."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

from procfs_helpers import errno_of
from procsim import Kernel, KernelConfig
from procsim.kernel import MREMAP_MAYMOVE
from procsim.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_GROWSDOWN, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, PROT_READ, \
    PROT_WRITE
from procsim.resource import (RLIM_INFINITY, RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK, RLIMIT_NPROC, Rlimit)
from procsim.units import PAGE_SIZE

M = 1 << 20
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def machine() -> tuple[Kernel, int]:
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30))
    k.create_init()
    return k, k.spawn(["/usr/bin/app"], uid=65534, gid=65534)


def state(k: Kernel, pid: int) -> tuple:
    mm = k.groups[pid].mm
    return ([(v.start, v.end, v.flags) for v in mm.vmas], mm.total_vm, mm.data_vm, mm.locked_vm, mm.brk)


def test_rlimit_as_in_mmap_mremap_brk() -> None:
    k, p = machine()
    mm = k.groups[p].mm
    k.prlimit(p, RLIMIT_AS, Rlimit((mm.total_vm << 12) + 4 * M, RLIM_INFINITY))
    before = state(k, p)
    assert errno_of(k.mmap, p, 8 * M, PROT_READ, ANON) == errno.ENOMEM
    assert errno_of(k.mmap, p, 8 * M, RW, MAP_SHARED | MAP_ANONYMOUS) == errno.ENOMEM
    assert k.brk(p, mm.brk + 8 * M) == before[4]                      # the break stays
    assert state(k, p) == before
    a = k.mmap(p, 2 * M, PROT_READ, ANON)                             # within the limit
    assert errno_of(k.mremap, p, a, 2 * M, 6 * M, MREMAP_MAYMOVE) == errno.ENOMEM
    assert k.mremap(p, a, 2 * M, M) == a                              # shrinking: always
    k.munmap(p, a, M)
    # MAP_FIXED over mapped pages: only the new pages count
    b = k.mmap(p, 4 * M, PROT_READ, ANON)                             # at the limit now
    k.mmap(p, 4 * M, RW, ANON | MAP_FIXED, b)                         # replaces all 4 MiB: allowed
    full = state(k, p)
    assert errno_of(k.mmap, p, PAGE_SIZE, PROT_READ, ANON) == errno.ENOMEM
    assert state(k, p) == full

def test_rlimit_data_counts_private_writable_non_stack() -> None:
    k, p = machine()
    mm = k.groups[p].mm
    k.prlimit(p, RLIMIT_DATA, Rlimit((mm.data_vm << 12) + M, RLIM_INFINITY))
    before = state(k, p)
    assert errno_of(k.mmap, p, 4 * M, RW, ANON) == errno.ENOMEM       # private writable: data
    assert k.brk(p, mm.brk + 4 * M) == before[4]                      # heap + data segment past it
    assert state(k, p) == before
    k.mmap(p, 4 * M, PROT_READ, ANON)                                 # read-only: not data
    k.mmap(p, 4 * M, RW, MAP_SHARED | MAP_ANONYMOUS)                  # shared: not data
    k.mmap(p, 4 * M, RW, ANON | MAP_GROWSDOWN)                        # a stack: not data
    assert k.brk(p, mm.brk + PAGE_SIZE) != before[4]                  # within the limit: moves


def test_rlimit_data_zero_soft_checks_the_hard_limit() -> None:
    """may_expand_vm's Valgrind exception: soft 0 lets data grow up to the hard limit."""
    k, p = machine()
    mm = k.groups[p].mm
    k.prlimit(p, RLIMIT_DATA, Rlimit(0, (mm.data_vm << 12) + 2 * M))
    k.mmap(p, M, RW, ANON)
    assert errno_of(k.mmap, p, 2 * M, RW, ANON) == errno.ENOMEM


def test_rlimit_memlock() -> None:
    k, p = machine()
    k.prlimit(p, RLIMIT_MEMLOCK, Rlimit(64 << 10, 64 << 10))
    a = k.mmap(p, M, RW, ANON)
    before = state(k, p)
    assert errno_of(k.mlock, p, a, M) == errno.ENOMEM
    assert errno_of(k.mmap, p, M, RW, ANON | MAP_LOCKED) == errno.EAGAIN
    assert state(k, p) == before
    k.mlock(p, a, 64 << 10)
    k.mlock(p, a, 64 << 10)                                           # already locked: not counted twice
    assert errno_of(k.mlock, p, a, 68 << 10) == errno.ENOMEM
    assert errno_of(k.mremap, p, a, 64 << 10, 128 << 10, MREMAP_MAYMOVE) == errno.EAGAIN
    k.mlock(p, a, 64 << 10, on=False)                                 # munlock: no check
    k.prlimit(p, RLIMIT_MEMLOCK, Rlimit(0, 0))
    before = state(k, p)
    assert errno_of(k.mlock, p, a, PAGE_SIZE) == errno.EPERM
    assert errno_of(k.mmap, p, M, RW, ANON | MAP_LOCKED) == errno.EPERM
    assert state(k, p) == before
    r = k.spawn(["/usr/bin/rootapp"])                                 # root: CAP_IPC_LOCK
    k.prlimit(r, RLIMIT_MEMLOCK, Rlimit(0, 0))
    b = k.mmap(r, M, RW, ANON | MAP_LOCKED)
    k.mlock(r, b, M)


def test_rlimit_nproc_at_fork() -> None:
    """The real user's tasks (threads and zombies included) may not exceed
    RLIMIT_NPROC; root is exempt."""
    k, p = machine()
    k.prlimit(p, RLIMIT_NPROC, Rlimit(3, 3))
    k.clone_thread(p)
    c = k.fork(p)                                                     # 3 tasks of uid 65534
    n = len(k.tasks)
    assert errno_of(k.fork, p) == errno.EAGAIN
    assert errno_of(k.clone_thread, p) == errno.EAGAIN
    assert len(k.tasks) == n
    k.exit_group(c)                                                   # a zombie still counts
    assert errno_of(k.fork, p) == errno.EAGAIN
    k.wait(p, c)
    k.fork(p)
    k.prlimit(1, RLIMIT_NPROC, Rlimit(1, 1))
    k.fork(1)                                                         # root: no limit


HOST_SCRIPT = r'''
import ctypes, errno, json, os, resource as r
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.syscall.restype = ctypes.c_long
M = 1 << 20
FAILED = (1 << 64) - 1

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

def mmap(n, prot, flags):
    a = libc.mmap(None, n, prot, flags, -1, 0)
    return errno.errorcode[ctypes.get_errno()] if a in (None, FAILED) else 0

out = {}
case = os.environ["CASE"]
if case == "as":
    r.setrlimit(r.RLIMIT_AS, (status("VmSize") + 16 * M, r.RLIM_INFINITY))
    out["mmap"] = mmap(64 * M, 1, 0x22)
    a = libc.mmap(None, 2 * M, 1, 0x22, -1, 0)
    m = libc.mremap(a, 2 * M, 64 * M, 1)
    out["mremap"] = errno.errorcode[ctypes.get_errno()] if m == FAILED else 0
    b0 = libc.syscall(12, 0)
    out["brk_moved"] = libc.syscall(12, ctypes.c_long(b0 + 64 * M)) != b0
elif case == "data":
    r.setrlimit(r.RLIMIT_DATA, (status("VmData") + 16 * M, r.RLIM_INFINITY))
    out["private_rw"] = mmap(64 * M, 3, 0x22)
    out["private_ro"] = mmap(64 * M, 1, 0x22)
    out["shared_rw"] = mmap(64 * M, 3, 0x21)
    b0 = libc.syscall(12, 0)
    out["brk_moved"] = libc.syscall(12, ctypes.c_long(b0 + 64 * M)) != b0
elif case == "memlock":
    r.setrlimit(r.RLIMIT_MEMLOCK, (64 << 10, 64 << 10))
    a = libc.mmap(None, M, 3, 0x22, -1, 0)
    out["mlock_1M"] = 0 if libc.mlock(a, M) == 0 else errno.errorcode[ctypes.get_errno()]
    out["map_locked"] = mmap(M, 3, 0x2022)
    out["mlock_64k_twice"] = [libc.mlock(a, 64 << 10), libc.mlock(a, 64 << 10)]
    m = libc.mremap(a, 64 << 10, 128 << 10, 1)
    out["mremap_locked"] = errno.errorcode[ctypes.get_errno()] if m == FAILED else 0
    r.setrlimit(r.RLIMIT_MEMLOCK, (0, 0))
    out["mlock_at_0"] = 0 if libc.mlock(a, 4096) == 0 else errno.errorcode[ctypes.get_errno()]
    out["map_locked_at_0"] = mmap(M, 3, 0x2022)
elif case == "nproc":
    r.setrlimit(r.RLIMIT_NPROC, (1, 1))   # this process is already one of the user's
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        out["fork"] = 0
    except OSError as e:
        out["fork"] = errno.errorcode[e.errno]
print(json.dumps(out))
'''


def _host(case: str) -> dict:
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                          HOST_SCRIPT], capture_output=True, text=True, env={"CASE": case})
    if res.returncode:
        pytest.skip(f"cannot run an unprivileged child here: {res.stderr.strip()[-300:]}")
    return json.loads(res.stdout)


def _model(case: str) -> dict:
    """The host script's steps, in a simulated uid-65534 process."""
    k, p = machine()
    mm = k.groups[p].mm

    def e(fn, *args) -> str | int:
        try:
            fn(*args)
            return 0
        except OSError as x:
            return errno.errorcode[x.errno]

    out: dict = {}
    if case == "as":
        k.prlimit(p, RLIMIT_AS, Rlimit((mm.total_vm << 12) + 16 * M, RLIM_INFINITY))
        out["mmap"] = e(k.mmap, p, 64 * M, PROT_READ, ANON)
        a = k.mmap(p, 2 * M, PROT_READ, ANON)
        out["mremap"] = e(k.mremap, p, a, 2 * M, 64 * M, MREMAP_MAYMOVE)
        b0 = mm.brk
        out["brk_moved"] = k.brk(p, b0 + 64 * M) != b0
    elif case == "data":
        k.prlimit(p, RLIMIT_DATA, Rlimit((mm.data_vm << 12) + 16 * M, RLIM_INFINITY))
        out["private_rw"] = e(k.mmap, p, 64 * M, RW, ANON)
        out["private_ro"] = e(k.mmap, p, 64 * M, PROT_READ, ANON)
        out["shared_rw"] = e(k.mmap, p, 64 * M, RW, MAP_SHARED | MAP_ANONYMOUS)
        b0 = mm.brk
        out["brk_moved"] = k.brk(p, b0 + 64 * M) != b0
    elif case == "memlock":
        k.prlimit(p, RLIMIT_MEMLOCK, Rlimit(64 << 10, 64 << 10))
        a = k.mmap(p, M, RW, ANON)
        out["mlock_1M"] = e(k.mlock, p, a, M)
        out["map_locked"] = e(k.mmap, p, M, RW, ANON | MAP_LOCKED)
        out["mlock_64k_twice"] = [e(k.mlock, p, a, 64 << 10), e(k.mlock, p, a, 64 << 10)]
        out["mremap_locked"] = e(k.mremap, p, a, 64 << 10, 128 << 10, MREMAP_MAYMOVE)
        k.prlimit(p, RLIMIT_MEMLOCK, Rlimit(0, 0))
        out["mlock_at_0"] = e(k.mlock, p, a, PAGE_SIZE)
        out["map_locked_at_0"] = e(k.mmap, p, M, RW, ANON | MAP_LOCKED)
    elif case == "nproc":
        k.prlimit(p, RLIMIT_NPROC, Rlimit(1, 1))
        out["fork"] = e(k.fork, p)
    return out


@pytest.mark.parametrize("case", ["as", "data", "memlock", "nproc"])
def test_same_answers_as_this_hosts_kernel(case: str) -> None:
    assert _model(case) == _host(case)


def test_stack_growth_and_rlimit_stack() -> None:
    """A touch below [stack] grows it (expand_downwards: VmStk and the maps
    line follow) within RLIMIT_STACK, the guard gap and RLIMIT_AS; past
    them it fails ENOMEM (the task's SIGSEGV) and nothing changes."""
    from procsim.procfs.tree import ProcFS
    from procfs_helpers import read_all

    k, p = machine()
    mm = k.groups[p].mm
    stack = next(v for v in mm.vmas if v.flags & MAP_GROWSDOWN and v.start <= mm.start_stack <= v.end)
    top, size = stack.end, stack.end - stack.start
    k.prlimit(p, 3, Rlimit(size + 64 * PAGE_SIZE, RLIM_INFINITY))     # RLIMIT_STACK
    stk0 = mm.stack_vm
    k.touch(p, top - size - 16 * PAGE_SIZE, PAGE_SIZE)
    grown = next(v for v in mm.vmas if v.end == top)
    assert grown.start == top - size - 16 * PAGE_SIZE and mm.stack_vm == stk0 + 16
    fs = ProcFS(k)
    assert f"{grown.start:012x}-{top:012x} rw-p".encode() in read_all(fs, f"/proc/{p}/maps")
    assert b"[stack]" in read_all(fs, f"/proc/{p}/maps").split(f"{grown.start:012x}-".encode())[1].split(b"\n")[0]
    before = state(k, p)
    assert errno_of(k.touch, p, top - size - 65 * PAGE_SIZE, PAGE_SIZE) == errno.ENOMEM  # past RLIMIT_STACK
    assert state(k, p) == before
    k.touch(p, top - size - 64 * PAGE_SIZE, PAGE_SIZE)                  # exactly at it
    # the guard gap: a mapping just below keeps the stack 1 MiB away
    low = next(v for v in mm.vmas if v.end == top).start
    k.prlimit(p, 3, Rlimit(RLIM_INFINITY, RLIM_INFINITY))
    k.mmap(p, PAGE_SIZE, PROT_READ, ANON | MAP_FIXED, low - 300 * PAGE_SIZE)
    before = state(k, p)
    assert errno_of(k.touch, p, low - 100 * PAGE_SIZE, PAGE_SIZE) == errno.ENOMEM
    assert state(k, p) == before
    k.touch(p, low - 43 * PAGE_SIZE, PAGE_SIZE)                         # 256 pages above it: allowed


STACK_SCRIPT = r'''
import ctypes, os, resource as r, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
P = 4096
base = 0x600000000000
top = base + 16 * P
# MAP_PRIVATE|MAP_ANONYMOUS|MAP_GROWSDOWN|MAP_FIXED_NOREPLACE
a = libc.mmap(base, 16 * P, 3, 0x22 | 0x100 | 0x100000, -1, 0)
assert a == base, ctypes.get_errno()
r.setrlimit(r.RLIMIT_STACK, (int(sys.argv[1]) * P, r.RLIM_INFINITY))
below = int(sys.argv[2])
if len(sys.argv) > 3:   # a mapping `gap` pages under the growsdown one
    libc.mmap(base - int(sys.argv[3]) * P, P, 1, 0x22 | 0x100000, -1, 0)
ctypes.memset(base - below * P, 1, 1)
print("ok")
'''


def test_stack_growth_as_this_hosts_kernel() -> None:
    """A MAP_GROWSDOWN mapping of 16 pages grows on a touch below it as the
    host's kernel grows it: within RLIMIT_STACK and the 256-page guard gap,
    else the task dies of SIGSEGV (the model: ENOMEM, nothing changed)."""
    probes = [(64, 16, None), (64, 48, None), (64, 49, None), (1 << 20, 100, 400), (1 << 20, 100, 300)]
    host = []
    for lim, below, gap in probes:
        argv = [sys.executable, "-c", STACK_SCRIPT, str(lim), str(below)] + ([str(gap)] if gap else [])
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode not in (0, -11):
            pytest.skip(f"cannot set up the probe here: {res.stderr.strip()[-200:]}")
        host.append("ok" if res.returncode == 0 else "SIGSEGV")
    model = []
    for lim, below, gap in probes:
        k, p = machine()
        base = 0x600000000000
        k.mmap(p, 16 * PAGE_SIZE, RW, ANON | MAP_GROWSDOWN | MAP_FIXED, base)
        k.prlimit(p, 3, Rlimit(lim * PAGE_SIZE, RLIM_INFINITY))
        if gap:
            k.mmap(p, PAGE_SIZE, PROT_READ, ANON | MAP_FIXED, base - gap * PAGE_SIZE)
        try:
            k.touch(p, base - below * PAGE_SIZE, PAGE_SIZE)
            model.append("ok")
        except OSError as e:
            assert e.errno == errno.ENOMEM
            model.append("SIGSEGV")
    assert model == host == ["ok", "ok", "SIGSEGV", "ok", "SIGSEGV"]
