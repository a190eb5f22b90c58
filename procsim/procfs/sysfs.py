"""/sys: the few kernfs attributes procsim serves."""

from __future__ import annotations

import errno

from procsim.procfs import cgroupfs, idle_bitmap, modules, sysfs_block, sysfs_cpu, sysfs_mm, sysfs_net
from procsim.procfs.kinds import Bin, Dir, Show

_SYSFS_RO = dict(write_open_errno=errno.EACCES)


def _hugepages(kb: int) -> Dir:
    render, write = sysfs_mm.size_enabled(kb)
    return Dir.of(f"hugepages-{kb}kB", Show("enabled", render, 0o644, write))


SYS_ENTRIES = (
    sysfs_block.SYS_BLOCK,
    Dir.of("class", sysfs_block.SYS_CLASS_BLOCK, sysfs_net.CLASS_NET),
    Dir("dev", (sysfs_block.SYS_DEV_BLOCK,), 0o755),
    Dir.of("devices", Dir.of("system", sysfs_cpu.CPU, sysfs_cpu.NODE), Dir.of("virtual", sysfs_net.VIRTUAL_NET)),
    Dir.of("fs", cgroupfs.CGROUP_DIR),
    Dir.of("kernel", Dir.of("mm",
                            Dir.of("page_idle", Bin("bitmap", idle_bitmap.global_read, 0o600,
                                                    idle_bitmap.global_write)),
                            Dir.of("transparent_hugepage",
                                   Show("enabled", sysfs_mm.thp_enabled, 0o644, sysfs_mm.thp_enabled_write),
                                   Show("hpage_pmd_size", sysfs_mm.hpage_pmd_size, **_SYSFS_RO),
                                   *(_hugepages(kb) for kb in sysfs_mm.ANON_SIZES_KB)))),
    modules.SYS_MODULE,
)
SYS = Dir("sys", SYS_ENTRIES)
