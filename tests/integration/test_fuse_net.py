"""The network through a real mount: netstat (net-tools) -tanup, -s and -i,
psutil's net_io_counters and net_connections reading the simulated
machine's /proc/net and /proc/PID/fd, compared with the model (the control
client's `sockets` and `netdevs`).

and lsof -i, which takes a socket's inode from stat() of the fd link (the
host kernel looks its `socket:[N]` up in fd/: procsim/procfs/fd.py) and
finds it in /proc/net/tcp*, udp*."""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import psutil
import pytest

from fusehelpers import psutil_procfs
from mountd.pytest_plugin import mount_machine

pytestmark = pytest.mark.fuse

SCENARIO = """
description = "a database, an app and a resolver"
[[netdev]]
name = "eth0"
mac = "52:54:00:aa:bb:01"
ipv4 = ["192.168.10.5/24"]
gateway = "192.168.10.1"

[[process]]
name = "postgres"
argv = ["/usr/lib/postgresql/16/bin/postgres"]
uid = 105
gid = 105
files = [{ kind = "socket", listen = "*:5432", backlog = 200, accept = true },
         { kind = "socket", family = "unix", listen = "/run/postgresql/.s.PGSQL.5432" }]

[[process]]
name = "app"
argv = ["/usr/bin/app"]
files = [{ kind = "socket", connect = "127.0.0.1:5432", count = 3, tx_rate = "10K", rx_rate = "100K" },
         { kind = "socket", connect = "93.184.216.34:443", tx_rate = "2K", rx_rate = "50K" },
         { kind = "socket", connect = "198.51.100.9:80", peer = "drop" },
         { kind = "socket", family = "unix", connect = "/run/postgresql/.s.PGSQL.5432" }]

[[process]]
name = "resolved"
argv = ["/usr/bin/resolved"]
files = [{ kind = "socket", type = "dgram", bind = "127.0.0.53:53" },
         { kind = "socket", family = "inet6", listen = "[::]:8080" }]
"""

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


@pytest.fixture(scope="module")
def m():
    top = tempfile.mkdtemp(prefix="procsim-net-")
    os.chmod(top, 0o755)
    path = os.path.join(top, "net.toml")
    with open(path, "w") as f:
        f.write(SCENARIO)
    mach = mount_machine(os.path.join(top, "mnt"), path)
    try:
        mach.ctl.call("advance", seconds=5)
        yield mach
    finally:
        mach.umount()
        shutil.rmtree(top, ignore_errors=True)


def run(m, *argv: str) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r.stdout


def pids(m) -> dict[str, int]:
    return {p["comm"]: p["pid"] for p in m.ctl.ps()}


def model_inet(m) -> set[tuple]:
    """(proto, local, remote, state, pid) of every inet socket of the model with an fd."""
    out = set()
    for comm, pid in pids(m).items():
        for s in m.ctl.sockets(pid=pid):
            if s["family"] in ("inet", "inet6") and (s["state"] != "CLOSE" or s["protocol"] == "udp"):
                out.add((s["protocol"] + ("6" if s["family"] == "inet6" else ""), s["local"], s["remote"],
                         s["state"], pid))
    return out


def _norm(addr: str) -> str:
    return addr.replace("[", "").replace("]", "")


def test_netstat_tanup_shows_the_models_sockets(m):
    out = run(m, "netstat", "-tanup")
    got = set()
    for line in out.splitlines()[2:]:
        f = line.split()
        proto = f[0]
        if proto.startswith("udp"):
            state, prog = "CLOSE", f[5]
        else:
            state, prog = f[5], f[6]
        pid = int(prog.split("/")[0]) if prog != "-" else None
        got.add((proto, f[3], f[4], state, pid))
    want = set()
    for proto, local, remote, state, pid in model_inet(m):
        la, ra = _norm(local), _norm(remote)
        la = re.sub(r"^(0\.0\.0\.0|::):", lambda x: x[1] + ":", la)
        ra = "0.0.0.0:*" if ra == "0.0.0.0:0" else ":::*" if ra == ":::0" else ra
        if la.startswith("::"):
            la = ":::" + la.split(":")[-1] if la.startswith(":::") else la
        st = {"LISTEN": "LISTEN", "ESTABLISHED": "ESTABLISHED", "SYN_SENT": "SYN_SENT"}.get(state, state)
        want.add((proto, la, ra, st if proto.startswith("tcp") else "CLOSE", pid))
    # the server's accepted ends belong to postgres; every connection is both in the model and netstat
    assert {w for w in want} <= got, sorted(want - got)
    assert {(g[0], g[3]) for g in got} >= {("tcp", "LISTEN"), ("tcp6", "LISTEN"), ("tcp", "ESTABLISHED"),
                                           ("tcp", "SYN_SENT"), ("udp", "CLOSE")}


