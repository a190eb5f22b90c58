"""The rest of /proc/PID read by real tools through a mount, compared with
the model: htop (in tmux, its default columns plus DISK READ, EXE and
COMM), pidstat -d -r -u -w, ps's wchan and cgroup columns, pgrep -f on a
rewritten title, psutil with warnings as errors, and comm writes as a
process outside the thread group makes them (EINVAL)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import psutil
import pytest

from fusehelpers import IO_SCENARIO, model, psutil_procfs, read, user_name

pytestmark = pytest.mark.fuse

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def run(m, *argv: str, env: dict | None = None, timeout: float = 60) -> str:
    r = m.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env or ENV)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r.stdout


def _db(m) -> int:
    return next(p["pid"] for p in m.ctl.ps() if p["cmdline"][:1] == ["/usr/bin/postgres"])


HTOPRC = """htop_version=3.2.2
config_reader_min_version=3
fields=0 48 17 18 38 39 40 2 46 47 49 1
hide_kernel_threads=0
hide_userland_threads=0
show_program_path=1
screen_tabs=0
delay=10
header_layout=two_50_50
column_meters_0=AllCPUs Memory Swap
column_meter_modes_0=1 1 1
column_meters_1=Tasks LoadAverage Uptime
column_meter_modes_1=2 2 2
screen:Main=PID USER PRIORITY NICE M_VIRT M_RESIDENT M_SHARE STATE PERCENT_CPU PERCENT_MEM TIME IO_READ_RATE EXE COMM Command
.sort_key=PID
.tree_view=0
.sort_direction=1
"""


@pytest.mark.skipif(not (shutil.which("htop") and shutil.which("tmux")), reason="needs htop and tmux")
def test_htop_default_columns_io_read_rate_exe_and_comm(procsim_mount, tmp_path):
    """htop in tmux under the namespace runner, its default columns plus
    IO_READ_RATE (DISK READ), EXE and COMM: the db's row shows its pid,
    user, priority, nice, state, exe and comm links' names, command line,
    and a read rate of about its workload's 512 KiB/s."""
    m = procsim_mount(IO_SCENARIO, clock="wall")
    pid = _db(m)
    (tmp_path / "htop").mkdir()
    (tmp_path / "htop" / "htoprc").write_text(HTOPRC)
    sock = f"procsim-{os.getpid()}"
    env = {**ENV, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "TERM": "xterm"}
    # the tmux server stays in the runner's mount namespace, and htop with it
    run(m, "tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-x", "250", "-y", "20",
        f"htop -d 10 -p {pid}", env=env)
    try:
        row = head = ""
        rates: list[str] = []
        for _ in range(40):  # the rate needs two samples (a second apart)
            time.sleep(0.5)
            screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p"], capture_output=True,
                                    text=True, timeout=30).stdout.splitlines()
            # (the sort column's arrow takes the space after its title)
            screen = [l.replace("\u25bd", " ").replace("\u25b3", " ") for l in screen]
            head = next((l for l in screen if l.split()[:2] == ["PID", "USER"]), "")
            row = next((l for l in screen if l.split()[:1] == [str(pid)]), "")
            rate = re.search(r" ([0-9.]+) K/s ", row)
            if rate:
                rates.append(rate[1])
                # one refresh's rate is htop's own interval over the model's
                # bytes: on a loaded machine htop's timer slips, so a refresh
                # may be off; some refresh in a few must show the workload's rate
                if float(rate[1]) == pytest.approx(512, rel=0.15) or len(rates) == 4:
                    break
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=30)
    assert head.split() == ["PID", "USER", "PRI", "NI", "VIRT", "RES", "SHR", "S", "CPU%", "MEM%", "TIME+",
                            "DISK", "READ", "EXE", "COMM", "Command"], head
    f = row.split()
    assert f[0] == str(pid) and user_name(999).startswith(f[1].rstrip("+")) and f[2:4] == ["20", "0"], row
    assert f[7] == m.ctl.task(pid=pid)["state"], row
    rate, unit = float(f[11]), f[12]
    assert unit == "K/s" and rate == pytest.approx(512, rel=0.15), (row, rates)
    assert f[13:] == ["postgres", "postgres", "/usr/bin/postgres", "-D", "/srv/db"], row
    assert os.readlink(f"{m.proc}/{pid}/exe") == "/usr/bin/postgres"


