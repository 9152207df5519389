"""Hand-built ParkSpecs for the twin's tests: a small park and a Kalundborg-like one (SI values)."""

from __future__ import annotations

import numpy as np

from twin.spec import ConnectionSpec, ParkSpec, Profile, UnitSpec


def _c(a: str, b: str, medium: str) -> ConnectionSpec:
    su, sp = a.split(".")
    tu, tp = b.split(".")
    return ConnectionSpec(su, sp, tu, tp, medium)


def small_park(cells: int = 6, segments: int = 8, nodes: int = 4) -> ParkSpec:
    """Steam: gas boiler -> header -> consumer. DH: surplus -> HX -> pipe -> town, with a tank and a HP."""
    units = (
        UnitSpec(
            "boiler",
            "gas_boiler",
            "a",
            {"capacity": 20e6, "medium": 1.0, "time_constant": 120.0, "ramp_rate": 0.01},
        ),
        UnitSpec("header", "steam_header", "a", {"volume": 20.0, "nominal_pressure": 10e5}),
        UnitSpec("plant", "steam_consumer", "b", {"design_flow": 8.0}, {"demand": "steam_demand"}),
        UnitSpec(
            "surplus", "surplus_heat", "b", {"capacity": 5e6, "temperature": 368.15}, {"available": "avail"}
        ),
        UnitSpec(
            "hx",
            "heat_exchanger",
            "b",
            {
                "ua": 3e5,
                "cells": float(cells),
                "hot_flow": 30.0,
                "cold_flow": 40.0,
                "hot_volume": 0.5,
                "cold_volume": 0.5,
                "wall_heat_capacity": 2e5,
            },
        ),
        UnitSpec("hp", "heat_pump", "c", {"capacity": 3e6}),
        UnitSpec(
            "tank",
            "storage_tank",
            "c",
            {"volume": 500.0, "height": 12.0, "nodes": float(nodes), "max_flow": 20.0},
        ),
        UnitSpec(
            "pipe", "dh_pipe", "c", {"length": 2000.0, "inner_diameter": 0.3, "segments": float(segments)}
        ),
        UnitSpec("town", "heat_demand", "c", {"design_load": 12e6}, {"demand": "heat_demand"}),
    )
    conns = (
        _c("boiler.steam_out", "header.steam_in", "steam"),
        _c("header.steam_out", "plant.steam_in", "steam"),
        _c("surplus.heat_out", "hx.hot_in", "waste_heat"),
        _c("hx.cold_out", "pipe.hot_in", "hot_water"),
        _c("hp.heat_out", "pipe.hot_in", "hot_water"),
        _c("tank.hot_out", "pipe.hot_in", "hot_water"),
        _c("pipe.hot_out", "town.heat_in", "hot_water"),
    )
    t = np.arange(0.0, 86400.0 + 1, 3600.0)
    profiles = {
        "steam_demand": Profile("steam_demand", t, 0.6 + 0.2 * np.sin(2 * np.pi * t / 86400.0)),
        "avail": Profile("avail", t, 0.7 + 0.3 * np.cos(2 * np.pi * t / 43200.0)),
        "heat_demand": Profile("heat_demand", t, 0.5 + 0.25 * np.sin(2 * np.pi * (t - 21600) / 86400.0)),
    }
    return ParkSpec("small", units, conns, profiles)


