"""PSI triggers (procsim/psi/trigger.py, procsim/procfs/pressure.py): the
write's rules and errnos (compared with the host's /proc/pressure files
when it lets us write them), firing when stall time in the window crosses
the threshold, once per window, POLLPRI once per event, and the trigger
going with its file."""

from __future__ import annotations

import errno
import os
import select

import pytest

from invariants import boot
from procsim.procfs.context import Caller
from procsim.procfs.tree import ProcFS
from procsim.psi import trigger as T

UNPRIV = Caller(os.getpid(), 0, 0, caps=0)                 # root without CAP_SYS_RESOURCE (as this host)
PRIV = Caller(os.getpid(), 0, 0, caps=1 << 24)

WRITES = [b"some 150000 1000000", b"some 150000 1000000\n", b"some 150000 2000000\n", b"some 150000 2000000",
          b"some 150000 20000000\n", b"full 150000 2000000\n", b"some 0 2000000\n", b"some 2000001 2000000\n",
          b"some 150000 0\n", b"bogus\n", b"", b"some 150000 2000000 junk\n", b" some 150000 2000000\n",
          b"some -1 2000000\n", b"some 150000 4000000\n", b"some 150000 10000000\n", b"some 150000 12000000\n",
          b"some 150000 2000000\0", b"some 150000 2000000" + b" " * 40 + b"\n", b"some 1 1000000000000\n",
          b"some150000 2000000\n", b"some 150000 4296967296\n"]


def _try(write_once) -> list:
    """Each write on a fresh open file: its result, then a second write's (EBUSY)."""
    out = []
    for data in WRITES:
        try:
            r = write_once(data)
        except OSError as e:
            r = errno.errorcode[e.errno]
        out.append(r)
    return out


def model_write(fs: ProcFS, path: str, caller: Caller):
    def once(data: bytes):
        h = fs.open(path, os.O_RDWR, caller)
        try:
            n = h.write(data, 0)
            try:
                h.write(data, 0)
                return (n, "second ok")
            except OSError as e:
                return (n, errno.errorcode[e.errno])
        finally:
            h.release()
    return once


EXPECTED_UNPRIV = ["EINVAL", "EINVAL", (20, "EBUSY"), "EINVAL", "EINVAL", (20, "EBUSY"), "EINVAL", "EINVAL",
                   "EINVAL", "EINVAL", "EINVAL", (25, "EBUSY"), "EINVAL", "EINVAL", (20, "EBUSY"), (21, "EBUSY"),
                   "EINVAL", (20, "EBUSY"), (60, "EBUSY"), "EINVAL", (19, "EBUSY"), (23, "EBUSY")]


def test_write_rules_unprivileged() -> None:
    """As observed on 6.18 (root without CAP_SYS_RESOURCE): the last byte
    of the first 32 is dropped (no newline: the window loses a digit),
    windows are whole multiples of 2 s up to 10 s, threshold 1..window,
    %u takes digits only (mod 2^32), one trigger per open file (EBUSY)."""
    k = boot()
    fs = ProcFS(k)
    assert _try(model_write(fs, "/proc/pressure/memory", UNPRIV)) == EXPECTED_UNPRIV
    assert k.psi.triggers.by_group == {}  # every trigger went with its file


def test_write_rules_privileged() -> None:
    """With CAP_SYS_RESOURCE any window from 1 us to 10 s (no 500 ms floor since 6.4)."""
    k = boot()
    fs = ProcFS(k)
    got = _try(model_write(fs, "/proc/pressure/memory", PRIV))
    assert got[1] == (20, "EBUSY")  # 1 s: allowed
    assert got[0] == "EINVAL"  # "some 150000 100000": a 100 ms window, under the threshold
    assert got[16] == "EINVAL"  # 12 s


@pytest.mark.parametrize("res", ["memory", "cpu", "io"])
def test_write_rules_as_host(res: str) -> None:
    path = f"/proc/pressure/{res}"
    try:
        fd = os.open(path, os.O_RDWR)
        os.close(fd)
    except OSError:
        pytest.skip(f"{path} is not writable here")
    with open(f"/proc/{os.getpid()}/status") as f:
        caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)

    def host(data: bytes):
        fd = os.open(path, os.O_RDWR)
        try:
            n = os.write(fd, data)
            try:
                os.write(fd, data)
                return (n, "second ok")
            except OSError as e:
                return (n, errno.errorcode[e.errno])
        finally:
            os.close(fd)
    want = _try(host)
    k = boot()
    fs = ProcFS(k)
    assert _try(model_write(fs, path, Caller(os.getpid(), 0, 0, caps=caps))) == want


