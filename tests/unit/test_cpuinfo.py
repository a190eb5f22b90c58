"""/proc/cpuinfo of each CPU model against the spec (§19) and the order and
conditions of show_cpuinfo() (arch/x86/kernel/cpu/proc.c), the topology it
shows, and the settings it shares with other files (pkeys with smaps). The
host's /proc/cpuinfo is compared only with a model of the host's vendor, or
with cpu = "host"; each such test says why it skips elsewhere.
"""

from __future__ import annotations

import os
import platform
import re

import pytest

from procsim import Kernel, KernelConfig
from procsim.cpu import parse_host, with_pkeys
from procsim.procfs import cpuinfo as C, smaps
from procsim.procfs.context import Caller, Ctx
from procsim.scenario import ScenarioError, build
from invariants import boot

MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20

# show_cpuinfo()'s lines in print order; the kernel prints microcode only when
# known, cpu MHz only with a TSC, cache size when known, vmx flags only with
# VMX capabilities, TLB size only when x86_tlbsize > 0 (AMD).
SHOW_CPUINFO = ("processor|vendor_id|cpu family|model|model name|stepping|microcode|cpu MHz|cache size|"
                "physical id|siblings|core id|cpu cores|apicid|initial apicid|fpu|fpu_exception|cpuid level|"
                "wp|flags|vmx flags|bugs|bogomips|TLB size|clflush size|cache_alignment|address sizes|"
                "power management").split("|")
CONDITIONAL = {"microcode", "cpu MHz", "cache size", "vmx flags", "TLB size"}
TOPOLOGY = ("processor", "physical id", "siblings", "core id", "cpu cores", "apicid", "initial apicid")
# spec §19: the reference VM's block, in order
SPEC_LABELS = [l for l in SHOW_CPUINFO if l != "vmx flags"]

# Capability words of arch/x86/include/asm/cpufeatures.h, each in bit order
# (only the flags these models use): flags print word by word, bit by bit.
CAP_WORDS = [
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht",
    "syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm",
    "constant_tsc arch_perfmon rep_good nopl xtopology nonstop_tsc cpuid extd_apicid aperfmperf tsc_known_freq",
    "pni pclmulqdq monitor ssse3 fma cx16 pdcm pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes "
    "xsave avx f16c rdrand hypervisor",
    "lahf_lm cmp_legacy svm cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext",
    "cpuid_fault ssbd ibrs ibpb stibp ibrs_enhanced",
    "vmmcall",
    "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma "
    "clflushopt clwb avx512cd sha_ni avx512bw avx512vl",
    "xsaveopt xsavec xgetbv1 xsaves",
    "avx_vnni avx512_bf16",
    "clzero xsaveerptr wbnoinvd",
    "arat",
    "avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg "
    "avx512_vpopcntdq la57 rdpid cldemote movdiri movdir64b",
    "fsrm md_clear serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities",
]
CAP_RANK = {f: i for i, f in enumerate(" ".join(CAP_WORDS).split())}
# X86_BUG bits in order (words 0 and 1)
BUG_ORDER = ("f00f fdiv coma tlb_mmatch apic_c1e 11ap fxsave_leak clflush_monitor sysret_ss_attrs null_seg "
             "monitor amd_e400 cpu_meltdown spectre_v1 spectre_v2 spec_store_bypass l1tf mds msbds_only swapgs "
             "taa itlb_multihit srbds mmio_stale_data retbleed eibrs_pbrsb smt_rsb gds tdx_pw_mce srso div0 "
             "rfds bhi ibpb_no_ret spectre_v2_user its its_native_only tsa vmscape").split()
AMD_ONLY_FLAGS = {"mmxext", "fxsr_opt", "extd_apicid", "cmp_legacy", "cr8_legacy", "sse4a", "misalignsse",
                  "osvw", "topoext", "vmmcall", "clzero", "xsaveerptr", "svm"}
AMD_ONLY_BUGS = {"sysret_ss_attrs", "null_seg", "srso", "tsa", "div0"}


def kernel(**cfg) -> Kernel:
    cfg.setdefault("nr_cpus", 8)
    return boot(kthreadd=False, **cfg)


def text(k: Kernel) -> str:
    return C.cpuinfo(Ctx(k, Caller(1, 0, 0))).decode()


