"""A VMA as a line of /proc/PID/maps: its name (get_vma_name()) and its
text (show_map_vma()).

Model-level so that code below procfs (the layout replay, which checks
itself by rendering) needs no renderer; procfs/maps.py serves it.
"""

from __future__ import annotations

from procsim.mm.mm import MM
from procsim.mm.vma import VMA


def is_initial_heap(mm: MM, v: VMA) -> bool:
    return v.start <= mm.brk and v.end >= mm.start_brk


def is_initial_stack(mm: MM, v: VMA) -> bool:
    return v.start <= mm.start_stack <= v.end


def vma_name(mm: MM, v: VMA) -> str:
    """get_vma_name(): the name as PROCMAP_QUERY returns it, raw (a file
    path keeps its real newlines); maps_line() escapes it for the text."""
    if v.file is not None:
        if v.anon_name is not None:
            return f"[anon_shmem:{v.anon_name}]"
        return v.file.d_path()
    if v.special is not None:
        return v.special
    if is_initial_heap(mm, v):
        return "[heap]"
    if is_initial_stack(mm, v):
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
    if v.file is not None and v.anon_name is None:
        name = name.replace("\n", "\\012")  # seq_path(m, path, "\n"): paths only
    return (head.ljust(72) + " " + name + "\n") if name else head + "\n"
