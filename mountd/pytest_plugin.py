"""pytest fixtures for testing your own /proc readers against a scripted machine.

Installed with procsim (entry point `pytest11: procsim`), so any test suite in
the same environment can use them; needs root and /dev/fuse.

    def test_my_agent_sees_new_process(procsim_machine):
        m = procsim_machine                       # default scenario, seed 0, manual clock
        pid = m.ctl.spawn(argv=["/usr/bin/sleep", "60"], uid=1000, gid=1000)
        m.ctl.mmap(pid=pid, length=64 << 20)
        report = my_agent.scan(proc_root=m.proc)  # your code, reading MNT/proc
        assert pid in report.pids

    def test_ps(procsim_machine):
        out = procsim_machine.run(["ps", "aux"], capture_output=True, text=True).stdout

    def test_my_scenario(procsim_mount):
        m = procsim_mount(scenario="tests/data/big.toml", seed=3)  # or inline TOML text

Fixtures:

* `procsim_mount(scenario=None, seed=0, clock="manual")` - a factory; each
  call mounts a new machine under the test's tmp_path and returns a Machine.
  `scenario` is a path, inline TOML text, or None for the default machine.
* `procsim_machine` - `procsim_mount()` with the defaults.

A Machine has `.mnt` (the mount point), `.proc` and `.sys` (MNT/proc, MNT/sys),
`.ctl` (a mountd.control.Client: `m.ctl.call(op, **args)` or `m.ctl.<op>(**args)`,
raising ControlError with `.errno`), `.pid` (the daemon), `.run(argv, **kw)`
(subprocess.run of argv in a private mount namespace with MNT/proc over /proc,
for tools like ps that cannot be pointed elsewhere) and `.umount()`.
Every machine is unmounted when the test ends, pass or fail.

With `clock="manual"` the world changes only when told to
(`m.ctl.advance(seconds=1)`), so expected values are exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import pytest

from mountd.control import Client, ControlError, socket_path


class Machine:
    """A mounted simulated machine (see the module docstring)."""

    def __init__(self, mnt: str | os.PathLike, log: str | None = None) -> None:
        self.mnt = str(Path(mnt).absolute())
        self.proc = os.path.join(self.mnt, "proc")
        self.sys = os.path.join(self.mnt, "sys")
        self.socket = socket_path(self.mnt)
        self.log = log
        self.ctl = Client(self.mnt)
        self.pid: int = self.ctl.ping()["pid"]

    def run(self, argv: Sequence[str], bind_sys: bool = False, **kw: Any) -> subprocess.CompletedProcess:
        """subprocess.run(argv) with this machine's /proc bound over /proc."""
        from mountd.cli import namespace_argv
        return subprocess.run(namespace_argv(self.mnt, argv, bind_sys), **kw)

    def umount(self) -> None:
        """Unmount and wait for the daemon to go; idempotent."""
        from mountd.cli import CLIError, is_mounted, unmount
        self.ctl.close()
        if not is_mounted(self.mnt) and not os.path.exists(self.socket):
            return
        try:
            unmount(self.mnt)
        except CLIError:
            unmount(self.mnt, lazy=True)

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:  # type: ignore[arg-type]
                return f.read()
        except (OSError, TypeError):
            return ""

    def __repr__(self) -> str:
        return f"Machine({self.mnt!r}, daemon pid {self.pid})"


def mount_machine(mnt: str | os.PathLike, scenario: str | os.PathLike | None = None, seed: int | None = 0,
                  clock: str = "manual", log: str | None = None, timeout: float = 120.0) -> Machine:
    """`procsim mount MNT --daemon` in a subprocess (a fresh interpreter: the
    test process stays free of FUSE and of the daemon's threads)."""
    mnt = Path(mnt)
    mnt.mkdir(parents=True, exist_ok=True)
    log = log or str(mnt.parent / f"{mnt.name}.daemon.log")
    cmd = [sys.executable, "-m", "mountd.cli", "mount", str(mnt), "--daemon", "--clock", clock, "--log", log]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if scenario is not None:
        text = os.fspath(scenario)
        if "\n" in text:  # inline TOML
            path = mnt.parent / f"{mnt.name}.scenario.toml"
            path.write_text(text)
            text = str(path)
        cmd += ["--scenario", text]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"procsim mount failed ({r.returncode}): {r.stderr.strip()}")
    try:
        return Machine(mnt, log)
    except ControlError:
        from mountd.cli import unmount
        unmount(str(mnt), lazy=True)
        raise


@pytest.fixture
def procsim_mount(tmp_path: Path) -> Iterator[Callable[..., Machine]]:
    """Factory: procsim_mount(scenario=None, seed=0, clock="manual") -> Machine."""
    machines: list[Machine] = []

    def factory(scenario: str | os.PathLike | None = None, seed: int | None = 0,
                clock: str = "manual") -> Machine:
        m = mount_machine(tmp_path / f"procsim{len(machines)}", scenario, seed, clock)
        machines.append(m)
        return m

    try:
        yield factory
    finally:
        for m in machines:
            m.umount()


@pytest.fixture
def procsim_machine(procsim_mount: Callable[..., Machine]) -> Machine:
    """The default machine (seed 0, manual clock), mounted for one test."""
    return procsim_mount()


__all__ = ["Machine", "mount_machine", "procsim_mount", "procsim_machine"]