def blocks(t: str) -> list[dict[str, str]]:
    assert t.endswith("\n\n")
    out = []
    for b in t[:-2].split("\n\n"):
        d = {}
        for line in b.splitlines():
            label, _, value = line.partition(":")
            d[label.rstrip("\t")] = value[1:]
        out.append(d)
    return out


def labels(block: str) -> list[str]:
    return [l.split(":")[0].rstrip("\t") for l in block.splitlines()]


def real_cpuinfo() -> str:
    with open("/proc/cpuinfo") as f:
        return f.read()


def host_vendor() -> str | None:
    if platform.machine() != "x86_64" or not os.path.exists("/proc/cpuinfo"):
        return None
    return blocks(real_cpuinfo())[0].get("vendor_id")


HOST_VENDOR = host_vendor()
x86_host_only = pytest.mark.skipif(HOST_VENDOR is None, reason="host is not an x86_64 machine with /proc/cpuinfo")


def vendor_only(vendor: str):
    return pytest.mark.skipif(HOST_VENDOR != vendor, reason=f"host CPU is {HOST_VENDOR or 'not x86'}, not {vendor}")


# -- the layout of every model -------------------------------------------------------------


@pytest.mark.parametrize("cpu", ["amd-epyc", "intel-xeon"])
def test_x86_label_padding_and_order(cpu: str) -> None:
    t = text(kernel(cpu=cpu))
    assert t.count("processor\t: ") == 8 and t.endswith("power management:\n\n")
    for l in t.splitlines():  # spec §19: one TAB for labels of 8+ chars, two below
        if l and not l.startswith("power management:"):
            label = l.split("\t")[0]
            assert l.startswith(label + ("\t\t: " if len(label) < 8 else "\t: "))
    for b in t[:-2].split("\n\n"):
        got = labels(b)
        assert got == [l for l in SHOW_CPUINFO if l in got]  # show_cpuinfo()'s order
        assert set(SHOW_CPUINFO) - set(got) <= CONDITIONAL  # only conditional lines may be missing


def test_cpuinfo_x86_layout() -> None:
    ours = text(kernel())
    blocks_ = ours.split("\n\n")[:-1]
    assert len(blocks_) == 8
    assert "core id\t\t: 7\n" in blocks_[7] and "siblings\t: 8\n" in blocks_[7]


def test_amd_epyc_is_the_reference_vm_of_the_spec() -> None:
    t = text(kernel(nr_cpus=2))
    assert labels(t.split("\n\n")[0]) == SPEC_LABELS
    b = blocks(t)[0]
    assert (b["vendor_id"], b["cpu family"], b["model"], b["stepping"], b["microcode"]) == \
        ("AuthenticAMD", "25", "1", "1", "0x1000065")
    assert (b["cpu MHz"], b["cache size"], b["cpuid level"], b["bogomips"]) == ("2445.402", "512 KB", "16", "4890.80")
    assert b["flags"].startswith("fpu vme de pse tsc ") and b["bugs"].startswith("sysret_ss_attrs ")
    assert b["TLB size"] == "2560 4K pages" and b["clflush size"] == b["cache_alignment"] == "64"
    assert b["address sizes"] == "48 bits physical, 48 bits virtual" and b["power management"] == ""
    assert t.count("siblings\t: 2\n") == t.count("cpu cores\t: 2\n") == 2


def test_intel_xeon_layout() -> None:
    t = text(kernel(cpu="intel-xeon", nr_cpus=2))
    b = blocks(t)[0]
    assert "TLB size" not in b and "vmx flags" not in b  # x86_tlbsize is AMD's; a guest without nested VMX
    assert labels(t.split("\n\n")[0]) == [l for l in SPEC_LABELS if l != "TLB size"]
    assert (b["vendor_id"], b["cpu family"]) == ("GenuineIntel", "6")
    assert re.fullmatch(r"Intel\(R\) Xeon\(R\) .+", b["model name"])
    assert re.fullmatch(r"0x[0-9a-f]+", b["microcode"]) and re.fullmatch(r"\d+ KB", b["cache size"])
    assert b["clflush size"] == b["cache_alignment"] == "64" and b["power management"] == ""
    # 4-level paging as TASK_SIZE and VmallocTotal have it: no la57, 48 virtual bits
    assert re.fullmatch(r"\d\d bits physical, 48 bits virtual", b["address sizes"])
    flags, bugs = b["flags"].split(), b["bugs"].split()
    assert not AMD_ONLY_FLAGS & set(flags) and not AMD_ONLY_BUGS & set(bugs)
    assert {"ht", "ss", "arch_perfmon", "ibrs_enhanced", "avx512f", "amx_tile", "pku", "ospke"} <= set(flags)
    assert "la57" not in flags and "vmx" not in flags
    assert {"spectre_v1", "spectre_v2", "spec_store_bypass", "swapgs", "eibrs_pbrsb", "bhi"} <= set(bugs)
    assert "cpu_meltdown" not in bugs and "l1tf" not in bugs and "mds" not in bugs  # not on eIBRS parts
    # bogomips = 2 * tsc MHz, truncated from loops_per_jiffy
    mhz = float(b["cpu MHz"])
    assert float(b["bogomips"]) == pytest.approx(2 * mhz, abs=0.02)


