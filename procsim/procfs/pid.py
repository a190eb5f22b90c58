"""Per-process text files: status, stat, statm, cmdline, comm, environ
(spec §7, §8, §9). One render function per file."""

from __future__ import annotations

import errno

from procsim.arch import bugs
from procsim.nsproxy import pid_nrs, task_pid_ns
from procsim.bitmap import list_str, mask_str
from procsim.exec import argv_area, argv_len
from procsim.mm.mm import MM, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS
from procsim.procfs.context import Ctx
from procsim.resource import RLIMIT_RSS, RLIMIT_SIGPENDING
from procsim.task import CAP_FULL, STATE_NAMES, Task  # noqa: F401 (CAP_FULL: its old home)
from procsim.units import PAGE_SIZE, K, clock_t

NODE_BITS = 1024
MEMS_ALLOWED = mask_str(1, NODE_BITS)


def _kb(pages: int) -> str:
    return f"{K(pages):>8} kB"


def _text_bytes(mm: MM) -> int:
    return ((mm.end_code + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) - (mm.start_code & ~(PAGE_SIZE - 1))


def _group_times(t: Task, thread_view: bool) -> tuple[int, int, int, int]:
    """utime, stime (ns), minflt and majflt: the thread's own, or the group's
    total (exited threads included)."""
    if thread_view:
        return t.utime, t.stime, t.min_flt, t.maj_flt
    tg = t.tg
    u, s, f, mf = tg.dead_utime, tg.dead_stime, tg.dead_min_flt, tg.dead_maj_flt
    for x in tg.threads:
        u, s, f, mf = u + x.utime, s + x.stime, f + x.min_flt, mf + x.maj_flt
    return u, s, f, mf


def _ppid(t: Task) -> int:
    p = t.tg.parent
    return p.tgid if p is not None else 0


def _mm(ctx: Ctx) -> MM | None:
    """The task's own mm, as get_task_mm() sees it. A thread that has exited
    has none (exit_mm() cleared task->mm), even while its group lives on: a
    leader that exits before its threads shows no memory lines in status,
    zeros in statm and stat, and empty maps (checked on 6.18 with a main
    thread that called pthread_exit: `ps` prints RSS 0, VSZ 0, STAT Zl).
    The group's mm stays visible through the live threads' task views."""
    return None if ctx.task.dead else ctx.task.mm


def _nrs(k, gpid: int, ns) -> str:
    """pid_nr_ns() at each level from the initial namespace down to the
    task's (the levels a /proc of the initial namespace shows)."""
    if ns.level == 0:
        return str(gpid)
    return "\t".join(map(str, pid_nrs(k, gpid, ns)))


def status(ctx: Ctx) -> bytes:
    t, tg, k = ctx.task, ctx.task.tg, ctx.kernel
    c = tg.cred
    mm = _mm(ctx)
    name = t.comm.replace("\\", "\\\\").replace("\n", "\\n")
    out = [f"Name:\t{name}\n"]
    if not tg.zombie and not t.dead:  # exit_fs() cleared task->fs
        out.append(f"Umask:\t{tg.umask:04o}\n")
    state = "Z" if tg.zombie else t.state
    groups = " ".join(map(str, c.groups)) + " "  # trailing space even when empty
    pgid = tg.pgid
    pns = task_pid_ns(k, t)
    out.append(
        f"State:\t{STATE_NAMES[state]}\n"
        f"Tgid:\t{tg.tgid}\n"
        f"Ngid:\t0\n"
        f"Pid:\t{t.pid}\n"
        f"PPid:\t{_ppid(t)}\n"
        f"TracerPid:\t0\n"
        f"Uid:\t{c.uid}\t{c.euid}\t{c.suid}\t{c.fsuid}\n"
        f"Gid:\t{c.gid}\t{c.egid}\t{c.sgid}\t{c.fsgid}\n"
        f"FDSize:\t{t.files.max_fds if t.files is not None else 0}\n"  # 0: exit_files() cleared it
        f"Groups:\t{groups}\n"
        f"NStgid:\t{_nrs(k, tg.tgid, pns)}\n"
        f"NSpid:\t{_nrs(k, t.pid, pns)}\n"
        f"NSpgid:\t{_nrs(k, pgid, pns)}\n"
        f"NSsid:\t{_nrs(k, tg.sid, pns)}\n"
        f"Kthread:\t{1 if mm is None and not tg.zombie and tg.kthread else 0}\n")
    if mm is not None:
        text = min(_text_bytes(mm), mm.exec_vm * PAGE_SIZE)
        v = mm.rss.sums()
        anon, file, shmem, swap = v[MM_ANONPAGES], v[MM_FILEPAGES], v[MM_SHMEMPAGES], v[MM_SWAPENTS]
        rss = anon + file + shmem
        out.append(
            f"VmPeak:\t{_kb(max(mm.hiwater_vm, mm.total_vm))}\n"
            f"VmSize:\t{_kb(mm.total_vm)}\n"
            f"VmLck:\t{_kb(mm.locked_vm)}\n"
            f"VmPin:\t{_kb(mm.pinned_vm)}\n"
            f"VmHWM:\t{_kb(max(mm.hiwater_rss, rss))}\n"
            f"VmRSS:\t{_kb(rss)}\n"
            f"RssAnon:\t{_kb(anon)}\n"
            f"RssFile:\t{_kb(file)}\n"
            f"RssShmem:\t{_kb(shmem)}\n"
            f"VmData:\t{_kb(mm.data_vm)}\n"
            f"VmStk:\t{_kb(mm.stack_vm)}\n"
            f"VmExe:\t{text >> 10:>8} kB\n"
            f"VmLib:\t{(mm.exec_vm * PAGE_SIZE - text) >> 10:>8} kB\n"
            f"VmPTE:\t{mm.pgtable.pgtables_bytes() >> 10:>8} kB\n"
            f"VmSwap:\t{_kb(swap)}\n"
            f"HugetlbPages:\t{_kb(mm.hugetlb_usage)}\n"  # hugetlb_usage is in 4 KiB pages
            f"CoreDumping:\t0\n"
            f"THP_enabled:\t1\n"
            f"untag_mask:\t0xffffffffffffffff\n")
    nbits = k.config.nr_cpus
    c = tg.cred
    out.append(
        f"Threads:\t{len(tg.threads)}\n"
        f"SigQ:\t{k.ucounts.task(t).sigpending}/{tg.rlim[RLIMIT_SIGPENDING].cur}\n"
        f"SigPnd:\t{t.sig_pending:016x}\n"
        f"ShdPnd:\t0000000000000000\n"
        f"SigBlk:\t{t.sig_blocked:016x}\n"
        f"SigIgn:\t{tg.sig_ignore:016x}\n"
        f"SigCgt:\t{tg.sig_catch:016x}\n"
        f"CapInh:\t{c.cap_inheritable:016x}\n"
        f"CapPrm:\t{c.cap_permitted:016x}\n"
        f"CapEff:\t{c.cap_effective:016x}\n"
        f"CapBnd:\t{c.cap_bset:016x}\n"
        f"CapAmb:\t{c.cap_ambient:016x}\n"
        f"NoNewPrivs:\t{int(t.no_new_privs)}\n"
        f"Seccomp:\t{t.seccomp_mode}\n"
        f"Seccomp_filters:\t{t.seccomp_filters}\n"
        f"{bugs.status_lines(k, t)}"
        f"Cpus_allowed:\t{mask_str(t.cpus_allowed, nbits)}\n"
        f"Cpus_allowed_list:\t{list_str(t.cpus_allowed)}\n")
    if mm is not None and k.config.proc_cpus_active_mm:
        out.append(f"Cpus_active_mm:\t{mask_str(mm.cpumask, nbits)}\n"
                   f"Cpus_active_mm_list:\t{list_str(mm.cpumask)}\n")
    nv, niv = (t.nvcsw, t.nivcsw) if ctx.thread_view else (
        sum(x.nvcsw for x in tg.threads), sum(x.nivcsw for x in tg.threads))
    out.append(
        f"Mems_allowed:\t{MEMS_ALLOWED}\n"
        f"Mems_allowed_list:\t0\n"
        f"voluntary_ctxt_switches:\t{nv}\n"
        f"nonvoluntary_ctxt_switches:\t{niv}\n")
    return "".join(out).encode()


def stat(ctx: Ctx) -> bytes:
    t, tg = ctx.task, ctx.task.tg
    mm = _mm(ctx)
    permitted = ctx.may_ptrace()
    utime, stime, minflt, majflt = _group_times(t, ctx.thread_view)
    state = "Z" if tg.zombie else t.state
    nthreads = len(tg.threads)
    if mm is not None:
        # get_mm_counter_sum (as status and statm), or get_mm_rss if so configured
        rss = mm.rss.rss_approx() if ctx.kernel.config.stat_rss == "approx" else mm.rss_pages
        vsize = mm.total_vm * PAGE_SIZE
        code = (mm.start_code, mm.end_code) if permitted else (1, 1)
        stack = mm.start_stack if permitted else 0
        addrs = (mm.start_data, mm.end_data, mm.start_brk, mm.arg_start, mm.arg_end,
                 mm.env_start, mm.env_end) if permitted else (0,) * 7
    else:
        vsize = rss = stack = 0
        code = (0, 0)
        addrs = (0,) * 7
    wchan = 1 if state not in ("R",) and permitted and (ctx.thread_view or nthreads == 1) else 0
    exit_code = tg.exit_code if tg.zombie and permitted else 0  # already in wait(2) form
    fields = (
        state, _ppid(t), tg.pgid, tg.sid, tg.tty_nr, tg.tpgid, t.flags,
        minflt, tg.cmin_flt, majflt, tg.cmaj_flt,
        clock_t(utime), clock_t(stime), clock_t(tg.cutime), clock_t(tg.cstime),
        t.prio, t.nice, nthreads, 0, clock_t(t.start_time), vsize, rss, tg.rlim[RLIMIT_RSS].cur,
        code[0], code[1], stack, 0, 0,
        t.sig_pending & 0x7FFFFFFF, t.sig_blocked & 0x7FFFFFFF,
        tg.sig_ignore & 0x7FFFFFFF, tg.sig_catch & 0x7FFFFFFF,
        wchan, 0, 0, t.exit_signal, t.cpu, t.rt_priority, t.policy, 0, 0, 0,
        *addrs, exit_code,
    )
    return f"{t.pid} ({t.comm}) {' '.join(map(str, fields))}\n".encode()


def statm(ctx: Ctx) -> bytes:
    mm = _mm(ctx)
    if mm is None:
        return b"0 0 0 0 0 0 0\n"
    v = mm.rss.sums()
    anon, file, shmem = v[MM_ANONPAGES], v[MM_FILEPAGES], v[MM_SHMEMPAGES]
    text = _text_bytes(mm) >> 12
    return f"{mm.total_vm} {anon + file + shmem} {file + shmem} {text} 0 {mm.data_vm + mm.stack_vm} 0\n".encode()


def cmdline(ctx: Ctx) -> bytes:
    """get_mm_cmdline(): the argv strings, [arg_start, arg_end); but when the
    byte at arg_end - 1 is not a NUL (setproctitle() wrote over it), the
    title: the area up to its first NUL (included) within a page, as far
    as env_end (get_mm_proctitle)."""
    tg = ctx.task.tg
    if tg.mm is None:
        return b""
    area, n = argv_area(tg), argv_len(tg)
    if n == 0:
        return b""
    if area[n - 1]:
        page = area[:PAGE_SIZE]
        end = page.find(b"\0")
        return page if end < 0 else page[:end + 1]
    return area[:n]


def environ(ctx: Ctx) -> bytes:
    """environ_read(): [env_start, env_end) as the process left it."""
    tg = ctx.task.tg
    if tg.mm is None:
        return b""
    return argv_area(tg)[argv_len(tg):]


def comm(ctx: Ctx) -> bytes:
    return (ctx.task.comm + "\n").encode()


def comm_write(ctx: Ctx, data: bytes) -> int:
    """comm_write(): a task of the writer's own thread group gets the name
    (cut to 15 bytes); any other writer EINVAL. The whole count is taken."""
    me = ctx.kernel.tasks.get(ctx.caller.pid)
    if me is None or me.tg is not ctx.task.tg:
        raise OSError(errno.EINVAL, "comm: not the writer's thread group")
    ctx.kernel.set_comm(ctx.task.pid, data)
    return len(data)
