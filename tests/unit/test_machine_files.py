"""The rest of /proc and /sys that monitoring reads: buddyinfo, zoneinfo,
pagetypeinfo, slabinfo, softirqs, schedstat, the vm and kernel.random
sysctls, the CPU and node sysfs and the small build/device files. Their
values against the model (every number agrees with the other files that
show it) and their layout against this host's 6.18 files where it has them."""

from __future__ import annotations

import errno
import os
import re

import pytest

from hostinfo import online_cpus, requires_host
from invariants import boot
from procfs_helpers import NOBODY, ROOT, errno_of, read_all
from procsim.errors import KernelError
from procsim.procfs.tree import ProcFS

MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x01, 0x20, 0x4000
PROT_RW = 3
HOST_LAYOUT = dict(kernel="6.18", arch="x86_64")


def text(fs: ProcFS, path: str, caller=ROOT) -> str:
    return read_all(fs, path, caller).decode()


def write(fs: ProcFS, path: str, data: bytes) -> int:
    return fs.open(path, os.O_WRONLY, ROOT).write(data, 0)


def meminfo(fs: ProcFS) -> dict[str, int]:
    return {l.split(":")[0]: int(l.split()[1]) for l in text(fs, "/proc/meminfo").splitlines()}


def digits_masked(s: str) -> str:
    return re.sub(r"\d+", "N", s)


@pytest.fixture
def big() -> ProcFS:
    """A machine with all three zones and the host's CPU count, some
    processes and freed memory (so free frames are not one run)."""
    k = boot(nr_cpus=online_cpus(), mem_bytes=16 << 30)
    pids = [k.spawn(["/usr/bin/python3"], uid=1000, gid=1000) for _ in range(3)]
    for p in pids:
        a = k.mmap(p, 64 << 20)
        k.touch(p, a, 64 << 20)
    k.munmap(pids[0], a, 4 << 20)          # the last process's: frees 1024 frames
    k.kill(pids[1])
    return ProcFS(k)


def buddy(fs: ProcFS) -> dict[str, list[int]]:
    return {l.split()[3]: [int(x) for x in l.split()[4:]] for l in text(fs, "/proc/buddyinfo").splitlines()}


def zoneinfo_free(fs: ProcFS) -> dict[str, int]:
    out, zone = {}, None
    for line in text(fs, "/proc/zoneinfo").splitlines():
        if line.startswith("Node"):
            zone = line.split()[-1]
        elif line.startswith("  pages free"):
            out[zone] = int(line.split()[-1])
    return out


# -- buddy allocator -------------------------------------------------------------------------


def test_buddyinfo_sums_are_zoneinfo_free_and_memfree(big):
    b = buddy(big)
    assert list(b) == ["DMA", "DMA32", "Normal"]
    free = zoneinfo_free(big)
    assert free["Movable"] == free["Device"] == 0
    for zone, counts in b.items():
        assert len(counts) == 11
        assert sum(c << o for o, c in enumerate(counts)) == free[zone]
    assert sum(free.values()) * 4 == meminfo(big)["MemFree"]
    vm = {l.split()[0]: int(l.split()[1]) for l in text(big, "/proc/vmstat").splitlines()}
    assert vm["nr_free_pages"] == sum(free.values())
    blocks = sum(c << o for counts in b.values() for o, c in enumerate(counts) if o >= 9)
    assert vm["nr_free_pages_blocks"] == blocks


def test_lower_zones_stay_free_until_normal_is_used(big):
    """The zonelist tries Normal first: DMA and DMA32 are whole."""
    z = {}
    zone = None
    for line in text(big, "/proc/zoneinfo").splitlines():
        if line.startswith("Node"):
            zone = line.split()[-1]
        elif line.strip().startswith(("managed", "pages free")):
            z.setdefault(zone, {})[line.split()[-2]] = int(line.split()[-1])
    assert z["DMA"]["free"] == z["DMA"]["managed"] and z["DMA32"]["free"] == z["DMA32"]["managed"]
    assert z["Normal"]["free"] < z["Normal"]["managed"]
    assert buddy(big)["DMA"] == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3]  # 3840 pages, as on the host


