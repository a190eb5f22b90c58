"""Restoring a captured task's counters (as checkpoint/restore does for
what it can): its start time, CPU times, page faults and context
switches, set once a captured machine is built (procsim/scenario/
captured.py) so that stat and status read back what the captured machine
showed. Checked before anything changes: EINVAL for a negative count or a
start in the future."""

from __future__ import annotations

import errno

from procsim.kernel import Kernel, KernelError
from procsim.fs.file import PIPE, SOCK
from procsim.task import PF_FORKNOEXEC, PF_SUPERPRIV
from procsim.units import PAGE_SIZE

TASK_COUNTERS = ("start_time", "utime", "stime", "nvcsw", "nivcsw", "min_flt", "maj_flt", "cpu", "sig_blocked",
                 "forknoexec", "superpriv")
# PF_* flags a restore sets or clears: forked and not exec'd since; used a capability (ns_capable)
PF_BOOLS = {"forknoexec": PF_FORKNOEXEC, "superpriv": PF_SUPERPRIV}
MM_FIELDS = ("start_code", "end_code", "start_data", "end_data", "start_stack", "arg_start", "arg_end",
             "env_start", "env_end", "cpumask", "hiwater_vm", "hiwater_rss",  # hiwater_*: pages
             "rss_approx",  # stat's rss (pages): the residues of a flat RSS counter
             "pgtables")    # VmPTE (pages): the tables the process holds, empty ones kept to make it up
GROUP_COUNTERS = ("dead_utime", "dead_stime", "dead_min_flt", "dead_maj_flt", "cutime", "cstime", "sig_ignore",
                  "sig_catch", "cmin_flt", "cmaj_flt")


def _check(values: dict[str, int], known: tuple[str, ...]) -> None:
    for key, v in values.items():
        if key not in known:
            raise KernelError(errno.EINVAL, f"restore: no counter {key!r}")
        if key in PF_BOOLS and isinstance(v, bool):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise KernelError(errno.EINVAL, f"restore: {key}: expected a non-negative integer, got {v!r}")


def restore_task(k: Kernel, tid: int, **values: int) -> None:
    """Set a task's counters (times in ns since boot / of CPU)."""
    with k.lock:
        t = k.task(tid)
        _check(values, TASK_COUNTERS)
        if "cpu" in values and values["cpu"] >= k.config.nr_cpus:
            raise KernelError(errno.EINVAL, f"restore: cpu {values['cpu']}: out of range")
        if "cpu" in values and t.on_cpu and values["cpu"] != t.cpu:
            # a runnable task its idle CPU picked: it belongs on the captured CPU's queue
            k.sched.switch_to(k.sched.cpus[t.cpu], None, preempt=True)
        if values.get("start_time", 0) > k.now:
            raise KernelError(errno.EINVAL, f"restore: start_time {values['start_time']} is after now ({k.now})")
        for key, v in values.items():
            if key in PF_BOOLS:
                t.flags = t.flags | PF_BOOLS[key] if v else t.flags & ~PF_BOOLS[key]
            else:
                setattr(t, key, v)
        k._changed("restore", tid=tid)


def restore_group(k: Kernel, pid: int, **values: int) -> None:
    """Set a thread group's counters: its dead threads' and waited-for children's times and faults."""
    with k.lock:
        tg = k.group(pid)
        _check(values, GROUP_COUNTERS)
        for key, v in values.items():
            setattr(tg, key, v)
        k._changed("restore", pid=tg.tgid)


