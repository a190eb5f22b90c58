"""The peers of unix sockets, which /proc/net/unix does not print: asked
of the kernel over NETLINK_SOCK_DIAG (net/unix/diag.c, what `ss -x`
does) when the capture reads this host's /proc, or of a procsim daemon
over its control socket (the model's sock_diag: the `unix_diag` query)
when it reads a procsim mount. Each answer is a list of {ino, type,
state, peer, icons} as procsim/net/diag.py gives them."""

from __future__ import annotations

import errno
import json
import os
import socket
import struct

NETLINK_SOCK_DIAG = 4          # include/uapi/linux/netlink.h (Python's socket module has no name for it)
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS = 0x4, 0x8
UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 2, 3
_NLMSG = struct.Struct("=IHHII")           # struct nlmsghdr
_REQ = struct.Struct("=BBHIIIII")          # struct unix_diag_req
_MSG = struct.Struct("=BBBBIII")           # struct unix_diag_msg
_RTA = struct.Struct("=HH")                # struct rtattr


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_dump(data: bytes) -> tuple[list[dict], bool]:
    """The unix_diag_msg records of one netlink read, and whether the dump
    ended (NLMSG_DONE). OSError for an NLMSG_ERROR answer."""
    out, off, done = [], 0, False
    while off + _NLMSG.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            break
        body = data[off + _NLMSG.size: off + length]
        off += _align(length)
        if mtype == NLMSG_DONE:
            done = True
            break
        if mtype == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else errno.EIO
            raise OSError(code, f"sock_diag: {os.strerror(code)}")
        if mtype != SOCK_DIAG_BY_FAMILY or len(body) < _MSG.size:
            continue
        _fam, typ, state, _pad, ino, _c0, _c1 = _MSG.unpack_from(body)
        e: dict = {"ino": ino, "type": typ, "state": state}
        a = _MSG.size
        while a + _RTA.size <= len(body):
            alen, atype = _RTA.unpack_from(body, a)
            if alen < _RTA.size:
                break
            payload = body[a + _RTA.size: a + alen]
            if atype == UNIX_DIAG_PEER and len(payload) >= 4:
                e["peer"] = struct.unpack_from("=I", payload)[0]
            elif atype == UNIX_DIAG_ICONS:
                e["icons"] = list(struct.unpack(f"={len(payload) // 4}I", payload[:len(payload) // 4 * 4]))
            a += _align(alen)
        out.append(e)
    return out, done


def netlink_unix_diag(timeout: float = 5.0) -> list[dict]:
    """Every unix socket of this process's network namespace with its peer
    and, for a listener, its waiting clients. OSError when netlink refuses."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as s:
        s.settimeout(timeout)
        req = _REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS,
                        0xFFFFFFFF, 0xFFFFFFFF)
        s.sendto(_NLMSG.pack(_NLMSG.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req,
                 (0, 0))
        out: list[dict] = []
        while True:
            got, done = parse_dump(s.recv(1 << 16))
            out += got
            if done:
                return out


def control_socket(proc: str) -> str | None:
    """The control socket of the procsim daemon serving `proc` (MNT/proc:
    MNT=/x/y -> /x/.y.procsim.sock, mountd/control.py), if there is one."""
    mnt = os.path.dirname(os.path.abspath(proc))
    if os.path.basename(os.path.abspath(proc)) != "proc":
        return None
    head, tail = os.path.split(mnt)
    path = os.path.join(head, f".{tail}.procsim.sock")
    return path if os.path.exists(path) else None


def control_unix_diag(path: str, timeout: float = 30.0) -> list[dict]:
    """The `unix_diag` query of the daemon at control socket `path` (one
    newline-delimited JSON request). OSError when it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        fd = None
        addr = path
        if len(os.fsencode(path)) > 107:  # a deep directory: through an O_PATH fd of it
            fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
            addr = f"/proc/self/fd/{fd}/{os.path.basename(path)}"
        try:
            s.connect(addr)
        finally:
            if fd is not None:
                os.close(fd)
        s.sendall(b'{"op":"unix_diag","args":{}}\n')
        with s.makefile("rb") as f:
            reply = json.loads(f.readline() or b"{}")
    if not reply.get("ok"):
        raise OSError(int(reply.get("errno") or errno.EIO), str(reply.get("error", "no answer")))
    return list(reply.get("result") or [])


def unix_diag(proc: str) -> tuple[list[dict] | None, str]:
    """The peers of `proc`'s unix sockets and where they came from, or None
    and why not: this host's kernel when `proc` is its /proc, a procsim
    daemon when `proc` is its mount's."""
    if os.path.realpath(proc) == "/proc":
        try:
            return netlink_unix_diag(), "netlink"
        except OSError as e:
            return None, f"sock_diag over netlink failed ({e.strerror or e})"
    ctl = control_socket(proc)
    if ctl is not None:
        try:
            return control_unix_diag(ctl), "procsim"
        except (OSError, ValueError) as e:
            return None, f"the procsim daemon at {ctl} did not answer unix_diag ({e})"
    return None, f"{proc} is not this host's /proc (sock_diag answers for the capturing process's namespace only)"
