"""/proc/PID/maps (spec §3) and the VMA naming rules shared with smaps (§2.4)."""

from __future__ import annotations

from procsim.mm.mm import MM
from procsim.mm.vma import VMA
from procsim.procfs.context import Ctx

VSYSCALL = b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"


def vma_name(mm: MM, v: VMA) -> str:
    if v.file is not None:
        if v.anon_name is not None:
            return f"[anon_shmem:{v.anon_name}]"
        return v.file.d_path().replace("\n", "\\012")
    if v.special is not None:
        return v.special
    if v.start <= mm.brk and v.end >= mm.start_brk:
        return "[heap]"
    if v.start <= mm.start_stack <= v.end:
        return "[stack]"
    if v.anon_name is not None:
        return f"[anon:{v.anon_name}]"
    return ""


def maps_line(mm: MM, v: VMA) -> str:
    if v.file is not None:
        f = v.file
        head = f"{v.start:08x}-{v.end:08x} {v.perms()} {v.pgoff << 12:08x} {f.dev[0]:02x}:{f.dev[1]:02x} {f.ino} "
    else:
        head = f"{v.start:08x}-{v.end:08x} {v.perms()} 00000000 00:00 0 "
    name = vma_name(mm, v)
    return (head.ljust(72) + " " + name + "\n") if name else head + "\n"


def render(ctx: Ctx) -> bytes:
    # an exited thread (a leader whose threads live on) has no mm: empty maps
    mm = None if ctx.task.dead else ctx.task.mm
    if mm is None:
        return b""
    body = "".join(maps_line(mm, v) for v in mm.vmas).encode()
    return body + VSYSCALL if ctx.kernel.config.arch == "x86" else body
