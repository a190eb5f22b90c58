"""Namespaces, cgroup membership and the identity files of /proc/PID:
the model (unshare, pid numbering, uts, user maps, cgroups, audit) and its
files, against the spec and, where the host is in the same state, the
host's own /proc."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess

import pytest

from hostinfo import requires_host
from procsim import nsproxy as N
from procsim.cgroup import syscalls as cgroup_syscalls
from procsim.commands import CommandError, execute
from procsim.procfs.context import Caller
from procfs_helpers import NOBODY, ROOT, errno_of, read_all


def _spawn(fs, uid=0):
    return fs.kernel.spawn(["/usr/bin/bash"], uid=uid, gid=uid)


def _host_in_init_ns() -> bool:
    try:
        return os.readlink("/proc/self/ns/user") == "user:[4026531837]" and \
            os.readlink("/proc/self/ns/pid") == "pid:[4026531836]"
    except OSError:
        return False


in_init_ns = pytest.mark.skipif(not _host_in_init_ns(), reason="host process not in the initial namespaces")


# -- ns/ ----------------------------------------------------------------------------


def test_ns_links_of_the_initial_namespaces(fs):
    p = _spawn(fs)
    names = fs.readdir(f"/proc/{p}/ns", ROOT)
    assert names == ["net", "uts", "ipc", "pid", "pid_for_children", "user", "mnt", "cgroup", "time",
                     "time_for_children"]
    links = {n: fs.readlink(f"/proc/{p}/ns/{n}", ROOT) for n in names}
    assert links == {"net": "net:[4026531833]", "uts": "uts:[4026531838]", "ipc": "ipc:[4026531839]",
                     "pid": "pid:[4026531836]", "pid_for_children": "pid:[4026531836]",
                     "user": "user:[4026531837]", "mnt": "mnt:[4026531832]", "cgroup": "cgroup:[4026531835]",
                     "time": "time:[4026531834]", "time_for_children": "time:[4026531834]"}
    assert fs.getattr(f"/proc/{p}/ns", ROOT).mode & 0o7777 == 0o511


@requires_host(kernel="6.18")
@in_init_ns
def test_ns_links_match_the_host(fs):
    p = _spawn(fs)
    for n in os.listdir("/proc/self/ns"):
        assert fs.readlink(f"/proc/{p}/ns/{n}", ROOT) == os.readlink(f"/proc/self/ns/{n}")
    assert fs.readdir(f"/proc/{p}/ns", ROOT) == os.listdir("/proc/self/ns")  # ns_entries[] order


def test_ns_link_needs_ptrace_access(fs):
    p = _spawn(fs)  # root's: a nobody reader may look it up but not read it
    assert errno_of(fs.readlink, f"/proc/{p}/ns/net", NOBODY) == errno.EACCES
    mine = _spawn(fs, uid=65534)
    assert fs.readlink(f"/proc/{mine}/ns/net", NOBODY) == "net:[4026531833]"


@requires_host(kernel="6.18")
@in_init_ns
def test_ns_link_targets_are_nsfs_inodes(fs):
    """What stat() reaches through an ns link (through FUSE: the link's
    text looked up in ns/): the host's nsfs inode, for mode and number."""
    p = _spawn(fs)
    for n in os.listdir("/proc/self/ns"):
        target = fs.readlink(f"/proc/{p}/ns/{n}", ROOT)
        a = fs.getattr(f"/proc/{p}/ns/{target}", ROOT)
        st = os.stat(f"/proc/self/ns/{n}")
        assert (a.ino, a.mode, a.uid, a.gid) == (st.st_ino, st.st_mode, 0, 0), n
        assert fs.getattr(f"/proc/{p}/ns/{n}", ROOT).ino != a.ino  # lstat: the link's own
    assert "net:[4026531833]" not in fs.readdir(f"/proc/{p}/ns", ROOT)


