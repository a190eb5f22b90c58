"""A scenario process's files: its working directory (`cwd`), its standard
fds (`stdio`) and the files it holds open (`files`), made through the
command table as live control would (procsim/commands/).

    stdio = "/dev/null"          # 0, 1 and 2 on that path (O_RDWR); or
    stdio = "journal"            # 0 on /dev/null, 1 and 2 on one unix socket
                                 # (systemd's journal stream); by default a
                                 # process keeps what it inherited
    cwd = "/var/lib/postgresql"
    files = [
      { path = "/var/log/nginx/access.log", flags = "O_WRONLY|O_APPEND", pos = 4096 },
      { path = "/tmp/spool.dat", flags = "O_RDWR|O_CREAT", unlink = true },   # shows (deleted)
      { kind = "socket", family = "inet", count = 4 },
      { kind = "socket", listen = "*:80", backlog = 511, accept = true },  # procsim/net/: a server
      { kind = "socket", connect = "10.0.2.2:5432", tx_rate = "1M", rx_rate = "4M" },
      { kind = "socket", type = "dgram", bind = "127.0.0.53:53" },
      { kind = "pipe" },                       # two fds: read end, write end
      { kind = "pipe", end = "write", fd = 1 },  # one end (the other closed)
      { kind = "eventfd", value = 0 },
      { kind = "epoll", watch = [5, 6] },      # fds to watch (EPOLLIN)
      { kind = "timerfd", value = 1.0, interval = 1.0 },    # clock = "monotonic" (or realtime, boottime)
      { kind = "signalfd", mask = 0x4001 },
      { kind = "inotify", watch = ["/etc"] },
      { kind = "memfd", name = "jit" },
      { path = "/dev/null", fd = 9 },          # at a fixed fd (dup2 there)
    ]

`cloexec` (default true for every kind but paths, whose `flags` say) and
`nonblock` apply to every entry; `count` repeats one.
"""

from __future__ import annotations

from typing import Any

KINDS = ("file", "pipe", "socket", "eventfd", "epoll", "timerfd", "signalfd", "inotify", "memfd")
# a socket's network keys (procsim/net/): bind, then listen or connect, then traffic
SOCKET_KEYS = ("type", "bind", "listen", "backlog", "accept", "connect", "peer", "tx_rate", "rx_rate", "v6only",
               "peer_ino")  # peer_ino: a captured connection, made once every process exists (scenario/connections.py)
FILE_KEYS = {"kind", "path", "flags", "pos", "fd", "unlink", "family", "name", "count", "watch", "value",
             "interval", "clock", "mask", "cloexec", "nonblock", "end", "ino", "inherited", *SOCKET_KEYS}
_ONLY = {"path": "file", "flags": "file", "pos": "file", "unlink": "file", "family": "socket", "name": "memfd",
         "interval": "timerfd", "clock": "timerfd", "mask": "signalfd", "end": "pipe",
         **dict.fromkeys(SOCKET_KEYS, "socket")}


