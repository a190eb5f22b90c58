"""Fixtures of the unit tests. The worlds they hold are built by
invariants.py (`boot`), which also has the invariant checkers; the helpers
that read files through ProcFS are in procfs_helpers.py, the host gates in
tests/hostinfo.py. A module that needs another machine defines its own
fixture of the same name over `boot(...)`."""

from __future__ import annotations

import pytest

from invariants import boot
from procsim import Kernel
from procsim.procfs.tree import ProcFS


@pytest.fixture
def k() -> Kernel:
    """A booted 4-CPU, 1 GiB machine: init and kthreadd only."""
    return boot()


@pytest.fixture
def fs() -> ProcFS:
    """ProcFS over a machine of its own (not `k`'s), as `k` is: init and kthreadd only."""
    return ProcFS(boot())
