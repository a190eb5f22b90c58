"""sock_diag's answer for unix sockets (net/unix/diag.c): what `ss -x`
reads over NETLINK_SOCK_DIAG and no /proc file prints, each socket's peer
(UNIX_DIAG_PEER: the inode of the socket at the other end, 0 for one no
fd holds yet, a connection waiting in its listener's queue) and a
listener's embryonic connections (UNIX_DIAG_ICONS: the inodes of the
clients whose connections wait to be accepted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from procsim.net.sock import TCP_LISTEN, Sock

if TYPE_CHECKING:
    from procsim.kernel import Kernel


def _ino(sk: Sock | None) -> int:
    """sock_i_ino(): 0 for a sock without a struct socket (not accepted, orphaned)."""
    return sk.ino if sk is not None and sk.file is not None else 0


def unix_diag(k: "Kernel", pid: int) -> list[dict]:
    """The unix sockets of `pid`'s network namespace that have an inode
    (sk_diag_dump skips the others), in the table's order: {ino, type,
    state, peer (absent: none), icons (a listener's)}."""
    t = k.task(pid)
    net = k.net.net(t.nsproxy.net)
    out = []
    for sk in net.unix.values():
        ino = _ino(sk)
        if not ino:
            continue
        e: dict = {"ino": ino, "type": sk.type, "state": sk.state}
        if sk.peer is not None:
            e["peer"] = _ino(sk.peer)
        if sk.state == TCP_LISTEN:
            e["icons"] = [_ino(child.peer) for child in sk.queue]
        out.append(e)
    return out
