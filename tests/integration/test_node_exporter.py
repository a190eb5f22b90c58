"""prometheus-node-exporter, unmodified, over the mount: every collector of
its default set (less those that need systemd, hardware or netlink, and the
pending ones of other branches: node_exporter.py lists them with reasons)
plus the ones reading files served here succeeds, and its key series equal
the model's own files and control answers."""

from __future__ import annotations

import pytest

import node_exporter as ne
from fusehelpers import read

pytestmark = [pytest.mark.fuse, pytest.mark.skipif(not ne.available(), reason=f"needs {ne.BINARY} (apt)")]


@pytest.fixture(scope="module")
def scraped(machine):
    with ne.Exporter(machine.proc, machine.sys) as e:
        text = e.scrape()
    return ne.parse(text)


def _enabled(metrics: dict) -> dict[str, float]:
    return {dict(labels)["collector"]: v for (name, labels), v in metrics.items()
            if name == "node_scrape_collector_success"}


def test_every_enabled_collector_succeeds(scraped):
    ok = _enabled(scraped)
    assert not set(ok) & (set(ne.DISABLED) | set(ne.PENDING))
    assert set(ne.EXTRA) <= set(ok)
    for c in ("buddyinfo", "cgroups", "cpu", "cpufreq", "diskstats", "entropy", "filefd", "filesystem", "interrupts",
              "loadavg", "meminfo", "meminfo_numa", "netdev", "pressure", "processes", "schedstat", "slabinfo", "stat", "vmstat",
              "zoneinfo"):
        assert c in ok
    assert {c: v for c, v in ok.items() if v != 1} == {}


def _kv(text: str) -> dict[str, list[str]]:
    return {l.split()[0].rstrip(":"): l.split()[1:] for l in text.splitlines() if l.strip()}


def test_key_series_equal_the_model(machine, scraped):
    m = scraped
    meminfo = {k: int(v[0]) for k, v in _kv(read(f"{machine.proc}/meminfo")).items()}
    for key in ("MemTotal", "MemFree", "MemAvailable", "Cached", "Slab", "Committed_AS", "CommitLimit"):
        assert ne.series(m, f"node_memory_{key}_bytes") == meminfo[key] * 1024, key
    load = read(f"{machine.proc}/loadavg").split()
    assert ne.series(m, "node_load1") == float(load[0]) and ne.series(m, "node_load15") == float(load[2])
    stat = _kv(read(f"{machine.proc}/stat"))
    assert ne.series(m, "node_procs_running") == int(stat["procs_running"][0])
    assert ne.series(m, "node_context_switches_total") == int(stat["ctxt"][0])
    assert ne.series(m, "node_forks_total") == int(stat["processes"][0])
    ncpu = len([l for l in read(f"{machine.proc}/cpuinfo").splitlines() if l.startswith("processor")])
    idle = {dict(l)["cpu"] for (n, l) in m if n == "node_cpu_seconds_total"}
    assert idle == {str(i) for i in range(ncpu)}
    nr, _, mx = read(f"{machine.proc}/sys/fs/file-nr").split()
    assert ne.series(m, "node_filefd_allocated") == int(nr) and ne.series(m, "node_filefd_maximum") == int(mx)
    assert ne.series(m, "node_entropy_available_bits") == 256 and ne.series(m, "node_entropy_pool_size_bits") == 256


def test_buddyinfo_and_zoneinfo_series(machine, scraped):
    m = scraped
    free = 0
    for line in read(f"{machine.proc}/buddyinfo").splitlines():
        f = line.split()
        zone, counts = f[3], [int(x) for x in f[4:]]
        for order, c in enumerate(counts):
            assert ne.series(m, "node_buddyinfo_blocks", node="0", size=str(order), zone=zone) == c
        free += sum(c << o for o, c in enumerate(counts))
    meminfo = {k: int(v[0]) for k, v in _kv(read(f"{machine.proc}/meminfo")).items()}
    assert free * 4 == meminfo["MemFree"]  # buddyinfo sums = MemFree
    zoned = sum(v for (n, l), v in m.items() if n == "node_zoneinfo_nr_free_pages")
    assert zoned == free


def test_schedstat_and_softirqs(machine, scraped):
    m = scraped
    for line in read(f"{machine.proc}/schedstat").splitlines():
        if line.startswith("cpu"):
            f = line.split()
            cpu = f[0][3:]
            assert ne.series(m, "node_schedstat_running_seconds_total", cpu=cpu) == int(f[7]) / 1e9
            assert ne.series(m, "node_schedstat_timeslices_total", cpu=cpu) == int(f[9])
    slab = {l.split()[0]: l.split() for l in read(f"{machine.proc}/slabinfo").splitlines()[2:]}
    for name, f in slab.items():
        assert ne.series(m, "node_slabinfo_objects", slab=name) == int(f[2])


def test_pressure_series(machine, scraped):
    """/proc/pressure (cgroup v2 and PSI, on main): the totals node_exporter reports."""
    def total(res: str, kind: str) -> int:
        line = next(l for l in read(f"{machine.proc}/pressure/{res}").splitlines() if l.startswith(kind))
        return int(line.rsplit("total=", 1)[1])
    assert ne.series(scraped, "node_pressure_cpu_waiting_seconds_total") == total("cpu", "some") / 1e6
    assert ne.series(scraped, "node_pressure_memory_waiting_seconds_total") == total("memory", "some") / 1e6
    assert ne.series(scraped, "node_pressure_memory_stalled_seconds_total") == total("memory", "full") / 1e6
    assert ne.series(scraped, "node_pressure_io_stalled_seconds_total") == total("io", "full") / 1e6



