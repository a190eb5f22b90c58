"""/proc/PID/io (fs/proc/base.c do_io_accounting) over the per-task counters
of procsim/ioac.py: what read and write count, page-cache misses as
read_bytes together with pgpgin, dirtied pages as write_bytes, the thread
group's sum with its dead threads and reaped children, and the read-time
ptrace check."""

from __future__ import annotations

import errno
import os
import re

import pytest

from hostinfo import requires_host
from procfs_helpers import ROOT, errno_of, read_all
from procsim import Kernel
from procsim.commands import CommandError, execute
from procsim.mm.vma import MAP_PRIVATE, PROT_READ
from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS
from procsim.resource import RLIM_INFINITY, RLIMIT_FSIZE, Rlimit

FILE = "/srv/data/table.db"


def io_of(fs: ProcFS, path: str, caller: Caller = ROOT) -> dict[str, int]:
    text = read_all(fs, path, caller).decode()
    return {k: int(v) for k, v in re.findall(r"^(\w+): (\d+)$", text, re.M)}


def pgpgin(k: Kernel) -> int:
    return k.mem.vm_events.pgpgin


@requires_host(kernel="6.18")
def test_format_is_this_hosts(fs: ProcFS) -> None:
    """The seven lines, in this host's order and form."""
    p = fs.kernel.spawn(["/usr/bin/app"])
    with open("/proc/self/io") as f:
        host = f.read()
    ours = read_all(fs, f"/proc/{p}/io").decode()
    assert re.sub(r"\d+", "N", ours) == re.sub(r"\d+", "N", host)


