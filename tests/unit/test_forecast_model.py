"""The built-in forecaster: learns a known load law, uses nothing after the issue time, round-trips."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from symtwin.forecasting.evaluate import backtest
from symtwin.forecasting.model import (
    Calendar,
    Forecaster,
    ForecasterParams,
    History,
    HorizonTooLong,
    InsufficientHistory,
    NotFitted,
    noisy_weather,
)

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp()  # a Monday
HOUR = 3600.0


def synthetic(days: int = 70, seed: int = 0, holidays: set[dt.date] | None = None) -> History:
    """Hourly load with a known law: heating degrees × a daily shape, lower on days off, plus noise."""
    rng = np.random.default_rng(seed)
    n = days * 24
    t = START + HOUR * np.arange(n)
    hours = np.arange(n) % 24
    day = np.arange(n) // 24
    temp = 273.15 + 2 + 6 * np.sin(2 * np.pi * day / 10) + 3 * np.sin(2 * np.pi * (hours - 9) / 24)
    temp += np.cumsum(rng.normal(0, 0.2, n)) * 0.3
    shape = 1.0 + 0.3 * ((hours >= 6) & (hours < 18))
    weekday = np.array([dt.datetime.fromtimestamp(x, dt.UTC).weekday() for x in t])
    off = weekday >= 5
    if holidays:
        off |= np.array([dt.datetime.fromtimestamp(x, dt.UTC).date() in holidays for x in t])
    load = 0.4e6 + 0.25e6 * np.maximum(0.0, 290.15 - temp) * shape * np.where(off, 0.7, 1.0)
    load = load * (1 + rng.normal(0, 0.02, n))
    return History(np.asarray(t, dtype=np.float64), load, temp)


STEPS = 8  # a short horizon keeps each fit well under a second


@pytest.fixture(scope="module")
def fitted() -> tuple[Forecaster, History]:
    """Fitted on the first 50 days of 70; the last 20 are held out."""
    hist = synthetic()
    split = 50 * 24
    train = History(hist.times_s[:split], hist.load_w[:split], hist.t_out_k[:split])
    return Forecaster(ForecasterParams(max_steps=STEPS)).fit(train), hist


def test_beats_both_baselines_on_a_known_law(fitted: tuple[Forecaster, History]) -> None:
    f, hist = fitted
    rows = {r.horizon_steps: r for r in backtest(f, hist, 50 * 24, (1, STEPS))}
    far = rows[STEPS]
    assert far.model.mape_pct < 0.5 * min(far.persistence.mape_pct, far.last_week.mape_pct)
    assert far.model.mape_pct < 6.0  # noise is 2 %; the law is in the feature set
    assert rows[1].model.rmse < rows[1].persistence.rmse


def test_predict_uses_nothing_after_the_issue_time(fitted: tuple[Forecaster, History]) -> None:
    f, hist = fitted
    issue = hist.times_s[40 * 24 + 7]
    before = f.predict(hist, issue, STEPS)
    i0 = 40 * 24 + 7
    tampered = History(
        hist.times_s, np.concatenate([hist.load_w[: i0 + 1], hist.load_w[i0 + 1 :] * 5]), hist.t_out_k
    )
    np.testing.assert_array_equal(f.predict(tampered, issue, STEPS), before)


def test_predict_matches_the_batch_path_used_in_backtests(fitted: tuple[Forecaster, History]) -> None:
    f, hist = fitted
    i0 = 45 * 24 + 13
    fc = hist.t_out_k[i0 + 1 : i0 + 1 + STEPS]
    single = f.predict(hist, hist.times_s[i0] + 1200.0, STEPS, fc)  # issue time between grid points
    batch = f.predict_many(hist, np.array([i0]), STEPS)[0]
    np.testing.assert_allclose(single, batch, rtol=1e-9)


def test_a_colder_weather_forecast_raises_the_load_forecast(fitted: tuple[Forecaster, History]) -> None:
    f, hist = fitted
    i0 = 45 * 24
    fc = hist.t_out_k[i0 + 1 : i0 + 1 + STEPS]
    warm = f.predict(hist, hist.times_s[i0], STEPS, fc)
    cold = f.predict(hist, hist.times_s[i0], STEPS, fc - 5.0)
    assert np.all(cold > warm)
    assert cold[-1] - warm[-1] > 0.5 * 0.25e6 * 5  # at least half the known sensitivity (0.25 MW/K)


def test_json_round_trip_predicts_the_same(fitted: tuple[Forecaster, History]) -> None:
    f, hist = fitted
    g = Forecaster.from_json(f.to_json())
    issue = hist.times_s[50 * 24]
    np.testing.assert_allclose(g.predict(hist, issue, STEPS), f.predict(hist, issue, STEPS), rtol=1e-12)
    assert g.fit_info["lambda_per_step"] == f.fit_info["lambda_per_step"]


def test_holidays_from_config_are_days_off() -> None:
    """Weekday holidays lower the load like weekends; a model told about them predicts that."""
    holidays = {dt.date(2026, 1, 21), dt.date(2026, 2, 3), dt.date(2026, 2, 19), dt.date(2026, 3, 4)}
    hist = synthetic(holidays=holidays)
    f_with = Forecaster(ForecasterParams(max_steps=STEPS), Calendar("UTC", frozenset(holidays))).fit(hist)
    f_without = Forecaster(ForecasterParams(max_steps=STEPS)).fit(hist)
    # issued at 23:00 the evening before, so nothing measured yet shows the day off
    i_issue = int((dt.datetime(2026, 3, 3, 23, tzinfo=dt.UTC).timestamp() - START) // HOUR)
    actual = hist.load_w[i_issue + 1 : i_issue + 1 + STEPS]
    err_with = np.abs(f_with.predict(hist, hist.times_s[i_issue], STEPS) - actual).mean()
    err_without = np.abs(f_without.predict(hist, hist.times_s[i_issue], STEPS) - actual).mean()
    assert err_with < 0.5 * err_without


def test_errors_are_typed(fitted: tuple[Forecaster, History]) -> None:
    f, hist = fitted
    with pytest.raises(NotFitted):
        Forecaster().predict(hist, hist.times_s[-1], 3)
    with pytest.raises(HorizonTooLong):
        f.predict(hist, hist.times_s[-1], STEPS + 1)
    with pytest.raises(InsufficientHistory):
        f.predict(hist, hist.times_s[100], STEPS)  # less than a week before the issue time
    gappy = History(hist.times_s, hist.load_w.copy(), hist.t_out_k)
    gappy.load_w[-1] = math.nan
    with pytest.raises(InsufficientHistory):
        f.predict(gappy, hist.times_s[-1], 6)
    with pytest.raises(InsufficientHistory):
        Forecaster().fit(synthetic(days=8))


def test_history_regular_puts_samples_on_the_grid_and_marks_gaps() -> None:
    t = START + HOUR * np.array([0, 1, 3, 2, 5])
    h = History.regular(t, [1.0, 2.0, 4.0, 3.0, 6.0], [280.0] * 5, HOUR)
    np.testing.assert_array_equal(h.load_w[:4], [1.0, 2.0, 3.0, 4.0])
    assert math.isnan(h.load_w[4]) and h.load_w[5] == 6.0
    with pytest.raises(ValueError):
        History(np.array([0.0, 1.0, 3.0]), np.zeros(3), np.zeros(3))


def test_noisy_weather_error_grows_with_lead_time() -> None:
    temps = np.full(5000, 275.0)
    w = noisy_weather(temps, 1.5, 48, seed=3)
    issue = np.arange(0, 4000)
    err = w(issue, issue[:, None] + np.array([[1, 24, 48]])) - 275.0
    sd = err.std(axis=0)
    assert sd[0] < 0.5 and 1.3 < sd[1] < 1.7 and sd[2] > sd[1]


def test_explain_accounts_for_every_coefficient(fitted: tuple[Forecaster, History]) -> None:
    f, _ = fitted
    groups = f.explain(STEPS)
    assert sum(groups.values()) == pytest.approx(float(np.abs(f.steps[STEPS - 1].coef).sum()))
    assert {"hour_x_heating_degrees", "load_same_hour_last_week", "hour_x_day_off"} <= set(groups)
