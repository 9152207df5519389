"""Backtest of the forecaster against two baselines, on the same issue times and targets.

Baselines (what the forecaster must beat to be worth having):

- persistence: the last value at the issue time, held over the horizon;
- same hour last week: the value at t − 168 h (for horizons up to a week, known at issue time).

Metrics per horizon h: MAPE [%] = mean |forecast − actual| / |actual| · 100 and RMSE [unit of the
load]. Every issue time in the test span with a known target at t + h counts; the same rows are scored
for all three forecasts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symtwin.forecasting.model import FloatArray, Forecaster, History, IntArray, WeatherFn, noisy_weather


@dataclass(frozen=True)
class Scores:
    mape_pct: float
    rmse: float


@dataclass(frozen=True)
class HorizonRow:
    horizon_steps: int
    n: int
    model: Scores
    persistence: Scores
    last_week: Scores


def scores(forecast: FloatArray, actual: FloatArray) -> Scores:
    ok = np.isfinite(forecast) & np.isfinite(actual) & (np.abs(actual) > 0)
    if not ok.any():
        return Scores(math.nan, math.nan)
    err = forecast[ok] - actual[ok]
    return Scores(float(np.mean(np.abs(err) / np.abs(actual[ok])) * 100.0), float(np.sqrt(np.mean(err**2))))


def backtest(
    forecaster: Forecaster,
    history: History,
    test_start: int,
    horizons: Sequence[int] = (1, 6, 24),
    weather: WeatherFn | None = None,
    *,
    correct_recent_error: bool = True,
) -> list[HorizonRow]:
    """Issue a forecast at every grid index from ``test_start - 1`` on and score targets in the test span.

    weather: the temperature forecasts available at each issue time (None: measured = perfect).
    """
    n = len(history.times_s)
    per_week = round(7 * 86400.0 / forecaster.step_s)
    h_max = max(horizons)
    issue: IntArray = np.arange(max(test_start - 1, per_week), n - 1, dtype=np.int64)
    pred = forecaster.predict_many(history, issue, h_max, weather, correct_recent_error=correct_recent_error)
    load = history.load_w
    rows = []
    for h in horizons:
        keep = (issue + h < n) & (issue + h >= test_start)
        ii = issue[keep]
        actual = load[ii + h]
        rows.append(
            HorizonRow(
                h,
                len(ii),
                scores(pred[keep, h - 1], actual),
                scores(load[ii], actual),
                scores(load[ii + h - per_week * math.ceil(h / per_week)], actual),
            )
        )
    return rows


def noisy_variant(history: History, sigma_day_k: float, max_lead: int, seed: int = 1) -> WeatherFn:
    """Temperature forecasts with an error growing with lead time (see :func:`model.noisy_weather`)."""
    steps_per_day = round(86400.0 / history.step_s)
    return noisy_weather(history.t_out_k, sigma_day_k, max_lead, seed, steps_per_day)


def format_table(rows: Sequence[HorizonRow], step_s: float, title: str) -> str:
    """A plain-text table: per horizon, MAPE and RMSE of the model and both baselines side by side."""
    lines = [
        title,
        f"{'horizon':>8} {'n':>6} | {'MAPE model':>10} {'persist.':>9} {'last wk':>9} | "
        f"{'RMSE model':>11} {'persist.':>11} {'last wk':>11} | {'vs best baseline':>16}",
    ]
    for r in rows:
        best = min(r.persistence.mape_pct, r.last_week.mape_pct)
        gain = (1.0 - r.model.mape_pct / best) * 100.0 if best > 0 else math.nan
        hours = r.horizon_steps * step_s / 3600.0
        lines.append(
            f"{hours:>6.0f} h {r.n:>6} | {r.model.mape_pct:>9.1f}% {r.persistence.mape_pct:>8.1f}% "
            f"{r.last_week.mape_pct:>8.1f}% | {r.model.rmse:>11.4g} {r.persistence.rmse:>11.4g} "
            f"{r.last_week.rmse:>11.4g} | {gain:>+14.0f} %"
        )
    lines.append("(vs best baseline: how much lower the model's MAPE is than the better baseline's)")
    return "\n".join(lines)
