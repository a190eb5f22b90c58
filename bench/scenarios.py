"""Scenario files the benchmarks generate at run time (docs/scenario-format.md).

They are written to a temporary directory and checked with
procsim.scenario.load() before a daemon is started, so a format problem is
reported as such and not as a mount that never comes up.
"""

from __future__ import annotations

import tomllib
from importlib import resources

from common import log


def default_text() -> str | None:
    try:
        return resources.files("procsim").joinpath("scenarios/default.toml").read_text()
    except (FileNotFoundError, OSError, ModuleNotFoundError):
        return None


def _check(path: str) -> None:
    from procsim import scenario
    scenario.load(path)


def write_sleepers(path: str, n: int) -> str:
    """The default machine plus n sleeping `sleep 600` processes, children of
    init. Returns a short description of what was written."""
    block = (f'\n\n# added by bench/: {n} sleeping processes\n'
             f'[[process]]\nname = "benchsleep"\nargv = ["sleep", "600"]\ncount = {n}\nstate = "S"\n')
    base = default_text()
    if base is not None:
        text = base.rstrip("\n") + block
        try:
            tomllib.loads(text)
            with open(path, "w") as f:
                f.write(text)
            _check(path)
            return f"default scenario + {n} sleepers"
        except Exception as e:  # noqa: BLE001 - fall back to a machine of sleepers only
            log(f"note: cannot extend the default scenario ({e}); using {n} sleepers on a plain machine")
    with open(path, "w") as f:
        f.write(f'description = "bench: {n} sleeping processes"\n\n[machine]\nnr_cpus = 8\n' + block)
    _check(path)
    return f"plain 8-CPU machine + {n} sleepers"


def write_big_memory(path: str, mem_bytes: int) -> str:
    """A machine with mem_bytes of RAM and a shell; the benchmark adds the
    memory hog through the control channel."""
    with open(path, "w") as f:
        f.write(f'description = "bench: large-memory machine"\n\n'
                f'[machine]\nnr_cpus = 8\nmem = "{mem_bytes >> 30}G"\n\n'
                f'[[process]]\nname = "shell"\nargv = ["-bash"]\nexe = "/usr/bin/bash"\nstate = "S"\n')
    _check(path)
    return f"{mem_bytes >> 30} GiB, 8 CPUs"


def parent_pid(m) -> int:
    return 1