def restore_mm(k: Kernel, pid: int, **values: int) -> None:
    """Set the mm's code, data, stack and argument bounds (prctl(PR_SET_MM),
    which CRIU uses for the same): what stat fields 26-28 and 45-51 show."""
    with k.lock:
        tg = k.group(pid)
        if tg.mm is None:
            raise KernelError(errno.EINVAL, "restore: a kernel thread has no mm")
        _check(values, MM_FIELDS)
        if values.get("cpumask", 0) >> k.config.nr_cpus:
            raise KernelError(errno.EINVAL, f"restore: cpumask {values['cpumask']:#x} has CPUs past nr_cpus")
        if "rss_approx" in values:  # stat's rss as the source's unfolded per-CPU deltas left it
            try:
                tg.mm.rss.restore_residues(values.pop("rss_approx"))
            except ValueError as e:
                raise KernelError(errno.EINVAL, f"restore: {e}") from None
        if "pgtables" in values:  # after the resident pages: the tables they need, then empty ones
            from procsim.mm.pgtable_restore import keep_empty_tables
            keep_empty_tables(tg.mm, values.pop("pgtables") * PAGE_SIZE)
        for key, v in values.items():
            setattr(tg.mm, key, v)
        k._changed("restore", pid=tg.tgid)


def set_ino(k: Kernel, pid: int, fd: int, ino: int) -> None:
    """A pipe's or socket's inode number as the captured machine had it
    (pipe:[N], socket:[N]); only those have numbers of their own."""
    with k.lock:
        t = k.task(pid)
        if t.files is None:
            raise KernelError(errno.ESRCH, f"{pid} has no files")
        try:
            f = t.files.get(fd)
        except OSError as e:
            raise KernelError(e.errno, str(e)) from None
        if f.kind not in (PIPE, SOCK) or isinstance(ino, bool) or not isinstance(ino, int) or ino < 1:
            raise KernelError(errno.EINVAL, f"restore: fd {fd} is not a pipe or socket, or ino {ino!r} is bad")
        f.ino = ino
        if f.kind == SOCK and f.private is not None:  # /proc/net/* show the sock's inode
            f.private.ino = ino
        k._changed("restore", pid=t.tgid)


def restore_files(k: Kernel, pid: int, fdsize: int | None = None, umask: int | None = None) -> None:
    """The fd table's size as the captured process had grown it (an fd past
    the size once opened, expand_files(), then closed: the table never
    shrinks) and its umask (umask(2)). EINVAL for a size that is not a
    power of two at least the current one, or a umask past 0777; EMFILE
    past fs.nr_open."""
    with k.lock:
        t = k.task(pid)
        if fdsize is not None:
            if t.files is None or isinstance(fdsize, bool) or not isinstance(fdsize, int) or fdsize < 1 \
                    or fdsize & (fdsize - 1) or fdsize < t.files.max_fds:
                raise KernelError(errno.EINVAL, f"restore: fdsize {fdsize!r}: not a power of two >= the table's")
            try:
                t.files.expand(fdsize - 1, k.files.nr_open)
            except OSError as e:
                raise KernelError(e.errno, str(e)) from None
        if umask is not None:
            if isinstance(umask, bool) or not isinstance(umask, int) or not 0 <= umask <= 0o777:
                raise KernelError(errno.EINVAL, f"restore: umask {umask!r}")
            t.tg.umask = umask
        k._changed("restore", pid=t.tgid)


def set_pgrp(k: Kernel, pid: int, pgid: int, outside: bool = False) -> None:
    """setpgid(pid, pgid) as the captured process had done it: its own
    group (pgid == pid) or one that exists in its session; EPERM for a
    session leader or a group of another session. `outside` (pid 1 only,
    pgid 0): a container's init, whose session and group are led from
    outside its pid namespace (stat shows 0 for both), as its children
    then inherit."""
    with k.lock:
        tg = k.group(pid)
        if outside:
            if pid != 1 or pgid != 0:
                raise KernelError(errno.EINVAL, "restore: a session from outside the namespace is init's, pgid 0")
            tg.sid = tg.pgid = 0
        else:
            if tg.sid == tg.tgid:
                raise KernelError(errno.EPERM, f"setpgid: {pid} leads its session")
            if pgid != tg.tgid and not any(g.pgid == pgid and g.sid == tg.sid for g in k.groups.values()):
                raise KernelError(errno.EPERM, f"setpgid: no process group {pgid} in session {tg.sid}")
            tg.pgid = pgid
        k._changed("setsid", pid=pid)


TASK_COMM_LEN = 16


