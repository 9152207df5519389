"""Process surplus heat offered as a hot stream (refinery coolers, pharma cooling water).

The offered heat is Q = clip(use, 0, 1) * clip(available, 0, 1) * capacity [W], carried by a water
stream at ``temperature`` [K] that would be cooled to ``return_temperature`` [K]:
m = Q / (cp (T - T_return)) [kg/s]. Connected to a heat exchanger's hot side, the stream is what
enters the exchanger and the heat actually recovered is the exchanger's ``heat_flow``; connected
straight into a district-heating network, Q enters the supply line as heat.
Reference: Knudsen et al. 2019, Energies 12:1877 (surplus-heat potential as a profile).
"""

from __future__ import annotations

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

PARAMS = ("capacity", "temperature", "return_temperature")
OUTPUTS = ("heat_flow", "mass_flow")


def _surplus_heat(p: Vec, po: int, available: float, use_sp: float, y: Vec, yo: int) -> tuple[float, float]:
    """Writes y = offered heat [W], stream mass flow [kg/s]; returns (heat [W], mass flow [kg/s])."""
    q = ops.clip(use_sp, 0.0, 1.0) * ops.clip(available, 0.0, 1.0) * p[po]
    m = q / (ops.CP_WATER * ops.fmax(p[po + 1] - p[po + 2], 1.0))
    y[yo] = q
    y[yo + 1] = m
    return q, m


surplus_heat = jit(_surplus_heat)