def test_ns_link_targets_only_the_tasks_own(fs):
    k = fs.kernel
    p, q = _spawn(fs), _spawn(fs)
    execute(k, "unshare", {"pid": p, "flags": "CLONE_NEWNET"})
    mine = fs.readlink(f"/proc/{p}/ns/net", ROOT)
    assert fs.getattr(f"/proc/{p}/ns/{mine}", ROOT).ino == 0xF0000000
    for bad in ("net:[4026531833]", "uts:[4026531833]", "net:[x]", "net:4026531833", "net:[]"):
        assert errno_of(fs.getattr, f"/proc/{p}/ns/{bad}", ROOT) == errno.ENOENT, bad
    assert errno_of(fs.getattr, f"/proc/{q}/ns/{mine}", ROOT) == errno.ENOENT
    # ns_get_link's ptrace check, as readlink's
    assert errno_of(fs.getattr, f"/proc/{q}/ns/net:[4026531833]", NOBODY) == errno.EACCES
    h = fs.open(f"/proc/{p}/ns/{mine}", os.O_RDONLY, ROOT)
    assert errno_of(h.read, 4096, 0) == errno.EINVAL  # nsfs: no ->read
    assert h.ioctl(0xB703, bytearray()) == N.CLONE_NEWNET  # NS_GET_NSTYPE
    assert errno_of(h.ioctl, 0xB701, bytearray()) == errno.EPERM  # NS_GET_USERNS: no fd through FUSE
    assert errno_of(h.ioctl, 0xB702, bytearray()) == errno.EINVAL  # NS_GET_PARENT: net does not nest
    assert errno_of(h.ioctl, 0x5401, bytearray()) == errno.ENOTTY


def test_inode_numbers_are_unique_and_stable(fs):
    p = _spawn(fs)
    paths = ["/", "/proc", "/sys", f"/proc/{p}", f"/proc/{p}/status", f"/proc/{p}/task/{p}/status",
             "/proc/meminfo", f"/proc/{p}/ns/net"]
    inos = [fs.getattr(x, ROOT).ino for x in paths]
    assert inos[0] == 1 and len(set(inos)) == len(inos)
    assert all(i > 1 << 32 for i in inos[1:])  # never a namespace's inum
    fs.invalidate()
    assert [fs.getattr(x, ROOT).ino for x in paths] == inos


def test_unshare_gives_new_inode_numbers_in_order(fs):
    k = fs.kernel
    p = _spawn(fs)
    execute(k, "unshare", {"pid": p, "flags": "CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWNET"})
    # create_new_namespaces() order: mnt, uts, ..., net; proc_alloc_inum from 0xF0000000
    assert fs.readlink(f"/proc/{p}/ns/mnt", ROOT) == f"mnt:[{0xF0000000}]"
    assert fs.readlink(f"/proc/{p}/ns/uts", ROOT) == f"uts:[{0xF0000001}]"
    assert fs.readlink(f"/proc/{p}/ns/net", ROOT) == f"net:[{0xF0000002}]"
    assert fs.readlink(f"/proc/{p}/ns/ipc", ROOT) == "ipc:[4026531839]"
    c = k.fork(p)  # fork shares them
    assert fs.readlink(f"/proc/{c}/ns/net", ROOT) == f"net:[{0xF0000002}]"
    assert fs.readlink("/proc/1/ns/net", ROOT) == "net:[4026531833]"


