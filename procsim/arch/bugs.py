"""Speculation control (arch/x86/kernel/cpu/bugs.c): the machine's
Speculative Store Bypass mode (ssb_mode) and its user-space Spectre v2
mode (spectre_v2_user_ibpb/stibp), and each task's PFA_SPEC_* atomic
flags that prctl(PR_SET_SPECULATION_CTRL) sets in the prctl and seccomp
modes. What status prints as Speculation_Store_Bypass and
SpeculationIndirectBranch is ssb_prctl_get() / ib_prctl_get() of these.

The flags are per task: fork copies them (dup_task_struct copies
atomic_flags), exec clears a PR_SPEC_DISABLE_NOEXEC request
(arch_setup_new_exec)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from procsim.errors import KernelError

if TYPE_CHECKING:
    from procsim.kernel import Kernel
    from procsim.task import Task

# ssb_mode (spec_store_bypass_select_mitigation): "not_affected" when the
# CPU lacks X86_BUG_SPEC_STORE_BYPASS
SSB_MODES = ("not_affected", "none", "disable", "prctl", "seccomp")
# spectre_v2_user (the stricter of ibpb and stibp): "strict" covers strict_preferred
IB_MODES = ("not_affected", "none", "strict", "prctl", "seccomp")

PR_SPEC_STORE_BYPASS = 0
PR_SPEC_INDIRECT_BRANCH = 1
PR_SPEC_NOT_AFFECTED = 0
PR_SPEC_PRCTL = 1 << 0
PR_SPEC_ENABLE = 1 << 1
PR_SPEC_DISABLE = 1 << 2
PR_SPEC_FORCE_DISABLE = 1 << 3
PR_SPEC_DISABLE_NOEXEC = 1 << 4

# task->atomic_flags bits (include/linux/sched.h)
PFA_SPEC_SSB_DISABLE = 1 << 3
PFA_SPEC_SSB_FORCE_DISABLE = 1 << 4
PFA_SPEC_IB_DISABLE = 1 << 5
PFA_SPEC_IB_FORCE_DISABLE = 1 << 6
PFA_SPEC_SSB_NOEXEC = 1 << 7

SSB_TEXT = {PR_SPEC_NOT_AFFECTED: "not vulnerable", PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE: "thread force mitigated",
            PR_SPEC_PRCTL | PR_SPEC_DISABLE: "thread mitigated", PR_SPEC_PRCTL | PR_SPEC_ENABLE: "thread vulnerable",
            PR_SPEC_DISABLE: "globally mitigated"}  # anything else: "vulnerable"
IB_TEXT = {PR_SPEC_NOT_AFFECTED: "not affected", PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE: "conditional force disabled",
           PR_SPEC_PRCTL | PR_SPEC_DISABLE: "conditional disabled",
           PR_SPEC_PRCTL | PR_SPEC_ENABLE: "conditional enabled", PR_SPEC_ENABLE: "always enabled",
           PR_SPEC_DISABLE: "always disabled"}  # anything else: "unknown"


def ssb_prctl_get(k: "Kernel", t: "Task") -> int:
    mode = k.config.ssb_mode
    if mode == "disable":
        return PR_SPEC_DISABLE
    if mode in ("prctl", "seccomp"):
        if t.spec_flags & PFA_SPEC_SSB_FORCE_DISABLE:
            return PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE
        if t.spec_flags & PFA_SPEC_SSB_NOEXEC:
            return PR_SPEC_PRCTL | PR_SPEC_DISABLE_NOEXEC
        if t.spec_flags & PFA_SPEC_SSB_DISABLE:
            return PR_SPEC_PRCTL | PR_SPEC_DISABLE
        return PR_SPEC_PRCTL | PR_SPEC_ENABLE
    return PR_SPEC_ENABLE if mode == "none" else PR_SPEC_NOT_AFFECTED


def ib_prctl_get(k: "Kernel", t: "Task") -> int:
    mode = k.config.spectre_v2_user
    if mode == "not_affected":
        return PR_SPEC_NOT_AFFECTED
    if mode == "none":
        return PR_SPEC_ENABLE
    if mode == "strict":
        return PR_SPEC_DISABLE
    if t.spec_flags & PFA_SPEC_IB_FORCE_DISABLE:
        return PR_SPEC_PRCTL | PR_SPEC_FORCE_DISABLE
    if t.spec_flags & PFA_SPEC_IB_DISABLE:
        return PR_SPEC_PRCTL | PR_SPEC_DISABLE
    return PR_SPEC_PRCTL | PR_SPEC_ENABLE


def status_lines(k: "Kernel", t: "Task") -> str:
    """task_seccomp()'s two speculation lines."""
    ssb = SSB_TEXT.get(ssb_prctl_get(k, t), "vulnerable")
    ib = IB_TEXT.get(ib_prctl_get(k, t), "unknown")
    return f"Speculation_Store_Bypass:\t{ssb}\nSpeculationIndirectBranch:\t{ib}\n"


CTRLS = {"enable": PR_SPEC_ENABLE, "disable": PR_SPEC_DISABLE, "force-disable": PR_SPEC_FORCE_DISABLE,
         "disable-noexec": PR_SPEC_DISABLE_NOEXEC}