def test_freed_frames_merge_into_buddies():
    from procsim.mm.buddy import free_orders
    k = boot()
    before, nr_before = free_orders(k.mem), k.mem.nr_free
    p = k.spawn(["/bin/sh"])
    a = k.mmap(p, 8 << 20)
    k.touch(p, a, 8 << 20)
    k.munmap(p, a, 8 << 20)
    after = free_orders(k.mem)
    assert sum(c << o for o, c in enumerate(after)) == k.mem.nr_free
    assert sum(c << o for o, c in enumerate(before)) == nr_before
    assert after[10] >= 1  # 8 MiB freed in one piece merges back to order-10 blocks


def test_take_pages_splits_the_last_block():
    from procsim.mm.buddy import take_pages
    pool = [0] * 10 + [2]
    got = take_pages(pool, 1025)
    assert sum(c << o for o, c in enumerate(got)) == 1025
    assert sum(c << o for o, c in enumerate(pool)) == 2048 - 1025
    assert got[10] == 1 and got[0] == 1


def test_pagetypeinfo_sums_are_buddyinfo(big):
    lines = text(big, "/proc/pagetypeinfo").splitlines()
    assert lines[:3] == ["Page block order: 9", "Pages per block:  512", ""]
    per_zone: dict[str, list[int]] = {}
    for l in lines:
        if ", type " in l:
            f = l.split()
            zone = f[3].rstrip(",")
            counts = [int(x) for x in f[6:]]
            per_zone[zone] = [a + b for a, b in zip(per_zone.get(zone, [0] * 11), counts)]
    assert per_zone == buddy(big)
    blocks = {l.split()[3]: sum(map(int, l.split()[4:])) for l in lines if l.startswith("Node 0, zone")}
    assert blocks["DMA"] == 8  # 4095 spanned pages: 8 pageblocks


def test_pagetypeinfo_is_root_only(big):
    """0400 root: the mount's default_permissions refuse other readers."""
    a = big.getattr("/proc/pagetypeinfo", NOBODY)
    assert (a.mode & 0o777, a.uid, a.gid) == (0o400, 0, 0)


@requires_host(files=("/proc/zoneinfo", "/proc/buddyinfo", "/proc/pagetypeinfo"), **HOST_LAYOUT)
def test_zone_files_layout_as_host(big):
    """Same lines, labels and spacing as this host's (numbers aside), given a
    machine with its CPU count and all three zones."""
    with open("/proc/zoneinfo") as f:
        host = f.read()
    assert digits_masked(text(big, "/proc/zoneinfo")) == digits_masked(host)
    for name in ("buddyinfo", "pagetypeinfo"):
        with open(f"/proc/{name}") as f:
            h = f.read()
        ours = text(big, f"/proc/{name}")
        # spacing is fixed-width: compare the layout with every number as N
        assert re.sub(r" +", " ", digits_masked(ours)) == re.sub(r" +", " ", digits_masked(h))
        # "%6lu " per order: the same columns as the host's wherever its counts fit six digits
        for a, b in zip(ours.splitlines(), h.splitlines()):
            if all(len(x) <= 6 for x in re.findall(r"\d+", b)):
                assert len(a) == len(b), (a, b)


def test_zoneinfo_node_stats_are_vmstat(big):
    vm = {l.split()[0]: int(l.split()[1]) for l in text(big, "/proc/vmstat").splitlines()}
    z = text(big, "/proc/zoneinfo")
    node = z.split("  per-node stats\n", 1)[1].split("  pages free", 1)[0]
    for line in node.splitlines():
        key, v = line.split()
        assert vm[key] == int(v), key


# -- vm sysctls ----------------------------------------------------------------------------


def test_min_free_kbytes_moves_the_watermarks(big):
    def mins() -> list[int]:
        return [int(l.split()[-1]) for l in text(big, "/proc/zoneinfo").splitlines() if l.startswith("        min")]
    boot_kb = int(text(big, "/proc/sys/vm/min_free_kbytes"))
    assert sum(mins()[:3]) * 4 <= boot_kb and boot_kb - sum(mins()[:3]) * 4 < 16
    avail = meminfo(big)["MemAvailable"]
    write(big, "/proc/sys/vm/min_free_kbytes", b"1048576\n")
    assert text(big, "/proc/sys/vm/min_free_kbytes") == "1048576\n"
    assert 1048576 - 16 < sum(mins()[:3]) * 4 <= 1048576
    assert meminfo(big)["MemAvailable"] < avail  # the reserves grew
    assert errno_of(write, big, "/proc/sys/vm/min_free_kbytes", b"-1\n") == errno.EINVAL


