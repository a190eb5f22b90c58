"""The network subsystem: devices, sockets (TCP, UDP, UNIX), routes,
neighbours and the SNMP MIBs, per network namespace (netns.py); the
socket calls (syscalls.py) and what packets count (traffic.py); traffic
at byte rates as the clock moves (flow.py)."""

from __future__ import annotations

from procsim.net.netdevice import NetDevice, parse_cidr
from procsim.net.netns import Net, NetState, Route

__all__ = ["Net", "NetDevice", "NetState", "Route", "boot"]

# the reference machine's NIC: a virtio-net on QEMU's user network
DEFAULT_ETH = {"name": "eth0", "mac": "52:54:00:12:34:56", "mtu": 1500, "ipv4": ["10.0.2.15/24"],
               "ipv6": ["fec0::5054:ff:fe12:3456/64"], "gateway": "10.0.2.2"}


def boot(nr_cpus: int, init_ns: object) -> NetState:
    """The initial namespace as the boot leaves it: lo and eth0 up with
    their addresses, the connected and default routes."""
    state = NetState(nr_cpus)
    net = state.net(init_ns)
    net.set_up(net.lo, True)
    add_nic(net, **DEFAULT_ETH)
    return state


def add_nic(net: Net, name: str, mac: str, mtu: int = 1500, ipv4: list[str] = (), ipv6: list[str] = (),
            gateway: str | None = None, up: bool = True, speed: int = -1) -> NetDevice:
    """An Ethernet device with its addresses (and a default route via `gateway`)."""
    import ipaddress
    dev = net.add_device(NetDevice(name, 0, mac=mac, mtu=mtu, speed=speed))
    for text in (*ipv4, *ipv6):
        version, addr, plen = parse_cidr(text)
        net.add_address(dev, version, addr, plen)
    if up:
        net.set_up(dev, True)
    if gateway:
        net.add_route(Route(dev, 0, 0, int(ipaddress.IPv4Address(gateway))))
        net.routes.sort(key=lambda r: (r.dst, -r.plen))
    return dev
