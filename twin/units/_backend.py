"""Run one kernel source through another back end by swapping its ``ops`` global.

``retarget(fn, ns)`` returns a plain-Python copy of ``fn`` (the ``py_func`` of a numba dispatcher)
whose global ``ops`` is ``ns`` and whose calls to other kernels are retargeted the same way. That is
how the plain-Python path and the CasADi path run exactly the equations the numba path compiles.
"""

from __future__ import annotations

import types
from typing import Any

_CACHE: dict[tuple[int, int], Any] = {}


def _is_kernel(obj: Any) -> bool:
    return hasattr(obj, "py_func") or (isinstance(obj, types.FunctionType) and "ops" in obj.__globals__)


def retarget(fn: Any, ns: Any) -> Any:
    """A copy of kernel ``fn`` running over back end ``ns`` (see module doc)."""
    fn = getattr(fn, "py_func", fn)
    key = (id(fn), id(ns))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    glb: dict[str, Any] = dict(fn.__globals__)
    glb["ops"] = ns
    out = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    _CACHE[key] = out
    for name in fn.__code__.co_names:
        obj = glb.get(name)
        if obj is None or name == "ops":
            continue
        if isinstance(obj, types.ModuleType) and obj.__name__.startswith("twin.units."):
            glb[name] = _module_ns(obj, ns)
        elif _is_kernel(obj):
            glb[name] = retarget(obj, ns)
    return out


def _module_ns(mod: types.ModuleType, ns: Any) -> types.SimpleNamespace:
    key = (id(mod), id(ns))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    out = types.SimpleNamespace()
    _CACHE[key] = out
    for name, obj in vars(mod).items():
        if name.startswith("__"):
            continue
        setattr(out, name, retarget(obj, ns) if _is_kernel(obj) and not isinstance(obj, type) else obj)
    return out
