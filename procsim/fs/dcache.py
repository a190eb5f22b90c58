"""The dentry and inode caches as fs/dcache.c and fs/inode.c count them
(sysctls fs.dentry-state, fs.inode-state, fs.inode-nr, read by `sar -v`).

The dentries are the objects of the slab's dentry cache (procsim/mm/slab.py,
the reclaimable slab). Those in use are the ones something holds: every
path component of a task's root and cwd, of an exec'd file, of a mapped or
open file (a dentry holds its parent), and one pseudo dentry per open pipe,
socket or anon inode (d_alloc_pseudo); the rest sit unused on the LRU. A
cached inode is held by its dentry (so none is on the inode LRU: nr_unused
0, as a quiet 6.18 shows) and there is one per positive dentry. Lookups
that miss are not modelled, so there are no negative dentries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.mm.slab import slab_caches

if TYPE_CHECKING:
    from procsim.kernel import Kernel

DENTRY_AGE_LIMIT = 45  # dentry_stat.age_limit: a constant of fs/dcache.c


def _components(path: str, into: set[str]) -> None:
    """The dentries of `path` and its ancestors, the root included."""
    while path not in into:
        into.add(path)
        if path == "/":
            return
        path = path.rsplit("/", 1)[0] or "/"


def dentries_in_use(k: "Kernel") -> int:
    paths: set[str] = set()
    pseudo: set[int] = set()
    seen: set[int] = set()
    for t in k.tasks.values():
        if t.fs is not None and id(t.fs) not in seen:
            seen.add(id(t.fs))
            _components(t.fs.root, paths)
            _components(t.fs.pwd, paths)
        if t.files is not None and id(t.files) not in seen:
            seen.add(id(t.files))
            for _, f in t.files.items():
                if f.inode is not None:
                    _components(f.inode.path, paths)
                else:
                    pseudo.add(f.ino)
    for tg in k.groups.values():
        if tg.exe_file is not None:
            _components(tg.exe_file.path, paths)
        mm = tg.mm
        if mm is not None and id(mm) not in seen:
            seen.add(id(mm))
            for v in mm.vmas:
                if v.file is not None and not v.file.shmem:
                    _components(v.file.path, paths)
    return len(paths) + len(pseudo)


def dentry_state(k: "Kernel") -> tuple[int, int, int, int, int, int]:
    """struct dentry_stat_t: nr_dentry (the dentry cache's allocated
    objects), nr_unused, age_limit, want_pages, nr_negative, dummy."""
    total = next(c for c in slab_caches(k) if c.name == "dentry").active_objs
    return total, max(0, total - dentries_in_use(k)), DENTRY_AGE_LIMIT, 0, 0, 0


def inode_state(k: "Kernel") -> tuple[int, int]:
    """nr_inodes, nr_unused (inodes_stat_t's first two)."""
    total, _, _, _, negative, _ = dentry_state(k)
    return total - negative, 0