def _snmp(m, group: str, path: str = "net/snmp") -> dict[str, int]:
    with open(os.path.join(m.proc, path)) as f:
        lines = [line.split() for line in f if line.startswith(group + ":")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def test_netstat_s_reads_the_models_counters(m):
    out = run(m, "netstat", "-s")
    tcp = _snmp(m, "Tcp")
    assert f"{tcp['ActiveOpens']} active connection openings" in out
    assert f"{tcp['PassiveOpens']} passive connection openings" in out
    assert f"{tcp['InSegs']} segments received" in out
    assert f"{tcp['OutSegs']} segments sent out" in out
    assert f"{tcp['CurrEstab']} connections established" in out
    assert tcp["CurrEstab"] == 3 * 2 + 1


def test_netstat_i_and_psutil_io_counters_are_the_devices(m):
    devs = {d["name"]: d for d in m.ctl.netdevs()}
    assert devs["eth0"]["tx_packets"] > 0 and devs["lo"]["rx_bytes"] > 0
    out = run(m, "netstat", "-i")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    for name in ("lo", "eth0"):
        r = rows[name]
        # Iface MTU RX-OK RX-ERR RX-DRP RX-OVR TX-OK TX-ERR TX-DRP TX-OVR Flg (MTU and flags: SIOCGIF* ioctls,
        # answered by the host's own devices of that name)
        assert (int(r[2]), int(r[3]), int(r[6]), int(r[7])) == (devs[name]["rx_packets"], devs[name]["rx_errors"],
                                                                devs[name]["tx_packets"], devs[name]["tx_errors"])
    with psutil_procfs(m):
        io = psutil.net_io_counters(pernic=True)
    assert set(io) == set(devs)
    for name, c in io.items():
        d = devs[name]
        assert (c.bytes_sent, c.bytes_recv, c.packets_sent, c.packets_recv, c.errin, c.dropin) == \
            (d["tx_bytes"], d["rx_bytes"], d["tx_packets"], d["rx_packets"], d["rx_errors"], d["rx_dropped"])


def test_psutil_net_connections_maps_sockets_to_pids(m):
    with psutil_procfs(m):
        conns = psutil.net_connections(kind="all")
    inet = {(c.laddr.port if c.laddr else None, c.raddr.port if c.raddr else None, c.status, c.pid)
            for c in conns if c.family in (2, 10)}
    p = pids(m)
    assert (5432, None, "LISTEN", p["postgres"]) in inet
    assert (8080, None, "LISTEN", p["resolved"]) in inet
    assert (53, None, "NONE", p["resolved"]) in inet
    assert (None if False else 443) in {r for _, r, _, _ in inet}
    app = {c for c in inet if c[3] == p["app"]}
    assert {c[2] for c in app} == {"ESTABLISHED", "SYN_SENT"}
    unix = [c for c in conns if c.family == 1]
    assert any(c.laddr == "/run/postgresql/.s.PGSQL.5432" and c.pid == p["postgres"] for c in unix)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("prometheus-node-exporter"), reason="needs prometheus-node-exporter")
