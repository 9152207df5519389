"""Steam header (distribution main): mass M [kg] and internal energy U [J], pressure from IF97.

    dM/dt = sum m_in - sum m_out - m_vent
    dU/dt = sum m_in h_in - (sum m_out + m_vent) h - UA_loss (T - T_amb)

with (p, T) = IF97 (rho = M / V, u = U / M) (``twin.steam``, regions 2 and 4: superheated or wet steam)
and h = u + p / rho the enthalpy leaving the header. The relief valve vents
m_vent = k_vent max(p - p_max, 0) [kg/s]; k_vent [kg/(s Pa)] is derived so that the connected
producers' full steam capacity is vented 0.5 bar above ``max_pressure``.
Reference: Modelica.Fluid.Examples.DrumBoiler (mass and energy balance of a steam volume);
IAPWS R7-97(2012).
"""

from __future__ import annotations

from collections.abc import Mapping

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

PARAMS = (
    "volume",
    "nominal_pressure",
    "max_pressure",
    "min_pressure",
    "heat_loss",
    "ambient_temperature",
    "_vent_coefficient",
)
OUTPUTS = ("pressure", "temperature", "vent_flow", "enthalpy")


def _state(x: Vec, xo: int, p: Vec, po: int) -> tuple[float, float, float]:
    """(pressure [Pa], temperature [K], specific enthalpy [J/kg]) of the header contents."""
    m = x[xo]
    rho = m / p[po]
    u = x[xo + 1] / m
    pres, temp = ops.steam_pt(rho, u)
    return pres, temp, u + pres / rho


state = jit(_state)


def _steam_header(
    x: Vec,
    xo: int,
    p: Vec,
    po: int,
    pres: float,
    temp: float,
    h: float,
    m_in: float,
    h_in: float,
    m_out: float,
    dx: Vec,
    y: Vec,
    yo: int,
) -> float:
    """Derivatives dM/dt [kg/s], dU/dt [W]. ``(pres, temp, h)`` from :func:`state`; ``m_in`` [kg/s] and
    ``h_in`` [W] are the summed producer mass and enthalpy flows, ``m_out`` [kg/s] the consumers'.
    y = pressure [Pa], temperature [K], vent flow [kg/s], enthalpy [J/kg]. Returns the vent flow."""
    vent = p[po + 6] * ops.fmax(pres - p[po + 2], 0.0)
    dx[xo] = m_in - m_out - vent
    dx[xo + 1] = h_in - (m_out + vent) * h - p[po + 4] * (temp - p[po + 5])
    y[yo] = pres
    y[yo + 1] = temp
    y[yo + 2] = vent
    y[yo + 3] = h
    return vent


steam_header = jit(_steam_header)


def initial(params: Mapping[str, float], superheat: float = 10.0) -> tuple[float, float]:
    """(M [kg], U [J]) of steam at ``nominal_pressure``, ``superheat`` [K] above saturation."""
    from twin.if97 import load_plain_kernels

    if97 = load_plain_kernels()
    p = params["nominal_pressure"]
    t = float(if97.t_sat(p)) + superheat
    m = float(if97.rho_pt(p, t)) * params["volume"]
    return m, m * float(if97.u_pt(p, t))
