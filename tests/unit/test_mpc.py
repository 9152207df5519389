"""Economic MPC: built from the site config, time-varying forecasts reach every horizon step, failed
solves carry nothing to write, three failures in a row degrade the controller and reset the warm start."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from controllers import mpc_model as mm
from controllers.mpc import MpcController, Variant, map_status, problem_from_site
from controllers.types import FloatArray, SolveStatus
from symtwin.config import load_site

N = 12  # horizon steps in unit tests (the reference 96 is the benchmark's)
STEP = 900.0
T0 = 150 * 86400.0


@pytest.fixture(scope="module")
def demo_site() -> object:
    return load_site(Path(__file__).resolve().parents[2] / "configs/demo.yaml")


@pytest.fixture(scope="module")
def demo_spec(demo_site: object) -> mm.MpcProblemSpec:
    return problem_from_site(demo_site, horizon_steps=N)


@pytest.fixture(scope="module")
def ctl(demo_spec: mm.MpcProblemSpec) -> MpcController:
    return MpcController(demo_spec, Variant.FAST)


def forecasts(
    demand: float = 0.5, available: float = 0.6, gas_eur_mwh: float = 40.0
) -> dict[str, FloatArray]:
    return {
        "town.demand": np.full(N, demand),
        "factory_heat.available": np.full(N, available),
        "price.natural_gas": np.full(N, gas_eur_mwh / 3.6e9),
        "price.co2": np.full(N, 0.08),
    }


STATE: Mapping[str, float] = {
    "boiler.load": 0.3,
    "boiler.load_setpoint": 0.3,
    "factory_heat.use_setpoint": 1.0,
    "storage.charge_setpoint": 0.0,
    "storage.state_of_charge": 0.2,
    "pipe.outlet_temperature": 352.65,
}


def test_problem_is_built_from_the_park_and_tags(demo_spec: mm.MpcProblemSpec) -> None:
    lay = mm.layout(demo_spec)
    assert "boiler.load" in lay.states and "storage.energy" in lay.states
    assert "dh.supply_temperature" in lay.states
    keys = mm.plan_keys(demo_spec)
    assert keys == {
        "boiler.load_setpoint": "utility.boiler.load_sp",
        "factory_heat.use_setpoint": "factory.use_sp",
        "storage.charge_setpoint": "utility.storage.charge_sp",
    }
    storage = next(r for r in demo_spec.ramped() if r.key == "storage.charge_setpoint")
    assert (storage.lo, storage.hi) == (-15.0, 15.0)  # the tag's bounds [kg/s]
    assert storage.rate == pytest.approx(5.0 / 60.0)  # "5 kg/s/min"
    # the spec crosses a process boundary: plain, frozen values
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo_spec.n_horizon = 3  # type: ignore[misc]


def test_kalundborg_decisions_cover_every_unit_kind() -> None:
    site = load_site(Path(__file__).resolve().parents[2] / "configs/kalundborg.yaml")
    spec = problem_from_site(site, horizon_steps=4)
    kinds = {u.name: u.kind for u in spec.loads}
    assert kinds == {
        "chp": mm.LoadKind.CHP,
        "pharma_boiler": mm.LoadKind.STEAM,
        "peak_boiler": mm.LoadKind.HOT_WATER,
        "heat_pump": mm.LoadKind.HEAT_PUMP,
    }
    assert {s.name: s.feeds_heat_pump for s in spec.surplus} == {
        "pharma_cooling": True,
        "refinery_surplus": False,
    }
    assert spec.loads[0].fuel_price == "price.wood_chips"
    lay = mm.layout(spec)
    assert {"chp.dh_heat", "chp.steam", "unmet_steam", "unmet_heat"} <= set(lay.inputs)
    assert spec.n_horizon == 4 and spec.step_s == 900.0
    assert spec.unmet_penalty * 3.6e9 == pytest.approx(2000.0)


def test_step_returns_a_plan_over_the_horizon_with_terms_and_slack(ctl: MpcController) -> None:
    r = ctl.step(STATE, forecasts(), T0)
    assert r.status is SolveStatus.OPTIMAL, r.message
    assert r.usable
    assert set(r.setpoints) == {"utility.boiler.load_sp", "factory.use_sp", "utility.storage.charge_sp"}
    assert np.allclose(r.plan_times, T0 + STEP * np.arange(N))
    for tag, values in r.plan.items():
        assert values.shape == (N,)
        assert r.setpoints[tag] == values[0]
    assert {"fuel_eur", "co2_eur", "electricity_eur", "total_eur"} <= set(r.objective_terms)
    assert set(r.slack) == {"unmet_heat_mwh", "band_kh"}
    # surplus heat is free: the factory's heat is used in full before gas is burnt
    assert r.setpoints["factory.use_sp"] == pytest.approx(1.0, abs=1e-3)
    # minimum load: a boiler setpoint is 0 or at least its minimum stable load (0.1)
    boiler = r.plan["utility.boiler.load_sp"]
    assert np.all((boiler == 0.0) | (boiler >= 0.1 - 1e-9))


@pytest.mark.parametrize("k", [3, 8])
def test_a_forecast_changed_at_step_k_changes_the_plan_at_step_k(ctl: MpcController, k: int) -> None:
    """do-mpc#541 copied the t0 value of a time-varying parameter across the horizon; here each horizon
    step must see its own forecast value."""
    ctl.reset_warm_start()
    base = ctl.step(STATE, forecasts(demand=0.3), T0)
    fc = forecasts(demand=0.3)
    fc["town.demand"][k:] = 0.9  # a cold front arrives at step k
    ctl.reset_warm_start()
    changed = ctl.step(STATE, fc, T0)
    assert base.usable and changed.usable
    b, c = base.plan["utility.boiler.load_sp"], changed.plan["utility.boiler.load_sp"]
    assert c[k] > b[k] + 0.2  # more gas from step k on
    assert c[-1] > b[-1] + 0.2
    assert changed.objective_terms["fuel_eur"] > base.objective_terms["fuel_eur"]


def test_a_price_forecast_reaches_its_step(ctl: MpcController) -> None:
    """A gas price spike in steps 4-7 moves gas use out of that window (storage discharges there)."""
    ctl.reset_warm_start()
    flat = ctl.step(STATE, forecasts(demand=0.6), T0)
    fc = forecasts(demand=0.6)
    fc["price.natural_gas"][4:8] = 400.0 / 3.6e9
    ctl.reset_warm_start()
    spike = ctl.step(STATE, fc, T0)
    f, s = flat.plan["utility.boiler.load_sp"], spike.plan["utility.boiler.load_sp"]
    assert s[4:8].sum() < f[4:8].sum() - 0.1
    assert (
        spike.plan["utility.storage.charge_sp"][4:8].mean()
        < flat.plan["utility.storage.charge_sp"][4:8].mean()
    )


def test_warm_started_solves_agree_with_cold_ones(ctl: MpcController) -> None:
    ctl.reset_warm_start()
    cold = ctl.step(STATE, forecasts(), T0)
    warm = ctl.step(STATE, forecasts(), T0)  # warm start: shifted previous solution
    assert warm.status is SolveStatus.OPTIMAL
    assert warm.objective_terms["total_eur"] == pytest.approx(
        cold.objective_terms["total_eur"], rel=1e-3, abs=1.0
    )


@pytest.mark.parametrize(
    ("ipopt", "violation", "status"),
    [
        ("Solve_Succeeded", 0.0, SolveStatus.OPTIMAL),
        ("Solved_To_Acceptable_Level", 0.0, SolveStatus.SUBOPTIMAL),
        ("Infeasible_Problem_Detected", 1.0, SolveStatus.INFEASIBLE),
        ("Maximum_WallTime_Exceeded", 1.0, SolveStatus.TIMEOUT),
        ("Maximum_CpuTime_Exceeded", 1.0, SolveStatus.TIMEOUT),
        ("Maximum_Iterations_Exceeded", 0.0, SolveStatus.SUBOPTIMAL),
        ("Maximum_Iterations_Exceeded", 0.5, SolveStatus.ERROR),
        ("Invalid_Number_Detected", 0.0, SolveStatus.ERROR),
        ("Restoration_Failed", 0.0, SolveStatus.INFEASIBLE),
    ],
)
def test_ipopt_status_maps_to_solve_status(ipopt: str, violation: float, status: SolveStatus) -> None:
    assert map_status(ipopt, violation) is status


def test_a_solve_past_its_time_limit_is_a_timeout_with_nothing_to_write(demo_spec: mm.MpcProblemSpec) -> None:
    slow = MpcController(dataclasses.replace(demo_spec, max_solve_s=1e-9), Variant.FAST)
    r = slow.step(STATE, forecasts(), T0)
    assert r.status is SolveStatus.TIMEOUT
    assert not r.setpoints and not r.plan


def test_three_failures_degrade_and_reset_the_warm_start(demo_spec: mm.MpcProblemSpec) -> None:
    c = MpcController(demo_spec, Variant.FAST, max_failures=3)
    good = c.step(STATE, forecasts(), T0)
    assert good.usable and c.has_warm_start
    bad = forecasts()
    bad["town.demand"][2] = math.nan
    for i in range(2):
        r = c.step(STATE, bad, T0)
        assert r.status is SolveStatus.ERROR and not r.setpoints
        assert not c.degraded and c.has_warm_start, i  # the last good warm start is kept
    c.step(STATE, bad, T0)
    assert c.degraded and not c.has_warm_start
    again = c.step(STATE, forecasts(), T0)
    assert again.usable and not c.degraded


def test_the_default_do_mpc_setup_solves_the_same_problem(demo_spec: mm.MpcProblemSpec) -> None:
    """Collocation on the continuous model (setpoints ramp over an interval) against the discrete model
    (setpoints written at its start): the same economics, costs within a few per cent."""
    fast = MpcController(demo_spec, Variant.FAST).step(STATE, forecasts(), T0)
    default = MpcController(demo_spec, Variant.DEFAULT).step(STATE, forecasts(), T0)
    assert default.status is SolveStatus.OPTIMAL
    ops = ("fuel_eur", "co2_eur")
    f = sum(fast.objective_terms[k] for k in ops)
    d = sum(default.objective_terms[k] for k in ops)
    assert f == pytest.approx(d, rel=0.1)