def setup(loader: Any, pid: int, v: dict, where: str) -> None:
    """Apply a process's `cwd`, `stdio` and `files` (in that order)."""
    from procsim.scenario import ScenarioError
    run = loader._exec
    if "cwd" in v:
        if not isinstance(v["cwd"], str):
            raise ScenarioError(f"{where}: cwd: expected a path, got {v['cwd']!r}")
        run(f"{where} cwd", "chdir", pid=pid, path=v["cwd"])
    if "stdio" in v:
        _stdio(run, pid, v["stdio"], f"{where} stdio", ScenarioError)
    files = v.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise ScenarioError(f"{where}: files: expected a list of tables, got {files!r}")
    for j, f in enumerate(files):
        w = f"{where} files #{j + 1}"
        unknown = sorted(set(f) - FILE_KEYS)
        if unknown:
            raise ScenarioError(f"{w}: unknown key {unknown[0]!r} (known: {', '.join(sorted(FILE_KEYS))})")
        kind = f.get("kind", "file" if "path" in f else None)
        if f.get("inherited"):  # a captured machine's: the parent's open file at that fd, shared
            if not isinstance(f.get("fd"), int) or not any(e["fd"] == f["fd"] for e in run(w, "fds", pid=pid)):
                raise ScenarioError(f"{w}: inherited: fd {f.get('fd')!r} is not one it inherited")
            continue
        if kind not in KINDS:
            raise ScenarioError(f"{w}: kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        for key, owner in _ONLY.items():
            if key in f and owner != kind:
                raise ScenarioError(f"{w}: {key!r} is for kind {owner}, not {kind}")
        if kind == "file" and "path" not in f:
            raise ScenarioError(f"{w}: a file needs a path")
        count = f.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ScenarioError(f"{w}: count: expected a positive integer, got {count!r}")
        if count > 1 and "fd" in f:
            raise ScenarioError(f"{w}: a fixed fd and count > 1 do not mix")
        if "peer_ino" in f:
            if count > 1 or "fd" not in f:
                raise ScenarioError(f"{w}: peer_ino: one socket at a fixed fd")
            if "connect" not in f:  # the server end or a socketpair's: its fd comes in the pass
                loader._conn_later(pid, f, w)
                continue
            _one(run, pid, kind, {key: x for key, x in f.items() if key not in ("connect", "peer_ino")}, w,
                 ScenarioError)
            loader._conn_client(pid, f["fd"], f, w)
            continue
        for _ in range(count):
            _one(run, pid, kind, f, w, ScenarioError)


def _stdio(run, pid: int, what: Any, where: str, err: type) -> None:
    if what == "journal":
        null = run(where, "open", pid=pid, path="/dev/null", flags="O_RDWR")
        sock = run(where, "socket", pid=pid, family="unix")
        targets = ((null, 0), (sock, 1), (sock, 2))
        made = (null, sock)
    elif isinstance(what, str) and what.startswith("/"):
        fd = run(where, "open", pid=pid, path=what, flags="O_RDWR")
        targets, made = ((fd, 0), (fd, 1), (fd, 2)), (fd,)
    else:
        raise err(f"{where}: expected a path or \"journal\", got {what!r}")
    for src, dst in targets:
        if src != dst:
            run(where, "dup2", pid=pid, fd=src, newfd=dst)
    for fd in made:
        if fd > 2:
            run(where, "close_fd", pid=pid, fd=fd)


def _one(run, pid: int, kind: str, f: dict, where: str, err: type) -> None:
    cloexec = f.get("cloexec", kind != "file")
    nonblock = f.get("nonblock", False)
    common = {"pid": pid}
    if kind == "file":
        flags = f.get("flags", "O_RDONLY")
        if cloexec is True and "cloexec" in f:
            flags = f"{flags}|O_CLOEXEC" if isinstance(flags, str) else flags | 0o2000000
        if nonblock:
            flags = f"{flags}|O_NONBLOCK" if isinstance(flags, str) else flags | 0o4000
        fds = [run(where, "open", **common, path=f["path"], flags=flags)]
        if f.get("pos"):
            run(where, "lseek", **common, fd=fds[0], offset=f["pos"])
        if f.get("unlink"):
            run(where, "unlink", pid=pid, path=f["path"])
    elif kind == "pipe":
        fds = run(where, "pipe", **common, cloexec=cloexec, nonblock=nonblock)
        if "end" in f:  # one end only (a captured fd table): the other is closed
            if f["end"] not in ("read", "write"):
                raise err(f"{where}: end: expected \"read\" or \"write\", got {f['end']!r}")
            keep = fds[0] if f["end"] == "read" else fds[1]
            run(where, "close_fd", pid=pid, fd=fds[1] if keep == fds[0] else fds[0])
            fds = [keep]
    elif kind == "socket":
        fds = [run(where, "socket", **common, family=f.get("family", "inet"), type=f.get("type"), cloexec=cloexec,
                   nonblock=nonblock)]
        _socket_net(run, pid, fds[0], f, where, err)
    elif kind == "eventfd":
        fds = [run(where, "eventfd", **common, count=f.get("value", 0), cloexec=cloexec, nonblock=nonblock)]
    elif kind == "epoll":
        ep = run(where, "epoll_create", **common, cloexec=cloexec)
        for tfd in _list(f.get("watch", []), where, err):
            run(where, "epoll_ctl", **common, epfd=ep, fd=tfd)
        fds = [ep]
    elif kind == "timerfd":
        fds = [run(where, "timerfd", **common, clock=f.get("clock", "monotonic"), value=f.get("value", 0),
                   interval=f.get("interval", 0),
                   cloexec=cloexec, nonblock=nonblock)]
    elif kind == "signalfd":
        fds = [run(where, "signalfd", **common, mask=f.get("mask", 0), cloexec=cloexec, nonblock=nonblock)]
    elif kind == "inotify":
        ino = run(where, "inotify_init", **common, cloexec=cloexec, nonblock=nonblock)
        for path in _list(f.get("watch", []), where, err):
            run(where, "inotify_add_watch", **common, fd=ino, path=path, mask=0x3CE)  # what inotifywait -m asks
        fds = [ino]
    else:
        fds = [run(where, "memfd_create", **common, name=f.get("name", "memfd"), cloexec=cloexec)]
    if "fd" in f:
        if len(fds) != 1:
            raise err(f"{where}: fd: a {kind} makes {len(fds)} fds")
        if fds[0] != f["fd"]:
            # dup3(O_CLOEXEC) keeps the entry's close-on-exec bit at its fd
            keep = any(e["cloexec"] for e in run(where, "fds", pid=pid) if e["fd"] == fds[0])
            run(where, "dup2", **common, fd=fds[0], newfd=f["fd"], cloexec=keep)
            run(where, "close_fd", **common, fd=fds[0])


def _socket_net(run, pid: int, fd: int, f: dict, where: str, err: type) -> None:
    """A socket entry's bind, listen, connect and traffic, as calls would make them."""
    if "listen" in f and "connect" in f:
        raise err(f"{where}: a socket listens or connects, not both")
    v6only = {"v6only": f["v6only"]} if "v6only" in f else {}
    if "bind" in f:
        run(where, "bind", pid=pid, fd=fd, addr=f["bind"], **v6only)
    if "listen" in f:
        if "bind" not in f:
            run(where, "bind", pid=pid, fd=fd, addr=f["listen"], **v6only)
        run(where, "listen", pid=pid, fd=fd, backlog=f.get("backlog", 128), accept=f.get("accept", False))
    elif "backlog" in f or "accept" in f:
        raise err(f"{where}: backlog and accept are for a listening socket")
    if "connect" in f:
        run(where, "connect", pid=pid, fd=fd, addr=f["connect"], peer=f.get("peer", "open"))
    elif "peer" in f:
        raise err(f"{where}: peer is for a connecting socket")
    if "tx_rate" in f or "rx_rate" in f:
        run(where, "net_flow", pid=pid, fd=fd, tx_rate=f.get("tx_rate", 0), rx_rate=f.get("rx_rate", 0))


def _list(v: Any, where: str, err: type) -> list:
    if not isinstance(v, list):
        raise err(f"{where}: watch: expected a list, got {v!r}")
    return v
