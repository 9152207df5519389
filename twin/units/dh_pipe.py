"""District-heating pipe: upwind finite volumes with a separate pipe-wall node per segment.

States: water temperatures T_k, then wall temperatures W_k [K], k = 0..S-1 along the flow. Per segment
of length dx = L / S:

    m cp dT_k/dt = m_dot cp (T_k-1 - T_k) - G (T_k - W_k)
    C    dW_k/dt = G (T_k - W_k) - U (W_k - T_ground)

m = rho A dx [kg], G = wall_conductance dx [W/K], U = loss_coefficient dx [W/K], C = wall_heat_capacity
dx [J/K]; T_-1 = inlet. The front reaches the outlet after the transport delay rho A L / m_dot (the mean
delay of the FV chain is exact; the wall node adds the measured smearing). At steady state the loss
is the analytic exponential T_out - T_g = (T_in - T_g) exp(-U' L / (m_dot cp)) with
U' = 1 / (1/wall_conductance + 1/loss_coefficient), to O(1/S). A wall capacity of 0 is replaced by
1e-3 of the segment water capacity. Flow is clipped at 0 (the supply line does not reverse).
References: van der Heijde et al. 2017, Energy Convers. Manage. 151:158 (wall heat capacity in DH
pipe models); Modelica Buildings, Fluid.FixedResistances.PlugFlowPipe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

PARAMS = (
    "length",
    "inner_diameter",
    "loss_coefficient",
    "wall_heat_capacity",
    "wall_conductance",
    "segments",
    "ground_temperature",
)
OUTPUTS = ("outlet_temperature", "heat_loss", "flow")


def n_states(params: Mapping[str, float]) -> int:
    return 2 * int(params["segments"])


def _dh_pipe(
    x: Vec, xo: int, p: Vec, po: int, t_in: float, m_dot: float, t_ground: float, dx: Vec, y: Vec, yo: int
) -> tuple[float, float]:
    """Derivatives [K/s] into dx[xo:xo+2S]; y = outlet [K], loss to ground [W], flow [kg/s].
    Returns (outlet temperature [K], heat loss [W])."""
    s = int(p[po + 5])
    seg = p[po] / s
    area = math.pi * 0.25 * p[po + 1] * p[po + 1]
    cap = ops.RHO_WATER * area * seg * ops.CP_WATER
    cap_w = p[po + 3] * seg
    if cap_w <= 0.0:
        cap_w = 1e-3 * cap
    g = p[po + 4] * seg
    u = p[po + 2] * seg
    mc = ops.fmax(m_dot, 0.0) * ops.CP_WATER
    loss = 0.0
    for k in range(s):
        t = x[xo + k]
        w = x[xo + s + k]
        t_up = t_in if k == 0 else x[xo + k - 1]
        q_w = g * (t - w)
        q_g = u * (w - t_ground)
        dx[xo + k] = (mc * (t_up - t) - q_w) / cap
        dx[xo + s + k] = (q_w - q_g) / cap_w
        loss = loss + q_g
    t_out = x[xo + s - 1]
    y[yo] = t_out
    y[yo + 1] = loss
    y[yo + 2] = m_dot
    return t_out, loss


dh_pipe = jit(_dh_pipe)


def energy_weights(params: Mapping[str, float]) -> list[float]:
    """d(stored energy)/d(state) [J/K]."""
    s = int(params["segments"])
    seg = params["length"] / s
    cap = ops.RHO_WATER * math.pi * 0.25 * params["inner_diameter"] ** 2 * seg * ops.CP_WATER
    cap_w = params["wall_heat_capacity"] * seg
    if cap_w <= 0.0:
        cap_w = 1e-3 * cap
    return [cap] * s + [cap_w] * s


def transport_delay(params: Mapping[str, float], m_dot: float) -> float:
    """Transport delay rho A L / m_dot [s] of the water (without the wall)."""
    area = math.pi * 0.25 * params["inner_diameter"] ** 2
    return ops.RHO_WATER * area * params["length"] / m_dot


def steady_outlet(params: Mapping[str, float], t_in: float, m_dot: float, t_ground: float) -> float:
    """Analytic steady outlet temperature [K] of a pipe with water-wall and wall-ground resistances."""
    g, u = params["wall_conductance"], params["loss_coefficient"]
    u_eff = g * u / (g + u) if g + u > 0 else 0.0
    return t_ground + (t_in - t_ground) * math.exp(-u_eff * params["length"] / (m_dot * ops.CP_WATER))
