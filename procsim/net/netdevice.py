"""struct net_device (include/linux/netdevice.h): a network interface of a
namespace: its name, ifindex, hardware address, MTU, IFF_* flags and
operstate, its IPv4 and IPv6 addresses (in_device, inet6_dev), and the
rtnl_link_stats64 counters the traffic through it moves."""

from __future__ import annotations

import ipaddress

# include/uapi/linux/if.h
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x2, 0x8, 0x40
IFF_NOARP, IFF_MULTICAST, IFF_LOWER_UP = 0x80, 0x1000, 0x10000
# include/uapi/linux/if_arp.h
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
# IPv6 address scopes and flags as if_inet6 prints them
IFA_HOST, IFA_LINK, IFA_GLOBAL = 0x10, 0x20, 0x00
IFA_F_NODAD, IFA_F_PERMANENT = 0x02, 0x80

# struct rtnl_link_stats64, in the order statistics/ lists them (sysfs's names)
STATS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped",
         "tx_dropped", "multicast", "collisions", "rx_length_errors", "rx_over_errors", "rx_crc_errors",
         "rx_frame_errors", "rx_fifo_errors", "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors",
         "tx_fifo_errors", "tx_heartbeat_errors", "tx_window_errors", "rx_compressed", "tx_compressed",
         "rx_nohandler")
ETH_HLEN = 14


class NetDevice:
    """One interface. `ipv4`: (address, prefix length); `ipv6`: (address,
    prefix length, scope, flags); addresses are ints (host order)."""

    __slots__ = ("name", "ifindex", "type", "mac", "mtu", "flags", "speed", "carrier_changes", "ipv4", "ipv6",
                 "stats", "tx_queue_len", "name_assign_type")

    def __init__(self, name: str, ifindex: int, type_: int = ARPHRD_ETHER, mac: str = "00:00:00:00:00:00",
                 mtu: int = 1500, speed: int = -1) -> None:
        self.name, self.ifindex, self.type, self.mac, self.mtu, self.speed = name, ifindex, type_, mac, mtu, speed
        loop = type_ == ARPHRD_LOOPBACK
        self.flags = IFF_LOOPBACK if loop else IFF_BROADCAST | IFF_MULTICAST
        self.carrier_changes = 0
        self.ipv4: list[tuple[int, int]] = []
        self.ipv6: list[tuple[int, int, int, int]] = []
        self.stats = dict.fromkeys(STATS, 0)
        self.tx_queue_len = 1000
        self.name_assign_type = 2 if loop else 1  # NET_NAME_USER for lo, NET_NAME_ENUM for NICs

    @property
    def loopback(self) -> bool:
        return self.type == ARPHRD_LOOPBACK

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    def set_up(self, up: bool) -> None:
        """dev_open()/dev_close(): IFF_UP; a virtual NIC has its carrier
        whenever it is up."""
        if up == self.up:
            return
        self.flags = self.flags | IFF_UP if up else self.flags & ~IFF_UP
        if not self.loopback:
            self.carrier_changes += 1

    @property
    def operstate(self) -> str:
        """IF_OPER_*: lo has no link state (unknown); a NIC is up with carrier."""
        if not self.up:
            return "down"
        return "unknown" if self.loopback else "up"

    @property
    def hdr_len(self) -> int:
        """The link header each frame's byte count includes."""
        return 0 if self.loopback else ETH_HLEN

    def count(self, direction: str, packets: int, nbytes: int, multicast: int = 0) -> None:
        s = self.stats
        s[f"{direction}_packets"] += packets
        s[f"{direction}_bytes"] += nbytes + packets * self.hdr_len
        if direction == "rx":
            s["multicast"] += multicast


def parse_cidr(text: str) -> tuple[int, int, int]:
    """'10.0.2.15/24' or 'fd00::2/64' -> (version, address, prefix length)."""
    iface = ipaddress.ip_interface(text)
    return iface.version, int(iface.ip), iface.network.prefixlen


def eui64_link_local(mac: str) -> int:
    """The fe80::/64 address addrconf gives an Ethernet device (EUI-64 of its MAC)."""
    b = bytes(int(x, 16) for x in mac.split(":"))
    eui = bytes((b[0] ^ 2,)) + b[1:3] + b"\xff\xfe" + b[3:]
    return (0xFE80 << 112) | int.from_bytes(eui, "big")