def test_unshare_pid_changes_only_the_children(fs):
    k = fs.kernel
    p = _spawn(fs)
    k.unshare(p, N.CLONE_NEWPID)
    assert fs.readlink(f"/proc/{p}/ns/pid", ROOT) == "pid:[4026531836]"
    # no child reaper yet: pidns_for_children_get() gives nothing
    assert errno_of(fs.readlink, f"/proc/{p}/ns/pid_for_children", ROOT) == errno.ENOENT
    c = k.fork(p)
    new = f"pid:[{0xF0000000}]"
    assert fs.readlink(f"/proc/{p}/ns/pid_for_children", ROOT) == new
    assert fs.readlink(f"/proc/{c}/ns/pid", ROOT) == new
    gc = k.fork(c)
    st = read_all(fs, f"/proc/{gc}/status").decode()
    assert f"NStgid:\t{gc}\t2\n" in st and f"NSpid:\t{gc}\t2\n" in st
    st = read_all(fs, f"/proc/{c}/status").decode()
    assert f"NSpid:\t{c}\t1\n" in st
    # the parent's session and group are outside: 0 in the child namespace (pid_nr_ns)
    sid = k.group(c).sid
    assert f"NSsid:\t{sid}\t0\n" in st
    assert execute(k, "namespaces", {"pid": gc})["nspid"] == [gc, 2]


def test_nested_pid_namespaces_and_threads(fs):
    k = fs.kernel
    a = _spawn(fs)
    k.unshare(a, N.CLONE_NEWPID)
    b = k.fork(a)
    k.unshare(b, N.CLONE_NEWPID)
    c = k.fork(b)
    t = k.clone_thread(c)
    assert f"NSpid:\t{c}\t2\t1\n" in read_all(fs, f"/proc/{c}/status").decode()
    st = read_all(fs, f"/proc/{c}/task/{t}/status").decode()
    assert f"NSpid:\t{t}\t3\t2\n" in st and f"NStgid:\t{c}\t2\t1\n" in st


@requires_host(kernel="6.18", caps=("CAP_SYS_ADMIN",))
def test_nspid_lines_match_a_real_child_pid_namespace(fs):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    r = subprocess.run(["unshare", "--pid", "--fork", "cat", "/proc/self/status"], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"unshare --pid failed: {r.stderr.strip()}")
    host = {l.split(":")[0]: l for l in r.stdout.splitlines() if l.startswith("NS")}
    assert re.fullmatch(r"NSpid:\t\d+\t1", host["NSpid"])
    k = fs.kernel
    p = _spawn(fs)
    k.unshare(p, N.CLONE_NEWPID)
    c = k.fork(p)
    ours = {l.split(":")[0]: l for l in read_all(fs, f"/proc/{c}/status").decode().splitlines()
            if l.startswith("NS")}
    for key in ("NStgid", "NSpid"):
        assert re.sub(r"\d+", "N", ours[key]) == re.sub(r"\d+", "N", host[key])
        assert ours[key].endswith("\t1") and host[key].endswith("\t1")


def test_unshare_errors_change_nothing(fs):
    k = fs.kernel
    p = _spawn(fs)
    user = _spawn(fs, uid=1000)
    before = (k.task(p).nsproxy, k.ns_next_inum)
    for pid, flags, err in ((p, "CLONE_NEWFOO", errno.EINVAL), (p, "0x100", errno.EINVAL),
                            (user, "CLONE_NEWNET", errno.EPERM), (user, "pid|uts", errno.EPERM),
                            (99999, "pid", errno.ESRCH)):
        with pytest.raises(CommandError) as e:
            execute(k, "unshare", {"pid": pid, "flags": flags})
        assert e.value.errno == err, (pid, flags)
    assert (k.task(p).nsproxy, k.ns_next_inum) == before
    assert k.task(user).nsproxy is k.init_nsproxy
    # with a new user namespace the rest is allowed (unshare -Urp): its creator is capable there
    execute(k, "unshare", {"pid": user, "flags": "user|pid"})
    assert fs.readlink(f"/proc/{user}/ns/user", ROOT) == f"user:[{0xF0000000}]"


