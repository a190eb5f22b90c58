"""lsmod (kmod), unmodified, through the mount: it reads /proc/modules and
each module's /sys/module/NAME/{coresize,refcnt,holders/}; its table is
the model's (the default machine's nf_conntrack stack, then a module
loaded and one unloaded live)."""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = [pytest.mark.fuse, pytest.mark.skipif(not shutil.which("lsmod"), reason="needs lsmod (apt kmod)")]

ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def lsmod(m, bind_sys: bool) -> list[list[str]]:
    r = m.run(["lsmod"], bind_sys=bind_sys, capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["Module", "Size", "Used", "by"]
    return [l.split() for l in lines[1:]]


def expected(m) -> list[list[str]]:
    return [[x["name"], str(x["size"]), str(x["refcnt"])] + ([",".join(x["holders"])] if x["holders"] else [])
            for x in m.ctl.call("modules")]


@pytest.mark.parametrize("bind_sys", [False, True])
def test_lsmod_prints_the_models_modules(procsim_mount, bind_sys):
    m = procsim_mount()
    rows = lsmod(m, bind_sys)
    assert rows == expected(m)
    assert ["nf_conntrack", "196608", "1", "nft_ct"] in rows
    m.ctl.call("module_load", name="xt_conntrack", size=12288, uses="nf_conntrack")
    rows = lsmod(m, bind_sys)
    assert rows[0] == ["xt_conntrack", "12288", "0"]
    assert ["nf_conntrack", "196608", "2", "xt_conntrack,nft_ct"] in rows
    m.ctl.call("module_unload", name="xt_conntrack")
    assert lsmod(m, bind_sys) == expected(m)
