"""The procfs caches (tree.ProcFS): rendered bytes, resolved paths, attributes
and listings are kept per kernel generation. A change to the world must show
in the very next read; an unchanged world must give identical bytes. Also
the FUSE adapter's raw OPEN/READ/RELEASE callbacks, driven without libfuse."""

from __future__ import annotations

import ctypes
import errno
import os
import stat as S
import time

import pytest

from procsim import scenario
from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS

from procfs_helpers import NOBODY, ROOT, errno_of, read_all
from invariants import boot


def field(text: bytes, name: str) -> str:
    for line in text.decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


PER_PID = ("status", "stat", "statm", "cmdline", "comm", "environ", "maps")
GLOBAL = ("/proc/meminfo", "/proc/stat", "/proc/uptime", "/proc/loadavg", "/proc/vmstat",
          "/proc/cpuinfo", "/proc/interrupts", "/sys/devices/system/cpu/online")


def test_unchanged_world_gives_identical_bytes_to_a_fresh_procfs() -> None:
    k = scenario.load(clock="manual")
    fs, fresh = ProcFS(k), ProcFS(k)
    pids = sorted(k.groups)
    paths = list(GLOBAL) + [f"/proc/{p}/{n}" for p in pids for n in PER_PID]
    first = {p: read_all(fs, p) for p in paths}
    again = {p: read_all(fs, p) for p in paths}          # from the caches
    uncached = {p: read_all(fresh, p) for p in paths}    # from empty caches
    assert first == again == uncached
    assert fs.readdir("/proc", ROOT) == fresh.readdir("/proc", ROOT)
    for p in pids[:20]:
        assert fs.getattr(f"/proc/{p}", ROOT) == fresh.getattr(f"/proc/{p}", ROOT)


def test_repeated_reads_in_an_unchanged_world_are_served_from_the_cache(fs: ProcFS) -> None:
    p = fs.kernel.spawn(["/usr/bin/bash"])
    a = read_all(fs, f"/proc/{p}/status")
    h = fs.open(f"/proc/{p}/status", os.O_RDONLY, ROOT)
    assert h.read(1 << 20, 0) is h.read(1 << 20, 0)  # the very same bytes object: a lookup
    assert h.read(1 << 20, 0) == a == read_all(fs, f"/proc/{p}/status")


