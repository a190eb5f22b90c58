"""What a kernel thread does to itself once it runs.

kthreadd starts every kernel thread; the child inherits kthreadd's flags
(PF_KTHREAD, PF_NOFREEZE) and then its thread function or its creator
changes them: smpboot and per-CPU workers are bound with kthread_bind()
(PF_NO_SETAFFINITY), workqueue workers mark themselves PF_WQ_WORKER,
set_freezable() drops PF_NOFREEZE, kswapd and kcompactd name themselves,
sched_set_fifo() and the stop class make RT threads. The kind is known by
the name the creator gave (as ps users know them); checked against 6.18.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from procsim.task import (PF_KCOMPACTD, PF_KSWAPD, PF_MEMALLOC, PF_MEMALLOC_NOFS, PF_NO_SETAFFINITY,
                          PF_NOFREEZE, PF_SUPERPRIV, PF_WQ_WORKER, SCHED_FIFO, SCHED_OTHER)

MAX_RT_PRIO = 100
HIGHPRI_NICE_LEVEL = -20  # workqueue highpri pools and rescuers


@dataclass(frozen=True)
class KthreadKind:
    set_flags: int = 0
    clear_flags: int = 0
    bound: bool = False      # kthread_bind() to the CPU in its name
    policy: int = SCHED_OTHER
    rt_priority: int = 0
    nice: int = 0
    state: str = "S"         # where it waits: S, or I (TASK_IDLE) for workers


_FREEZABLE = PF_NOFREEZE  # set_freezable() clears it
_WORKER = PF_WQ_WORKER | PF_NO_SETAFFINITY  # create_worker(): kthread_bind_mask(), worker_attach_to_pool()
_FIFO = dict(policy=SCHED_FIFO, rt_priority=MAX_RT_PRIO // 2)  # sched_set_fifo()

# (comm pattern, kind), first match wins
KINDS: tuple[tuple[re.Pattern, KthreadKind], ...] = tuple((re.compile(p), k) for p, k in (
    (r"kworker/R-", KthreadKind(_WORKER, nice=HIGHPRI_NICE_LEVEL, state="I")),       # rescuer
    (r"kworker/\d+:\d+H", KthreadKind(_WORKER, bound=True, nice=HIGHPRI_NICE_LEVEL, state="I")),
    (r"kworker/\d+:", KthreadKind(_WORKER, bound=True, state="I")),                    # per-CPU pool
    (r"kworker/", KthreadKind(_WORKER, state="I")),                                     # unbound pool
    # the stop class: sched_set_stop_task() shows SCHED_FIFO at MAX_RT_PRIO - 1
    (r"migration/\d+$", KthreadKind(PF_NO_SETAFFINITY, bound=True, policy=SCHED_FIFO,
                                    rt_priority=MAX_RT_PRIO - 1)),
    (r"idle_inject/\d+$", KthreadKind(PF_NO_SETAFFINITY, bound=True, **_FIFO)),
    (r"(ksoftirqd|cpuhp)/\d+$", KthreadKind(PF_NO_SETAFFINITY, bound=True)),
    (r"(watchdogd|irq/)", KthreadKind(**_FIFO)),
    (r"kswapd", KthreadKind(PF_MEMALLOC | PF_KSWAPD, _FREEZABLE)),
    (r"kcompactd", KthreadKind(PF_KCOMPACTD, _FREEZABLE)),
    (r"jbd2/", KthreadKind(PF_MEMALLOC_NOFS, _FREEZABLE)),  # kjournald2: memalloc_nofs_save()
    (r"ksmd$", KthreadKind(clear_flags=_FREEZABLE, nice=5)),
    (r"khugepaged$", KthreadKind(clear_flags=_FREEZABLE, nice=19)),
    (r"(kauditd|oom_reaper)$", KthreadKind(clear_flags=_FREEZABLE)),
    (r"kdevtmpfs$", KthreadKind(PF_SUPERPRIV)),  # it mounts devtmpfs: capable() marks it
    (r"rcu_exp_", KthreadKind()),                 # kthread_worker threads sleep in S
    (r"(rcu_|kdamond)", KthreadKind(state="I")),
))
DEFAULT = KthreadKind()


def kind_of(comm: str) -> KthreadKind:
    for pattern, kind in KINDS:
        if pattern.match(comm):
            return kind
    return DEFAULT


def cpu_in_name(comm: str) -> int | None:
    """The CPU a per-CPU thread is named after (ksoftirqd/3, kworker/3:1H)."""
    m = re.search(r"/(\d+)(?::|$)", comm)
    return int(m.group(1)) if m else None
