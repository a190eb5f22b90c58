"""Capability sets across exec and setuid: the rules of security/commoncap.c
for the cases procsim models (no file capabilities, no setuid binaries, no
securebits other than keepcaps)."""
from __future__ import annotations

from dataclasses import replace

from .task import CAP_FULL, Cred


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
