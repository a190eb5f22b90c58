"""Shared helpers for the benchmarks: statistics, process bookkeeping,
mounting a procsim machine, reading real RSS, and printing tables.

Everything started here is recorded by pid and stopped by pid; everything
mounted here is unmounted here.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROCSIM = str(VENV_BIN / "procsim") if (VENV_BIN / "procsim").exists() else shutil.which("procsim") or "procsim"


_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, unit: str = "", digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}{unit}"


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def table(headers: list[str], rows: list[list[str]]) -> str:
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(headers))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r)))
    return "\n".join(out)


# -- real /proc --------------------------------------------------------------

class BuildError(Exception):
    """A C helper could not be built (no gcc, or a compile error)."""


def build_c(src: Path, out: Path, *flags: str) -> str:
    """gcc -O2 src -o out; returns the binary's path."""
    try:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(src), *flags],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"{getattr(e, 'stderr', None) or e!s:.200}") from None
    return str(out)


def vm_rss_bytes(pid: int) -> int:
    """VmRSS of a real process, from the real /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def threads_of(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def pin_process(pid: int, cpus: set[int] | None) -> None:
    """Set the CPU affinity of every thread of a process we started
    (None: all CPUs)."""
    cpus = cpus or set(range(os.cpu_count() or 1))
    for tid in threads_of(pid):
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == real for line in f)


def force_unmount(path: str) -> None:
    for cmd in (["fusermount3", "-u", path], ["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)


def stop_pid(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait for a process we started; SIGTERM then SIGKILL it by pid."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        if sig is not None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass


# -- a mounted procsim machine ----------------------------------------------

class MountError(RuntimeError):
    pass


class CServer:
    """A C FUSE server of the benchmarks (cfs_ll, snapfs) in the
    foreground as our own child: `argv` is run with the mount point
    appended, and entering waits until `ready` exists under it."""

    def __init__(self, argv: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        self.argv, self.ready, self.env = argv, ready, env
        self.proc: subprocess.Popen | None = None
        self.mnt = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="procsim-bench-cserver-")
        self.mnt = os.path.join(self.base, "mnt")
        os.mkdir(self.mnt)
        self.proc = subprocess.Popen([*self.argv, self.mnt], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 30
        while not (is_mounted(self.mnt) and os.path.exists(os.path.join(self.mnt, self.ready))):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                self.__exit__()
                raise RuntimeError(f"{os.path.basename(self.argv[0])} did not mount: {err}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        if self.mnt:
            force_unmount(self.mnt)
        if self.proc is not None:
            stop_pid(self.proc, timeout=5)
            if self.proc.stderr:
                self.proc.stderr.close()
        if self.mnt and not is_mounted(self.mnt):
            shutil.rmtree(self.base, ignore_errors=True)


class ProcsimMount:
    """`procsim mount MNT` in the foreground as our own child, so the daemon's
    pid is exactly the child's pid. Unmounted with `procsim umount MNT` on
    exit (fusermount3 -u as a fallback)."""

    def __init__(self, scenario: str | None = None, seed: int | None = None, clock: str = "manual",
                 workdir: str | None = None, ready_timeout: float = 120.0) -> None:
        self.scenario, self.seed, self.clock = scenario, seed, clock
        self.workdir = workdir
        self.ready_timeout = ready_timeout
        self.mnt: str = ""
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._client = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> "ProcsimMount":
        base = tempfile.mkdtemp(prefix="procsim-bench-", dir=self.workdir)
        self.base = base
        self.mnt = os.path.join(base, "mnt")
        os.mkdir(self.mnt)
        cmd = [PROCSIM, "mount", self.mnt]
        if self.scenario:
            cmd += ["--scenario", self.scenario]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if self.clock:
            cmd += ["--clock", self.clock]
        self.logpath = os.path.join(base, "daemon.log")
        logf = open(self.logpath, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        logf.close()
        try:
            deadline = t0 + self.ready_timeout
            while True:
                if self.proc.poll() is not None:
                    raise MountError(f"{' '.join(cmd)} exited with {self.proc.returncode}:\n{self.log_tail()}")
                if is_mounted(self.mnt) and os.path.exists(os.path.join(self.mnt, "proc", "meminfo")):
                    break
                if time.perf_counter() > deadline:
                    raise MountError(f"{' '.join(cmd)}: not mounted after {self.ready_timeout:.0f} s:\n"
                                     f"{self.log_tail()}")
                time.sleep(0.02)
            self.startup_s = time.perf_counter() - t0
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.logpath, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def client(self):
        if self._client is None:
            from mountd.control import Client  # the daemon's Python API
            self._client = Client(self.mnt)
        return self._client

    def call(self, op: str, **args):
        return self.client().call(op, **args)

    def proc_path(self, *parts: str) -> str:
        return os.path.join(self.mnt, "proc", *parts)

    def __exit__(self, *exc) -> None:
        c, self._client = self._client, None
        if c is not None and hasattr(c, "close"):
            try:
                c.close()
            except Exception:
                pass
        if self.mnt and is_mounted(self.mnt):
            try:
                subprocess.run([PROCSIM, "umount", self.mnt], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            stop_pid(self.proc, timeout=10)
        if self.mnt:
            force_unmount(self.mnt)
            if not is_mounted(self.mnt):
                shutil.rmtree(self.base, ignore_errors=True)


def sim_pids(mnt_proc: str) -> list[int]:
    return sorted(int(n) for n in os.listdir(mnt_proc) if n.isdigit())


def read_status_field(path: str, field: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
