"""cgroup v2 (kernel/cgroup/): the default hierarchy and its controllers.

  core.py        membership (cgroup.c): nodes by path, each thread group's
                 cgroup, migration, subtree_control, which css a cgroup has
  memcontrol.py  the memory controller (mm/memcontrol.c): page counters,
                 charges by frame, limits, reclaim and the memcg OOM killer
  cpu.py         the cpu controller's files (kernel/sched/core.c): cpu.max,
                 cpu.weight, and cpu.stat from the time charged
  io.py          the io controller (block/blk-cgroup.c): bios charged at
                 submission to their cgroup, io.stat per disk
  pids.py        the pids controller (kernel/cgroup/pids.c): pids.max at fork
  syscalls.py    the writes and commands that change the hierarchy
"""

from procsim.cgroup.core import (ROOT_CONTROLLERS, SLICE_CONTROLLERS, SUBSYS, Cgroup, CgroupRoot,  # noqa: F401
                                 normalise, path_from)
