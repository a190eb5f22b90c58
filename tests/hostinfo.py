"""What the host running the tests is, and the gates of the tests that
compare procsim with it.

Most tests check procsim against the spec and run anywhere. Some compare
with the host's own /proc, which is only meaningful where the host can show
the same thing: the same kernel version (file sets and key lists change
between releases), vendor, config options, capabilities. Those tests carry
`requires_host(...)`, which skips them with a reason naming what is missing
(printed by `make test`, which runs pytest with -rs).

To see the gates at work on this machine, the facts that cannot be changed
here can be overridden (gates only; the comparisons still read the real
files):
  PROCSIM_TEST_HOST_KERNEL=6.12.5        the kernel release
  PROCSIM_TEST_HOST_VENDOR=GenuineIntel  the CPU vendor_id
  PROCSIM_TEST_HOST_CONFIG=FILE          the kernel config to read (/dev/null: unknown)
Capabilities and CPUs are varied for real: `capsh --drop=cap_sys_admin --`,
`taskset -c 0`.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterable
from functools import cache

import pytest

# include/uapi/linux/capability.h, the ones tests ask about
CAPS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_KILL": 5,
        "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24}

# The config options that decide which lines a file has, set as on the
# reference kernel (spec §0.1). "!X": the option must be off.
MEMINFO_CONFIG = ("CONFIG_SWAP", "CONFIG_ZSWAP", "CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_HUGETLB_PAGE",
                  "CONFIG_MEMORY_BALLOON", "CONFIG_X86_DIRECT_GBPAGES", "!CONFIG_CMA", "!CONFIG_MEMORY_FAILURE",
                  "!CONFIG_UNACCEPTED_MEMORY", "!CONFIG_MEMTEST", "!CONFIG_HIGHMEM")
VMSTAT_CONFIG = ("CONFIG_SWAP", "CONFIG_ZSWAP", "CONFIG_ZSMALLOC", "CONFIG_NUMA", "CONFIG_NUMA_BALANCING",
                 "CONFIG_MIGRATION", "CONFIG_COMPACTION", "CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_HUGETLB_PAGE",
                 "CONFIG_MEMORY_BALLOON", "CONFIG_BALLOON_COMPACTION", "CONFIG_KSM", "CONFIG_ZONE_DMA",
                 "CONFIG_ZONE_DMA32", "CONFIG_ZONE_DEVICE", "!CONFIG_CMA", "!CONFIG_DEBUG_TLBFLUSH",
                 "!CONFIG_PER_VMA_LOCK_STATS", "!CONFIG_DEBUG_STACK_USAGE", "!CONFIG_UNACCEPTED_MEMORY",
                 "!CONFIG_HIGHMEM")
# arch rows of /proc/interrupts: no MCE/MCP/DFR/THR rows, a thermal row, KVM's rows
INTERRUPTS_CONFIG = ("!CONFIG_X86_MCE", "CONFIG_X86_THERMAL_VECTOR", "CONFIG_KVM_GUEST", "CONFIG_X86_HV_CALLBACK_VECTOR")
STATUS_CONFIG = ("CONFIG_SECCOMP", "CONFIG_NUMA_BALANCING", "CONFIG_CPUSETS", "CONFIG_HUGETLB_PAGE")


def _read(path: str) -> str | None:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


# -- facts -------------------------------------------------------------------------------


@cache
def kernel_release() -> str:
    return os.environ.get("PROCSIM_TEST_HOST_KERNEL") or os.uname().release


def kernel_version() -> tuple[int, ...]:
    """(major, minor, patch) of the release: "6.18.44-fc" -> (6, 18, 44)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", kernel_release())
    return tuple(int(x or 0) for x in m.groups()) if m else (0, 0, 0)


def machine_arch() -> str:
    return os.uname().machine


@cache
def _cpuinfo_first() -> dict[str, str]:
    block = (_read("/proc/cpuinfo") or "").split("\n\n")[0]
    return {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in block.splitlines())}


def cpu_vendor() -> str | None:
    """vendor_id of /proc/cpuinfo (x86: AuthenticAMD, GenuineIntel, ...)."""
    return os.environ.get("PROCSIM_TEST_HOST_VENDOR") or _cpuinfo_first().get("vendor_id")


