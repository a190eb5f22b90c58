"""mountd: the FUSE daemon and the `procsim` command. A thin adapter onto
procsim.procfs.tree; no kernel logic lives here.

  fs.py            mfusepy Operations -> ProcFS, and `serve()` (one mounted machine)
  control.py       the live-control channel: a Unix socket next to the mount
                   (MNT=/x/y -> /x/.y.procsim.sock), newline-delimited JSON,
                   and the Python `Client`
  cli.py           `procsim mount|umount|run|ctl`
  pytest_plugin.py the `procsim_machine` / `procsim_mount` fixtures

Importing this package is cheap on purpose: the pytest plugin is loaded in
every pytest session of the environment.
"""

from mountd.control import Client, ControlError, socket_path

__all__ = ["Client", "ControlError", "socket_path"]
