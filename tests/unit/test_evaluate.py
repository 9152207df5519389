"""Closed-loop KPIs computed from a hand-made trace: cost, CO2, unmet demand, band violation, surplus share."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from controllers import evaluate as ev
from controllers.types import ControlResult, FloatArray, SolveStatus

HOUR = 3600.0


def spec() -> ev.KpiSpec:
    return ev.KpiSpec(
        fuel_price={"boiler": "price.natural_gas"},
        co2_per_fuel={"boiler": 0.202 / 3.6e6},  # 202 kg/MWh of fuel
        chps=(),
        heat_pumps=(("hp", True),),
        surplus_hx=("hx",),
        surplus_direct=(),
        town="town",
        town_design_w=10e6,
        t_band_k=(345.15, 360.15),
        steam=(("plant", 10.0),),
        steam_dh_j_kg=2.4e6,
        unmet_penalty_eur_mwh=2000.0,
    )


def prices(now: float, times: FloatArray) -> Mapping[str, FloatArray]:
    n = len(times)
    return {
        "price.natural_gas": np.full(n, 40.0 / 3.6e9),
        "price.electricity": np.full(n, 100.0 / 3.6e9),
        "price.co2": np.full(n, 0.08),
    }


def one_hour_trace() -> ev.Trace:
    t = np.arange(60) * 60.0  # one hour of minute samples
    ones = np.ones(60)
    tr = ev.Trace()
    supply = np.where(np.arange(60) < 30, 362.15, 352.15)  # 2 K above the band for half an hour
    tr.add(
        t,
        {
            "boiler.fuel_flow": 2e6 * ones,  # 2 MW of gas for an hour: 2 MWh
            "hp.electric_power": 1e6 * ones,
            "hp.heat_flow": 3e6 * ones,  # COP 3: 2 MW drawn from the surplus source
            "hx.heat_flow": 1e6 * ones,
            "town.supply_temperature": supply,
            "town.unmet": 0.5e6 * ones,
            "town.delivered": 5e6 * ones,
            "town.demand": 0.55 * ones,  # 5.5 MW
            "plant.demand": 0.5 * ones,  # 5 kg/s wanted
            "plant.steam_flow": 4.0 * ones,  # 1 kg/s short
        },
    )
    return tr


def test_kpis_from_a_known_hour() -> None:
    k = ev.kpis(one_hour_trace(), spec(), prices, [])
    assert k.fuel_eur == pytest.approx(80.0)  # 2 MWh x 40 EUR/MWh
    assert k.co2_t == pytest.approx(0.404)  # 2 MWh x 202 kg/MWh
    assert k.co2_eur == pytest.approx(0.404 * 80.0)
    assert k.electricity_eur == pytest.approx(100.0)
    assert k.cost_eur == pytest.approx(80.0 + 32.32 + 100.0)
    assert k.band_violation_kh == pytest.approx(1.0)  # 2 K for 0.5 h
    assert k.unmet_heat_mwh == pytest.approx(0.5)
    assert k.unmet_steam_mwh == pytest.approx(3600.0 * 2.4e6 / 3.6e9)  # 3.6 t of steam
    assert k.heat_demand_mwh == pytest.approx(5.5)
    assert k.surplus_used_mwh == pytest.approx(3.0)  # 1 MWh via the exchanger + 2 MWh heat-pump source
    assert k.surplus_share == pytest.approx(3.0 / 5.5)
    assert k.cost_with_unmet_eur == pytest.approx(k.cost_eur + (0.5 + 2.4) * 2000.0)


def test_surplus_share_is_capped_by_what_was_delivered() -> None:
    tr = one_hour_trace()
    tr.cols["hx.heat_flow"] = [np.full(60, 9e6)]  # more surplus than the town took
    k = ev.kpis(tr, spec(), prices, [])
    assert k.surplus_share == pytest.approx(5.0 / 5.5)


def test_solve_statistics_are_counted() -> None:
    results = [
        ControlResult(SolveStatus.OPTIMAL, solve_time_s=0.1),
        ControlResult(SolveStatus.OPTIMAL, solve_time_s=0.3),
        ControlResult.failure(SolveStatus.TIMEOUT, "late", 0.8),
    ]
    k = ev.kpis(one_hour_trace(), spec(), prices, results)
    assert k.solves == {"optimal": 2, "timeout": 1}
    assert k.solve_s_median == pytest.approx(0.3)


def test_a_ramp_moves_at_the_rate_limit_and_stops_at_the_target() -> None:
    r = ev._ramp(0.2, 0.8, 0.01, 100.0)
    assert r(100.0) == pytest.approx(0.2)
    assert r(130.0) == pytest.approx(0.5)
    assert r(200.0) == pytest.approx(0.8)
    down = ev._ramp(0.8, 0.2, 0.01, 0.0)
    assert down(10.0) == pytest.approx(0.7)