def test_poll_without_a_trigger_and_a_read_only_open() -> None:
    """psi_trigger_poll() with no trigger: DEFAULT_POLLMASK | POLLERR | POLLPRI
    (the host's poll for POLLIN|POLLPRI answered 11); a read-only open
    cannot write (EBADF comes from the VFS: here the handle still has the
    file's write)."""
    k = boot()
    fs = ProcFS(k)
    h = fs.open("/proc/pressure/memory", os.O_RDONLY, UNPRIV)
    mask = h.poll(None)
    assert mask == T.DEFAULT_POLLMASK | T.POLLERR | T.POLLPRI
    assert mask & (select.POLLIN | select.POLLPRI | select.POLLERR) == 11
    h.release()


def _stall_world():
    k = boot(clock="manual")
    pid = k.spawn(["/usr/bin/app"])
    return k, ProcFS(k), pid


def test_trigger_fires_once_per_window_and_pollpri_once_per_event() -> None:
    k, fs, pid = _stall_world()
    h = fs.open("/proc/pressure/memory", os.O_RDWR, UNPRIV)
    h.write(b"some 150000 2000000\n", 0)
    woke = []
    assert h.poll(lambda: woke.append(k.now)) == T.DEFAULT_POLLMASK  # nothing yet
    k.advance(4)
    assert not woke  # no stall: no event
    for _ in range(8):  # 300 ms of stall every 500 ms: far over 150 ms in 2 s
        k.psi.add_stall(k.tasks[pid], "memory", 300_000_000)
        k.advance(0.5)
    assert len(woke) == 1  # the wake-up is one-shot until the next poll
    assert h.poll(None) & T.POLLPRI
    assert not h.poll(None) & T.POLLPRI  # consumed
    [t] = k.psi.triggers.by_group[k.cgroups.root.id]
    # the averages' work runs every psi_period (2 s + a jiffy): at most one event each
    assert 1 <= t.nr_events <= 2
    h.release()
    assert k.psi.triggers.by_group == {}


def test_stall_under_the_threshold_does_not_fire() -> None:
    k, fs, pid = _stall_world()
    h = fs.open("/proc/pressure/memory", os.O_RDWR, UNPRIV)
    h.write(b"some 500000 2000000\n", 0)
    for _ in range(8):
        k.psi.add_stall(k.tasks[pid], "memory", 10_000_000)  # 10 ms per 500 ms: 40 ms a window
        k.advance(0.5)
    assert not h.poll(None) & T.POLLPRI
    assert k.psi.triggers.describe()[0]["events"] == 0
    h.release()


def test_privileged_trigger_uses_the_rtpoll_worker_and_a_cgroup_file() -> None:
    """A cgroup's memory.pressure (0644) takes triggers on its own group;
    privileged, a 500 ms window is allowed and evaluated at window/10."""
    from procsim.cgroup import syscalls as C
    k, fs, pid = _stall_world()
    C.mkdir(k, "/box")
    C.attach(k, pid, "/box")
    assert fs.getattr("/sys/fs/cgroup/box/memory.pressure", PRIV).mode & 0o777 == 0o644
    h = fs.open("/sys/fs/cgroup/box/memory.pressure", os.O_RDWR, PRIV)
    h.write(b"some 100000 500000\n", 0)
    other = fs.open("/sys/fs/cgroup/memory.pressure", os.O_RDWR, PRIV)
    other.write(b"full 400000 500000\n", 0)
    for _ in range(10):
        k.psi.add_stall(k.tasks[pid], "memory", 60_000_000)
        k.advance(0.1)
    d = {(x["cgroup_id"], x["state"]): x for x in k.psi.triggers.describe()}
    box = k.cgroups.get("/box").id
    assert d[box, "memory_some"]["events"] >= 1 and d[box, "memory_some"]["privileged"]
    assert h.poll(None) & T.POLLPRI
    h.release()
    other.release()
    assert k.psi.triggers.describe() == []