@pytest.mark.parametrize("cpu", ["amd-epyc", "intel-xeon"])
def test_flags_and_bugs_in_bit_order(cpu: str) -> None:
    b = blocks(text(kernel(cpu=cpu, nr_cpus=1)))[0]
    flags, bugs = b["flags"].split(), b["bugs"].split()
    assert set(flags) <= set(CAP_RANK) and len(set(flags)) == len(flags)
    assert flags == sorted(flags, key=CAP_RANK.__getitem__)
    assert set(bugs) <= set(BUG_ORDER) and bugs == sorted(bugs, key=BUG_ORDER.index)


def test_cpuinfo_mhz_and_bogomips_as_the_kernel_prints_them() -> None:
    k = kernel(nr_cpus=2, cpu_mhz=2445.424, model_name="AMD EPYC")
    t = text(k)
    assert "cpu MHz\t\t: 2445.424\n" in t
    assert "bogomips\t: 4890.84\n" in t  # truncated from lpj, as on the VM (not 4890.85)
    assert "model name\t: AMD EPYC\n" in t


def test_model_keys_override_any_model() -> None:
    b = blocks(text(kernel(cpu="intel-xeon", nr_cpus=1, model_name="Intel(R) Xeon(R) Gold 6338", cpu_mhz=2000.5)))[0]
    assert b["model name"] == "Intel(R) Xeon(R) Gold 6338" and b["cpu MHz"] == "2000.500"
    assert b["bogomips"] == "4001.00" and b["vendor_id"] == "GenuineIntel"
    assert blocks(text(kernel(cpu="intel-xeon", nr_cpus=1, model_name="")))[0]["model name"] == "unknown"


def test_cpuinfo_other_arches() -> None:
    arm = text(kernel(arch="arm64", nr_cpus=2))
    assert arm.startswith("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd ")
    assert "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\n" in arm
    assert arm.endswith("CPU revision\t: 1\n\n") and arm.count("processor\t: ") == 2
    rv = text(kernel(arch="riscv", nr_cpus=2))
    assert rv.startswith("processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64")
    assert "\nmmu\t\t: sv39\n" in rv and rv.endswith("\n\n") and "hart isa\t: rv64" in rv


# -- topology --------------------------------------------------------------------------------


def cores(t: str) -> int:
    """psutil's cpu_count_cores() fallback: cpu cores summed over physical ids."""
    return sum({b["physical id"]: int(b["cpu cores"]) for b in blocks(t)}.values())


def test_topology_amd_one_thread_per_core() -> None:
    bs = blocks(text(kernel(nr_cpus=6)))
    assert [b["core id"] for b in bs] == [b["apicid"] for b in bs] == [str(i) for i in range(6)]
    assert {(b["physical id"], b["siblings"], b["cpu cores"]) for b in bs} == {("0", "6", "6")}


def test_topology_intel_pairs_hyperthreads() -> None:
    t = text(kernel(cpu="intel-xeon", nr_cpus=8))
    bs = blocks(t)
    assert [int(b["core id"]) for b in bs] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [b["apicid"] for b in bs] == [b["initial apicid"] for b in bs] == [str(i) for i in range(8)]
    assert {(b["physical id"], b["siblings"], b["cpu cores"]) for b in bs} == {("0", "8", "4")}
    assert cores(t) == 4
    # an odd vCPU count cannot pair threads: one per core
    t3 = text(kernel(cpu="intel-xeon", nr_cpus=3))
    assert [b["core id"] for b in blocks(t3)] == ["0", "1", "2"] and cores(t3) == 3


