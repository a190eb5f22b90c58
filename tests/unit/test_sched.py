"""mm_cpumask and TLB shootdowns at the kernel level: the behaviours of
seed-mechanisms §1.6 (items 1-7, 10, 11), arm64 never_set and riscv never_clear."""

from __future__ import annotations

import pytest

from procsim import Kernel, KernelConfig, arch, mm_cpumask
from procsim.bitmap import list_str, mask_str
from procsim.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE
from procsim.procfs import pid as P
from procsim.procfs.context import Caller, Ctx
from invariants import check_world
import invariants

PAGE = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
BASE = 0x100000000        # 2 MiB aligned, free in every exec layout
LONELY = 0x200000000      # a 2 MiB region of its own: unmapping it frees its page table


def boot(**kw) -> Kernel:
    kw.setdefault("nr_cpus", 8)
    return invariants.boot(**kw)


@pytest.fixture
def k() -> Kernel:
    return boot()


def spawn(k: Kernel) -> int:
    pid = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    # a few touched pages so that unmapping one of them frees no page table
    k.mmap(pid, 8 * PAGE, RW, ANON | MAP_FIXED, BASE)
    k.touch(pid, BASE, 8 * PAGE)
    return pid


def mask(k: Kernel, pid: int) -> tuple[str, str]:
    mm = k.group(pid).mm
    return mask_str(mm.cpumask, k.config.nr_cpus), list_str(mm.cpumask)


def tlb(k: Kernel) -> list[int]:
    return [c.irq_tlb_count for c in k.sched.cpus]


def bump(before: list[int], **cpus: int) -> list[int]:
    out = list(before)
    for name, n in cpus.items():
        out[int(name[3:])] += n
    return out


def unmap_one_page(k: Kernel, tid: int, i: int = 0) -> None:
    k.munmap(tid, BASE + i * PAGE, PAGE)


def status(k: Kernel, tid: int) -> dict[str, str]:
    text = P.status(Ctx(k, Caller(1, 0, 0), k.tasks[tid], tid != k.tasks[tid].tgid)).decode()
    return dict(line.split(":\t", 1) for line in text.splitlines())


# 1 ---------------------------------------------------------------------------------


def test_1_running_on_cpu3(k):
    p = spawn(k)
    assert mask(k, p) == ("00", "")  # created, never run
    k.run(p, 3)
    assert mask(k, p) == ("08", "3")
    s = status(k, p)
    assert s["Cpus_active_mm"] == "08" and s["Cpus_active_mm_list"] == "3"
    check_world(k)


# 2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cpu3_then", ["idle", "other"])
def test_2_migration_keeps_the_old_cpu(k, cpu3_then):
    p, q = spawn(k), spawn(k)
    before = tlb(k)
    k.run(p, 3)
    if cpu3_then == "idle":
        k.idle(3)
    else:
        k.run(q, 3)
    k.run(p, 5)
    assert mask(k, p) == ("28", "3,5")
    assert tlb(k) == before  # no shootdown happened
    check_world(k)


# 3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cpu3_then", ["idle", "other"])
def test_3_flush_before_the_trim_deadline_is_local(k, cpu3_then):
    p, q = spawn(k), spawn(k)
    k.run(p, 3)
    k.idle(3) if cpu3_then == "idle" else k.run(q, 3)
    k.run(p, 5)
    before, local = tlb(k), k.sched.tlb.local_flush_one
    k.advance(0.5)  # < 1 s after the mm was created
    unmap_one_page(k, p)
    assert mask(k, p) == ("28", "3,5")
    assert tlb(k) == before              # CPU 3 not IPI'd, CPU 5 flushed itself
    assert k.sched.tlb.local_flush_one == local + 1
    check_world(k)


# 4 ---------------------------------------------------------------------------------


def test_4_trim_after_the_deadline_reaches_a_cpu_running_another_mm(k):
    p, q = spawn(k), spawn(k)
    k.run(p, 3)
    k.run(q, 3)
    k.run(p, 5)
    k.advance(1.5)
    before = tlb(k)
    unmap_one_page(k, p)
    assert tlb(k) == bump(before, cpu3=1)
    assert mask(k, p) == ("20", "5")
    # the deadline moved a second on: the next flush within it trims nothing
    k.run(p, 3)
    k.run(q, 3)
    k.run(p, 5)
    before = tlb(k)
    unmap_one_page(k, p, 1)
    assert tlb(k) == before and mask(k, p) == ("28", "3,5")
    k.advance(1.1)
    unmap_one_page(k, p, 2)
    assert tlb(k) == bump(before, cpu3=1) and mask(k, p) == ("20", "5")
    check_world(k)


