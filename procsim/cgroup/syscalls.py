"""The calls that change the hierarchy and its limits, as module functions
taking the kernel (a mkdir/rmdir in /sys/fs/cgroup, a write to one of its
files): each checks everything first and fails with Linux's errno,
changing nothing, or records the change."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.cgroup import cpu as cgcpu
from procsim.cgroup import blk_throttle, freezer, kill, memcontrol, pids
from procsim.cgroup.core import PIDS_MAX, SUBSYS, Cgroup
from procsim.errors import KernelError
from procsim.kstrtox import kstrtoint, kstrtoll, kstrtoull, strstrip
from procsim.sched_fair import NICE_0_LOAD, WEIGHT_IDLEPRIO
from procsim.task import PF_KTHREAD, PF_NO_SETAFFINITY

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def _os(e: OSError) -> KernelError:
    return KernelError(e.errno, str(e.strerror or e))


def lookup(k: "Kernel", path: str) -> Cgroup:
    try:
        return k.cgroups.get(path)
    except OSError as e:
        raise _os(e) from None


def mkdir(k: "Kernel", path: str) -> None:
    """cgroup_mkdir(): EEXIST, ENOENT without the parent."""
    with k.lock:
        try:
            k.cgroups.mkdir(path)
        except OSError as e:
            raise _os(e) from None
        k._changed("cgroup", path=path)


def rmdir(k: "Kernel", path: str) -> None:
    """cgroup_rmdir(): EBUSY while populated or with children; its charges
    go to its parent."""
    with k.lock:
        try:
            cg = k.cgroups.get(path)
            k.cgroups.rmdir(path)
        except OSError as e:
            raise _os(e) from None
        pids.cgroup_removed(k, cg)  # its zombies leave the tree's counts with it
        k._changed("cgroup", path=path)


def attach(k: "Kernel", pid: int, path: str, create: bool = False) -> None:
    """A write of `pid` to PATH/cgroup.procs (__cgroup_procs_write): the
    whole thread group moves; ESRCH for no such process (or a zombie),
    EINVAL for a kernel thread bound to its CPUs, EBUSY for a cgroup with
    controllers enabled for its children. Its charges stay where they are."""
    with k.lock:
        t = k.tasks.get(pid)
        if t is None or t.dead and not t.is_leader:
            raise KernelError(errno.ESRCH, f"no such task {pid}")
        tg = t.tg
        if tg.zombie:
            raise KernelError(errno.ESRCH, f"{pid} is a zombie")
        # kthreadd (no_cgroup_migration, cgroup_init_kthreadd) and CPU-bound kthreads
        if tg.leader.flags & PF_KTHREAD and (tg.leader.flags & PF_NO_SETAFFINITY or tg.parent is None):
            raise KernelError(errno.EINVAL, f"{pid}: a kernel thread that may not move")
        try:
            if create:
                k.cgroups.mkdir_p(path)
            tg.cgroup = k.cgroups.attach(tg.tgid, tg.cgroup, path)
        except OSError as e:
            raise _os(e) from None
        pids.migrated(k, tg)  # pids_can_attach(): its tasks' charge moves with it
        freezer.migrate(k, tg)  # cgroup_freezer_migrate_task(): frozen or thawed as its new cgroup is
        k._changed("cgroup", pid=pid)


def subtree_control(k: "Kernel", path: str, buf: bytes) -> None:
    """cgroup_subtree_control_write(): space-separated "+name"/"-name";
    EINVAL for a token that is neither or names no controller."""
    cg = lookup(k, path)
    enable: set[str] = set()
    disable: set[str] = set()
    for tok in strstrip(buf).split(b" "):
        if not tok:
            continue
        name = tok[1:].decode(errors="replace")
        if tok[:1] not in (b"+", b"-") or name not in SUBSYS:
            raise KernelError(errno.EINVAL, f"cgroup.subtree_control: {tok!r}")
        (enable if tok[:1] == b"+" else disable).add(name)
        (disable if tok[:1] == b"+" else enable).discard(name)
    with k.lock:
        try:
            k.cgroups.set_subtree_control(cg, enable, disable)
        except OSError as e:
            raise _os(e) from None
        k._changed("cgroup", path=path)


def _memcg(k: "Kernel", cg: Cgroup) -> memcontrol.MemCgroup:
    if cg.parent is None or cg.memcg is None:
        raise KernelError(errno.ENOENT, f"{cg.path}: no memory controller")
    return cg.memcg


def set_memory(k: "Kernel", path: str, which: str, buf: bytes) -> None:
    """memory.{max,high,low,min,swap.max}: "max" or a size (memparse)."""
    cg = lookup(k, path)
    m = _memcg(k, cg)
    try:
        pages = memcontrol.page_counter_memparse(buf)
    except ValueError as e:
        raise KernelError(errno.EINVAL, str(e)) from None
    with k.lock:
        if which in ("max", "high"):
            try:
                with k.memcg.charging(None):
                    k.memcg.set_limit(m, which, pages)
            finally:
                k._changed("cgroup", path=path)
        else:
            setattr(m, {"swap.max": "swap_max"}.get(which, which), pages)
            k._changed("cgroup", path=path)


def memory_reclaim(k: "Kernel", path: str, buf: bytes) -> None:
    """memory_reclaim() -> user_proactive_reclaim(): "SIZE [swappiness=N|
    swappiness=max]"; EINVAL for no size, an unknown token or a swappiness
    outside 0..200; EAGAIN when reclaim cannot free that much. The root
    memcg too (proactive reclaim of the whole machine)."""
    cg = lookup(k, path)
    m = cg.memcg if cg.parent is not None else k.memcg.root
    if m is None:
        raise KernelError(errno.ENOENT, f"{path}: no memory controller")
    buf = strstrip(buf)
    nbytes, rest = memcontrol.memparse(buf)
    if rest == buf:
        raise KernelError(errno.EINVAL, "memory.reclaim: not a size")
    swappiness = None
    for tok in strstrip(rest).split(b" "):
        if not tok:
            continue
        if tok == b"swappiness=max":
            swappiness = memcontrol.SWAPPINESS_ANON_ONLY
            continue
        if not tok.startswith(b"swappiness="):
            raise KernelError(errno.EINVAL, f"memory.reclaim: {tok!r}")
        try:
            swappiness = kstrtoint(tok[len(b"swappiness="):], 0)
        except OSError:
            raise KernelError(errno.EINVAL, f"memory.reclaim: {tok!r}") from None
        if not 0 <= swappiness <= 200:
            raise KernelError(errno.EINVAL, "memory.reclaim: swappiness 0..200")
    with k.lock:
        try:
            k.memcg.proactive_reclaim(m, nbytes // memcontrol.PAGE_SIZE, swappiness)
        finally:
            k._changed("cgroup", path=path)


def _flag(buf: bytes, parse, name: str, bad: int = errno.EINVAL) -> bool:
    """A 0/1 control file's value: the kstrto* errno, `bad` for any other number."""
    try:
        v = parse(strstrip(buf), 0)
    except OSError as e:
        raise KernelError(e.errno, name) from None
    if v not in (0, 1):
        raise KernelError(bad, f"{name}: 0 or 1")
    return bool(v)


