"""Catalog of unit models: their parameters, ports and named quantities, as plain tables.

This module is pure Python (no numba, no numpy) so that config validation and ``symtwin --help`` stay
fast. The numba kernels in ``twin.units`` implement exactly what is declared here; a test keeps the two
in step. Every parameter is in SI units inside (``unit`` names the SI unit); the config edge converts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Medium(enum.StrEnum):
    STEAM = "steam"
    HOT_WATER = "hot_water"
    WASTE_HEAT = "waste_heat"
    ELECTRICITY = "electricity"
    FUEL = "fuel"


class PortDirection(enum.StrEnum):
    IN = "in"
    OUT = "out"


class QuantityKind(enum.StrEnum):
    STATE = "state"  # integrated by the twin
    OUTPUT = "output"  # algebraic function of states and inputs
    INPUT = "input"  # boundary input (measured or from a profile)
    SETPOINT = "setpoint"  # decision written by the controller


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a unit model.

    name: key in the config (a unit-aware string ``"10 bar"`` or ``<name>_<unit suffix>: number``).
    unit: SI unit of the value inside the twin ("1" for dimensionless).
    default: value used when the config omits it; None means required.
    lo, hi: physically possible range (inclusive) in SI units.
    """

    name: str
    unit: str
    doc: str
    default: float | None = None
    lo: float = float("-inf")
    hi: float = float("inf")
    integer: bool = False


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    medium: Medium
    direction: PortDirection


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    unit: str
    kind: QuantityKind
    doc: str


@dataclass(frozen=True, slots=True)
class UnitModel:
    name: str
    doc: str
    reference: str
    params: tuple[Param, ...]
    ports: tuple[Port, ...]
    quantities: tuple[Quantity, ...]
    # A profile (demand, availability) this unit needs as a boundary input, if any.
    profile_inputs: tuple[str, ...] = field(default=())

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def port(self, name: str) -> Port | None:
        return next((p for p in self.ports if p.name == name), None)

    def quantity(self, name: str) -> Quantity | None:
        return next((q for q in self.quantities if q.name == name), None)


_IN, _OUT = PortDirection.IN, PortDirection.OUT
_S, _O, _I, _SP = QuantityKind.STATE, QuantityKind.OUTPUT, QuantityKind.INPUT, QuantityKind.SETPOINT
_FRAC: dict[str, Any] = dict(lo=0.0, hi=1.0)
_TEMP: dict[str, Any] = dict(lo=273.16, hi=1073.15)  # IF97 regions 1/2 range we use [K]

_BOILER_PARAMS = (
    Param("min_load", "1", "minimum stable load as a fraction of capacity", 0.3, **_FRAC),
    Param("time_constant", "s", "first-order lag of heat output behind the load setpoint", 600.0, 1.0, 1e5),
    Param("ramp_rate", "1/s", "largest change of load per second (slew limit)", 0.02 / 60.0, 1e-6, 1.0),
    Param("efficiency", "1", "fuel-to-heat efficiency (lower heating value)", 0.9, 0.05, 1.2),
    Param("co2_per_fuel", "kg/J", "CO2 emitted per joule of fuel", 0.0, 0.0, 1e-6),
)