def test_stat_rows_follow_nr_cpus() -> None:
    from procsim.procfs import stat as proc_stat
    k = kernel(cpu="intel-xeon", nr_cpus=4)
    stat = proc_stat.stat(Ctx(k, Caller(1, 0, 0))).decode()
    assert [l.split()[0] for l in stat.splitlines() if l.startswith("cpu")] == ["cpu", "cpu0", "cpu1", "cpu2", "cpu3"]
    assert [b["processor"] for b in blocks(text(k))] == ["0", "1", "2", "3"]


# -- protection keys: one setting for smaps and cpuinfo ---------------------------------------


def smaps_text(k: Kernel) -> str:
    pid = k.spawn(["/usr/bin/bash"])
    k.mmap(pid, 1 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS)
    k.run(pid, 0)
    from procsim.procfs.tree import ProcFS
    fs = ProcFS(k)
    h = fs.open(f"/proc/{pid}/smaps", os.O_RDONLY, Caller(1, 0, 0))
    out, off = b"", 0
    while chunk := h.read(1 << 16, off):
        out, off = out + chunk, off + len(chunk)
    return out.decode()


@pytest.mark.parametrize("cpu", ["amd-epyc", "intel-xeon"])
@pytest.mark.parametrize("pkeys", [None, True, False])
def test_pkeys_drive_smaps_and_cpuinfo(cpu: str, pkeys: bool | None) -> None:
    k = kernel(cpu=cpu, nr_cpus=2, pkeys=pkeys)
    want = pkeys is not False  # both models have pku: on unless turned off
    assert k.config.pkeys is want
    flags = blocks(text(k))[0]["flags"].split()
    assert ("pku" in flags) is ("ospke" in flags) is want
    s = smaps_text(k)
    assert ("ProtectionKey:" in s) is want
    if want:  # word 16: umip (bit 2) pku (3) ospke (4)
        assert flags[flags.index("umip") + 1:flags.index("umip") + 3] == ["pku", "ospke"]


def test_with_pkeys_places_pku_in_bit_order() -> None:
    assert with_pkeys(("umip", "vaes", "fsrm"), True) == ("umip", "pku", "ospke", "vaes", "fsrm")
    assert with_pkeys(("avx512vl", "xsaves", "arat"), True) == ("avx512vl", "xsaves", "arat", "pku", "ospke")
    assert with_pkeys(("arat", "pku", "ospke", "rdpid"), False) == ("arat", "rdpid")
    assert with_pkeys(("arat", "pku", "ospke", "rdpid"), True) == ("arat", "pku", "ospke", "rdpid")


# -- the host model ---------------------------------------------------------------------------


@x86_host_only
def test_host_model_copies_cpu0_of_the_host() -> None:
    theirs = real_cpuinfo().split("\n\n")[0]
    k = kernel(cpu="host", nr_cpus=3)
    t = text(k)
    ours = t.split("\n\n")
    assert len(ours) == 4 and ours[3] == ""
    assert labels(ours[0]) == labels(theirs)
    h, o = blocks(theirs + "\n\n")[0], blocks(t)
    # cpu MHz is sampled at each read where APERF/MPERF exist; else it is tsc_khz
    skip = set(TOPOLOGY) | ({"cpu MHz"} if "aperfmperf" in h["flags"].split() else set())
    assert {key: v for key, v in o[0].items() if key not in skip} == {key: v for key, v in h.items() if key not in skip}
    assert [b["processor"] for b in o] == ["0", "1", "2"] and {b["siblings"] for b in o} == {"3"}
    # pkeys follow the host's CPU unless set
    assert k.config.pkeys is ("pku" in h["flags"].split())
    assert ("ProtectionKey:" in smaps_text(k)) is k.config.pkeys


@x86_host_only
def test_host_model_pkeys_set_explicitly() -> None:
    for on in (True, False):
        flags = blocks(text(kernel(cpu="host", nr_cpus=1, pkeys=on)))[0]["flags"].split()
        assert ("pku" in flags) is ("ospke" in flags) is on
        host = [f for f in blocks(real_cpuinfo())[0]["flags"].split() if f not in ("pku", "ospke")]
        assert [f for f in flags if f not in ("pku", "ospke")] == host


