"""cgroup v2: the hierarchy under /sys/fs/cgroup, the memory controller's
charges, limits and memcg OOM, pids.max at fork, the writes' errnos, and
the invariants between the files and the model."""

from __future__ import annotations

import errno
import os
import re

import numpy as np
import pytest

from hostinfo import requires_host
from invariants import boot, check_world
from procfs_helpers import ROOT, errno_of, read_all
from procsim import scenario
from procsim.cgroup import stat
from procsim.cgroup import syscalls as C
from procsim.commands import CommandError, execute
from procsim.procfs.tree import ProcFS
from procsim.units import PAGE_SIZE

CG = "/sys/fs/cgroup"
MiB = 1 << 20


@pytest.fixture
def world():
    """A machine with a slice and a service in it, one process there."""
    k = boot(mem_bytes=1 << 30)
    C.mkdir(k, "/system.slice")
    C.mkdir(k, "/system.slice/app.service")
    pid = k.spawn(["/usr/bin/app"])
    C.attach(k, pid, "/system.slice/app.service")
    return k, ProcFS(k), pid


def read(fs: ProcFS, path: str) -> str:
    return read_all(fs, path).decode()


def write(fs: ProcFS, path: str, data: bytes) -> int:
    h = fs.open(path, os.O_WRONLY, ROOT)
    return h.write(data, 0)


def charged_by_frames(k, m) -> int:
    """The frames whose memcg is m or one below it, counted from memcg[] itself."""
    ids = [x.id for x in k.memcg.by_id.values() if m in x.ancestors()]
    return int(np.isin(k.mem.memcg, ids).sum())


def check_invariants(k) -> None:
    for m in k.memcg.by_id.values():
        assert m.usage == charged_by_frames(k, m), m.cgroup.path  # the page counter is the frames
        kids = [c for c in k.memcg.by_id.values() if c.parent is m]
        assert sum(c.usage for c in kids) <= m.usage
    root = k.cgroups.root
    for cg in k.cgroups.cgroups.values():
        tasks = sum(1 for t in k.tasks.values() if k.cgroups.cgroups.get(t.tg.cgroup, root).is_descendant(cg))
        assert stat.nr_tasks(k, cg) == tasks


# -- the tree ------------------------------------------------------------------------

def test_tree_lists_cgroups_and_their_controllers_files(world) -> None:
    k, fs, pid = world
    top = fs.readdir(CG, ROOT)
    assert "system.slice" in top and "memory.stat" in top and "cpu.pressure" in top
    assert "memory.max" not in top and "cgroup.events" not in top  # NOT_ON_ROOT
    svc = fs.readdir(f"{CG}/system.slice/app.service", ROOT)
    for f in ("cgroup.procs", "cgroup.threads", "cgroup.events", "cgroup.type", "memory.current", "memory.max",
              "memory.high", "memory.stat", "memory.events", "memory.peak", "memory.swap.current", "cpu.stat",
              "cpu.max", "cpu.weight", "cpu.pressure", "io.stat", "io.pressure", "pids.current", "pids.max"):
        assert f in svc, f
    assert not any(f.startswith("cpuset.") for f in svc)  # system.slice does not enable cpuset
    assert read(fs, f"{CG}/system.slice/cgroup.subtree_control") == "cpu io memory pids\n"
    assert read(fs, f"{CG}/system.slice/app.service/cgroup.controllers") == "cpu io memory pids\n"
    assert read(fs, f"{CG}/system.slice/app.service/cgroup.subtree_control") == ""
    assert read(fs, f"{CG}/system.slice/app.service/cgroup.procs") == f"{pid}\n"
    assert read(fs, f"{CG}/system.slice/app.service/cgroup.events") == "populated 1\nfrozen 0\n"
    assert read(fs, f"{CG}/system.slice/cgroup.events") == "populated 1\nfrozen 0\n"
    assert read(fs, f"{CG}/system.slice/app.service/cgroup.type") == "domain\n"
    assert read(fs, f"{CG}/system.slice/app.service/memory.max") == "max\n"
    assert read(fs, f"{CG}/system.slice/app.service/cpu.max") == "max 100000\n"
    assert read(fs, f"{CG}/system.slice/app.service/cpu.weight") == "100\n"
    assert read(fs, f"{CG}/system.slice/app.service/pids.max") == "max\n"
    assert errno_of(fs.getattr, f"{CG}/nope", ROOT) == errno.ENOENT


