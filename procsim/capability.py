"""Capability sets across exec and setuid: the rules of security/commoncap.c
for the cases procsim models (no file capabilities, no setuid binaries, no
securebits other than keepcaps)."""
from __future__ import annotations

import errno
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import KernelError
from .task import CAP_FULL, Cred

if TYPE_CHECKING:
    from .kernel import Kernel


def bprm_creds_from_file(old: Cred) -> Cred:
    """cap_bprm_creds_from_file() for a binary without file caps or set-id
    bits: root (real or effective uid 0) gets pP' = bset | pI | pA, and
    pE' = pP' when the euid is 0; anyone else keeps only the ambient set
    (pP' = pE' = pA). pI, the bounding and ambient sets stay."""
    if old.uid == 0 or old.euid == 0:
        prm = (old.cap_bset | old.cap_inheritable | old.cap_ambient) & CAP_FULL
        eff = prm if old.euid == 0 else old.cap_ambient
    else:
        prm = eff = old.cap_ambient
    return replace(old, cap_permitted=prm, cap_effective=eff)


def task_fix_setuid(old: Cred, new: Cred, keepcaps: bool = False) -> Cred:
    """cap_task_fix_setuid() for a set*uid() call: leaving uid 0 in all of
    ruid/euid/suid clears pA, and pP and pE unless keepcaps; the euid
    leaving 0 clears pE, becoming 0 sets pE = pP."""
    was_root = 0 in (old.uid, old.euid, old.suid)
    prm, eff, amb = new.cap_permitted, new.cap_effective, new.cap_ambient
    if was_root and 0 not in (new.uid, new.euid, new.suid):
        amb = 0
        if not keepcaps:
            prm = eff = 0
    if old.euid == 0 and new.euid != 0:
        eff = 0
    elif old.euid != 0 and new.euid == 0:
        eff = prm
    return replace(new, cap_permitted=prm, cap_effective=eff, cap_ambient=amb)


CAP_SETS = ("inheritable", "permitted", "effective", "bounding", "ambient")
_FIELD = {"inheritable": "cap_inheritable", "permitted": "cap_permitted", "effective": "cap_effective",
          "bounding": "cap_bset", "ambient": "cap_ambient"}


def set_caps(k: "Kernel", pid: int, **sets: int) -> None:
    """Give process `pid` these capability sets (names as CAP_SETS), as a
    capset() plus PR_CAPBSET_DROP / PR_CAP_AMBIENT would: EINVAL for a bit
    past CAP_LAST_CAP, for pE not within pP, or pA not within pP & pI
    (the invariants commoncap.c keeps). Nothing changes on error."""
    with k.lock:
        tg = k.group(pid)
        new = tg.cred
        for name, value in sets.items():
            if name not in _FIELD:
                raise KernelError(errno.EINVAL, f"no capability set {name!r}")
            if value < 0 or value & ~CAP_FULL:
                raise KernelError(errno.EINVAL, f"{name}: {value:#x} has bits past CAP_LAST_CAP")
            new = replace(new, **{_FIELD[name]: value})
        if new.cap_effective & ~new.cap_permitted:
            raise KernelError(errno.EINVAL, "effective: not within permitted")
        if new.cap_ambient & ~(new.cap_permitted & new.cap_inheritable):
            raise KernelError(errno.EINVAL, "ambient: not within permitted and inheritable")
        tg.cred = new
        k._changed("cred", pid=tg.tgid)


def set_seccomp(k: "Kernel", tid: int, no_new_privs: bool, mode: int, filters: int) -> None:
    """A thread's PR_SET_NO_NEW_PRIVS and seccomp state (SECCOMP_MODE_STRICT
    1, SECCOMP_MODE_FILTER 2 with `filters` attached): EINVAL for another
    mode, filters without mode 2, or mode 2 with none."""
    with k.lock:
        t = k.task(tid)
        if mode not in (0, 1, 2):
            raise KernelError(errno.EINVAL, f"seccomp: mode {mode} is not 0, 1 or 2")
        if filters < 0 or (filters > 0) != (mode == 2):
            raise KernelError(errno.EINVAL, f"seccomp_filters: {filters} with mode {mode}")
        t.no_new_privs, t.seccomp_mode, t.seccomp_filters = no_new_privs, mode, filters
        k._changed("cred", pid=tid)
