"""Elementary operations the unit kernels use, in three interchangeable back ends.

Kernels never call ``math``/``numpy`` directly on state-dependent values and never branch on them;
they call ``ops.fmax``, ``ops.select``, ... . That keeps one source of truth for the equations and
lets the same kernel run

* compiled with numba (``ops`` is this module; every function here is ``@njit``),
* as plain Python (:data:`PLAIN`: the same functions, never compiled), and
* symbolically in CasADi (``twin._casadi.CASADI_OPS``), for the do-mpc baseline.

``twin.units._backend.retarget`` swaps the ``ops`` global of a kernel for another namespace.
Switch: ``SYMTWIN_DISABLE_NUMBA=1`` runs everything as plain Python (as ``twin.steam`` does).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

from twin.if97 import kernels as _if97

F = TypeVar("F", bound=Callable[..., Any])
#: A state/parameter/output vector: a float64 array (numba, plain) or a list of CasADi SX (CasADi).
Vec = Any

COMPILED: bool = os.environ.get("SYMTWIN_DISABLE_NUMBA", "").strip().lower() not in {"1", "true", "yes"}

# Water in the district-heating loop, storage and heat-exchanger sides: constant properties at ~70 degC
# so that energy E = m cp (T - T_REF) is linear in the states and the balances close exactly.
CP_WATER = 4190.0  # [J/(kg K)]
RHO_WATER = 978.0  # [kg/m3]
K_WATER = 0.66  # thermal conductivity [W/(m K)]
T_REF = 273.15  # enthalpy reference [K]


def jit(fn: F) -> F:
    """``numba.njit(cache=True)`` unless numba is disabled; keeps ``fn.py_func`` reachable either way."""
    if not COMPILED:
        return fn
    import numba

    return numba.njit(cache=True, error_model="numpy")(fn)  # type: ignore[return-value,no-any-return]


def _fmax(a: float, b: float) -> float:
    return a if a > b else b


def _fmin(a: float, b: float) -> float:
    return a if a < b else b


def _clip(a: float, lo: float, hi: float) -> float:
    return lo if a < lo else (hi if a > hi else a)


def _select(cond: float, a: float, b: float) -> float:
    """``a`` where ``cond > 0`` else ``b`` (branch-free in the CasADi back end)."""
    return a if cond > 0.0 else b


def _sqrt(a: float) -> float:
    return math.sqrt(a)


def _exp(a: float) -> float:
    return math.exp(a)


def _steam_pt(rho: float, u: float) -> tuple[float, float]:
    """Pressure [Pa] and temperature [K] of steam from density [kg/m3] and internal energy [J/kg]
    (IAPWS-IF97 regions 2 and 4, ``twin.if97``).

    Fast path for the header's usual superheated state: Newton on region 2 from an ideal-gas start
    (2.5x faster than the general inversion, same result to 1e-15); anything not clearly superheated
    goes through the general ``pt_from_rho_u`` (dew point first, then region 2 or two-phase)."""
    v = 1.0 / rho
    t0 = max(450.0 + (u - 2.58e6) / 1.6e3, 300.0)
    p, t = _if97._pt_region2_from_vu(v, u, 0.93 * 461.526 * t0 / v, t0)
    if p == p and t > _if97.t_sat(p):
        return p, t
    p, t, _x = _if97.pt_from_rho_u(rho, u)
    return p, t


fmax = jit(_fmax)
fmin = jit(_fmin)
clip = jit(_clip)
select = jit(_select)
sqrt = jit(_sqrt)
exp = jit(_exp)
steam_pt = jit(_steam_pt)


def _plain_steam_pt(rho: float, u: float) -> tuple[float, float]:
    """:func:`_steam_pt` over the never-compiled IF97 kernels."""
    from twin.if97 import load_plain_kernels

    k = load_plain_kernels()
    v = 1.0 / rho
    t0 = max(450.0 + (u - 2.58e6) / 1.6e3, 300.0)
    p, t = k._pt_region2_from_vu(v, u, 0.93 * 461.526 * t0 / v, t0)
    if p == p and t > k.t_sat(p):
        return float(p), float(t)
    p, t, _x = k.pt_from_rho_u(rho, u)
    return float(p), float(t)


#: The plain-Python back end (never compiled).
PLAIN = SimpleNamespace(
    fmax=_fmax,
    fmin=_fmin,
    clip=_clip,
    select=_select,
    sqrt=_sqrt,
    exp=_exp,
    steam_pt=_plain_steam_pt,
    CP_WATER=CP_WATER,
    RHO_WATER=RHO_WATER,
    K_WATER=K_WATER,
    T_REF=T_REF,
)
