"""Connections between a captured machine's processes (`peer_ino` on a
socket entry: the captured inode of the socket at the other end), made
once every process exists, as a restorer does: the ends may belong to
processes created in any order, and a listener's process may come after
its clients'.

    { kind = "socket", bind = "127.0.0.1:51480", connect = "127.0.0.1:8080", peer_ino = 622405, ino = 622404, fd = 4 }
    { kind = "socket", peer_ino = 622404, ino = 622405, fd = 5 }   # the server end: accepted
    { kind = "socket", connect = "127.0.0.1:8080", peer_ino = 0, ino = 622406, fd = 6 }  # waits in the queue
    { kind = "socket", family = "unix", peer_ino = 622411, ino = 622410, fd = 9 }  # a socketpair's end

A connecting end (it has `connect`) is made and bound with its process
and connects in the pass; an end without `connect` is the server end of
one (accepted from the listener the client reached, by a process holding
that listener) or an end of a socketpair; it gets its fd in the pass, in
every process that holds it (pidfd_getfd, then dup3 to the captured fd).
The pass connects the clients whose server ends were accepted first, each
followed by its accept, so the accept queue's head is always the one
wanted; then the clients still waiting in a queue (`peer_ino = 0`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from procsim import restore
from procsim.fs import file as F
from procsim.kernel import Kernel
from procsim.net.sock import TYPES
from procsim.pidfd import pidfd_getfd
from procsim.scenario.schema import ScenarioError


@dataclass
class _End:
    """A captured socket (by inode) and the (pid, fd, cloexec, where) that hold it."""
    ino: int
    peer: int
    family: str = "inet"
    type: str = "stream"
    connect: str | None = None
    nonblock: bool = False
    client: tuple[int, int] | None = None   # (pid, fd) of the connecting end made with its process
    where: str = ""                          # the connecting end's line
    holders: list[tuple[int, int, bool, str]] = field(default_factory=list)


class ConnectionsBuilder:
    """The builder's part for `peer_ino` (a mixin of scenario/builder.py's _Builder)."""

    k: Kernel

    def _conn_end(self, ino: Any, peer: Any, f: dict, where: str) -> _End:
        ends: dict[int, _End] = self.__dict__.setdefault("conn_ends", {})
        if not isinstance(ino, int) or isinstance(ino, bool) or ino < 1:
            raise ScenarioError(f"{where}: peer_ino needs the socket's own ino")
        if not isinstance(peer, int) or isinstance(peer, bool) or peer < 0 or peer == ino:
            raise ScenarioError(f"{where}: peer_ino: the other end's inode (0: waiting in a queue), got {peer!r}")
        e = ends.get(ino)
        if e is None:
            e = ends[ino] = _End(ino, peer, f.get("family", "inet"), f.get("type", "stream"),
                                 nonblock=bool(f.get("nonblock", False)))
        elif e.peer != peer:
            raise ScenarioError(f"{where}: peer_ino {peer} but another holder of {ino} says {e.peer}")
        return e

    def _conn_later(self, pid: int, f: dict, where: str) -> None:
        """An end without `connect`: its fd comes in the pass."""
        if not isinstance(f.get("fd"), int):
            raise ScenarioError(f"{where}: a socket made in the connection pass needs its fd")
        e = self._conn_end(f.get("ino"), f["peer_ino"], f, where)
        e.holders.append((pid, f["fd"], f.get("cloexec", True), where))

    def _conn_client(self, pid: int, fd: int, f: dict, where: str) -> None:
        """A connecting end, made and bound now: it connects in the pass."""
        e = self._conn_end(f.get("ino"), f["peer_ino"], f, where)
        if e.client is not None:
            raise ScenarioError(f"{where}: socket {e.ino} connects twice")
        e.connect, e.client, e.where = f["connect"], (pid, fd), where

    def _connections(self) -> None:
        ends: dict[int, _End] = getattr(self, "conn_ends", {})
        made: set[int] = set()
        for e in sorted((e for e in ends.values() if e.client is not None), key=lambda e: e.peer == 0):
            where = e.where
            pid, fd = e.client
            self._exec(where, "connect", pid=pid, fd=fd, addr=e.connect)
            made.add(e.ino)
            self._give(e, (pid, fd), temp=False)
            if e.peer:  # accepted at once: the queue's head is this connection
                server = ends.get(e.peer)
                if server is None or server.client is not None or not server.holders:
                    raise ScenarioError(f"{where}: peer_ino {e.peer}: no socket entry is its accepted end")
                self._give(server, self._park(*self._accept(pid, fd, server)), temp=True)
                made.add(server.ino)
        for e in ends.values():  # socketpairs: the two ends, neither connecting
            if e.ino in made:
                continue
            other = ends.get(e.peer)
            where = e.holders[0][3]
            if other is None or other.client is not None or other.peer != e.ino or other.ino in made:
                raise ScenarioError(f"{where}: peer_ino {e.peer}: no socket entry is the other end of a pair")
            if e.family != "unix":
                raise ScenarioError(f"{where}: a {e.family} socket without connect: only unix ones pair")
            if e.type not in TYPES:
                raise ScenarioError(f"{where}: type: one of {', '.join(TYPES)}, got {e.type!r}")
            pid = e.holders[0][0]
            a, b = self._exec(where, "socketpair", pid=pid, type=e.type, nonblock=e.nonblock)
            a, b = self._park(pid, a), self._park(pid, b)
            self._give(e, a, temp=True)
            self._give(other, b, temp=True)
            made |= {e.ino, other.ino}

    def _targets(self, pid: int) -> set[int]:
        return {h[1] for e in getattr(self, "conn_ends", {}).values() for h in e.holders if h[0] == pid}

    def _park(self, pid: int, fd: int) -> tuple[int, int]:
        """A socket the pass made, moved above every fd the pass fills in
        `pid` (where the lowest free fd would be overwritten by another)."""
        targets = self._targets(pid)
        if fd not in targets:
            return pid, fd
        nfd = self._call("connections", self.k.dup, pid, fd, True, max(targets) + 1)
        self._exec("connections", "close_fd", pid=pid, fd=fd)
        return pid, nfd

    def _give(self, e: _End, src: tuple[int, int], temp: bool) -> None:
        """The socket at `src` to every holder of `e`, with its captured
        inode; a `temp` fd no holder has at that number is closed after."""
        for pid, fd, cloexec, where in e.holders:
            self._hand(src, pid, fd, cloexec, where)
            self._call(where, restore.set_ino, self.k, pid, fd, e.ino)
        if temp and not any((h[0], h[1]) == src for h in e.holders):
            self._exec("connections", "close_fd", pid=src[0], fd=src[1])

    def _accept(self, pid: int, fd: int, server: _End) -> tuple[int, int]:
        """accept() of the connection `pid`'s fd just made, by a process
        that holds the listener it reached."""
        where = server.holders[0][3]
        sk = self.k.task(pid).files.get(fd).private
        listener = sk.peer.parent if sk.peer is not None else None
        if listener is None or listener.file is None:
            raise ScenarioError(f"{where}: its client's connect reached no listener an fd holds")
        for t in self.k.tasks.values():
            if t.files is None or t.pid != t.tgid:
                continue
            for lfd, f in t.files.items():
                if f is listener.file:
                    return t.pid, self._exec(where, "accept", pid=t.pid, fd=lfd, nonblock=server.nonblock)
        raise ScenarioError(f"{where}: no process holds the listener")

    def _hand(self, src: tuple[int, int], pid: int, fd: int, cloexec: bool, where: str) -> None:
        """The socket made at `src` into `pid`'s fd `fd` (dup3 keeps the entry's close-on-exec)."""
        spid, sfd = src
        if (spid, sfd) == (pid, fd):
            self._call(where, self.k.set_cloexec, pid, fd, cloexec)
            return
        tmp = sfd if spid == pid else self._call(where, pidfd_getfd, self.k, pid, spid, sfd)
        if tmp == fd:  # the lowest free fd was the one it had
            self._call(where, self.k.set_cloexec, pid, fd, cloexec)
            return
        self._call(where, self.k.dup2, pid, tmp, fd, F.O_CLOEXEC if cloexec else 0, True)
        if spid != pid:
            self._exec(where, "close_fd", pid=pid, fd=tmp)
