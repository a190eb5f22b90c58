"""Connections between captured processes: the two ends of a local TCP
connection paired by their addresses in /proc/net/tcp{,6} (a line's
local endpoint is the other's remote one), the two ends of a unix one
by sock_diag's peers (capture/unix_diag.py), each joined with the fd
tables that hold them. The ends get `peer_ino` (procsim/scenario/
connections.py makes them once every process exists): the client binds
its captured port and connects, the server end is accepted by the
listener's process and handed to the processes that held it, a client
whose connection waits in the listener's queue connects only
(`peer_ino = 0`), a socketpair's ends are made together.

What stays as before: a connection whose other end no captured process
holds (another namespace's, an uncaptured process's) is an unconnected
socket in the replay (the model routes a loopback address to lo, where
only its own sockets answer), a connection to another host connects to
it (net.py's socket_keys), and a connected unix datagram socket is
replayed unconnected (its peer does not point back: no pair to make)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from procsim.capture.net import SO_ACCEPTCON, TCP_ESTABLISHED, TCP_LISTEN, UNIX_TYPES

_KEEP = ("kind", "family", "type", "cloexec", "nonblock", "fd", "ino")


@dataclass(frozen=True)
class TcpRow:
    table: str
    local: tuple  # (ip_address, port), a v4-mapped IPv6 address as IPv4
    remote: tuple
    state: int
    ino: int
    ltext: str    # "ADDR:PORT" as bind and connect take it
    rtext: str


def _addr(hexaddr: str, v6: bool):
    if not v6:
        return ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(hexaddr), "little"))
    raw = b"".join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, 32, 8))
    a = ipaddress.IPv6Address(raw)
    return a.ipv4_mapped or a


def tcp_rows(tables: dict[str, str | None]) -> list[TcpRow]:
    """Every line of /proc/net/tcp and tcp6, the children not accepted yet (inode 0) too."""
    out = []
    for name in ("tcp", "tcp6"):
        v6 = name == "tcp6"
        for line in (tables.get(name) or "").splitlines()[1:]:
            w = line.split()
            if len(w) < 10 or not w[9].isdigit():
                continue
            try:
                (la, lp), (ra, rp) = (x.split(":") for x in (w[1], w[2]))
                local, remote = (_addr(la, v6), int(lp, 16)), (_addr(ra, v6), int(rp, 16))
                st = int(w[3], 16)
            except ValueError:
                continue
            out.append(TcpRow(name, local, remote, st, int(w[9]), _text(la, local[1], v6), _text(ra, remote[1], v6)))
    return out


def _text(hexaddr: str, port: int, v6: bool) -> str:
    """The endpoint as bind and connect take it (an IPv6 one bracketed, a v4-mapped one as such)."""
    if not v6:
        return f"{_addr(hexaddr, False)}:{port}"
    raw = b"".join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, 32, 8))
    return f"[{ipaddress.IPv6Address(raw)}]:{port}"


def _listened(rows: list[TcpRow], end: tuple) -> TcpRow | None:
    """The listener a connect to `end` reaches (its address, or a wildcard of its family; an IPv6
    wildcard takes IPv4 too unless a v4 socket holds the port, as v6only then was set)."""
    ip, port = end
    best = None
    for r in rows:
        if r.state != TCP_LISTEN or r.local[1] != port:
            continue
        lip = r.local[0]
        if lip == ip:
            return r
        if lip.is_unspecified and (lip.version == ip.version or r.table == "tcp6"):
            best = best or r
    return best


def pair(procs: list[dict], tables: dict[str, str | None], diag: list[dict] | None) -> int:
    """Mark the ends of every connection both of whose ends captured
    processes hold (and a client waiting in a captured listener's queue);
    the number of connections marked."""
    holders: dict[int, list[dict]] = {}
    for p in procs:
        for f in p.get("files", []):
            if f.get("kind") == "socket" and "ino" in f and "fd" in f:
                holders.setdefault(f["ino"], []).append(f)
    n = _pair_tcp(holders, tcp_rows(tables))
    if diag is not None:
        n += _pair_unix(holders, tables.get("unix") or "", diag)
    return n


def _client(holders: dict[int, list[dict]], ino: int, peer: int, keys: dict) -> None:
    """The first holder connects; the others get the same socket in the pass."""
    first, *rest = holders[ino]
    for k in ("bind", "listen", "connect", "backlog", "v6only", "peer"):
        first.pop(k, None)
    first |= keys | {"peer_ino": peer}
    for f in rest:
        _later(f, peer)


def _later(f: dict, peer: int) -> None:
    for k in [k for k in f if k not in _KEEP]:
        del f[k]
    f["peer_ino"] = peer


def _pair_tcp(holders: dict[int, list[dict]], rows: list[TcpRow]) -> int:
    by_ends = {(r.local, r.remote): r for r in rows if r.state == TCP_ESTABLISHED}
    n = 0
    for c in rows:
        if c.state != TCP_ESTABLISHED or c.ino not in holders:
            continue
        s = by_ends.get((c.remote, c.local))
        if s is None or _listened(rows, c.local) is not None:
            continue  # another host's end, or c is the server end (its pair is made from its client)
        lis = _listened(rows, s.local)
        if lis is None or lis.ino not in holders or s.ino and s.ino not in holders:
            continue  # a listener or a server end of a process not captured
        _client(holders, c.ino, s.ino, {"bind": c.ltext, "connect": c.rtext})
        for f in holders.get(s.ino, []):
            _later(f, c.ino)
        n += 1
    return n


def _unix_rows(text: str) -> dict[int, tuple[int, int, str]]:
    """inode -> (flags, type, path) of /proc/net/unix."""
    out = {}
    for line in text.splitlines()[1:]:
        w = line.split()
        if len(w) >= 7 and w[6].isdigit():
            try:
                out[int(w[6])] = (int(w[3], 16), int(w[4], 16), w[7] if len(w) > 7 else "")
            except ValueError:
                continue
    return out


def _pair_unix(holders: dict[int, list[dict]], text: str, diag: list[dict]) -> int:
    rows = _unix_rows(text)
    info = {e["ino"]: e for e in diag}
    listeners = {path: ino for ino, (flags, _t, path) in rows.items() if flags & SO_ACCEPTCON and path
                 and ino in holders}
    waiting = {c: ino for ino, e in info.items() if ino in holders for c in e.get("icons", ())}
    n, done = 0, set()
    for ino, e in info.items():
        if ino not in holders or ino in done or "peer" not in e or ino not in rows:
            continue
        typ = UNIX_TYPES.get(e["type"])
        peer = e["peer"]
        if peer == 0:  # its connection waits in a listener's queue
            lis = waiting.get(ino)
            if lis is not None and rows[ino][2] == "" and typ != "dgram":
                _client(holders, ino, 0, {"connect": rows[lis][2]})
                done.add(ino)
                n += 1
            continue
        if peer not in holders or info.get(peer, {}).get("peer") != ino or peer not in rows or typ is None:
            continue  # uncaptured, or a datagram socket's one-way peer
        mine, theirs = rows[ino][2], rows[peer][2]
        if typ != "dgram" and theirs in listeners and mine != theirs:      # ino connected to theirs' listener
            _client(holders, ino, peer, {"connect": theirs})
            for f in holders[peer]:
                _later(f, ino)
        elif typ != "dgram" and mine in listeners and theirs != mine:
            continue  # ino is the server end: made from its client
        elif not mine and not theirs:                                    # a socketpair
            for f in holders[ino]:
                _later(f, peer)
            for f in holders[peer]:
                _later(f, ino)
        else:
            continue
        done |= {ino, peer}
        n += 1
    return n