def test_overcommit_ratio_and_kbytes_set_commit_limit(big):
    mi = meminfo(big)
    write(big, "/proc/sys/vm/overcommit_ratio", b"100\n")
    assert meminfo(big)["CommitLimit"] == mi["MemTotal"] - mi["Hugetlb"] + mi["SwapTotal"]
    write(big, "/proc/sys/vm/overcommit_kbytes", b"1048576\n")
    assert meminfo(big)["CommitLimit"] == 1048576 + mi["SwapTotal"]
    assert text(big, "/proc/sys/vm/overcommit_ratio") == "0\n"  # each clears the other
    write(big, "/proc/sys/vm/overcommit_ratio", b"50\n")
    assert text(big, "/proc/sys/vm/overcommit_kbytes") == "0\n"


def test_overcommit_policies_in_mmap(big):
    k = big.kernel
    p = k.spawn(["/bin/sh"], uid=1000, gid=1000)
    huge = k.config.mem_bytes * 2
    # GUESS: more than RAM + swap in one go is refused
    with pytest.raises(Exception) as e:
        k.mmap(p, huge)
    assert e.value.errno == errno.ENOMEM
    k.mmap(p, huge, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)  # not accounted
    # NEVER: Committed_AS stays under CommitLimit less the admin reserve
    write(big, "/proc/sys/vm/overcommit_memory", b"2\n")
    mi = meminfo(big)
    room = (mi["CommitLimit"] - mi["Committed_AS"]) * 1024
    with pytest.raises(Exception) as e:
        k.mmap(p, room)
    assert e.value.errno == errno.ENOMEM
    assert meminfo(big)["Committed_AS"] == mi["Committed_AS"]  # nothing changed
    k.mmap(p, room // 2)
    k.mmap(p, 1 << 30, prot=1)  # read-only private: never accounted
    assert errno_of(write, big, "/proc/sys/vm/overcommit_memory", b"3\n") == errno.EINVAL
    assert text(big, "/proc/sys/vm/overcommit_memory") == "2\n"
    write(big, "/proc/sys/vm/overcommit_memory", b"1\n")
    k.mmap(p, huge)  # ALWAYS


@pytest.mark.parametrize("name, bad", [("swappiness", b"201"), ("swappiness", b"-1"), ("dirty_ratio", b"101"),
                                       ("swappiness", b"abc"), ("page-cluster", b"32"), ("swappiness", b"")])
def test_vm_sysctl_bad_values_change_nothing(big, name, bad):
    before = text(big, f"/proc/sys/vm/{name}")
    if bad:
        assert errno_of(write, big, f"/proc/sys/vm/{name}", bad + b"\n") == errno.EINVAL
    assert text(big, f"/proc/sys/vm/{name}") == before


def test_vm_sysctl_defaults_and_dirty_ratio(big):
    want = {"swappiness": 60, "overcommit_memory": 0, "overcommit_ratio": 50, "dirty_ratio": 20,
            "dirty_background_ratio": 10, "dirty_expire_centisecs": 3000, "dirty_writeback_centisecs": 500,
            "vfs_cache_pressure": 100, "max_map_count": 65530, "page-cluster": 3, "overcommit_kbytes": 0}
    for name, v in want.items():
        assert text(big, f"/proc/sys/vm/{name}") == f"{v}\n", name
        assert big.getattr(f"/proc/sys/vm/{name}", ROOT).mode & 0o777 == 0o644
    vm = lambda: {l.split()[0]: int(l.split()[1]) for l in text(big, "/proc/vmstat").splitlines()}  # noqa: E731
    t = vm()["nr_dirty_threshold"]
    write(big, "/proc/sys/vm/dirty_ratio", b"40")
    assert vm()["nr_dirty_threshold"] in (2 * t, 2 * t + 1)
    write(big, "/proc/sys/vm/swappiness", b"10")
    assert big.kernel.mem.sysctl.swappiness == 10


# -- kernel.random, kernel strings ---------------------------------------------------------


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n")


def test_random_sysctls(fs):
    a, b = text(fs, "/proc/sys/kernel/random/uuid"), text(fs, "/proc/sys/kernel/random/uuid")
    assert UUID.fullmatch(a) and UUID.fullmatch(b) and a != b  # a new one per read
    boot_id = text(fs, "/proc/sys/kernel/random/boot_id")
    assert UUID.fullmatch(boot_id) and text(fs, "/proc/sys/kernel/random/boot_id") == boot_id
    assert text(fs, "/proc/sys/kernel/random/entropy_avail") == "256\n"
    assert text(fs, "/proc/sys/kernel/random/poolsize") == "256\n"
    assert text(fs, "/proc/sys/kernel/random/urandom_min_reseed_secs") == "60\n"
    assert text(fs, "/proc/sys/kernel/random/write_wakeup_threshold") == "256\n"
    for name in ("uuid", "boot_id", "entropy_avail", "poolsize"):
        assert fs.getattr(f"/proc/sys/kernel/random/{name}", ROOT).mode & 0o777 == 0o444
        assert errno_of(fs.open, f"/proc/sys/kernel/random/{name}", os.O_WRONLY, ROOT) == errno.EACCES
    # the same seed, the same ids
    other = ProcFS(boot())
    assert text(other, "/proc/sys/kernel/random/boot_id") == boot_id
    assert text(other, "/proc/sys/kernel/random/uuid") == a


def test_kernel_ostype_and_version(fs):
    assert text(fs, "/proc/sys/kernel/ostype") == "Linux\n"
    v = text(fs, "/proc/sys/kernel/version")
    assert v.startswith("#1 SMP PREEMPT_DYNAMIC ") and text(fs, "/proc/version").endswith(v)


# -- slab -------------------------------------------------------------------------------


def test_slabinfo_totals_are_meminfo_slab(big):
    from procsim.mm.slab import slab_caches
    lines = text(big, "/proc/slabinfo").splitlines()
    assert lines[0] == "slabinfo - version: 2.1"
    recl = {c.name: c.reclaimable for c in slab_caches(big.kernel)}
    pages = {True: 0, False: 0}
    for l in lines[2:]:
        f = l.split()
        assert int(f[1]) <= int(f[2]) and int(f[2]) == int(f[13]) * int(f[4])
        pages[recl[f[0]]] += int(f[14]) * int(f[5])
    mi = meminfo(big)
    assert pages[True] * 4 == mi["SReclaimable"] and pages[False] * 4 == mi["SUnreclaim"]
    tasks = next(l.split() for l in lines if l.startswith("task_struct"))
    assert int(tasks[1]) == big.kernel.nr_threads() + big.kernel.config.nr_cpus
    a = big.getattr("/proc/slabinfo", NOBODY)
    assert (a.mode & 0o777, a.uid) == (0o400, 0)


@requires_host(files=("/proc/slabinfo",))
def test_slabinfo_header_as_host(big):
    with open("/proc/slabinfo") as f:
        host = f.read().splitlines()
    ours = text(big, "/proc/slabinfo").splitlines()
    assert ours[:2] == host[:2]
    # one line per cache: the name in 17 columns, then the fixed-width fields
    field = re.compile(r"\S+ +\d+ +\d+ +\d+ +\d+ +\d+ : tunables +0 +0 +0 : slabdata +\d+ +\d+ +0")
    assert all(field.fullmatch(l) for l in ours[2:]) and all(field.fullmatch(l) for l in host[2:])
    by_len = {len(l.split()[0]) < 17: l for l in host[2:]}
    ours_short = next(l for l in ours[2:] if len(l.split()[0]) < 17)
    assert len(ours_short) == len(by_len[True]) or len(ours_short) >= 100


# -- softirqs, schedstat -------------------------------------------------------------------


def test_softirqs_columns_sum_to_stat(big):
    big.kernel.advance(30)
    rows = text(big, "/proc/softirqs").splitlines()
    ncpu = big.kernel.config.nr_cpus
    assert rows[0] == " " * 20 + "".join(f"CPU{i:<8}" for i in range(ncpu))
    names = [r.split(":")[0].strip() for r in rows[1:]]
    assert names == ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"]
    sums = [sum(map(int, r.split(":")[1].split())) for r in rows[1:]]
    soft = next(l for l in text(big, "/proc/stat").splitlines() if l.startswith("softirq")).split()[1:]
    assert [int(x) for x in soft] == [sum(sums)] + sums
    assert sums[1] > 0 and sums[7] > 0


@requires_host(files=("/proc/softirqs",), **HOST_LAYOUT)
def test_softirqs_layout_as_host(big):
    with open("/proc/softirqs") as f:
        host = f.read()
    fields = lambda t: re.sub(r" +\d+", " N", t)  # noqa: E731  (fixed-width columns)
    assert fields(text(big, "/proc/softirqs")) == fields(host)
    assert [len(l) for l in text(big, "/proc/softirqs").splitlines()] == [len(l) for l in host.splitlines()]


def test_schedstat_version_17(big):
    k = big.kernel
    p = k.spawn(["/bin/sh"])
    k.advance(5)
    lines = text(big, "/proc/schedstat").splitlines()
    assert lines[0] == "version 17"
    assert lines[1] == f"timestamp {(1 << 32) - 300 * k.config.hz + k.jiffies}"
    cpus = [l.split() for l in lines if l.startswith("cpu")]
    doms = [l.split() for l in lines if l.startswith("domain")]
    assert len(cpus) == k.config.nr_cpus and all(len(c) == 10 and c[2] == "0" for c in cpus)
    if k.config.nr_cpus > 1:
        assert len(doms) == len(cpus) and all(d[1] == "MC" and len(d) == 3 + 45 for d in doms)
    for c, cpu in zip(cpus, k.sched.cpus):
        assert int(c[7]) == cpu.user + cpu.nice + cpu.system + cpu.irq + cpu.softirq  # rq_cpu_time, ns
    assert p


# -- sysfs: CPUs and the node ------------------------------------------------------------


def test_cpu_sysfs_follows_nr_cpus():
    fs = ProcFS(boot(nr_cpus=6))
    names = fs.readdir("/sys/devices/system/cpu", ROOT)
    assert [n for n in names if re.fullmatch(r"cpu\d+", n)] == [f"cpu{i}" for i in range(6)]
    for f in ("online", "possible", "present"):
        assert text(fs, f"/sys/devices/system/cpu/{f}") == "0-5\n"
    assert text(fs, "/sys/devices/system/cpu/offline") == "\n"
    assert text(fs, "/sys/devices/system/cpu/cpu5/online") == "1\n"
    assert errno_of(fs.open, "/sys/devices/system/cpu/cpu0/online", os.O_RDONLY, ROOT) == errno.ENOENT  # x86
    assert errno_of(fs.open, "/sys/devices/system/cpu/cpu6/online", os.O_RDONLY, ROOT) == errno.ENOENT
    assert text(fs, "/sys/devices/system/cpu/cpu4/topology/package_cpus_list") == "0-5\n"
    assert text(fs, "/sys/devices/system/cpu/cpu4/topology/package_cpus") == "3f\n"
    assert text(fs, "/sys/devices/system/node/node0/cpulist") == "0-5\n"


def test_smt_topology():
    fs = ProcFS(boot(nr_cpus=4, cpu="intel-xeon"))
    assert text(fs, "/sys/devices/system/cpu/cpu3/topology/thread_siblings_list") == "2-3\n"
    assert text(fs, "/sys/devices/system/cpu/cpu3/topology/core_id") == "1\n"
    cpuinfo = text(fs, "/proc/cpuinfo").split("\n\n")[3]
    assert "core id\t\t: 1" in cpuinfo


@requires_host(files=("/sys/devices/system/cpu/cpu1/topology/core_id",), **HOST_LAYOUT)
def test_cpu_topology_as_host():
    """The reference VM: one package, no SMT: the same files and values."""
    n = online_cpus()
    fs = ProcFS(boot(nr_cpus=n))
    d = f"/sys/devices/system/cpu/cpu{n - 1}/topology"
    for name in sorted(os.listdir(d)):
        with open(f"{d}/{name}") as f:
            assert text(fs, f"{d}/{name}") == f.read(), name


def test_node_meminfo_is_meminfo(big):
    node = {l.split()[2].rstrip(":"): int(l.split()[3]) for l in text(big, "/sys/devices/system/node/node0/meminfo").splitlines()}
    mi = meminfo(big)
    for key in ("MemTotal", "MemFree", "Active(anon)", "Inactive(file)", "AnonPages", "Slab", "KernelStack"):
        assert node[key] == mi[key], key
    assert node["MemUsed"] == mi["MemTotal"] - mi["MemFree"]
    assert node["FilePages"] == mi["Cached"] + mi["Buffers"] + mi["SwapCached"]
    numa = dict(l.split() for l in text(big, "/sys/devices/system/node/node0/numastat").splitlines())
    vm = dict(l.split() for l in text(big, "/proc/vmstat").splitlines())
    assert numa["numa_hit"] == numa["local_node"] == vm["numa_hit"]


@requires_host(files=("/sys/devices/system/node/node0/meminfo",), **HOST_LAYOUT)
def test_node_meminfo_layout_as_host(big):
    with open("/sys/devices/system/node/node0/meminfo") as f:
        host = f.read()
    ours = text(big, "/sys/devices/system/node/node0/meminfo")
    assert [l.split()[2] for l in ours.splitlines()] == [l.split()[2] for l in host.splitlines()]
    # labels padded to one column, numbers right-aligned in 8 (hugepage counts in 5)
    assert [l[:23] for l in ours.splitlines()] == [l[:23] for l in host.splitlines()]
    assert all(len(l) == 34 for l in ours.splitlines() if l.endswith(" kB") and len(l.split()[3]) <= 8)


# -- small files ----------------------------------------------------------------------------


@requires_host(files=("/proc/consoles", "/proc/key-users", "/proc/sysvipc/shm"), **HOST_LAYOUT)
def test_small_files_as_host(fs):
    for name in ("sysvipc/shm", "sysvipc/sem", "sysvipc/msg"):
        with open(f"/proc/{name}") as f:
            assert text(fs, f"/proc/{name}") == f.readline(), name  # the header: no objects on an idle host
    with open("/proc/consoles") as f:
        assert text(fs, "/proc/consoles") == f.read()
    with open("/proc/devices") as f:
        host = f.read()
    assert text(fs, "/proc/devices") == host  # the reference VM's drivers
    with open("/proc/misc") as f:
        assert text(fs, "/proc/misc") == f.read()


def test_small_files_modes(fs):
    for name in ("cmdline", "consoles", "devices", "misc", "key-users", "locks", "softirqs", "zoneinfo",
                 "buddyinfo", "schedstat"):
        assert fs.getattr(f"/proc/{name}", ROOT).mode & 0o777 == 0o444, name
    for name in ("slabinfo", "pagetypeinfo"):
        assert fs.getattr(f"/proc/{name}", ROOT).mode & 0o777 == 0o400, name
    assert text(fs, "/proc/locks") == ""


# -- kallsyms, vmallocinfo, crypto ---------------------------------------------------------


def test_kallsyms_addresses_follow_kptr_restrict():
    from procsim.procfs.context import Caller
    fs = ProcFS(boot())
    syslog = Caller(os.getpid(), 0, 0, caps=1 << 34 | 1 << 21)
    plain_root = Caller(os.getpid(), 0, 0, caps=0)
    user = Caller(os.getpid(), 1000, 1000, caps=0)
    shown = text(fs, "/proc/kallsyms", syslog).splitlines()
    assert shown[0].split()[0] == "ffffffff81000000" and all(re.fullmatch(r"[0-9a-f]{16} [Tt] [\w.]+", l) for l in shown)
    addrs = [int(l.split()[0], 16) for l in shown]
    assert addrs == sorted(addrs) and len({l.split()[2] for l in shown}) == len(shown)
    # perf_event_paranoid 2 (Debian): only CAP_SYSLOG sees addresses
    assert all(l.startswith("0" * 16 + " ") for l in text(fs, "/proc/kallsyms", user).splitlines())
    assert all(l.startswith("0" * 16 + " ") for l in text(fs, "/proc/kallsyms", plain_root).splitlines())
    fs.open("/proc/sys/kernel/perf_event_paranoid", os.O_WRONLY, syslog).write(b"1", 0)
    assert text(fs, "/proc/kallsyms", user).splitlines() == shown  # kptr_restrict 0: everyone
    fs.open("/proc/sys/kernel/kptr_restrict", os.O_WRONLY, syslog).write(b"2", 0)
    assert all(l.startswith("0" * 16) for l in text(fs, "/proc/kallsyms", syslog).splitlines())
    h = fs.open("/proc/sys/kernel/kptr_restrict", os.O_WRONLY, plain_root)
    assert errno_of(h.write, b"0", 0) == errno.EPERM  # proc_dointvec_minmax_sysadmin
    h = fs.open("/proc/sys/kernel/kptr_restrict", os.O_WRONLY, syslog)
    assert errno_of(h.write, b"3", 0) == errno.EINVAL
    assert text(fs, "/proc/sys/kernel/kptr_restrict") == "2\n"


def test_kallsyms_names_the_wait_channels():
    from procsim import sched_wait
    fs = ProcFS(boot())
    names = {l.split()[2] for l in text(fs, "/proc/kallsyms").splitlines()}
    frames = {f.split("+")[0] for w in vars(sched_wait).values() if isinstance(w, sched_wait.Wait) for f in w.frames}
    assert frames and frames - {"native_safe_halt"} <= names


def test_vmallocinfo_pages_are_vmalloc_used(big):
    lines = text(big, "/proc/vmallocinfo").splitlines()
    pat = re.compile(r"0x[0-9a-f]{16}-0x[0-9a-f]{16} +(\d+) \S+\+0x[0-9a-f]+/0x[0-9a-f]+ pages=(\d+) vmalloc N0=(\d+)")
    pages = 0
    for l in lines:
        m = pat.fullmatch(l)
        assert m and int(m[1]) == (int(m[2]) + 1) * 4096 and m[2] == m[3], l
        pages += int(m[2])
    assert pages * 4 == meminfo(big)["VmallocUsed"]
    stacks = sum(1 for l in lines if "kernel_clone" in l)
    assert stacks * 16 == meminfo(big)["KernelStack"]
    assert big.getattr("/proc/vmallocinfo", ROOT).mode & 0o777 == 0o400


@requires_host(files=("/proc/crypto",), **HOST_LAYOUT)
def test_crypto_blocks_as_host(fs):
    with open("/proc/crypto") as f:
        host = f.read().split("\n\n")
    ours = text(fs, "/proc/crypto")
    assert ours.endswith("\n\n")
    assert set(ours.strip("\n").split("\n\n")) <= set(host)


# -- [sysctl] in a scenario ----------------------------------------------------------------


def test_scenario_sysctls():
    from procsim.scenario import build
    from procsim.scenario.schema import ScenarioError
    k = build({"machine": {"nr_cpus": 2, "mem": "4G"},
               "sysctl": {"vm.overcommit_memory": 2, "vm.min_free_kbytes": 65536, "vm.swappiness": 10,
                          "kernel.kptr_restrict": 1}})
    fs = ProcFS(k)
    assert text(fs, "/proc/sys/vm/overcommit_memory") == "2\n"
    assert text(fs, "/proc/sys/vm/min_free_kbytes") == "65536\n"
    assert text(fs, "/proc/sys/kernel/kptr_restrict") == "1\n"
    for bad, msg in (({"vm.swapiness": 1}, "did you mean 'vm.swappiness'"),
                     ({"vm.swappiness": 300}, "out of range 0..200"),
                     ({"vm.swappiness": "x"}, "expected an integer"),
                     ({"kernel.kptr_restrict": 3}, "out of range 0..2")):
        with pytest.raises(ScenarioError, match=re.escape(msg)):
            build({"machine": {"nr_cpus": 2, "mem": "4G"}, "sysctl": bad})


def test_swappiness_zero_keeps_memcg_reclaim_off_swap():
    """vm.swappiness 0: cgroup reclaim takes file pages only (get_scan_count's
    SCAN_FILE), so anon over memory.max is not swapped: the memcg OOM
    killer runs instead; at 60 the same fault swaps and nobody dies."""
    from procsim.cgroup import syscalls as C
    from procsim.mm.sysctl_vm import set_vm_sysctl
    MiB = 1 << 20
    out = {}
    for swappiness in (60, 0):
        k = boot(mem_bytes=1 << 30, swap_bytes=256 * MiB)
        fs = ProcFS(k)
        set_vm_sysctl(k, "swappiness", swappiness)
        C.mkdir(k, "/box")
        pid = k.spawn(["/usr/bin/app"])
        C.attach(k, pid, "/box")
        write(fs, "/sys/fs/cgroup/box/memory.max", b"16M")
        heap = k.mmap(pid, 24 * MiB)
        try:
            k.touch(pid, heap, 24 * MiB)
        except KernelError as e:  # killed by the memcg OOM killer mid-touch
            assert e.errno == errno.ENOMEM and swappiness == 0
        out[swappiness] = (pid in k.groups, k.memcg.swap_usage(k.cgroups.get("/box").memcg))
    assert out[60][0] and out[60][1] > 0
    assert not out[0][0] and out[0][1] == 0
