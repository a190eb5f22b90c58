"""[[module]] and [netfilter]: the modules loaded at boot (in order, each
after those it uses) and connection tracking (on in the initial network
namespace, which needs nf_conntrack loaded; its max and hash size)."""

from __future__ import annotations

from procsim.module import syscalls as mod_sys
from procsim.net.netfilter import ctnetlink
from procsim.scenario.schema import ScenarioError, _fields, _t_any, _t_bool, _t_int, _t_str, _t_strs

MODULE = {"name": _t_str, "size": _t_int, "uses": _t_strs, "taints": _t_str, "params": _t_any,
          "permanent": _t_bool, "refs": _t_int}
NETFILTER = {"conntrack": _t_bool, "nf_conntrack_max": _t_int, "nf_conntrack_buckets": _t_int}


class ModulesBuilder:
    """The builder's part for [[module]] and [netfilter] (a mixin of scenario/builder.py's _Builder)."""

    def _modules(self, entries: list) -> None:
        for i, d in enumerate(entries):
            where = f"module #{i + 1}"
            v = _fields(d, MODULE, where, required=("name", "size"))
            params = v.get("params", {})
            if not isinstance(params, dict) or not all(isinstance(x, (str, int)) for x in params.values()):
                raise ScenarioError(f"{where}: params: a table of NAME = value")
            self._call(where, mod_sys.init_module, self.k, None, v["name"], v["size"], v.get("uses", []),
                       taints=v.get("taints", ""), permanent=v.get("permanent", False), refs=v.get("refs", 0),
                       params={n: (str(x), 0o644) for n, x in params.items()})

    def _netfilter(self, t: dict) -> None:
        v = _fields(t, NETFILTER, "netfilter")
        nf = self.k.netfilter
        try:
            if "nf_conntrack_buckets" in v:
                nf.resize(v["nf_conntrack_buckets"])
            if "nf_conntrack_max" in v:
                nf.set_max(v["nf_conntrack_max"])
        except ValueError as e:
            raise ScenarioError(f"netfilter: {e}") from None
        if v.get("conntrack"):
            self._call("netfilter: conntrack", ctnetlink.enable, self.k, None, True)
