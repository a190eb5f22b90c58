"""execve (fs/exec.c): the new image's mm (procsim/binfmt_elf.py, or a
replayed layout: procsim/layout.py) replaces the old one, the other
threads die (de_thread), the task takes the new name."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.binfmt_elf import exec_mm
from procsim.errors import KernelError
from procsim.exit import mmput, release_thread
from procsim.layout import LayoutError, Replay, build as replay_layout
from procsim.mm.mm import MMError
from procsim.task import PF_FORKNOEXEC, PF_KTHREAD, PF_RANDOMIZE, Task

if TYPE_CHECKING:
    from procsim.kernel import Kernel


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
    t.flags = (t.flags & ~PF_FORKNOEXEC) | PF_RANDOMIZE
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
            self._changed("exec", pid=tg.tgid)

    def set_proctitle(self: "Kernel", pid: int, argv: list[str]) -> None:
        """A process rewriting its own argv area, as setproctitle() does
        (nginx workers, postgres backends): a userspace write, which
        /proc/PID/cmdline reads back."""
        with self.lock:
            tg = self.group(pid)
            tg.cmdline = list(argv)
            self._changed("cmdline", pid=tg.tgid)