def spec_ctrl_set(k: "Kernel", tid: int, which: int, ctrl: int) -> None:
    """prctl(PR_SET_SPECULATION_CTRL, which, ctrl) on thread `tid`
    (ssb_prctl_set / ib_prctl_set): ENXIO unless the machine's mode is
    prctl or seccomp, EPERM to re-enable after a force-disable, ERANGE for
    an unknown control or `which` (the prctl's own checks)."""
    with k.lock:
        t = k.task(tid)
        f = t.spec_flags
        if which == PR_SPEC_STORE_BYPASS:
            if k.config.ssb_mode not in ("prctl", "seccomp"):
                raise KernelError(errno.ENXIO, "PR_SET_SPECULATION_CTRL: store bypass is not under prctl control")
            if ctrl == PR_SPEC_ENABLE:
                if f & PFA_SPEC_SSB_FORCE_DISABLE:
                    raise KernelError(errno.EPERM, "PR_SET_SPECULATION_CTRL: force-disabled")
                f &= ~(PFA_SPEC_SSB_DISABLE | PFA_SPEC_SSB_NOEXEC)
            elif ctrl == PR_SPEC_DISABLE:
                f = (f | PFA_SPEC_SSB_DISABLE) & ~PFA_SPEC_SSB_NOEXEC
            elif ctrl == PR_SPEC_FORCE_DISABLE:
                f = (f | PFA_SPEC_SSB_DISABLE | PFA_SPEC_SSB_FORCE_DISABLE) & ~PFA_SPEC_SSB_NOEXEC
            elif ctrl == PR_SPEC_DISABLE_NOEXEC:
                if f & PFA_SPEC_SSB_FORCE_DISABLE:
                    raise KernelError(errno.EPERM, "PR_SET_SPECULATION_CTRL: force-disabled")
                f |= PFA_SPEC_SSB_DISABLE | PFA_SPEC_SSB_NOEXEC
            else:
                raise KernelError(errno.ERANGE, f"PR_SET_SPECULATION_CTRL: control {ctrl:#x}")
        elif which == PR_SPEC_INDIRECT_BRANCH:
            mode = k.config.spectre_v2_user
            if ctrl not in (PR_SPEC_ENABLE, PR_SPEC_DISABLE, PR_SPEC_FORCE_DISABLE):
                raise KernelError(errno.ERANGE, f"PR_SET_SPECULATION_CTRL: control {ctrl:#x}")
            if mode == "none":  # ib_prctl_set: enabling is a no-op, disabling impossible
                if ctrl == PR_SPEC_ENABLE:
                    return
                raise KernelError(errno.EPERM, "PR_SET_SPECULATION_CTRL: indirect branch speculation is on")
            if mode in ("not_affected", "strict"):
                if ctrl == PR_SPEC_ENABLE and mode == "not_affected":
                    return
                if ctrl != PR_SPEC_ENABLE and mode == "strict":
                    return
                raise KernelError(errno.EPERM, f"PR_SET_SPECULATION_CTRL: indirect branch mode {mode}")
            if ctrl == PR_SPEC_ENABLE:
                if f & PFA_SPEC_IB_FORCE_DISABLE:
                    raise KernelError(errno.EPERM, "PR_SET_SPECULATION_CTRL: force-disabled")
                f &= ~PFA_SPEC_IB_DISABLE
            elif ctrl == PR_SPEC_DISABLE:
                f |= PFA_SPEC_IB_DISABLE
            else:
                f |= PFA_SPEC_IB_DISABLE | PFA_SPEC_IB_FORCE_DISABLE
        else:
            raise KernelError(errno.ENODEV, f"PR_SET_SPECULATION_CTRL: no control {which}")
        t.spec_flags = f
        k._changed("cred", pid=t.tgid)


def exec_reset(t: "Task") -> None:
    """arch_setup_new_exec(): a PR_SPEC_DISABLE_NOEXEC request ends at exec."""
    if t.spec_flags & PFA_SPEC_SSB_NOEXEC:
        t.spec_flags &= ~(PFA_SPEC_SSB_DISABLE | PFA_SPEC_SSB_NOEXEC)


def modes_from_status(ssb: str, ib: str) -> tuple[str | None, str | None]:
    """The machine modes a status's two lines imply (what a capture of a
    machine without its sysfs vulnerabilities files can tell)."""
    ssb_mode = {"not vulnerable": "not_affected", "vulnerable": "none", "globally mitigated": "disable"}.get(
        ssb, "prctl" if ssb.startswith("thread ") else None)
    ib_mode = {"not affected": "not_affected", "always enabled": "none", "always disabled": "strict"}.get(
        ib, "prctl" if ib.startswith("conditional ") else None)
    return ssb_mode, ib_mode


def ctrls_from_status(ssb: str, ib: str) -> dict[str, str]:
    """The prctl controls that make a task's lines read `ssb` and `ib` (none for the defaults)."""
    out = {}
    s = {"thread mitigated": "disable", "thread force mitigated": "force-disable"}.get(ssb)
    if s:
        out["store_bypass"] = s
    i = {"conditional disabled": "disable", "conditional force disabled": "force-disable"}.get(ib)
    if i:
        out["indirect_branch"] = i
    return out
