"""The `procsim` command.

    procsim mount MNT [--scenario FILE] [--seed N] [--clock wall|manual] [--daemon]
    procsim umount MNT
    procsim run [--scenario FILE] [--seed N] [--clock wall|manual] [--bind-sys] -- CMD ARGS...
    procsim ctl MNT OP [key=value ...]

The mount root is the machine: MNT/proc and MNT/sys. The live-control socket
sits next to the mount point: MNT=/x/y -> /x/.y.procsim.sock (mode 0600).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from mountd.control import Client, ControlError, socket_path

READY_TIMEOUT = 60.0


class CLIError(Exception):
    """A failure reported as `procsim: error: ...` with exit status 1."""


# -- helpers shared with the pytest plugin ------------------------------------------

# The parts of /sys a tool reads about the machine rather than its devices:
# page_idle and THP (the memory model's), the CPUs (htop, lscpu, nproc and
# node_exporter count cpuN there) and the memory node. The rest of the
# host's /sys stays: binding it all would hide /sys/fs/cgroup, the device
# classes and the host's own kernel files from the command. /sys/module: the
# loaded modules' attributes lsmod reads beside /proc/modules.
SYS_BINDS = ("kernel/mm", "devices/system/cpu", "devices/system/node", "module", "block", "dev/block", "class/block")


def namespace_argv(mnt: str, cmd: Sequence[str], bind_sys: bool = False) -> list[str]:
    """argv that runs `cmd` in a private mount namespace with MNT/proc bound
    over /proc and SYS_BINDS of MNT/sys over the host's, or all of MNT/sys
    over /sys with `bind_sys`. sh binds, then execs `cmd`, so `cmd` keeps the
    pid we spawned: ps must find its own pid in the simulated /proc."""
    script = 'mount --bind "$0/proc" /proc || exit 125; '
    if bind_sys:
        script += 'mount --bind "$0/sys" /sys || exit 125; '
    else:
        for d in SYS_BINDS:  # a host without the directory (no NUMA sysfs) just keeps its own
            script += f'[ -d /sys/{d} ] && {{ mount --bind "$0/sys/{d}" /sys/{d} || exit 125; }}; '
    script += 'exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", script, os.path.abspath(mnt), *cmd]


def is_mounted(mnt: str) -> bool:
    """Whether `mnt` is a mount point, by the mount table: a FUSE mount whose
    daemon died fails every stat (ENOTCONN), so os.path.ismount() calls it
    unmounted while it is still there to be unmounted."""
    target = os.path.abspath(mnt)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                point = line.split(b" ", 5)[4]  # octal escapes: \040 for a space
                if _unescape(point) == target:
                    return True
    except OSError:
        return os.path.ismount(target)
    return False


def _unescape(field: bytes) -> str:
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), field).decode(errors="surrogateescape")


def _load(scenario: str | None, seed: int | None, clock: str | None) -> Any:
    from procsim import scenario as sc  # the kernel: only where a machine is built
    try:
        return sc.load(scenario, seed=seed, clock=clock)
    except (ValueError, OSError) as e:  # ScenarioError is a ValueError
        raise CLIError(str(e)) from None


def _check_mountpoint(mnt: str) -> str:
    mnt = os.path.abspath(mnt)
    if not os.path.isdir(mnt):
        raise CLIError(f"{mnt}: not a directory (create it first)")
    if is_mounted(mnt):
        raise CLIError(f"{mnt}: already a mount point (procsim umount {mnt}?)")
    return mnt


def _stop(pid: int, grace: float = 3.0) -> None:
    """SIGTERM (the daemon unmounts and exits), SIGKILL after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not _pid_alive(pid):
            return


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own unreaped child) is as good as gone
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


# -- mount ---------------------------------------------------------------------------