def test_memory_stat_keys_in_order(world) -> None:
    k, fs, pid = world
    keys = [line.split()[0] for line in read(fs, f"{CG}/system.slice/app.service/memory.stat").splitlines()]
    assert keys[:12] == ["anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables", "percpu",
                         "sock", "vmalloc", "shmem", "zswap", "zswapped"]
    assert keys.index("slab") == keys.index("slab_unreclaimable") + 1
    assert keys.index("pgscan") < keys.index("pgfault") and keys[-1] == "thp_swpout_fallback"
    assert len(keys) == len(set(keys))


def test_cpu_stat_and_pids(world) -> None:
    k, fs, pid = world
    k.run(pid, 1)
    k.advance(2)
    lines = read(fs, f"{CG}/system.slice/app.service/cpu.stat").splitlines()
    assert [x.split()[0] for x in lines] == ["usage_usec", "user_usec", "system_usec", "nice_usec", "nr_periods",
                                            "nr_throttled", "throttled_usec", "nr_bursts", "burst_usec"]
    v = dict(x.split() for x in lines)
    assert int(v["usage_usec"]) == 2_000_000 == int(v["user_usec"]) + int(v["system_usec"])
    assert read(fs, f"{CG}/system.slice/cpu.stat").split("\n")[0] == "usage_usec 2000000"  # the parent has it too
    assert read(fs, f"{CG}/system.slice/app.service/pids.current") == "1\n"
    k.clone_thread(pid)
    assert read(fs, f"{CG}/system.slice/app.service/pids.current") == "2\n"
    assert read(fs, f"{CG}/system.slice/app.service/cgroup.threads").split() == \
        [str(t.pid) for t in k.group(pid).threads]
    check_invariants(k)


# -- charges ----------------------------------------------------------------------------

def test_faults_charge_the_memcg_and_frees_uncharge(world) -> None:
    k, fs, pid = world
    m = k.cgroups.get("/system.slice/app.service").memcg
    before = m.usage
    addr = k.mmap(pid, 8 * MiB)
    k.touch(pid, addr, 8 * MiB)
    assert m.usage - before == 8 * MiB // PAGE_SIZE
    cur = int(read(fs, f"{CG}/system.slice/app.service/memory.current"))
    kstack, pgt = stat.kernel_pages(k, m)
    assert cur == m.usage * PAGE_SIZE + kstack * 1024 + pgt
    st = dict(line.split() for line in read(fs, f"{CG}/system.slice/app.service/memory.stat").splitlines())
    assert int(st["anon"]) >= 8 * MiB and int(st["pgfault"]) >= 8 * MiB // PAGE_SIZE
    check_invariants(k)
    k.munmap(pid, addr, 8 * MiB)
    assert m.usage == before
    assert int(read(fs, f"{CG}/system.slice/app.service/memory.peak")) >= before * PAGE_SIZE + 8 * MiB
    check_invariants(k)


def test_charges_stay_with_the_old_cgroup_on_migration(world) -> None:
    k, fs, pid = world
    C.mkdir(k, "/system.slice/other.service")
    old = k.cgroups.get("/system.slice/app.service").memcg
    new = k.cgroups.get("/system.slice/other.service").memcg
    addr = k.mmap(pid, 4 * MiB)
    k.touch(pid, addr, 4 * MiB)
    charged = old.usage
    C.attach(k, pid, "/system.slice/other.service")
    assert old.usage == charged and new.usage == 0  # v2 does not move charges
    addr2 = k.mmap(pid, 2 * MiB)
    k.touch(pid, addr2, 2 * MiB)
    assert new.usage == 2 * MiB // PAGE_SIZE and old.usage == charged
    k.munmap(pid, addr, 4 * MiB)  # freeing uncharges the memcg the pages were charged to
    assert old.usage == charged - 4 * MiB // PAGE_SIZE
    check_invariants(k)


def test_page_cache_charges_the_reader_and_io_stat(world) -> None:
    k, fs, pid = world
    m = k.cgroups.get("/system.slice/app.service").memcg
    before = m.usage
    k.vfs.file("/srv/data.bin", 4 * MiB)
    k.read(pid, "/srv/data.bin", 1 * MiB, 0)
    assert m.usage - before == MiB // PAGE_SIZE
    st = dict(line.split() for line in read(fs, f"{CG}/system.slice/app.service/memory.stat").splitlines())
    assert int(st["file"]) >= MiB
    io = read(fs, f"{CG}/system.slice/app.service/io.stat")
    assert re.fullmatch(r"254:0 rbytes=1048576 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n", io)
    assert "rbytes=1048576" in read(fs, f"{CG}/system.slice/io.stat")
    C.mkdir(k, "/system.slice/idle.service")
    assert read(fs, f"{CG}/system.slice/idle.service/io.stat") == ""  # no I/O: no device line
    check_invariants(k)


