"""Process steam consumer: demand -> steam flow through a valve law, condensate returned.

    m = demand * design_flow * sqrt(max(p - p_b, 0) / (p_nom - p_b))

(the consumer's valve opening set for the design flow at the header's nominal pressure p_nom; p_b =
1 bar back pressure), heat drawn Q = m (h - h_cond) with h the header enthalpy and h_cond the IF97
enthalpy of the condensate at ``condensate_temperature``; condensate_return * m [kg/s] flows back to the
boiler house. Reference: Modelica.Fluid.Valves.ValveCompressible (sqrt valve law, simplified);
IAPWS R7-97(2012) for h_cond.
"""

from __future__ import annotations

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

PARAMS = ("design_flow", "condensate_return", "condensate_temperature", "_h_condensate")
OUTPUTS = ("steam_flow", "heat_flow", "condensate_flow")
P_BACK = 1.0e5  # [Pa]


def _steam_consumer(
    p: Vec, po: int, demand: float, pres: float, h: float, p_nom: float, y: Vec, yo: int
) -> float:
    """y = steam flow [kg/s], heat [W], condensate return [kg/s]; returns the steam flow [kg/s]."""
    ratio = ops.fmax(pres - P_BACK, 0.0) / (p_nom - P_BACK)
    m = ops.fmax(demand, 0.0) * p[po] * ops.sqrt(ratio)
    y[yo] = m
    y[yo + 1] = m * (h - p[po + 3])
    y[yo + 2] = m * p[po + 1]
    return m


steam_consumer = jit(_steam_consumer)
