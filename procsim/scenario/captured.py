"""The scenario keys of a captured machine (procsim/capture/ writes them):
a process's address space replayed from its maps text (`layout`) with the
pages smaps showed resident, dirty and swapped (`resident`), its comm as
prctl(PR_SET_NAME) set it (`comm`), an fd table that is exactly its
`files` (`inherit_fds = false`), and its counters (`restore`: start time,
CPU times, faults, context switches in clock ticks, set once the boot
history has played). Mixed into builder.py's _Builder."""

from __future__ import annotations

from typing import Any

from procsim import restore, ucount
from procsim.kernel import Kernel
from procsim.layout import LayoutError, parse_maps
from procsim.scenario.schema import ScenarioError, _fields, _t_bool, _t_int, _t_size

KB = 1024
PAGE = 4096
TICK_NS = 10_000_000  # USER_HZ = 100: stat's clock ticks
RESIDENT = {"addr": _t_size, "rss": _t_size, "dirty": _t_size, "swap": _t_size, "anon_huge": _t_size,
            "anon": _t_size}
RESTORE_TASK = {"start": "start_time", "utime": "utime", "stime": "stime", "minflt": "min_flt",
                "majflt": "maj_flt", "nvcsw": "nvcsw", "nivcsw": "nivcsw", "cpu": "cpu", "sigblk": "sig_blocked",
                "forknoexec": "forknoexec", "superpriv": "superpriv"}
RESTORE_GROUP = {"cutime": "cutime", "cstime": "cstime", "sigign": "sig_ignore", "sigcgt": "sig_catch",
                 "cminflt": "cmin_flt", "cmajflt": "cmaj_flt"}
RESTORE_SCHEMA = {key: _t_size for key in (*RESTORE_TASK, *RESTORE_GROUP)} | {"nice": _t_int,
                                                                             "forknoexec": _t_bool,
                                                                             "superpriv": _t_bool}
RESTORE_SCHEMA["sigq"] = _t_size  # the user's pending signals (procsim/ucount.py)
RESTORE_SCHEMA |= {"fdsize": _t_int, "umask": _t_int}  # the fd table's size, the umask (restore_files)
THREAD_RESTORE_SCHEMA = {key: RESTORE_SCHEMA[key] for key in RESTORE_TASK}
SUMMED = ("utime", "stime", "minflt", "majflt", "nvcsw", "nivcsw")  # a process's: its threads' together
TIMES = ("start", "utime", "stime", "cutime", "cstime")