def test_rmdir_hands_charges_to_the_parent(world) -> None:
    k, fs, pid = world
    C.mkdir(k, "/system.slice/tmp.service")
    child = k.spawn(["/usr/bin/tmp"])
    C.attach(k, child, "/system.slice/tmp.service")
    k.vfs.file("/srv/cache.bin", 4 * MiB)
    k.read(child, "/srv/cache.bin", 2 * MiB, 0)  # page cache outlives the process
    k.kill(child)  # (init reaps it)
    assert child not in k.tasks
    slice_ = k.cgroups.get("/system.slice").memcg
    before = slice_.usage
    C.rmdir(k, "/system.slice/tmp.service")
    assert slice_.usage == before and charged_by_frames(k, slice_) == before
    check_invariants(k)
    with pytest.raises(OSError) as e:
        C.rmdir(k, "/system.slice/app.service")
    assert e.value.errno == errno.EBUSY
    with pytest.raises(OSError) as e:
        C.rmdir(k, "/system.slice")
    assert e.value.errno == errno.EBUSY


# -- limits -------------------------------------------------------------------------------

def test_memory_max_kills_in_the_memcg(world) -> None:
    k, fs, pid = world
    other = k.spawn(["/usr/bin/bystander"])
    addr = k.mmap(other, 4 * MiB)
    k.touch(other, addr, 4 * MiB)  # outside the cgroup: must survive
    write(fs, f"{CG}/system.slice/app.service/memory.max", b"32M\n")
    assert read(fs, f"{CG}/system.slice/app.service/memory.max") == f"{32 * MiB}\n"
    a = k.mmap(pid, 64 * MiB)
    with pytest.raises(OSError) as e:
        k.touch(pid, a, 64 * MiB)
    assert e.value.errno == errno.ENOMEM
    assert pid not in k.groups and other in k.groups  # killed (and reaped by init); the other lives
    ev = dict(line.split() for line in read(fs, f"{CG}/system.slice/app.service/memory.events").splitlines())
    assert ev["max"] == "1" and ev["oom"] == "1" and ev["oom_kill"] == "1"
    log = read(fs, "/proc/procsim/oom_log")
    assert "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0," \
           "oom_memcg=/system.slice/app.service,task_memcg=/system.slice/app.service," in log
    assert "Memory cgroup out of memory: Killed process" in log
    assert re.search(r"memory: usage \d+kB, limit 32768kB, failcnt 1", log)
    assert "Memory cgroup stats for /system.slice/app.service:" in log
    # the hierarchical event reaches the parent, the local one stays
    assert "oom_kill 1" in read(fs, f"{CG}/system.slice/memory.events")
    assert "oom_kill 0" in read(fs, f"{CG}/system.slice/memory.events.local")
    check_invariants(k)


def test_lowering_memory_max_reclaims_page_cache(world) -> None:
    k, fs, pid = world
    k.vfs.file("/srv/big.bin", 32 * MiB)
    k.read(pid, "/srv/big.bin", 16 * MiB, 0)
    m = k.cgroups.get("/system.slice/app.service").memcg
    assert m.usage >= 16 * MiB // PAGE_SIZE
    write(fs, f"{CG}/system.slice/app.service/memory.max", b"8M")
    assert m.usage <= 8 * MiB // PAGE_SIZE and not k.group(pid).zombie  # clean cache went, nobody died
    st = dict(line.split() for line in read(fs, f"{CG}/system.slice/app.service/memory.stat").splitlines())
    assert int(st["pgsteal"]) > 0
    check_invariants(k)