def test_diskstats_series(machine, scraped):
    """/proc/diskstats (the block model, on main): reads and writes completed per disk."""
    for line in read(f"{machine.proc}/diskstats").splitlines():
        f = line.split()
        dev = f[2]
        key = ("node_disk_reads_completed_total", frozenset({("device", dev)}))
        if key in scraped:  # node_exporter leaves out partitions and ram/loop devices
            assert scraped[key] == int(f[3])
            assert ne.series(scraped, "node_disk_writes_completed_total", device=dev) == int(f[7])
    assert any(n == "node_disk_reads_completed_total" for n, _ in scraped)


def test_network_series(machine, scraped):
    """The network model (on main): sockstat and the snmp counters node_exporter reports."""
    sock = {}
    for line in read(f"{machine.proc}/net/sockstat").splitlines():
        proto, _, rest = line.partition(":")
        f = rest.split()
        sock[proto] = dict(zip(f[::2], map(int, f[1::2])))
    assert ne.series(scraped, "node_sockstat_sockets_used") == sock["sockets"]["used"]
    assert ne.series(scraped, "node_sockstat_TCP_inuse") == sock["TCP"]["inuse"]
    snmp = read(f"{machine.proc}/net/snmp").splitlines()
    tcp = [l.split()[1:] for l in snmp if l.startswith("Tcp:")]
    fields = dict(zip(tcp[0], tcp[1]))
    assert ne.series(scraped, "node_netstat_Tcp_CurrEstab") == int(fields["CurrEstab"])


def test_netdev_series_equal_the_model(procsim_mount):
    """netdev (told to read /proc/net/dev, not rtnetlink) over interfaces
    with traffic both ways: every device but lo (its default exclude) with
    the model's counters."""
    m = procsim_mount()
    m.ctl.call("netdev_rx", name="eth0", packets=1234, bytes=5678900, multicast=3, errors=2, dropped=1)
    pid = m.ctl.call("spawn", argv=["/usr/sbin/client"])
    u = m.ctl.call("socket", pid=pid, family="inet", type="dgram")
    for _ in range(5):
        m.ctl.call("send", pid=pid, fd=u, length=1000, to="192.0.2.7:53")  # out of eth0, the default route
    devs = {d["name"]: d for d in m.ctl.netdevs()}
    assert devs["eth0"]["tx_packets"] >= 5 and devs["eth0"]["rx_packets"] >= 1234
    with ne.Exporter(m.proc, m.sys) as e:
        s = ne.parse(e.scrape())
    assert ne.series(s, "node_scrape_collector_success", collector="netdev") == 1
    shown = {dict(labels)["device"] for (name, labels) in s if name == "node_network_receive_bytes_total"}
    assert shown == set(devs) - {"lo"}
    for name in shown:
        d = devs[name]
        for metric, key in (("receive_bytes", "rx_bytes"), ("receive_packets", "rx_packets"),
                            ("receive_multicast", "multicast"), ("receive_errs", "rx_errors"),
                            ("receive_drop", "rx_dropped"), ("transmit_bytes", "tx_bytes"),
                            ("transmit_packets", "tx_packets"), ("transmit_errs", "tx_errors")):
            assert ne.series(s, f"node_network_{metric}_total", device=name) == d[key], (name, metric)


def test_conntrack_series_equal_the_model(procsim_mount):
    """The conntrack collector over a machine whose connections the model
    tracks: entries, the limit and the per-CPU stat sums are the model's."""
    m = procsim_mount()
    pid = m.ctl.call("spawn", argv=["/usr/sbin/server"])
    srv = m.ctl.call("socket", pid=pid, family="inet", type="stream")
    m.ctl.call("bind", pid=pid, fd=srv, addr="127.0.0.1:5000")
    m.ctl.call("listen", pid=pid, fd=srv, accept=True)
    for _ in range(3):
        m.ctl.call("connect", pid=pid, fd=m.ctl.call("socket", pid=pid, family="inet", type="stream"),
                   addr="127.0.0.1:5000")
    with open(f"{m.proc}/sys/net/netfilter/nf_conntrack_max", "w") as f:  # 3 entries so far: room for one
        f.write("4")
    u = m.ctl.call("socket", pid=pid, family="inet", type="dgram")
    m.ctl.call("send", pid=pid, fd=u, length=10, to="127.0.0.1:9")  # the 4th entry
    with pytest.raises(Exception):  # the 5th: the table is full, the datagram dropped (EPERM)
        m.ctl.call("send", pid=pid, fd=u, length=10, to="127.0.0.1:10")
    model = m.ctl.call("conntrack_list")
    assert len(model) == 4
    with ne.Exporter(m.proc, m.sys) as e:
        s = ne.parse(e.scrape())
    assert ne.series(s, "node_scrape_collector_success", collector="conntrack") == 1
    assert ne.series(s, "node_nf_conntrack_entries") == 4 == int(read(f"{m.proc}/sys/net/netfilter/nf_conntrack_count"))
    assert ne.series(s, "node_nf_conntrack_entries_limit") == 4
    stat = read(f"{m.proc}/net/stat/nf_conntrack").splitlines()
    head = stat[0].split()
    sums = {h: sum(int(l.split()[i], 16) for l in stat[1:]) for i, h in enumerate(head)}
    assert sums["drop"] == 1
    assert ne.series(s, "node_nf_conntrack_stat_drop") == 1
    for h, metric in (("found", "found"), ("invalid", "invalid"), ("insert_failed", "insert_failed"),
                      ("early_drop", "early_drop"), ("search_restart", "search_restart")):
        assert ne.series(s, f"node_nf_conntrack_stat_{metric}") == sums[h], h
