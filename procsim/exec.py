"""execve (fs/exec.c): the new image's mm (procsim/binfmt_elf.py, or a
replayed layout: procsim/layout.py) replaces the old one, the other
threads die (de_thread), the task takes the new name."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.arch import bugs
from procsim import capability
from procsim.binfmt_elf import exec_mm
from procsim.errors import KernelError
from procsim.exit import mmput, release_thread
from procsim.layout import LayoutError, Replay, build as replay_layout
from procsim.mm.mm import MMError
from procsim.task import PF_FORKNOEXEC, PF_KTHREAD, PF_RANDOMIZE, Task

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import ThreadGroup

TASK_COMM_LEN = 16


def _strings(strs: list[str]) -> bytes:
    return ("\0".join(strs) + "\0").encode() if strs else b""


def argv_area(tg: ThreadGroup) -> bytes:
    """The bytes from mm->arg_start to mm->env_end: the argv strings and
    then the environment's, as exec placed them (binfmt_elf.set_args), or
    as the process rewrote them since (write_argv_area)."""
    mm = tg.mm
    if mm is not None and mm.argv_area is not None:
        return mm.argv_area
    return _strings(tg.cmdline) + _strings(tg.environ)


def argv_len(tg: ThreadGroup) -> int:
    """mm->arg_end - mm->arg_start."""
    mm = tg.mm
    return mm.argv_len if mm is not None and mm.argv_area is not None else len(_strings(tg.cmdline))


def do_execve(k: Kernel, t: Task, path: str, argv: list[str], envp: list[str], layout: str | None,
              build_ids: dict[str, str] | None) -> None:
    """exec of `path` by `t` (checked by the syscall); the new mm is built,
    and for a layout checked, before anything else changes."""
    tg = t.tg
    replay = replay_mm(k, path, argv, envp, layout, build_ids)
    for other in list(tg.threads):  # de_thread: the other threads die
        if other is not t:
            release_thread(k, other)
    if t.pid != tg.tgid:
        # de_thread(): a non-leader that execs takes over the leader's pid
        del k.tasks[t.pid]
        t.pid = tg.tgid
        k.tasks[t.pid] = t
    old = tg.mm
    if replay is None:
        k.vfs.executable(path)  # an ELF object: it has a build ID
        mm = exec_mm(k.mem, k.vfs, k.rng, k.vdso_pages, path, argv, envp, t.cpu)
    else:
        mm = replay.commit()
    mm.next_trim_cpumask = k.jiffies + k.config.hz  # init_new_context(): first trim a second on
    tg.mm = mm
    mm.users = 1
    if old is not None:
        mmput(k, old)
    tg.cmdline, tg.environ, tg.exe = list(argv), list(envp), path
    tg.exe_file = k.vfs.files.get(path) or k.vfs.executable(path)
    k._exec_files(t)
    t.comm = path.rsplit("/", 1)[-1][:15]
    tg.cred = capability.bprm_creds_from_file(tg.cred)
    t.flags = (t.flags & ~PF_FORKNOEXEC) | PF_RANDOMIZE
    bugs.exec_reset(t)
    if t.on_cpu:
        k.sched._switch_mm(k.sched.cpus[t.cpu], mm)


def replay_mm(k: Kernel, path: str, argv: list[str], envp: list[str], layout: str | None,
              build_ids: dict[str, str] | None) -> Replay | None:
    """The mm of an exec with a layout, built and checked before anything
    changes (EINVAL if it cannot be replayed, ENOMEM if the hugetlb pool
    cannot cover its reservations); None without a layout."""
    if layout is None:
        if build_ids:
            raise KernelError(errno.EINVAL, "build_ids need a layout")
        return None
    try:
        return replay_layout(k.mem, k.vfs, k.vdso_pages, path, argv, envp, layout, build_ids or {})
    except LayoutError as e:
        raise KernelError(errno.EINVAL, str(e)) from None
    except MMError as e:
        raise KernelError(e.errno, str(e)) from None


class ExecSyscalls:
    """execve() and the argv area's rewrite (setproctitle) as the Kernel's entry points
    (a Kernel mixin)."""

    def exec(self: "Kernel", pid: int, path: str, argv: list[str], envp: list[str] | None = None,
             layout: str | None = None, build_ids: dict[str, str] | None = None) -> None:
        """execve: a fresh mm with a realistic layout (ELF segments of the
        executable, ld.so and libc, heap, stack, vvar, vdso); or, with
        `layout` (the text of a real /proc/PID/maps), exactly those VMAs,
        with `build_ids` (name -> hex) for their files (procsim/layout.py)."""
        with self.lock:
            t = self.task(pid)
            tg = t.tg
            if tg.zombie:
                raise KernelError(errno.ESRCH, f"{pid} is a zombie")
            if tg.mm is None and t.flags & PF_KTHREAD:
                raise KernelError(errno.EINVAL, "kernel threads do not exec")
            if not path.startswith("/"):
                raise KernelError(errno.ENOENT, f"exec path must be absolute: {path}")
            do_execve(self, t, path, argv, envp or [], layout, build_ids)
            self._changed("exec", pid=tg.tgid, tid=pid)

    def set_proctitle(self: "Kernel", pid: int, argv: list[str]) -> None:
        """A process rewriting its own argv area, as nginx's and postgres's
        setproctitle() do: the title's strings from the area's start, NULs
        after them up to the end of the environment (whose strings the
        program moved away first); a title longer than the whole area is
        cut so that its last byte stays a NUL. /proc/PID/cmdline then reads
        the area by get_mm_cmdline()'s rules (procsim/procfs/pid.py)."""
        with self.lock:
            tg = self.group(pid)
            area = len(argv_area(tg))
            title = ("\0".join(argv) + "\0").encode()[:max(0, area - 1)]
            self.write_argv_area(pid, title + bytes(area - len(title)))
            tg.cmdline = list(argv)

    def write_argv_area(self: "Kernel", pid: int, data: bytes, offset: int = 0) -> None:
        """A store by the process into its own argv and environment strings
        (the bytes from mm->arg_start to mm->env_end, at the top of its
        stack), as setproctitle() implementations do: EFAULT outside them."""
        with self.lock:
            tg = self.group(pid)
            if tg.mm is None or tg.zombie:
                raise KernelError(errno.ESRCH, f"{pid} has no address space")
            area = argv_area(tg)
            if offset < 0 or offset + len(data) > len(area):
                raise KernelError(errno.EFAULT, f"argv area is {len(area)} bytes")
            mm = tg.mm
            if mm.argv_area is None:
                mm.argv_len = len(_strings(tg.cmdline))
            mm.argv_area = area[:offset] + bytes(data) + area[offset + len(data):]
            self._changed("cmdline", pid=tg.tgid)

    def set_comm(self: "Kernel", tid: int, name: bytes) -> None:
        """__set_task_comm(): the first TASK_COMM_LEN - 1 bytes of `name`, up
        to a NUL (a newline is kept, as comm_write() passes it on)."""
        with self.lock:
            t = self.task(tid)
            if t.dead:
                raise KernelError(errno.ESRCH, f"{tid} has exited")
            t.comm = name[:TASK_COMM_LEN - 1].split(b"\0", 1)[0].decode("utf-8", "replace")
            self._changed("comm", tid=tid)