def test_reclaim_keeps_the_world_consistent() -> None:
    """Over memory.max with swap and page cache to reclaim: the faults that
    went over finish first, then reclaim drops clean cache and swaps out
    anonymous memory; page tables, swap counts, the page cache and every
    counter still agree (check_world), and nobody is killed."""
    k = boot(mem_bytes=1 << 30, swap_bytes=256 * MiB)
    fs = ProcFS(k)
    C.mkdir(k, "/box")
    pid = k.spawn(["/usr/bin/app"])
    C.attach(k, pid, "/box")
    k.vfs.file("/srv/a.bin", 32 * MiB)
    k.vfs.file("/srv/lib.so", 16 * MiB)
    k.read(pid, "/srv/a.bin", 12 * MiB, 0)        # unmapped page cache
    lib = k.mmap(pid, 16 * MiB, path="/srv/lib.so", flags=0x02)  # MAP_PRIVATE file mapping
    write(fs, f"{CG}/box/memory.max", b"24M")
    k.touch(pid, lib, 8 * MiB, write=False)        # file faults over the cache
    heap = k.mmap(pid, 20 * MiB)
    k.touch(pid, heap, 20 * MiB)                   # anon over memory.max: some goes to swap
    m = k.cgroups.get("/box").memcg
    assert m.usage <= 24 * MiB // PAGE_SIZE and pid in k.groups
    assert k.memcg.swap_usage(m) > 0
    assert int(read(fs, f"{CG}/box/memory.swap.current")) == k.memcg.swap_usage(m) * PAGE_SIZE
    assert "max 0" not in read(fs, f"{CG}/box/memory.events")
    check_world(k)
    check_invariants(k)


def test_memory_high_throttles_into_memory_pressure(world) -> None:
    k, fs, pid = world
    write(fs, f"{CG}/system.slice/app.service/memory.high", b"4M")
    a = k.mmap(pid, 16 * MiB)
    k.touch(pid, a, 16 * MiB)  # anon, no swap: nothing to reclaim, so the task is throttled
    ev = dict(line.split() for line in read(fs, f"{CG}/system.slice/app.service/memory.events").splitlines())
    assert int(ev["high"]) > 0 and ev["oom_kill"] == "0"
    k.advance(3)
    p = read(fs, f"{CG}/system.slice/app.service/memory.pressure")
    total = int(re.search(r"^some .* total=(\d+)$", p, re.M).group(1))
    assert total > 0
    assert int(re.search(r"total=(\d+)", read(fs, "/proc/pressure/memory")).group(1)) > 0


def test_pids_max_fails_fork_eagain(world) -> None:
    k, fs, pid = world
    write(fs, f"{CG}/system.slice/app.service/pids.max", b"2")
    k.fork(pid)
    with pytest.raises(OSError) as e:
        k.fork(pid)
    assert e.value.errno == errno.EAGAIN
    with pytest.raises(OSError) as e:
        k.clone_thread(pid)
    assert e.value.errno == errno.EAGAIN
    assert read(fs, f"{CG}/system.slice/app.service/pids.events") == "max 2\n"
    assert read(fs, f"{CG}/system.slice/app.service/pids.current") == "2\n"
    write(fs, f"{CG}/system.slice/app.service/pids.max", b"max")
    k.fork(pid)
    check_invariants(k)


# -- writes and their errnos -----------------------------------------------------------------

@pytest.mark.parametrize("file,data,err", [
    ("memory.max", b"lots", errno.EINVAL), ("memory.max", b"12Q", errno.EINVAL),
    ("memory.high", b"-1", errno.EINVAL), ("cpu.max", b"", errno.EINVAL), ("cpu.max", b"max 100", errno.EINVAL),
    ("cpu.max", b"500 100000", errno.EINVAL), ("cpu.max", b"abc 100000", errno.EINVAL),
    ("cpu.weight", b"0", errno.ERANGE), ("cpu.weight", b"10001", errno.ERANGE), ("cpu.weight", b"x", errno.EINVAL),
    ("pids.max", b"-1", errno.EINVAL), ("pids.max", b"4194305", errno.EINVAL), ("pids.max", b"many", errno.EINVAL),
    ("cgroup.procs", b"abc", errno.EINVAL), ("cgroup.procs", b"99999", errno.ESRCH),
    ("cgroup.procs", b"2", errno.EINVAL),                       # kthreadd may not move
    ("cgroup.threads", b"1", errno.EOPNOTSUPP),                 # not a threaded subtree
    ("cgroup.subtree_control", b"+foo", errno.EINVAL), ("cgroup.subtree_control", b"memory", errno.EINVAL),
    ("cgroup.subtree_control", b"+cpuset", errno.ENOENT),       # not in its cgroup.controllers
    ("cgroup.subtree_control", b"+memory", errno.EBUSY),        # it has a process
])
def test_bad_writes_change_nothing(world, file, data, err) -> None:
    k, fs, pid = world
    path = f"{CG}/system.slice/app.service/{file}"
    before = read(fs, path)
    gen_files = {f: read(fs, f"{CG}/system.slice/app.service/{f}") for f in ("cgroup.procs", "memory.max",
                                                                              "cpu.max", "pids.max")}
    assert errno_of(write, fs, path, data) == err
    assert read(fs, path) == before
    assert gen_files == {f: read(fs, f"{CG}/system.slice/app.service/{f}") for f in gen_files}


