"""Electric heat pump with a Carnot-fraction COP and capacity limits.

    COP = eta_C * T_con / (T_con - T_eva),   T_eva = T_source - dT_source,

T_con [K] = ``condenser_temperature``, T_source [K] the source inlet (input ``source_temperature``,
default the parameter), dT_source [K] = ``source_cooling`` (the evaporator temperature is taken at the
leaving source temperature, as in the reference). The temperature lift is bounded below by 5 K so the
COP stays finite. Heat Q = L * capacity [W] with the load L following the setpoint through the same
lag, slew limit and minimum load as the boilers (``twin.units.boiler``); electric power P = Q / COP,
heat from the source Q - P.
Reference: Modelica Buildings, Fluid.HeatPumps.Carnot_TCon (Carnot COP with efficiency eta_Carnot_0).
"""

from __future__ import annotations

from twin.units import _ops as ops
from twin.units._ops import Vec, jit
from twin.units.boiler import load_rate

PARAMS = (
    "capacity",
    "carnot_efficiency",
    "source_temperature",
    "source_cooling",
    "condenser_temperature",
    "min_load",
    "time_constant",
    "ramp_rate",
)
OUTPUTS = ("heat_flow", "electric_power", "cop")
MIN_LIFT = 5.0  # [K]


def _cop(eta: float, t_con: float, t_eva: float) -> float:
    """Carnot-fraction COP [-] from eta_C [-], condenser and evaporator temperatures [K]."""
    return eta * t_con / ops.fmax(t_con - t_eva, MIN_LIFT)


cop = jit(_cop)


def _heat_pump(
    x: Vec, xo: int, p: Vec, po: int, load_sp: float, t_source: float, dx: Vec, y: Vec, yo: int
) -> float:
    """State x[xo] = load [-]. Inputs: load setpoint [-], source temperature [K].
    Writes dx [1/s]; y = heat [W], electric power [W], COP [-]. Returns the heat [W]."""
    load = x[xo]
    dx[xo] = load_rate(load, load_sp, p[po + 5], p[po + 6], p[po + 7])
    heat = load * p[po]
    c = cop(p[po + 1], p[po + 4], t_source - p[po + 3])
    y[yo] = heat
    y[yo + 1] = heat / c
    y[yo + 2] = c
    return heat


heat_pump = jit(_heat_pump)