def set_oom_group(k: "Kernel", path: str, buf: bytes) -> None:
    m = _memcg(k, lookup(k, path))
    v = _flag(buf, kstrtoint, "memory.oom.group")
    with k.lock:
        m.oom_group = int(v)
        k._changed("cgroup", path=path)


def _cpu_css(k: "Kernel", path: str) -> Cgroup:
    cg = lookup(k, path)
    if cg.parent is None or not cg.has_css("cpu"):
        raise KernelError(errno.ENOENT, f"{path}: no cpu controller")
    return cg


def _set_bandwidth(k: "Kernel", cg: Cgroup, period_us: int, quota_us: int, burst_us: int) -> None:
    """tg_set_bandwidth(): the checks, then tg_set_cfs_bandwidth() in ns."""
    cgcpu.check_bandwidth(period_us, quota_us, burst_us)
    with k.lock:
        # the time so far is charged under the old limits before they change
        quota = None if quota_us == cgcpu.RUNTIME_INF else quota_us * 1000
        k.cfs_bw.set_bandwidth(cg, period_us * 1000, quota, burst_us * 1000)
        k._changed("cgroup", path=cg.path)


def set_cpu_max(k: "Kernel", path: str, buf: bytes) -> None:
    """cpu_max_write(): "$MAX [$PERIOD]" (cpu_period_quota_parse), the burst kept."""
    cg = _cpu_css(k, path)
    period, _, burst = cgcpu.bandwidth_us(cg)
    quota, period = cgcpu.parse_cpu_max(buf, period)
    _set_bandwidth(k, cg, period, quota, burst)


