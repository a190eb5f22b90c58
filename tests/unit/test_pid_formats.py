"""Per-process files (status, stat, statm, maps, cmdline) against the spec
(§3, §7, §8, §9) and against the real kernel's own files on this machine."""

from __future__ import annotations

import re

import pytest

from hostinfo import STATUS_CONFIG, requires_host
from procsim import Kernel
from procsim.procfs import maps, pid as P
from procsim.procfs.context import Caller, Ctx
from invariants import boot

ROOT = Caller(1, 0, 0)
NOBODY = Caller(1, 65534, 65534)


@pytest.fixture
def k() -> Kernel:
    return boot(nr_cpus=8)


def render(k: Kernel, fn, pid: int, caller: Caller = ROOT, thread_view: bool = False) -> str:
    return fn(Ctx(k, caller, k.tasks[pid], thread_view)).decode()


def status_dict(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines())


def real_labels(path: str) -> list[str]:
    with open(path) as f:
        return [line.split(":", 1)[0] for line in f]


@requires_host(kernel="6.18", arch="x86_64", config=STATUS_CONFIG)
def test_status_lines_match_the_real_kernel_order(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    k.config.proc_cpus_active_mm = False
    ours = [line.split(":", 1)[0] for line in render(k, P.status, p).splitlines()]
    real = [lbl for lbl in real_labels("/proc/self/status") if not lbl.startswith("x86_Thread")]
    assert ours == real


def test_status_every_line_is_label_tab_value(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    text = render(k, P.status, p)
    assert text.endswith("\n") and not text.endswith("\n\n")
    for line in text.splitlines():
        assert re.fullmatch(r"[A-Za-z_()]+:\t.*", line), line
    d = status_dict(text)
    assert d["Groups"] == " "
    for key in ("VmPeak", "VmSize", "VmRSS", "RssAnon", "VmPTE", "HugetlbPages"):
        assert re.fullmatch(r" *\d+ kB", d[key]) and len(d[key]) >= 11, key


@requires_host(kernel="6.18", arch="x86_64", config=STATUS_CONFIG, features=("kthreadd",))
def test_kthread_status_matches_real_kthreadd_labels(k: Kernel) -> None:
    ours = [line.split(":", 1)[0] for line in render(k, P.status, 2).splitlines()]
    assert ours == [lbl for lbl in real_labels("/proc/2/status") if not lbl.startswith("x86_Thread")]


def test_kthread_status(k: Kernel) -> None:
    d = status_dict(render(k, P.status, 2))
    assert d["Kthread"] == "1" and d["PPid"] == "0" and d["SigIgn"] == "ffffffffffffffff"
    assert "Cpus_active_mm" not in d


def test_cpus_active_mm_placement_and_forms(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    lines = render(k, P.status, p).splitlines()
    i = [line.split(":")[0] for line in lines].index("Cpus_allowed_list")
    assert lines[i + 1] == "Cpus_active_mm:\t00" and lines[i + 2] == "Cpus_active_mm_list:\t"
    assert lines[i + 3].startswith("Mems_allowed:\t")
    k.run(p, 3)
    d = status_dict(render(k, P.status, p))
    assert (d["Cpus_active_mm"], d["Cpus_active_mm_list"]) == ("08", "3")
    k.run(p, 5)  # migrate: CPU 3 keeps its bit (no shootdown yet)
    d = status_dict(render(k, P.status, p))
    assert (d["Cpus_active_mm"], d["Cpus_active_mm_list"]) == ("28", "3,5")


def test_cpus_active_mm_absent_off_x86() -> None:
    k = boot(arch="arm64", kthreadd=False)
    p = k.spawn(["/usr/bin/bash"])
    k.run(p, 1)
    assert "Cpus_active_mm" not in render(k, P.status, p)


def test_thread_views_share_the_mm_mask(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    t = k.clone_thread(p, "worker")
    k.run(p, 1)
    k.run(t, 2)
    a = status_dict(render(k, P.status, p, thread_view=True))
    b = status_dict(render(k, P.status, t, thread_view=True))
    assert a["Cpus_active_mm_list"] == b["Cpus_active_mm_list"] == "1-2"
    assert b["Pid"] == str(t) and b["Tgid"] == str(p) and b["Name"] == "worker"
    assert a["Threads"] == b["Threads"] == "2"


def test_stat_has_52_fields_and_agrees_with_status_and_statm(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"], uid=1000, gid=1000)
    k.touch(p, k.mmap(p, 1 << 20), 1 << 20)
    stat = render(k, P.stat, p)
    assert stat.endswith("\n") and "  " not in stat
    rest = stat[stat.rindex(")") + 2:].split()
    assert len(rest) + 2 == 52 == len(open("/proc/self/stat").read().rsplit(")", 1)[1].split()) + 2
    vsize, rss = int(rest[20]), int(rest[21])
    statm = list(map(int, render(k, P.statm, p).split()))
    d = status_dict(render(k, P.status, p))
    kb = {key: int(d[key].split()[0]) for key in ("VmSize", "VmRSS", "RssFile", "RssShmem", "VmData", "VmStk")}
    assert vsize == kb["VmSize"] * 1024 == statm[0] * 4096
    assert rss == statm[1] == kb["VmRSS"] // 4
    assert statm[2] == (kb["RssFile"] + kb["RssShmem"]) // 4
    assert statm[5] == (kb["VmData"] + kb["VmStk"]) // 4
    assert statm[4] == statm[6] == 0


def test_stat_hides_addresses_from_others(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    rest = render(k, P.stat, p, NOBODY).rsplit(")", 1)[1].split()
    assert rest[23:26] == ["1", "1", "0"]           # startcode endcode startstack
    assert rest[-8:] == ["0"] * 8                   # seven addresses and exit_code
    own = render(k, P.stat, p, ROOT).rsplit(")", 1)[1].split()
    assert int(own[23]) > 1


def test_zombie_files(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    c = k.fork(p)
    k.exit_group(c, 3)
    d = status_dict(render(k, P.status, c))
    assert d["State"] == "Z (zombie)" and "Umask" not in d and "VmRSS" not in d and d["FDSize"] == "0"
    assert render(k, P.statm, c) == "0 0 0 0 0 0 0\n"
    rest = render(k, P.stat, c).rsplit(")", 1)[1].split()
    assert rest[0] == "Z" and rest[20] == rest[21] == "0" and rest[-1] == str(3 << 8)
    assert render(k, maps.render, c) == "" and render(k, P.cmdline, c) == ""
    k.wait(p, c)
    assert c not in k.tasks


def test_maps_lines_and_names(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    text = render(k, maps.render, p)
    line_re = re.compile(r"[0-9a-f]{8,}-[0-9a-f]{8,} [r-][w-][x-][ps] [0-9a-f]{8,} [0-9a-f]{2}:[0-9a-f]{2} \d+ (.*)")
    names = []
    for line in text.splitlines():
        m = line_re.fullmatch(line)
        assert m, line
        name = m.group(1).strip()
        if name:
            assert line[73:] == name, line  # column 73, as the real kernel pads
            names.append(name)
    assert text.splitlines()[-1].endswith("[vsyscall]")
    for want in ("/usr/bin/bash", "[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]",
                 "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        assert want in names
    # an anonymous mapping prints nothing after the inode and its one space
    a = k.mmap(p, 8192, prot="rw" and 3)
    k.mprotect(p, a, 4096, 1)
    anon = [line for line in render(k, maps.render, p).splitlines() if line.startswith(f"{a:08x}")]
    assert anon == [f"{a:08x}-{a + 4096:08x} r--p 00000000 00:00 0 "]


@requires_host(arch="x86_64", vsyscall="xonly")
def test_maps_gate_vma_as_real(k: Kernel) -> None:
    text = render(k, maps.render, k.spawn(["/usr/bin/bash"]))
    real = [line for line in open("/proc/self/maps") if line.rstrip().endswith("[vsyscall]")]
    assert text.splitlines()[-1] + "\n" == real[0]


def test_shared_anon_and_file_names(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/bash"])
    a = k.mmap(p, 3 * 4096, 3, 0x01 | 0x20)
    f = k.mmap(p, 4096, 1, 0x01, path="/data/file with space\nnl", writable=False)
    lines = {line.split()[0].split("-")[0]: line for line in render(k, maps.render, p).splitlines()}
    assert lines[f"{a:08x}"].split()[1:4] == ["rw-s", "00000000", "00:01"]
    assert lines[f"{a:08x}"].endswith("/dev/zero (deleted)")
    assert lines[f"{f:08x}"].split()[1] == "r--s"
    assert lines[f"{f:08x}"].endswith("/data/file with space\\012nl")


def test_cmdline_and_comm(k: Kernel) -> None:
    p = k.spawn(["/usr/bin/python3", "-m", "http.server"])
    assert render(k, P.cmdline, p) == "/usr/bin/python3\0-m\0http.server\0"
    assert render(k, P.comm, p) == "python3\n"
    assert render(k, P.cmdline, 2) == ""
