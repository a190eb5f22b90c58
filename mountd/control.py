"""Live control of a mounted machine: a Unix socket next to the mount.

Where: for the mount point /x/y the socket is /x/.y.procsim.sock (a sibling,
not inside the mount: the mount's namespace is the simulated machine's).
Mode 0600, so only the daemon's user (root) can drive it.

Protocol: newline-delimited JSON, any number of requests per connection.

    -> {"op": "mmap", "args": {"pid": 42, "length": 1048576}}
    <- {"ok": true, "result": 140737488289792}
    <- {"ok": false, "errno": 3, "error": "mmap: no such process 42"}

`op` is a procsim.commands name (they run through `commands.execute`, which
checks arguments before touching the kernel, so a failed command changes
nothing), or one of the transport's own: "ping" (daemon pid, mount point)
and "ops" (the command names and their parameters). An optional "id" in a
request is echoed back. Malformed requests get an error reply; the daemon
never dies of one.

Python API:

    from mountd.control import Client
    with Client("/x/y") as c:
        pid = c.spawn(argv=["/usr/bin/sleep", "100"], uid=1000, gid=1000)
        c.mmap(pid=pid, length=1 << 20)
        c.call("exit_group", pid=pid)      # same thing, by name

Client has one method per command, generated from the command table
(procsim/commands/): its parameters, defaults, types and docstring are
the table's, so `help(Client.mmap)` shows them and a misspelt keyword fails
in Python before anything is sent.
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, Optional

log = logging.getLogger("procsim.control")

SOCKET_SUFFIX = ".procsim.sock"
MAX_LINE = 1 << 20          # a request line longer than this is refused
_SUN_PATH_MAX = 107         # sizeof(sun_path) - 1 on Linux


def socket_path(mnt: str) -> str:
    """The control socket of the machine mounted at `mnt`: MNT=/x/y -> /x/.y.procsim.sock."""
    mnt = os.path.abspath(mnt)
    head, tail = os.path.split(mnt)
    return os.path.join(head, f".{tail}{SOCKET_SUFFIX}")


def _sockaddr(path: str) -> tuple[str, int | None]:
    """An address bind/connect accept. Paths over 107 bytes (deep pytest
    tmp dirs) go through an O_PATH descriptor of the directory; the caller
    closes the returned fd."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


class ControlError(OSError):
    """A command failed: `.errno` is the kernel's errno, `.msg` the reason."""

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(err, msg)
        self.msg = msg


# -- client -----------------------------------------------------------------------