def mount_foreground(kernel: Any, mnt: str, debug: bool = False) -> None:
    """Serve in this process until unmounted, Ctrl-C or SIGTERM."""
    from mountd.fs import serve
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="procsim[%(process)d] %(levelname)s %(name)s: %(message)s")

    def ready() -> None:
        print(f"procsim: machine mounted at {mnt} (control socket {socket_path(mnt)}); "
              "Ctrl-C or `procsim umount` unmounts", file=sys.stderr, flush=True)

    try:
        serve(kernel, mnt, on_ready=ready, debug=debug)
    except RuntimeError as e:
        raise CLIError(f"mounting {mnt} failed (libfuse status {e})") from None


def mount_daemon(kernel: Any, mnt: str, log_path: str | None = None, debug: bool = False,
                 timeout: float = READY_TIMEOUT) -> int:
    """Double-fork a daemon serving `kernel` at `mnt`; return its pid once
    the mount answers (os.path.ismount and a control-socket ping)."""
    r, w = os.pipe()  # non-inheritable: fusermount3 (exec'd by libfuse) does not keep it
    child = os.fork()
    if child == 0:
        status = 1
        try:
            os.close(r)
            os.setsid()  # no controlling terminal: Ctrl-C in the caller's shell does not reach us
            if os.fork() > 0:
                os._exit(0)
            status = _daemon_main(kernel, mnt, w, log_path, debug)
        finally:
            os._exit(status)
    os.close(w)
    os.waitpid(child, 0)
    msgs, daemon_pid, ok = [], None, False
    deadline = time.monotonic() + timeout
    with os.fdopen(r, "rb") as rf:
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rf], [], [], left)[0]:
                if daemon_pid is not None:
                    os.kill(daemon_pid, signal.SIGTERM)  # ours, by pid
                raise CLIError(f"mounting {mnt}: no answer from the daemon after {timeout:.0f} s")
            chunk = os.read(rf.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
        for line in buf.decode(errors="replace").splitlines():
            if line.startswith("pid "):
                daemon_pid = int(line[4:])
            elif line == "ok":
                ok = True
            else:
                msgs.append(line)
    if not ok:
        raise CLIError(f"mounting {mnt} failed" + (":\n  " + "\n  ".join(msgs) if msgs else ""))
    client = Client(mnt, timeout=5)
    try:
        while True:  # INIT is done; make sure lookups and the socket answer
            try:
                if is_mounted(mnt) and client.ping()["pid"] == daemon_pid:
                    return daemon_pid
            except ControlError:
                pass
            if time.monotonic() > deadline:
                raise CLIError(f"mounting {mnt}: the daemon (pid {daemon_pid}) does not answer")
            time.sleep(0.01)
    finally:
        client.close()


def _daemon_main(kernel: Any, mnt: str, w: int, log_path: str | None, debug: bool) -> int:
    """The daemon (grandchild). Reports `pid N`, then `ok` or the error text, on fd w."""
    os.write(w, f"pid {os.getpid()}\n".encode())
    os.chdir("/")  # do not pin the caller's working directory
    null = os.open(os.devnull, os.O_RDWR)
    # Until the mount is ready, stderr (ours and libfuse's) goes to a scratch
    # file whose text is the error report; after that, to the log or nowhere.
    scratch = tempfile.TemporaryFile()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log_path else None
    os.dup2(null, 0)
    os.dup2(log_fd if log_fd is not None else null, 1)
    os.dup2(scratch.fileno(), 2)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                        format="procsim[%(process)d] %(asctime)s %(levelname)s %(name)s: %(message)s")
    state = {"ready": False}

    def ready() -> None:
        state["ready"] = True
        os.dup2(log_fd if log_fd is not None else null, 2)
        os.write(w, b"ok\n")
        os.close(w)

    def report(msg: str) -> None:
        scratch.seek(0)
        text = scratch.read().decode(errors="replace").strip()
        if log_fd is not None and text:
            os.write(log_fd, text.encode() + b"\n")
        os.write(w, (f"{text}\n{msg}\n" if text else f"{msg}\n").encode())

    from mountd.fs import serve
    try:
        serve(kernel, mnt, on_ready=ready, debug=debug)
        if not state["ready"]:
            report("the mount ended before it was ready")
            return 1
        return 0
    except BaseException as e:  # noqa: BLE001 - the daemon reports everything before dying
        if state["ready"]:
            logging.getLogger("procsim").exception("daemon failed")
            return 1
        report(f"libfuse status {e}" if isinstance(e, RuntimeError) else f"{type(e).__name__}: {e}")
        return 1


