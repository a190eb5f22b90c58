"""net.netfilter.nf_conntrack_* writes (nf_conntrack_standalone.c's
table): the global max and hash size, each namespace's timeouts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def set_global(k: "Kernel", name: str, value: int) -> None:
    """nf_conntrack_max (0: no limit) or nf_conntrack_buckets (a resize);
    ValueError for what the handler refuses (EINVAL)."""
    with k.lock:
        if name == "nf_conntrack_max":
            k.netfilter.set_max(value)
        else:
            k.netfilter.resize(value)
        k._changed("sysctl", name=f"net.netfilter.{name}")


def set_timeout(k: "Kernel", net: object, table: str, key: str, value: int) -> None:
    """A namespace's nf_conntrack_{tcp,udp}_timeout_* in seconds."""
    with k.lock:
        getattr(k.netfilter.ct(net), table)[key] = value
        k._changed("sysctl", name=f"net.netfilter.{table}.{key}")
