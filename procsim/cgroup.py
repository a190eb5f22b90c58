"""cgroup v2 membership (kernel/cgroup/cgroup.c): the hierarchy's nodes by
path, the cgroup each thread group is in (its css_set's default-hierarchy
cgroup: v2 is thread-granular only in threaded subtrees, which we do not
model), migration (cgroup_attach_task through cgroup.procs) and fork's
inheritance. /proc/PID/cgroup prints the path relative to the reader's
cgroup namespace root; /proc/PID/cpuset the nearest cgroup with the cpuset
controller enabled (its parent's cgroup.subtree_control has it).

The files of the tree under /sys/fs/cgroup are another issue's; the nodes
here carry what they will need (subtree_control)."""

from __future__ import annotations

import errno
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from procsim.errors import KernelError

if TYPE_CHECKING:
    from procsim.kernel import Kernel

# what a systemd machine enables at the root (cgroup.subtree_control); its
# slices enable cpu io memory pids, not cpuset (no AllowedCPUs=)
ROOT_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
SLICE_CONTROLLERS = ("cpu", "io", "memory", "pids")


@dataclass(eq=False)
class Cgroup:
    path: str
    parent: "Cgroup | None"
    subtree_control: tuple[str, ...] = ()
    procs: set = field(default_factory=set)  # tgids of its members (cgroup.procs)


class CgroupRoot:
    """The default (v2) hierarchy."""

    def __init__(self) -> None:
        self.cgroups: dict[str, Cgroup] = {"/": Cgroup("/", None, ROOT_CONTROLLERS)}

    def mkdir(self, path: str) -> Cgroup:
        """cgroup_mkdir(): EEXIST if there, ENOENT without its parent."""
        path = normalise(path)
        if path in self.cgroups:
            raise OSError(errno.EEXIST, path)
        parent = self.cgroups.get(posixpath.dirname(path))
        if parent is None:
            raise OSError(errno.ENOENT, f"{posixpath.dirname(path)}: no such cgroup")
        cg = Cgroup(path, parent, SLICE_CONTROLLERS if path.endswith(".slice") else ())
        self.cgroups[path] = cg
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
        """cgroup_rmdir(): EBUSY with members or children."""
        cg = self.get(path)
        if cg.parent is None:
            raise OSError(errno.EBUSY, "/")
        if cg.procs or any(c.parent is cg for c in self.cgroups.values()):
            raise OSError(errno.EBUSY, cg.path)
        del self.cgroups[cg.path]

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

    def cpuset_path(self, path: str) -> str:
        """The cgroup whose cpuset css the task uses: the nearest ancestor-or-
        self whose parent enables cpuset for its children."""
        cg: Cgroup | None = self.cgroups.get(path)
        while cg is not None and cg.parent is not None:
            if "cpuset" in cg.parent.subtree_control:
                return cg.path
            cg = cg.parent
        return "/"


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


class CgroupSyscalls:
    """cgroup mkdir and cgroup.procs writes as the Kernel's entry points
    (a Kernel mixin)."""

    def cgroup_mkdir(self: "Kernel", path: str) -> None:
        with self.lock:
            try:
                self.cgroups.mkdir(path)
            except OSError as e:
                raise KernelError(e.errno, str(e.strerror or e)) from None
            self._changed("cgroup", path=path)

    def cgroup_attach(self: "Kernel", pid: int, path: str, create: bool = False) -> None:
        """A write of `pid` to PATH/cgroup.procs: the whole thread group moves."""
        with self.lock:
            tg = self.group(pid)
            if tg.zombie:
                raise KernelError(errno.ESRCH, f"{pid} is a zombie")
            try:
                if create:
                    self.cgroups.mkdir_p(path)
                tg.cgroup = self.cgroups.attach(tg.tgid, tg.cgroup, path)
            except OSError as e:
                raise KernelError(e.errno, str(e.strerror or e)) from None
            self._changed("cgroup", pid=pid)