def set_cpu_max_burst(k: "Kernel", path: str, buf: bytes) -> None:
    """cpu_burst_write_u64(): kstrtoull, then tg_set_bandwidth() (at most the quota)."""
    cg = _cpu_css(k, path)
    try:
        burst = kstrtoull(strstrip(buf), 0)
    except OSError as e:
        raise KernelError(e.errno, "cpu.max.burst") from None
    period, quota, _ = cgcpu.bandwidth_us(cg)
    _set_bandwidth(k, cg, period, quota, burst)


def set_cpu_weight(k: "Kernel", path: str, buf: bytes) -> None:
    """cpu_weight_write_u64(): kstrtoull, then ERANGE outside 1..10000."""
    cg = _cpu_css(k, path)
    try:
        w = kstrtoull(strstrip(buf), 0)
    except OSError as e:
        raise KernelError(e.errno, "cpu.weight") from None
    if not cgcpu.CGROUP_WEIGHT_MIN <= w <= cgcpu.CGROUP_WEIGHT_MAX:
        raise KernelError(errno.ERANGE, "cpu.weight: 1..10000")
    if cg.sched_idle:
        raise KernelError(errno.EINVAL, "cpu.weight: an idle group's weight is fixed (sched_group_set_shares)")
    with k.lock:
        cg.shares = cgcpu.weight_from_cgroup(w)
        k._changed("cgroup", path=path)


def set_cpu_weight_nice(k: "Kernel", path: str, buf: bytes) -> None:
    """cpu_weight_nice_write_s64(): kstrtoll, ERANGE outside -20..19, the
    nice's weight as the group's shares."""
    cg = _cpu_css(k, path)
    try:
        nice = kstrtoll(strstrip(buf), 0)
    except OSError as e:
        raise KernelError(e.errno, "cpu.weight.nice") from None
    if not -20 <= nice <= 19:
        raise KernelError(errno.ERANGE, "cpu.weight.nice: -20..19")
    if cg.sched_idle:
        raise KernelError(errno.EINVAL, "cpu.weight.nice: an idle group's weight is fixed (sched_group_set_shares)")
    with k.lock:
        cg.shares = cgcpu.SCHED_PRIO_TO_WEIGHT[nice + 20]
        k._changed("cgroup", path=path)


def set_cpu_idle(k: "Kernel", path: str, buf: bytes) -> None:
    """cpu_idle_write_s64() -> sched_group_set_idle(): kstrtoll, EINVAL
    outside 0..1; an idle group's shares are WEIGHT_IDLEPRIO (3), and
    leaving idle sets them back to NICE_0_LOAD (cpu.weight 100)."""
    cg = _cpu_css(k, path)
    v = _flag(buf, kstrtoll, "cpu.idle")
    with k.lock:
        if cg.sched_idle != v:
            cg.sched_idle = v
            cg.shares = WEIGHT_IDLEPRIO if v else NICE_0_LOAD
        k._changed("cgroup", path=path)


def set_kill(k: "Kernel", path: str, buf: bytes) -> None:
    """cgroup_kill_write() (procsim/cgroup/kill.py); the root has no cgroup.kill."""
    cg = lookup(k, path)
    if cg.parent is None:
        raise KernelError(errno.ENOENT, "the root has no cgroup.kill")
    kill.parse(buf)
    with k.lock:
        kill.cgroup_kill(k, cg)
        k._changed("cgroup", path=path)


def set_freeze(k: "Kernel", path: str, buf: bytes) -> None:
    """cgroup_freeze_write(): kstrtoint base 0, ERANGE outside 0..1 (as the host answers)."""
    cg = lookup(k, path)
    if cg.parent is None:
        raise KernelError(errno.ENOENT, "the root has no cgroup.freeze")
    v = _flag(buf, kstrtoint, "cgroup.freeze", errno.ERANGE)
    with k.lock:
        freezer.cgroup_freeze(k, cg, v)
        k._changed("cgroup", path=path)


def set_io_max(k: "Kernel", path: str, buf: bytes) -> None:
    """tg_set_limit(): "MAJ:MIN key=value ..." (blk_throttle.parse_limit)."""
    cg = lookup(k, path)
    if cg.parent is None or not cg.has_css("io"):
        raise KernelError(errno.ENOENT, f"{path}: no io controller")
    dev, limits = blk_throttle.parse_limit(k, buf, cg)
    with k.lock:
        blk_throttle.set_limit(k, cg, dev, limits)
        k._changed("cgroup", path=path)