def kalundborg_like(cells: int = 100, segments: int = 100, nodes: int = 20) -> ParkSpec:
    """The reference park's structure (DESIGN.md): CHP, steam header, pharma and refinery consumers, pharma
    backup gas boiler, refinery surplus heat via a heat exchanger to DH, heat pump, tank, peak boiler,
    pipe to the town. With the defaults: 1 + 1 + 2 + 301 + 1 + 20 + 1 + 200 = 527 states."""
    units = (
        UnitSpec(
            "chp",
            "chp_boiler",
            "powerco",
            {"steam_capacity": 54.0, "fuel_capacity": 200e6, "heat_capacity": 60e6, "power_ratio": 0.125},
        ),
        UnitSpec("header", "steam_header", "powerco", {"volume": 80.0, "nominal_pressure": 10e5}),
        UnitSpec("pharma", "steam_consumer", "pharma", {"design_flow": 30.0}, {"demand": "pharma_steam"}),
        UnitSpec(
            "refinery", "steam_consumer", "refinery", {"design_flow": 25.0}, {"demand": "refinery_steam"}
        ),
        UnitSpec("pharma_boiler", "gas_boiler", "pharma", {"capacity": 30e6, "medium": 1.0}),
        UnitSpec(
            "refinery_heat",
            "surplus_heat",
            "refinery",
            {"capacity": 25e6, "temperature": 368.15},
            {"available": "refinery_surplus"},
        ),
        UnitSpec(
            "refinery_hx",
            "heat_exchanger",
            "refinery",
            {
                "ua": 1.5e6,
                "cells": float(cells),
                "hot_flow": 150.0,
                "cold_flow": 200.0,
                "hot_volume": 2.0,
                "cold_volume": 2.0,
                "wall_heat_capacity": 2e6,
            },
        ),
        UnitSpec("heat_pump", "heat_pump", "utility", {"capacity": 10e6}),
        UnitSpec(
            "tank",
            "storage_tank",
            "utility",
            {"volume": 20000.0, "height": 25.0, "nodes": float(nodes), "max_flow": 150.0},
        ),
        UnitSpec("peak_boiler", "gas_boiler", "utility", {"capacity": 40e6, "medium": 0.0}),
        UnitSpec(
            "dh_main",
            "dh_pipe",
            "utility",
            {"length": 4000.0, "inner_diameter": 0.6, "segments": float(segments)},
        ),
        UnitSpec("town", "heat_demand", "utility", {"design_load": 80e6}, {"demand": "town_heat"}),
    )
    conns = (
        _c("chp.steam_out", "header.steam_in", "steam"),
        _c("pharma_boiler.steam_out", "header.steam_in", "steam"),
        _c("header.steam_out", "pharma.steam_in", "steam"),
        _c("header.steam_out", "refinery.steam_in", "steam"),
        _c("chp.heat_out", "dh_main.hot_in", "hot_water"),
        _c("refinery_heat.heat_out", "refinery_hx.hot_in", "waste_heat"),
        _c("refinery_hx.cold_out", "dh_main.hot_in", "hot_water"),
        _c("heat_pump.heat_out", "dh_main.hot_in", "hot_water"),
        _c("tank.hot_out", "dh_main.hot_in", "hot_water"),
        _c("peak_boiler.heat_out", "dh_main.hot_in", "hot_water"),
        _c("dh_main.hot_out", "town.heat_in", "hot_water"),
    )
    t = np.arange(0.0, 86400.0 + 1, 300.0)
    rng = np.random.default_rng(7)
    day = 2 * np.pi * t / 86400.0
    profiles = {
        "pharma_steam": Profile(
            "pharma_steam", t, np.clip(0.7 + 0.1 * np.sin(day) + 0.03 * rng.standard_normal(t.size), 0, 1)
        ),
        "refinery_steam": Profile(
            "refinery_steam", t, np.clip(0.6 + 0.05 * np.cos(day) + 0.03 * rng.standard_normal(t.size), 0, 1)
        ),
        "refinery_surplus": Profile(
            "refinery_surplus",
            t,
            np.clip(0.8 + 0.1 * np.sin(3 * day) + 0.05 * rng.standard_normal(t.size), 0, 1),
        ),
        "town_heat": Profile(
            "town_heat", t, np.clip(0.55 + 0.2 * np.sin(day - 1.5) + 0.03 * rng.standard_normal(t.size), 0, 1)
        ),
    }
    return ParkSpec("kalundborg-like", units, conns, profiles)