def test_unprivileged_user_namespace(fs):
    k = fs.kernel
    u = _spawn(fs, uid=1000)
    execute(k, "unshare", {"pid": u, "flags": "CLONE_NEWUSER"})
    assert fs.readlink(f"/proc/{u}/ns/user", ROOT) == f"user:[{0xF0000000}]"
    assert read_all(fs, f"/proc/{u}/uid_map") == b""  # unmapped until written
    assert read_all(fs, f"/proc/{u}/setgroups") == b"allow\n"
    k.set_id_map(u, "uid_map", ((0, 1000, 1),))
    assert read_all(fs, f"/proc/{u}/uid_map") == b"         0       1000          1\n"
    with pytest.raises(OSError) as e:
        k.set_id_map(u, "uid_map", ((0, 1000, 1),))  # written once
    assert e.value.errno == errno.EPERM
    # gid_map by an unprivileged writer only after setgroups deny
    with pytest.raises(OSError) as e:
        k.set_id_map(u, "gid_map", ((0, 1000, 1),))
    assert e.value.errno == errno.EPERM
    k.set_setgroups(u, False)
    k.set_id_map(u, "gid_map", ((0, 1000, 1),))
    assert read_all(fs, f"/proc/{u}/setgroups") == b"deny\n"
    assert read_all(fs, f"/proc/{u}/gid_map") == b"         0       1000          1\n"
    # now unprivileged no more inside: the caps of the owner (a root euid model)
    k.set_cred(u, 0, 0)
    execute(k, "unshare", {"pid": u, "flags": "CLONE_NEWNET"})


def test_initial_maps_and_setgroups(fs):
    p = _spawn(fs)
    ident = b"         0          0 4294967295\n"
    for f in ("uid_map", "gid_map", "projid_map"):
        assert read_all(fs, f"/proc/{p}/{f}") == ident
    assert read_all(fs, f"/proc/{p}/setgroups") == b"allow\n"
    # deny after gid_map is written: EPERM (the initial namespace has its maps)
    h = fs.open(f"/proc/{p}/setgroups", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"deny\n", 0) == errno.EPERM
    assert errno_of(h.write, b"maybe\n", 0) == errno.EINVAL


@requires_host(kernel="6.18")
@in_init_ns
def test_identity_files_match_the_host(fs):
    p = _spawn(fs)
    for f in ("uid_map", "gid_map", "projid_map", "setgroups", "timens_offsets"):
        with open(f"/proc/self/{f}", "rb") as real:
            assert read_all(fs, f"/proc/{p}/{f}") == real.read(), f
    for f in ("uid_map", "gid_map", "setgroups", "loginuid", "sessionid", "cgroup", "cpuset", "timens_offsets"):
        assert fs.getattr(f"/proc/{p}/{f}", ROOT).mode & 0o777 == os.stat(f"/proc/self/{f}").st_mode & 0o777, f
    assert fs.getattr(f"/proc/{p}/attr", ROOT).mode & 0o777 == os.stat("/proc/self/attr").st_mode & 0o777
    assert fs.readdir(f"/proc/{p}/attr", ROOT) == sorted(os.listdir("/proc/self/attr"))


@requires_host(kernel="6.18", files=("/proc/self/attr/current",))
def test_attr_current_is_einval_without_an_lsm_as_on_the_host(fs):
    try:
        open("/proc/self/attr/current").read()
        host = 0
    except OSError as e:
        host = e.errno
    if host != errno.EINVAL:
        pytest.skip("the host has an LSM providing attr/current")
    p = _spawn(fs)
    assert errno_of(read_all, fs, f"/proc/{p}/attr/current") == errno.EINVAL


