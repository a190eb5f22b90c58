"""A process's memory as the scenario declares it: shared libraries mapped
as ld.so maps them, `maps` (mmap, mprotect, touch) and `workloads`."""

from __future__ import annotations

from typing import Any

from procsim.commands import execute
from procsim.kernel import Kernel
from procsim.scenario.names import Names
from procsim.scenario.schema import (LIB, MAP, PROTECT, WORKLOAD, ScenarioError, _fields, _t_prot,
                                     parse_size)
from procsim.units import PAGE_SIZE

PAGE = PAGE_SIZE


class MemoryBuilder:
    """Memory: a part of the scenario builder (builder.py's _Builder, which
    holds the kernel, the names and the boot history, and wraps errors: _call)."""

    k: Kernel
    names: Names
    map_sizes: dict[tuple[str, int], int]

    def _exec(self, where: str, op: str, **args) -> Any:
        return self._call(where, execute, self.k, op, args)

    def _lib(self, pid: int, lib: Any, where: str) -> None:
        """What ld.so does for a shared library: map the file, then make the
        text r-x, RELRO read-only after relocation, and data rw-."""
        if isinstance(lib, str):
            lib = {"path": lib}
        v = _fields(lib, LIB, where, ("path",))
        path = v["path"]
        size = v.get("size") or self.k.vfs.file(path).size
        n = max(6, -(-size // PAGE))
        hdr, text = max(1, n // 12), max(1, (n - 3) * 3 // 5)  # rodata keeps at least a page
        base = self._exec(where, "mmap", pid=pid, length=n * PAGE, prot="r", path=path)
        tx, relro = base + hdr * PAGE, base + (n - 2) * PAGE  # data: the last page, rw-
        self._exec(where, "mprotect", pid=pid, addr=tx, length=text * PAGE, prot="rx")
        self._exec(where, "mprotect", pid=pid, addr=relro, length=2 * PAGE, prot="rw")
        self._exec(where, "touch", pid=pid, addr=relro, length=2 * PAGE, write=True)
        self._exec(where, "mprotect", pid=pid, addr=relro, length=PAGE, prot="r")
        self._exec(where, "touch", pid=pid, addr=base, length=PAGE, write=False)
        self._exec(where, "touch", pid=pid, addr=tx, length=max(1, text // 3) * PAGE, write=False)

    def _map(self, pid: int, m: Any, j: int, where: str) -> None:
        label = f"map {m['name']!r}" if isinstance(m, dict) and isinstance(m.get("name"), str) else f"map #{j + 1}"
        v = _fields(m, MAP, f"{where} {label}", ("size",))
        for r in range(v.get("count", 1)):
            name = v.get("name")
            w = f"{where} {label}"
            if name and v.get("count", 1) > 1:
                name = f"{name}.{r + 1}"
                w = f"{where} map {name!r}"
            size = v["size"]
            if size <= 0:
                raise ScenarioError(f"{w}: size must be positive")
            prot = v.get("prot", 3)
            args = {"pid": pid, "length": size, "prot": prot, "shared": v.get("shared", False),
                    "path": v.get("path"), "offset": v.get("offset", 0), "addr": v.get("addr", 0)}
            for flag in ("fixed", "locked", "noreserve", "growsdown", "writable", "hugetlb"):
                if flag in v:
                    args[flag] = v[flag]
            if "offset" in v and "path" not in v:
                raise ScenarioError(f"{w}: offset is for file mappings (give a path)")
            addr = self._exec(w, "mmap", **args)
            if name:
                self.names.maps.setdefault(pid, {})[name] = addr
                self.map_sizes[(name, addr)] = size
            for p in v.get("protect", []):
                pv = _fields(p, PROTECT, f"{w} protect", ("size",))
                start = pv.get("start", 0)
                if start + pv["size"] > size:
                    raise ScenarioError(f"{w}: protect range {start:#x}+{pv['size']:#x} is outside the map")
                self._exec(w, "mprotect", pid=pid, addr=addr + start, length=pv["size"], prot=pv.get("prot", 3))
            length = self._touch_length(v.get("touch", 0), size, f"{w}: touch")
            if length:
                # by default a touch writes when the memory it starts in is writable
                first = next((p.get("prot", 3) for p in reversed(v.get("protect", []))
                              if parse_size(p.get("start", 0)) == 0), prot)
                write = v.get("write", bool(_t_prot(first, f"{w}: protect") & 2))
                self._exec(w, "touch", pid=pid, addr=addr, length=length, write=write)

    def _workload(self, pid: int, d: Any, where: str) -> None:
        """A workload_start on the process (procsim/workload.py); `map`
        names the region: its start, and its declared size unless `length`."""
        v = _fields(d, WORKLOAD, where, ("pattern",))
        if "map" in v:
            if "addr" in v or "vmas" in v:
                raise ScenarioError(f"{where}: give map, addr or vmas, not two of them")
            ref = v.pop("map")
            if not isinstance(ref, str):
                raise ScenarioError(f"{where}: map: expected a mapping name, got {ref!r}")
            v["addr"] = self._call(where, self.names.addr, ref, pid)
            if "length" not in v:
                base = ref.split("+", 1)[0].rsplit(":", 1)[-1]
                start = self.names.addr(ref.split("+", 1)[0], pid)
                v["length"] = self.map_sizes.get((base, start), 0) - (v["addr"] - start)
        elif isinstance(v.get("addr"), str):
            v["addr"] = self._call(where, self.names.addr, v["addr"], pid)
        self._exec(where, "workload_start", pid=pid, **v)

    @staticmethod
    def _touch_length(t: Any, size: int, where: str) -> int:
        if t is True or t == "all":
            return size
        if t is False or t == 0:
            return 0
        if isinstance(t, float):
            if not 0 <= t <= 1:
                raise ScenarioError(f"{where}: a fraction is between 0.0 and 1.0, got {t}")
            return max(PAGE, int(size * t)) if t else 0
        try:
            n = parse_size(t, where)
        except ScenarioError:
            raise ScenarioError(f'{where}: expected bytes ("300M"), a fraction (0.5) or "all", got {t!r}') from None
        if n > size:
            raise ScenarioError(f"{where}: {n} bytes is more than the map's {size}")
        return n
