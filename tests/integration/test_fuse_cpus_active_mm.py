"""Cpus_active_mm / Cpus_active_mm_list in MNT/proc/PID/status (spec §7.3)
following scripted runs and migrations (seed-mechanisms §1.3, x86 lazy_trim),
on the default 8-CPU machine and on examples/many-cpus-64.toml.

Expected masks are worked out from the mechanism (a CPU's bit is set when a
thread of the mm is switched in there; it stays while the CPU idles; a flush
that frees page tables reaches every CPU in the mask and one now running
another mm drops out) and printed with the test's own §0.3 formatter."""

from __future__ import annotations

import re

import pytest

from fusehelpers import EXAMPLES, mask_hex, mask_list, model, read, status, status_keys

pytestmark = pytest.mark.fuse


def active(m, pid) -> tuple[str, str]:
    s = status(m, pid)
    return s["Cpus_active_mm"], s["Cpus_active_mm_list"]


def expect(mask: int, nbits: int) -> tuple[str, str]:
    return mask_hex(mask, nbits), mask_list(mask)


def bits(*cpus: int) -> int:
    return sum(1 << c for c in cpus)


def tlb_counts(m) -> list[int]:
    line = next(l for l in read(f"{m.proc}/interrupts").splitlines() if l.lstrip().startswith("TLB:"))
    return [int(x) for x in line.split(":", 1)[1].split()[:-2]]  # drop "TLB shootdowns"


def check_placement(m, pid) -> None:
    keys = status_keys(m, pid)
    i = keys.index("Cpus_allowed_list")
    assert keys[i - 1: i + 4] == ["Cpus_allowed", "Cpus_allowed_list", "Cpus_active_mm", "Cpus_active_mm_list",
                                  "Mems_allowed"]


def check_all_against_model(m, nbits: int) -> None:
    """Every process's lines are its mm's mask; no lines without an mm."""
    for pid, p in model(m).items():
        s = status(m, pid)
        if p["kthread"] or p["zombie"]:
            assert "Cpus_active_mm" not in s and "Cpus_active_mm_list" not in s
            continue
        mask = m.ctl.task(pid=pid)["mm_cpumask"]
        assert (s["Cpus_active_mm"], s["Cpus_active_mm_list"]) == expect(mask, nbits), pid
        for tid in p["threads"]:  # the same in every thread's view (spec §7.4)
            ts = status(m, f"{pid}/task/{tid}")
            assert (ts["Cpus_active_mm"], ts["Cpus_active_mm_list"]) == expect(mask, nbits)


def scripted_migration(m, nbits: int, a: int, b: int, c: int, other: int) -> None:
    """Spawn P; run it on CPU a, migrate it to b, run a second thread on c,
    let `other` (another process) take CPU a, then unmap a range that frees a
    page table: CPU a leaves P's mask."""
    ctl = m.ctl
    p = ctl.spawn(argv=["/usr/local/bin/probe", "--mask"], parent=other)
    assert ctl.task(pid=p)["mm_cpumask"] == 0
    assert active(m, p) == expect(0, nbits)  # a new mm has run nowhere
    check_placement(m, p)

    ctl.run(tid=p, cpu=a)
    assert active(m, p) == expect(bits(a), nbits)
    ctl.migrate(tid=p, cpu=b)  # CPU a idles: lazy, keeps the bit
    assert active(m, p) == expect(bits(a, b), nbits)
    t = ctl.clone(pid=p, comm="probe-t")
    ctl.run(tid=t, cpu=c)
    assert active(m, p) == expect(bits(a, b, c), nbits)
    assert active(m, f"{p}/task/{t}") == expect(bits(a, b, c), nbits)
    assert status(m, f"{p}/task/{t}")["Cpus_allowed_list"] == f"0-{nbits - 1}"

    ctl.run(tid=other, cpu=a)  # another mm on CPU a: P's bit stays (updated lazily)
    assert active(m, p) == expect(bits(a, b, c), nbits)

    addr = ctl.mmap(pid=p, length=8 << 20)
    ctl.touch(pid=p, addr=addr, length=8 << 20)
    before = tlb_counts(m)
    assert before == [x["tlb"] for x in ctl.cpus()]
    ctl.munmap(pid=p, addr=addr, length=8 << 20)  # frees page tables: every CPU in the mask is sent the flush
    after = tlb_counts(m)
    assert after == [x["tlb"] for x in ctl.cpus()]
    assert after[a] == before[a] + 1  # the IPI to CPU a, which then clears itself
    assert active(m, p) == expect(bits(b, c), nbits)
    assert ctl.task(pid=p)["mm_cpumask"] == bits(b, c)

    ctl.exit_group(pid=p)  # a zombie has no mm: no lines
    zs = status(m, p)
    assert zs["State"] == "Z (zombie)" and "Cpus_active_mm" not in zs and "Cpus_active_mm_list" not in zs
    assert ctl.wait(pid=other, child=p) == p


