"""struct net: what one network namespace has (its devices, addresses,
routes, neighbours, socket tables, SNMP MIBs, per-CPU softnet counters),
and NetState, the machine's namespaces by their nsproxy identity.

A namespace made by unshare/clone(CLONE_NEWNET) starts as Linux's does:
a loopback device that is down, no addresses, no routes, no sockets."""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procsim.net import mib_names as N
from procsim.net.netdevice import (ARPHRD_ETHER, ARPHRD_LOOPBACK, IFA_F_NODAD, IFA_F_PERMANENT, IFA_GLOBAL,
                                   IFA_HOST, IFA_LINK, NetDevice, eui64_link_local)
from procsim.net.sock import TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_TIME_WAIT, V4MAPPED, Sock

if TYPE_CHECKING:
    from procsim.nsproxy import Namespace

LOOPBACK_V4 = int(ipaddress.IPv4Address("127.0.0.1"))
LOOPBACK_V6 = 1
EPHEMERAL = (32768, 60999)   # net.ipv4.ip_local_port_range
RTF_UP, RTF_GATEWAY = 0x1, 0x2
# arp_state_to_flags(): ATF_COM for a resolved entry, ATF_PERM for a permanent one
ATF_COM, ATF_PERM = 0x2, 0x4


@dataclass
class Route:
    """An IPv4 route of the main table (fib_info as /proc/net/route shows it)."""
    dev: NetDevice
    dst: int
    plen: int
    gw: int = 0
    metric: int = 0

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.plen)) & 0xFFFFFFFF if self.plen else 0

    @property
    def flags(self) -> int:
        return RTF_UP | (RTF_GATEWAY if self.gw else 0)


@dataclass
class Neighbour:
    """An ARP cache entry (struct neighbour of arp_tbl)."""
    ip: int
    mac: str
    dev: NetDevice
    permanent: bool = False

    @property
    def flags(self) -> int:
        return ATF_COM | (ATF_PERM if self.permanent else 0)


