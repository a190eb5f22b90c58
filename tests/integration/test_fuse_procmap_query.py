"""PROCMAP_QUERY through the mount, against the real kernel.

A real process (a small Python program with anonymous, shared, deleted,
oddly named and PROT_NONE mappings) is mirrored into the machine with
`exec ... layout=<its maps> build_ids=<its real build IDs>`; then the spec's
procmap_query.py and this suite's own cases (pmquery.py) run on the real
pid with the real /proc and on the simulated one through FUSE, and must
print the same thing, line for line. The errno cases that need a process
to die or exec, unwritable buffers, other files and commands follow, each
also asked of the real kernel where it can be put in the same state.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pmquery as Q
from fusehelpers import REPO, read
from hostinfo import requires_host

pytestmark = pytest.mark.fuse

# the tests that ask the real kernel too: PROCMAP_QUERY (with build IDs) is 6.11's
real_ioctl = requires_host(min_kernel="6.11")

SPEC_SCRIPT = REPO.parent / "shared" / "spec" / "procfs-check" / "procmap_query.py"

CHILD = r"""
import mmap, os, sys, time
d = sys.argv[1]
anon = mmap.mmap(-1, 5 * 4096, flags=mmap.MAP_PRIVATE)            # private anonymous
anon[0] = 1
shared = mmap.mmap(-1, 3 * 4096, flags=mmap.MAP_SHARED)           # /dev/zero (deleted), 00:01
none = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE, prot=0)  # PROT_NONE
keep = []
for name, unlink in (("data.bin", False), ("odd\nname.dat", False), ("gone.so", True)):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(b"x" * 3 * 4096)
    with open(p, "rb") as f:                                      # MAP_SHARED, read-only open
        keep.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    if unlink:
        os.unlink(p)                                              # "... (deleted)"
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def real_pid() -> Iterator[int]:
    with tempfile.TemporaryDirectory(prefix="procsim-pmq-") as d:
        p = subprocess.Popen([sys.executable, "-c", CHILD, d], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline() == "ready\n"
            yield p.pid
        finally:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def mirror(machine, real_pid: int) -> int:
    """A simulated process with the real one's layout and build IDs."""
    layout = read(f"/proc/{real_pid}/maps")
    exe = os.readlink(f"/proc/{real_pid}/exe")
    pid = machine.ctl.spawn(argv=["/usr/bin/sleep", "600"])
    machine.ctl.exec(pid=pid, path=exe, argv=[exe, "-c", "mirror"], layout=layout,
                     build_ids=Q.real_build_ids(real_pid))
    return pid


@pytest.fixture(autouse=True)
def daemon_keeps_serving(machine) -> Iterator[None]:
    yield
    assert machine.ctl.ping()["pid"] == machine.pid
    assert read(f"{machine.proc}/meminfo").startswith("MemTotal:")


def run_script(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, str(SPEC_SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


# -- the mirror answers as the real kernel does ---------------------------------------------------


def test_the_mirror_has_the_real_maps(machine, real_pid: int, mirror: int) -> None:
    real = read(f"/proc/{real_pid}/maps")
    assert read(f"{machine.proc}/{mirror}/maps") == real
    assert "/dev/zero (deleted)" in real and "gone.so (deleted)" in real and "odd\\012name.dat" in real


def test_procsim_ctl_exec_with_a_layout(machine, real_pid: int) -> None:
    """The command line of the README: layout="$(cat /proc/PID/maps)" (no final newline)."""
    layout = read(f"/proc/{real_pid}/maps")
    pid = machine.ctl.spawn(argv=["/usr/bin/sleep", "600"])

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mountd.cli", "ctl", machine.mnt, *args],
                              capture_output=True, text=True, timeout=60)

    r = ctl("exec", f"pid={pid}", "path=/usr/bin/sleep", 'argv=["sleep"]', f"layout={layout.rstrip(chr(10))}")
    assert r.returncode == 0, r.stderr
    assert read(f"{machine.proc}/{pid}/maps") == layout
    r = ctl("exec", f"pid={pid}", "path=/usr/bin/sleep", "layout=00400000-00401000 r--p nonsense")
    assert r.returncode != 0 and "EINVAL" in r.stderr
    assert read(f"{machine.proc}/{pid}/maps") == layout


@real_ioctl
def test_the_spec_script_gives_the_same_answers(machine, real_pid: int, mirror: int) -> None:
    if not SPEC_SCRIPT.is_file():
        # the script lives next to the repository; without it, its cases
        # (a subset of pmquery.cases) still run here
        real, sim = Q.run_cases(f"/proc/{real_pid}/maps"), Q.run_cases(f"{machine.proc}/{mirror}/maps")
    else:
        real, sim = run_script(str(real_pid)), run_script("--root", machine.proc, str(mirror))
    assert len(real) >= 39
    assert sim == real


@real_ioctl
def test_every_vma_filter_and_error_gives_the_same_answer(machine, real_pid: int, mirror: int) -> None:
    real = Q.run_cases(f"/proc/{real_pid}/maps")
    sim = Q.run_cases(f"{machine.proc}/{mirror}/maps")
    assert len(real) > 150
    for r, s in zip(real, sim):
        assert s == r
    assert len(sim) == len(real)
    # the cases did exercise names with a newline, deleted files and build IDs
    text = "\n".join(real)
    assert "name=b'/" in text and "\\n" in text and "(deleted)" in text and "bid=" in text


@real_ioctl
def test_queries_from_another_thread_write_its_buffers(machine, real_pid: int, mirror: int) -> None:
    """The FUSE context pid of a thread's request is the TID: the name is
    written into the caller's memory through it."""
    out: dict[str, str] = {}

    def ask(root: str, pid: int) -> None:
        first = Q.parse_maps(read(f"{root}/{pid}/maps"))[0][0]
        fd = os.open(f"{root}/{pid}/maps", os.O_RDONLY)
        try:
            out[root] = Q.query(fd, first, name_size=256, bid_size=20).line()
        finally:
            os.close(fd)

    for root, pid in (("/proc", real_pid), (machine.proc, mirror)):
        t = threading.Thread(target=ask, args=(root, pid))
        t.start()
        t.join()
    assert "name=b'/" in out["/proc"] and out[machine.proc] == out["/proc"]


# -- buffers the daemon cannot write, structs FUSE cannot copy --------------------------------


@real_ioctl
def test_unwritable_name_buffer_is_efault_and_the_struct_is_kept(machine, real_pid: int, mirror: int) -> None:
    ro = Q.Pages(1, prot=mmap.PROT_READ)
    try:
        for root, pid in (("/proc", real_pid), (machine.proc, mirror)):
            first = Q.parse_maps(read(f"{root}/{pid}/maps"))[0][0]
            fd = os.open(f"{root}/{pid}/maps", os.O_RDONLY)
            try:
                r = Q.query(fd, first, name_size=256, name_ptr=ro.addr)
                assert (r.err, r.struct_untouched) == (errno.EFAULT, True), root
                r = Q.query(fd, first, bid_size=20, bid_ptr=ro.addr)
                assert (r.err, r.struct_untouched) == (errno.EFAULT, True), root
            finally:
                os.close(fd)
    finally:
        ro.close()


@real_ioctl
def test_short_struct_at_the_end_of_a_mapping(machine, real_pid: int, mirror: int) -> None:
    """The documented FUSE limitation: FUSE copies 104 bytes whatever the
    caller's size, so a 40-byte struct that ends where the mapping ends
    works on the real kernel and gets EFAULT from FUSE."""
    pages = Q.Pages(2)
    try:
        pages.protect(mmap.PAGESIZE, mmap.PAGESIZE, 0)  # PROT_NONE
        arg = pages.addr + mmap.PAGESIZE - 40
        got = {}
        for root, pid in (("/proc", real_pid), (machine.proc, mirror)):
            first = Q.parse_maps(read(f"{root}/{pid}/maps"))[0]
            fd = os.open(f"{root}/{pid}/maps", os.O_RDONLY)
            try:
                raw = Q.FMT.pack(40, 0, first[0], *[Q.SENTINEL] * 12)[:40]
                got[root] = Q.query_at(fd, arg, raw)
            finally:
                os.close(fd)
        assert got["/proc"][0] == 0 and struct.unpack_from("<QQ", got["/proc"][1], 24)[1] != Q.SENTINEL
        assert got[machine.proc] == (errno.EFAULT, raw)
    finally:
        pages.close()


def test_bytes_past_a_short_size_come_back_unchanged(machine, mirror: int) -> None:
    fd = os.open(f"{machine.proc}/{mirror}/maps", os.O_RDONLY)
    try:
        first = Q.parse_maps(read(f"{machine.proc}/{mirror}/maps"))[0]
        r = Q.query(fd, first[0], size=40)
        assert r.err == 0 and (r.out["vma_start"], r.out["vma_end"]) == first[:2]
        assert r.out["vma_flags"] == r.out["inode"] == Q.SENTINEL
    finally:
        os.close(fd)


# -- the mm bound at open ----------------------------------------------------------------------


def first_vma(machine, pid: int) -> int:
    return Q.parse_maps(read(f"{machine.proc}/{pid}/maps"))[0][0]


def test_process_that_exits_with_the_fd_open(machine) -> None:
    parent = machine.ctl.spawn(argv=["/usr/bin/bash"])
    child = machine.ctl.fork(pid=parent)
    addr = first_vma(machine, child)
    fd = os.open(f"{machine.proc}/{child}/maps", os.O_RDONLY)
    try:
        assert Q.query(fd, addr).err == 0
        machine.ctl.exit_group(pid=child)            # a zombie: its parent has not waited
        r = Q.query(fd, addr)
        assert (r.err, r.struct_untouched) == (errno.ESRCH, True)
        machine.ctl.wait(pid=parent, child=child)    # reaped
        assert Q.query(fd, addr).err == errno.ESRCH
    finally:
        os.close(fd)


@real_ioctl
def test_real_process_that_exits_with_the_fd_open() -> None:
    """The same on the real kernel, for reference."""
    p = subprocess.Popen(["sleep", "60"])
    try:
        while "/sleep" not in read(f"/proc/{p.pid}/maps"):
            time.sleep(0.01)
        fd = os.open(f"/proc/{p.pid}/maps", os.O_RDONLY)
        addr = Q.parse_maps(read(f"/proc/{p.pid}/maps"))[0][0]
        assert Q.query(fd, addr).err == 0
        p.kill()
        p.wait()
        assert Q.query(fd, addr).err == errno.ESRCH
        os.close(fd)
    finally:
        p.kill()
        p.wait()


def test_exec_since_open(machine) -> None:
    pid = machine.ctl.spawn(argv=["/usr/bin/bash"])
    addr = first_vma(machine, pid)
    fd = os.open(f"{machine.proc}/{pid}/maps", os.O_RDONLY)
    try:
        assert Q.query(fd, addr).err == 0
        machine.ctl.exec(pid=pid, path="/usr/bin/sleep", argv=["sleep", "9"])
        assert Q.query(fd, addr).err == errno.ESRCH
        assert os.pread(fd, 4096, 0) == b""          # and reads are empty, as on the kernel
    finally:
        os.close(fd)
    fd = os.open(f"{machine.proc}/{pid}/maps", os.O_RDONLY)   # a new open sees the new image
    try:
        assert Q.query(fd, 0, Q.NEXT, name_size=256).line().endswith("name=b'/usr/bin/sleep\\x00'")
    finally:
        os.close(fd)


@requires_host(min_kernel="6.11", features=("kthreadd",))
def test_kernel_thread_is_esrch(machine, real_pid: int) -> None:
    for root in ("/proc", machine.proc):
        fd = os.open(f"{root}/2/maps", os.O_RDONLY)
        try:
            assert Q.query(fd, 0, Q.NEXT).err == errno.ESRCH, root
        finally:
            os.close(fd)


# -- which fds and commands -----------------------------------------------------------------------


@pytest.mark.parametrize("name,err", [("smaps", errno.ENOTTY), ("status", errno.ENOTTY),
                                      ("smaps_rollup", errno.ENOTTY), ("pagemap", errno.EINVAL)])
@real_ioctl
def test_other_files_refuse(machine, real_pid: int, mirror: int, name: str, err: int) -> None:
    for root, pid in (("/proc", real_pid), (machine.proc, mirror)):
        fd = os.open(f"{root}/{pid}/{name}", os.O_RDONLY)
        try:
            assert Q.query(fd, 0, Q.NEXT).err == err, root
        finally:
            os.close(fd)


def test_other_commands_on_maps_are_enotty(machine, real_pid: int, mirror: int) -> None:
    for root, pid in (("/proc", real_pid), (machine.proc, mirror)):
        fd = os.open(f"{root}/{pid}/maps", os.O_RDONLY)
        try:
            for cmd in (Q.PROCMAP_QUERY + 1, Q.PROCMAP_QUERY & ~0xFF | 0x10, 0x5401):
                assert Q.query(fd, 0, Q.NEXT, cmd=cmd).err == errno.ENOTTY, (root, hex(cmd))
        finally:
            os.close(fd)


@real_ioctl
def test_write_only_and_thread_maps_fds_answer(machine, real_pid: int, mirror: int) -> None:
    got = []
    for root, pid in (("/proc", real_pid), (machine.proc, mirror)):
        for path in (f"{root}/{pid}/maps", f"{root}/{pid}/task/{pid}/maps"):
            fd = os.open(path, os.O_WRONLY)
            try:
                got.append(Q.query(fd, 0, Q.NEXT, name_size=256).line())
            finally:
                os.close(fd)
    assert got[0].startswith("0 ") and got == [got[0]] * 4


# -- examples/addr2map.py ---------------------------------------------------------------------


ADDR2MAP = REPO / "examples" / "addr2map.py"


def addr2map(*args: str) -> str:
    r = subprocess.run([sys.executable, str(ADDR2MAP), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def probe_addresses(maps_text: str) -> list[str]:
    """Start, middle and last byte of every VMA, the gaps, 0 and the gate VMA."""
    addrs = [0, Q.GATE]
    for a, b, _, _ in Q.parse_maps(maps_text):
        addrs += [a, a + (b - a) // 2 + 0x123, b - 1, b]
    return [f"{x:x}" for x in addrs]


@real_ioctl
def test_addr2map_answers_as_on_the_real_kernel(machine, real_pid: int, mirror: int) -> None:
    addrs = probe_addresses(read(f"/proc/{real_pid}/maps"))
    real = addr2map(str(real_pid), *addrs)
    assert addr2map("--proc", machine.proc, str(mirror), *addrs) == real
    assert "build_id=" in real and "not mapped" in real and "(deleted)" in real and "\\012" in real
    # the file offset of an address is the VMA's offset plus the distance into it
    line = next(ln for ln in real.splitlines() if "r-xp" in ln and "file_offset" in ln and "build_id" in ln)
    addr, rng, _, off = line.split()[:4]
    file_offset = int(line.split("file_offset=")[1].split()[0], 16)
    assert file_offset == int(off, 16) + int(addr, 16) - int(rng.split("-")[0], 16)


def test_addr2map_falls_back_to_maps_without_the_ioctl(machine, mirror: int, tmp_path: Path) -> None:
    """Where the ioctl is ENOTTY (a regular file here, an older kernel in
    life) the tool reads maps and gives the same mappings, without build IDs."""
    text = read(f"{machine.proc}/{mirror}/maps")
    addrs = probe_addresses(text)
    with_ioctl = addr2map("--proc", machine.proc, str(mirror), *addrs)
    expected = "".join(ln.split(" build_id=")[0] + "\n" for ln in with_ioctl.splitlines())
    (tmp_path / str(mirror)).mkdir()
    (tmp_path / str(mirror) / "maps").write_text(text)
    assert addr2map("--proc", str(tmp_path), str(mirror), *addrs) == expected
    assert addr2map("--proc", machine.proc, "--maps", str(mirror), *addrs) == expected


def test_addr2map_on_a_default_process(machine) -> None:
    pid = machine.ctl.spawn(argv=["/usr/bin/python3", "-c", "pass"])
    vmas = machine.ctl.vmas(pid=pid)
    out = addr2map("--proc", machine.proc, str(pid), *(f"{v['start'] + 0x10:x}" for v in vmas)).splitlines()
    assert len(out) == len(vmas)
    for v, line in zip(vmas, out):
        assert line.split()[1:3] == [f"{v['start']:08x}-{v['end']:08x}", v["perms"]], line
        if v["path"] and v["path"].startswith("/usr/lib/x86_64-linux-gnu/lib"):
            assert "build_id=" in line, line
