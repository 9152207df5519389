"""The virtual plant: mismatch, noise, actuator lag, every fault kind, and its interface to the service."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from adapters.base import Quality
from sim.faults import Fault, FaultKind, FaultSchedule
from sim.plant import DEFAULT_MISMATCH, PlantError, PlantParams, VirtualPlant, apply_mismatch, plant_tags
from symtwin.config import LoadedSite, load_site

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo() -> LoadedSite:
    return load_site(REPO / "configs" / "demo.yaml")


@pytest.fixture(scope="module")
def kalundborg() -> LoadedSite:
    return load_site(REPO / "configs" / "kalundborg.yaml")


def make(site: LoadedSite, *faults: Fault, **kw: object) -> VirtualPlant:
    params = PlantParams(**{"settle_s": 600.0, "seed": 7, **kw})  # type: ignore[arg-type]
    return VirtualPlant.from_site(site, start=1000.0, origin=0.0, params=params, faults=FaultSchedule(faults))


def test_mismatch_wildcards_and_named_parameters() -> None:
    names = ["hx.ua", "hx.cells", "other_hx.ua", "pipe.loss_coefficient"]
    values = np.array([100.0, 20.0, 50.0, 2.0])
    out, applied = apply_mismatch(names, values, {"*.ua": 0.8, "pipe.loss_coefficient": 1.5})
    assert out.tolist() == pytest.approx([80.0, 20.0, 40.0, 3.0])
    assert applied == {"hx.ua": 0.8, "other_hx.ua": 0.8, "pipe.loss_coefficient": 1.5}
    assert values[0] == 100.0  # the nominal values are left alone
    with pytest.raises(PlantError, match="names no parameter"):
        apply_mismatch(names, values, {"hx.uaa": 0.8})
    with pytest.raises(PlantError, match="positive"):
        apply_mismatch(names, values, {"*.ua": 0.0})


def test_plant_runs_perturbed_parameters_and_keeps_the_nominal_ones(demo: LoadedSite) -> None:
    plant = make(demo)
    i = plant.park.param_names.index("hx.ua")
    assert plant.park.params[i] == pytest.approx(DEFAULT_MISMATCH["*.ua"] * plant.nominal_params[i])
    assert plant.mismatch_applied["hx.ua"] == DEFAULT_MISMATCH["*.ua"]
    exact = make(demo, mismatch={})
    assert exact.mismatch_applied == {}
    assert np.array_equal(exact.park.params, exact.nominal_params)


def test_measurements_cover_every_measurement_tag_in_si_with_the_configured_noise(demo: LoadedSite) -> None:
    plant = make(demo)
    tags = {t.id for t in plant_tags(demo) if t.measurement}
    first = plant.measurements()
    assert {s.tag for s in first} == tags
    assert all(s.timestamp == plant.time and s.quality is Quality.GOOD for s in first)
    spec = demo.tags["utility.hx.t_out"]
    truth = plant.true_value(spec.key)
    assert 300.0 < truth < 400.0  # kelvin, not degC
    errors = [next(s.value for s in plant.measurements() if s.tag == spec.id) - truth for _ in range(400)]
    assert abs(float(np.mean(errors))) < 4 * spec.noise_si / math.sqrt(400)
    assert float(np.std(errors)) == pytest.approx(spec.noise_si, rel=0.15)
    quiet = make(demo, noise=False)
    assert next(s.value for s in quiet.measurements() if s.tag == spec.id) == quiet.true_value(spec.key)


def test_setpoints_reach_the_physics_through_a_first_order_lag(demo: LoadedSite) -> None:
    plant = make(demo, actuator_lag_s=60.0, max_step_s=10.0)
    tag = "utility.boiler.load_sp"
    before = plant.position[tag]
    assert plant.apply({tag: 0.9}) == {tag: True}
    assert [r.value for r in plant.readbacks() if r.tag == tag] == [0.9]  # the node holds the written value
    plant.step(60.0)  # one time constant
    moved = (plant.position[tag] - before) / (0.9 - before)
    assert moved == pytest.approx(1 - math.exp(-1), abs=1e-9)
    assert plant.u[plant.park.input_names.index("boiler.load_setpoint")] == pytest.approx(
        plant.position[tag], rel=0.2
    )
    assert plant.writes[-1] == (1000.0, tag, 0.9)


def test_apply_refuses_unknown_tags_measurements_and_non_finite_values(demo: LoadedSite) -> None:
    plant = make(demo)
    ok = plant.apply(
        {"nope": 1.0, "factory.heat": 1.0, "factory.use_sp": math.nan, "utility.storage.charge_sp": 3.0}
    )
    assert ok == {
        "nope": False,
        "factory.heat": False,
        "factory.use_sp": False,
        "utility.storage.charge_sp": True,
    }
    assert plant.commanded["factory.use_sp"] == pytest.approx(0.5)


def test_stuck_actuator_holds_its_position_while_writes_are_accepted(demo: LoadedSite) -> None:
    tag = "utility.boiler.load_sp"
    plant = make(demo, Fault(FaultKind.ACTUATOR_STUCK, 1000.0, 300.0, tag=tag))
    held = plant.position[tag]
    assert plant.apply({tag: 1.0})[tag]
    plant.step(240.0)
    assert plant.position[tag] == held
    plant.step(120.0)  # the fault ended at 1300 s: it moves again
    assert plant.position[tag] > held


def test_frozen_sensor_repeats_its_value_with_fresh_timestamps(demo: LoadedSite) -> None:
    tag = "utility.hx.t_out"
    plant = make(demo, Fault(FaultKind.SENSOR_FREEZE, 1060.0, 120.0, tag=tag))
    seen = []
    for _ in range(6):
        plant.step(30.0)
        s = next(s for s in plant.measurements() if s.tag == tag)
        seen.append((plant.time, s.timestamp, s.value))
    assert all(t == ts for t, ts, _ in seen)
    frozen = [v for t, _, v in seen if 1060.0 <= t < 1180.0]
    assert len(frozen) == 4 and len(set(frozen)) == 1
    assert seen[-1][2] != frozen[0]  # back to live noisy values after the window


def test_drift_adds_a_ramp_and_nan_replaces_the_value(demo: LoadedSite) -> None:
    plant = make(
        demo,
        Fault(FaultKind.SENSOR_DRIFT, 1000.0, None, tag="utility.storage.top_t", rate_si_per_s=0.01),
        Fault(FaultKind.SENSOR_NAN, 1000.0, 60.0, tag="utility.town.heat"),
        noise=False,
    )
    plant.step(500.0)
    m = {s.tag: s.value for s in plant.measurements()}
    assert m["utility.storage.top_t"] - plant.true_value("storage.top_temperature") == pytest.approx(5.0)
    assert not math.isnan(m["utility.town.heat"])  # NaN window over
    fresh = make(demo, Fault(FaultKind.SENSOR_NAN, 1000.0, 60.0, tag="utility.town.heat"))
    nan = next(s for s in fresh.measurements() if s.tag == "utility.town.heat")
    assert math.isnan(nan.value) and nan.quality is Quality.GOOD and not nan.is_usable()


def test_demand_step_scales_the_demand_input(demo: LoadedSite) -> None:
    plant = make(demo, Fault(FaultKind.DEMAND_STEP, 2000.0, None, unit="town", factor=1.3))
    i = plant.park.input_names.index("town.demand")
    profile = plant.park.input_schedule()
    assert profile(2500.0)[i] > 0
    assert plant.inputs(2500.0)[i] == pytest.approx(1.3 * profile(2500.0)[i])
    assert plant.inputs(1500.0)[i] == pytest.approx(profile(1500.0)[i])


def test_supplier_trip_takes_the_chp_load_to_zero(kalundborg: LoadedSite) -> None:
    plant = make(kalundborg, Fault(FaultKind.SUPPLIER_TRIP, 1000.0, 600.0), max_step_s=60.0)
    i = plant.park.input_names.index("chp.load_setpoint")
    assert plant.inputs(1100.0)[i] == 0.0
    assert plant.inputs(1700.0)[i] == pytest.approx(plant.position["powerco.chp.load_sp"])
    steam0 = plant.true_value("chp.steam_flow")
    plant.step(600.0)
    assert plant.true_value("chp.steam_flow") < 0.5 * steam0


def test_comms_loss_and_price_spike_windows(demo: LoadedSite) -> None:
    plant = make(
        demo,
        Fault(FaultKind.COMMS_LOSS, 1100.0, 60.0),
        Fault(FaultKind.PRICE_SPIKE, 2000.0, 3600.0, series="price.electricity", factor=5.0),
    )
    assert not plant.comms_down(1099.0) and plant.comms_down(1100.0) and not plant.comms_down(1160.0)
    assert plant.forecast_overrides(1999.0, 2500.0) == {}  # not known before it starts
    assert plant.forecast_overrides(2000.0) == {"price.electricity": 5.0}
    assert plant.forecast_overrides(2000.0, 6000.0) == {}  # over by then
    assert plant.forecast_overrides(6000.0) == {}


def test_unmet_demand_and_violations_are_integrated_over_time(demo: LoadedSite) -> None:
    # Sixty times the demand and no heat sources: the town goes short and its supply temperature falls.
    plant = make(
        demo, Fault(FaultKind.DEMAND_STEP, 0.0, None, unit="town", factor=60.0), noise=False, max_step_s=60.0
    )
    plant.apply({"factory.use_sp": 0.0, "utility.boiler.load_sp": 0.0, "utility.storage.charge_sp": 0.0})
    expected_j, expected_ks = plant.totals.unmet_j, plant.totals.violation_ks
    for _ in range(120):
        plant.step(60.0)
        expected_j += 60.0 * plant.now_kpi.unmet_w
        expected_ks += 60.0 * plant.now_kpi.violation_k
    assert plant.totals.unmet_j == pytest.approx(expected_j)
    assert plant.totals.violation_ks == pytest.approx(expected_ks)
    assert plant.totals.unmet_mwh == pytest.approx(plant.totals.unmet_j / 3.6e9)
    assert plant.totals.unmet_j + plant.totals.violation_ks > 0


def test_faults_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="needs a tag"):
        Fault(FaultKind.SENSOR_FREEZE, 0.0)
    with pytest.raises(ValueError, match="series"):
        Fault(FaultKind.PRICE_SPIKE, 0.0)
    with pytest.raises(ValueError, match="duration"):
        Fault(FaultKind.COMMS_LOSS, 0.0, 0.0)
    f = Fault("comms_loss", 10.0, 5.0)  # type: ignore[arg-type]
    assert f.kind is FaultKind.COMMS_LOSS and f.active(10.0) and not f.active(15.0)
    sched = FaultSchedule([f])
    assert [(t, started) for t, _, started in sched.transitions(0.0, 20.0)] == [(10.0, True), (15.0, False)]


def test_the_write_log_is_bounded_unless_a_scenario_keeps_all(demo: LoadedSite) -> None:
    tag = "utility.boiler.load_sp"
    bounded, full = make(demo, keep_writes=3), make(demo, keep_writes=None)
    for k in range(10):
        for plant in (bounded, full):
            plant.apply({tag: 0.1 + 0.05 * k})
    assert [v for _, _, v in bounded.writes] == pytest.approx([0.45, 0.5, 0.55])  # the last three
    assert len(full.writes) == 10
    assert PlantParams().keep_writes is not None  # a long `symtwin sim` run does not grow without end
