"""`[machine]` of a capture: CPUs and their cpuinfo model, memory, swap,
THP settings, hugepages, the kernel's release and banner, the clock."""

from __future__ import annotations

import re

from procsim.capture.parse import parse_kv_kb
from procsim.capture.source import Source

KERNEL_RESERVED = 256 << 20  # what the model keeps from RAM: MemTotal + this = mem


def first_cpu_block(text: str) -> str:
    return text.split("\n\n", 1)[0].strip("\n") + "\n"


def capture_machine(src: Source) -> dict:
    m: dict = {}
    cpuinfo = src.read("cpuinfo")
    if cpuinfo is not None:
        n = len(re.findall(r"^processor\s*:", cpuinfo, re.M))
        if "vendor_id" in cpuinfo:
            m["arch"] = "x86"
            m["cpu"] = "captured"
            m["cpuinfo"] = first_cpu_block(cpuinfo)
        elif "CPU implementer" in cpuinfo:
            m["arch"] = "arm64"
        elif re.search(r"^isa\s*:", cpuinfo, re.M):
            m["arch"] = "riscv"
        else:
            src.warn(f"{src.path('cpuinfo')}: unknown format, the architecture is left to the default")
        if n:
            m["nr_cpus"] = n
    online = src.read("devices/system/cpu/online", sysfs=True, quiet=True)
    if "nr_cpus" not in m and online:
        m["nr_cpus"] = int(online.strip().split(",")[-1].split("-")[-1]) + 1
    meminfo = src.read("meminfo")
    if meminfo is not None:
        mi = parse_kv_kb(meminfo)
        if "MemTotal" in mi:
            m["mem"] = mi["MemTotal"] * 1024 + KERNEL_RESERVED
            m["kernel_reserved"] = KERNEL_RESERVED
        if mi.get("SwapTotal"):
            m["swap"] = (mi["SwapTotal"] + 4) * 1024  # the first page is the swap header
    nr_huge = src.read("sys/vm/nr_hugepages", quiet=True)
    if nr_huge and int(nr_huge) > 0:
        m["hugepages"] = int(nr_huge)
    thp = src.read("kernel/mm/transparent_hugepage/enabled", sysfs=True, quiet=True)
    if thp:
        mode = re.search(r"\[(\w+)\]", thp)
        if mode:
            m["thp_enabled"] = mode[1]
    sizes = {}
    for d in _sys_listdir(src, "kernel/mm/transparent_hugepage"):
        mm = re.fullmatch(r"hugepages-(\d+)kB", d)
        text = src.read(f"kernel/mm/transparent_hugepage/{d}/enabled", sysfs=True, quiet=True) if mm else None
        mode = re.search(r"\[(\w+)\]", text) if text else None
        if mode:
            sizes[mm[1]] = mode[1]
    if sizes:
        m["thp_sizes"] = dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))
    version = src.read("version")
    if version is not None and version.startswith("Linux version "):
        m["version"] = version.rstrip("\n")
    hostname = src.read("sys/kernel/hostname", quiet=True)
    if hostname:
        m["hostname"] = hostname.strip()
    pid_max = src.read("sys/kernel/pid_max", quiet=True)
    if pid_max:
        m["pid_max"] = int(pid_max)
    threads_max = src.read("sys/kernel/threads-max", quiet=True)
    if threads_max and threads_max.strip().isdigit():
        m["threads_max"] = int(threads_max)
    stat = src.read("stat")
    if stat:
        btime = re.search(r"^btime (\d+)", stat, re.M)
        if btime:
            m["btime"] = int(btime[1])
    m["clock"] = "manual"
    m["seed"] = 0
    return m


def uptime(src: Source) -> float | None:
    text = src.read("uptime")
    try:
        return float(text.split()[0]) if text else None
    except (ValueError, IndexError):
        src.warn(f"{src.path('uptime')}: unknown format")
        return None


def _sys_listdir(src: Source, rel: str) -> list[str]:
    import os
    try:
        return sorted(os.listdir(src.path(rel, sysfs=True)))
    except OSError:
        return []
