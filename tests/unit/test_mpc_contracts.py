"""Contract minimum / maximum delivery in the economic MPC: held over the horizon as soft sums priced at
the contract's penalty, reported as slack, and absent from the problem when no contract bounds anything.

A small steam park: a wood-chip CHP sells steam over a header to a pharma consumer that also has its own
gas boiler feeding it directly, so the steam bought over the exchange is the pharma demand less the
boiler's steam (the MPC decides it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from controllers import mpc_model as mm
from controllers.mpc import MpcController, Variant, problem_from_site
from controllers.types import ControlResult, FloatArray, SolveStatus
from tests.support.specs import unit
from twin.spec import ConnectionSpec, ParkSpec

C = 273.15
N = 8  # 2 h of 15-min steps
STEP = 900.0
T0 = 150 * 86400.0
DEMAND = 0.6  # pharma steam demand [-] of its 30 kg/s design flow


def conn(src: str, dst: str) -> ConnectionSpec:
    (su, sp), (tu, tp) = src.split("."), dst.split(".")
    return ConnectionSpec(su, sp, tu, tp, "steam")


PARK = ParkSpec(
    "steam",
    (
        unit(
            "chp",
            "chp_boiler",
            steam_capacity=50.0,
            heat_capacity=60e6,
            fuel_capacity=200e6,
            power_ratio=0.1,
            efficiency=0.9,
            min_load=0.3,
            steam_pressure=10e5,
            steam_temperature=200 + C,
            feedwater_temperature=105 + C,
            ramp_rate=0.05 / 60.0,
        ),
        unit("header", "steam_header", nominal_pressure=10e5),
        unit("pharma_boiler", "gas_boiler", capacity=60e6, medium=1.0, min_load=0.2, ramp_rate=0.05 / 60.0),
        unit("pharma", "steam_consumer", {"demand": "pharma_demand"}, design_flow=30.0),
    ),
    (
        conn("chp.steam_out", "header.steam_in"),
        conn("header.steam_out", "pharma.steam_in"),
        conn("pharma_boiler.steam_out", "pharma.steam_in"),
    ),
)
FUELS = {"chp": "wood_chips", "pharma_boiler": "natural_gas"}


def terms(
    min_mwh: float = 0.0, max_mwh: float | None = None, penalty: float | None = 500.0
) -> mm.ExchangeTerms:
    """The steam exchange's contract over a day (so the horizon's share is easy to state)."""
    return mm.ExchangeTerms(
        "steam_to_pharma",
        "steam_pharma",
        "header",
        "steam_out",
        "pharma",
        "steam_in",
        min_mwh,
        max_mwh,
        1.0,
        penalty,
        "day",
    )


@dataclass(frozen=True)
class Tag:
    """What ``problem_from_spec`` reads of a setpoint tag (a config TagSpec)."""

    id: str
    bounds_si: tuple[float, float] = (0.0, 1.0)
    rate_limit_si_per_s: float = 0.05 / 60.0


TAGS = {k: Tag(k) for k in ("chp.load_setpoint", "pharma_boiler.load_setpoint")}


def spec(*exchanges: mm.ExchangeTerms) -> mm.MpcProblemSpec:
    return mm.problem_from_spec(
        PARK, setpoint_tags=TAGS, fuels=FUELS, step_s=STEP, n_horizon=N, exchanges=exchanges
    )


def forecasts(wood_eur_mwh: float, gas_eur_mwh: float) -> dict[str, FloatArray]:
    return {
        "pharma.demand": np.full(N, DEMAND),
        "price.wood_chips": np.full(N, wood_eur_mwh / 3.6e9),
        "price.natural_gas": np.full(N, gas_eur_mwh / 3.6e9),
        "price.electricity": np.full(N, 0.0),
        "price.co2": np.full(N, 0.0),
    }


# gas cheap, wood dear: on economics alone the pharma boiler makes the steam and the exchange carries little
BOILER_CHEAPER = forecasts(wood_eur_mwh=80.0, gas_eur_mwh=10.0)
CHP_CHEAPER = forecasts(wood_eur_mwh=10.0, gas_eur_mwh=80.0)
STATE = {
    "chp.load": 0.5,
    "chp.load_setpoint": 0.5,
    "pharma_boiler.load": 0.5,
    "pharma_boiler.load_setpoint": 0.5,
}


def demand_mw(s: mm.MpcProblemSpec) -> float:
    """The pharma demand as metered heat [MW]."""
    return DEMAND * 30.0 * s.contracts[0].mw_per_kg_s


def solve(s: mm.MpcProblemSpec, fc: dict[str, FloatArray]) -> tuple[MpcController, ControlResult]:
    ctl = MpcController(s, Variant.FAST)
    res = ctl.step(STATE, fc, T0)
    assert res.status in (SolveStatus.OPTIMAL, SolveStatus.SUBOPTIMAL), res.message
    return ctl, res


def test_exchange_bounds_become_rates_over_the_settlement_period() -> None:
    s = spec(terms(min_mwh=240.0, max_mwh=480.0, penalty=None))
    (c,) = s.contracts
    assert c.kind == mm.DeliveryKind.STEAM_NET and c.boilers == ("pharma_boiler",)
    assert (c.min_mw, c.max_mw) == (pytest.approx(10.0), pytest.approx(20.0))  # MWh per day / 24 h
    assert c.penalty == mm.DEFAULT_CONTRACT_PENALTY_EUR_MWH
    # metered heat per kg: 10 bar / 200 degC steam less 90 degC condensate, about 2.45 MJ/kg
    assert 2.3 < c.mw_per_kg_s < 2.6
    lay = mm.layout(s)
    i = lay.x_index("contract.steam_pharma.delivered")
    assert lay.x_terminal_lb[i] == pytest.approx(10.0 * 2.0) and lay.x_terminal_ub[i] == pytest.approx(40.0)
    assert {"contract.steam_pharma.short", "contract.steam_pharma.excess"} <= set(lay.inputs)
    # take-or-pay: the minimum owed is the fraction of the minimum; a month is a mean calendar month
    tp = mm.ExchangeTerms(
        "x", "k", "header", "steam_out", "pharma", "steam_in", 7305.0, None, 0.8, 5.0, "month"
    )
    (m,) = spec(tp).contracts
    assert m.min_mw == pytest.approx(0.8 * 7305.0 / (365.2425 * 24 / 12))


def test_a_minimum_the_economics_would_not_meet_is_met_when_the_penalty_is_high() -> None:
    _, free = solve(spec(terms(min_mwh=1e-6)), BOILER_CHEAPER)  # a minimum that binds nothing
    s = spec(terms(min_mwh=0.7 * 24.0 * demand_mw(spec(terms(1.0))), penalty=500.0))
    need = s.contracts[0].min_mw * s.horizon_h
    _, held = solve(s, BOILER_CHEAPER)
    delivered = held.slack["contract.steam_pharma.delivered_mwh"]
    assert delivered == pytest.approx(need, rel=1e-3)
    assert held.slack["contract.steam_pharma.short_mwh"] < 1e-3 * need
    # on economics alone the boiler makes the steam: far less over the exchange, at a lower fuel cost
    assert free.slack["contract.steam_pharma.delivered_mwh"] < 0.8 * need
    assert held.objective_terms["fuel_eur"] > free.objective_terms["fuel_eur"]
    assert held.objective_terms["contract_eur"] == pytest.approx(0.0, abs=1.0)
    # the plan raises the CHP and lowers the boiler
    assert held.plan["chp.load_setpoint"][-1] > free.plan["chp.load_setpoint"][-1] + 0.05


def test_an_unreachable_minimum_is_reported_as_slack_and_priced() -> None:
    # twice the whole pharma demand: no plan delivers it
    s = spec(terms(min_mwh=2.0 * 24.0 * demand_mw(spec(terms(1.0))), penalty=50.0))
    need = s.contracts[0].min_mw * s.horizon_h
    _, res = solve(s, BOILER_CHEAPER)
    short = res.slack["contract.steam_pharma.short_mwh"]
    delivered = res.slack["contract.steam_pharma.delivered_mwh"]
    assert short == pytest.approx(need - delivered, rel=1e-3)
    assert short > 0.4 * need  # at most the demand is delivered
    assert res.objective_terms["contract.steam_pharma_eur"] == pytest.approx(50.0 * short, rel=1e-6)
    assert res.objective_terms["contract_eur"] == pytest.approx(50.0 * short, rel=1e-3)


def test_a_maximum_delivery_caps_the_exchange() -> None:
    _, free = solve(spec(terms(min_mwh=1e-6, penalty=500.0)), CHP_CHEAPER)
    uncapped = free.slack["contract.steam_pharma.delivered_mwh"]
    cap_mwh_day = 0.5 * 24.0 * demand_mw(spec(terms(1.0)))
    s = spec(terms(max_mwh=cap_mwh_day, penalty=500.0))
    cap = s.contracts[0].max_mw * s.horizon_h  # type: ignore[operator]
    assert uncapped > 1.5 * cap  # the CHP is cheaper: without the cap most steam is bought
    _, res = solve(s, CHP_CHEAPER)
    assert res.slack["contract.steam_pharma.delivered_mwh"] <= cap * (1 + 1e-3)
    assert res.slack["contract.steam_pharma.excess_mwh"] < 1e-3 * cap
    assert res.plan["pharma_boiler.load_setpoint"][-1] > 0.2


def test_no_contract_bound_leaves_the_problem_and_the_plan_as_they_were() -> None:
    plain = spec()
    unbounded = spec(terms(min_mwh=0.0, max_mwh=None))
    assert plain.contracts == () and unbounded.contracts == ()
    assert mm.layout(plain) == mm.layout(unbounded)
    lay = mm.layout(plain)
    assert "contract" not in lay.terms and not any(k.startswith("contract.") for k in lay.states + lay.inputs)
    assert all(math.isinf(v) for v in lay.x_terminal_lb + lay.x_terminal_ub)
    # a minimum the economics meet anyway changes nothing in the plan
    _, free = solve(plain, CHP_CHEAPER)
    _, held = solve(spec(terms(min_mwh=0.2 * 24.0 * demand_mw(spec(terms(1.0))))), CHP_CHEAPER)
    assert held.slack["contract.steam_pharma.short_mwh"] < 1e-4
    for tag, values in free.plan.items():
        np.testing.assert_allclose(held.plan[tag], values, atol=1e-4)
    assert "contract_eur" not in free.objective_terms and "contract_eur" in held.objective_terms


def test_the_reference_park_holds_the_pharma_steam_minimum_and_reports_the_refinery() -> None:
    from symtwin.config import load_site

    site = load_site(Path(__file__).resolve().parents[2] / "configs/kalundborg.yaml")
    s = problem_from_site(site, horizon_steps=4)
    by_key = {c.key: c for c in s.contracts}
    assert set(by_key) == {"steam_pharma", "steam_refinery"}  # the others have no minimum or maximum
    assert by_key["steam_pharma"].kind == mm.DeliveryKind.STEAM_NET
    assert by_key["steam_pharma"].boilers == ("pharma_boiler",)
    assert by_key["steam_pharma"].penalty == 5.0  # the contract's own take-or-pay penalty
    assert by_key["steam_pharma"].min_mw == pytest.approx(0.8 * 40000.0 / (365.2425 * 24 / 12))
    # steam to the refinery is its demand: not a decision, reported only; priced at its fixed price
    assert not by_key["steam_refinery"].decided and by_key["steam_refinery"].penalty == 32.0
    assert [c.key for c in s.held_contracts()] == ["steam_pharma"]


def reference_park_with_bounds_on_every_exchange() -> mm.MpcProblemSpec:
    """The reference park with a 1 MW minimum and a 100 MW maximum (per day) on all five exchanges."""
    from symtwin.config import load_site

    site = load_site(Path(__file__).resolve().parents[2] / "configs/kalundborg.yaml")
    conns = {c.id: c for c in site.config.connections}
    exchanges = []
    for e in site.config.exchanges:
        (su, sp), (tu, tp) = conns[e.connection].source.split("."), conns[e.connection].target.split(".")
        exchanges.append(mm.ExchangeTerms(e.id, e.contract, su, sp, tu, tp, 24.0, 2400.0, 1.0, 100.0, "day"))
    return mm.problem_from_spec(
        site.park_spec(),
        setpoint_tags={t.key: t for t in site.tags.values() if t.direction == "setpoint"},
        fuels={u.id: str(u.fuel) for u in site.units if getattr(u, "fuel", None)},
        step_s=900.0,
        n_horizon=4,
        exchanges=exchanges,
    )


def test_every_exchange_kind_of_the_reference_park_is_expressed() -> None:
    s = reference_park_with_bounds_on_every_exchange()
    assert {c.exchange: c.kind for c in s.contracts} == {
        "steam_to_pharma": mm.DeliveryKind.STEAM_NET,
        "steam_to_refinery": mm.DeliveryKind.STEAM_DEMAND,
        "chp_heat": mm.DeliveryKind.CHP_HEAT,
        "refinery_surplus_heat": mm.DeliveryKind.SURPLUS,
        "pharma_cooling_water": mm.DeliveryKind.HP_SOURCE,
    }
    lay = mm.layout(s)
    assert {"refinery_surplus.available", "pharma_steam.steam_demand", "refinery_steam.steam_demand"} <= set(
        lay.params
    )
    assert sum(k.endswith(".delivered") for k in lay.states) == 4  # the refinery's steam is not a decision


@pytest.mark.slow
def test_the_reference_park_solves_with_bounds_on_every_exchange() -> None:
    s = reference_park_with_bounds_on_every_exchange()
    n = 4
    fc = {
        "town.demand": np.full(n, 0.5),
        "refinery_surplus.available": np.full(n, 0.6),
        "price.natural_gas": np.full(n, 40 / 3.6e9),
        "price.wood_chips": np.full(n, 20 / 3.6e9),
        "price.co2": np.full(n, 0.08),
    }
    res = MpcController(s, Variant.FAST).step(
        {"chp.load": 0.6, "transmission.outlet_temperature": 353.0, "storage.state_of_charge": 0.4}, fc, T0
    )
    assert res.status in (SolveStatus.OPTIMAL, SolveStatus.SUBOPTIMAL), res.message
    for c in s.contracts:  # 1 MW minimum, 100 MW maximum: every sum within them or its slack reported
        d = res.slack[f"contract.{c.key}.delivered_mwh"]
        assert d + res.slack[f"contract.{c.key}.short_mwh"] >= 1.0 * s.horizon_h * (1 - 1e-3)
        assert d - res.slack[f"contract.{c.key}.excess_mwh"] <= 100.0 * s.horizon_h * (1 + 1e-3)


def test_an_exchange_the_model_cannot_express_is_skipped_with_a_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the pharma boiler's own steam line: the model has no variable for one boiler's share of a consumer
    own_line = mm.ExchangeTerms(
        "backup",
        "backup_steam",
        "pharma_boiler",
        "steam_out",
        "pharma",
        "steam_in",
        100.0,
        None,
        1.0,
        5.0,
        "day",
    )
    with caplog.at_level("WARNING", logger="controllers.mpc_model"):
        s = spec(own_line, terms(min_mwh=100.0))
    assert [c.key for c in s.contracts] == ["steam_pharma"]
    assert "backup_steam" in caplog.text and "not expressed" in caplog.text
