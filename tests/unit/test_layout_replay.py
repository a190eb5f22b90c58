"""The layout replay (procsim/layout.py, `exec ... layout=`) chooses what a
maps text does not say as Linux would have: the VmFlags the ELF loaders
leave (checked against this host's real smaps), the hugetlb reservations
mmap makes (against the 6.18 observations of test_swap_hugetlb.py and
the MAP_HUGETLB path itself); and the model it builds on never imports
the renderers (procsim/ -> procsim/procfs/ is one way)."""

from __future__ import annotations

import ast
import errno
import pathlib
import re
import subprocess
import sys

import pytest

from hostinfo import requires_host
from procfs_helpers import read_all
from procsim import Kernel
from procsim.commands import CommandError, execute
from procsim.kernel import KernelError
from procsim.mm.vma import MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE, MAP_SHARED
from procsim.procfs.tree import ProcFS
from invariants import check_hugetlb, check_world
import invariants

PAGE = 4096
HUGE = 2 << 20
REPO = pathlib.Path(__file__).resolve().parents[2]
_HEAD = re.compile(r"[0-9a-f]+-[0-9a-f]+ ")
# VmFlags of a state maps does not show, so a replay cannot have it:
# madvise() (MADV_[NO]HUGEPAGE, MADV_WIPEONFORK, MADV_MERGEABLE) and mlock()
NOT_IN_MAPS = {"hg", "nh", "wf", "mg", "lo"}


def boot(hugepages: int = 4) -> Kernel:
    return invariants.boot(nr_cpus=2, hugepages=hugepages)


def smaps_flags(text: str) -> list[tuple[str, str]]:
    """(maps line, VmFlags codes) of each block of a smaps text."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if _HEAD.match(line):
            out.append([line, ""])
        elif line.startswith("VmFlags:"):
            out[-1][1] = line.split(":", 1)[1].strip()
    return [(a, b) for a, b in out]


def replay(k: Kernel, maps_text: str) -> int:
    pid = k.spawn(["/usr/bin/bash"])
    k.exec(pid, "/usr/bin/app", ["app"], layout=maps_text)
    return pid


def flags_of(k: Kernel, pid: int) -> dict[int, str]:
    text = read_all(ProcFS(k), f"/proc/{pid}/smaps").decode()
    return {int(line.split("-")[0], 16): fl for line, fl in smaps_flags(text)}


def huge(k: Kernel) -> tuple[int, int]:
    text = read_all(ProcFS(k), "/proc/meminfo").decode()
    m = dict(re.findall(r"^(HugePages_\w+):\s+(\d+)", text, re.M))
    return int(m["HugePages_Free"]), int(m["HugePages_Rsvd"])


def check(k: Kernel) -> None:
    check_world(k)
    check_hugetlb(k, [g.mm for g in k.groups.values() if g.mm is not None])


# -- VmFlags against this host ----------------------------------------------------------


def host_smaps() -> list[str]:
    """The smaps of a real cat (bash -c execs it: $$ is cat reading its own)
    and of a Python process with a thread that has malloc()ed (so a glibc
    thread arena, mapped MAP_NORESERVE), each a shape of ld.so's segments."""
    cat = subprocess.run(["bash", "-c", "cat /proc/$$/smaps"], capture_output=True, text=True, check=True).stdout
    threaded = subprocess.run([sys.executable, "-c", ARENA], capture_output=True, text=True, check=True).stdout
    return [cat, threaded]


ARENA = """
import threading
def arena():
    global keep
    keep = [bytearray(512) for _ in range(200)]  # small objects: malloc in the thread's arena
    print(open("/proc/self/smaps").read(), end="")
t = threading.Thread(target=arena)
t.start()
t.join()
"""


@requires_host(kernel="6.18", arch="x86_64")
def test_replay_vmflags_are_the_hosts() -> None:
    """Every VMA of a real process, every segment kind (ELF text, rodata,
    RELRO, data, bss, heap, stack, vvar, vdso, shared file, locale files),
    replayed from its maps lines, has the VmFlags the host shows."""
    relro = noreserve = 0
    for real in host_smaps():
        blocks = [(ln, fl) for ln, fl in smaps_flags(real) if not ln.endswith("[vsyscall]")]
        k = boot()
        pid = replay(k, "".join(ln + "\n" for ln, _ in blocks))
        got = smaps_flags(read_all(ProcFS(k), f"/proc/{pid}/smaps").decode())
        assert [ln for ln, _ in got[:len(blocks)]] == [ln for ln, _ in blocks]
        for (ln, want), (_, have) in zip(blocks, got):
            assert set(have.split()) == set(want.split()) - NOT_IN_MAPS and have.split() == sorted(
                have.split(), key=want.split().index), ln
            relro += ln.split()[1] == "r--p" and "ac" in want.split()
            noreserve += "nr" in want.split()
    assert relro >= 2  # the RELRO segments of at least libc and ld.so were compared
    assert noreserve >= 1  # and a thread arena's heap


