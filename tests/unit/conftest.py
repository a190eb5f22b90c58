"""Shared by the procfs tests that drive ProcFS without FUSE."""

from __future__ import annotations

import pytest

from procsim import Kernel, KernelConfig
from procsim.procfs.tree import ProcFS


@pytest.fixture
def fs() -> ProcFS:
    """A bare 4-CPU machine: init and kthreadd only."""
    k = Kernel(KernelConfig(nr_cpus=4, mem_bytes=1 << 30))
    k.create_init()
    k.kthread("kthreadd", pid=2)
    return ProcFS(k)
