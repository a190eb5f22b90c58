"""Commands of netfilter's connection tracking (procsim/net/netfilter/):
enabling tracking in a process's network namespace (what loading a
ruleset that matches on ct state does), and `conntrack -I/-D/-U/-F/-L`
on its table, with ctnetlink's errnos (EEXIST, ENOENT, ENOMEM, EINVAL)."""

from __future__ import annotations

from procsim.commands.core import cmd, p, query
from procsim.kernel import Kernel
from procsim.net.netfilter import ctnetlink as C
from procsim.params import BOOL, INT, STR

_PID = p("pid", INT, 1)
_TUPLE = (p("proto", STR), p("src", STR), p("dst", STR), p("sport", INT), p("dport", INT))


def c_ct_create(k: Kernel, proto, src, dst, sport, dport, timeout, state, status, mark, zone, pid) -> dict:
    C.create(k, pid, C.parse_tuple(proto, src, dst, sport, dport), timeout, state, status, mark, zone)
    return {"count": C.table_of(k, pid).count}


COMMANDS = (
    cmd("conntrack_enable", lambda k, on, pid: C.enable(k, pid, on), p("on", BOOL, True), _PID,
        doc="Conntrack's hooks in `pid`'s network namespace (a ruleset that needs them); `on` false: "
            "unregistered (entries stay until their timeouts). ENOENT unless the nf_conntrack module is loaded."),
    cmd("conntrack_create", c_ct_create, *_TUPLE, p("timeout", INT), p("state", STR, None),
        p("status", STR, ""), p("mark", INT, 0), p("zone", INT, 0), _PID,
        doc="`conntrack -I`: an entry for the original tuple (tcp needs a `state`; `status`: ASSURED,SEEN_REPLY). "
            "EEXIST for a tuple in the table, ENOMEM when it is full (nf_conntrack_max), EINVAL."),
    cmd("conntrack_delete", lambda k, proto, src, dst, sport, dport, pid:
        C.delete(k, pid, C.parse_tuple(proto, src, dst, sport, dport)), *_TUPLE, _PID,
        doc="`conntrack -D`: the entry one of whose tuples this is (ENOENT if none)."),
    cmd("conntrack_mark", lambda k, proto, src, dst, sport, dport, mark, pid:
        C.set_mark(k, pid, C.parse_tuple(proto, src, dst, sport, dport), mark), *_TUPLE, p("mark", INT), _PID,
        doc="`conntrack -U -m MARK`: an entry's mark (ENOENT if none)."),
    cmd("conntrack_flush", lambda k, pid: C.flush(k, pid), _PID, doc="`conntrack -F`: every entry goes."),
    query("conntrack_list", lambda k, pid: C.entries(k, pid), _PID, doc="`conntrack -L`: the live entries."),
)