def test_read_counts_rchar_and_page_cache_misses(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"])
    k.vfs.file(FILE, 1 << 20)
    g0 = pgpgin(k)
    assert k.read(p, FILE, 10000, 4096) == 10000
    # bytes 4096..14095: pages 1-3 read from disk
    assert io_of(fs, f"/proc/{p}/io") == dict(rchar=10000, wchar=0, syscr=1, syscw=0, read_bytes=3 * 4096,
                                              write_bytes=0, cancelled_write_bytes=0)
    assert (pgpgin(k) - g0) * 1024 == 3 * 4096
    assert k.read(p, FILE, 8192, 4096) == 8192                       # cached now: no disk read
    assert k.read(p, FILE, 4096, (1 << 20) - 100) == 100             # short at EOF
    assert k.read(p, FILE, 4096, 1 << 21) == 0                       # past EOF: a call, no bytes
    io = io_of(fs, f"/proc/{p}/io")
    assert (io["rchar"], io["syscr"], io["read_bytes"]) == (10000 + 8192 + 100, 4, 4 * 4096)
    assert (pgpgin(k) - g0) * 1024 == io["read_bytes"]
    assert b"pgpgin %d\n" % pgpgin(k) in read_all(fs, "/proc/vmstat")
    # another process finds the pages cached: rchar, no read_bytes
    q = k.spawn(["/usr/bin/other"])
    k.read(q, FILE, 8192, 4096)
    assert io_of(fs, f"/proc/{q}/io")["read_bytes"] == 0


def test_file_faults_count_read_bytes_not_rchar(fs: ProcFS) -> None:
    """A fault on a file mapping reads the page in (submit_bio counts it as
    read_bytes and pgpgin), but no read(2) happened."""
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"])
    k.vfs.file("/srv/data/mapped", 1 << 20)
    a = k.mmap(p, 1 << 20, PROT_READ, MAP_PRIVATE, path="/srv/data/mapped")
    before, g0 = io_of(fs, f"/proc/{p}/io"), pgpgin(k)
    k.touch(p, a, 64 << 10, write=False)
    io = io_of(fs, f"/proc/{p}/io")
    assert io["read_bytes"] - before["read_bytes"] == (pgpgin(k) - g0) * 1024 == 64 << 10
    assert io["rchar"] == before["rchar"] and io["syscr"] == before["syscr"]


def test_write_counts_wchar_and_newly_dirtied_pages(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"])
    path = "/var/log/app.log"
    assert k.write(p, path, 100, 0) == 100                           # a new page: dirtied, nothing to read
    k.write(p, path, 100, 100)                                       # the same page: already dirty
    io = io_of(fs, f"/proc/{p}/io")
    assert (io["wchar"], io["syscw"], io["write_bytes"], io["read_bytes"]) == (200, 2, 4096, 0)
    k.write(p, path, 8192, 4096)                                     # two whole new pages
    assert io_of(fs, f"/proc/{p}/io")["write_bytes"] == 3 * 4096
    # a part of an uncached page of an existing file is read first
    k.vfs.file(FILE, 1 << 20)
    g0 = pgpgin(k)
    k.write(p, FILE, 100, 8192 + 50)
    io = io_of(fs, f"/proc/{p}/io")
    assert io["read_bytes"] == 4096 == (pgpgin(k) - g0) * 1024 and io["write_bytes"] == 4 * 4096
    assert k.vfs.file(path).size == 4096 + 8192                      # the file grew


def test_fsize_limit_cuts_writes(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"], uid=1000, gid=1000)
    k.prlimit(p, RLIMIT_FSIZE, Rlimit(6000, RLIM_INFINITY))
    assert k.write(p, "/tmp/f", 10000, 0) == 6000
    assert errno_of(k.write, p, "/tmp/f", 10, 6000) == errno.EFBIG
    io = io_of(fs, f"/proc/{p}/io")
    assert (io["wchar"], io["syscw"]) == (6000, 2)                    # vfs_write counts the failed call
    assert k.vfs.file("/tmp/f").size == 6000


def test_threads_group_sum_dead_threads_and_reaped_children(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"])
    t = k.clone_thread(p)
    k.read(p, FILE, 1000)
    k.read(t, FILE, 3000)
    assert io_of(fs, f"/proc/{p}/task/{t}/io")["rchar"] == 3000
    assert io_of(fs, f"/proc/{p}/task/{p}/io")["rchar"] == 1000
    assert io_of(fs, f"/proc/{p}/io")["rchar"] == 4000
    k.exit(t)                                                        # its counts stay in signal->ioac
    assert io_of(fs, f"/proc/{p}/io")["rchar"] == 4000
    assert io_of(fs, f"/proc/{p}/task/{p}/io")["rchar"] == 1000
    c = k.fork(p)
    assert io_of(fs, f"/proc/{c}/io")["rchar"] == 0                  # not inherited
    k.write(c, "/tmp/out", 500)
    k.exit_group(c)
    assert io_of(fs, f"/proc/{p}/io")["wchar"] == 0                  # a zombie: not yet the parent's
    assert io_of(fs, f"/proc/{c}/io")["wchar"] == 500
    k.wait(p, c)                                                     # wait_task_zombie adds it
    io = io_of(fs, f"/proc/{p}/io")
    assert (io["rchar"], io["wchar"]) == (4000, 500)
    assert io_of(fs, f"/proc/{p}/task/{p}/io")["wchar"] == 0


def test_ptrace_read_check_at_each_read(fs: ProcFS) -> None:
    """do_io_accounting's PTRACE_MODE_READ_FSCREDS check, at read: a reader
    of another uid without CAP_SYS_PTRACE gets EACCES (the mode already
    refuses a non-root one at open, through FUSE); the same uid may; root
    without CAP_SYS_PTRACE may not read a process whose capabilities it
    lacks. A cached copy is not served around the check."""
    k = fs.kernel
    u = k.spawn(["/usr/bin/app"], uid=1000, gid=1000)
    r = k.spawn(["/usr/bin/daemon"])
    me = os.getpid()
    full, no_ptrace = (1 << 41) - 1, ((1 << 41) - 1) & ~(1 << 19)
    assert io_of(fs, f"/proc/{u}/io", Caller(me, 0, 0, full))
    assert io_of(fs, f"/proc/{u}/io", Caller(me, 1000, 1000, 0))                # the same user
    assert errno_of(read_all, fs, f"/proc/{u}/io", Caller(me, 1001, 1001, 0)) == errno.EACCES
    assert errno_of(read_all, fs, f"/proc/{u}/io", Caller(me, 1000, 1001, 0)) == errno.EACCES  # gid too
    assert errno_of(read_all, fs, f"/proc/{u}/io", Caller(me, 0, 0, no_ptrace)) == errno.EACCES
    assert errno_of(read_all, fs, f"/proc/{r}/io", Caller(me, 65534, 65534, 0)) == errno.EACCES
    assert errno_of(read_all, fs, f"/proc/{r}/io", Caller(me, 0, 0, no_ptrace)) == errno.EACCES  # caps ⊄ its own
    assert io_of(fs, f"/proc/{r}/io", Caller(me, 0, 0, full))
    assert errno_of(read_all, fs, f"/proc/{r}/io", Caller(me, 0, 0, no_ptrace)) == errno.EACCES  # not the cache's
    k.groups[u].dumpable = False
    assert errno_of(read_all, fs, f"/proc/{u}/io", Caller(me, 1000, 1000, 0)) == errno.EACCES
    assert errno_of(read_all, fs, f"/proc/{u}/task/{u}/io", Caller(me, 1000, 1000, 0)) == errno.EACCES
    # the open succeeds (the refusal is the read's), as on 6.18
    h = fs.open(f"/proc/{r}/io", os.O_RDONLY, Caller(me, 0, 0, no_ptrace))
    assert errno_of(h.read, 4096, 0) == errno.EACCES


def test_io_and_read_write_commands(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/app"])
    t = k.clone_thread(p)
    assert execute(k, "read", {"pid": p, "path": FILE, "length": "8K"}) == 8192
    assert execute(k, "write", {"pid": t, "path": "/tmp/x", "length": 10, "offset": "4K"}) == 10
    got = execute(k, "io", {"pid": p})
    assert got == io_of(fs, f"/proc/{p}/io") and got["rchar"] == 8192 and got["wchar"] == 10
    assert execute(k, "io", {"pid": t, "thread": True, "read": 100, "path": FILE}) == \
        io_of(fs, f"/proc/{p}/task/{t}/io")
    before = io_of(fs, f"/proc/{p}/io")
    for bad in ({"pid": p, "path": FILE, "length": "lots"}, {"pid": p, "path": FILE, "length": -1},
                {"pid": p, "length": 10}, {"pid": 99999, "path": FILE, "length": 10}):
        with pytest.raises(CommandError) as e:
            execute(k, "read", bad)
        assert e.value.errno == (errno.ESRCH if bad["pid"] == 99999 else errno.EINVAL)
    assert io_of(fs, f"/proc/{p}/io") == before


def test_workload_file_io_at_a_rate() -> None:
    """A workload's reads and writes at their rates, through the kernel's
    counters: the first pass over the file misses the page cache
    (read_bytes = pgpgin), the second finds it cached; the same ticks give
    the same I/O however the clock moves."""
    from procsim import KernelConfig

    def run(steps: list[float]) -> tuple[dict, int]:
        k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30, clock="manual"))
        k.create_init()
        p = k.spawn(["/usr/bin/db"])
        k.vfs.file("/srv/db", 1 << 20)
        g0 = pgpgin(k)
        k.workloads.start(p, pattern="uniform", rate=0, file="/srv/db", read_rate="512K", write_rate="64K",
                          io_size=4096, span="128K")
        for s in steps:
            k.advance(s)
        return k.io_accounting(p), (pgpgin(k) - g0) * 1024

    io, disk = run([1.0])
    assert (io["syscr"], io["rchar"], io["read_bytes"]) == (128, 512 << 10, 512 << 10)
    assert (io["syscw"], io["wchar"], io["write_bytes"]) == (16, 64 << 10, 64 << 10)
    assert disk == io["read_bytes"]
    io3, disk3 = run([0.5, 0.25, 2.25])
    # 3 s: 1.5 MiB read of a 1 MiB file (then cached), the 128K log span dirtied once
    assert io3["read_bytes"] == 1 << 20 == disk3 and io3["rchar"] == (1536 << 10) - 4096  # one read at EOF
    assert io3["write_bytes"] == 128 << 10 and io3["wchar"] == 192 << 10
    assert run([3.0]) == (io3, disk3)


def test_workload_io_keys_are_checked() -> None:
    from procsim.workload import WorkloadError
    from procsim import KernelConfig
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30, clock="manual"))
    k.create_init()
    p = k.spawn(["/usr/bin/db"])
    for bad, msg in (({"read_rate": "1M"}, "needs a 'file'"), ({"file": "rel/path", "read_rate": 1}, "absolute"),
                     ({"file": "/f"}, "read_rate and/or write_rate"), ({"file": "/f", "read_rate": "fast"}, "size"),
                     ({"file": "/f", "read_rate": 1, "io_size": 0}, "io_size")):
        with pytest.raises(WorkloadError, match=msg) as e:
            k.workloads.start(p, pattern="uniform", rate=0, **bad)
        assert e.value.errno == errno.EINVAL
    assert not k.workloads.items


def test_dirty_page_cache_agrees_with_meminfo_vmstat_and_write_bytes(fs: ProcFS) -> None:
    """Pages dirtied by write(2) and by stores through a shared file mapping
    are meminfo's Dirty and vmstat's nr_dirty (nr_dirtied counts them ever),
    and the dirtier's write_bytes; shmem (tmpfs) is not counted."""
    from procsim.mm.vma import MAP_ANONYMOUS, MAP_SHARED, PROT_WRITE

    k = fs.kernel

    def dirty() -> tuple[int, int, int]:
        mi = dict(re.findall(r"^(\w+):\s+(\d+) kB$", read_all(fs, "/proc/meminfo").decode(), re.M))
        vm = dict(re.findall(r"^(\w+) (\d+)$", read_all(fs, "/proc/vmstat").decode(), re.M))
        return int(mi["Dirty"]), int(vm["nr_dirty"]), int(vm["nr_dirtied"])

    assert dirty() == (0, 0, 0)
    p = k.spawn(["/usr/bin/app"])
    k.write(p, "/var/log/a", 3 * 4096)
    assert dirty() == (12, 3, 3)
    k.vfs.file("/srv/shared", 1 << 20, writable=True)
    a = k.mmap(p, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, path="/srv/shared")
    k.touch(p, a, 4 * 4096, write=False)                             # read-mapped first
    w0 = io_of(fs, f"/proc/{p}/io")["write_bytes"]
    k.touch(p, a, 4 * 4096, write=True)                              # write-protect faults dirty them
    k.touch(p, a + 4 * 4096, 2 * 4096, write=True)                   # write faults dirty them
    assert dirty() == (36, 9, 9)
    assert io_of(fs, f"/proc/{p}/io")["write_bytes"] - w0 == 6 * 4096
    s = k.mmap(p, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    k.touch(p, s, 1 << 20)                                           # shmem: no writeback, not Dirty
    assert dirty() == (36, 9, 9)


def test_truncate_cancels_dirty_page_cache(fs: ProcFS) -> None:
    """truncate drops the page cache past the new end: its dirty pages are
    the truncating task's cancelled_write_bytes (not the writer's) and
    leave Dirty; mappings of the dropped pages are unmapped; growing past
    RLIMIT_FSIZE is EFBIG and changes nothing."""
    from procsim.mm.vma import MAP_SHARED, PROT_WRITE

    k = fs.kernel
    w = k.spawn(["/usr/bin/writer"])
    c = k.spawn(["/usr/bin/cleaner"], uid=1000, gid=1000)
    path = "/var/spool/job"
    k.write(w, path, 10 * 4096)
    reader = k.spawn(["/usr/bin/reader"])
    a = k.mmap(reader, 10 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, path=path)
    k.touch(reader, a, 10 * 4096, write=False)
    rss = k.groups[reader].mm.rss_pages
    free = k.mem.nr_free
    k.truncate(c, path, 4 * 4096 + 100)                                # pages 5..9 go; page 4 stays (partly)
    assert io_of(fs, f"/proc/{c}/io")["cancelled_write_bytes"] == 5 * 4096
    assert io_of(fs, f"/proc/{w}/io")["cancelled_write_bytes"] == 0
    assert k.groups[reader].mm.rss_pages == rss - 5 and k.mem.nr_free == free + 5
    assert k.mem.nr_file_dirty == 5 and k.vfs.file(path).size == 4 * 4096 + 100
    k.prlimit(c, RLIMIT_FSIZE, Rlimit(1 << 20, RLIM_INFINITY))
    assert errno_of(k.truncate, c, path, 2 << 20) == errno.EFBIG
    assert k.vfs.file(path).size == 4 * 4096 + 100
    k.truncate(c, path, 1 << 20)                                       # growing within the limit: a hole
    assert io_of(fs, f"/proc/{c}/io")["cancelled_write_bytes"] == 5 * 4096
    assert execute(k, "truncate", {"pid": c, "path": path, "length": 0}) is None
    assert io_of(fs, f"/proc/{c}/io")["cancelled_write_bytes"] == 10 * 4096 and k.mem.nr_file_dirty == 0


HOST_READ = r'''
import os, sys
path = sys.argv[1]
io = os.open("/proc/self/io", os.O_RDONLY)

def snap():
    text = os.pread(io, 4096, 0).decode()
    d = {k: int(v) for k, v in (l.split(": ") for l in text.splitlines())}
    return d, len(text)

fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, b"x" * (64 << 10))
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # out of the page cache
out = []
for _ in range(2):
    a, n = snap()
    os.pread(fd, 64 << 10, 0)
    b, _ = snap()
    # less what the first snapshot's own read counted
    out.append([b["rchar"] - a["rchar"] - n, b["syscr"] - a["syscr"] - 1, b["read_bytes"] - a["read_bytes"]])
os.unlink(path)
print(out)
'''


def test_read_counters_as_this_hosts_kernel() -> None:
    """A 64 KiB pread of a file not in the page cache, then again: rchar and
    syscr count both, read_bytes only the first, on this host's ext4 (or
    other disk file system) as in the model."""
    import subprocess
    import sys
    d = os.path.dirname(os.path.abspath(__file__))
    fstype = subprocess.run(["stat", "-f", "-c", "%T", d], capture_output=True, text=True).stdout.strip()
    if fstype in ("tmpfs", "ramfs", "overlayfs", "fuseblk", "") or fstype.startswith("fuse"):
        pytest.skip(f"{d} is on {fstype or 'an unknown file system'}: its reads do not reach a disk")
    r = subprocess.run([sys.executable, "-c", HOST_READ, os.path.join(d, f".io-test-{os.getpid()}")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    host = eval(r.stdout)
    from procsim import KernelConfig
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30))
    k.create_init()
    p = k.spawn(["/usr/bin/python3"])
    k.vfs.file("/data/f", 64 << 10)
    model = []
    for _ in range(2):
        a = k.io_accounting(p)
        k.read(p, "/data/f", 64 << 10, 0)
        b = k.io_accounting(p)
        model.append([b[x] - a[x] for x in ("rchar", "syscr", "read_bytes")])
    assert model == host == [[64 << 10, 1, 64 << 10], [64 << 10, 1, 0]]


def test_read_and_write_through_fds() -> None:
    """read/write on an open fd: at the file position (which moves), at the
    end with O_APPEND, pread/pwrite at an offset; EBADF for a closed fd or
    the wrong access mode (and no call counted), EISDIR for a directory;
    the counters are the same as by path."""
    from procsim import KernelConfig
    from procsim.fs import file as F
    k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30))
    k.create_init()
    p = k.spawn(["/usr/bin/app"])
    k.vfs.file(FILE, 1 << 20)
    rfd = k.open(p, FILE, F.O_RDONLY)
    assert k.read(p, None, 5000, None, fd=rfd) == 5000
    assert k.read(p, None, 5000, None, fd=rfd) == 5000
    assert k.lseek(p, rfd, 0, 1) == 10000                              # the position moved
    assert k.read(p, None, 100, 0, fd=rfd) == 100 and k.lseek(p, rfd, 0, 1) == 10000  # pread: it stays
    wfd = k.open(p, "/var/log/x.log", F.O_WRONLY | F.O_APPEND)
    end = k.vfs.file("/var/log/x.log").size
    assert end % 4096 == 0
    k.write(p, None, 300, None, fd=wfd)                                 # at the end: a new page
    k.write(p, None, 300, None, fd=wfd)
    assert k.lseek(p, wfd, 0, 1) == end + 600
    before = k.io_accounting(p)
    assert (before["rchar"], before["syscr"], before["wchar"], before["syscw"]) == (10100, 3, 600, 2)
    assert before["read_bytes"] == 3 * 4096 and before["write_bytes"] == 4096
    for fn, fd in ((k.read, wfd), (k.write, rfd), (k.read, 99)):
        assert errno_of(fn, p, None, 10, None, fd) == errno.EBADF
    d = k.open(p, "/var/log", F.O_RDONLY | F.O_DIRECTORY)
    assert errno_of(k.read, p, None, 10, None, d) == errno.EISDIR
    assert k.io_accounting(p) == before
    with pytest.raises(CommandError) as e:
        execute(k, "read", {"pid": p, "length": 10, "path": FILE, "fd": rfd})
    assert e.value.errno == errno.EINVAL
    assert execute(k, "read", {"pid": p, "length": 10, "fd": rfd}) == 10