# -- RELRO: the rule, on the layouts the loaders make --------------------------------------

GLIBC = """\
55d000000000-55d000002000 r--p 00000000 fe:00 10 /usr/bin/app
55d000002000-55d000007000 r-xp 00002000 fe:00 10 /usr/bin/app
55d000007000-55d00000a000 r--p 00007000 fe:00 10 /usr/bin/app
55d00000a000-55d00000b000 r--p 00009000 fe:00 10 /usr/bin/app
55d00000b000-55d00000c000 rw-p 0000a000 fe:00 10 /usr/bin/app
7f0000000000-7f0000001000 r--p 00000000 fe:00 20 /usr/lib/libl.so
7f0000001000-7f0000003000 r-xp 00001000 fe:00 20 /usr/lib/libl.so
7f0000003000-7f0000005000 r--p 00002000 fe:00 20 /usr/lib/libl.so
7f0000005000-7f0000006000 rw-p 00003000 fe:00 20 /usr/lib/libl.so
7f0000010000-7f0000011000 r--p 00000000 fe:00 30 /usr/lib/libgap.so
7f0000012000-7f0000013000 rw-p 00001000 fe:00 30 /usr/lib/libgap.so
7f0000020000-7f0000021000 r--p 00000000 fe:00 40 /usr/lib/liba.so
7f0000021000-7f0000022000 rw-p 00001000 fe:00 41 /usr/lib/libb.so
7f0000030000-7f0000031000 r--p 00000000 fe:00 50 /usr/lib/libc.so
7f0000031000-7f0000032000 rw-p 00000000 00:00 0 
7f0000040000-7f0000041000 r--s 00000000 fe:00 60 /var/db/ro
7f0000041000-7f0000042000 rw-s 00001000 fe:00 60 /var/db/ro
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
"""


def _aligned(text: str) -> str:
    """The lines as maps pads them (a name at column 73)."""
    out = []
    for line in text.splitlines():
        *head, name = line.split(" ", 5)
        out.append(" ".join(head) + " " + (" " * (72 - len(" ".join(head)) - 1) + " " + name if name else ""))
    return "".join(l + "\n" for l in out)


def test_relro_segments_keep_account() -> None:
    """The read-only start of a writable segment (ld.so mprotect()s the
    RELRO after relocation; VM_ACCOUNT stays, as on the host: `rd mr mw me
    ac`) is a private r--p VMA directly followed by a private writable VMA
    of the same file; with lld the RELRO has its own file offsets (not
    contiguous with the data's). Nothing else read-only is accounted."""
    k = boot()
    text = _aligned(GLIBC)
    pid = replay(k, text)
    assert read_all(ProcFS(k), f"/proc/{pid}/maps").decode().startswith(text)
    fl = flags_of(k, pid)
    ac = {a for a, f in fl.items() if "ac" in f.split() and "wr" not in f.split()}
    assert ac == {0x55D00000A000, 0x7F0000003000}
    assert fl[0x55D00000A000] == "rd mr mw me ac" and fl[0x55D000007000] == "rd mr mw me"
    assert fl[0x7F0000040000] == "rd mr me ms"  # a read-only shared file: no mw, never ac
    check(k)


def test_lld_relro_segment_keeps_account() -> None:
    """lld puts RELRO in a PT_LOAD of its own: on the host its VMA starts a
    page before the text's end in the file and ends a page past the data's
    start (openblas: r-xp ..288000+0x1341000, r--p 015c8000 +0x8000, rw-p
    015cf000), still `ac`."""
    k = boot()
    text = _aligned("""\
7f9000000000-7f9000002000 r--p 00000000 fe:00 70 /usr/lib/libo.so
7f9000002000-7f9000005000 r-xp 00001000 fe:00 70 /usr/lib/libo.so
7f9000005000-7f9000007000 r--p 00003000 fe:00 70 /usr/lib/libo.so
7f9000007000-7f9000008000 rw-p 00004000 fe:00 70 /usr/lib/libo.so
""")
    pid = replay(k, text)
    assert flags_of(k, pid)[0x7F9000005000] == "rd mr mw me ac"


# -- hugetlb reservations -----------------------------------------------------------------


