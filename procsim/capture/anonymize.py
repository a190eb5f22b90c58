"""Scrubbing a capture for a bug report, deterministically (the same
input gives the same output, so two captures of one machine still
compare): user names and paths outside the system directories become
hashes, command arguments and environment values too, the hostname, IP
and MAC addresses (a subnet stays one), and every process's addresses move by one page-table-aligned offset of its
own (the layout's shape, alignments and distances are kept)."""

from __future__ import annotations

import hashlib
import ipaddress
import re

from procsim.units import TASK_SIZE

SYSTEM = ("/usr/", "/lib/", "/lib64/", "/bin/", "/sbin/", "/etc/", "/dev/", "/proc/", "/sys/", "/run/systemd/",
          "/memfd:", "/SYSV", "/[aio]", "/anon_hugepage", "/dev/zero")
SHIFT_UNIT = 1 << 30  # keeps 2 MiB (THP, hugetlb) and 64 MiB (malloc arenas) alignment


def _h(kind: str, text: str, n: int = 8) -> str:
    return hashlib.sha256(f"procsim-anonymize/{kind}/{text}".encode("utf-8", "surrogateescape")).hexdigest()[:n]


def path(p: str) -> str:
    """A path: system directories kept, other components hashed (the extension kept)."""
    if not p.startswith("/") or p.startswith(SYSTEM) or p in ("/", "/dev/null"):
        return p
    parts = p.split("/")
    out = []
    for i, c in enumerate(parts):
        if not c or i == 1 and c in ("home", "tmp", "var", "opt", "srv", "root", "mnt", "run", "data"):
            out.append(c)
            continue
        stem, dot, ext = c.rpartition(".")
        out.append(f"p{_h('path', c)}" + (f".{ext}" if dot and stem and len(ext) <= 5 else ""))
    return "/".join(out)


def _argv(argv: list[str]) -> list[str]:
    if not argv:
        return argv
    first = argv[0]
    if not first.startswith("/") and (" " in first or ":" in first):
        # a title a process set itself ("sshd: alice@pts/0"): the program's name is kept
        name = re.split(r"[ :]", first, 1)[0]
        first = f"{name}: arg-{_h('arg', first)}"
    return [path(first)] + [f"arg-{_h('arg', a)}" for a in argv[1:]]


def _env(env: list[str]) -> list[str]:
    out = []
    for e in env:
        k, sep, v = e.partition("=")
        out.append(f"{k}=v-{_h('env', v)}" if sep else e)
    return out


_LINE = re.compile(r"([0-9a-f]+)-([0-9a-f]+)( .*)")


def _shift(pid: int, layout: str) -> tuple[int, str]:
    rows = []
    for line in layout.splitlines():
        m = _LINE.fullmatch(line)
        if m is None:
            return 0, layout
        rows.append((int(m[1], 16), int(m[2], 16), m[3]))
    lo = min(r[0] for r in rows if not r[2].endswith("[vsyscall]"))
    hi = max(r[1] for r in rows if not r[2].endswith("[vsyscall]"))
    room_up, room_down = (TASK_SIZE - hi) // SHIFT_UNIT, (lo - (1 << 32)) // SHIFT_UNIT
    k = int(_h("addr", str(pid)), 16)
    choices = list(range(-max(0, room_down), max(0, room_up) + 1))
    choices = [c for c in choices if c] or [0]
    delta = choices[k % len(choices)] * SHIFT_UNIT
    text = []
    for start, end, rest in rows:
        if rest.endswith("[vsyscall]"):
            continue
        perms, off, dev, ino, *name = rest.split(None, 4)
        prefix = f"{start + delta:08x}-{end + delta:08x} {perms} {off} {dev} {ino}"
        if name:  # show_map_vma(): the name after the prefix padded to 72 columns (seq_pad)
            prefix = prefix.ljust(72) + " " + (path(name[0]) if name[0].startswith("/") else name[0])
        elif rest.endswith(" "):
            prefix += " "
        text.append(prefix)
    return delta, "\n".join(text) + "\n"


