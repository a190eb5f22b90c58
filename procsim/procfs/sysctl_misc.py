"""More of /proc/sys: kernel.{ostype,version}, kernel.random.*, kernel.pty.*,
fs.{dentry-state,inode-nr,inode-state} and vm.*,
their reads and writes as proc_dostring / proc_dointvec(_minmax) give them
(procsim/procfs/sysctl.py), over procsim/random_pool.py and
procsim/mm/sysctl_vm.py."""

from __future__ import annotations

import errno

from procsim.fs import dcache, devpts
from procsim.kstrtox import INT_MAX
from procsim.mm.sysctl_vm import VM_SYSCTLS, set_vm_sysctl, vm_sysctl
from procsim.procfs import sysctl
from procsim.procfs.context import Ctx
from procsim.procfs.kinds import Bin, Dir, Show
from procsim.kallsyms import set_kernel_sysctl
from procsim.random_pool import POOL_BITS, set_random_sysctl


def ostype(ctx: Ctx) -> bytes:
    return b"Linux\n"


def uts_version(ctx: Ctx) -> bytes:
    """UTS_VERSION: the banner from the build number on ("#1 SMP ...")."""
    banner = ctx.kernel.config.version
    i = banner.find(" #")
    return (banner[i + 1:] if i >= 0 else banner).encode() + b"\n"


def boot_id(ctx: Ctx) -> bytes:
    return ctx.kernel.crng.boot_id.encode()


def new_uuid(ctx: Ctx) -> bytes:
    with ctx.kernel.lock:
        return ctx.kernel.crng.next_uuid().encode()


def _const(v: int):
    return lambda ctx: f"{v}\n".encode()


def _crng_int(field: str):
    return lambda ctx: f"{getattr(ctx.kernel.crng, field)}\n".encode()


def _crng_store(field: str):
    return lambda ctx, v: set_random_sysctl(ctx.kernel, field, v)


def _ro_int(name: str, render) -> Show:
    return Show(name, render, deny_write=True)


def _rw_int(name: str, render, lo: int, hi: int, store) -> Bin:
    return Bin(name, sysctl.dointvec_read(render), 0o644, sysctl.dointvec_minmax_write(lo, hi, store))


RANDOM = Dir.of(
    "random",
    Bin("boot_id", sysctl.dostring_read(boot_id), 0o444, deny_write=True),
    _ro_int("entropy_avail", _const(POOL_BITS)),
    _ro_int("poolsize", _const(POOL_BITS)),
    _rw_int("urandom_min_reseed_secs", _crng_int("urandom_min_reseed_secs"), -INT_MAX - 1, INT_MAX,
            _crng_store("urandom_min_reseed_secs")),
    Bin("uuid", sysctl.dostring_read(new_uuid), 0o444, deny_write=True),
    _rw_int("write_wakeup_threshold", _crng_int("write_wakeup_threshold"), -INT_MAX - 1, INT_MAX,
            _crng_store("write_wakeup_threshold")),
)


def _vm_row(name: str) -> Bin:
    _, lo, hi = VM_SYSCTLS[name]
    return _rw_int(name, lambda ctx: f"{vm_sysctl(ctx.kernel, name)}\n".encode(), lo, hi,
                   lambda ctx, v: set_vm_sysctl(ctx.kernel, name, v))


VM = Dir.of("vm", *(_vm_row(name) for name in sorted(VM_SYSCTLS)))


# kernel.kptr_restrict: proc_dointvec_minmax_sysadmin, [0, 2], a write needs
# CAP_SYS_ADMIN; kernel.perf_event_paranoid: any int
CAP_SYS_ADMIN = 21


def _config_store(field: str):
    return lambda ctx, v: set_kernel_sysctl(ctx.kernel, field, v)


def _kptr_restrict_write(ctx: Ctx, data: bytes, offset: int) -> int:
    if not ctx.caller.capable(CAP_SYS_ADMIN):
        raise OSError(errno.EPERM, "kptr_restrict")
    return _kptr_write(ctx, data, offset)


_kptr_write = sysctl.dointvec_minmax_write(0, 2, _config_store("kptr_restrict"))
KPTR_RESTRICT = Bin("kptr_restrict", sysctl.dointvec_read(lambda ctx: f"{ctx.kernel.config.kptr_restrict}\n".encode()),
                    0o644, _kptr_restrict_write)
PERF_EVENT_PARANOID = _rw_int("perf_event_paranoid", lambda ctx: f"{ctx.kernel.config.perf_event_paranoid}\n".encode(),
                              -INT_MAX - 1, INT_MAX, _config_store("perf_event_paranoid"))


def _pty_int(field: str):
    return lambda ctx: f"{getattr(ctx.kernel.files.pty, field)}\n".encode()


def _pty_store(field: str):
    return lambda ctx, v: devpts.set_pty_limit(ctx.kernel, field, v)


PTY = Dir.of(
    "pty",
    _rw_int("max", _pty_int("max"), 0, INT_MAX, _pty_store("max")),
    _ro_int("nr", lambda ctx: f"{devpts.nr_ptys(ctx.kernel)}\n".encode()),
    _rw_int("reserve", _pty_int("reserve"), 0, INT_MAX, _pty_store("reserve")),
)


def _tabbed(values: tuple[int, ...]) -> bytes:
    return ("\t".join(map(str, values)) + "\n").encode()


def dentry_state(ctx: Ctx) -> bytes:
    return _tabbed(dcache.dentry_state(ctx.kernel))


def inode_nr(ctx: Ctx) -> bytes:
    return _tabbed(dcache.inode_state(ctx.kernel))


def inode_state(ctx: Ctx) -> bytes:
    """inodes_stat_t: nr_inodes, nr_unused and five dummies."""
    return _tabbed(dcache.inode_state(ctx.kernel) + (0,) * 5)


DCACHE = (_ro_int("dentry-state", dentry_state), _ro_int("inode-nr", inode_nr), _ro_int("inode-state", inode_state))
