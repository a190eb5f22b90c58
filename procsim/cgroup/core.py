"""cgroup v2 membership (kernel/cgroup/cgroup.c): the hierarchy's nodes by
path, the cgroup each thread group is in (its css_set's default-hierarchy
cgroup: v2 is thread-granular only in threaded subtrees, which we do not
model), migration (cgroup_attach_task through cgroup.procs), fork's
inheritance, cgroup.subtree_control and which controllers' css a cgroup
has. /proc/PID/cgroup prints the path relative to the reader's cgroup
namespace root; /proc/PID/cpuset the nearest cgroup with the cpuset
controller enabled (its parent's cgroup.subtree_control has it).

The controllers' state hangs off each node (memcg, cpu, io, pids, psi: the
modules beside this one); a controller's css exists in a cgroup when it is
the root or its parent enables the controller for its children."""

from __future__ import annotations

import errno
import posixpath
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procsim.cgroup.memcontrol import MemCgroup

# the default hierarchy's controllers, in subsystem-id order (cgroup.controllers)
SUBSYS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
# what a systemd machine enables at the root (cgroup.subtree_control); its
# slices enable cpu io memory pids, not cpuset (no AllowedCPUs=)
ROOT_CONTROLLERS = SUBSYS
SLICE_CONTROLLERS = ("cpu", "io", "memory", "pids")
# the implicit ones (perf_event: a css everywhere, no file, no control)
IMPLICIT = ("perf_event",)
PIDS_MAX = 4194304 + 1  # PID_MAX_LIMIT + 1: "max"


@dataclass(eq=False)
class Cgroup:
    path: str
    parent: "Cgroup | None"
    subtree_control: tuple[str, ...] = ()
    procs: set = field(default_factory=set)  # tgids of its members (cgroup.procs)
    id: int = 0                               # kernfs node id (cgroup.id), never reused
    children: dict = field(default_factory=dict)  # name -> Cgroup
    memcg: "MemCgroup | None" = None          # its memory css (memcontrol.py)
    # cpu controller: its task group's bandwidth (cpu.max, cpu.max.burst: cgroup/cfs_bandwidth.py)
    # and shares (tg->shares, scale_load_down: cpu.weight and cpu.weight.nice show it)
    cfs_b: Any = None
    shares: int = 1024
    sched_idle: bool = False                  # cpu.idle: tg->idle, a SCHED_IDLE group (shares 3)
    freezer: Any = None                       # cgroup.freeze state (cgroup/freezer.py)
    throtl: dict = field(default_factory=dict)  # "MAJ:MIN" -> io.max limits (cgroup/blk_throttle.py)
    io_weight: dict = field(default_factory=dict)  # io.weight: "default" and per-device weights
    # time charged to this cgroup and its descendants (cgroup_base_stat), ns
    usage_user: int = 0
    usage_system: int = 0
    usage_nice: int = 0
    io: dict = field(default_factory=dict)    # "MAJ:MIN" -> blkg_iostat [r, w, d bytes, r, w, d ios] (cgroup/io.py)
    pids_max: int = PIDS_MAX
    pids_events_max: int = 0                  # forks refused by this cgroup's pids.max
    pids_peak: int = 0
    pids_current: int = 0                     # the tasks here and below (cgroup/pids.py)
    psi: Any = None                           # its psi_group (procsim/psi)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path) if self.parent is not None else ""

    def ancestors(self):
        """Self, then each parent up to the root."""
        cg: Cgroup | None = self
        while cg is not None:
            yield cg
            cg = cg.parent

    def is_descendant(self, of: "Cgroup") -> bool:
        return any(a is of for a in self.ancestors())

    def controllers(self) -> tuple[str, ...]:
        """cgroup.controllers: what its parent enables for it (the root: all)."""
        return SUBSYS if self.parent is None else self.parent.subtree_control

    def has_css(self, ss: str) -> bool:
        return self.parent is None or ss in IMPLICIT or ss in self.parent.subtree_control


