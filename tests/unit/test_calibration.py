"""Calibration (twin.calibrate, `symtwin calibrate`) on a generated history.

The "plant" is the demo twin with UA -20 % and tank/pipe loss coefficients +30 %; the history holds the
config's measurement tags with their noise and 2 % missing samples, and the tank's charge setpoint
(charge 3 h, then discharge: the demo exchanger is UA-limited only while the tank charges).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from twin.calibrate import (
    CalibrationError,
    CalibrationResult,
    History,
    calibrate,
    read_history_csv,
    synthetic_history,
    write_history_csv,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
FIT = ("hx.ua", "storage.loss_coefficient", "pipe.loss_coefficient")


def _charge(t: float) -> float:
    return 8.0 if t < 3 * 3600 else -8.0


@pytest.fixture(scope="module")
def setup() -> tuple[object, object, np.ndarray, History]:
    from symtwin.config import load_site
    from twin.park import Park

    site = load_site(DEMO)
    park = Park.from_config(site)
    p = park.params.copy()
    p[park.param_names.index("hx.ua")] *= 0.8
    p[park.param_names.index("storage.loss_coefficient")] *= 1.3
    p[park.param_names.index("pipe.loss_coefficient")] *= 1.3
    noise = {t.key: t.noise_si for t in site.tags.values() if t.direction.value == "measurement"}
    hist = synthetic_history(
        park,
        p,
        noise,
        5 * 3600.0,
        60.0,
        {"storage.charge_setpoint": _charge},
        0.02,
        seed=3,
        settle_s=2 * 3600.0,
    )
    return site, park, p, hist


@pytest.fixture(scope="module")
def fit(setup: tuple[object, object, np.ndarray, History]) -> CalibrationResult:
    site, park, _, hist = setup
    noise = {t.key: t.noise_si for t in site.tags.values() if t.direction.value == "measurement"}  # type: ignore[attr-defined]
    return calibrate(park, hist, FIT, noise, settle_s=2 * 3600.0)  # type: ignore[arg-type]


def test_recovers_true_parameters_within_confidence_intervals(
    setup: tuple[object, object, np.ndarray, History], fit: CalibrationResult
) -> None:
    _, park, p_true, _ = setup
    assert fit.success and not any(fit.at_bound)
    truth = {n: float(p_true[park.param_names.index(n)]) for n in FIT}  # type: ignore[attr-defined]
    for name, value, (lo, hi), ok in zip(fit.names, fit.values, fit.ci95, fit.identifiable, strict=True):
        if name == "pipe.loss_coefficient":
            continue
        assert ok
        assert lo <= truth[name] <= hi, (name, value, lo, hi, truth[name])
        assert (hi - lo) / truth[name] < 0.10  # and the interval is informative
    # the stated noise fits the residuals: reduced chi-square near 1
    assert 0.8 < fit.reduced_chi2 < 1.2
    for tag in fit.tags:
        assert tag.rms < 1.3 * tag.noise


def test_parameter_the_tags_cannot_see_is_flagged_not_faked(fit: CalibrationResult) -> None:
    # the pipe's loss hardly changes any measured tag of the demo: no interval is claimed for it
    k = fit.names.index("pipe.loss_coefficient")
    assert not fit.identifiable[k]
    assert math.isinf(fit.std[k])
    assert "pipe" not in fit.overlay()["units"]


def test_overlay_is_a_loadable_units_section(fit: CalibrationResult) -> None:
    from symtwin.units import parse_quantity

    ov = fit.overlay({"hx.ua": "W/K", "storage.loss_coefficient": "W/K"})
    ua = parse_quantity(str(ov["units"]["hx"]["ua"]), "W/K")
    assert ua == pytest.approx(fit.values[0], rel=1e-5)
    assert yaml.safe_load(yaml.safe_dump(ov)) == ov


def test_csv_round_trip_keeps_samples_and_skips_dropped(tmp_path: Path, setup: tuple[object, ...]) -> None:
    hist: History = setup[3]  # type: ignore[assignment]
    key_tags = {"hx.cold_outlet_temperature": "utility.hx.t_out", "storage.charge_setpoint": "sp"}
    path = tmp_path / "h.csv"
    n = write_history_csv(path, hist, key_tags, epoch=1.6e9)
    with open(path, "a") as fh:
        fh.write("2020-09-13T12:26:40+00:00,utility.hx.t_out,\n")  # an empty (dropped) value
    back = read_history_csv(path, {v: k for k, v in key_tags.items()}, epoch=1.6e9)
    assert n == sum(hist.series[k][0].size for k in key_tags)
    t0, v0 = hist.series["hx.cold_outlet_temperature"]
    t1, v1 = back.series["hx.cold_outlet_temperature"]
    np.testing.assert_allclose(t1, t0, atol=1e-6)
    np.testing.assert_array_equal(v1, v0)


def test_bad_csv_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("time,tag,value\n0,a,1\nyesterday,a,2\n")
    with pytest.raises(CalibrationError, match=r"bad\.csv:3: time 'yesterday'"):
        read_history_csv(path, {"a": "hx.cold_outlet_temperature"}, 0.0)
    path.write_text("when,what\n")
    with pytest.raises(CalibrationError, match="expected the header"):
        read_history_csv(path, {}, 0.0)


def test_unknown_parameter_is_refused(setup: tuple[object, ...]) -> None:
    _, park, _, hist = setup
    with pytest.raises(CalibrationError, match="unknown"):
        calibrate(park, hist, ["hx.nope"], {"hx.cold_outlet_temperature": 0.1})  # type: ignore[arg-type]


def test_history_from_the_local_store(tmp_path: Path) -> None:
    from adapters.base import Quality, Sample
    from adapters.store.history import HistoryParams, LocalHistory
    from twin.calibrate import history_from_store

    store = LocalHistory(HistoryParams(path=tmp_path / "h.sqlite", retention_s=1e12), clock=lambda: 1e9 + 1e6)
    try:
        store.write([Sample("utility.hx.t_out", 1e9 + 60.0 * k, 340.0 + k) for k in range(5)])
        store.write([Sample("utility.hx.t_out", 1e9 + 330.0, 999.0, Quality.BAD)])
        assert store.flush()
        hist = history_from_store(store, {"utility.hx.t_out": "hx.cold_outlet_temperature"}, 1e9, 0.0, 2e9)
    finally:
        store.close()
    t, v = hist.series["hx.cold_outlet_temperature"]
    np.testing.assert_allclose(t, 60.0 * np.arange(5))
    np.testing.assert_allclose(v, 340.0 + np.arange(5))  # the bad sample is left out
