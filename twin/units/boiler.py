"""Boilers: CHP boiler with steam extraction and DH condenser, gas boiler (steam or hot water).

Load dynamics (both): a first-order lag of the load L [-] behind its target with a slew limit,

    dL/dt = clip((L_target - L) / tau, -r, +r),
    L_target = 0 if L_sp <= min_load / 2 else clip(L_sp, min_load, 1),

tau [s] = ``time_constant``, r [1/s] = ``ramp_rate``. A setpoint below half the minimum load switches
the unit off; between that and ``min_load`` it is held at the minimum stable load.
Reference: Modelica.Fluid.Examples.DrumBoiler (lumped load dynamics); first-order lag with rate limit
as in IEC 61131 PT1 + ramp blocks.

CHP energy split (``chp_boiler``): fuel power F = L * fuel_capacity [W], electric power
P = power_ratio * F [W], useful heat Q = (efficiency - power_ratio) * F [W] (``efficiency`` is read as
the total fuel utilisation, heat + power). A share ``heat_split`` of Q goes to district heating, at most
``heat_capacity``; the rest leaves as process steam, at most ``steam_capacity`` [kg/s], with mass flow
Q_steam / (h_steam - h_feed) [kg/s]; heat above both limits is dumped (condenser / cooler).
Gas boiler: heat Q = L * capacity [W], fuel Q / efficiency; as a steam boiler (medium 1) it raises
Q / (h_steam - h_feed) [kg/s] of steam at ``steam_pressure`` (saturated) from feedwater.
"""

from __future__ import annotations

from collections.abc import Mapping

from twin.units import _ops as ops
from twin.units._ops import Vec, jit

# --- shared load dynamics ----------------------------------------------------------------------------


def _load_rate(load: float, setpoint: float, min_load: float, tau: float, ramp: float) -> float:
    """dL/dt [1/s] of load ``load`` [-] towards ``setpoint`` [-] (see module doc)."""
    target = ops.select(setpoint - 0.5 * min_load, ops.clip(setpoint, min_load, 1.0), 0.0)
    return ops.clip((target - load) / tau, -ramp, ramp)


load_rate = jit(_load_rate)

# --- CHP ----------------------------------------------------------------------------------------------
CHP_PARAMS = (
    "steam_capacity",
    "heat_capacity",
    "fuel_capacity",
    "power_ratio",
    "steam_pressure",
    "steam_temperature",
    "feedwater_temperature",
    "min_load",
    "time_constant",
    "ramp_rate",
    "efficiency",
    "co2_per_fuel",
    "_h_steam",  # steam enthalpy at extraction [J/kg], IF97 (derived)
    "_h_feed",  # feedwater enthalpy [J/kg], IF97 (derived)
)
CHP_OUTPUTS = ("steam_flow", "heat_flow", "fuel_flow", "electric_power")


def _chp(
    x: Vec, xo: int, p: Vec, po: int, load_sp: float, split_sp: float, dx: Vec, y: Vec, yo: int
) -> tuple[float, float, float]:
    """CHP boiler. States x[xo] = load [-]. Inputs: load setpoint [-], heat split [-].
    Writes dx[xo] [1/s]; y[yo:yo+4] = steam flow [kg/s], DH heat [W], fuel [W], electric [W].
    Returns (steam mass flow [kg/s], steam enthalpy [J/kg], DH heat [W])."""
    load = x[xo]
    dx[xo] = load_rate(load, load_sp, p[po + 7], p[po + 8], p[po + 9])
    fuel = load * p[po + 2]
    elec = p[po + 3] * fuel
    useful = ops.fmax((p[po + 10] - p[po + 3]) * fuel, 0.0)
    split = ops.clip(split_sp, 0.0, 1.0)
    heat = ops.fmin(split * useful, p[po + 1])
    dh = p[po + 12] - p[po + 13]
    m_steam = ops.fmin((1.0 - split) * useful / dh, p[po + 0])
    y[yo] = m_steam
    y[yo + 1] = heat
    y[yo + 2] = fuel
    y[yo + 3] = elec
    return m_steam, p[po + 12], heat


chp = jit(_chp)

# --- gas boiler ---------------------------------------------------------------------------------------
GAS_PARAMS = (
    "capacity",
    "medium",
    "steam_pressure",
    "supply_temperature",
    "feedwater_temperature",
    "min_load",
    "time_constant",
    "ramp_rate",
    "efficiency",
    "co2_per_fuel",
    "_h_steam",
    "_h_feed",
)
GAS_OUTPUTS = ("heat_flow", "steam_flow", "fuel_flow")


def _gas(
    x: Vec, xo: int, p: Vec, po: int, load_sp: float, dx: Vec, y: Vec, yo: int
) -> tuple[float, float, float]:
    """Gas boiler. State x[xo] = load [-]; input load setpoint [-]. Writes dx [1/s] and
    y = heat [W], steam flow [kg/s], fuel [W]. Returns (steam flow [kg/s], steam enthalpy [J/kg],
    hot-water heat [W]); exactly one of the two is non-zero, by ``medium``."""
    load = x[xo]
    dx[xo] = load_rate(load, load_sp, p[po + 5], p[po + 6], p[po + 7])
    heat = load * p[po + 0]
    is_steam = p[po + 1]
    m_steam = is_steam * heat / (p[po + 10] - p[po + 11])
    y[yo] = heat
    y[yo + 1] = m_steam
    y[yo + 2] = heat / p[po + 8]
    return m_steam, p[po + 10], (1.0 - is_steam) * heat


gas = jit(_gas)


def steam_enthalpies(
    params: Mapping[str, float], pressure: float, temperature: float | None
) -> dict[str, float]:
    """Derived parameters ``_h_steam``, ``_h_feed`` [J/kg] from IF97: steam at ``pressure`` [Pa] and
    ``temperature`` [K] (saturated vapour if None or not above saturation), feedwater as liquid."""
    # plain (uncompiled) IF97 kernels: a few calls at build time, no numba cache to load
    from twin.if97 import load_plain_kernels

    if97 = load_plain_kernels()

    t_sat = float(if97.t_sat(pressure))
    if temperature is None or temperature <= t_sat + 1e-3:
        h_steam = float(if97.h_pt(pressure, t_sat + 1e-3))
    else:
        h_steam = float(if97.h_pt(pressure, temperature))
    t_feed = min(float(params["feedwater_temperature"]), t_sat - 1.0)
    return {"_h_steam": h_steam, "_h_feed": float(if97.h_pt(pressure, t_feed))}