UNIT_MODELS: dict[str, UnitModel] = {
    m.name: m
    for m in (
        UnitModel(
            "chp_boiler",
            "Combined heat and power boiler with steam extraction and a district-heating condenser.",
            "Modelica.Fluid.Examples.DrumBoiler (lumped); first-order load dynamics with slew limit",
            (
                Param("steam_capacity", "kg/s", "largest process-steam extraction", None, 0.0, 1e4),
                Param("heat_capacity", "W", "largest heat to district heating", 0.0, 0.0, 1e10),
                Param("fuel_capacity", "W", "fuel input at full load", None, 1e3, 1e11),
                Param("power_ratio", "1", "electric output per unit of fuel at full load", 0.25, 0.0, 0.6),
                Param("steam_pressure", "Pa", "extraction pressure", 10e5, 1e5, 1e7),
                Param("steam_temperature", "K", "extraction temperature", 453.15, **_TEMP),
                Param(
                    "feedwater_temperature", "K", "feedwater / condensate return temperature", 378.15, **_TEMP
                ),
                *_BOILER_PARAMS,
            ),
            (Port("steam_out", Medium.STEAM, _OUT), Port("heat_out", Medium.HOT_WATER, _OUT)),
            (
                Quantity("load", "1", _S, "fuel load as a fraction of fuel capacity"),
                Quantity("load_setpoint", "1", _SP, "load demanded by the controller"),
                Quantity("heat_split_setpoint", "1", _SP, "share of useful heat sent to district heating"),
                Quantity("steam_flow", "kg/s", _O, "process steam extracted"),
                Quantity("heat_flow", "W", _O, "heat delivered to district heating"),
                Quantity("fuel_flow", "W", _O, "fuel power"),
                Quantity("electric_power", "W", _O, "electric output"),
            ),
        ),
        UnitModel(
            "gas_boiler",
            "Gas-fired boiler (backup steam or peak hot water).",
            "first-order lag with slew limit and minimum load",
            (
                Param("capacity", "W", "largest heat output", None, 1e3, 1e10),
                Param("medium", "1", "0: hot water, 1: steam", 0.0, 0.0, 1.0, integer=True),
                Param("steam_pressure", "Pa", "steam pressure when medium is steam", 10e5, 1e5, 1e7),
                Param("supply_temperature", "K", "hot-water supply temperature", 363.15, **_TEMP),
                Param(
                    "feedwater_temperature",
                    "K",
                    "feedwater temperature when medium is steam",
                    378.15,
                    **_TEMP,
                ),
                *_BOILER_PARAMS,
            ),
            (Port("steam_out", Medium.STEAM, _OUT), Port("heat_out", Medium.HOT_WATER, _OUT)),
            (
                Quantity("load", "1", _S, "load as a fraction of capacity"),
                Quantity("load_setpoint", "1", _SP, "load demanded by the controller"),
                Quantity("heat_flow", "W", _O, "heat output"),
                Quantity("steam_flow", "kg/s", _O, "steam output when medium is steam"),
                Quantity("fuel_flow", "W", _O, "fuel power"),
            ),
        ),
        UnitModel(
            "steam_header",
            "Steam header (distribution main): mass and internal energy balance, pressure from IF97.",
            "Modelica.Fluid.Examples.DrumBoiler; IAPWS R7-97(2012)",
            (
                Param("volume", "m3", "header volume", None, 0.01, 1e5),
                Param("nominal_pressure", "Pa", "design pressure", 10e5, 1e5, 1e7),
                Param("max_pressure", "Pa", "relief pressure", 12e5, 1e5, 2e7),
                Param("min_pressure", "Pa", "lowest pressure consumers accept", 8e5, 1e4, 1e7),
                Param("heat_loss", "W/K", "loss coefficient to ambient", 100.0, 0.0, 1e6),
                Param(
                    "ambient_temperature",
                    "K",
                    "ambient temperature around the header",
                    283.15,
                    223.15,
                    323.15,
                ),
            ),
            (Port("steam_in", Medium.STEAM, _IN), Port("steam_out", Medium.STEAM, _OUT)),
            (
                Quantity("mass", "kg", _S, "steam mass M"),
                Quantity("internal_energy", "J", _S, "internal energy U"),
                Quantity("pressure", "Pa", _O, "header pressure"),
                Quantity("temperature", "K", _O, "header temperature"),
                Quantity("vent_flow", "kg/s", _O, "steam vented by the relief valve"),
                Quantity("enthalpy", "J/kg", _O, "specific enthalpy of the header steam"),
            ),
        ),
        UnitModel(
            "steam_consumer",
            "Process steam consumer: heat demand drawn as steam, condensate returned.",
            "energy balance with IF97 enthalpies",
            (
                Param("design_flow", "kg/s", "steam flow at a demand of 1.0", None, 0.0, 1e4),
                Param("condensate_return", "1", "fraction of condensate returned", 0.8, **_FRAC),
                Param("condensate_temperature", "K", "condensate temperature", 363.15, **_TEMP),
            ),
            (Port("steam_in", Medium.STEAM, _IN), Port("waste_heat_out", Medium.WASTE_HEAT, _OUT)),
            (
                Quantity("demand", "1", _I, "steam demand as a fraction of design flow"),
                Quantity("steam_flow", "kg/s", _O, "steam drawn"),
                Quantity("heat_flow", "W", _O, "heat drawn from steam"),
                Quantity("condensate_flow", "kg/s", _O, "condensate returned"),
            ),
            ("demand",),
        ),
        UnitModel(
            "surplus_heat",
            "Process surplus heat offered to district heating (refinery coolers, pharma cooling water).",
            "Knudsen et al. 2019, Energies 12:1877",
            (
                Param("capacity", "W", "largest surplus heat", None, 0.0, 1e10),
                Param("temperature", "K", "temperature at which the heat is offered", 363.15, **_TEMP),
                Param(
                    "return_temperature",
                    "K",
                    "temperature the stream is cooled to at full use",
                    313.15,
                    **_TEMP,
                ),
            ),
            (Port("heat_out", Medium.WASTE_HEAT, _OUT),),
            (
                Quantity("available", "1", _I, "available surplus heat as a fraction of capacity"),
                Quantity("use_setpoint", "1", _SP, "fraction of the available heat taken"),
                Quantity("heat_flow", "W", _O, "surplus heat offered to the stream (taken)"),
                Quantity("mass_flow", "kg/s", _O, "mass flow of the surplus-heat stream"),
            ),
            ("available",),
        ),
        UnitModel(
            "heat_exchanger",
            "Counter-flow heat exchanger: N finite volumes per side plus a wall node per cell.",
            "Modelica.Fluid.Examples.HeatExchanger; Incropera eq. 11.30 (epsilon-NTU, counter flow)",
            (
                Param("ua", "W/K", "overall conductance, clean", None, 1.0, 1e9),
                Param("cells", "1", "finite volumes per side", 20.0, 1.0, 500.0, integer=True),
                Param("hot_volume", "m3", "hot-side fluid volume", 1.0, 1e-4, 1e4),
                Param("cold_volume", "m3", "cold-side fluid volume", 1.0, 1e-4, 1e4),
                Param("wall_heat_capacity", "J/K", "heat capacity of the wall", 1e6, 0.0, 1e12),
                Param("hot_flow", "kg/s", "design hot-side flow", None, 0.0, 1e5),
                Param("cold_flow", "kg/s", "design cold-side flow", None, 0.0, 1e5),
            ),
            (
                Port("hot_in", Medium.HOT_WATER, _IN),
                Port("hot_out", Medium.HOT_WATER, _OUT),
                Port("cold_in", Medium.HOT_WATER, _IN),
                Port("cold_out", Medium.HOT_WATER, _OUT),
            ),
            (
                Quantity("hot_outlet_temperature", "K", _O, "hot-side outlet temperature"),
                Quantity("cold_outlet_temperature", "K", _O, "cold-side outlet temperature"),
                Quantity("heat_flow", "W", _O, "heat transferred"),
                Quantity("fouling", "1", _S, "UA as a fraction of clean UA (estimated)"),
                Quantity("hot_temperature", "K", _S, "hot-side cell temperatures (vector)"),
                Quantity("wall_temperature", "K", _S, "wall temperatures (vector)"),
                Quantity("cold_temperature", "K", _S, "cold-side cell temperatures (vector)"),
                Quantity(
                    "hot_inlet_temperature", "K", _I, "hot inlet, used when the hot side is not connected"
                ),
                Quantity("hot_mass_flow", "kg/s", _I, "hot flow, used when the hot side is not connected"),
                Quantity(
                    "cold_inlet_temperature", "K", _I, "cold inlet, used when the cold side is not connected"
                ),
                Quantity("cold_mass_flow", "kg/s", _I, "cold flow, used when the cold side is not connected"),
            ),
        ),
        UnitModel(
            "storage_tank",
            "Stratified hot-water storage tank: n nodes, conduction, ambient loss, inversion mixing.",
            "Modelica Buildings Fluid.Storage.Stratified",
            (
                Param("volume", "m3", "water volume", None, 0.1, 1e6),
                Param("height", "m", "tank height", None, 0.5, 200.0),
                Param("nodes", "1", "number of layers", 10.0, 2.0, 200.0, integer=True),
                Param("loss_coefficient", "W/K", "UA to ambient", 1000.0, 0.0, 1e7),
                Param("ambient_temperature", "K", "ambient temperature", 283.15, 223.15, 323.15),
                Param("max_temperature", "K", "top-layer limit", 368.15, **_TEMP),
                Param("min_temperature", "K", "return-side temperature when empty", 318.15, **_TEMP),
                Param("max_flow", "kg/s", "largest charge or discharge flow", None, 0.0, 1e5),
                Param(
                    "mixing_time_constant",
                    "s",
                    "time constant of inversion (buoyancy) mixing",
                    100.0,
                    1.0,
                    1e5,
                ),
            ),
            (Port("hot_in", Medium.HOT_WATER, _IN), Port("hot_out", Medium.HOT_WATER, _OUT)),
            (
                Quantity("layer_temperature", "K", _S, "layer temperatures, top first (vector)"),
                Quantity("charge_setpoint", "kg/s", _SP, "charge (+) or discharge (-) flow"),
                Quantity("top_temperature", "K", _O, "top-layer temperature"),
                Quantity("bottom_temperature", "K", _O, "bottom-layer temperature"),
                Quantity("state_of_charge", "1", _O, "stored energy between min and max temperature"),
                Quantity("heat_flow", "W", _O, "heat into the tank (+ charge)"),
                Quantity("ambient_temperature", "K", _I, "ambient temperature (default: the parameter)"),
            ),
        ),
        UnitModel(
            "dh_pipe",
            "District-heating pipe: plug-flow transport with heat loss and a separate wall node.",
            "van der Heijde et al. 2017, Energy Convers. Manage. 151:158; Modelica Buildings PlugFlowPipe",
            (
                Param("length", "m", "pipe length", None, 1.0, 1e6),
                Param("inner_diameter", "m", "inner diameter", None, 0.01, 5.0),
                Param(
                    "loss_coefficient", "W/(m.K)", "heat loss per metre and kelvin to ground", 0.3, 0.0, 100.0
                ),
                Param("wall_heat_capacity", "J/(m.K)", "pipe wall heat capacity per metre", 2e4, 0.0, 1e8),
                Param("wall_conductance", "W/(m.K)", "water-to-wall conductance per metre", 500.0, 0.0, 1e7),
                Param("segments", "1", "finite volumes along the pipe", 50.0, 1.0, 2000.0, integer=True),
                Param("ground_temperature", "K", "soil temperature", 281.15, 223.15, 323.15),
            ),
            (Port("hot_in", Medium.HOT_WATER, _IN), Port("hot_out", Medium.HOT_WATER, _OUT)),
            (
                Quantity("water_temperature", "K", _S, "segment water temperatures (vector)"),
                Quantity("wall_temperature", "K", _S, "segment wall temperatures (vector)"),
                Quantity("outlet_temperature", "K", _O, "outlet temperature"),
                Quantity("heat_loss", "W", _O, "heat lost to ground"),
                Quantity("flow", "kg/s", _O, "mass flow (set by the demand downstream)"),
                Quantity("ground_temperature", "K", _I, "soil temperature (default: the parameter)"),
            ),
        ),
        UnitModel(
            "heat_pump",
            "Electric heat pump with Carnot-fraction COP.",
            "Modelica Buildings Fluid.HeatPumps.Carnot_TCon",
            (
                Param("capacity", "W", "largest heat output", None, 1e3, 1e10),
                Param("carnot_efficiency", "1", "eta_C: COP as a fraction of the Carnot COP", 0.5, 0.05, 1.0),
                Param("source_temperature", "K", "heat-source inlet temperature", 297.15, **_TEMP),
                Param("source_cooling", "K", "temperature drop of the source", 10.0, 0.1, 80.0),
                Param("condenser_temperature", "K", "condenser (supply) temperature", 353.15, **_TEMP),
                Param("min_load", "1", "minimum load fraction", 0.2, **_FRAC),
                Param("time_constant", "s", "first-order lag of heat output", 300.0, 1.0, 1e5),
                Param("ramp_rate", "1/s", "largest change of load per second", 0.1 / 60.0, 1e-6, 1.0),
            ),
            (
                Port("source_in", Medium.WASTE_HEAT, _IN),
                Port("heat_out", Medium.HOT_WATER, _OUT),
            ),
            (
                Quantity("load", "1", _S, "load fraction"),
                Quantity("load_setpoint", "1", _SP, "load demanded by the controller"),
                Quantity("heat_flow", "W", _O, "heat delivered"),
                Quantity("electric_power", "W", _O, "electric power drawn"),
                Quantity("cop", "1", _O, "coefficient of performance"),
                Quantity(
                    "source_temperature", "K", _I, "heat-source inlet temperature (default: the parameter)"
                ),
            ),
        ),
        UnitModel(
            "heat_demand",
            "District-heating demand node (a town): load from a profile, supply-temperature band.",
            "measured campus load (Li et al. 2022, Energy 239:122103), scaled",
            (
                Param("design_load", "W", "peak heat demand", None, 0.0, 1e10),
                Param("min_supply_temperature", "K", "lowest acceptable supply temperature", 345.15, **_TEMP),
                Param("max_supply_temperature", "K", "highest allowed supply temperature", 360.15, **_TEMP),
                Param("return_temperature", "K", "return temperature", 318.15, **_TEMP),
                Param(
                    "min_flow_fraction",
                    "1",
                    "bypass flow as a fraction of the largest flow",
                    0.02,
                    0.001,
                    1.0,
                ),
            ),
            (Port("heat_in", Medium.HOT_WATER, _IN),),
            (
                Quantity("demand", "1", _I, "heat demand as a fraction of design load"),
                Quantity("heat_flow", "W", _O, "heat demanded"),
                Quantity("supply_temperature", "K", _O, "supply temperature at the node"),
                Quantity("unmet", "W", _O, "demand not covered"),
                Quantity("delivered", "W", _O, "heat delivered"),
                Quantity("flow", "kg/s", _O, "district-heating flow drawn"),
                Quantity("return_temperature", "K", _I, "return temperature (default: the parameter)"),
            ),
            ("demand",),
        ),
    )
}


def unit_model(name: str) -> UnitModel | None:
    return UNIT_MODELS.get(name)
