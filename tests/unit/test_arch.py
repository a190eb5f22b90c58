"""Every registered architecture (procsim/arch/) and mm_cpumask model
(procsim/mm_cpumask/) satisfies its interface: a machine of each boots and
renders its /proc, and each model keeps the mask it promises. A new
architecture or model is picked up here without naming it."""

from __future__ import annotations

import re

import pytest

from procsim import Kernel, KernelConfig, arch, irq, mm_cpumask
from procsim.arch import Arch
from procsim.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE
from procsim.mm_cpumask import CpumaskModel
from procsim.procfs.tree import ProcFS
from procfs_helpers import read_all
from invariants import check_world

PAGE = 4096
BASE = 0x100000000
NCPU = 3


def boot(**kw) -> Kernel:
    k = Kernel(KernelConfig(nr_cpus=kw.pop("nr_cpus", NCPU), mem_bytes=1 << 30, **kw))
    k.create_init()
    k.kthread("kthreadd", pid=2)
    return k


def spawn(k: Kernel) -> int:
    pid = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    k.mmap(pid, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, BASE)
    k.touch(pid, BASE, 8 * PAGE)
    return pid


# -- the registries ------------------------------------------------------------------


@pytest.mark.parametrize("name", arch.names())
def test_arch_registry_row(name: str) -> None:
    a = arch.get(name)
    assert isinstance(a, Arch) and a.name == name and arch.get(name) is a
    assert a.cpumask_model in mm_cpumask.names() and mm_cpumask.get(a.cpumask_model).fits(name)
    assert a.device_irqs and a.irq_rows
    assert a.gate_vma is None or a.gate_vma.endswith(b"\n")


@pytest.mark.parametrize("name", mm_cpumask.names())
def test_cpumask_registry_row(name: str) -> None:
    m = mm_cpumask.get(name)
    assert isinstance(m, CpumaskModel) and m.name == name and mm_cpumask.get(name) is m
    assert m.arches is None or set(m.arches) <= set(arch.names()), "a model of an unknown architecture"
    assert any(m.fits(a) for a in arch.names())


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ValueError, match="^arch must be one of " + ", ".join(arch.names()) + "$"):
        KernelConfig(arch="mips")
    with pytest.raises(ValueError, match="^cpumask_model must be one of " + ", ".join(mm_cpumask.names()) + "$"):
        KernelConfig(cpumask_model="eager")
    with pytest.raises(ValueError, match="arch must be one of"):
        KernelConfig(arch=["x86"])  # type: ignore[arg-type]


# -- every architecture boots and renders --------------------------------------------


@pytest.mark.parametrize("name", arch.names())
def test_arch_machine_renders(name: str) -> None:
    a = arch.get(name)
    k = boot(arch=name)
    assert k.config.cpumask_model == a.cpumask_model and k.sched.cpumask_model is mm_cpumask.get(a.cpumask_model)
    assert k.config.proc_cpus_active_mm == a.proc_cpus_active_mm
    p = spawn(k)
    k.run(p, 1)
    k.advance(3)
    fs = ProcFS(k)

    cpuinfo = read_all(fs, "/proc/cpuinfo").decode()
    blocks = cpuinfo.split("\n\n")
    assert blocks[-1] == "" and len(blocks) == NCPU + 1
    assert [b.split("\n", 1)[0] for b in blocks[:-1]] == [f"processor\t: {i}" for i in range(NCPU)]

    lines = read_all(fs, "/proc/interrupts").decode().splitlines()
    assert lines[0].split() == [f"CPU{i}" for i in range(NCPU)]
    assert len(lines) == 1 + len(a.device_irqs) + len(a.irq_rows)
    for line, text in zip(a.device_irqs, lines[1:]):
        assert re.match(rf" *{line.irq}:", text) and text.endswith(f" {line.action}")
    for row, text in zip(a.irq_rows, lines[1 + len(a.device_irqs):]):
        assert text.lstrip().startswith(row.name[:3]) and (row.desc is None or text.endswith(row.desc))
    nr = irq.nr_irqs(name, NCPU)
    assert nr > max(line.irq for line in a.device_irqs)
    intr = next(line for line in read_all(fs, "/proc/stat").decode().splitlines() if line.startswith("intr "))
    assert len(intr.split()) == 2 + nr and int(intr.split()[1]) == irq.irq_snapshot(k).total > 0

    status = read_all(fs, f"/proc/{p}/status").decode()
    assert ("Cpus_active_mm:\t" in status) == a.proc_cpus_active_mm

    maps = read_all(fs, f"/proc/{p}/maps")
    gate = a.gate_vma
    assert maps.endswith(gate) if gate is not None else not maps.endswith(b"[vsyscall]\n")
    smaps = read_all(fs, f"/proc/{p}/smaps")
    assert smaps.count(b"\nVmFlags:") == maps.count(b"\n")
    for f in ("smaps_rollup", "numa_maps", "stat", "statm"):
        assert read_all(fs, f"/proc/{p}/{f}")
    check_world(k)


