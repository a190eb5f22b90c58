"""PSI (kernel/sched/psi.c): the averages' fixed-point arithmetic, the
states per CPU weighted by non-idle time, the files' shape."""

from __future__ import annotations

import re

import pytest

from hostinfo import requires_host
from invariants import boot
from procfs_helpers import read_all
from procsim.cgroup import syscalls as C
from procsim.procfs.tree import ProcFS
from procsim.psi.group import FIXED_1, PsiGroup, calc_avgs, calc_load, calc_load_n
from procsim.psi.show import psi_show
from procsim.units import NSEC

LINE = r"(some|full) avg10=(\d+\.\d\d) avg60=(\d+\.\d\d) avg300=(\d+\.\d\d) total=(\d+)"


def parse(text: str) -> dict[str, tuple[str, str, str, int]]:
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(LINE, line)
        assert m, line
        out[m[1]] = (m[2], m[3], m[4], int(m[5]))
    return out


def test_calc_load_as_loadavg() -> None:
    # one period at 100%: (100*2048*(2048-1677) + 2047) // 2048 = 37100 -> "18.11"
    assert calc_load(0, 1677, 100 * FIXED_1) == 37100
    avg = [0, 0, 0]
    calc_avgs(avg, 0, 2 * NSEC, 2 * NSEC)
    assert avg[0] == 37100
    g = PsiGroup.new(0, 2 * NSEC)
    g.avg[4] = list(avg)
    assert psi_show(g, "cpu", 0, False).startswith(b"some avg10=18.11 ")
    # missed periods decay as calc_load_n: n steps of calc_load(.., 0) with exp^n in fixed point
    assert calc_load_n(37100, 1677, 0, 1) == calc_load(37100, 1677, 0)
    assert calc_load_n(37100, 1677, 0, 0) == 37100
    assert calc_load_n(37100, 1677, 0, 3) < calc_load_n(37100, 1677, 0, 2)


def test_samples_over_a_period_carry_over() -> None:
    g = PsiGroup.new(0, 2 * NSEC)
    g.total[0] = 3 * NSEC  # 3 s of stall seen in a 2 s period: 100% now, the rest next time
    g.update_averages(2 * NSEC)
    assert g.avg_total[0] == 2 * NSEC and g.avg[0][0] == 37100
    g.update_averages(4 * NSEC)
    assert g.avg_total[0] == 3 * NSEC


def test_one_cpu_oversubscribed_is_full_cpu_pressure() -> None:
    """Two runnable tasks on CPU 0 of an idle 4-CPU machine: the waiting
    one makes `some` all of the time (the only non-idle CPU's time)."""
    k = boot()
    fs = ProcFS(k)
    C.mkdir(k, "/system.slice")
    C.mkdir(k, "/system.slice/a.service")
    a = k.spawn(["/usr/bin/a"])
    b = k.spawn(["/usr/bin/b"])
    C.attach(k, a, "/system.slice/a.service")
    k.run(b, 0)
    k.run(a, 0, preempt=True)  # b is preempted: runnable, waiting on CPU 0
    assert k.task(b).state == "R" and k.task(b).cpu == 0 and not k.task(b).on_cpu
    t0 = parse(read_all(fs, "/proc/pressure/cpu").decode())["some"][3]
    k.advance(10)
    sys_ = parse(read_all(fs, "/proc/pressure/cpu").decode())
    assert sys_["some"][3] - t0 == 10_000_000  # us: every ns of the only busy CPU
    assert sys_["full"] == ("0.00", "0.00", "0.00", 0)  # undefined at the system level
    assert float(sys_["some"][0]) > 50
    # a.service: its task runs, nobody of its own waits: no cpu pressure there
    own = parse(read_all(fs, "/sys/fs/cgroup/system.slice/a.service/cpu.pressure").decode())
    assert own["some"][3] == 0


def test_d_state_is_io_pressure() -> None:
    k = boot()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/writer"])
    k.sleep(p, "D")
    k.advance(4)
    io = parse(read_all(fs, "/proc/pressure/io").decode())
    assert io["some"][3] == 4_000_000 and io["full"][3] == 4_000_000  # nothing else runs
    k.wake(p)
    k.advance(1)
    assert parse(read_all(fs, "/proc/pressure/io").decode())["some"][3] == 4_000_000


def test_reads_change_nothing() -> None:
    k = boot()
    fs = ProcFS(k)
    p = k.spawn(["/usr/bin/writer"])
    k.sleep(p, "D")
    k.advance(3)
    g = k.cgroups.root.psi
    before = (g.avg_next_update, [list(a) for a in g.avg])
    a = read_all(fs, "/proc/pressure/io")
    assert (g.avg_next_update, [list(x) for x in g.avg]) == before
    assert read_all(fs, "/proc/pressure/io") == a


@requires_host(kernel="6.18", files=("/proc/pressure/cpu", "/proc/pressure/memory", "/proc/pressure/io"))
@pytest.mark.parametrize("resource", ["cpu", "memory", "io"])
def test_shape_as_host(resource: str) -> None:
    k = boot()
    fs = ProcFS(k)
    with open(f"/proc/pressure/{resource}") as f:
        host = f.read()
    ours = read_all(fs, f"/proc/pressure/{resource}").decode()
    assert [line.split()[0] for line in ours.splitlines()] == [line.split()[0] for line in host.splitlines()]
    for text in (host, ours):
        parse(text)
    st = fs.getattr(f"/proc/pressure/{resource}", __import__("procfs_helpers").ROOT)
    assert st.mode & 0o777 == 0o666


def test_kept_counts_equal_a_recount() -> None:
    """The per-(group, CPU) counts kept as tasks change are those a recount
    of every task gives, after the default scenario's boot and activity."""
    from procsim import scenario
    k = scenario.load(clock="manual")
    k.advance(7)
    ps = k.psi
    ps._update(k)
    kept = ({key: list(c) for key, c in ps._cnt.items() if any(c)},
            {g: list(a) for g, a in ps._agg.items() if any(a)})
    ps._rescan = True
    ps._update(k)
    fresh = ({key: list(c) for key, c in ps._cnt.items() if any(c)},
             {g: list(a) for g, a in ps._agg.items() if any(a)})
    assert kept == fresh and fresh[1]
