"""Running prometheus-node-exporter against a mount (shared by the
integration test and the bench): its collector set, one scrape, the
parsed series."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

BINARY = "prometheus-node-exporter"

# Default collectors that cannot be about the simulated machine, disabled:
# they need systemd (D-Bus), hardware the model has none of (sysfs classes of
# real devices and firmware), netlink (the host's sockets, whatever the path
# flags say) or a driver the reference VM's kernel lacks (it has none of
# those files either). The rest of the defaults stay on (bcache, btrfs, xfs,
# selinux, textfile, time, timex, uname succeed with nothing to report, or
# report the host's clock and uname(2)).
DISABLED = {
    "systemd": "talks to systemd over D-Bus",
    "dmi": "firmware tables (/sys/class/dmi): hardware",
    "hwmon": "hardware sensors (/sys/class/hwmon)",
    "nvme": "NVMe controllers (/sys/class/nvme): hardware",
    "fibrechannel": "FC HBAs (/sys/class/fc_host): hardware",
    "infiniband": "IB HCAs (/sys/class/infiniband): hardware",
    "powersupplyclass": "batteries and PSUs (/sys/class/power_supply): hardware",
    "rapl": "Intel RAPL energy counters (/sys/class/powercap): hardware",
    "tapestats": "tape drives (/sys/class/scsi_tape): hardware",
    "edac": "ECC memory controllers (/sys/devices/system/edac): hardware",
    "thermal_zone": "thermal sensors (/sys/class/thermal): hardware",
    "zfs": "ZFS (/proc/spl): not in the kernel",
    "mdadm": "software RAID (/proc/mdstat): CONFIG_MD is off on the reference VM",
    "nfs": "NFS client RPC stats (/proc/net/rpc): no NFS",
    "nfsd": "NFS server RPC stats (/proc/net/rpc): no NFS",
    "ipvs": "IPVS (/proc/net/ip_vs): not loaded",
    "bonding": "bonding masters (/sys/class/net/bonding_masters): none, on the reference VM too (no data: 0)",
}

# Not enabled by default, enabled here: they read files this tree serves.
# (mountstats, also off by default, reports NFS mounts only: none here.)
EXTRA = ("buddyinfo", "cgroups", "interrupts", "meminfo_numa", "processes", "slabinfo", "zoneinfo")
# netdev asks rtnetlink by default (this host's interfaces, whatever the
# path flags say); told not to, it reads PROCFS/net/dev
FLAGS = ("--no-collector.netdev.netlink",)

# Collectors whose files no model serves yet; enabled (and checked) once
# one does: move a name from here to checked by deleting its row.
PENDING: dict[str, str] = {}


def collector_flags(checked: bool = True) -> list[str]:
    """--no-collector.X for the disabled and (unless `checked` is False) the
    pending ones, --collector.X for the extras."""
    off = list(DISABLED) + (list(PENDING) if checked else [])
    return [f"--no-collector.{c}" for c in off] + [f"--collector.{c}" for c in EXTRA] + list(FLAGS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return shutil.which(BINARY) is not None


class Exporter:
    """node_exporter on a free port with the given /proc and /sys."""

    def __init__(self, procfs: str, sysfs: str, rootfs: str = "/", flags: list[str] | None = None) -> None:
        self.port = free_port()
        argv = [BINARY, f"--path.procfs={procfs}", f"--path.sysfs={sysfs}", f"--path.rootfs={rootfs}",
                f"--web.listen-address=127.0.0.1:{self.port}", *(flags if flags is not None else collector_flags())]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"node_exporter did not start: {self.proc.stderr.read()}") from None
                time.sleep(0.05)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=60) as r:
            return r.read().decode()

    def close(self) -> str:
        """Stop it; its log."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err

    def __enter__(self) -> "Exporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, frozenset of label pairs): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SERIES.match(line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def series(metrics: dict, name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]
