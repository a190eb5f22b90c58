"""The network of a capture: `[[netdev]]` from /sys/class/net,
/proc/net/if_inet6, fib_trie and route; and each socket fd's state from
/proc/net/{tcp,tcp6,udp,udp6,unix} (its `socket:[ino]` matched to a line)
as the `bind`, `listen` and `connect` keys of its files entry."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from procsim.capture.source import Source
from procsim.net import DEFAULT_ETH

TCP_ESTABLISHED, TCP_LISTEN, TCP_CLOSE = 0x01, 0x0A, 0x07
UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
SO_ACCEPTCON = 0x10000
# the boot's devices (procsim/net/): captured only where they differ
BOOT = {"lo": ("00:00:00:00:00:00", 65536), DEFAULT_ETH["name"]: (DEFAULT_ETH["mac"], DEFAULT_ETH["mtu"])}


@dataclass
class SockRow:
    """One /proc/net line of a socket with an inode."""
    table: str
    state: int
    local: str = ""          # "ADDR:PORT" as bind takes it, or a unix path
    remote: str = ""
    lport: int = 0
    raddr: str = ""
    type: str = ""
    wildcard: bool = False


def _v4(hexaddr: str) -> str:
    return str(ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(hexaddr), "little")))


def _v6(hexaddr: str) -> str:
    raw = b"".join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, 32, 8))
    return str(ipaddress.IPv6Address(raw))


def _endpoint(text: str, v6: bool) -> tuple[str, int]:
    addr, port = text.split(":")
    return (_v6(addr) if v6 else _v4(addr)), int(port, 16)


def _bindtext(addr: str, port: int, v6: bool) -> str:
    return f"[{addr}]:{port}" if v6 else f"{addr}:{port}"


def parse_sockets(tables: dict[str, str | None]) -> dict[int, SockRow]:
    """Socket inode -> its line, from the texts of /proc/net/<name>."""
    out: dict[int, SockRow] = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        text = tables.get(name)
        v6 = name.endswith("6")
        for line in (text or "").splitlines()[1:]:
            w = line.split()
            if len(w) < 10 or not w[9].isdigit() or w[9] == "0":
                continue
            try:
                (la, lp), (ra, rp) = _endpoint(w[1], v6), _endpoint(w[2], v6)
                st = int(w[3], 16)
            except ValueError:
                continue
            out[int(w[9])] = SockRow(name, st, _bindtext(la, lp, v6), _bindtext(ra, rp, v6), lp, ra,
                                     "dgram" if name.startswith("udp") else "stream",
                                     ipaddress.ip_address(la).is_unspecified)
    for line in (tables.get("unix") or "").splitlines()[1:]:
        w = line.split()
        if len(w) < 7 or not w[6].isdigit():
            continue
        try:
            flags, typ, st = int(w[3], 16), int(w[4], 16), int(w[5], 16)
        except ValueError:
            continue
        path = w[7] if len(w) > 7 else ""
        out[int(w[6])] = SockRow("unix", TCP_LISTEN if flags & SO_ACCEPTCON else st, path,
                                 type=UNIX_TYPES.get(typ, "stream"))
    return out


def socket_keys(row: SockRow, rows: dict[int, SockRow], local_addrs: set[str]) -> dict:
    """The network keys of a files entry (docs/scenario-format.md, "The
    network") that remake the socket's line: a listener listens, a bound
    socket binds, a connection to another host connects from its local
    address. A connection to this machine (its peer is a socket here too)
    and an accepted one stay unconnected: the replay would need both ends."""
    keys: dict = {}
    if row.type != "stream":
        keys["type"] = row.type
    if row.table == "unix":
        if not row.local:
            return keys
        if row.state == TCP_LISTEN:
            keys["listen"] = row.local
        elif not any(r.table == "unix" and r.state == TCP_LISTEN and r.local == row.local for r in rows.values()):
            keys["bind"] = row.local
        # else: an accepted connection, which shows its listener's path: made by the listener, not bound
        return keys
    v6 = row.table.endswith("6")
    if row.state == TCP_LISTEN:
        keys["listen"] = row.local
    elif row.state == TCP_ESTABLISHED and row.table.startswith("tcp"):
        if row.raddr in local_addrs or ipaddress.ip_address(row.raddr).is_loopback:
            return keys
        if any(r.state == TCP_LISTEN and r.lport == row.lport and r.table.startswith("tcp") for r in rows.values()):
            return keys  # accepted from a listener: made by an incoming connection, not a connect
        keys["bind"] = row.local
        keys["connect"] = row.remote
    elif row.table.startswith("udp") and row.lport:
        keys["bind"] = row.local
        if row.state == TCP_ESTABLISHED:
            keys["connect"] = row.remote
    if v6 and row.wildcard and ("listen" in keys or "bind" in keys):
        proto = row.table[:3]
        if any(r.table == proto and r.lport == row.lport for r in rows.values()):
            keys["v6only"] = True  # an IPv4 socket holds the port too: IPV6_V6ONLY was set
    return keys


# -- interfaces -----------------------------------------------------------------------

def _ipv4_addresses(src: Source) -> dict[str, list[str]] | None:
    """Device -> "ADDR/PREFIX": the /32 host LOCAL leaves of fib_trie's
    Main table, placed on the device whose connected route covers them
    (/proc/net/route); None when fib_trie cannot be read."""
    trie = src.read("net/fib_trie", quiet=True)
    if trie is None:
        return None
    main = trie.split("Local:", 1)[0]
    local = re.findall(r"\|-- (\d+\.\d+\.\d+\.\d+)\n\s+/32 host LOCAL", main)
    routes = _routes(src)
    out: dict[str, list[str]] = {}
    for a in dict.fromkeys(local):
        ip = ipaddress.IPv4Address(a)
        if ip.is_loopback:
            continue
        best = max(((dev, net) for dev, net, gw in routes if gw is None and ip in net and net.prefixlen),
                   key=lambda r: r[1].prefixlen, default=None)
        if best is not None:
            out.setdefault(best[0], []).append(f"{a}/{best[1].prefixlen}")
    return out


def _routes(src: Source) -> list[tuple[str, ipaddress.IPv4Network, str | None]]:
    out = []
    for line in (src.read("net/route", quiet=True) or "").splitlines()[1:]:
        w = line.split()
        try:
            dst, gw, flags, mask = (int.from_bytes(bytes.fromhex(x), "little") for x in (w[1], w[2], w[3], w[7]))
        except (ValueError, IndexError):
            continue
        flags = int(w[3], 16)
        net = ipaddress.IPv4Network((dst, bin(mask).count("1")), strict=False)
        out.append((w[0], net, str(ipaddress.IPv4Address(gw)) if flags & 0x2 else None))
    return out


def capture_netdevs(src: Source) -> tuple[list[dict], set[str]]:
    """[[netdev]] entries (the boot's lo and eth0 only where they differ)
    and the machine's own addresses (to tell local peers from remote ones)."""
    names = sorted(_sys_listdir(src, "class/net"))
    if not names:
        return [], set()
    v4 = _ipv4_addresses(src)
    v6: dict[str, list[str]] = {}
    for line in (src.read("net/if_inet6", quiet=True) or "").splitlines():
        w = line.split()
        if len(w) == 6 and int(w[3], 16) != 0x20:  # the link-local one follows from the MAC
            v6.setdefault(w[5], []).append(f"{ipaddress.IPv6Address(int(w[0], 16))}/{int(w[2], 16)}")
    gateways = {dev: gw for dev, net, gw in _routes(src) if gw is not None and net.prefixlen == 0}
    own = {a.split("/")[0] for lst in (v4 or {}).values() for a in lst} | {a.split("/")[0] for lst in v6.values()
                                                                           for a in lst}
    stats = {}
    for line in (src.read("net/dev", quiet=True) or "").splitlines()[2:]:
        dev, _, rest = line.partition(":")
        if len(rest.split()) == 16 and all(x.isdigit() for x in rest.split()):
            stats[dev.strip()] = [int(x) for x in rest.split()]
    out = []
    for name in sorted(names, key=lambda n: _ifindex(src, n)):
        mac = (src.read(f"class/net/{name}/address", sysfs=True, quiet=True) or "").strip()
        mtu_text = (src.read(f"class/net/{name}/mtu", sysfs=True, quiet=True) or "").strip()
        mtu = int(mtu_text) if mtu_text.isdigit() else 1500
        counters = {"stat": stats[name]} if any(stats.get(name, ())) else {}
        if name == "lo":
            if mtu != 65536 or counters:
                out.append({"name": "lo", "mtu": mtu} | counters)
            continue
        if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac):
            src.warn(f"{src.path(f'class/net/{name}', sysfs=True)}: no Ethernet address, not captured")
            continue
        if v4 is None and BOOT.get(name) == (mac, mtu):
            if counters:  # IPv4 addresses unknown (no fib_trie): the boot's device is this one
                out.append(dict(DEFAULT_ETH) | counters)
            continue
        d: dict = {"name": name, "mac": mac, "mtu": mtu}
        if v4 is None:
            src.warn(f"{src.path('net/fib_trie')}: unreadable, {name}'s IPv4 addresses not captured")
        elif v4.get(name):
            d["ipv4"] = v4[name]
        if v6.get(name):
            d["ipv6"] = v6[name]
        if name in gateways and d.get("ipv4"):
            d["gateway"] = gateways[name]
        oper = (src.read(f"class/net/{name}/operstate", sysfs=True, quiet=True) or "").strip()
        if oper == "down":
            d["up"] = False
        d |= counters
        speed = (src.read(f"class/net/{name}/speed", sysfs=True, quiet=True) or "").strip()
        if speed.lstrip("-").isdigit() and int(speed) != -1:
            d["speed"] = int(speed)
        out.append(d)
    return out, own


def _ifindex(src: Source, name: str) -> int:
    text = (src.read(f"class/net/{name}/ifindex", sysfs=True, quiet=True) or "").strip()
    return int(text) if text.isdigit() else 1 << 30


def _sys_listdir(src: Source, rel: str) -> list[str]:
    import os
    try:
        return os.listdir(src.path(rel, sysfs=True))
    except OSError:
        return []