def address(a: str) -> str:
    """An IP address: loopback, unspecified, link-local and multicast kept;
    an IPv4 one's /24 hashed into 10.0.0.0/8 (the host byte kept, so
    addresses of one subnet stay in one), an IPv6 one's /64 into fd00::/8
    (the interface identifier kept); an IPv4-mapped one as its IPv4."""
    try:
        ip = ipaddress.ip_address(a)
    except ValueError:
        return a
    if ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast:
        return a
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return f"::ffff:{address(str(ip.ipv4_mapped))}"
    if ip.version == 4:
        net = int(_h("ip4", str(int(ip) >> 8), 4), 16)
        return str(ipaddress.IPv4Address((10 << 24) | (net << 8) | (int(ip) & 0xFF)))
    top = int(_h("ip6", str(int(ip) >> 64), 14), 16)
    return str(ipaddress.IPv6Address((0xFD << 120) | (top << 64) | (int(ip) & ((1 << 64) - 1))))


def endpoint(text: str) -> str:
    """"ADDR:PORT", "[ADDR]:PORT", "ADDR/PREFIX" or a unix path."""
    if text.startswith("/"):
        return path(text)
    if text.startswith("@"):
        return f"@a{_h('abstract', text)}"
    if "/" in text:
        a, _, plen = text.partition("/")
        return f"{address(a)}/{plen}"
    host, sep, port = text.rpartition(":")
    if not sep:
        return address(text)
    if host.startswith("["):
        return f"[{address(host[1:-1])}]:{port}"
    return f"{address(host)}:{port}"


def mac(m: str) -> str:
    """A locally administered, unicast address of its own."""
    h = _h("mac", m, 10)
    return "02:" + ":".join(h[i:i + 2] for i in range(0, 10, 2))


def anonymize(doc: dict) -> dict:
    for d in doc.get("netdev", []):
        if "mac" in d:
            d["mac"] = mac(d["mac"])
        for key in ("ipv4", "ipv6"):
            if key in d:
                d[key] = [endpoint(a) for a in d[key]]
        if "gateway" in d:
            d["gateway"] = address(d["gateway"])
    for d in doc.get("disk", []):
        for x in [d] + d.get("partition", []):
            if "mount" in x:
                x["mount"] = path(x["mount"])
    if "on" in doc.get("swap", {}):
        doc["swap"]["on"] = path(doc["swap"]["on"])
    m = doc.get("machine", {})
    if "hostname" in m:
        m["hostname"] = f"host-{_h('host', m['hostname'], 6)}"
    doc["description"] = "captured (anonymized)"
    for p in doc.get("process", []):
        p["argv"] = _argv(p.get("argv", []))
        for key in ("exe", "cwd"):
            if key in p:
                p[key] = path(p[key])
        if "env" in p:
            p["env"] = _env(p["env"])
        for f in p.get("files", []):
            if "path" in f:
                f["path"] = path(f["path"])
            for key in ("bind", "listen", "connect"):
                if key in f:
                    f[key] = endpoint(f[key])
        if "layout" in p:
            delta, p["layout"] = _shift(p["pid"], p["layout"])
            for row in p.get("resident", []):
                row["addr"] += delta
            mmf = p.get("restore_mm")
            if mmf:
                counts = ("cpumask", "hiwater", "rss_", "pgtables")  # not addresses: kept as they are
                p["restore_mm"] = {k: v + delta if v > 1 and not k.startswith(counts) else v for k, v in mmf.items()}
        if "cgroup" in p:
            p["cgroup"] = "/".join(c if c.endswith((".slice", ".scope")) and not c.startswith("user-") else
                                   f"c{_h('cg', c)}" if c else c for c in p["cgroup"].split("/"))
    return doc