# -- every mm_cpumask model keeps the mask it promises -------------------------------


def _arch_for(model: str) -> str:
    """An architecture whose own model it is, else any it fits."""
    names = arch.names()
    return next((a for a in names if arch.get(a).cpumask_model == model),
                next(a for a in names if mm_cpumask.get(model).fits(a)))


@pytest.mark.parametrize("name", mm_cpumask.names())
def test_cpumask_model_contract(name: str) -> None:
    m = mm_cpumask.get(name)
    k = boot(arch=_arch_for(name), cpumask_model=name, nr_cpus=4)
    assert k.sched.cpumask_model is m
    p, q = spawn(k), spawn(k)
    t = k.clone_thread(p)
    k.run(p, 1)
    k.run(t, 2)
    mm = k.group(p).mm
    # the CPUs running mm are in its mask exactly when the model sets bits
    assert mm.cpumask == (0b110 if m.sets_bits else 0)
    k.advance(2)  # past any trim deadline
    k.munmap(p, BASE, PAGE)  # from CPU 1, with CPU 2 running the same mm
    tlb = [c.irq_tlb_count for c in k.sched.cpus]
    assert tlb == ([0, 0, 1, 0] if m.ipi_flush else [0] * 4)
    k.run(q, 1)
    k.run(q, 3)
    k.idle(3)
    k.advance(2)
    k.munmap(q, BASE, PAGE)
    qmm = k.group(q).mm
    if m.sets_bits:
        assert qmm.cpumask >> 3 & 1, "a lazy CPU keeps its bit until a flush reaches it"
    else:
        assert qmm.cpumask == 0
    check_world(k)


# -- a new architecture or model is one module and one registry row -------------------


def test_a_new_arch_and_model_are_one_module_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a module is all it takes: a toy architecture with its own
    model boots, and its cpuinfo, interrupts, maps and mask are its own."""
    import sys
    import types

    from procsim.irq import ArchRow, IrqLine

    class Toy(Arch):
        name = "toy"
        cpumask_model = "toy_keep"
        gate_vma = b"ffff0000-ffff1000 r-xp 00000000 00:00 0                                  [vectors]\n"
        device_irqs = (IrqLine(3, "TOY-PIC", 3, "Level", None, "toy-timer", kind="timer"),)
        irq_rows = (ArchRow("IPI0", "Rescheduling interrupts", "res"),)

        def show_cpuinfo(self, boot_cpu: object, cpu: int, nr_cpus: int, hz: int) -> str:
            return f"processor\t: {cpu}\nmodel\t\t: toy\n\n"

    class ToyKeep(CpumaskModel):
        name = "toy_keep"
        arches = ("toy",)

    for modname, attr, obj in (("toy_arch", "ARCH", Toy()), ("toy_keep", "MODEL", ToyKeep())):
        mod = types.ModuleType(modname)
        setattr(mod, attr, obj)
        monkeypatch.setitem(sys.modules, modname, mod)
    monkeypatch.setitem(arch.ARCHES, "toy", "toy_arch")
    monkeypatch.setitem(mm_cpumask.MODELS, "toy_keep", "toy_keep")
    monkeypatch.setattr(arch, "_loaded", {})
    monkeypatch.setattr(mm_cpumask, "_loaded", {})

    k = boot(arch="toy")
    assert k.config.cpumask_model == "toy_keep" and not k.config.proc_cpus_active_mm
    with pytest.raises(ValueError, match="cpumask_model toy_keep is an toy model"):
        KernelConfig(cpumask_model="toy_keep")
    p = spawn(k)
    k.run(p, 2)
    fs = ProcFS(k)
    assert read_all(fs, "/proc/cpuinfo").decode().count("model\t\t: toy\n") == NCPU
    lines = read_all(fs, "/proc/interrupts").decode().splitlines()
    assert lines[1].endswith("TOY-PIC   3 Level     toy-timer") and lines[2].startswith("IPI0:")
    assert read_all(fs, f"/proc/{p}/maps").endswith(Toy.gate_vma)
    assert k.group(p).mm.cpumask == 0b100
    check_world(k)
