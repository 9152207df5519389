"""Counter-flow heat exchanger: N finite volumes per side and a wall node per cell (upwind FV).

States: ``fouling`` f [-] (UA as a fraction of the clean UA; constant in the model, moved by the
estimator), then per cell k = 0..N-1 the hot fluid T_h,k, the wall T_w,k and the cold fluid T_c,k [K].
The hot side flows from cell 0 to N-1, the cold side from N-1 to 0 (counter flow). Per cell

    m_h cp dT_h,k/dt = m_dot_h cp (T_h,k-1 - T_h,k) - G (T_h,k - T_w,k)
    C_w    dT_w,k/dt = G (T_h,k - T_w,k) - G (T_w,k - T_c,k)
    m_c cp dT_c,k/dt = m_dot_c cp (T_c,k+1 - T_c,k) + G (T_w,k - T_c,k)

with T_h,-1 = hot inlet, T_c,N = cold inlet, cell masses m = rho V / N [kg], wall capacity
C_w = wall_heat_capacity / N [J/K] and film conductance G = 2 f UA / N [W/K] on each side, so that
the two films in series give f UA / N per cell. At steady state the wall drops out and the model is
the upwind discretisation of the counter-flow exchanger; its effectiveness converges to the
epsilon-NTU relation as O(1/N). A wall capacity of 0 is replaced by 1e-3 of the cell fluid capacity.
Flows are clipped at 0 (no reversal).
References: Modelica.Fluid.Examples.HeatExchanger (FV per side + wall); Incropera, Fundamentals of
Heat and Mass Transfer, eq. 11.30 (counter-flow effectiveness).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

PARAMS = ("ua", "cells", "hot_volume", "cold_volume", "wall_heat_capacity", "hot_flow", "cold_flow")
OUTPUTS = ("hot_outlet_temperature", "cold_outlet_temperature", "heat_flow")


def n_states(params: Mapping[str, float]) -> int:
    return 1 + 3 * int(params["cells"])


def _heat_exchanger(
    x: Vec,
    xo: int,
    p: Vec,
    po: int,
    t_hot_in: float,
    m_hot: float,
    t_cold_in: float,
    m_cold: float,
    dx: Vec,
    y: Vec,
    yo: int,
) -> tuple[float, float]:
    """Derivatives [K/s] into dx[xo:xo+1+3N]; y = hot outlet [K], cold outlet [K], heat to the cold side
    [W]. Inlet temperatures [K] and flows [kg/s] are the boundary conditions. Returns
    (cold outlet [K], heat to the cold side [W])."""
    n = int(p[po + 1])
    cp = ops.CP_WATER
    mh = ops.fmax(m_hot, 0.0) * cp  # capacity rates [W/K]
    mc = ops.fmax(m_cold, 0.0) * cp
    cap_h = ops.RHO_WATER * p[po + 2] / n * cp  # cell heat capacities [J/K]
    cap_c = ops.RHO_WATER * p[po + 3] / n * cp
    cap_w = p[po + 4] / n
    if cap_w <= 0.0:
        cap_w = 1e-3 * min(cap_h, cap_c)
    g = 2.0 * x[xo] * p[po] / n
    dx[xo] = 0.0
    q = 0.0
    for k in range(n):
        i = xo + 1 + 3 * k
        th = x[i]
        tw = x[i + 1]
        tc = x[i + 2]
        th_up = t_hot_in if k == 0 else x[i - 3]
        tc_up = t_cold_in if k == n - 1 else x[i + 5]
        q_h = g * (th - tw)
        q_c = g * (tw - tc)
        dx[i] = (mh * (th_up - th) - q_h) / cap_h
        dx[i + 1] = (q_h - q_c) / cap_w
        dx[i + 2] = (mc * (tc_up - tc) + q_c) / cap_c
        q = q + q_c
    t_hot_out = x[xo + 1 + 3 * (n - 1)]
    t_cold_out = x[xo + 3]
    y[yo] = t_hot_out
    y[yo + 1] = t_cold_out
    y[yo + 2] = q
    return t_cold_out, q


heat_exchanger = jit(_heat_exchanger)


def energy_weights(params: Mapping[str, float]) -> list[float]:
    """d(stored energy)/d(state) [J/K] for each state (fouling: 0), for the energy balance."""
    n = int(params["cells"])
    cp = ops.CP_WATER
    cap_h = ops.RHO_WATER * params["hot_volume"] / n * cp
    cap_c = ops.RHO_WATER * params["cold_volume"] / n * cp
    cap_w = params["wall_heat_capacity"] / n
    if cap_w <= 0.0:
        cap_w = 1e-3 * min(cap_h, cap_c)
    return [0.0] + [cap_h, cap_w, cap_c] * n


def effectiveness(ntu: float, cr: float) -> float:
    """Counter-flow effectiveness [-] from NTU = UA / C_min and Cr = C_min / C_max (Incropera eq.
    11.30a; eq. 11.30b, NTU / (1 + NTU), for Cr = 1)."""
    if abs(1.0 - cr) < 1e-9:
        return ntu / (1.0 + ntu)
    e = math.exp(-ntu * (1.0 - cr))
    return (1.0 - e) / (1.0 - cr * e)