class CapturedBuilder:
    """A part of the scenario builder (builder.py's _Builder: the kernel, _call, _exec)."""

    k: Kernel

    def _captured(self, pid: int, v: dict, where: str) -> None:
        """After the exec: the captured image, its name, its fds."""
        if "layout" in v:
            self._replay_layout(pid, v, where)
        if "comm" in v:
            self._call(f"{where}: comm", restore.set_name, self.k, pid, v["comm"])
        if "pgid" in v and v["pgid"] != self.k.group(pid).pgid:  # now: the children made next inherit it
            self._call(f"{where}: pgid", restore.set_pgrp, self.k, pid, v["pgid"], pid == 1 and v["pgid"] == 0)
        if v.get("inherit_fds") is False:
            keep = {f.get("fd") for f in v.get("files", []) if isinstance(f, dict) and f.get("inherited")}
            for e in self._exec(where, "fds", pid=pid):
                if e["fd"] not in keep:
                    self._exec(where, "close_fd", pid=pid, fd=e["fd"])
        if "resident" in v:  # once every process exists: a fork would copy its page tables
            self.residents = getattr(self, "residents", []) + [(pid, v, where)]
        if "restore_mm" in v:  # checked now, set with the counters (the history runs it on CPUs)
            if not isinstance(v["restore_mm"], dict):
                raise ScenarioError(f"{where}: restore_mm: expected a table")
            self.restores_mm = getattr(self, "restores_mm", []) + [(pid, v["restore_mm"], where)]

    def _captured_inos(self, pid: int, v: dict, where: str) -> None:
        for j, f in enumerate(v.get("files", [])):
            if isinstance(f, dict) and "ino" in f and ("peer_ino" not in f or "connect" in f):
                if "fd" not in f:
                    raise ScenarioError(f"{where} files #{j + 1}: ino needs fd")
                self._call(f"{where} files #{j + 1}", restore.set_ino, self.k, pid, f["fd"], f["ino"])

    def _replay_layout(self, pid: int, v: dict, where: str) -> None:
        text = v["layout"]
        try:
            parse_maps(text)
        except LayoutError as e:
            raise ScenarioError(f"{where}: layout: {e}") from None
        argv = v.get("argv") or list(self.k.group(pid).cmdline)
        path = v.get("exe") or (argv[0] if argv else "/sbin/init")
        env = v.get("env", list(self.k.group(pid).environ))
        self._exec(f"{where}: layout", "exec", pid=pid, path=path, argv=argv, env=env, layout=text)

    def _resident(self, pid: int, v: dict, where: str) -> None:
        """Each row's VMA gets its dirty pages written first, its clean
        ones read, then its swapped ones written and paged out; THP-backed
        anonymous memory (anon_huge) as whole 2 MiB folios at the start."""
        k = self.k
        mm = k.group(pid).mm
        for j, row in enumerate(v["resident"]):
            w = f"{where}: resident #{j + 1}"
            r = _fields(row, RESIDENT, w, ("addr", "rss"))
            vma = mm.vmas.find(r["addr"]) if mm is not None else None
            if vma is None or vma.start != r["addr"]:
                raise ScenarioError(f"{w}: no VMA starts at {r['addr']:#x}")
            size = vma.end - vma.start
            rss, dirty, swap = r["rss"] * KB, r.get("dirty", 0) * KB, r.get("swap", 0) * KB
            huge = r.get("anon_huge", 0) * KB
            if rss + swap > size or dirty > rss or huge > rss:
                raise ScenarioError(f"{w}: rss + swap ({(rss + swap) // KB} kB) or dirty is more than the VMA "
                                    f"({size // KB} kB)")
            if vma.special == "[vdso]":  # exec mapped its pages; fewer: pages the process never touched
                if rss < size:
                    keep = -(-rss // PAGE) * PAGE
                    self._exec(w, "madvise", pid=pid, addr=vma.start + keep, length=size - keep, advice="dontneed")
                continue
            anon = vma.file is None and vma.special is None
            at = vma.start
            if huge:
                hs = -(-vma.start // (2 << 20)) * (2 << 20)
                self._call(w, restore.populate, k, pid, hs, huge, True, True)
                at = hs + huge
            if anon or vma.is_anon:
                dirty = rss - huge  # anonymous pages read back as the zero page: written
                clean = 0
            elif "anon" in r:  # a private file mapping: its COW copies written, its file (shmem) pages read
                if r["anon"] * KB > rss:
                    raise ScenarioError(f"{w}: anon ({r['anon']} kB) is more than rss ({rss // KB} kB)")
                dirty, clean = r["anon"] * KB, rss - r["anon"] * KB
            else:
                dirty, clean = dirty, rss - dirty
            plan = [(dirty, True), (clean, False)]
            for length, write in plan:
                if length:
                    at = self._fill(w, pid, vma, at, length, write)
            if swap:
                start = self._fill(w, pid, vma, at, swap, True) - swap
                self._exec(w, "madvise", pid=pid, addr=start, length=swap, advice="pageout")

    def _fill(self, where: str, pid: int, vma: Any, at: int, length: int, write: bool) -> int:
        """Populate `length` bytes from `at` (wrapping to the VMA's start),
        returning where it ended."""
        if at + length > vma.end:
            head = vma.end - at
            if head:
                self._call(where, restore.populate, self.k, pid, at, head, write)
            at = vma.start
            length -= head
        self._call(where, restore.populate, self.k, pid, at, length, write)
        return at + length

    # -- counters, once the history is over -------------------------------------------

    def _restore_later(self, pid: int, v: dict, where: str, threads: list[tuple[int, dict]] | None = None) -> None:
        if "restore" not in v and not threads:
            return
        pending = getattr(self, "restores", None)
        if pending is None:
            pending = self.restores = []
        pending.append((pid, v.get("restore", {}), where, threads or []))

    def _restore_counters(self) -> None:
        """Set every captured task's counters: a process's values are its
        totals, so its main thread gets them less its other threads'."""
        for pid, v, where in getattr(self, "residents", []):
            if pid in self.k.tasks:
                self._resident(pid, v, where)
        for pid, mmv, where in getattr(self, "restores_mm", []):
            self._call(f"{where}: restore_mm", restore.restore_mm, self.k, pid, **mmv)
        for pid, vals, where, threads in getattr(self, "restores", []):
            vals = _fields(vals, RESTORE_SCHEMA, f"{where}: restore")
            files = {key: vals.pop(key) for key in ("fdsize", "umask") if key in vals}
            if files:
                self._call(f"{where}: restore", restore.restore_files, self.k, pid, **files)
            if "sigq" in vals:
                self._call(f"{where}: restore", ucount.set_sigpending, self.k, pid, vals.pop("sigq"))
            if "nice" in vals:  # a kernel thread's (set_user_nice by its creator)
                self._call(f"{where}: restore", self.k.set_nice, pid, vals.pop("nice"))
            for tid, tv in threads:
                tv = _fields(tv, THREAD_RESTORE_SCHEMA, f"{where} thread {tid}: restore")
                self._call(f"{where} thread {tid}: restore", restore.restore_task, self.k, tid,
                           **_task_values(tv))
            main = _task_values(vals)
            if self.k.group(pid).mm is not None:  # the other threads' counters, as they now are
                others = [t for t in self.k.group(pid).threads if t.pid != pid and not t.dead]
                for key in SUMMED:
                    attr = RESTORE_TASK[key]
                    if attr in main:
                        main[attr] = max(0, main[attr] - sum(getattr(t, attr) for t in others))
            self._call(f"{where}: restore", restore.restore_task, self.k, pid, **main)
            group = {RESTORE_GROUP[key]: vals[key] * TICK_NS if key in TIMES else vals[key]
                     for key in RESTORE_GROUP if key in vals}
            if group and self.k.group(pid).mm is not None:
                self._call(f"{where}: restore", restore.restore_group, self.k, pid, **group)


def _task_values(v: dict) -> dict:
    return {RESTORE_TASK[key]: x * TICK_NS if key in TIMES else x for key, x in v.items() if key in RESTORE_TASK}