# -- umount --------------------------------------------------------------------------

def unmount(mnt: str, lazy: bool = False, timeout: float = 10.0) -> None:
    """fusermount3 -u (umount(8) as a fallback), then wait for the daemon to
    exit and make sure its socket is gone."""
    mnt = os.path.abspath(mnt)
    sock = socket_path(mnt)
    daemon_pid = None
    if os.path.exists(sock):
        try:
            with Client(mnt, timeout=2) as c:
                daemon_pid = c.ping()["pid"]
        except (ControlError, KeyError, TypeError, ValueError):
            pass
    if is_mounted(mnt):
        r = subprocess.run(["fusermount3", "-u", *(["-z"] if lazy else []), mnt],
                           capture_output=True, text=True) if shutil.which("fusermount3") else None
        if r is None or r.returncode != 0:
            r2 = subprocess.run(["umount", *(["-l"] if lazy else []), mnt], capture_output=True, text=True)
            if r2.returncode != 0:
                err = (r.stderr if r is not None else r2.stderr).strip()
                raise CLIError(f"cannot unmount {mnt}: {err}")
    elif daemon_pid is None and not os.path.exists(sock):
        raise CLIError(f"{mnt}: not mounted")
    deadline = time.monotonic() + timeout
    # Wait for the daemon that answered to exit (it removes its socket).
    # A socket nobody answered on is stale (a killed daemon): waiting for it
    # to vanish only stalled every such unmount for the whole timeout.
    while daemon_pid and (os.path.exists(sock) or _pid_alive(daemon_pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    if daemon_pid and _pid_alive(daemon_pid):
        # The unmount detached the mount here, but a copy of it lives on in
        # another mount namespace (a process still running from `run`), so
        # the kernel never ended the FUSE session. The daemon answered as
        # this mount's: stop it, which ends the session everywhere.
        _stop(daemon_pid)
    try:
        os.unlink(sock)  # the daemon normally removed it; this covers a killed one
    except FileNotFoundError:
        pass


# -- run -----------------------------------------------------------------------------

def run_command(kernel: Any, cmd: Sequence[str], bind_sys: bool = False, log_path: str | None = None) -> int:
    """Mount `kernel` in a temporary directory, run cmd with it over /proc,
    unmount; return cmd's exit status (128+N if killed by signal N)."""
    if not shutil.which("unshare"):
        raise CLIError("`unshare` (util-linux) is needed to run a command against the machine")
    tmp = tempfile.mkdtemp(prefix="procsim-run-")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    try:
        mount_daemon(kernel, mnt, log_path=log_path)
        proc: subprocess.Popen | None = None

        def forward(sig: int, _frame: Any) -> None:
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)  # the command decides; we unmount once it is gone

        # Python-level handlers (not SIG_IGN) so the command gets default ones after exec.
        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
        old[signal.SIGINT] = signal.signal(signal.SIGINT, lambda *_: None)  # the tty sent it to cmd too
        old[signal.SIGQUIT] = signal.signal(signal.SIGQUIT, lambda *_: None)
        try:
            proc = subprocess.Popen(namespace_argv(mnt, cmd, bind_sys))
            rc = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return rc if rc >= 0 else 128 - rc
    finally:
        try:
            unmount(mnt)
        except CLIError as e:
            print(f"procsim: warning: {e}", file=sys.stderr)
        if not is_mounted(mnt):
            shutil.rmtree(tmp, ignore_errors=True)


# -- ctl -----------------------------------------------------------------------------

def parse_kv(items: Sequence[str]) -> dict[str, Any]:
    """key=value pairs; a value is JSON when it parses (42, true, [1,2]), text otherwise."""
    args: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise CLIError(f"expected key=value, got {item!r}")
        try:
            args[key] = json.loads(val)
        except ValueError:
            args[key] = val
    return args


# -- argument parsing ---------------------------------------------------------------

def _add_machine_args(p: argparse.ArgumentParser, default_clock: str) -> None:
    p.add_argument("--scenario", metavar="FILE", help="TOML scenario (default: the machine shipped with procsim)")
    p.add_argument("--seed", type=int, metavar="N", help="random seed (overrides the scenario's)")
    p.add_argument("--clock", choices=("wall", "manual"), default=default_clock,
                   help=f"wall: time follows real time (top moves); manual: frozen until "
                        f"`procsim ctl MNT advance seconds=N` (default: {default_clock})")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="procsim",
        description="A simulated Linux kernel whose /proc real tools read through FUSE.",
        epilog="Mount root is the machine: MNT/proc and MNT/sys. The control socket of a mount "
               "MNT=/x/y is /x/.y.procsim.sock (mode 0600).")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    p = sub.add_parser("mount", help="mount a machine at MNT", description=(
        "Mount a simulated machine at MNT (MNT/proc, MNT/sys). Foreground by default: "
        "Ctrl-C or SIGTERM unmounts."))
    p.add_argument("mnt", metavar="MNT", help="an existing directory")
    _add_machine_args(p, "wall")
    p.add_argument("--daemon", action="store_true", help="detach; return once the mount is ready")
    p.add_argument("--log", metavar="FILE", help="with --daemon: append the daemon's log to FILE")
    p.add_argument("--debug", action="store_true", help="log every FUSE request (libfuse -d)")

    p = sub.add_parser("umount", help="unmount a machine", description=(
        "Unmount MNT (fusermount3 -u), wait for its daemon to exit and remove its control socket."))
    p.add_argument("mnt", metavar="MNT")
    p.add_argument("-z", "--lazy", action="store_true", help="lazy unmount (detach even if busy)")

    p = sub.add_parser("run", help="run a command against a temporary machine", description=(
        "Mount a machine in a temporary directory, run CMD in a private mount namespace with the "
        "simulated /proc bound over /proc and its /sys/kernel/mm over /sys/kernel/mm, unmount, and exit "
        "with CMD's status. Needs root."),
        epilog="example: procsim run --clock manual -- ps aux")
    _add_machine_args(p, "wall")
    p.add_argument("--bind-sys", action="store_true",
                   help="bind all of MNT/sys over /sys (default: only MNT/sys/kernel/mm over /sys/kernel/mm)")
    p.add_argument("--log", metavar="FILE", help="append the daemon's log to FILE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")

    p = sub.add_parser("ctl", help="change or query a mounted machine", description=(
        "Send one command to the machine mounted at MNT and print its JSON result. Values are "
        "JSON when they parse (42, true, [\"a\",\"b\"]) and text otherwise (rw, 0-3, 1M). "
        "`procsim ctl MNT ops` lists the commands and their parameters."),
        epilog="examples: procsim ctl MNT ps | procsim ctl MNT spawn argv='[\"/usr/bin/sleep\",\"9\"]' "
               "uid=1000 | procsim ctl MNT mmap pid=42 length=1M prot=rw | "
               "procsim ctl MNT migrate tid=42 cpu=3 | procsim ctl MNT advance seconds=1")
    p.add_argument("mnt", metavar="MNT")
    p.add_argument("op", metavar="OP")
    p.add_argument("args", nargs="*", metavar="key=value")

    p = sub.add_parser("capture", help="write a live /proc down as a scenario", description=(
        "Read a live /proc (the host's, a container's, a procsim mount's) and write a scenario that "
        "`procsim mount --scenario OUT.toml` serves back (procsim/capture/). Progress and a warning per "
        "skipped item on stderr."))
    p.add_argument("out", metavar="OUT.toml")
    p.add_argument("--root", default="/proc", metavar="DIR", help="the /proc to read (default /proc)")
    p.add_argument("--sys", default="/sys", metavar="DIR", help="the /sys to read (default /sys)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--pids", metavar="PIDS", help="only these processes (1,42,300-310) and the kernel threads")
    who.add_argument("--all", action="store_true", help="every process (the default)")
    p.add_argument("--env", action="store_true", help="include each process's environ")
    p.add_argument("--anonymize", action="store_true",
                   help="replace user names, arguments, paths and addresses (deterministically)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, warnings counted only")

    p = sub.add_parser("diff", help="compare a replay with its source", description=(
        "Compare two /proc trees file by file for every pid both serve (cmdline, comm, maps, status, "
        "statm, stat, smaps Size/Rss/Swap, limits, fd links, cgroup; meminfo totals, version, cpuinfo) "
        "and report the fields that differ and why. Exit status 1 if any differ."))
    p.add_argument("src", metavar="SRC_ROOT")
    p.add_argument("dst", metavar="MNT/proc")
    p.add_argument("--pids", metavar="PIDS", help="only these pids")
    p.add_argument("--scenario", metavar="FILE",
                   help="the capture: tells what moved in the source since from what the model derives")
    return ap