def cpu_flag_set() -> frozenset[str]:
    return frozenset(_cpuinfo_first().get("flags", "").split())


def _cpulist_len(text: str | None) -> int | None:
    if not text or not text.strip():
        return None
    n = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def online_cpus() -> int:
    return _cpulist_len(_read("/sys/devices/system/cpu/online")) or os.cpu_count() or 1


def possible_cpus() -> int:
    """nr_cpu_ids: what the kernel sizes per-CPU things by (not the online
    CPUs, nor this process's affinity)."""
    return _cpulist_len(_read("/sys/devices/system/cpu/possible")) or online_cpus()


@cache
def cap_eff() -> int:
    m = re.search(r"^CapEff:\s*([0-9a-f]+)$", _read("/proc/self/status") or "", re.M)
    return int(m[1], 16) if m else 0


def has_cap(name: str) -> bool:
    """Whether this process (and what it starts) has capability `name` in effect."""
    return bool(cap_eff() >> CAPS[name] & 1)


@cache
def kernel_config() -> tuple[str | None, dict[str, str]]:
    """(where it was read, {CONFIG_X: "y"|"m"|value}); (None, {}) if the
    kernel's config is nowhere to be read."""
    paths = [os.environ["PROCSIM_TEST_HOST_CONFIG"]] if "PROCSIM_TEST_HOST_CONFIG" in os.environ else \
        ["/proc/config.gz", f"/boot/config-{os.uname().release}"]
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                text = f.read()
        except OSError:
            continue
        opts = dict(m.groups() for m in re.finditer(r"^(CONFIG_\w+)=(.*)$", text, re.M))
        if opts:
            return path, opts
    return None, {}


def _smaps_has(key: str) -> bool:
    return f"\n{key}:" in (_read("/proc/self/smaps") or "")


# Where the config cannot be read, what the running kernel shows of an option.
_CONFIG_PROBES: dict[str, Callable[[], bool]] = {
    "CONFIG_TRANSPARENT_HUGEPAGE": lambda: os.path.isdir("/sys/kernel/mm/transparent_hugepage"),
    "CONFIG_IDLE_PAGE_TRACKING": lambda: os.path.exists("/sys/kernel/mm/page_idle/bitmap"),
    "CONFIG_HUGETLB_PAGE": lambda: os.path.isdir("/sys/kernel/mm/hugepages"),
    "CONFIG_KSM": lambda: os.path.isdir("/sys/kernel/mm/ksm"),
    "CONFIG_ZSWAP": lambda: os.path.isdir("/sys/module/zswap"),
    "CONFIG_SWAP": lambda: os.path.exists("/proc/swaps"),
    "CONFIG_NUMA": lambda: os.path.isdir("/sys/devices/system/node"),
    "CONFIG_CMA": lambda: "\nCmaTotal:" in (_read("/proc/meminfo") or ""),
    "CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS": lambda: _smaps_has("ProtectionKey"),
}


def config_option(option: str) -> bool | None:
    """Whether the running kernel was built with `option` (y or m); None if unknown."""
    where, opts = kernel_config()
    if where is not None:
        return opts.get(option, "n") not in ("n", "")
    probe = _CONFIG_PROBES.get(option)
    return probe() if probe else None


def pkeys() -> bool:
    """smaps shows ProtectionKey: (configured, and the CPU has pku)."""
    return _smaps_has("ProtectionKey")


def vsyscall_mode() -> str | None:
    """The vsyscall mode: "xonly", "emulate", "none" (the boot parameter,
    else the config default), None off x86_64 or if unknown."""
    if machine_arch() != "x86_64":
        return None
    m = re.search(r"(?:^|\s)vsyscall=(\w+)", _read("/proc/cmdline") or "")
    if m:
        return m[1]
    for mode in ("xonly", "emulate", "none"):
        if config_option(f"CONFIG_LEGACY_VSYSCALL_{mode.upper()}"):
            return mode
    return None


def _pid2_is_kthreadd() -> bool:
    return (_read("/proc/2/status") or "").startswith("Name:\tkthreadd\n")