class CgroupRoot:
    """The default (v2) hierarchy."""

    def __init__(self) -> None:
        self._next_id = 1
        self.root = Cgroup("/", None, ROOT_CONTROLLERS, id=self._alloc_id())
        self.cgroups: dict[str, Cgroup] = {"/": self.root}
        self.on_css_online: list = []   # callbacks (cgroup, subsystem) as a css comes and goes
        self.on_css_offline: list = []
        self.shape_seq = 0  # moves as cgroups come and go (caches of the tree's shape key on it)
        # is this member a live process (cgroup_exit(): a zombie has left its css_set, nr_tasks)
        self.live: Callable[[int], bool] = lambda tgid: True

    def _alloc_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def by_id(self, cid: int) -> Cgroup | None:
        for cg in self.cgroups.values():
            if cg.id == cid:
                return cg
        return None

    def mkdir(self, path: str) -> Cgroup:
        """cgroup_mkdir(): EEXIST if there, ENOENT without its parent."""
        path = normalise(path)
        if path in self.cgroups:
            raise OSError(errno.EEXIST, path)
        parent = self.cgroups.get(posixpath.dirname(path))
        if parent is None:
            raise OSError(errno.ENOENT, f"{posixpath.dirname(path)}: no such cgroup")
        name = posixpath.basename(path)
        if "\n" in name or len(name) > 255:
            raise OSError(errno.EINVAL, f"{name!r}: not a cgroup name")
        cg = Cgroup(path, parent, (), id=self._alloc_id())
        self.shape_seq += 1
        self.cgroups[path] = cg
        parent.children[name] = cg
        for cb in self.on_css_online:
            cb(cg, None)
        if path.endswith(".slice"):
            # systemd enables its slices' controllers as it makes them
            self.set_subtree_control(cg, set(c for c in SLICE_CONTROLLERS if c in cg.controllers()), set())
        return cg

    def mkdir_p(self, path: str) -> Cgroup:
        path = normalise(path)
        if path in self.cgroups:
            return self.cgroups[path]
        self.mkdir_p(posixpath.dirname(path))
        return self.mkdir(path)

    def get(self, path: str) -> Cgroup:
        cg = self.cgroups.get(normalise(path))
        if cg is None:
            raise OSError(errno.ENOENT, f"{path}: no such cgroup")
        return cg

    def rmdir(self, path: str) -> None:
        """cgroup_rmdir(): EBUSY with members or children (populated)."""
        cg = self.get(path)
        if cg.parent is None:
            raise OSError(errno.EBUSY, "/")
        if any(self.live(p) for p in cg.procs) or cg.children:
            raise OSError(errno.EBUSY, cg.path)
        for cb in self.on_css_offline:
            cb(cg, None)
        del self.cgroups[cg.path]
        del cg.parent.children[cg.name]
        self.shape_seq += 1

    def attach(self, tgid: int, old: str | None, new: str) -> str:
        """Move a thread group (cgroup_attach_task); returns the new path.
        The "no internal processes" rule: a cgroup with controllers enabled
        for its children takes no processes (EBUSY), the root excepted."""
        cg = self.get(new)
        if cg.parent is not None and cg.subtree_control:
            raise OSError(errno.EBUSY, f"{cg.path}: has controllers enabled for its children")
        if old is not None and old in self.cgroups:
            self.cgroups[old].procs.discard(tgid)
        cg.procs.add(tgid)
        return cg.path

    def leave(self, tgid: int, path: str | None) -> None:
        if path is not None and path in self.cgroups:
            self.cgroups[path].procs.discard(tgid)

    def css_of(self, path: str, ss: str) -> Cgroup:
        """The cgroup whose `ss` css a member of `path` uses: the nearest
        ancestor-or-self that has one (the root always does)."""
        cg: Cgroup | None = self.cgroups.get(path, self.root)
        while cg is not None and not cg.has_css(ss):
            cg = cg.parent
        return cg or self.root

    def cpuset_path(self, path: str) -> str:
        """The cgroup whose cpuset css the task uses."""
        return self.css_of(path, "cpuset").path

    def populated(self, cg: Cgroup) -> bool:
        """cgroup.events populated: a member here or below."""
        return any(self.live(p) for p in cg.procs) or any(self.populated(c) for c in cg.children.values())

    def descendants(self, cg: Cgroup) -> list[Cgroup]:
        """Every cgroup below `cg`, pre-order."""
        out = []
        for c in cg.children.values():
            out.append(c)
            out.extend(self.descendants(c))
        return out

    def set_subtree_control(self, cg: Cgroup, enable: set[str], disable: set[str]) -> None:
        """cgroup_subtree_control_write() once parsed: ENOENT for a controller
        its cgroup.controllers lacks, EBUSY to disable one a child enables
        for its own children, or to enable any in a non-root cgroup with
        processes ("no internal processes")."""
        enable = {s for s in enable if s not in cg.subtree_control}
        disable = {s for s in disable if s in cg.subtree_control}
        for s in enable:
            if s not in cg.controllers():
                raise OSError(errno.ENOENT, f"{s}: not in {cg.path}'s cgroup.controllers")
        for s in disable:
            if any(s in c.subtree_control for c in cg.children.values()):
                raise OSError(errno.EBUSY, f"{s}: a child of {cg.path} enables it")
        if not enable and not disable:
            return
        if enable and cg.parent is not None and cg.procs:
            raise OSError(errno.EBUSY, f"{cg.path} has processes")
        cg.subtree_control = tuple(s for s in SUBSYS if (s in cg.subtree_control or s in enable) and s not in disable)
        for c in cg.children.values():
            for s in SUBSYS:
                if s in enable:
                    for cb in self.on_css_online:
                        cb(c, s)
                if s in disable:
                    for cb in self.on_css_offline:
                        cb(c, s)


def normalise(path: str) -> str:
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, f"{path!r}: a cgroup path is absolute")
    p = posixpath.normpath(path)
    return "/" if p in ("/", "//") else p


def path_from(root: str, path: str) -> str:
    """cgroup_path_ns(): `path` as seen from a namespace rooted at `root`
    (kernfs_path_from_node: "/.." for each level above the root)."""
    if root == "/":
        return path
    if path == root:
        return "/"
    if path.startswith(root + "/"):
        return path[len(root):]
    rel = posixpath.relpath(path, root)
    return "/" + rel
