"""The kernel's symbol table as /proc/kallsyms shows it (kernel/kallsyms.c):
the functions the model's wait channels and stack traces name
(procsim/sched_wait.py) and the text boundaries, at the reference VM's
build addresses (a kernel without KASLR offset, CONFIG_MODULES off: no
module symbols). Whether a reader sees the addresses is
kallsyms_show_value(): kernel.kptr_restrict 0 shows them where
kernel.perf_event_paranoid <= 1 or to CAP_SYSLOG, 1 only to CAP_SYSLOG, 2
to nobody; everyone else reads zeros."""

from __future__ import annotations

CAP_SYSLOG = 34

# (address, type, name), in address order
SYMBOLS: tuple[tuple[int, str, str], ...] = (
    (0xffffffff81000000, "T", "_stext"),
    (0xffffffff81000000, "T", "_text"),
    (0xffffffff81000080, "T", "entry_SYSCALL_64"),
    (0xffffffff810000ba, "T", "entry_SYSCALL_64_after_hwframe"),
    (0xffffffff81000df0, "T", "asm_sysvec_apic_timer_interrupt"),
    (0xffffffff812393f0, "t", "devtmpfs_work_loop"),
    (0xffffffff8124a140, "T", "ret_from_fork_asm"),
    (0xffffffff81302640, "T", "arch_do_signal_or_restart"),
    (0xffffffff81311530, "T", "ret_from_fork"),
    (0xffffffff81367e30, "t", "do_wait"),
    (0xffffffff81368540, "T", "kernel_wait4"),
    (0xffffffff813686e0, "t", "__do_sys_wait4"),
    (0xffffffff81375180, "t", "sigsuspend.isra.0"),
    (0xffffffff8137a110, "t", "do_signal_stop"),
    (0xffffffff8137a610, "T", "get_signal"),
    (0xffffffff8137e500, "t", "__do_sys_pause"),
    (0xffffffff8137e560, "T", "__x64_sys_rt_sigsuspend"),
    (0xffffffff8138cd20, "t", "rescuer_thread"),
    (0xffffffff8138d300, "t", "worker_thread"),
    (0xffffffff81395740, "t", "kthread"),
    (0xffffffff81396330, "T", "kthread_worker_fn"),
    (0xffffffff81397670, "T", "kthreadd"),
    (0xffffffff813a34f0, "t", "smpboot_thread_fn"),
    (0xffffffff813d08a0, "t", "do_idle"),
    (0xffffffff813d0cf0, "T", "cpu_startup_entry"),
    (0xffffffff813dc4b0, "T", "wait_woken"),
    (0xffffffff813f86b0, "t", "irq_thread"),
    (0xffffffff8140acb0, "t", "rcu_tasks_one_gp"),
    (0xffffffff8140b200, "t", "rcu_tasks_kthread"),
    (0xffffffff814123b0, "t", "rcu_gp_fqs_loop"),
    (0xffffffff81415690, "t", "rcu_gp_kthread"),
    (0xffffffff814245f0, "T", "exit_to_user_mode_loop"),
    (0xffffffff8142f660, "T", "hrtimer_nanosleep"),
    (0xffffffff814384a0, "t", "common_nsleep"),
    (0xffffffff8143bba0, "T", "__x64_sys_clock_nanosleep"),
    (0xffffffff8144bc60, "T", "do_futex"),
    (0xffffffff8144bec0, "T", "__x64_sys_futex"),
    (0xffffffff81450150, "T", "futex_do_wait"),
    (0xffffffff81450960, "T", "__futex_wait"),
    (0xffffffff81450a70, "T", "futex_wait"),
    (0xffffffff81478810, "t", "kauditd_thread"),
    (0xffffffff81488c20, "t", "watchdog"),
    (0xffffffff815a76e0, "t", "__filemap_fdatawait_range"),
    (0xffffffff815a7c40, "T", "folio_wait_bit"),
    (0xffffffff815a9bb0, "T", "file_write_and_wait_range"),
    (0xffffffff815b2650, "t", "oom_reaper"),
    (0xffffffff815b5e20, "T", "folio_wait_writeback"),
    (0xffffffff815c9240, "t", "kswapd"),
    (0xffffffff815f0340, "t", "kcompactd"),
    (0xffffffff81687ca0, "t", "ksm_scan_thread"),
    (0xffffffff816a6d60, "t", "khugepaged"),
    (0xffffffff816c3990, "t", "kdamond_fn"),
    (0xffffffff816dc4f0, "T", "vfs_read"),
    (0xffffffff816dd320, "T", "ksys_read"),
    (0xffffffff816eb870, "t", "anon_pipe_read"),
    (0xffffffff816fe660, "t", "poll_schedule_timeout.constprop.0"),
    (0xffffffff816fec30, "t", "do_select"),
    (0xffffffff816ffca0, "t", "do_sys_poll"),
    (0xffffffff817003e0, "T", "core_sys_select"),
    (0xffffffff81700a50, "t", "do_pselect.constprop.0"),
    (0xffffffff81700c80, "T", "__x64_sys_pselect6"),
    (0xffffffff81700dd0, "T", "__x64_sys_poll"),
    (0xffffffff81701110, "T", "__x64_sys_ppoll"),
    (0xffffffff81737780, "t", "do_fsync"),
    (0xffffffff81737c00, "T", "__x64_sys_fsync"),
    (0xffffffff81746c50, "T", "generic_buffers_fsync_noflush"),
    (0xffffffff81758820, "t", "do_epoll_wait"),
    (0xffffffff8175a720, "T", "__x64_sys_epoll_wait"),
    (0xffffffff817d8470, "t", "ext4_fsync_nojournal.constprop.0"),
    (0xffffffff817d85d0, "T", "ext4_sync_file"),
    (0xffffffff81851690, "t", "kjournald2"),
    (0xffffffff818659a0, "t", "request_wait_answer"),
    (0xffffffff81865c30, "T", "__fuse_simple_request"),
    (0xffffffff81870ba0, "T", "fuse_direct_io"),
    (0xffffffff81871fa0, "t", "fuse_file_read_iter"),
    (0xffffffff81d37df0, "t", "tty_read"),
    (0xffffffff81d3e2b0, "t", "n_tty_read"),
    (0xffffffff81d7bd00, "t", "hwrng_fillfn"),
    (0xffffffff81e754a0, "T", "sock_recvmsg"),
    (0xffffffff81e77cd0, "T", "do_accept"),
    (0xffffffff81e77e80, "T", "__sys_accept4"),
    (0xffffffff81e77f90, "T", "__x64_sys_accept4"),
    (0xffffffff81e78960, "T", "__sys_recvfrom"),
    (0xffffffff81e78b40, "T", "__x64_sys_recvfrom"),
    (0xffffffff81e944e0, "T", "__skb_wait_for_more_packets"),
    (0xffffffff8205fd10, "T", "inet_csk_accept"),
    (0xffffffff820b17e0, "T", "inet_accept"),
    (0xffffffff821216d0, "T", "__unix_dgram_recvmsg"),
    (0xffffffff8223df20, "T", "do_syscall_64"),
    (0xffffffff82244450, "T", "irqentry_exit_to_user_mode"),
    (0xffffffff822452b0, "T", "default_idle"),
    (0xffffffff82248ef0, "t", "devtmpfsd"),
    (0xffffffff82249220, "t", "__schedule"),
    (0xffffffff8224a190, "T", "schedule"),
    (0xffffffff8225b140, "T", "_etext"),
    (0xffffffff83583300, "T", "startup_64"),
)


def show_value(kptr_restrict: int, perf_event_paranoid: int, has_syslog: bool) -> bool:
    """kallsyms_show_value() for the opener's credentials."""
    if kptr_restrict == 0 and perf_event_paranoid <= 1:
        return True
    if kptr_restrict <= 1 and has_syslog:
        return True
    return False


def set_kernel_sysctl(k, name: str, value: int) -> None:
    """kernel.kptr_restrict or kernel.perf_event_paranoid (range checked by the table)."""
    with k.lock:
        setattr(k.config, name, value)
        k._changed("sysctl", name=f"kernel.{name}")