def _no_legacy_irqs() -> bool:
    """No ISA IRQs 0-15 in /proc/interrupts: no legacy PIC, as on the
    reference microVM (arch_probe_nr_irqs() then counts no legacy IRQs)."""
    rows = re.findall(r"^\s*(\d+):", _read("/proc/interrupts") or "", re.M)
    return bool(rows) and min(map(int, rows)) >= 16


def _active_swap() -> bool:
    """/proc/swaps lists a swap area (below its header line). Not cached:
    swapon/swapoff change it while the tests run."""
    return len((_read("/proc/swaps") or "").strip().splitlines()) > 1


# Named properties a gate can ask for: (probe, what it means when missing)
FEATURES: dict[str, tuple[Callable[[], bool], str]] = {
    "active-swap": (_active_swap, "no active swap"),
    "kthreadd": (_pid2_is_kthreadd, "pid 2 of the host's /proc is not kthreadd (a pid namespace?)"),
    "no-legacy-irqs": (_no_legacy_irqs, "host has legacy ISA IRQs (0-15); the comparison needs none, as on the "
                                        "reference microVM"),
}


# -- gates -------------------------------------------------------------------------------


def _who() -> str:
    return "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"


def missing(kernel: str | None = None, min_kernel: str | None = None, arch: str | None = None,
            vendor: str | None = None, config: Iterable[str] = (), cpu_flags: Iterable[str] = (),
            caps: Iterable[str] = (), files: Iterable[str] = (), features: Iterable[str] = (),
            vsyscall: str | None = None) -> list[str]:
    """What the host lacks for a comparison, in words; [] if nothing.

    kernel="6.18": that major.minor; min_kernel="6.11": that or later;
    config=("CONFIG_X", "!CONFIG_Y"): built with X, without Y; features:
    names in FEATURES; vsyscall="xonly": the gate VMA's mode."""
    why = []
    rel = kernel_release()
    if kernel and kernel_version()[:2] != tuple(map(int, kernel.split(".")))[:2]:
        why.append(f"host kernel is {rel}; needs {kernel}")
    if min_kernel and kernel_version() < tuple(map(int, min_kernel.split("."))):
        why.append(f"host kernel is {rel}; needs {min_kernel} or later")
    if arch and machine_arch() != arch:
        why.append(f"host arch is {machine_arch()}; needs {arch}")
    if vendor and cpu_vendor() != vendor:
        why.append(f"host CPU is {cpu_vendor()}; the comparison needs {vendor}")
    unknown = []
    for opt in config:
        want, name = not opt.startswith("!"), opt.lstrip("!")
        have = config_option(name)
        if have is None:
            unknown.append(f"{name} {'on' if want else 'off'}")
        elif have != want:
            why.append(f"host kernel has {name}=y; needs it off" if have else f"host kernel lacks {name}")
    if unknown:
        why.append(f"host kernel config unknown (no /proc/config.gz, no /boot/config-{os.uname().release}); "
                   f"needs {', '.join(unknown)}")
    flags = cpu_flag_set()
    why += [f"host CPU lacks the {f} flag" for f in cpu_flags if f not in flags]
    why += [f"{_who()} lacks {c}" for c in caps if not has_cap(c)]
    why += [f"host has no {f}" for f in files if not os.path.exists(f)]
    why += [FEATURES[name][1] for name in features if not FEATURES[name][0]()]
    if vsyscall and vsyscall_mode() != vsyscall:
        why.append(f"host vsyscall mode is {vsyscall_mode()}; needs {vsyscall}")
    return why


def requires_host(**need) -> pytest.MarkDecorator:
    """A skipif mark: the test runs only where the host has all of `need`
    (the arguments of missing())."""
    why = missing(**need)
    return pytest.mark.skipif(bool(why), reason="; ".join(why))


def summary() -> str:
    """One line for pytest's header: the facts the gates look at."""
    lacks = [c for c in ("CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_DAC_OVERRIDE", "CAP_SETUID") if not has_cap(c)]
    where, _ = kernel_config()
    return (f"host: Linux {kernel_release()} {machine_arch()}, {cpu_vendor()}, {online_cpus()} CPUs online of "
            f"{possible_cpus()} possible (affinity {len(os.sched_getaffinity(0))}), {_who()}"
            + (f" lacking {', '.join(lacks)}" if lacks else "") + f"; kernel config: {where or 'unknown'}")