@pytest.mark.skipif(shutil.which("pidstat") is None, reason="needs pidstat (sysstat)")
def test_pidstat_d_r_u_w(procsim_mount):
    """pidstat -d -r -u -w 1 2 over a wall-clock machine: each report's
    Average row for the db agrees with the model (the workload's I/O
    rates; VSZ and RSS; no CPU time and no switches: it never runs)."""
    m = procsim_mount(IO_SCENARIO, clock="wall")
    pid = _db(m)
    out = run(m, "pidstat", "-d", "-r", "-u", "-w", "-p", str(pid), "1", "2",
              env={**ENV, "LC_ALL": "C", "S_TIME_FORMAT": "ISO"})
    reports: dict[str, dict[str, str]] = {}
    head: list[str] = []
    for line in out.splitlines():
        f = line.split()
        if f[:1] == ["Average:"]:
            if "PID" in f:
                head = f
            elif str(pid) in f:
                reports[head[head.index("PID") + 1]] = dict(zip(head, f))
    assert set(reports) == {"%usr", "minflt/s", "kB_rd/s", "cswch/s"}, out
    t = m.ctl.task(pid=pid)
    cpu, mem, io, sw = reports["%usr"], reports["minflt/s"], reports["kB_rd/s"], reports["cswch/s"]
    assert float(cpu["%CPU"]) == 0 and cpu["Command"] == "postgres"
    rss = next(p["rss_pages"] for p in m.ctl.ps() if p["pid"] == pid)
    assert (int(mem["VSZ"]), int(mem["RSS"])) == (t["total_vm"] * 4, rss * 4)
    assert float(mem["majflt/s"]) == 0
    assert float(io["kB_rd/s"]) == pytest.approx(512, rel=0.1), out
    assert float(io["kB_wr/s"]) == pytest.approx(128, rel=0.1), out
    assert float(sw["cswch/s"]) == float(sw["nvcswch/s"]) == 0


def test_ps_pid_wchan_cgroup(machine):
    """ps -o pid,wchan,cgroup: each row's wchan is the task's wchan file
    ("-" for 0 and running tasks), its cgroup the model's membership."""
    out = run(machine, "ps", "-eo", "pid,wchan:40,cgroup:64").splitlines()
    assert out[0].split() == ["PID", "WCHAN", "CGROUP"]
    where = {pid: path for path, pids in machine.ctl.cgroups().items() for pid in pids}
    ps = model(machine)
    seen = 0
    for line in out[1:]:
        pid, wchan, cgroup = line.split()
        if int(pid) not in ps:
            continue  # ps itself
        w = read(f"{machine.proc}/{pid}/wchan")
        assert wchan == ("-" if w == "0" else w), line
        path = where.get(int(pid), "/")
        assert cgroup == (f"0::{path}" if path != "/" else "-"), line
        seen += 1
    assert seen == len(ps)


def test_pgrep_f_finds_rewritten_titles(machine):
    """The nginx workers rewrote their argv area ("nginx: worker process",
    NUL-padded to the master's argv length): pgrep -f matches the title."""
    workers = sorted(pid for pid, p in model(machine).items() if p["cmdline"] == ["nginx: worker process"])
    assert len(workers) == 4
    out = run(machine, "pgrep", "-f", "^nginx: worker process$")
    assert [int(x) for x in out.split()] == workers
    raw = Path(f"{machine.proc}/{workers[0]}/cmdline").read_bytes()
    assert raw.startswith(b"nginx: worker process\0") and raw.strip(b"\0") == b"nginx: worker process"
    assert len(raw) == model(machine)[workers[0]]["arg_len"]


def test_psutil_process_api_without_warnings(machine):
    """psutil over the mount with warnings as errors: environ, ctx
    switches, threads, cpu_num, children, uids and gids agree with the
    model for every process."""
    ps = model(machine)
    with psutil_procfs(machine), warnings.catch_warnings():
        warnings.simplefilter("error")
        for pid, p in ps.items():
            if p["zombie"]:
                continue
            proc = psutil.Process(pid)
            ts = [machine.ctl.task(pid=tid) for tid in p["threads"]]
            raw = Path(f"{machine.proc}/{pid}/environ").read_bytes()
            env = proc.environ()
            assert env == dict(kv.split("=", 1) for kv in raw.decode().split("\0") if "=" in kv), pid
            cs = proc.num_ctx_switches()
            assert (cs.voluntary, cs.involuntary) == (sum(t["nvcsw"] for t in ts), sum(t["nivcsw"] for t in ts))
            assert sorted(th.id for th in proc.threads()) == sorted(p["threads"])
            assert proc.cpu_num() == ts[0]["cpu"]
            assert sorted(c.pid for c in proc.children()) == sorted(q for q, c in ps.items() if c["ppid"] == pid)
            assert proc.uids().effective == p["uid"]
            assert proc.gids().real >= 0
        java = next(pid for pid, p in ps.items() if p["comm"] == "java")
        assert psutil.Process(java).environ() == {"HOME": "/opt/shop", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin",
                                                  "JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64"}
        # a rewritten title clobbered the environment with NULs (nginx): nothing left
        worker = next(pid for pid, p in ps.items() if p["cmdline"] == ["nginx: worker process"])
        assert psutil.Process(worker).environ() == {}


def test_comm_write_from_outside_the_thread_group_is_einval(machine):
    """A host process (outside every simulated thread group) writing a
    process's comm: EINVAL, as comm_write() answers another group; the
    comm is unchanged."""
    before = read(f"{machine.proc}/1/comm")
    fd = os.open(f"{machine.proc}/1/comm", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"renamed")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert read(f"{machine.proc}/1/comm") == before == "systemd\n"