def test_good_writes(world) -> None:
    k, fs, pid = world
    d = f"{CG}/system.slice/app.service"
    for file, data, back in (("memory.max", b"1G", f"{1 << 30}\n"), ("memory.max", b"max\n", "max\n"),
                             ("memory.high", b"0x100000", f"{MiB}\n"), ("memory.max", b"4097", "4096\n"),
                             ("cpu.max", b"50000 100000", "50000 100000\n"), ("cpu.max", b"max", "max 100000\n"),
                             ("cpu.max", b"20000", "20000 100000\n"), ("cpu.weight", b"250\n", "250\n"),
                             ("pids.max", b"100", "100\n")):
        assert write(fs, f"{d}/{file}", data) == len(data)
        assert read(fs, f"{d}/{file}") == back, (file, data)
    # a process moves by its pid; the "no internal processes" rule at the slice
    C.mkdir(k, "/system.slice/b.service")
    write(fs, f"{CG}/system.slice/b.service/cgroup.procs", f"{pid}\n".encode())
    assert read(fs, f"{CG}/system.slice/b.service/cgroup.procs") == f"{pid}\n"
    assert read(fs, f"{d}/cgroup.procs") == ""
    assert read(fs, f"/proc/{pid}/cgroup") == "0::/system.slice/b.service\n"
    assert errno_of(write, fs, f"{CG}/system.slice/cgroup.procs", f"{pid}".encode()) == errno.EBUSY
    # subtree_control: enable and disable in one write; EBUSY to disable what a child uses
    write(fs, f"{d}/cgroup.subtree_control", b"+memory +pids")
    assert read(fs, f"{d}/cgroup.subtree_control") == "memory pids\n"
    C.mkdir(k, "/system.slice/app.service/sub")
    assert "memory.max" in fs.readdir(f"{d}/sub", ROOT) and "cpu.max" not in fs.readdir(f"{d}/sub", ROOT)
    write(fs, f"{d}/cgroup.subtree_control", b"-memory +cpu")
    assert read(fs, f"{d}/cgroup.subtree_control") == "cpu pids\n"
    assert "memory.max" not in fs.readdir(f"{d}/sub", ROOT) and "cpu.max" in fs.readdir(f"{d}/sub", ROOT)
    write(fs, f"{d}/sub/cgroup.subtree_control", b"+cpu")
    assert errno_of(write, fs, f"{d}/cgroup.subtree_control", b"-cpu") == errno.EBUSY
    check_invariants(k)


def test_read_only_files_refuse_an_open_for_writing(world) -> None:
    k, fs, pid = world
    assert errno_of(fs.open, f"{CG}/system.slice/app.service/memory.current", os.O_WRONLY, ROOT) == errno.EACCES
    assert errno_of(fs.open, f"{CG}/cgroup.stat", os.O_WRONLY, ROOT) == errno.EACCES


def test_commands(world) -> None:
    k, fs, pid = world
    execute(k, "cgroup_write", {"path": "/system.slice/app.service", "file": "memory.max", "value": "64M"})
    st = execute(k, "cgroup_stat", {"path": "/system.slice/app.service"})
    assert st["memory"]["max"] == 64 * MiB // PAGE_SIZE and st["procs"] == [pid] and st["pids_current"] == 1
    with pytest.raises(CommandError) as e:
        execute(k, "cgroup_write", {"path": "/system.slice/app.service", "file": "memory.max", "value": "x"})
    assert e.value.errno == errno.EINVAL
    with pytest.raises(CommandError) as e:
        execute(k, "cgroup_rmdir", {"path": "/system.slice/app.service"})
    assert e.value.errno == errno.EBUSY
    execute(k, "cgroup_mkdir", {"path": "/system.slice/x.service"})
    execute(k, "cgroup_rmdir", {"path": "/system.slice/x.service"})
    assert "/system.slice/x.service" not in execute(k, "cgroups", {})