def test_timens_offsets(fs):
    k = fs.kernel
    p = _spawn(fs)
    want = b"monotonic           0         0\nboottime            0         0\n"
    assert read_all(fs, f"/proc/{p}/timens_offsets") == want
    h = fs.open(f"/proc/{p}/timens_offsets", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"monotonic 5 0\n", 0) == errno.EACCES  # the initial namespace
    k.unshare(p, N.CLONE_NEWTIME)
    assert fs.readlink(f"/proc/{p}/ns/time", ROOT) == "time:[4026531834]"
    assert fs.readlink(f"/proc/{p}/ns/time_for_children", ROOT) == f"time:[{0xF0000000}]"
    h = fs.open(f"/proc/{p}/timens_offsets", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"monotonic 5 2000000000\n", 0) == errno.EINVAL
    h.write(b"monotonic 5 0\nboottime -3 7\n", 0)
    assert read_all(fs, f"/proc/{p}/timens_offsets") == \
        b"monotonic           5         0\nboottime           -3         7\n"
    c = k.fork(p)
    assert fs.readlink(f"/proc/{c}/ns/time", ROOT) == f"time:[{0xF0000000}]"
    assert errno_of(h.write, b"monotonic 6 0\n", 0) == errno.EACCES  # a task is in it now


def test_per_uts_namespace_hostname(fs):
    k = fs.kernel
    p = _spawn(fs)
    init_name = k.uts.nodename
    k.unshare(p, N.CLONE_NEWUTS)
    execute(k, "sethostname", {"name": "box", "pid": p})
    assert k.uts.nodename == init_name
    assert k.uts_of(k.task(p)).nodename == b"box"
    real = read_all(fs, "/proc/sys/kernel/hostname")
    assert real == init_name + b"\n"  # a real reader: the initial namespace
    assert read_all(fs, "/proc/sys/kernel/hostname", Caller(p, 0, 0)) == b"box\n"


def test_new_mount_namespace_copies_the_current_table(fs):
    k = fs.kernel
    p = _spawn(fs)
    init_ids = [m.mnt_id for m in k.mnt_ns(k.task(p)).mounts]
    k.unshare(p, N.CLONE_NEWNS)
    new = k.mnt_ns(k.task(p)).mounts
    assert [m.mountpoint for m in new] == [m.mountpoint for m in k.mnt_ns(k.task(1)).mounts]
    assert min(m.mnt_id for m in new) > max(init_ids)
    assert read_all(fs, f"/proc/{p}/mountinfo") != read_all(fs, "/proc/1/mountinfo")


# -- cgroups ------------------------------------------------------------------------


def test_cgroup_membership_and_migration(fs):
    k = fs.kernel
    p = _spawn(fs)
    assert read_all(fs, f"/proc/{p}/cgroup") == b"0::/\n"
    execute(k, "cgroup_mkdir", {"path": "/system.slice"})
    execute(k, "cgroup_mkdir", {"path": "/system.slice/nginx.service"})
    t = k.clone_thread(p)
    execute(k, "cgroup_attach", {"pid": p, "path": "/system.slice/nginx.service"})
    assert read_all(fs, f"/proc/{p}/cgroup") == b"0::/system.slice/nginx.service\n"
    assert read_all(fs, f"/proc/{p}/task/{t}/cgroup") == b"0::/system.slice/nginx.service\n"
    # the root enables cpuset, the slice does not: the slice's cpuset css
    assert read_all(fs, f"/proc/{p}/cpuset") == b"/system.slice\n"
    c = k.fork(p)
    assert read_all(fs, f"/proc/{c}/cgroup") == b"0::/system.slice/nginx.service\n"
    assert execute(k, "cgroups", {})["/system.slice/nginx.service"] == sorted([p, c])
    k.exit_group(c)
    k.wait(p, c)
    assert execute(k, "cgroups", {})["/system.slice/nginx.service"] == [p]


def test_cgroup_errors_change_nothing(fs):
    k = fs.kernel
    p = _spawn(fs)
    execute(k, "cgroup_mkdir", {"path": "/system.slice"})
    for op, args, err in (("cgroup_mkdir", {"path": "/a/b"}, errno.ENOENT),
                          ("cgroup_mkdir", {"path": "/system.slice"}, errno.EEXIST),
                          ("cgroup_mkdir", {"path": "rel"}, errno.EINVAL),
                          ("cgroup_attach", {"pid": p, "path": "/nope"}, errno.ENOENT),
                          ("cgroup_attach", {"pid": p, "path": "/system.slice"}, errno.EBUSY),
                          ("cgroup_attach", {"pid": 99999, "path": "/"}, errno.ESRCH)):
        before = execute(k, "cgroups", {})
        with pytest.raises(CommandError) as e:
            execute(k, op, args)
        assert e.value.errno == err, (op, args)
        assert execute(k, "cgroups", {}) == before and k.group(p).cgroup == "/"


