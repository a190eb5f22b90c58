"""procsim: a simulated Linux kernel core whose /proc is rendered from one model."""

from procsim.config import KernelConfig
from procsim.kernel import Kernel

__all__ = ["Kernel", "KernelConfig"]
