"""Scenarios: a TOML description of a machine, turned into a Kernel.

The builder only translates: `[machine]` becomes a KernelConfig, every
process, thread and mapping becomes the syscalls that would have made it
(fork, exec, clone, mmap, mprotect, touch, run, ...), and `[[activity]]`
becomes timed commands of the shared vocabulary (procsim.commands), with
names resolved where pids and addresses go. The format is documented in
docs/scenario-format.md.

Everything is deterministic for a given seed: the only randomness is the
kernel's own `rng`, and TOML tables keep their file order.

Here: loading the TOML (`load`, `build`). schema.py: value types and table
keys; machine.py: `[machine]`; builder.py, processes.py, memory.py,
activity.py: the builder; names.py: what names mean in a built world.
"""

from __future__ import annotations

import tomllib
from importlib import resources

from procsim.kernel import Kernel
from procsim.scenario.builder import _Builder
from procsim.scenario.names import Names, names, resolve
from procsim.scenario.schema import ScenarioError, parse_size

__all__ = ["Names", "ScenarioError", "build", "load", "names", "parse_size", "resolve"]


def build(doc: dict, *, seed: int | None = None, clock: str | None = None,
          source: str = "scenario") -> Kernel:
    """A Kernel from an already parsed scenario (tomllib's dict)."""
    return _Builder(doc, source).build(seed, clock)


def load(path: str | None = None, *, seed: int | None = None, clock: str | None = None) -> Kernel:
    """A Kernel from a scenario file; None loads the default scenario shipped
    with the package. seed and clock override the file's [machine] values."""
    if path is None:
        text = resources.files("procsim").joinpath("scenarios/default.toml").read_text()
        source = "default scenario"
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ScenarioError(f"{path}: {e.strerror}") from None
        source = str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: {e}") from None
    try:
        return build(doc, seed=seed, clock=clock, source=source)
    except ScenarioError as e:
        msg = str(e)
        raise ScenarioError(msg if msg.startswith(source) else f"{source}: {msg}") from None
