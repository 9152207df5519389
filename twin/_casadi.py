"""CasADi back end for the unit kernels: the park's equations as one symbolic expression.

Used by the do-mpc baseline of ``benchmarks/twin_speed.py`` (and available to a reduced-order MPC): the
generated park source runs over CasADi SX through ``twin.units._backend.retarget``, so it states
exactly the equations the numba path compiles. The one exception is the header's (rho, u) -> (p, T)
inversion of IF97, an iterative solve: here it is a cubic B-spline table of the same IF97 function
over the header's operating range (``steam_table``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.units import _ops

if TYPE_CHECKING:
    from twin.park import Park


def steam_table(rho_range: tuple[float, float], u_range: tuple[float, float], n: int = 80) -> tuple[Any, Any]:
    """CasADi B-spline functions p(rho, u) [Pa] and T(rho, u) [K] tabulated from IF97 (``twin.if97``)."""
    import casadi as ca

    from twin.if97 import kernels

    rho = np.linspace(*rho_range, n)
    u = np.linspace(*u_range, n)
    rr, uu = np.meshgrid(rho, u, indexing="ij")
    p = np.empty(rr.size)
    t = np.empty(rr.size)
    x = np.empty(rr.size)
    kernels.pt_from_rho_u_array(rr.ravel(), uu.ravel(), p, t, x)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise ValueError("the steam table range leaves the IF97 regions 2 and 4; narrow it")
    # casadi wants the values with the first grid dimension running fastest
    pf = ca.interpolant("p_rho_u", "bspline", [rho, u], p.reshape(n, n).ravel(order="F"))
    tf = ca.interpolant("t_rho_u", "bspline", [rho, u], t.reshape(n, n).ravel(order="F"))
    return pf, tf


def casadi_ops(pf: Any, tf: Any) -> SimpleNamespace:
    """The ``ops`` namespace of the kernels over CasADi SX, with the header's steam table."""
    import casadi as ca

    def steam_pt(rho: Any, u: Any) -> tuple[Any, Any]:
        arg = ca.vertcat(rho, u)
        return pf(arg), tf(arg)

    return SimpleNamespace(
        fmax=ca.fmax,
        fmin=ca.fmin,
        clip=lambda a, lo, hi: ca.fmin(ca.fmax(a, lo), hi),
        select=lambda c, a, b: ca.if_else(c > 0, a, b),
        sqrt=ca.sqrt,
        exp=ca.exp,
        steam_pt=steam_pt,
        CP_WATER=_ops.CP_WATER,
        RHO_WATER=_ops.RHO_WATER,
        K_WATER=_ops.K_WATER,
        T_REF=_ops.T_REF,
    )


def park_rhs_sx(park: Park, header_margin: float = 0.6) -> tuple[Any, Any, Any, Any]:
    """Symbolic (x, u, dx/dt, y) of the park in CasADi SX, parameters fixed at ``park.params``."""
    import casadi as ca

    from twin.units._backend import retarget

    heads = [u for u in park._units if u.spec.model == "steam_header"]
    if heads:
        h = heads[0]
        m0, u0 = park.x0[h.xo], park.x0[h.xo + 1]
        rho0 = m0 / h.params["volume"]
        spec = u0 / m0
        pf, tf = steam_table(
            (rho0 * (1 - header_margin), rho0 * (1 + header_margin)), (spec - 2.0e5, spec + 2.5e5)
        )
    else:
        pf = tf = None
    ns = casadi_ops(pf, tf)
    f = retarget(park._module._rhs, ns)
    x = ca.SX.sym("x", park.n_states)
    u = ca.SX.sym("u", park.n_inputs)
    dx: list[Any] = [0.0] * park.n_states
    y: list[Any] = [0.0] * park.n_outputs
    b: list[Any] = [0.0] * 4
    f(0.0, x, u, park.params, dx, y, b)
    return x, u, ca.vertcat(*dx), ca.vertcat(*y)
