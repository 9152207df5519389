"""Engineering units at the config and display edges; SI inside.

A value is either a plain number (already in the field's SI unit, or in the unit named by the field's
suffix such as ``capacity_mw``) or a string ``"<number> <unit>"`` such as ``"10 bar"`` or ``"72 degC"``.
Conversions are affine: ``si = value * factor + offset``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UnitDef:
    si: str  # SI unit this converts to
    factor: float
    offset: float = 0.0


# Keys are case-sensitive symbols as written in configs; SI units map to themselves.
UNITS: dict[str, UnitDef] = {
    # dimensionless
    "1": UnitDef("1", 1.0),
    "%": UnitDef("1", 0.01),
    "fraction": UnitDef("1", 1.0),
    # power / heat flow
    "W": UnitDef("W", 1.0),
    "kW": UnitDef("W", 1e3),
    "MW": UnitDef("W", 1e6),
    "GW": UnitDef("W", 1e9),
    # energy
    "J": UnitDef("J", 1.0),
    "kJ": UnitDef("J", 1e3),
    "MJ": UnitDef("J", 1e6),
    "GJ": UnitDef("J", 1e9),
    "kWh": UnitDef("J", 3.6e6),
    "MWh": UnitDef("J", 3.6e9),
    "GWh": UnitDef("J", 3.6e12),
    # pressure
    "Pa": UnitDef("Pa", 1.0),
    "kPa": UnitDef("Pa", 1e3),
    "MPa": UnitDef("Pa", 1e6),
    "bar": UnitDef("Pa", 1e5),
    "mbar": UnitDef("Pa", 1e2),
    "barg": UnitDef("Pa", 1e5, 101325.0),
    # temperature (absolute) and temperature difference
    "K": UnitDef("K", 1.0),
    "degC": UnitDef("K", 1.0, 273.15),
    "°C": UnitDef("K", 1.0, 273.15),
    "C": UnitDef("K", 1.0, 273.15),
    "delta_K": UnitDef("K", 1.0),
    # mass flow
    "kg/s": UnitDef("kg/s", 1.0),
    "kg/h": UnitDef("kg/s", 1.0 / 3600.0),
    "t/h": UnitDef("kg/s", 1000.0 / 3600.0),
    # time
    "s": UnitDef("s", 1.0),
    "ms": UnitDef("s", 1e-3),
    "min": UnitDef("s", 60.0),
    "h": UnitDef("s", 3600.0),
    "d": UnitDef("s", 86400.0),
    # rates
    "1/s": UnitDef("1/s", 1.0),
    "1/min": UnitDef("1/s", 1.0 / 60.0),
    "%/min": UnitDef("1/s", 0.01 / 60.0),
    "%/s": UnitDef("1/s", 0.01),
    "W/s": UnitDef("W/s", 1.0),
    "MW/min": UnitDef("W/s", 1e6 / 60.0),
    "kW/min": UnitDef("W/s", 1e3 / 60.0),
    "K/s": UnitDef("K/s", 1.0),
    "K/min": UnitDef("K/s", 1.0 / 60.0),
    "Pa/s": UnitDef("Pa/s", 1.0),
    "bar/min": UnitDef("Pa/s", 1e5 / 60.0),
    "kg/s/min": UnitDef("kg/s/s", 1.0 / 60.0),
    "kg/s/s": UnitDef("kg/s/s", 1.0),
    # geometry and heat transfer
    "m": UnitDef("m", 1.0),
    "mm": UnitDef("m", 1e-3),
    "km": UnitDef("m", 1e3),
    "m3": UnitDef("m3", 1.0),
    "m³": UnitDef("m3", 1.0),
    "W/K": UnitDef("W/K", 1.0),
    "kW/K": UnitDef("W/K", 1e3),
    "MW/K": UnitDef("W/K", 1e6),
    "W/(m.K)": UnitDef("W/(m.K)", 1.0),
    "J/K": UnitDef("J/K", 1.0),
    "MJ/K": UnitDef("J/K", 1e6),
    "J/(m.K)": UnitDef("J/(m.K)", 1.0),
    "kJ/(m.K)": UnitDef("J/(m.K)", 1e3),
    # emissions and money (money is not converted: currency is a config choice)
    "kg/J": UnitDef("kg/J", 1.0),
    "kg/MWh": UnitDef("kg/J", 1.0 / 3.6e9),
    "t/MWh": UnitDef("kg/J", 1000.0 / 3.6e9),
    "EUR/MWh": UnitDef("EUR/J", 1.0 / 3.6e9),
    "EUR/t": UnitDef("EUR/kg", 1e-3),
    "DKK/MWh": UnitDef("DKK/J", 1.0 / 3.6e9),
    "NOK/kWh": UnitDef("NOK/J", 1.0 / 3.6e6),
    # data size
    "B": UnitDef("B", 1.0),
    "kB": UnitDef("B", 1e3),
    "MB": UnitDef("B", 1e6),
    "GB": UnitDef("B", 1e9),
    "KiB": UnitDef("B", 1024.0),
    "MiB": UnitDef("B", 1024.0**2),
    "GiB": UnitDef("B", 1024.0**3),
}

# Field-name suffixes (``capacity_mw``) and the unit they name.
SUFFIXES: dict[str, str] = {
    "w": "W", "kw": "kW", "mw": "MW", "gw": "GW",
    "j": "J", "mj": "MJ", "gj": "GJ", "kwh": "kWh", "mwh": "MWh", "gwh": "GWh",
    "pa": "Pa", "kpa": "kPa", "mpa": "MPa", "bar": "bar", "barg": "barg",
    "k": "K", "c": "degC", "degc": "degC",
    "kg_s": "kg/s", "kg_h": "kg/h", "t_h": "t/h",
    "s": "s", "ms": "ms", "min": "min", "h": "h",
    "m": "m", "mm": "mm", "km": "km", "m3": "m3",
    "w_k": "W/K", "kw_k": "kW/K", "mw_k": "MW/K", "w_mk": "W/(m.K)", "j_k": "J/K", "mj_k": "MJ/K",
    "j_mk": "J/(m.K)", "kj_mk": "kJ/(m.K)",
    "pct": "%", "frac": "fraction",
    "per_s": "1/s", "per_min": "1/min", "pct_min": "%/min",
    "kg_mwh": "kg/MWh", "t_mwh": "t/MWh", "eur_mwh": "EUR/MWh",
}

_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


class UnitError(ValueError):
    """A value whose unit is unknown or of the wrong kind; the message says what would be accepted."""


def si_of(unit: str) -> str:
    if unit not in UNITS:
        raise UnitError(f"unknown unit {unit!r}; known units: {', '.join(sorted(UNITS))}")
    return UNITS[unit].si


def to_si(value: float, unit: str) -> float:
    d = UNITS.get(unit)
    if d is None:
        raise UnitError(f"unknown unit {unit!r}; known units: {', '.join(sorted(UNITS))}")
    return value * d.factor + d.offset


def from_si(value: float, unit: str) -> float:
    d = UNITS.get(unit)
    if d is None:
        raise UnitError(f"unknown unit {unit!r}")
    return (value - d.offset) / d.factor


def compatible_units(si_unit: str) -> list[str]:
    return sorted(u for u, d in UNITS.items() if d.si == si_unit)


def parse_quantity(text: str | float | int, si_unit: str) -> float:
    """Parse ``"10 bar"`` (or a bare number, taken as already SI) into a float in ``si_unit``."""
    if isinstance(text, bool):
        raise UnitError(f"expected a number with a unit in {si_unit}, got a boolean")
    if isinstance(text, int | float):
        value = float(text)
        if si_unit not in ("1", "s") and not math.isfinite(value):
            raise UnitError("expected a finite number")
        return value
    if not isinstance(text, str):
        raise UnitError(f"expected a number with a unit of {si_unit} such as '10 {si_unit}', got {text!r}")
    m = _NUMBER_UNIT.match(text)
    if not m:
        raise UnitError(f"expected '<number> <unit>' such as '10 {compatible_units(si_unit)[:1] or [si_unit]}', got {text!r}")
    number, unit = float(m.group(1)), (m.group(2) or si_unit)
    if unit not in UNITS:
        raise UnitError(
            f"unknown unit {unit!r} in {text!r}; for this field use one of: {', '.join(compatible_units(si_unit))}"
        )
    if UNITS[unit].si != si_unit:
        raise UnitError(
            f"{text!r} is in {unit}, which is not a unit of {si_unit}; use one of: "
            f"{', '.join(compatible_units(si_unit))}"
        )
    return to_si(number, unit)


def parse_duration(text: str | float | int) -> float:
    """A duration: ``"15 min"``, ``"24h"``, ``"30 s"`` or a number of seconds [s]."""
    return parse_quantity(text, "s")


def split_suffix(key: str) -> tuple[str, str | None]:
    """``"capacity_mw"`` → ``("capacity", "MW")``; a key without a known suffix → ``(key, None)``.

    The longest matching suffix wins, so ``loss_w_k`` is W/K rather than K.
    """
    best: tuple[str, str | None] = (key, None)
    for suffix, unit in SUFFIXES.items():
        tail = "_" + suffix
        longer = best[1] is None or len(tail) > len(key) - len(best[0])
        if key.endswith(tail) and len(key) > len(tail) and longer:
            best = (key[: -len(tail)], unit)
    return best
