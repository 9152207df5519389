"""Stratified hot-water storage tank: n layers, conduction, ambient loss, inversion mixing.

States: layer temperatures T_0 (top) .. T_n-1 (bottom) [K]. Layer mass m = rho V / n [kg]. With the
charge flow m_c = max(m_dot, 0) entering the top at T_top,in and the discharge flow
m_d = max(-m_dot, 0) entering the bottom at T_bottom,in:

    m cp dT_i/dt = m_c cp (T_i-1 - T_i) + m_d cp (T_i+1 - T_i)             (advection, upwind)
                 + K (T_i-1 - 2 T_i + T_i+1)                               (conduction, K = k_w A / dz)
                 + (UA / n) (T_amb - T_i)                                  (loss to ambient)
                 + (m cp / tau_mix) [max(T_i+1 - T_i, 0) - max(T_i - T_i-1, 0)]  (inversion mixing)

with T_-1 = T_top,in for advection and no conduction through the ends. The mixing term moves heat up
wherever a lower layer is warmer than the one above (buoyancy), with time constant tau_mix [s].
m_dot is clipped to +-max_flow. State of charge = mean((T_i - T_min) / (T_max - T_min)).
Reference: Modelica Buildings, Fluid.Storage.Stratified and Fluid.Storage.BaseClasses.Buoyancy.
"""

from __future__ import annotations

from collections.abc import Mapping

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

PARAMS = (
    "volume",
    "height",
    "nodes",
    "loss_coefficient",
    "ambient_temperature",
    "max_temperature",
    "min_temperature",
    "max_flow",
    "mixing_time_constant",
)
OUTPUTS = ("top_temperature", "bottom_temperature", "state_of_charge", "heat_flow")


def n_states(params: Mapping[str, float]) -> int:
    return int(params["nodes"])


def _flows(p: Vec, po: int, m_sp: float, m_dh: float, m_min: float) -> tuple[float, float]:
    """(charge, discharge) flows [kg/s] from the setpoint [kg/s]: clipped to max_flow, and the discharge
    to the district-heating flow m_dh less a minimum plant circulation m_min [kg/s]."""
    m = ops.clip(m_sp, -p[po + 7], p[po + 7])
    return ops.fmax(m, 0.0), ops.fmin(ops.fmax(-m, 0.0), ops.fmax(m_dh - m_min, 0.0))


flows = jit(_flows)


def _storage_tank(
    x: Vec,
    xo: int,
    p: Vec,
    po: int,
    m_charge: float,
    t_top_in: float,
    m_discharge: float,
    t_bottom_in: float,
    t_amb: float,
    dx: Vec,
    y: Vec,
    yo: int,
) -> tuple[float, float]:
    """Derivatives [K/s] into dx[xo:xo+n]; y = top [K], bottom [K], state of charge [-], heat into the
    tank [W]. Flows [kg/s] >= 0. Returns (heat carried into the tank [W], heat gained from ambient [W])."""
    n = int(p[po + 2])
    cp = ops.CP_WATER
    m = ops.RHO_WATER * p[po] / n
    cap = m * cp
    area = p[po] / p[po + 1]
    k = ops.K_WATER * area / (p[po + 1] / n)
    ua = p[po + 3] / n
    mix = cap / p[po + 8]
    fc = m_charge * cp
    fd = m_discharge * cp
    soc = 0.0
    gain = 0.0
    for i in range(n):
        t = x[xo + i]
        q = ua * (t_amb - t)
        gain = gain + q
        if i == 0:
            q = q + fc * (t_top_in - t)
        else:
            up = x[xo + i - 1]
            q = q + fc * (up - t) + k * (up - t) - mix * ops.fmax(t - up, 0.0)
        if i == n - 1:
            q = q + fd * (t_bottom_in - t)
        else:
            dn = x[xo + i + 1]
            q = q + fd * (dn - t) + k * (dn - t) + mix * ops.fmax(dn - t, 0.0)
        dx[xo + i] = q / cap
        soc = soc + (t - p[po + 6]) / (p[po + 5] - p[po + 6])
    t_top = x[xo]
    t_bot = x[xo + n - 1]
    heat = fc * (t_top_in - t_bot) - fd * (t_top - t_bottom_in)
    y[yo] = t_top
    y[yo + 1] = t_bot
    y[yo + 2] = soc / n
    y[yo + 3] = heat
    return heat, gain


storage_tank = jit(_storage_tank)


def energy_weights(params: Mapping[str, float]) -> list[float]:
    n = int(params["nodes"])
    return [ops.RHO_WATER * params["volume"] / n * ops.CP_WATER] * n