def test_default_machine(machine):
    assert status(machine, 1)["Cpus_allowed"] == "ff"
    # CPUs 3 and 7 are idle in the default scenario; postgres runs on CPU 4.
    other = machine.ctl.spawn(argv=["/usr/bin/yes"])
    scripted_migration(machine, 8, a=3, b=7, c=6, other=other)
    check_all_against_model(machine, 8)


def test_many_cpus_64(procsim_mount):
    m = procsim_mount(scenario=str(EXAMPLES / "many-cpus-64.toml"))
    ps = model(m)
    svc = next(pid for pid, p in ps.items() if p["comm"] == "svc" and "9000" in " ".join(p["cmdline"]))
    pinned = next(pid for pid, p in ps.items() if "9001" in " ".join(p["cmdline"]))
    assert status(m, svc)["Cpus_allowed"] == "ffffffff,ffffffff"
    assert status(m, pinned)["Cpus_allowed"] == "00000000,0000ff00"
    assert status(m, pinned)["Cpus_allowed_list"] == "8-15"
    # svc's 16 workers run on CPUs 0-15; the other bits are CPUs its sleeping
    # threads woke on during the boot history (lazy_trim keeps them until a trim)
    mask = m.ctl.task(pid=svc)["mm_cpumask"]
    assert mask & 0xFFFF == 0xFFFF
    assert active(m, svc) == (mask_hex(mask, 64), mask_list(mask))
    check_all_against_model(m, 64)

    batch = min(pid for pid, p in ps.items() if p["comm"] == "cruncher")
    scripted_migration(m, 64, a=40, b=63, c=3, other=batch)

    # the scenario's own activity: workers migrate, batch jobs move, svc trims
    before = m.ctl.task(pid=svc)["mm_cpumask"]
    m.ctl.advance(seconds=3)
    assert m.ctl.task(pid=svc)["mm_cpumask"] != before
    check_all_against_model(m, 64)
    pinned_mask = m.ctl.task(pid=pinned)["mm_cpumask"]
    assert pinned_mask and pinned_mask & ~bits(*range(8, 16)) == 0  # never outside its node
    assert re.fullmatch(r"[0-9a-f]{8},[0-9a-f]{8}", status(m, svc)["Cpus_active_mm"])


def test_affinity_is_per_thread(machine):
    """Cpus_allowed is thread-private, Cpus_active_mm group-wide (spec §7.4)."""
    ps = model(machine)
    java = next(pid for pid, p in ps.items() if p["comm"] == "java")
    tid = ps[java]["threads"][2]
    machine.ctl.affinity(tid=tid, cpus="2-3")
    ts, ls = status(machine, f"{java}/task/{tid}"), status(machine, java)
    assert (ts["Cpus_allowed"], ts["Cpus_allowed_list"]) == ("0c", "2-3")
    assert (ls["Cpus_allowed"], ls["Cpus_allowed_list"]) == ("ff", "0-7")
    assert ts["Cpus_active_mm"] == ls["Cpus_active_mm"] == mask_hex(machine.ctl.task(pid=java)["mm_cpumask"], 8)
    cpu = machine.ctl.task(pid=tid)["cpu"]
    assert cpu in (2, 3)  # a thread outside its new affinity is moved into it
    assert read(f"{machine.proc}/{java}/task/{tid}/stat").rsplit(") ", 1)[1].split()[36] == str(cpu)