class Client:
    """A connection to a mounted machine's control socket.

    `client.call("mmap", pid=1, length=4096)` or `client.mmap(pid=1,
    length=4096)`; failures raise ControlError carrying the errno. One
    connection, opened on first use and reused; thread-safe.
    """

    def __init__(self, mnt: str, timeout: float | None = 120.0) -> None:
        self.mnt = os.path.abspath(mnt)
        self.path = socket_path(self.mnt)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._rfile = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        addr, fd = _sockaddr(self.path)
        try:
            s.connect(addr)
        except OSError as e:
            s.close()
            raise ControlError(e.errno or errno.EIO,
                               f"no procsim daemon answers at {self.path}: {e.strerror or e}") from None
        finally:
            if fd is not None:
                os.close(fd)
        self._sock, self._rfile = s, s.makefile("rb")

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one raw request object, return the raw reply object."""
        line = json.dumps(req, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            if self._sock is None:
                self._connect()
            try:
                self._sock.sendall(line)
                reply = self._rfile.readline()
            except OSError as e:
                self._close()
                raise ControlError(e.errno or errno.EIO, f"control channel {self.path}: {e}") from None
            if not reply:
                self._close()
                raise ControlError(errno.ECONNRESET, f"control channel {self.path}: daemon closed the connection")
        return json.loads(reply)

    def call(self, op: str, /, **args: Any) -> Any:
        """Run command `op` with keyword arguments; return its result."""
        rep = self.request({"op": op, "args": args})
        if not rep.get("ok"):
            raise ControlError(int(rep.get("errno") or errno.EIO), str(rep.get("error")))
        return rep.get("result")

    def ping(self) -> dict[str, Any]:
        """{"pid": daemon pid, "mnt": mount point}; raises ControlError if nobody answers."""
        return self.call("ping")

    def ops(self) -> dict[str, list[str]]:
        """Command names and their parameter names."""
        return self.call("ops")

    def _close(self) -> None:
        for f in (self._rfile, self._sock):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._sock = self._rfile = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.mnt!r})"


def _client_method(cmd: Any) -> Callable[..., Any]:
    """Client.<command>: binds the arguments to the table's signature and
    sends only those given (the daemon fills in the defaults)."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for p in cmd.params:
        default = inspect.Parameter.empty if p.required else p.default
        hint = Optional[p.type.annotation] if default is None else p.type.annotation
        params.append(inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                        annotation=hint))
    sig = inspect.Signature(params)

    def method(self: Client, *args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(self, *args, **kwargs)
        given = {name: v for name, v in bound.arguments.items() if name != "self"}
        return self.call(cmd.name, **given)

    method.__name__ = cmd.name
    method.__qualname__ = f"Client.{cmd.name}"
    method.__doc__ = cmd.doc
    method.__signature__ = sig  # type: ignore[attr-defined]
    return method


def _add_command_methods() -> None:
    from procsim.commands import COMMANDS
    for name, cmd in COMMANDS.items():
        assert not hasattr(Client, name), f"command {name!r} shadows Client.{name}"
        setattr(Client, name, _client_method(cmd))


_add_command_methods()


# -- server -----------------------------------------------------------------------

def _jsonable(o: Any) -> Any:
    """Results may hold numpy integers or sets; everything else becomes text."""
    if hasattr(o, "__index__"):
        return int(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _err(err: int, msg: str) -> dict[str, Any]:
    return {"ok": False, "errno": err, "error": msg}


class ControlServer:
    """Serves the control socket of one machine from background threads.

    `after_command` runs after every command, outside the kernel lock and
    before the reply is sent (the FUSE layer uses it to drop cached dentries
    of pids that just went away, so the caller sees the change at once).
    """

    def __init__(self, kernel: Any, mnt: str, after_command: Callable[[], None] | None = None) -> None:
        from procsim import commands  # the kernel side, only in the daemon
        self._commands = commands
        self.kernel = kernel
        self.mnt = os.path.abspath(mnt)
        self.path = socket_path(self.mnt)
        self.after_command = after_command
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    # lifecycle

    def start(self) -> None:
        """Bind (0600) and serve in a daemon thread. Refuses if a live daemon owns the socket."""
        if os.path.exists(self.path) or os.path.islink(self.path):
            try:
                Client(self.mnt, timeout=2).ping()
            except ControlError:
                os.unlink(self.path)  # stale: a daemon that died without cleaning up
            else:
                raise ControlError(errno.EADDRINUSE, f"{self.path}: another procsim daemon serves {self.mnt}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr, fd = _sockaddr(self.path)
        old = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            s.bind(addr)
        except OSError as e:
            s.close()
            raise ControlError(e.errno or errno.EIO,
                               f"cannot create the control socket {self.path}: {e.strerror}") from None
        finally:
            os.umask(old)
            if fd is not None:
                os.close(fd)
        os.chmod(self.path, 0o600)
        s.listen(16)
        self._sock = s
        self._thread = threading.Thread(target=self._accept_loop, name="procsim-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._closing = True
        s, self._sock = self._sock, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes accept()
            except OSError:
                pass
            s.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _accept_loop(self) -> None:
        while not self._closing:
            s = self._sock
            if s is None:
                return
            try:
                conn, _ = s.accept()
            except OSError:
                if self._closing:
                    return
                continue
            # one thread per connection: an idle client must not block `procsim ctl`
            threading.Thread(target=self._serve_conn, args=(conn,), name="procsim-control-conn",
                             daemon=True).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as rfile:
                while True:
                    line = rfile.readline(MAX_LINE + 1)
                    if not line:
                        return
                    if len(line) > MAX_LINE:
                        self._send(conn, _err(errno.E2BIG, f"request longer than {MAX_LINE} bytes"))
                        return  # the rest of the line cannot be resynchronised
                    if not line.strip():
                        continue
                    self._send(conn, self.handle_line(line))
        except OSError:
            pass  # the client went away
        except Exception:  # never let a connection take the daemon down
            log.exception("control connection failed")

    @staticmethod
    def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            data = json.dumps(reply, default=_jsonable, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            data = json.dumps(_err(errno.EIO, f"result is not serialisable: {e}"))
        conn.sendall(data.encode() + b"\n")

    # requests

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """One request line -> one reply object. Never raises."""
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return _err(errno.EINVAL, f"malformed request (not JSON): {e}")
        rep = self.handle(req)
        if isinstance(req, dict) and "id" in req:
            rep["id"] = req["id"]
        return rep

    def handle(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return _err(errno.EINVAL, 'malformed request: expected an object {"op": ..., "args": {...}}')
        op, args = req.get("op"), req.get("args")
        if not isinstance(op, str) or not op:
            return _err(errno.EINVAL, 'malformed request: "op" must be a command name')
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return _err(errno.EINVAL, f'malformed request: "args" must be an object, got {type(args).__name__}')
        if op == "ping":
            return {"ok": True, "result": {"pid": os.getpid(), "mnt": self.mnt}}
        if op == "ops":
            return {"ok": True, "result": self._ops()}
        k = self.kernel
        try:
            with k.lock:
                k.follow_wall()  # a command happens "now" on a wall-clock machine
                result = self._commands.execute(k, op, args)
        except self._commands.CommandError as e:
            return _err(e.errno, e.msg)
        except Exception as e:  # a bug in the kernel: report it, keep serving
            log.exception("command %s%r failed", op, args)
            return _err(errno.EIO, f"{op}: internal error: {e!r}")
        finally:
            if self.after_command is not None:
                try:
                    self.after_command()
                except Exception:
                    log.exception("after_command hook failed")
        return {"ok": True, "result": result}

    def _ops(self) -> dict[str, list[str]]:
        out = {}
        for name, cmd in sorted(self._commands.COMMANDS.items()):
            out[name] = [p.name for p in cmd.params]
        return out
