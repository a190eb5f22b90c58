"""`[[cgroup]]` of a capture: for each cgroup a captured process is in
(and its ancestors), the controllers it enables for its children and the
limits set on it, read from the cgroup v2 files (/sys/fs/cgroup) and
written as scenario/cgroups.py takes them; what is at its default is left
out. A /sys without cgroup v2 gives none."""

from __future__ import annotations

from procsim.capture.source import Source

# scenario key -> (file, the kernel's default)
FILES = (("memory_min", "memory.min", "0"), ("memory_low", "memory.low", "0"),
         ("memory_high", "memory.high", "max"), ("memory_max", "memory.max", "max"),
         ("memory_swap_max", "memory.swap.max", "max"), ("memory_oom_group", "memory.oom.group", "0"),
         ("cpu_weight", "cpu.weight", "100"), ("cpu_max", "cpu.max", "max 100000"),
         ("pids_max", "pids.max", "max"))


def capture_cgroups(src: Source, paths: set[str]) -> list[dict]:
    if src.read("fs/cgroup/cgroup.controllers", sysfs=True, quiet=True) is None:
        return []
    wanted = {"/"}
    for p in paths:
        parts = p.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            wanted.add("/" + "/".join(parts[:i]))
    out = []
    for path in sorted(wanted, key=lambda p: (p.count("/") if p != "/" else 0, p)):
        rel = "fs/cgroup" + ("" if path == "/" else path)
        if src.read(f"{rel}/cgroup.controllers", sysfs=True, quiet=True) is None:
            src.warn(f"{src.path(rel, sysfs=True)}: not a cgroup, skipped")
            continue
        entry: dict = {"path": path}
        sub = (src.read(f"{rel}/cgroup.subtree_control", sysfs=True, quiet=True) or "").split()
        if sub:
            entry["subtree_control"] = " ".join(f"+{c}" for c in sub)
        if path != "/":
            for key, name, default in FILES:
                text = src.read(f"{rel}/{name}", sysfs=True, quiet=True)
                if text is not None and text.strip() != default:
                    v = text.strip()
                    entry[key] = int(v) if v.isdigit() else v
        if len(entry) > 1:
            out.append(entry)
    return out