def test_mmap_and_touch_show_in_the_next_read(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    path = f"/proc/{p}/status"
    h = fs.open(path, os.O_RDONLY, ROOT)
    before = h.read(4096, 0)
    addr = k.mmap(p, 1 << 20)
    after_mmap = h.read(4096, 0)  # same open file, offset 0: re-rendered
    assert int(field(after_mmap, "VmSize").split()[0]) == int(field(before, "VmSize").split()[0]) + 1024
    assert read_all(fs, path) == after_mmap  # a new open agrees
    assert f"{addr:08x}-".encode() in read_all(fs, f"/proc/{p}/maps")
    k.touch(p, addr, 1 << 20)
    touched = read_all(fs, path)
    assert int(field(touched, "VmRSS").split()[0]) == int(field(after_mmap, "VmRSS").split()[0]) + 1024
    statm = read_all(fs, f"/proc/{p}/statm").split()
    assert int(statm[1]) * 4 == int(field(touched, "VmRSS").split()[0])


def test_run_and_advance_show_in_the_next_read(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    stat0 = read_all(fs, f"/proc/{p}/stat")
    up0 = read_all(fs, "/proc/uptime")
    assert field(read_all(fs, f"/proc/{p}/status"), "State").startswith("S")
    k.run(p, 1)
    assert field(read_all(fs, f"/proc/{p}/status"), "State").startswith("R")
    assert read_all(fs, f"/proc/{p}/stat").split()[2] == b"R"
    k.advance(2.0)
    up1 = read_all(fs, "/proc/uptime")
    assert float(up1.split()[0]) == pytest.approx(float(up0.split()[0]) + 2.0)
    stat1 = read_all(fs, f"/proc/{p}/stat")
    assert int(stat1.split()[13]) > int(stat0.split()[13])  # utime grew while it ran
    assert b"cpu3" in read_all(fs, "/proc/stat")  # global files re-render too


def test_a_tick_keeps_resolution_and_rerenders_content(fs: ProcFS) -> None:
    """A clock tick or a sleep moves counters and states only: paths stay
    resolved (the node objects are the same), while every byte is rendered
    anew; an activity event inside a tick (here another process's exit)
    drops what resolved under the process it names, and the listing."""
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    q = k.spawn(["/usr/bin/sleep", "9"])
    k.run(p, 1)
    stat0 = read_all(fs, f"/proc/{p}/stat")
    node0 = fs.resolve(f"/proc/{p}/stat", ROOT)
    k.advance(1.0)
    assert fs.resolve(f"/proc/{p}/stat", ROOT) is node0
    assert int(read_all(fs, f"/proc/{p}/stat").split()[13]) > int(stat0.split()[13])
    k.sleep(p)  # a state change is content too
    assert fs.resolve(f"/proc/{p}/stat", ROOT) is node0
    assert read_all(fs, f"/proc/{p}/stat").split()[2] == b"S"
    k.at(k.now / 1e9 + 0.5, lambda: k.exit_group(q))
    fs.getattr(f"/proc/{q}/stat", ROOT)
    k.advance(1.0)
    assert fs.resolve(f"/proc/{p}/stat", ROOT) is node0
    assert errno_of(fs.getattr, f"/proc/{q}/stat", ROOT) == errno.ENOENT
    assert errno_of(fs.getattr, f"/proc/{q}", ROOT) == errno.ENOENT
    assert str(q) not in fs.readdir("/proc", ROOT)


def test_spawn_exit_and_reap_show_at_once(fs: ProcFS) -> None:
    k = fs.kernel
    listing = fs.readdir("/proc", ROOT)
    p = k.spawn(["/usr/bin/sleep", "9"])
    assert str(p) in fs.readdir("/proc", ROOT) and str(p) not in listing
    assert read_all(fs, f"/proc/{p}/cmdline") == b"/usr/bin/sleep\x009\x00"
    status = fs.open(f"/proc/{p}/status", os.O_RDONLY, ROOT)
    assert b"State:\tS" in status.read(4096, 0)
    k.exit_group(p)
    assert p not in k.groups  # a child of init: reaped at once
    assert errno_of(status.read, 4096, 0) == errno.ESRCH
    assert errno_of(fs.getattr, f"/proc/{p}", ROOT) == errno.ENOENT
    assert errno_of(fs.open, f"/proc/{p}/status", os.O_RDONLY, ROOT) == errno.ENOENT
    assert str(p) not in fs.readdir("/proc", ROOT)


def test_zombie_and_reap_of_a_waited_child(fs: ProcFS) -> None:
    k = fs.kernel
    parent = k.spawn(["/usr/bin/bash"])
    c = k.fork(parent)
    h = fs.open(f"/proc/{c}/status", os.O_RDONLY, ROOT)
    assert b"State:\tS" in h.read(4096, 0)
    k.exit_group(c)
    assert b"State:\tZ (zombie)" in h.read(4096, 0)
    assert b"State:\tZ (zombie)" in read_all(fs, f"/proc/{c}/status")
    assert read_all(fs, f"/proc/{c}/maps") == b""
    k.wait(parent, c)
    assert errno_of(h.read, 4096, 0) == errno.ESRCH
    assert str(c) not in fs.readdir("/proc", ROOT)


def test_an_open_file_is_not_served_a_reused_pid(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/sleep", "9"])
    old = fs.open(f"/proc/{p}/cmdline", os.O_RDONLY, ROOT)
    assert old.read(4096, 0) == b"/usr/bin/sleep\x009\x00"
    k.exit_group(p)
    assert k.spawn(["/usr/bin/cat"], pid=p) == p
    assert read_all(fs, f"/proc/{p}/cmdline") == b"/usr/bin/cat\x00"
    with pytest.raises(ProcessLookupError):  # ESRCH: the fd holds the reaped task (spec §1.6)
        old.read(4096, 0)


def test_reads_past_offset_zero_keep_the_open_files_snapshot(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    h = fs.open(f"/proc/{p}/status", os.O_RDONLY, ROOT)
    whole = h.read(1 << 20, 0)
    head = h.read(100, 0)
    k.mmap(p, 1 << 20)  # the world changes between two reads of one pass
    rest = h.read(1 << 20, 100)
    assert head + rest == whole  # seq_file: one pass, one snapshot
    assert h.read(1 << 20, 0) != whole  # a new pass sees the change


def test_readers_with_different_uids_get_their_own_bytes(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])  # root's: other users do not see its addresses
    mine = read_all(fs, f"/proc/{p}/stat", ROOT).split()
    theirs = read_all(fs, f"/proc/{p}/stat", NOBODY).split()
    assert int(mine[25]) != 0 and int(theirs[25]) == 1   # startcode
    assert read_all(fs, f"/proc/{p}/stat", ROOT).split() == mine  # and back: not mixed up
    # ptrace-checked opens are checked per reader even when cached for another
    read_all(fs, f"/proc/{p}/environ", ROOT)
    assert errno_of(fs.open, f"/proc/{p}/environ", os.O_RDONLY, NOBODY) == errno.EACCES


def test_self_follows_the_caller_despite_caches(fs: ProcFS) -> None:
    a, b = Caller(1, 0, 0), Caller(2, 0, 0)
    assert fs.readlink("/proc/self", a) == "1"
    assert fs.readlink("/proc/self", b) == "2"
    assert fs.readlink("/proc/thread-self", b) == "2/task/2"


def test_ownership_and_threads_show_in_attributes_and_listings(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    assert fs.getattr(f"/proc/{p}", ROOT).uid == 0
    k.set_cred(p, 1000, 1000)
    a = fs.getattr(f"/proc/{p}", ROOT)
    assert (a.uid, a.gid) == (1000, 1000) and S.S_ISDIR(a.mode)
    assert fs.readdir(f"/proc/{p}/task", ROOT) == [str(p)]
    tid = k.clone_thread(p)
    assert fs.readdir(f"/proc/{p}/task", ROOT) == [str(p), str(tid)]
    assert field(read_all(fs, f"/proc/{p}/status"), "Threads") == "2"
    assert fs.getattr(f"/proc/{p}/task", ROOT).nlink == 4
    names = fs.readdir("/proc", ROOT)
    names.append("junk")  # a caller's copy: the cached listing is not affected
    assert "junk" not in fs.readdir("/proc", ROOT)


def test_invalidate_drops_everything(fs: ProcFS) -> None:
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    read_all(fs, f"/proc/{p}/comm")
    # a change behind the kernel's back (no generation bump): only invalidate() helps
    k.tasks[p].comm = "renamed"
    fs.invalidate()
    assert read_all(fs, f"/proc/{p}/comm") == b"renamed\n"


def test_wall_clock_moves_between_reads() -> None:
    k = boot(nr_cpus=2, clock="wall", kthreadd=False)
    fs = ProcFS(k)
    h = fs.open("/proc/uptime", os.O_RDONLY, ROOT)
    first = float(h.read(4096, 0).split()[0])
    time.sleep(0.05)  # > one jiffy (and one 10 ms print step)
    second = float(h.read(4096, 0).split()[0])
    assert second >= first + 0.03
    assert float(read_all(fs, "/proc/uptime").split()[0]) >= second


# -- the FUSE adapter's raw callbacks, without libfuse ---------------------------

def test_raw_open_read_release(fs: ProcFS, monkeypatch: pytest.MonkeyPatch) -> None:
    fsmod = pytest.importorskip("mountd.fs")
    import mfusepy
    monkeypatch.setattr(fsmod, "fuse_get_context", lambda: (0, 0, os.getpid()))
    monkeypatch.setattr(fsmod, "_ctx_struct", None)
    ops = fsmod.ProcsimOps(fs)
    raw = fsmod.RawPath(ops)
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"])
    fi = mfusepy.fuse_file_info()
    fi.flags = os.O_RDONLY
    buf = ctypes.create_string_buffer(4096)
    path = f"/proc/{p}/status".encode()
    assert raw.open(path, ctypes.addressof(fi)) == 0
    assert fi.fh in ops.handles and fi.direct_io == 1
    n = raw.read(None, ctypes.addressof(buf), 4096, 0, ctypes.addressof(fi))
    assert buf.raw[:n] == read_all(fs, f"/proc/{p}/status")
    assert raw.read(None, ctypes.addressof(buf), 4096, n, ctypes.addressof(fi)) == 0  # EOF
    k.mmap(p, 1 << 20)
    n2 = raw.read(None, ctypes.addressof(buf), 4096, 0, ctypes.addressof(fi))
    assert buf.raw[:n2] == read_all(fs, f"/proc/{p}/status")
    fh = fi.fh
    assert raw.release(None, ctypes.addressof(fi)) == 0 and fh not in ops.handles
    assert raw.read(None, ctypes.addressof(buf), 4096, 0, ctypes.addressof(fi)) == -errno.EBADF
    # errors come back as -errno, never as an exception
    assert raw.open(b"/proc/999999/status", ctypes.addressof(fi)) == -errno.ENOENT
    assert raw.open(f"/proc/{p}".encode(), ctypes.addressof(fi)) == -errno.EISDIR


def test_raw_release_is_the_handles_release(fs: ProcFS, monkeypatch: pytest.MonkeyPatch) -> None:
    """RELEASE through the raw callback runs the same release as mfusepy's
    path: the handle's own release() (a ShowHandle drops its copy)."""
    fsmod = pytest.importorskip("mountd.fs")
    import mfusepy
    monkeypatch.setattr(fsmod, "fuse_get_context", lambda: (0, 0, os.getpid()))
    monkeypatch.setattr(fsmod, "_ctx_struct", None)
    ops = fsmod.ProcsimOps(fs)
    raw = fsmod.RawPath(ops)
    p = fs.kernel.spawn(["/usr/bin/bash"])
    released = []

    class Counted:
        def release(self) -> None:
            released.append(self)

    for release in (lambda fi: raw.release(None, ctypes.addressof(fi)), lambda fi: ops.release(None, fi)):
        fi = mfusepy.fuse_file_info()
        fi.flags = os.O_RDONLY
        assert raw.open(f"/proc/{p}/status".encode(), ctypes.addressof(fi)) == 0
        h = ops.handles[fi.fh]
        buf = ctypes.create_string_buffer(4096)
        assert raw.read(None, ctypes.addressof(buf), 4096, 0, ctypes.addressof(fi)) > 0
        assert h.buf is not None
        assert release(fi) == 0
        assert h.buf is None and fi.fh not in ops.handles
        counted = Counted()
        ops.handles[fi.fh] = counted
        release(fi)
        assert released[-1] is counted and fi.fh not in ops.handles


def test_stat_struct_matches_getattr(fs: ProcFS, monkeypatch: pytest.MonkeyPatch) -> None:
    fsmod = pytest.importorskip("mountd.fs")
    import mfusepy
    monkeypatch.setattr(fsmod, "fuse_get_context", lambda: (0, 0, os.getpid()))
    monkeypatch.setattr(fsmod, "_ctx_struct", None)
    ops = fsmod.ProcsimOps(fs)
    for path in ("/", "/proc", "/proc/1", "/proc/1/status", "/proc/self", "/proc/meminfo"):
        want = mfusepy.c_stat()
        mfusepy.set_st_attrs(want, ops.getattr(path), use_ns=True)
        assert bytes(ops.stat_struct(path)) == bytes(want), path
    with pytest.raises(OSError) as e:
        ops.stat_struct("/proc/999999")
    assert e.value.errno == errno.ENOENT


def test_readdir_names_follow_the_world(fs: ProcFS, monkeypatch: pytest.MonkeyPatch) -> None:
    fsmod = pytest.importorskip("mountd.fs")
    monkeypatch.setattr(fsmod, "fuse_get_context", lambda: (0, 0, os.getpid()))
    monkeypatch.setattr(fsmod, "_ctx_struct", None)
    ops = fsmod.ProcsimOps(fs)
    before = ops.readdir_names("/proc")
    assert before[:2] == (b".", b"..")
    assert [n.decode() for n in before] == ops.readdir("/proc", 0)
    p = fs.kernel.spawn(["/usr/bin/bash"])
    after = ops.readdir_names("/proc")
    assert str(p).encode() in after and str(p).encode() not in before
    assert ops.readdir_names("/proc") is after  # unchanged world: the same tuple


def test_what_a_permission_guards_is_cached_per_uid(fs: ProcFS) -> None:
    """fd/ (its owner or root), fdinfo/ (ptrace) and ns/ targets are
    resolved once per uid and generation: another uid gets its own answer,
    before and after the first one's is cached."""
    k = fs.kernel
    p = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    for _ in range(3):
        k.open(p, "/dev/null")
    owner, other = Caller(os.getpid(), 1000, 1000), NOBODY
    for c in (ROOT, owner):
        assert fs.getattr(f"/proc/{p}/fd/0", c).size == 64
        assert fs.listing(f"/proc/{p}/fd", c) == ("0", "1", "2")
        read_all(fs, f"/proc/{p}/fdinfo/0", c)
    for _ in range(2):  # the cached answers of root and the owner are not the other's
        assert errno_of(fs.getattr, f"/proc/{p}/fd/0", other) == errno.EACCES
        assert errno_of(fs.listing, f"/proc/{p}/fd", other) == errno.EACCES
        assert errno_of(fs.open, f"/proc/{p}/fdinfo/0", os.O_RDONLY, other) == errno.EACCES
        assert errno_of(fs.getattr, f"/proc/{p}/ns/net:[4026531833]", other) == errno.EACCES
    assert fs.getattr(f"/proc/{p}/fd/0", owner) is fs.getattr(f"/proc/{p}/fd/0", owner)  # cached
    k.close(p, 0)  # a change: the next answer is the new world's
    assert fs.listing(f"/proc/{p}/fd", owner) == ("1", "2")
    assert errno_of(fs.getattr, f"/proc/{p}/fd/0", owner) == errno.ENOENT
