"""drivers/char/random.c, what /proc/sys/kernel/random shows: the boot id
(one random UUID per boot) and fresh UUIDs, each read of kernel.random.uuid
making a new one as Linux does. Deterministic: both come from the machine's
seed, the uuid from a counter of the UUIDs handed out so far (the one state
a read changes; nothing else derives from it, so no render cache depends on
it). The crng is always initialised: entropy_avail is the pool size."""

from __future__ import annotations

import hashlib
import uuid

POOL_BITS = 256               # POOL_BITS: entropy_avail and poolsize, constant since 5.18
URANDOM_MIN_RESEED_SECS = 60  # accepted and ignored since 5.18, as write_wakeup_threshold
WRITE_WAKEUP_THRESHOLD = 256


def _uuid(seed: int, what: str, n: int) -> str:
    """generate_random_uuid(): 16 random bytes, version 4, variant DCE."""
    raw = hashlib.sha256(f"{seed}/{what}/{n}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=raw, version=4))


class Crng:
    __slots__ = ("seed", "boot_id", "uuids", "urandom_min_reseed_secs", "write_wakeup_threshold")

    def __init__(self, seed: int | None) -> None:
        self.seed = seed or 0
        self.boot_id = _uuid(self.seed, "boot_id", 0)
        self.uuids = 0
        self.urandom_min_reseed_secs = URANDOM_MIN_RESEED_SECS
        self.write_wakeup_threshold = WRITE_WAKEUP_THRESHOLD

    def next_uuid(self) -> str:
        """proc_do_uuid() for kernel.random.uuid: a new UUID per call."""
        self.uuids += 1
        return _uuid(self.seed, "uuid", self.uuids)


def set_random_sysctl(k, name: str, value: int) -> None:
    """A write to kernel.random.urandom_min_reseed_secs or
    write_wakeup_threshold: kept and shown, used by nothing (as since 5.18)."""
    with k.lock:
        setattr(k.crng, name, value)
        k._changed("sysctl", name=f"kernel.random.{name}")