def test_parse_host_follows_the_conditions_of_show_cpuinfo() -> None:
    """A bare-metal Intel block (written by hand in the kernel's format):
    vmx flags kept, no microcode line, no TLB size, HT siblings."""
    theirs = ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\n"
              "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nstepping\t: 6\ncpu MHz\t\t: 2000.000\n"
              "cache size\t: 49152 KB\nphysical id\t: 0\nsiblings\t: 4\ncore id\t\t: 0\ncpu cores\t: 2\n"
              "apicid\t\t: 0\ninitial apicid\t: 0\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 27\n"
              "wp\t\t: yes\nflags\t\t: fpu tsc vmx umip pku ospke\nvmx flags\t: vnmi ept vpid\n"
              "bugs\t\t: spectre_v1 gds\nbogomips\t: 3990.62\nclflush size\t: 64\ncache_alignment\t: 64\n"
              "address sizes\t: 46 bits physical, 57 bits virtual\npower management: [8]\n\n")
    c = parse_host(theirs)
    assert c.threads_per_core == 2 and c.microcode == 0 and c.tlb_size == 0
    k = Kernel(KernelConfig(nr_cpus=4, mem_bytes=1 << 30))
    k.config.boot_cpu = c
    assert C.render(k.config).decode().split("\n\n")[0] + "\n\n" == theirs
    bs = blocks(C.render(k.config).decode())
    assert [b["core id"] for b in bs] == ["0", "0", "1", "1"] and bs[3]["apicid"] == "3"
    with pytest.raises(ValueError, match="x86 host"):
        parse_host("processor\t: 0\nBogoMIPS\t: 50.00\n\n")


@pytest.mark.parametrize("cpu, vendor", [("amd-epyc", "AuthenticAMD"), ("intel-xeon", "GenuineIntel")])
def test_model_as_a_host_of_its_vendor(cpu: str, vendor: str) -> None:
    if HOST_VENDOR != vendor:
        pytest.skip(f"host CPU is {HOST_VENDOR or 'not x86'}, not {vendor}")
    ours = blocks(text(kernel(cpu=cpu, nr_cpus=2)))[0]
    h = blocks(real_cpuinfo())[0]
    for key in ("vendor_id", "clflush size", "cache_alignment"):
        assert ours[key] == h[key]
    # the flags and bugs both have print in the same order: the host's kernel
    # is the witness of the capability-bit order
    for key in ("flags", "bugs"):
        common = set(ours[key].split()) & set(h[key].split())
        assert [f for f in ours[key].split() if f in common] == [f for f in h[key].split() if f in common]
        assert len(common) >= (30 if key == "flags" else 2)


@x86_host_only
def test_cpuinfo_layout_as_real() -> None:
    """The model of the host's vendor has the host's lines, in its order
    (lines the kernel prints on a condition that the host may or may not
    meet, microcode and vmx flags, aside)."""
    model = {"AuthenticAMD": "amd-epyc", "GenuineIntel": "intel-xeon"}.get(HOST_VENDOR)
    if model is None:
        pytest.skip(f"no CPU model of the host's vendor {HOST_VENDOR}")
    first = labels(text(kernel(cpu=model)).split("\n\n")[0])
    theirs = labels(real_cpuinfo().split("\n\n")[0])
    loose = {"microcode", "vmx flags"}
    assert [l for l in first if l not in loose] == [l for l in theirs if l not in loose]
    assert labels(text(kernel(cpu="host")).split("\n\n")[0]) == theirs


# -- scenario keys --------------------------------------------------------------------------


def test_scenario_cpu_key() -> None:
    k = build({"machine": {"nr_cpus": 4, "mem": "512M", "cpu": "intel-xeon", "cpu_mhz": 2100.0}})
    b = blocks(text(k))
    assert b[0]["vendor_id"] == "GenuineIntel" and b[0]["cpu MHz"] == "2100.000" and cores(text(k)) == 2
    for machine, msg in (({"cpu": "pentium"}, r"machine: cpu must be one of amd-epyc, intel-xeon, host"),
                         ({"cpu": 1}, r"machine: cpu: expected a string"),
                         ({"arch": "arm64", "cpu": "intel-xeon"}, r"machine: cpu models are x86 CPUs"),
                         ({"cpu_mhz": 0}, r"machine: cpu_mhz must be a positive number")):
        with pytest.raises(ScenarioError, match=msg):
            build({"machine": {"mem": "512M", **machine}})
