"""District-heating demand node (a town's substations lumped): heat demand from a profile.

Demanded heat Q = demand * design_load [W]. The substations draw the flow that meets it at the nominal
supply temperature T_nom = (T_s,min + T_s,max) / 2,

    m = clip(Q / (cp max(T_nom - T_r, 5 K)), m_min, m_max),   m_max = design_load / (cp (T_s,min - T_r)),

T_r [K] the return temperature (input ``return_temperature``, default the parameter), m_min =
``min_flow_fraction`` m_max (bypass circulation). The heat delivered follows the supply temperature
T_s [K] that actually arrives: delivered = m cp (T_s - T_r) [W] (radiator output rises and falls with
the supply temperature; this makes the network self-regulating, T_s settles where production meets
delivery), unmet = max(Q - delivered, 0) [W].
Reference: quasi-static substation model as in Modelica Buildings, Experimental.DHC.Loads (ideal
flow control); load shape from Li et al. 2022, Energy 239:122103.
"""

from __future__ import annotations

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

PARAMS = (
    "design_load",
    "min_supply_temperature",
    "max_supply_temperature",
    "return_temperature",
    "min_flow_fraction",
)
OUTPUTS = ("heat_flow", "supply_temperature", "unmet", "delivered", "flow")
MIN_DT = 5.0  # [K]


def _flow(p: Vec, po: int, demand: float, t_supply: float, t_return: float) -> tuple[float, float]:
    """(flow [kg/s], demanded heat [W]) of the node for supply temperature ``t_supply`` [K]."""
    q = ops.fmax(demand, 0.0) * p[po]
    m_max = p[po] / (ops.CP_WATER * (p[po + 1] - t_return))
    m = q / (ops.CP_WATER * ops.fmax(t_supply - t_return, MIN_DT))
    return ops.clip(m, p[po + 4] * m_max, m_max), q


flow = jit(_flow)


def _min_flow(p: Vec, po: int, t_return: float) -> float:
    """Bypass (minimum) circulation flow [kg/s]."""
    return p[po + 4] * p[po] / (ops.CP_WATER * (p[po + 1] - t_return))


min_flow = jit(_min_flow)


def _heat_demand(q: float, m: float, t_supply: float, t_return: float, y: Vec, yo: int) -> float:
    """y = demand [W], supply temperature [K], unmet [W], delivered [W], flow [kg/s]; returns delivered."""
    delivered = m * ops.CP_WATER * (t_supply - t_return)
    y[yo] = q
    y[yo + 1] = t_supply
    y[yo + 2] = ops.fmax(q - delivered, 0.0)
    y[yo + 3] = delivered
    y[yo + 4] = m
    return delivered


heat_demand = jit(_heat_demand)
