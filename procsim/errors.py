"""KernelError: how a syscall of the simulated kernel fails (errno and a
message, the world unchanged). Its own module so that the syscall bodies in
procsim/mm/, procsim/fork.py, exit.py and exec.py raise it without
importing procsim/kernel.py."""

from __future__ import annotations


class KernelError(OSError):
    """A syscall failed: errno and message, the world unchanged."""

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(err, msg)