def test_cgroup_namespace_paths(fs):
    k = fs.kernel
    p = _spawn(fs)
    cgroup_syscalls.attach(k, p, "/machine.slice/box.scope", create=True)
    k.unshare(p, N.CLONE_NEWCGROUP)
    c = k.fork(p)
    cgroup_syscalls.attach(k, c, "/machine.slice/box.scope/inner", create=True)
    inside = Caller(c, 0, 0)
    assert read_all(fs, f"/proc/{c}/cgroup", inside) == b"0::/inner\n"
    assert read_all(fs, f"/proc/{c}/cgroup") == b"0::/machine.slice/box.scope/inner\n"
    assert read_all(fs, "/proc/1/cgroup", inside) == b"0::/../..\n"  # kernfs_path_from_node
    assert fs.readlink(f"/proc/{c}/ns/cgroup", ROOT) == f"cgroup:[{0xF0000000}]"


@requires_host(kernel="6.18")
def test_cgroup_v2_line_format_matches_the_host(fs):
    host = [l for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")]
    if not host:
        pytest.skip("host has no cgroup v2 hierarchy")
    p = _spawn(fs)
    assert re.fullmatch(r"0::/\S*", host[0])
    assert read_all(fs, f"/proc/{p}/cgroup").decode().splitlines()[-1].startswith("0::/")


# -- audit --------------------------------------------------------------------------


def test_loginuid_and_sessionid(fs):
    k = fs.kernel
    p = _spawn(fs)
    assert read_all(fs, f"/proc/{p}/loginuid") == b"4294967295"
    assert read_all(fs, f"/proc/{p}/sessionid") == b"4294967295"
    execute(k, "login", {"pid": p, "uid": 1000})
    assert read_all(fs, f"/proc/{p}/loginuid") == b"1000"
    assert read_all(fs, f"/proc/{p}/sessionid") == b"1"
    c = k.fork(p)
    assert read_all(fs, f"/proc/{c}/sessionid") == b"1"  # inherited
    # another process (root included) may not write it
    h = fs.open(f"/proc/{c}/loginuid", os.O_WRONLY, ROOT)
    assert errno_of(h.write, b"0", 0) == errno.EPERM
    # the task itself, without CAP_AUDIT_CONTROL, once set: EPERM; with it: a new session
    me = fs.open(f"/proc/{c}/loginuid", os.O_WRONLY, Caller(c, 0, 0, caps=0))
    assert errno_of(me.write, b"0", 0) == errno.EPERM
    me = fs.open(f"/proc/{c}/loginuid", os.O_WRONLY, Caller(c, 0, 0, caps=1 << 30))
    assert errno_of(me.write, b"4294967296", 0) == errno.ERANGE
    me.write(b"1001", 0)
    assert (read_all(fs, f"/proc/{c}/loginuid"), read_all(fs, f"/proc/{c}/sessionid")) == (b"1001", b"2")
    assert read_all(fs, f"/proc/{p}/loginuid") == b"1000"


@requires_host(kernel="6.18")
def test_unset_loginuid_format_matches_the_host(fs):
    host = open("/proc/self/loginuid", "rb").read()
    if host != b"4294967295":
        pytest.skip("this host process has a login uid")
    p = _spawn(fs)
    assert read_all(fs, f"/proc/{p}/loginuid") == host
    assert read_all(fs, f"/proc/{p}/sessionid") == open("/proc/self/sessionid", "rb").read()


# -- scenarios ------------------------------------------------------------------------


def test_container_scenario():
    from procsim import scenario
    from procsim.procfs.tree import ProcFS
    k = scenario.load("examples/container.toml", clock="manual")
    fs = ProcFS(k)
    web = next(g.tgid for g in k.groups.values() if g.cmdline[:1] == ["nginx: master process nginx -g daemon off;"])
    workers = sorted(g.tgid for g in k.groups.values() if g.cmdline[:1] == ["nginx: worker process"])
    st = read_all(fs, f"/proc/{workers[1]}/status").decode()
    assert f"NSpid:\t{workers[1]}\t3\n" in st and f"NSsid:\t{web}\t1\n" in st
    for kind in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
        assert fs.readlink(f"/proc/{workers[0]}/ns/{kind}", ROOT) != fs.readlink(f"/proc/1/ns/{kind}", ROOT)
    assert fs.readlink(f"/proc/{web}/ns/user", ROOT) == fs.readlink("/proc/1/ns/user", ROOT)
    inside = Caller(workers[0], 0, 0)
    assert read_all(fs, f"/proc/{workers[0]}/cgroup", inside) == b"0::/\n"
    assert read_all(fs, f"/proc/{workers[0]}/cgroup") == b"0::/system.slice/docker-4f2a.scope\n"
    assert read_all(fs, "/proc/sys/kernel/hostname", inside) == b"4f2a9c1e7b3d\n"
    assert read_all(fs, "/proc/sys/kernel/hostname") == b"host\n"


def test_default_scenario_cgroups():
    from procsim import scenario
    k = scenario.load("procsim/scenarios/default.toml", clock="manual")
    assert k.group(1).cgroup == "/init.scope" and k.group(2).cgroup == "/"
    by_cmd = {g.cmdline[0]: g for g in k.groups.values() if g.cmdline}
    assert by_cmd["/usr/lib/systemd/systemd-journald"].cgroup == "/system.slice/systemd-journald.service"
    bash = by_cmd["-bash"]
    assert bash.cgroup == "/user.slice/user-1000.slice/session-1.scope"
    assert (bash.leader.loginuid, bash.leader.sessionid) == (1000, 1)
    assert by_cmd["/usr/lib/systemd/systemd-journald"].leader.loginuid == 4294967295


def test_scenario_identity_key_errors(tmp_path):
    from procsim import scenario
    base = '[machine]\nnr_cpus = 1\nmem = "1G"\nkernel_reserved = "64M"\nclock = "manual"\n[[process]]\nname = "a"\nargv = ["/bin/a"]\n'
    for extra, words in (('clone = "pid|bogus"\n', "clone"), ('hostname = "x"\n', "uts namespace"),
                         ('cgroup = "/system.slice"\ncgroup_x = 1\n', "cgroup_x")):
        f = tmp_path / "s.toml"
        f.write_text(base + extra)
        with pytest.raises(scenario.ScenarioError) as e:
            scenario.load(str(f), clock="manual")
        assert words in str(e.value)


def test_clone_with_new_namespaces_and_its_errors(fs):
    k = fs.kernel
    p = _spawn(fs)
    with pytest.raises(CommandError) as e:
        execute(k, "fork", {"pid": p, "child": 1, "flags": "pid|mnt"})  # pid 1 is in use
    assert e.value.errno == errno.EEXIST
    assert k.ns_next_inum == N.PROC_DYNAMIC_FIRST and len(k.files.mnt_ns) <= 1
    c = execute(k, "fork", {"pid": p, "flags": "pid|mnt"})
    assert f"NSpid:\t{c}\t1\n" in read_all(fs, f"/proc/{c}/status").decode()
    assert fs.readlink(f"/proc/{p}/ns/mnt", ROOT) == "mnt:[4026531832]"
    assert fs.readlink(f"/proc/{c}/ns/mnt", ROOT) == f"mnt:[{0xF0000000}]"
