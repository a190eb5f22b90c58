"""What a packet leaving or arriving counts, where Linux counts it: the
device's rtnl_link_stats64 (dev_hard_start_xmit, netif_receive_skb), the
IP, TCP, UDP and ICMP MIBs (ip_output, tcp_transmit_skb, tcp_v4_rcv,
udp_sendmsg, icmp_send), softnet_data.processed of the receiving CPU,
and the ARP entry of the next hop.

Segments are MSS-sized (the device MTU less the IP and TCP headers with
timestamps); the receiver acknowledges every second segment (delayed
ACKs), so a transfer of n bytes is ceil(n / mss) data segments and half
as many pure ACKs the other way."""

from __future__ import annotations

from procsim.net.netdevice import NetDevice
from procsim.net.netns import Net

IP4_HDR, IP6_HDR, TCP_HDR, UDP_HDR = 20, 40, 32, 8  # TCP with the timestamp option


def ip_hdr(v6: bool) -> int:
    return IP6_HDR if v6 else IP4_HDR


def mss(dev: NetDevice, v6: bool) -> int:
    return max(dev.mtu - ip_hdr(v6) - TCP_HDR, 64)


def _ip_out(net: Net, v6: bool, packets: int, nbytes: int) -> None:
    if v6:
        m = net.ipv6
        m["Ip6OutRequests"] += packets
        m["Ip6OutOctets"] += nbytes
        m["Ip6OutTransmits"] += packets
        return
    ip, ext = net.mib["Ip"], net.mib["IpExt"]
    ip["OutRequests"] += packets
    ip["OutTransmits"] += packets
    ext["OutOctets"] += nbytes


def _ip_in(net: Net, v6: bool, packets: int, nbytes: int) -> None:
    if v6:
        m = net.ipv6
        m["Ip6InReceives"] += packets
        m["Ip6InDelivers"] += packets
        m["Ip6InOctets"] += nbytes
        m["Ip6InNoECTPkts"] += packets
        return
    ip, ext = net.mib["Ip"], net.mib["IpExt"]
    ip["InReceives"] += packets
    ip["InDelivers"] += packets
    ext["InOctets"] += nbytes
    ext["InNoECTPkts"] += packets


def packets_out(net: Net, dev: NetDevice, v6: bool, packets: int, ip_bytes: int, cpu: int = 0,
                nexthop: int = 0) -> None:
    """IP packets of `ip_bytes` in all leaving through `dev`; over lo they
    come straight back in (and are processed on the sending CPU's backlog)."""
    if packets <= 0:
        return
    _ip_out(net, v6, packets, ip_bytes)
    dev.count("tx", packets, ip_bytes)
    if dev.loopback:
        dev.count("rx", packets, ip_bytes)
        _ip_in(net, v6, packets, ip_bytes)
        net.softnet[cpu % len(net.softnet)] += packets
    elif nexthop and not v6:
        net.neigh_event(dev, nexthop)


def packets_in(net: Net, dev: NetDevice, v6: bool, packets: int, ip_bytes: int, multicast: int = 0) -> None:
    """IP packets arriving from the wire on `dev` (NAPI on CPU 0, the NIC's IRQ)."""
    if packets <= 0:
        return
    dev.count("rx", packets, ip_bytes, multicast)
    _ip_in(net, v6, packets, ip_bytes)
    net.softnet[0] += packets


def tcp_segments(net: Net, dev: NetDevice, v6: bool, out: int, inn: int, out_bytes: int = 0, in_bytes: int = 0,
                 cpu: int = 0, nexthop: int = 0) -> None:
    """`out` segments sent (payload `out_bytes`) and `inn` received from a
    remote host; over lo each sent segment is also a received one."""
    hdr = ip_hdr(v6) + TCP_HDR
    tcp = net.mib["Tcp"]
    if dev.loopback:
        tcp["OutSegs"] += out
        tcp["InSegs"] += out
        packets_out(net, dev, v6, out, out_bytes + out * hdr, cpu)
        return
    tcp["OutSegs"] += out
    tcp["InSegs"] += inn
    packets_out(net, dev, v6, out, out_bytes + out * hdr, cpu, nexthop)
    packets_in(net, dev, v6, inn, in_bytes + inn * hdr)


def data_segments(dev: NetDevice, v6: bool, nbytes: int) -> int:
    m = mss(dev, v6)
    return -(-nbytes // m)


def udp_datagram_packets(dev: NetDevice, v6: bool, nbytes: int) -> int:
    """IP fragments of one datagram (ip_fragment past the MTU)."""
    per = dev.mtu - ip_hdr(v6)
    return max(1, -(-(nbytes + UDP_HDR) // per))


def icmp_port_unreachable(net: Net, v6: bool) -> None:
    """icmp_send(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH) over lo: sent and received."""
    if v6:
        m = net.ipv6
        for key in ("Icmp6OutMsgs", "Icmp6OutDestUnreachs", "Icmp6InMsgs", "Icmp6InDestUnreachs"):
            m[key] += 1
        for t in (1, 0x100 | 1):
            net.icmp6msg[t] = net.icmp6msg.get(t, 0) + 1
        packets_out(net, net.lo, True, 1, IP6_HDR + 8 + 48)
        return
    icmp = net.mib["Icmp"]
    for key in ("OutMsgs", "OutDestUnreachs", "InMsgs", "InDestUnreachs"):
        icmp[key] += 1
    for t in (3, 0x100 | 3):
        net.icmpmsg[t] = net.icmpmsg.get(t, 0) + 1
    packets_out(net, net.lo, False, 1, IP4_HDR + 8 + 28)