def _pid_list(text: str | None) -> set[int] | None:
    if text is None:
        return None
    from procsim.bitmap import parse_list
    from procsim.bitmap import iter_bits
    try:
        return set(iter_bits(parse_list(text, 1 << 22)))
    except ValueError as e:
        raise CLIError(f"--pids: {e}") from None


def _capture(a: argparse.Namespace) -> int:
    from procsim.capture import capture, to_toml
    from procsim.capture.source import stderr_progress
    warned = []
    doc = capture(a.root, a.sys, _pid_list(a.pids), env=a.env, anonymize=a.anonymize,
                  progress=None if a.quiet else stderr_progress,
                  warn=warned.append if a.quiet else (lambda m: stderr_progress(f"warning: {m}")))
    with open(a.out, "w") as f:
        f.write(to_toml(doc))
    print(f"procsim: wrote {a.out}", file=sys.stderr)
    return 0


def _diff(a: argparse.Namespace) -> int:
    from procsim.capture.diff import Captured, compare
    r = compare(a.src, a.dst, _pid_list(a.pids), Captured.load(a.scenario) if a.scenario else None)
    sys.stdout.write(r.text())
    return 1 if r.differences else 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        if a.cmd == "mount":
            mnt = _check_mountpoint(a.mnt)
            kernel = _load(a.scenario, a.seed, a.clock)
            if a.daemon:
                pid = mount_daemon(kernel, mnt, log_path=a.log and os.path.abspath(a.log), debug=a.debug)
                print(f"procsim: machine mounted at {mnt} (daemon pid {pid}, control socket "
                      f"{socket_path(mnt)})", file=sys.stderr)
            else:
                mount_foreground(kernel, mnt, debug=a.debug)
            return 0
        if a.cmd == "umount":
            unmount(a.mnt, lazy=a.lazy)
            return 0
        if a.cmd == "run":
            cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
            if not cmd:
                ap.error("run: missing the command (procsim run -- CMD ARGS...)")
            kernel = _load(a.scenario, a.seed, a.clock)
            return run_command(kernel, cmd, bind_sys=a.bind_sys, log_path=a.log and os.path.abspath(a.log))
        if a.cmd == "capture":
            return _capture(a)
        if a.cmd == "diff":
            return _diff(a)
        if a.cmd == "ctl":
            with Client(a.mnt) as c:
                result = c.call(a.op, **parse_kv(a.args))
            print(json.dumps(result))
            return 0
    except ControlError as e:
        print(f"procsim: error: {e.msg} ({errno.errorcode.get(e.errno, e.errno)})", file=sys.stderr)
        return 1
    except CLIError as e:
        print(f"procsim: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