def test_4_trim_skips_a_lazy_cpu(k):
    p = spawn(k)
    k.run(p, 3)
    k.idle(3)
    k.run(p, 5)
    k.advance(1.5)
    before = tlb(k)
    unmap_one_page(k, p)
    assert tlb(k) == before
    assert mask(k, p) == ("28", "3,5")
    # a kernel thread on CPU 3 is lazy too
    k.kthread("kworker/3:1", cpu=3)
    k.run(max(k.tasks), 3)
    k.advance(1.5)
    unmap_one_page(k, p, 1)
    assert tlb(k) == before and mask(k, p) == ("28", "3,5")
    check_world(k)


# 5 ---------------------------------------------------------------------------------


def test_5_threads_on_two_cpus(k):
    p = spawn(k)
    t = k.clone_thread(p)
    k.run(p, 1)
    k.run(t, 2)
    assert mask(k, p) == ("06", "1-2")
    before = tlb(k)
    k.mprotect(p, BASE, PAGE, PROT_READ)  # from the thread on CPU 1
    assert tlb(k) == bump(before, cpu2=1)
    assert mask(k, p) == ("06", "1-2")
    # also after the trim deadline: both CPUs run the mm, so both stay
    k.advance(2)
    k.mprotect(t, BASE, PAGE, RW)         # from the thread on CPU 2
    assert tlb(k) == bump(before, cpu1=1, cpu2=1)
    assert mask(k, p) == ("06", "1-2")
    check_world(k)


# 6 ---------------------------------------------------------------------------------


def test_6_freeing_page_tables_reaches_every_cpu_in_the_mask(k):
    p, q = spawn(k), spawn(k)
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED, LONELY)
    k.touch(p, LONELY, PAGE)
    k.run(p, 3)
    k.run(q, 3)       # CPU 3: another mm loaded
    k.run(p, 4)
    k.idle(4)         # CPU 4: lazy, P still loaded
    k.run(p, 5)       # CPU 5: running P
    assert mask(k, p) == ("38", "3-5")
    before = tlb(k)
    k.munmap(p, LONELY, PAGE)  # frees the PTE table: every CPU in the mask is IPI'd
    assert tlb(k) == bump(before, cpu3=1, cpu4=1)
    # CPU 3 ran another mm and drops out; lazy CPU 4 switched to init_mm and keeps its bit
    assert mask(k, p) == ("30", "4-5")
    assert k.sched.cpus[4].loaded_mm is None
    # the next flush of P that reaches CPU 4 (a trimming one) removes it
    k.advance(1.5)
    before = tlb(k)
    unmap_one_page(k, p)
    assert tlb(k) == bump(before, cpu4=1)
    assert mask(k, p) == ("20", "5")
    check_world(k)


def test_6_ordinary_flush_before_the_deadline_skips_the_cpu_on_init_mm(k):
    p = spawn(k)
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED, LONELY)
    k.touch(p, LONELY, PAGE)
    k.run(p, 4)
    k.idle(4)
    k.run(p, 5)
    k.munmap(p, LONELY, PAGE)
    before = tlb(k)
    unmap_one_page(k, p)  # no trim yet: CPU 4 is neither running P nor trimmed
    assert tlb(k) == before and mask(k, p) == ("30", "4-5")
    # CPU 4 comes back to P: its bit is still set, nothing changes
    k.run(p, 4)
    assert mask(k, p) == ("30", "4-5")
    check_world(k)


# 7 ---------------------------------------------------------------------------------


def test_7_eager_clear():
    k = boot(cpumask_model="eager_clear")
    p, q = spawn(k), spawn(k)
    k.run(p, 3)
    assert mask(k, p) == ("08", "3")
    k.run(q, 3)  # a different user mm: P loses CPU 3 at once
    assert mask(k, p) == ("00", "") and mask(k, q) == ("08", "3")
    k.run(p, 3)
    k.idle(3)    # idle instead: P keeps CPU 3
    assert mask(k, p) == ("08", "3")
    k.kthread("kworker/3:0", cpu=3)
    k.run(max(k.tasks), 3)  # so does a kernel thread
    assert mask(k, p) == ("08", "3")
    check_world(k)


def test_7_eager_clear_flush_targets_non_lazy_cpus():
    k = boot(cpumask_model="eager_clear")
    p = spawn(k)
    t = k.clone_thread(p)
    k.run(p, 1)
    k.run(t, 2)
    k.run(p, 3)
    k.idle(3)  # lazy
    before = tlb(k)
    k.advance(5)
    unmap_one_page(k, p)  # from CPU 1: CPU 2 IPI'd, lazy CPU 3 not
    assert tlb(k) == bump(before, cpu2=1)
    assert mask(k, p) == ("0e", "1-3")
    check_world(k)


# 10 --------------------------------------------------------------------------------