def test_replayed_hugetlb_reserves_as_mmap_does() -> None:
    """The maps of a process with an untouched private (4 MiB) and shared
    (2 MiB) MAP_HUGETLB mapping, replayed: the same VmFlags (6.18: `rd wr mr
    mw me de ht`, `rd wr sh mr mw me ms de ht`, no `nr`) and every huge page
    reserved (HugePages_Rsvd 3, Free 4 of 4), as after the mmaps; faults
    consume the reservations, exit releases what is left."""
    src = boot()
    p = src.spawn(["/usr/bin/bash"])
    priv = src.mmap(p, 2 * HUGE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
    shar = src.mmap(p, HUGE, 3, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB)
    assert huge(src) == (4, 3)
    text = read_all(ProcFS(src), f"/proc/{p}/maps").decode()

    k = boot()
    pid = replay(k, text)
    assert read_all(ProcFS(k), f"/proc/{pid}/maps").decode() == text
    assert huge(k) == huge(src) == (4, 3)
    fl, want = flags_of(k, pid), flags_of(src, p)
    assert (fl[priv], fl[shar]) == (want[priv], want[shar]) == ("rd wr mr mw me de ht", "rd wr sh mr mw me ms de ht")
    check(k)
    k.touch(pid, priv, PAGE)
    k.touch(pid, shar, PAGE)
    assert huge(k) == (2, 1)  # 6.18: a fault takes its page's reservation
    check(k)
    k.exit_group(pid)
    assert huge(k) == (4, 0)
    check(k)


SHARED_TWICE = _aligned("""\
7f0000000000-7f0000200000 rw-s 00000000 00:11 4300 /memfd:huge (deleted)
7f0000200000-7f0000400000 r--s 00200000 00:11 4300 /memfd:huge (deleted)
7f0000400000-7f0000600000 rw-s 00000000 00:11 4300 /memfd:huge (deleted)
7f0000600000-7f0000800000 rw-p 00200000 00:11 4300 /memfd:huge (deleted)
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
""")


def test_replayed_shared_hugetlb_reserves_each_file_page_once() -> None:
    """A shared hugetlbfs file split in two VMAs (mprotect) and mapped again
    over its first huge page reserves each of its 2 pages once, in the file
    (region_chg() on the inode's map); a private mapping of it reserves its
    own (1). A page faulted through one shared mapping is the other's too."""
    k = boot()
    pid = replay(k, SHARED_TWICE)
    assert huge(k) == (4, 3)
    check(k)
    k.touch(pid, 0x7F0000000000, PAGE)
    k.touch(pid, 0x7F0000400000, PAGE, write=False)
    assert huge(k) == (3, 2)
    check(k)
    k.exit_group(pid)
    assert huge(k) == (4, 0)


@pytest.mark.parametrize("how", ["kernel", "command"])
def test_replay_the_pool_cannot_cover_is_enomem_and_changes_nothing(how: str) -> None:
    """As mmap of MAP_HUGETLB: ENOMEM when the free unreserved pages cannot
    cover the reservations; the exec fails, the world is as it was."""
    k = boot(hugepages=2)
    pid = k.spawn(["/usr/bin/bash"])
    hold = k.mmap(pid, HUGE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)  # 1 of 2 reserved
    fs = ProcFS(k)
    before = (read_all(fs, f"/proc/{pid}/maps"), huge(k), dict(k.vfs.files), k.mem.nr_free)
    with pytest.raises((KernelError, CommandError)) as e:
        if how == "kernel":
            k.exec(pid, "/usr/bin/app", ["app"], layout=SHARED_TWICE)
        else:
            execute(k, "exec", dict(pid=pid, path="/usr/bin/app", layout=SHARED_TWICE))
    assert e.value.errno == errno.ENOMEM
    assert (read_all(fs, f"/proc/{pid}/maps"), huge(k), dict(k.vfs.files), k.mem.nr_free) == before
    check(k)
    k.munmap(pid, hold, HUGE)
    k.set_nr_hugepages(3)
    k.exec(pid, "/usr/bin/app", ["app"], layout=SHARED_TWICE)  # now it fits: nothing leaked
    assert huge(k) == (3, 3)
    check(k)


# -- procsim/ never imports procsim/procfs/ -----------------------------------------------


def test_the_model_imports_no_renderer() -> None:
    """No module of the kernel model imports procfs, even inside a
    function: procfs renders the model, not the other way round."""
    offenders = []
    for path in sorted((REPO / "procsim").rglob("*.py")):
        if "procfs" in path.relative_to(REPO / "procsim").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                          if n == "procsim.procfs" or n.startswith("procsim.procfs.")]
    assert offenders == []


def test_a_layout_exec_loads_no_renderer() -> None:
    """At run time too: a kernel that replays a layout (which checks itself
    by rendering maps lines) has loaded no procsim.procfs module."""
    code = ("import sys\n"
            "from procsim import Kernel, KernelConfig\n"
            "k = Kernel(KernelConfig(nr_cpus=2, mem_bytes=1 << 30, hugepages=4)); k.create_init()\n"
            "pid = k.spawn(['/usr/bin/bash'])\n"
            f"k.exec(pid, '/usr/bin/app', ['app'], layout={_aligned(GLIBC)!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith('procsim.procfs')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
