"""Kernel threads against this host's real ones: flags (stat field 9),
exit_signal (38), nice, policy and rt_priority, and the CPU binding of
per-CPU threads. Each kind is compared with the host's threads of that kind
and skipped when the host has none (the set depends on config and drivers)."""

from __future__ import annotations

import errno
import os
import re

import pytest

from procsim.procfs.tree import ProcFS
from procsim.task import PF_SUPERPRIV

from procfs_helpers import read_all
from invariants import boot

_u = os.uname()
ON_618 = _u.release.startswith("6.18.") and _u.machine == "x86_64"
reason_618 = "kthread flags and names are those of 6.18 x86_64; the host runs " + _u.release

# stat fields (1-based, as proc(5) numbers them) read after the last ')'
FLAGS, NICE, EXIT_SIGNAL, RT_PRIORITY, POLICY = 9, 19, 38, 40, 41


def _fields(stat: str) -> tuple[str, list[str]]:
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    return comm, stat[stat.rindex(")") + 2:].split()


def _field(rest: list[str], n: int) -> int:
    return int(rest[n - 3])


def _host_kthreads() -> list[tuple[int, str, list[str], str]]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                comm, rest = _fields(f.read())
            with open(f"/proc/{d}/status") as f:
                status = f.read()
        except OSError:
            continue  # gone meanwhile
        if "\nKthread:\t1\n" in status:
            out.append((int(d), comm, rest, status))
    return out


HOST = _host_kthreads() if ON_618 else []
NCPU = os.cpu_count() or 1

# kind -> a pattern that picks the host's threads of that kind
KINDS = {
    "kthreadd": r"kthreadd$", "rescuer": r"kworker/R-", "percpu-worker": r"kworker/\d+:\d+(-|$)",
    "percpu-highpri-worker": r"kworker/\d+:\d+H", "unbound-worker": r"kworker/u\d+:",
    "ksoftirqd": r"ksoftirqd/", "migration": r"migration/", "cpuhp": r"cpuhp/", "idle_inject": r"idle_inject/",
    "watchdogd": r"watchdogd$", "irq-thread": r"irq/", "kswapd": r"kswapd", "kcompactd": r"kcompactd",
    "jbd2": r"jbd2/", "ksmd": r"ksmd$", "khugepaged": r"khugepaged$", "kauditd": r"kauditd$",
    "oom_reaper": r"oom_reaper$", "khungtaskd": r"khungtaskd$", "rcu-gp": r"rcu_(preempt|sched)$",
    "rcu-tasks": r"rcu_tasks_", "rcu-exp-worker": r"rcu_exp_", "pool_workqueue_release": r"pool_workqueue_release$",
}


def _sim(comm: str) -> tuple[list[str], str]:
    """The same kthread in a machine with the host's CPU count."""
    k = boot(nr_cpus=NCPU, kthreadd=comm != "kthreadd")
    pid = k.kthread(comm, pid=2 if comm == "kthreadd" else None)
    fs = ProcFS(k)
    _, rest = _fields(read_all(fs, f"/proc/{pid}/stat").decode())
    return rest, read_all(fs, f"/proc/{pid}/status").decode()


def _cpus_allowed(status: str) -> str:
    return re.search(r"^Cpus_allowed_list:\t(.*)$", status, re.M).group(1)


@pytest.mark.skipif(not ON_618, reason=reason_618)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kthread_kind_as_on_the_host(kind: str) -> None:
    pattern = re.compile(KINDS[kind])
    host = [h for h in HOST if pattern.match(h[1])]
    if not host:
        pytest.skip(f"the host has no {kind} kernel thread (config, drivers, or a pid namespace hides them)")
    for pid, comm, rest, status in host:
        srest, sstatus = _sim(comm)
        # PF_SUPERPRIV is set by a capable() check at run time (a writeback
        # worker that did one shows it), not by the kind
        want = _field(rest, FLAGS) & ~PF_SUPERPRIV
        assert _field(srest, FLAGS) & ~PF_SUPERPRIV == want, f"{comm}: flags {_field(srest, FLAGS):#x} vs {want:#x}"
        for n in (EXIT_SIGNAL, POLICY, RT_PRIORITY):
            assert _field(srest, n) == _field(rest, n), f"{comm}: field {n}"
        if kind != "unbound-worker":  # an unbound highpri pool's name does not say so (kworker/u9:0)
            assert _field(srest, NICE) == _field(rest, NICE), f"{comm}: nice"
        assert "\nKthread:\t1\n" in sstatus
        if kind in ("percpu-worker", "percpu-highpri-worker", "ksoftirqd", "migration", "cpuhp", "idle_inject"):
            assert _cpus_allowed(sstatus) == _cpus_allowed(status), f"{comm}: bound to the CPU in its name"


def test_kthread_flags_by_kind() -> None:
    """The values checked on the 6.18 reference VM, for hosts that lack the kinds."""
    k = boot(kthreadd=False)
    expect = {"kthreadd": (0x208040, 0), "kworker/2:1H-kblockd": (0x4208060, 17), "ksoftirqd/3": (0x4208040, 17),
              "kswapd0": (0x220840, 17), "khugepaged": (0x200040, 17), "rcu_preempt": (0x208040, 17)}
    fs = ProcFS(k)
    for comm, (flags, sig) in expect.items():
        pid = k.kthread(comm, pid=2 if comm == "kthreadd" else None)
        _, rest = _fields(read_all(fs, f"/proc/{pid}/stat").decode())
        assert (_field(rest, FLAGS), _field(rest, EXIT_SIGNAL)) == (flags, sig), comm
    assert k.task(k.kthread("kworker/2:1H-kblockd")).cpus_allowed == 1 << 2  # bound by its name
    # a thread of a process: exit_signal -1, and the fork flag but not the parent's worker bits
    tid = k.clone_thread(1)
    _, rest = _fields(read_all(fs, f"/proc/1/task/{tid}/stat").decode())
    assert _field(rest, EXIT_SIGNAL) == -1 and _field(rest, FLAGS) & 0x40


def test_bound_kthreads_refuse_setaffinity() -> None:
    """sched_setaffinity on a PF_NO_SETAFFINITY task is EINVAL (the host says so too)."""
    k = boot()
    pid = k.kthread("ksoftirqd/1", cpu=1)
    with pytest.raises(OSError) as e:
        k.set_affinity(pid, 0b1111)
    assert e.value.errno == errno.EINVAL and k.task(pid).cpus_allowed == 0b10
    free = k.kthread("khungtaskd")
    k.set_affinity(free, 0b1)  # an ordinary kthread may be moved
    assert k.task(free).cpus_allowed == 0b1


@pytest.mark.skipif(not ON_618, reason=reason_618)
def test_host_refuses_setaffinity_of_a_bound_kthread() -> None:
    bound = [pid for pid, comm, rest, _ in HOST if _field(rest, FLAGS) & 0x04000000]
    if not bound:
        pytest.skip("no PF_NO_SETAFFINITY kernel thread visible on the host")
    with pytest.raises(OSError) as e:
        os.sched_setaffinity(bound[0], range(NCPU))
    assert e.value.errno == errno.EINVAL