def _mib(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


class Net:
    """One network namespace."""

    def __init__(self, ns: "Namespace | None", nr_cpus: int) -> None:
        self.ns = ns
        self.devices: dict[int, NetDevice] = {}   # by ifindex, in registration order
        self.next_ifindex = 1
        self.routes: list[Route] = []
        self.neighbours: list[Neighbour] = []
        # the socket tables, each in the order its /proc file walks it
        self.tcp_listen: dict[int, Sock] = {}   # listening hash
        self.tcp_ehash: dict[int, Sock] = {}    # established hash: connections, request socks, TIME_WAIT
        self.udp: dict[int, Sock] = {}          # bound UDP sockets
        self.unix: dict[int, Sock] = {}         # every unix socket
        self.binds: dict[tuple[int, int], list[Sock]] = {}  # (protocol, port) -> the sockets bound to it
        self.unix_names: dict[str, Sock] = {}
        self.next_port = EPHEMERAL[0]
        self.mib = {"Ip": _mib(N.IP), "Icmp": _mib(N.ICMP), "Tcp": _mib(N.TCP), "Udp": _mib(N.UDP),
                    "UdpLite": _mib(N.UDPLITE), "TcpExt": _mib(N.TCPEXT), "IpExt": _mib(N.IPEXT),
                    "MPTcpExt": _mib(N.MPTCPEXT)}
        ip, tcp = self.mib["Ip"], self.mib["Tcp"]
        ip["Forwarding"], ip["DefaultTTL"] = 2, 64  # not forwarding
        tcp["RtoAlgorithm"], tcp["RtoMin"], tcp["RtoMax"], tcp["MaxConn"] = 1, 200, 120000, -1
        self.icmpmsg: dict[int, int] = {}   # type (0x100 | type: Out) -> count
        self.ipv6 = _mib(N.IPV6)
        self.icmp6msg: dict[int, int] = {}
        self.softnet = [0] * nr_cpus        # packets processed per CPU (softnet_data.processed)
        self.add_device(NetDevice("lo", 0, ARPHRD_LOOPBACK, mtu=65536))

    # -- devices and addresses ---------------------------------------------------

    def add_device(self, dev: NetDevice) -> NetDevice:
        """register_netdevice(): the next ifindex."""
        dev.ifindex = self.next_ifindex
        self.next_ifindex += 1
        self.devices[dev.ifindex] = dev
        return dev

    def device(self, name: str) -> NetDevice | None:
        return next((d for d in self.devices.values() if d.name == name), None)

    @property
    def lo(self) -> NetDevice:
        return self.devices[1]

    def set_up(self, dev: NetDevice, up: bool) -> None:
        """dev_open()/dev_close(), and what inetdev/addrconf do then: lo gets
        127.0.0.1/8 and ::1; an Ethernet device its fe80:: link-local
        address; the routes of the device's addresses come and go with it."""
        dev.set_up(up)
        if up and dev.loopback and not dev.ipv4:
            dev.ipv4.append((LOOPBACK_V4, 8))
            dev.ipv6.append((LOOPBACK_V6, 128, IFA_HOST, IFA_F_PERMANENT))
        if up and dev.type == ARPHRD_ETHER and not any(a[2] == IFA_LINK for a in dev.ipv6):
            dev.ipv6.insert(0, (eui64_link_local(dev.mac), 64, IFA_LINK, IFA_F_PERMANENT))
        if not up:
            self.routes = [r for r in self.routes if r.dev is not dev]
            self.neighbours = [n for n in self.neighbours if n.dev is not dev]
        else:
            for addr, plen in dev.ipv4:
                self._connected_route(dev, addr, plen)

    def add_address(self, dev: NetDevice, version: int, addr: int, plen: int) -> None:
        if version == 4:
            dev.ipv4.append((addr, plen))
            if dev.up:
                self._connected_route(dev, addr, plen)
        else:
            dev.ipv6.append((addr, plen, IFA_GLOBAL, IFA_F_PERMANENT | IFA_F_NODAD))

    def _connected_route(self, dev: NetDevice, addr: int, plen: int) -> None:
        if dev.loopback or plen == 32:
            return  # the local table's, which /proc/net/route does not show
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if not any(r.dev is dev and r.dst == addr & mask and r.plen == plen for r in self.routes):
            self.routes.append(Route(dev, addr & mask, plen))

    def add_route(self, route: Route) -> None:
        self.routes.append(route)

    def is_local(self, family: int, addr: int) -> bool:
        """An address of this namespace's (up) devices: traffic to it goes over lo."""
        if family == 4:
            if addr >> 24 == 127:
                return self.lo.up
            return any(d.up and a == addr for d in self.devices.values() for a, _ in d.ipv4)
        if addr & ~0xFFFFFFFF == V4MAPPED:
            return self.is_local(4, addr & 0xFFFFFFFF)
        return any(d.up and a[0] == addr for d in self.devices.values() for a in d.ipv6)

    def route(self, family: int, addr: int) -> tuple[NetDevice, int] | None:
        """fib_lookup(): the device and next hop (0: on-link) for `addr`; None: ENETUNREACH."""
        if self.is_local(family, addr):
            return self.lo, 0
        if family == 6:
            if addr & ~0xFFFFFFFF == V4MAPPED:
                return self.route(4, addr & 0xFFFFFFFF)
            # IPv6: the first up non-loopback device with a global address
            for d in self.devices.values():
                if d.up and not d.loopback and any(a[2] == IFA_GLOBAL for a in d.ipv6):
                    return d, 0
            return None
        best = None
        for r in self.routes:
            if r.dev.up and addr & r.mask == r.dst and (best is None or r.plen > best.plen):
                best = r
        return (best.dev, best.gw) if best is not None else None

    def source_address(self, family: int, dev: NetDevice, dst: int) -> int:
        """inet_select_addr(): the first address of the outgoing device."""
        if family == 4:
            if dev.loopback:
                return dst if self.is_local(4, dst) else LOOPBACK_V4
            return dev.ipv4[0][0] if dev.ipv4 else 0
        if dev.loopback:
            return dst
        glob = [a[0] for a in dev.ipv6 if a[2] == IFA_GLOBAL]
        return glob[0] if glob else 0

    def neigh_event(self, dev: NetDevice, ip: int) -> None:
        """neigh_resolve_output(): the first frame to a next hop resolves it (ARP)."""
        if dev.loopback or any(n.ip == ip and n.dev is dev for n in self.neighbours):
            return
        mac = "52:54:00:" + ":".join(f"{b:02x}" for b in ip.to_bytes(4, "big")[1:])
        self.neighbours.append(Neighbour(ip, mac, dev))

    # -- sockets -------------------------------------------------------------------

    def curr_estab(self) -> int:
        return sum(1 for sk in self.tcp_ehash.values() if sk.state in (TCP_ESTABLISHED, TCP_CLOSE_WAIT))


class NetState:
    """The machine's network namespaces (keyed by their nsproxy Namespace)
    and what is global to the stack (socket ids, tcp_sockets_allocated)."""

    def __init__(self, nr_cpus: int) -> None:
        self.nr_cpus = nr_cpus
        self.nets: dict[object, Net] = {}
        self.next_sock_id = 0
        # every full sock (not TIME_WAIT), every namespace: sock_inuse, tcp_sockets_allocated
        self.socks: dict[int, Sock] = {}
        self.timers: list[tuple[int, int, Sock]] = []  # (expiry, id, sock): TIME_WAIT and orphans
        self.flows: dict[int, object] = {}  # sock id -> its traffic (procsim/net/flow.py)

    def net(self, ns: "Namespace") -> Net:
        """The namespace's state (made at first use, as copy_net_ns makes it)."""
        n = self.nets.get(ns)
        if n is None:
            n = self.nets[ns] = Net(ns, self.nr_cpus)
        return n

    def register(self, sk: Sock) -> None:
        self.socks[sk.id] = sk

    def unregister(self, sk: Sock) -> None:
        self.socks.pop(sk.id, None)

    def arm(self, sk: Sock, when: int) -> None:
        """The socket's timer: at `when` it leaves its tables (reap)."""
        sk.expires = when
        heapq.heappush(self.timers, (when, sk.id, sk))

    def reap(self, now: int) -> None:
        """Run the timers that are due: their sockets go (a TIME_WAIT one
        counts in TcpExt TW as tw_timer_handler counts it)."""
        while self.timers and self.timers[0][0] <= now:
            when, _, sk = heapq.heappop(self.timers)
            if sk.expires != when:
                continue
            net: Net = sk.net
            if net.tcp_ehash.pop(sk.id, None) is not None and sk.state == TCP_TIME_WAIT:
                net.mib["TcpExt"]["TW"] += 1
            self.socks.pop(sk.id, None)
            self.flows.pop(sk.id, None)
            if sk.peer is not None:
                sk.peer.peer = None
                sk.peer = None

    def new_id(self) -> int:
        self.next_sock_id += 1
        return self.next_sock_id
