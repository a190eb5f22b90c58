"""Small machine-wide /proc files that describe the kernel's build and
devices rather than changing state: cmdline, consoles, devices, misc,
key-users, the sysvipc tables, and the renders of locks (procsim/fs/locks.py),
kallsyms, slabinfo and vmallocinfo. The reference VM's (spec §0.1): a KVM
guest with a serial console, virtio disks and no loadable modules
(CONFIG_MODULES is off there, so there is no /proc/modules either)."""

from __future__ import annotations

from procsim.procfs.context import Ctx

# the boot command line of a distribution kernel on that VM
CMDLINE = "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 ro console=ttyS0 quiet"

# register_chrdev / register_blkdev of the reference VM's drivers, in major order
CHAR_DEVICES = ((1, "mem"), (4, "/dev/vc/0"), (4, "tty"), (4, "ttyS"), (5, "/dev/tty"), (5, "/dev/console"),
                (5, "/dev/ptmx"), (7, "vcs"), (10, "misc"), (13, "input"), (128, "ptm"), (136, "pts"),
                (203, "cpu/cpuid"), (245, "hidraw"), (246, "macvtap"), (247, "mei"), (248, "bsg"),
                (249, "watchdog"), (250, "ptp"), (251, "pps"), (252, "dax"), (253, "dimmctl"), (254, "ndctl"))
BLOCK_DEVICES = ((7, "loop"), (253, "zram"), (254, "virtblk"), (259, "blkext"))
# misc_register(), newest first as misc_list is printed
MISC_DEVICES = ((234, "btrfs-control"), (259, "cpu_dma_latency"), (258, "vsock"), (200, "tun"),
                (237, "loop-control"), (229, "fuse"), (257, "userfaultfd"), (232, "kvm"), (183, "hw_random"),
                (256, "vga_arbiter"))


def cmdline(ctx: Ctx) -> bytes:
    return f"{CMDLINE}\n".encode()


def consoles(ctx: Ctx) -> bytes:
    """show_console_dev(): the serial console, enabled, preferred, printk-able."""
    return b"ttyS0                -W- (EC  p a)    4:64\n"


def devices(ctx: Ctx) -> bytes:
    out = ["Character devices:\n"] + [f"{m:3d} {n}\n" for m, n in CHAR_DEVICES]
    out += ["\nBlock devices:\n"] + [f"{m:3d} {n}\n" for m, n in BLOCK_DEVICES]
    return "".join(out).encode()


def misc(ctx: Ctx) -> bytes:
    return "".join(f"{m:3d} {n}\n" for m, n in MISC_DEVICES).encode()


def key_users(ctx: Ctx) -> bytes:
    """proc_key_users_show(): root's user and session keyrings and the
    default quotas (maxkeys 1000000, maxbytes 25000000 for root)."""
    return b"    0:     9 8/8 3/1000000 40/25000000\n"


def locks(ctx: Ctx) -> bytes:
    from procsim.fs.locks import proc_locks
    return proc_locks(ctx.kernel).encode()


def sysvipc_shm(ctx: Ctx) -> bytes:
    return (b"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid"
            b"      atime      dtime      ctime                   rss                  swap\n")


def sysvipc_sem(ctx: Ctx) -> bytes:
    return b"       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n"


def sysvipc_msg(ctx: Ctx) -> bytes:
    return (b"       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid"
            b"      stime      rtime      ctime\n")


def slabinfo(ctx: Ctx) -> bytes:
    """slabinfo_show() (SLUB: no tunables, version 2.1)."""
    from procsim.mm.slab import slab_caches
    out = ["slabinfo - version: 2.1\n",
           "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit>"
           " <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n"]
    for c in slab_caches(ctx.kernel):
        out.append(f"{c.name:<17} {c.active_objs:6d} {c.num_objs:6d} {c.objsize:6d} {c.objperslab:4d} "
                   f"{c.pagesperslab:4d} : tunables {0:4d} {0:4d} {0:4d} : slabdata {c.num_slabs:6d} "
                   f"{c.num_slabs:6d} {0:6d}\n")
    return "".join(out).encode()


def kallsyms(ctx: Ctx) -> bytes:
    """s_show(): "%px %c %s"; zeros for a reader kallsyms_show_value() refuses."""
    from procsim.kallsyms import CAP_SYSLOG, SYMBOLS, show_value
    cfg = ctx.kernel.config
    if show_value(cfg.kptr_restrict, cfg.perf_event_paranoid, ctx.caller.capable(CAP_SYSLOG)):
        return "".join(f"{a:016x} {t} {n}\n" for a, t, n in SYMBOLS).encode()
    return "".join(f"{0:016x} {t} {n}\n" for _, t, n in SYMBOLS).encode()


def vmallocinfo(ctx: Ctx) -> bytes:
    """vmalloc_info_show() (root 0400): hashed addresses, size, caller, pages."""
    from procsim.mm.vmalloc import hashed, vm_areas
    seed = ctx.kernel.config.seed or 0
    out = []
    for a in vm_areas(ctx.kernel):
        lo, hi = hashed(a.addr, seed), hashed(a.addr + a.size, seed)
        out.append(f"0x{lo:016x}-0x{hi:016x} {a.size:7d} {a.caller} pages={a.nr_pages} vmalloc N0={a.nr_pages}\n")
    return "".join(out).encode()


def sysvipc_shm_rows(ctx: Ctx) -> bytes:
    """sysvipc_shm_proc_show(): the header, then a row per segment."""
    out = [sysvipc_shm(ctx).decode()]
    for s in ctx.kernel.shm.live():
        out.append(f"{s.key:10d} {s.id:10d}  {s.mode:4o} {s.size:21d} {s.cpid:5d} {s.lpid:5d}  {s.nattch:5d} "
                   f"{s.uid:5d} {s.gid:5d} {s.cuid:5d} {s.cgid:5d} {s.atime:10d} {s.dtime:10d} {s.ctime:10d} "
                   f"{s.rss_pages * 4096:21d} {0:21d}\n")
    return "".join(out).encode()