def test_proc_cgroups(world) -> None:
    k, fs, pid = world
    lines = read(fs, "/proc/cgroups").splitlines()
    assert lines[0] == "#subsys_name\thierarchy\tnum_cgroups\tenabled"
    rows = {r.split("\t")[0]: r.split("\t")[1:] for r in lines[1:]}
    assert rows["memory"] == ["0", str(len(k.cgroups.cgroups)), "1"]  # /, the slice and its service
    assert rows["cpuset"] == ["0", "2", "1"]  # the root and system.slice (the root enables it)
    assert rows["cpuacct"] == ["0", "1", "1"]


# -- host comparisons ---------------------------------------------------------------------------

@requires_host(kernel="6.18", files=("/proc/cgroups",))
def test_proc_cgroups_header_as_host(world) -> None:
    k, fs, pid = world
    with open("/proc/cgroups") as f:
        host = f.read().splitlines()
    ours = read(fs, "/proc/cgroups").splitlines()
    assert ours[0] == host[0]
    host_names = [line.split("\t")[0] for line in host[1:]]
    ours_names = [line.split("\t")[0] for line in ours[1:]]
    assert [n for n in ours_names if n in host_names] == host_names  # the host's rows, in its order


@requires_host(kernel="6.18", files=("/sys/fs/cgroup/unified/cpu.stat",))
def test_root_files_shaped_as_host(world) -> None:
    k, fs, pid = world
    host = "/sys/fs/cgroup/unified"
    with open(f"{host}/cpu.stat") as f:
        hkeys = [line.split()[0] for line in f]
    assert [line.split()[0] for line in read(fs, f"{CG}/cpu.stat").splitlines()] == hkeys
    for name in ("cgroup.max.depth", "cgroup.max.descendants", "cgroup.pressure"):
        with open(f"{host}/{name}") as f:
            assert read(fs, f"{CG}/{name}") == f.read()
    with open(f"{host}/cgroup.stat") as f:
        h = [line.split()[0] for line in f]
    o = [line.split()[0] for line in read(fs, f"{CG}/cgroup.stat").splitlines()]
    assert o[0] == h[0] == "nr_descendants" and "nr_dying_descendants" in o
    # every controller line has its dying twin, after nr_dying_descendants, in the same order
    i, j = o.index("nr_dying_descendants"), h.index("nr_dying_descendants")
    assert [x.replace("nr_subsys_", "") for x in o[1:i]] == [x.replace("nr_dying_subsys_", "") for x in o[i + 1:]]
    assert [x.replace("nr_subsys_", "") for x in h[1:j]] == [x.replace("nr_dying_subsys_", "") for x in h[j + 1:]]
    with open(f"{host}/cgroup.subtree_control", "rb") as f:
        if f.read() == b"":  # an empty mask prints nothing, not a newline
            C.mkdir(k, "/empty")
            assert read(fs, f"{CG}/empty/cgroup.subtree_control") == ""


# -- the example ------------------------------------------------------------------------------------

def test_container_host_example() -> None:
    k = scenario.load("examples/container-host.toml")
    fs = ProcFS(k)
    leaky = f"{CG}/machine.slice/leaky.scope"
    assert read(fs, f"{leaky}/memory.max") == f"{160 * MiB}\n"
    assert read(fs, f"{CG}/machine.slice/cgroup.subtree_control") == "cpu io memory pids\n"
    mem0 = int(re.search(r"total=(\d+)", read(fs, "/proc/pressure/memory")).group(1))
    k.advance(16)
    ev = dict(line.split() for line in read(fs, f"{leaky}/memory.events").splitlines())
    assert ev["oom_kill"] == "1" and ev["max"] >= "1"
    assert read(fs, f"{leaky}/cgroup.procs") == "" and read(fs, f"{leaky}/cgroup.events").startswith("populated 0")
    assert "constraint=CONSTRAINT_MEMCG" in read(fs, "/proc/procsim/oom_log")
    assert int(re.search(r"total=(\d+)", read(fs, "/proc/pressure/memory")).group(1)) > mem0
    cache = f"{CG}/system.slice/cache.service"
    assert int(read(fs, f"{cache}/memory.current")) <= 70 * MiB  # held near memory.high by reclaim
    assert int(dict(x.split() for x in read(fs, f"{cache}/memory.events").splitlines())["high"]) > 0
    assert "oom_kill 0" in read(fs, f"{CG}/machine.slice/steady.scope/memory.events")
    check_invariants(k)