def set_name(k: Kernel, tid: int, name: str) -> None:
    """prctl(PR_SET_NAME): the thread's comm, cut to TASK_COMM_LEN - 1 bytes."""
    with k.lock:
        t = k.task(tid)
        if not isinstance(name, str):
            raise KernelError(errno.EINVAL, f"PR_SET_NAME: expected a string, got {name!r}")
        t.comm = name.encode("utf-8", "surrogateescape")[:TASK_COMM_LEN - 1].decode("utf-8", "surrogateescape")
        k._changed("comm", tid=tid)


def populate(k: Kernel, tid: int, addr: int, length: int, write: bool, huge: bool = False) -> int:
    """Fill [addr, addr+length) as a restore writes a dump's pages back
    (access_remote_vm with FOLL_FORCE, as CRIU and ptrace pokes do): a
    write breaks COW even where the VMA is not writable (a relocated RELRO
    segment's dirty pages), and without `huge` no THP is faulted (the pages
    the dump had were small ones). Returns the faults taken."""
    from procsim.mm import memory
    from procsim.mm.vma import VM_NOHUGEPAGE
    with k.lock:
        t = k.task(tid)
        mm = t.tg.mm
        if mm is None:
            raise KernelError(errno.EINVAL, "populate: a kernel thread has no memory")
        end = addr + length
        vmas = list(mm.vmas.overlapping(addr, end))
        covered = addr
        for v in vmas:
            if v.start > covered:
                break
            covered = v.end
        if not vmas or covered < end or length <= 0 or addr % 4096 or length % 4096:
            raise KernelError(errno.EFAULT, f"populate: {addr:#x}+{length:#x} is not mapped")
        n = 0
        try:
            for v in vmas:
                saved = v.flags
                if not huge:
                    v.flags |= VM_NOHUGEPAGE
                try:
                    n += memory.fault_vma(mm, v, max(addr, v.start), min(end, v.end), write, k.vdso_pages)
                finally:
                    v.flags = saved
        finally:
            k._changed("mm", pid=t.tgid)
        return n


def restore_disk_stats(k: Kernel, bdev, stat: list[int]) -> None:
    """A device's counters as the captured /proc/diskstats line gave them
    (ms where it shows ms), less what the root's journal adds as the clock
    moves (blk_core.stats adds it back), so that the line reads back as
    captured. time_in_queue (field 11) is the sum of the four ns counters
    in ms: up to 999999 ns more on each makes its rounding the captured one."""
    from procsim.block.genhd import DiskStats
    from procsim.block.blk_core import journal_stats
    ms = 1_000_000
    f = stat + [0] * (17 - len(stat))
    s = DiskStats([f[0], f[4], f[11], f[15]], [f[1], f[5], f[12], 0], [f[2], f[6], f[13], 0],
                  [f[3] * ms, f[7] * ms, f[14] * ms, f[16] * ms], f[9] * ms)
    extra = f[10] - (f[3] + f[7] + f[14] + f[16])
    if 0 < extra <= 3:
        each = -(-extra * ms // 4)
        s.nsecs = [n + each for n in s.nsecs]
    with k.lock:
        blk = k.block
        if blk.journal and (bdev is blk.root or bdev is blk.root.disk.part0):
            s = s.plus(_negated(journal_stats(blk.root.disk, k.now)))
        bdev.stats = s
        bdev.pending = []
        k._changed("restore")


def _negated(s):
    from procsim.block.genhd import DiskStats
    return DiskStats([-x for x in s.ios], [-x for x in s.merges], [-x for x in s.sectors], [-x for x in s.nsecs],
                     -s.io_ticks)


def restore_netdev_stats(k: Kernel, name: str, stats: dict[str, int], summed: tuple[str, ...]) -> None:
    """An initial-namespace device's counters as its /proc/net/dev line
    gave them (`summed`: the counters a column adds to the first, zeroed)."""
    with k.lock:
        dev = k.net.net(k.init_ns["net"]).device(name)
        if dev is None:
            raise KernelError(errno.ENODEV, f"no device {name!r}")
        for key in summed:
            dev.stats[key] = 0
        dev.stats.update(stats)
        k._changed("restore")
