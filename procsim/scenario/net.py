"""[[netdev]] -> the devices of the initial network namespace (lo and
eth0 are there from boot: an entry named so reconfigures it, any other
name adds a device). Sockets are process files (procsim/scenario_files.py:
`bind`, `listen`, `connect` ... on a `kind = "socket"` entry)."""

from __future__ import annotations

from procsim import restore
from procsim.net import add_nic
from procsim.net.netdevice import parse_cidr
from procsim.net.netns import Route
from procsim.scenario.schema import NETDEV, ScenarioError, _fields

_MAC = r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"


# /proc/net/dev's columns -> the counter each is restored to (dev_seq_printf_stats sums some: the
# sum goes to the first of them)
DEV_STATS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "rx_fifo_errors", "rx_frame_errors",
             "rx_compressed", "multicast", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped", "tx_fifo_errors",
             "collisions", "tx_carrier_errors", "tx_compressed")
SUMMED = ("rx_missed_errors", "rx_length_errors", "rx_over_errors", "rx_crc_errors", "tx_aborted_errors",
          "tx_window_errors", "tx_heartbeat_errors")


class NetBuilder:
    """The builder's part for [[netdev]] (a mixin of scenario/builder.py's _Builder)."""

    def _restore_netdev_stats(self) -> None:
        """A captured device's counters, once the boot history has played."""
        for name, stat in getattr(self, "netdev_stats", []):
            self._call(f"netdev {name!r}: stat", restore.restore_netdev_stats, self.k, name,
                       dict(zip(DEV_STATS, stat)), SUMMED)

    def _netdevs(self, entries: list) -> None:
        import ipaddress
        import re
        net = self.k.net.net(self.k.init_ns["net"])
        seen = set()
        for i, d in enumerate(entries):
            where = f"netdev #{i + 1}"
            v = _fields(d, NETDEV, where, required=("name",))
            name = v["name"]
            if name in seen or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name):
                raise ScenarioError(f"{where}: name: a new interface name of up to 15 characters, got {name!r}")
            seen.add(name)
            mac = v.get("mac", f"52:54:00:12:34:{0x56 + i:02x}")
            if not re.fullmatch(_MAC, mac):
                raise ScenarioError(f"{where}: mac: expected xx:xx:xx:xx:xx:xx, got {mac!r}")
            mtu = v.get("mtu", 65536 if name == "lo" else 1500)
            if not 68 <= mtu <= 65536:
                raise ScenarioError(f"{where}: mtu: 68 to 65536, got {mtu}")
            addrs = [*v.get("ipv4", []), *v.get("ipv6", [])]
            for a in addrs:
                try:
                    parse_cidr(a)
                except ValueError:
                    raise ScenarioError(f"{where}: {a!r} is not ADDRESS/PREFIX") from None
            gw = v.get("gateway")
            if gw is not None:
                try:
                    ipaddress.IPv4Address(gw)
                except ValueError:
                    raise ScenarioError(f"{where}: gateway: an IPv4 address, got {gw!r}") from None
            if "stat" in v:
                if not (isinstance(v["stat"], list) and len(v["stat"]) == len(DEV_STATS) and all(
                        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v["stat"])):
                    raise ScenarioError(f"{where}: stat: expected the 16 numbers of its /proc/net/dev line")
                self.netdev_stats = getattr(self, "netdev_stats", []) + [(name, v["stat"])]
            if name == "lo":
                net.lo.mtu = mtu
                continue
            old = net.device(name)
            if old is not None:  # the boot's eth0: the scenario's instead, at its ifindex
                net.routes = [r for r in net.routes if r.dev is not old]
                del net.devices[old.ifindex]
                net.next_ifindex = old.ifindex
            dev = add_nic(net, name, mac, mtu, v.get("ipv4", []), v.get("ipv6", []), None, v.get("up", True),
                          v.get("speed", -1))
            if old is not None:
                net.next_ifindex = max(net.devices) + 1
                net.devices = dict(sorted(net.devices.items()))
            if gw is not None:
                net.add_route(Route(dev, 0, 0, int(ipaddress.IPv4Address(gw))))
            net.routes.sort(key=lambda r: (r.dst, -r.plen))