def test_10_all_threads_show_the_same_mask(k):
    p = spawn(k)
    tids = [p, k.clone_thread(p), k.clone_thread(p)]
    for tid, cpu in zip(tids, (0, 6, 7)):
        k.run(tid, cpu)
    k.idle(6)
    values = {(status(k, t)["Cpus_active_mm"], status(k, t)["Cpus_active_mm_list"]) for t in tids}
    assert values == {("c1", "0,6-7")}
    assert len({id(k.tasks[t].mm) for t in tids}) == 1
    check_world(k)


# 11 --------------------------------------------------------------------------------


def test_11_fork_child_starts_empty(k):
    p = spawn(k)
    k.run(p, 2)
    k.run(p, 4)
    c = k.fork(p)
    assert mask(k, c) == ("00", "")
    assert status(k, c)["Cpus_active_mm_list"] == ""
    assert mask(k, p) == ("14", "2,4")
    k.run(c, 6)
    assert mask(k, c) == ("40", "6")
    assert mask(k, p) == ("14", "2,4")
    check_world(k)


def test_11_fork_child_gets_its_own_trim_deadline(k):
    p = spawn(k)
    k.advance(10)  # long after the parent's creation
    c = k.fork(p)
    k.run(c, 1)
    k.run(p, 1)  # CPU 1 now runs another mm
    k.run(c, 2)
    before = tlb(k)
    k.munmap(c, BASE, PAGE)  # within a second of the child's creation: no trim
    assert tlb(k) == before and mask(k, c) == ("06", "1-2")
    k.advance(1.5)
    k.munmap(c, BASE + PAGE, PAGE)
    assert tlb(k) == bump(before, cpu1=1) and mask(k, c) == ("04", "2")
    check_world(k)


def test_exec_starts_a_new_empty_mask(k):
    p = spawn(k)
    k.run(p, 1)
    k.run(p, 2)
    k.exec(p, "/usr/bin/cat", ["cat"])  # running on CPU 2: the new mm is loaded there
    assert mask(k, p) == ("04", "2")
    check_world(k)


# other architectures ------------------------------------------------------------------


def test_arm64_never_sets_the_mask():
    k = boot(arch="arm64")
    assert k.config.cpumask_model == "never_set" and not k.config.proc_cpus_active_mm
    p, q = spawn(k), spawn(k)
    t = k.clone_thread(p)
    k.run(p, 1)
    k.run(t, 2)
    k.run(q, 1)
    k.run(p, 3)
    assert mask(k, p) == ("00", "")
    k.advance(2)
    k.munmap(p, BASE, PAGE)
    k.mprotect(p, BASE + PAGE, PAGE, PROT_READ)
    assert tlb(k) == [0] * 8  # broadcast TLBI: no IPIs
    assert mask(k, p) == ("00", "") and mask(k, q) == ("00", "")
    assert "Cpus_active_mm" not in status(k, p)
    check_world(k)


def test_riscv_never_clears_the_mask():
    k = boot(arch="riscv")
    assert k.config.cpumask_model == "never_clear"
    p, q = spawn(k), spawn(k)
    k.run(p, 1)
    k.run(q, 1)  # another mm on CPU 1: P keeps it
    k.run(p, 3)
    k.idle(3)
    k.run(p, 5)
    assert mask(k, p) == ("2a", "1,3,5")
    k.advance(2)
    k.mmap(p, PAGE, RW, ANON | MAP_FIXED, LONELY)
    k.touch(p, LONELY, PAGE)
    k.munmap(p, LONELY, PAGE)
    k.munmap(p, BASE, PAGE)
    assert mask(k, p) == ("2a", "1,3,5")
    assert mask(k, q) == ("02", "1")
    assert tlb(k) == [0] * 8
    check_world(k)


def test_config_rejects_x86_models_elsewhere():
    with pytest.raises(ValueError, match="cpumask_model lazy_trim is an x86 model"):
        KernelConfig(arch="arm64", cpumask_model="lazy_trim")
    with pytest.raises(ValueError, match="cpumask_model eager_clear is an x86 model"):
        KernelConfig(arch="riscv", cpumask_model="eager_clear")


@pytest.mark.parametrize("name", arch.names())
def test_config_takes_every_model_that_fits(name):
    """Each registered model boots on each architecture it fits, and is a
    config error on the others."""
    for model in mm_cpumask.names():
        if mm_cpumask.get(model).fits(name):
            assert KernelConfig(arch=name, cpumask_model=model).cpumask_model == model
        else:
            with pytest.raises(ValueError, match=f"cpumask_model {model} is an "):
                KernelConfig(arch=name, cpumask_model=model)


def test_kernel_threads_have_no_mask_lines(k):
    s = status(k, 2)
    assert "Cpus_active_mm" not in s and "Cpus_allowed_list" in s
    p = spawn(k)
    lines = list(status(k, p))
    i = lines.index("Cpus_allowed_list")
    assert lines[i + 1: i + 3] == ["Cpus_active_mm", "Cpus_active_mm_list"]