def test_node_exporter_network_collectors(m):
    """arp, netclass, netdev (from /proc/net/dev, not netlink), netstat,
    sockstat and softnet succeed on the mount and report the model."""
    import subprocess
    import time
    import urllib.request
    port = _free_port()
    p = subprocess.Popen(["prometheus-node-exporter", f"--path.procfs={m.proc}", f"--path.sysfs={m.sys}",
                          f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                          "--collector.arp", "--collector.netclass", "--collector.netdev", "--no-collector.netdev.netlink",
                          "--collector.netstat", "--collector.sockstat", "--collector.softnet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = None
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None
    finally:
        p.terminate()
        p.wait()
    series = {}
    for line in body.splitlines():
        if not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    for c in ("arp", "netclass", "netdev", "netstat", "sockstat", "softnet"):
        assert series[f'node_scrape_collector_success{{collector="{c}"}}'] == 1, c
    devs = {d["name"]: d for d in m.ctl.netdevs()}
    assert series['node_network_receive_bytes_total{device="eth0"}'] == devs["eth0"]["rx_bytes"]
    assert series['node_network_transmit_packets_total{device="eth0"}'] == devs["eth0"]["tx_packets"]
    assert series['node_network_mtu_bytes{device="eth0"}'] == devs["eth0"]["mtu"]
    assert series["node_netstat_Tcp_ActiveOpens"] == _snmp(m, "Tcp")["ActiveOpens"]
    with open(os.path.join(m.proc, "net/sockstat")) as f:
        inuse = int(f.read().splitlines()[1].split()[2])
    assert series["node_sockstat_TCP_inuse"] == inuse
    assert series['node_arp_entries{device="eth0"}'] == 1


def test_lsof_finds_the_models_sockets(m):
    """lsof -i: every inet socket with an fd, by pid, with its protocol and
    addresses; -p: the TYPE of each socket fd."""
    got = set()
    for line in run(m, "lsof", "-i", "-n", "-P", "-w").splitlines()[1:]:
        f = line.split()
        # COMMAND PID USER FD TYPE DEVICE (the inode) SIZE/OFF NODE (the protocol) NAME;
        # SIZE/OFF is fdinfo's pos, 0t0 for a socket, as this host's lsof shows it
        assert f[6] == "0t0", line
        got.add((f[0], int(f[1]), f[4], f[7], " ".join(f[8:])))
    print(sorted(got))
    want = set()
    comms = {pid: comm for comm, pid in pids(m).items()}
    for proto, local, remote, state, pid in model_inet(m):
        name = local if remote.endswith((":0", ":*")) else f"{local}->{remote}"
        name = re.sub(r"^(0\.0\.0\.0|\[::\]):", "*:", name)
        if not proto.startswith("udp"):
            name += f" ({state})"
        want.add((comms[pid][:9], pid, "IPv6" if proto.endswith("6") else "IPv4", proto[:3].upper(), name))
    assert got == want
    types = {}
    for line in run(m, "lsof", "-w", "-p", str(pids(m)["app"])).splitlines()[1:]:
        f = line.split()
        if f[3][:-1].isdigit():
            types[int(f[3][:-1])] = f[4]
    fams = {s["fd"]: s["family"] for s in m.ctl.sockets(pid=pids(m)["app"]) if "fd" in s}
    assert fams and {fd: types[fd] for fd in fams} == {
        fd: {"inet": "IPv4", "inet6": "IPv6", "unix": "unix"}[fam] for fd, fam in fams.items()}


def test_lsof_names_an_unbound_sockets_protocol(m):
    """A socket in no /proc/net table (unbound): lsof asks the fd link's
    system.sockprotoname xattr and prints `protocol: TCP`, as on Linux."""
    pid = pids(m)["app"]
    fd = m.ctl.call("socket", pid=pid, family="inet")
    try:
        rows = [line.split() for line in run(m, "lsof", "-w", "-n", "-P", "-a", "-p", str(pid), "-d", str(fd))
                .splitlines()[1:]]
        assert [(r[3], r[4], " ".join(r[-2:])) for r in rows] == [(f"{fd}u", "sock", "protocol: TCP")]
    finally:
        m.ctl.call("close_fd", pid=pid, fd=fd)
