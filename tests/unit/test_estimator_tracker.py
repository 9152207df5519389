"""EstimatorTracker: the estimator behind the service's TwinPort (same interface as ParkTracker)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from adapters.base import Quality, Sample
from symtwin.runtime.estimator_tracker import EstimatorTracker, estimator_params_from_site

REPO = Path(__file__).resolve().parents[2]
T0 = 1.6e9


@pytest.fixture(scope="module")
def site_park() -> tuple[object, object]:
    from symtwin.config import load_site
    from twin.park import Park

    site = load_site(REPO / "configs" / "demo.yaml")
    return site, Park.from_config(site)


def _tracker(site_park: tuple[object, object], **kw: object) -> EstimatorTracker:
    site, park = site_park
    settings = estimator_params_from_site(site, params=("storage.loss_coefficient",))
    exchanges = {"surplus_heat": ("factory_heat", "hx", "waste_heat")}
    return EstimatorTracker(park, T0, settings, exchanges, **kw)  # type: ignore[arg-type]


def test_settings_from_site_take_measurement_noise(site_park: tuple[object, object]) -> None:
    s = estimator_params_from_site(site_park[0])
    assert s.noise["hx.cold_outlet_temperature"] == pytest.approx(0.1)
    assert s.noise["town.heat_flow"] == pytest.approx(5e4)
    assert "storage.charge_setpoint" not in s.noise  # setpoints are inputs, not measurements


def test_port_interface_and_uncertainty(site_park: tuple[object, object]) -> None:
    tr = _tracker(site_park)
    est0 = tr.estimates()
    sd0 = est0["hx.fouling"][1]
    assert sd0 == pytest.approx(0.3, rel=0.05)
    y = tr.estimates()
    for k in range(1, 31):
        tr.update(T0 + 10.0 * k, {"storage.top_temperature": y["storage.top_temperature"][0]}, {})
    est = tr.estimates()
    v, sd = est["storage.top_temperature"]
    assert math.isfinite(v) and 0 < sd < 0.1  # measured at 0.1 K: known to better than that
    assert est["storage.loss_coefficient"][1] > 0
    assert est["hx.ua"][0] == pytest.approx(est["hx.fouling"][0] * 4e5)
    states = tr.unit_states()
    assert "fouling" in states["hx"] and "fouling_std" in states["hx"]
    assert any(q.startswith("layer_temperature[") for q in states["storage"])
    heat, mass = tr.flows()["surplus_heat"]
    assert heat > 0 and mass is None
    series = tr.fouling_series()["hx"]
    assert series and series[0].ua_w_k == pytest.approx(series[0].ratio * 4e5)


def test_samples_bad_or_stale_are_skipped(site_park: tuple[object, object]) -> None:
    tr = _tracker(site_park, max_age={"storage.top_temperature": 60.0, "hx.cold_outlet_temperature": 60.0})
    keys = {
        "utility.storage.top_t": "storage.top_temperature",
        "utility.hx.t_out": "hx.cold_outlet_temperature",
        "utility.town.heat": "town.heat_flow",
    }
    now = T0 + 10.0
    samples = [
        Sample("utility.storage.top_t", now - 5.0, 360.0, Quality.BAD),
        Sample("utility.hx.t_out", now - 600.0, 340.0),  # ten minutes old: stale
        Sample("utility.town.heat", now - 1.0, 1e5),
    ]
    tr.update(T0, {}, {})
    tr.update_samples(now, samples, keys, {})
    rep = tr.last_report
    assert rep is not None
    assert "town.heat_flow" in rep.accepted
    assert "storage.top_temperature" in rep.skipped and "hx.cold_outlet_temperature" in rep.skipped


def test_long_gap_is_predicted_in_pieces(site_park: tuple[object, object]) -> None:
    tr = _tracker(site_park, max_step_s=600.0)
    tr.update(T0, {}, {})
    tr.update(T0 + 3600.0, {}, {"storage.charge_setpoint": 5.0})
    est = tr.estimates()
    assert np.isfinite([v for v, _ in est.values()]).all()
    # with no measurement for an hour the uncertainty grew rather than shrank
    assert est["hx.fouling"][1] >= 0.3 * 0.999


def test_from_site_defaults(site_park: tuple[object, object]) -> None:
    site, park = site_park
    tr = EstimatorTracker.from_site(site, park, T0)  # type: ignore[arg-type]
    assert tr.est.param_names == ["storage.loss_coefficient", "pipe.loss_coefficient"]
    assert tr.max_age["hx.cold_outlet_temperature"] == pytest.approx(60.0)


def test_failed_update_falls_back_to_open_loop(site_park: tuple[object, object]) -> None:
    tr = _tracker(site_park)
    tr.update(T0, {}, {})
    x_before = tr.est.x.copy()

    def broken(u: object, dt: float) -> None:
        tr.est.x[:] = math.nan  # a failure that leaves garbage behind
        raise RuntimeError("Newton failed")

    tr.est.predict = broken  # type: ignore[method-assign]
    tr.update(T0 + 60.0, {"storage.top_temperature": 360.0}, {})
    assert tr.failures == 1
    assert np.isfinite(tr.est.x).all()
    _, park = site_park
    expected = park.step(x_before, tr._u(T0 + 60.0), 60.0)  # type: ignore[attr-defined]
    np.testing.assert_allclose(tr.est.x, expected)
    assert all(math.isfinite(v) for v, _ in tr.estimates().values())


async def test_service_runs_with_the_estimator_as_its_twin(site_park: tuple[object, object]) -> None:
    from symtwin.runtime.clock import ManualClock
    from symtwin.runtime.service import Service, ServiceParams

    site, park = site_park
    clock = ManualClock(T0)
    tr = EstimatorTracker.from_site(site, park, T0)  # type: ignore[arg-type]
    truth = tr.estimates()
    params = ServiceParams(cycle_s=5.0, control_period_s=60.0, horizon_steps=4, step_s=900.0)
    service = Service(site, clock=clock, params=params, twin=tr)  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    for _ in range(12):
        now = clock.now()
        samples = [
            Sample(t.id, now, truth[t.key][0] + t.noise_si * float(rng.standard_normal()))
            for t in site.tags.values()  # type: ignore[attr-defined]
            if t.direction.value == "measurement"
        ]
        service.write(samples)
        await service.cycle()
        clock.advance(5.0)
    snap = service.snapshot()
    view = snap.tags["utility.hx.t_out"]
    assert view.estimate is not None and view.estimate_std is not None
    assert 0 < view.estimate_std < 0.5
    assert "fouling" in snap.unit_states["hx"]
    assert tr.last_report is not None and "hx.cold_outlet_temperature" in tr.last_report.accepted
