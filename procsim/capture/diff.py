"""`procsim diff SRC_ROOT MNT/proc`: a replay compared with its source,
file by file for every pid both serve, field by field where a file
differs, with the reason the model gives for each kind of difference."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from procsim.capture.parse import parse_smaps

PID_FILES = ("cmdline", "comm", "maps", "status", "statm", "stat", "smaps", "limits", "fd", "cgroup")
GLOBAL_FILES = ("meminfo", "version", "cpuinfo", "net/dev", "net/tcp", "net/tcp6", "net/udp", "net/udp6", "net/unix",
                "diskstats", "partitions", "swaps")
MEMINFO_TOTALS = ("MemTotal", "SwapTotal", "HugePages_Total", "Hugepagesize")
SMAPS_FIELDS = ("Size", "Rss", "Swap")
STAT_NAMES = {1: "pid", 2: "comm", 3: "state", 4: "ppid", 5: "pgrp", 6: "session", 7: "tty_nr", 8: "tpgid",
              9: "flags", 10: "minflt", 11: "cminflt", 12: "majflt", 13: "cmajflt", 14: "utime", 15: "stime",
              16: "cutime", 17: "cstime", 18: "priority", 19: "nice", 20: "num_threads", 21: "itrealvalue",
              22: "starttime", 23: "vsize", 24: "rss", 25: "rsslim", 26: "startcode", 27: "endcode",
              28: "startstack", 29: "kstkesp", 30: "kstkeip", 31: "signal", 32: "blocked", 33: "sigignore",
              34: "sigcatch", 35: "wchan", 36: "nswap", 37: "cnswap", 38: "exit_signal", 39: "processor",
              40: "rt_priority", 41: "policy", 42: "delayacct_blkio_ticks", 43: "guest_time", 44: "cguest_time",
              45: "start_data", 46: "end_data", 47: "start_brk", 48: "arg_start", 49: "arg_end", 50: "env_start",
              51: "env_end", 52: "exit_code"}
MOVING = "a counter that moves (it moved between the capture and this read)"
MOVED = "changed in the source since the capture (the replay shows the captured value)"
REMAPPED = "the source's address space changed since the capture"
HISTORY = "derived from the replay's history (peaks, page tables, stack and arg addresses): not captured"
PTE = ("page tables the source holds past what the replay's pages need and the capture did not record (a capture "
       "without restore_mm.pgtables, or VMAs with no room left for empty tables)")
PTE_MORE = ("the replay placed a VMA's resident pages (smaps gives how many, not where: pagemap would) across more "
            "page tables than the source's; tables that hold pages are not taken away")
HWM = "a peak the source reached before the capture by pages it no longer has, or one the replay's faults passed"
PGRP = "its parent or process group was not captured (an uncaptured parent's children are init's)"
SIGNALS = "pending signals are not captured (the model queues none)"
MASKS = "a signal mask the source changed since the capture (the masks are captured)"
WHERE = "where a task runs: the replay's scheduler places it"
REASONS = {
    "status": {"VmPeak": HWM, "VmHWM": HWM, "VmPTE": PTE, "SigQ": MOVING, "SigPnd": SIGNALS,
               "NSsid": PGRP, "NSpgid": PGRP, "Name": "a kworker's name says the work it runs now (it moves)",
               "ShdPnd": SIGNALS, "SigBlk": MASKS, "SigIgn": MASKS, "SigCgt": MASKS,
               "voluntary_ctxt_switches": MOVING,
               "nonvoluntary_ctxt_switches": MOVING, "State": MOVING, "FDSize": "the fd table's size follows "
               "the fds the replay opened", "Umask": MOVED, "TracerPid": "ptrace is not captured"},
    "stat": {"utime": MOVING, "stime": MOVING, "minflt": MOVING, "majflt": MOVING, "cminflt": MOVING,
             "cmajflt": MOVING, "state": MOVING, "processor": WHERE, "kstkesp": HISTORY, "kstkeip": HISTORY,
             "startstack": HISTORY, "arg_start": HISTORY, "arg_end": HISTORY, "env_start": HISTORY,
             "env_end": HISTORY, "signal": SIGNALS, "blocked": MASKS, "sigignore": MASKS, "sigcatch": MASKS,
             "wchan": HISTORY, "tty_nr": "the controlling tty is not captured", "tpgid": "not captured",
             "pgrp": PGRP, "session": PGRP, "comm": "a kworker's name says the work it runs now (it moves)",
             "delayacct_blkio_ticks": MOVING,
             "start_brk": HISTORY, "startcode": HISTORY, "endcode": HISTORY, "start_data": HISTORY,
             "end_data": HISTORY, "flags": "PF_* flags the source set since (PF_SUPERPRIV, PF_FORKNOEXEC are "
             "captured; PF_MEMALLOC and the like are transient)", "rss": MOVING,
             "vsize": MOVING},
    "statm": {"resident": MOVING, "shared": MOVING},
    "comm": {"comm": "a kworker's name says the work it runs now (it moves)"},
    "fd": {"ino": "sockets, pipes and anon inodes get the replay's inode numbers"},
}
TABLES = {"net/dev", "net/tcp", "net/tcp6", "net/udp", "net/udp6", "net/unix", "diskstats", "swaps"}
# a line only one side has: (absent from the replay, absent from the source)
ABSENT = {"net": ("a socket of a process not captured (its fds unreadable, or another namespace's), or a "
                  "connection whose other end no captured process holds (replayed unconnected)",
                  "a socket the source did not list at the capture's instant"),
          "diskstat": ("a device the capture does not take (loop and zram are set up at run time; partitions "
                       "of a disk the model has no kind for)", "a device of the model's own"),
          "net/dev": ("an interface the capture does not take (not Ethernet)", "an interface of the model's own"),
          "swaps": ("a swap area past the model's one", "the model's swap area")}
KADDR = "a kernel address (hashed %pK): the replay's own objects"
DEV_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", "rx_fifo", "rx_frame", "rx_compressed", "rx_multicast",
              "tx_bytes", "tx_packets", "tx_errs", "tx_drop", "tx_fifo", "tx_colls", "tx_carrier", "tx_compressed")
INET_FIELDS = ("sl", "local", "remote", "st", "queues", "timer", "retrnsmt", "uid", "timeout", "inode", "ref",
               "pointer")
UNIX_FIELDS = ("pointer", "refcount", "protocol", "flags", "type", "st", "inode", "path")
DISKSTATS_FIELDS = ("reads", "reads_merged", "sectors_read", "ms_reading", "writes", "writes_merged",
                    "sectors_written", "ms_writing", "in_flight", "io_ticks", "time_in_queue", "discards",
                    "discards_merged", "sectors_discarded", "ms_discarding", "flushes", "ms_flushing")
SWAPS_FIELDS = ("type", "size", "used", "priority")
for _k in ("net/tcp", "net/tcp6", "net/udp", "net/udp6"):
    REASONS[_k] = {"pointer": KADDR, "queues": MOVING, "timer": MOVING, "sl": "the hash walk's order of the "
                   "replay's sockets (udp: slots salted per namespace, sized by memory)", "rest": MOVING}
REASONS["net/unix"] = {"pointer": KADDR, "refcount": "references follow how the replay holds the socket"}
REASONS["net/dev"] = dict.fromkeys(DEV_FIELDS, MOVING)
REASONS["diskstats"] = dict.fromkeys(DISKSTATS_FIELDS, MOVING) | {
    "in_flight": "requests in flight at the capture: the replay starts with none"}
REASONS["swaps"] = {"used": MOVING}
STATM = ("size", "resident", "shared", "text", "lib", "data", "dt")


@dataclass
class Report:
    same: Counter = field(default_factory=Counter)      # file kind -> identical fields
    total: Counter = field(default_factory=Counter)     # file kind -> fields compared
    files_same: Counter = field(default_factory=Counter)
    files_total: Counter = field(default_factory=Counter)
    fields: Counter = field(default_factory=Counter)    # (kind, field) -> differing count
    examples: dict = field(default_factory=dict)        # (kind, field) -> (pid, src, dst)
    why: dict = field(default_factory=dict)             # (kind, field) -> Counter of reasons
    pids: int = 0
    stable_same: Counter = field(default_factory=Counter)   # the same, over pids whose maps did not move
    stable_total: Counter = field(default_factory=Counter)
    moved: list = field(default_factory=list)               # pids whose address space changed since the capture
    hidden: list = field(default_factory=list)          # pids whose maps the source did not let us read

    def diff(self, kind: str, name: str, pid: int | str, a: str, b: str, why: str | None = None) -> None:
        self.fields[(kind, name)] += 1
        self.examples.setdefault((kind, name), (pid, a, b))
        reason = why or REASONS.get(kind, {}).get(name, "derived differently by the model")
        self.why.setdefault((kind, name), Counter())[reason] += 1

    def percent(self, kind: str) -> float:
        return 100.0 * self.same[kind] / self.total[kind] if self.total[kind] else 100.0

    @property
    def differences(self) -> int:
        return sum(self.fields.values())

    def text(self) -> str:
        out = [f"{self.pids} pids compared"]
        if self.hidden:
            out.append(f"{len(self.hidden)} pids skipped: their maps was unreadable in the source, so the capture "
                       f"has no image for them ({', '.join(map(str, self.hidden[:10]))}"
                       f"{'...' if len(self.hidden) > 10 else ''})")
        for kind in sorted(self.total):
            out.append(f"  {kind:8} {self.files_same[kind]}/{self.files_total[kind]} files identical, "
                       f"{self.same[kind]}/{self.total[kind]} fields ({self.percent(kind):.2f}%)")
        if self.moved:
            out.append(f"{len(self.moved)} pids changed their mappings since the capture; over the other "
                       f"{self.pids - len(self.moved)}:")
            for kind in sorted(self.stable_total):
                pct = 100.0 * self.stable_same[kind] / self.stable_total[kind]
                out.append(f"  {kind:8} {self.stable_same[kind]}/{self.stable_total[kind]} fields ({pct:.2f}%)")
        if self.fields:
            out.append("differences (kind field: count; why; first example):")
        for (kind, name), n in sorted(self.fields.items(), key=lambda kv: (-kv[1], kv[0])):
            why = ", ".join(f"{w} ({c})" if len(self.why[(kind, name)]) > 1 else w
                            for w, c in self.why[(kind, name)].most_common())
            pid, a, b = self.examples[(kind, name)]
            at = f"pid {pid}" if isinstance(pid, int) else str(pid)
            out.append(f"  {kind} {name}: {n}; {why}; {at}: {a[:60]!r} -> {b[:60]!r}")
        return "\n".join(out) + "\n"


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None


def _pids(root: str) -> set[int]:
    try:
        return {int(n) for n in os.listdir(root) if n.isdigit()}
    except OSError:
        return set()


# stat and status fields whose captured values the scenario keeps (restore)
CAPTURED = {("stat", "utime"): "utime", ("stat", "stime"): "stime", ("stat", "minflt"): "minflt",
            ("stat", "majflt"): "majflt", ("stat", "cutime"): "cutime", ("stat", "cstime"): "cstime",
            ("stat", "cminflt"): "cminflt", ("stat", "cmajflt"): "cmajflt",
            ("stat", "processor"): "cpu", ("status", "voluntary_ctxt_switches"): "nvcsw",
            ("status", "nonvoluntary_ctxt_switches"): "nivcsw"}
MEMORY = {"maps", "smaps", "statm"}
MEMORY_FIELDS = {("stat", "vsize"), ("stat", "rss")} | {("status", k) for k in (
    "VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem", "VmData", "VmStk",
    "VmExe", "VmLib", "VmPTE", "VmSwap")}


@dataclass
class Captured:
    """What the scenario recorded of each pid: its layout and counters, to
    tell a source that moved since the capture from a model that differs."""
    layouts: dict[int, str]
    counters: dict[int, dict]

    @classmethod
    def load(cls, path: str) -> "Captured":
        import tomllib
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        layouts, counters = {}, {}
        for p in doc.get("process", []) + doc.get("kthread", []):
            if "pid" in p:
                layouts[p["pid"]] = p.get("layout")
                counters[p["pid"]] = p.get("restore", {})
        return cls(layouts, counters)


def compare(src: str, dst: str, pids: set[int] | None = None, captured: Captured | None = None) -> Report:
    r = Report()
    common = _pids(src) & _pids(dst)
    if pids is not None:
        common &= pids
    for name in GLOBAL_FILES:
        a, b = _read(os.path.join(src, name)), _read(os.path.join(dst, name))
        if a is not None and b is not None:
            _compare_file(r, name, "-", a, b)
    for pid in sorted(common):
        src_maps = _read(os.path.join(src, str(pid), "maps"))
        if src_maps is None and _read(os.path.join(dst, str(pid), "maps")):
            r.hidden.append(pid)
            continue
        r.pids += 1
        moved = None
        if captured is not None and captured.layouts.get(pid) is not None and src_maps is not None:
            strip = "".join(ln + "\n" for ln in src_maps.splitlines() if not ln.endswith("[vsyscall]"))
            layout = "".join(ln + "\n" for ln in captured.layouts[pid].splitlines() if not ln.endswith("[vsyscall]"))
            moved = REMAPPED if strip != layout else None
            if moved:
                r.moved.append(pid)
        counters = captured.counters.get(pid, {}) if captured is not None else None
        for name in PID_FILES:
            if name == "fd":
                _compare_fds(r, pid, os.path.join(src, str(pid), "fd"), os.path.join(dst, str(pid), "fd"))
                continue
            a, b = _read(os.path.join(src, str(pid), name)), _read(os.path.join(dst, str(pid), name))
            if a is None or b is None:
                continue  # not served by both (or not readable in the source)
            _compare_file(r, name, pid, a, b, moved, counters)
    return r


def _compare_file(r: Report, kind: str, pid: int | str, a: str, b: str, moved: str | None = None,
                  counters: dict | None = None) -> None:
    r.files_total[kind] += 1
    if a == b:
        r.files_same[kind] += 1
    fa, fb = _fields(kind, a), _fields(kind, b)
    for key in fa.keys() | fb.keys():
        r.total[kind] += 1
        va, vb = fa.get(key), fb.get(key)
        if not moved and counters is not None:
            r.stable_total[kind] += 1
            r.stable_same[kind] += va == vb
        if va == vb:
            r.same[kind] += 1
            continue
        why = None
        if moved and (kind in MEMORY or (kind, key) in MEMORY_FIELDS):
            why = moved
        cap = CAPTURED.get((kind, key))
        if cap is not None and counters and cap in counters and str(vb).strip() == str(counters[cap]):
            why = MOVED
        if (kind, key) == ("status", "VmPTE") and why is None and str(va).split()[:1] and str(vb).split()[:1]:
            try:
                why = PTE_MORE if int(str(vb).split()[0]) > int(str(va).split()[0]) else PTE
            except ValueError:
                pass
        if kind in TABLES:  # "9065 pointer": counted by field, the socket or device named in the example
            where, _, key = str(key).rpartition(" ")
            pid = where or pid
            if va is None or vb is None:
                why = ABSENT.get(kind[:8], ABSENT["net"])[va is None]
        r.diff(kind, str(key), pid, str(va), str(vb), why)


def _fields(kind: str, text: str) -> dict:
    if kind == "status":
        return dict(line.partition(":")[::2] for line in text.splitlines())
    if kind == "stat":
        lo, hi = text.find("("), text.rfind(")")
        if lo < 0 or hi < 0:
            return {"stat": text}
        words = [text[:lo].strip(), text[lo + 1:hi]] + text[hi + 2:].split()
        return {STAT_NAMES.get(i + 1, str(i + 1)): w for i, w in enumerate(words)}
    if kind == "statm":
        return {STATM[i] if i < len(STATM) else str(i): w for i, w in enumerate(text.split())}
    if kind == "maps":
        lines = [ln for ln in text.splitlines() if not ln.endswith("[vsyscall]")]
        return {f"line {i + 1}": ln for i, ln in enumerate(lines)}
    if kind == "smaps":
        try:
            vmas = parse_smaps(text)
        except ValueError:
            return {"smaps": text}
        return {f"{v.line.split(' ', 1)[0]} {f}": v.fields.get(f) for v in vmas if not v.line.endswith("[vsyscall]")
                for f in SMAPS_FIELDS}
    if kind == "meminfo":
        rows = dict(line.partition(":")[::2] for line in text.splitlines())
        return {k: rows[k].strip() for k in MEMINFO_TOTALS if k in rows}
    if kind == "cgroup":  # the v2 line: v1 hierarchies (a hybrid host's) are not modelled
        return {"0::": ln for ln in text.splitlines() if ln.startswith("0::")}
    if kind == "net/dev":
        out = {}
        for line in text.splitlines()[2:]:
            name, _, rest = line.partition(":")
            out |= {f"{name.strip()} {f}": w for f, w in zip(DEV_FIELDS, rest.split())}
        return out
    if kind in ("net/tcp", "net/tcp6", "net/udp", "net/udp6"):
        return _table(text, INET_FIELDS, lambda w: w[9] if w[9] != "0" else f"{w[1]}>{w[2]}", 12)
    if kind == "net/unix":
        return _table(text, UNIX_FIELDS, lambda w: w[6], 7)
    if kind == "diskstats":
        return {f"{w[2]} {f}": x for w in (ln.split() for ln in text.splitlines()) if len(w) > 3
                for f, x in zip(DISKSTATS_FIELDS, w[3:])}
    if kind == "partitions":
        return {ln.split()[3]: ln for ln in text.splitlines()[2:] if len(ln.split()) == 4}
    if kind == "swaps":
        return {f"{w[0]} {f}": x for w in (ln.split() for ln in text.splitlines()[1:]) if len(w) == 5
                for f, x in zip(SWAPS_FIELDS, w[1:])}
    if kind == "limits":
        return {f"line {i + 1}": ln for i, ln in enumerate(text.splitlines())}
    return {kind: text}


def _table(text: str, names: tuple[str, ...], key, n: int) -> dict:
    """A /proc/net table's lines by socket (its inode), field by field;
    the fields past the named ones (tcp's rto, ato, cwnd...) as `rest`."""
    out = {}
    for line in text.splitlines()[1:]:
        w = line.split()
        if len(w) < n:
            continue
        if names is INET_FIELDS:  # "0: ADDR" -> the slot; the queues and timer are pairs
            w = [w[0].rstrip(":")] + w[1:]
        k = key(w)
        out |= {f"{k} {f}": x for f, x in zip(names, w)}
        if len(w) > len(names):
            out[f"{k} rest"] = " ".join(w[len(names):])
    return out


def _compare_fds(r: Report, pid: int, a: str, b: str) -> None:
    try:
        fa, fb = set(os.listdir(a)), set(os.listdir(b))
    except OSError:
        return
    r.files_total["fd"] += 1
    same = True
    for fd in sorted(fa | fb, key=lambda n: int(n) if n.isdigit() else -1):
        la, lb = _link(os.path.join(a, fd)), _link(os.path.join(b, fd))
        if la is None and fd in fa:
            continue  # unreadable in the source
        r.total["fd"] += 1
        if la == lb:
            r.same["fd"] += 1
            continue
        same = False
        if la and lb and la.split(":[")[0] == lb.split(":[")[0] and ":[" in la:
            r.diff("fd", "ino", pid, la, lb)
        else:
            r.diff("fd", f"fd {fd}", pid, str(la), str(lb))
    if same:
        r.files_same["fd"] += 1


def _link(p: str) -> str | None:
    try:
        return os.readlink(p)
    except OSError:
        return None