def set_io_weight(k: "Kernel", path: str, buf: bytes) -> None:
    """io.weight (blkcg's cfq/bfq-less default: the io cost model's ioc_weight_write)."""
    cg = lookup(k, path)
    if cg.parent is None or not cg.has_css("io"):
        raise KernelError(errno.ENOENT, f"{path}: no io controller")
    key, w = blk_throttle.parse_weight(k, buf)
    with k.lock:
        if w is None:
            cg.io_weight.pop(key, None)
        else:
            cg.io_weight[key] = w
        k._changed("cgroup", path=path)


def set_pids_max(k: "Kernel", path: str, buf: bytes) -> None:
    """pids_max_write(): "max" or 0..PID_MAX_LIMIT (kstrtoll); EINVAL else."""
    cg = lookup(k, path)
    if cg.parent is None or not cg.has_css("pids"):
        raise KernelError(errno.ENOENT, f"{path}: no pids controller")
    buf = strstrip(buf)
    if buf == b"max":
        limit = PIDS_MAX
    else:
        try:
            limit = kstrtoll(buf, 0)
        except OSError as e:
            raise KernelError(e.errno, "pids.max") from None
        if limit < 0 or limit >= PIDS_MAX:
            raise KernelError(errno.EINVAL, "pids.max: 0..4194304 or max")
    with k.lock:
        cg.pids_max = limit
        k._changed("cgroup", path=path)


# a cgroup file a write goes to -> its handler (path, bytes)
WRITERS = {
    "cgroup.subtree_control": subtree_control,
    "memory.max": lambda k, p, b: set_memory(k, p, "max", b),
    "memory.high": lambda k, p, b: set_memory(k, p, "high", b),
    "memory.low": lambda k, p, b: set_memory(k, p, "low", b),
    "memory.min": lambda k, p, b: set_memory(k, p, "min", b),
    "memory.swap.max": lambda k, p, b: set_memory(k, p, "swap.max", b),
    "memory.oom.group": set_oom_group,
    "memory.reclaim": memory_reclaim,
    "cpu.max": set_cpu_max,
    "cpu.max.burst": set_cpu_max_burst,
    "cpu.weight": set_cpu_weight,
    "cpu.weight.nice": set_cpu_weight_nice,
    "cgroup.freeze": set_freeze,
    "cpu.idle": set_cpu_idle,
    "cgroup.kill": set_kill,
    "io.max": set_io_max,
    "io.weight": set_io_weight,
    "pids.max": set_pids_max,
}


def procs_write(k: "Kernel", path: str, buf: bytes) -> None:
    """cgroup.procs: one pid (kstrtoint, base 0) per write."""
    try:
        pid = kstrtoint(strstrip(buf), 0)
    except OSError as e:
        raise KernelError(e.errno, "cgroup.procs: not a pid") from None
    if pid < 0:
        raise KernelError(errno.EINVAL, "cgroup.procs: not a pid")
    attach(k, pid, path)


def threads_write(k: "Kernel", path: str, buf: bytes) -> None:
    """cgroup.threads of a domain cgroup: threads move only inside a
    threaded subtree (none here): EOPNOTSUPP."""
    lookup(k, path)
    raise KernelError(errno.EOPNOTSUPP, f"{path} is not threaded")


WRITERS.update({"cgroup.procs": procs_write, "cgroup.threads": threads_write})


def write(k: "Kernel", path: str, name: str, buf: bytes) -> None:
    """A write of `buf` to the file `name` of cgroup `path`."""
    w = WRITERS.get(name)
    if w is None:
        raise KernelError(errno.EINVAL, f"{name}: not a writable cgroup file")
    w(k, path, buf)


class CgroupSyscalls:
    """The hierarchy's entry points as Kernel methods (a Kernel mixin)."""

    def cgroup_mkdir(self: "Kernel", path: str) -> None:
        mkdir(self, path)

    def cgroup_rmdir(self: "Kernel", path: str) -> None:
        rmdir(self, path)

    def cgroup_attach(self: "Kernel", pid: int, path: str, create: bool = False) -> None:
        """A write of `pid` to PATH/cgroup.procs: the whole thread group moves."""
        attach(self, pid, path, create)

    def cgroup_write(self: "Kernel", path: str, name: str, data: bytes) -> None:
        """A write of `data` to the file `name` of cgroup `path`."""
        write(self, path, name, data)
