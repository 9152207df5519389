"""Built-in forecaster for heat demand (or surplus heat): ridge regression, one coefficient set per step.

Pure model code: arrays in, arrays out, no I/O. Everything is SI: times [s since the Unix epoch, UTC],
load [W], outdoor temperature [K].

Model (direct multi-step; one ridge regression per horizon step h = 1 … H, see Hastie, Tibshirani &
Friedman, *The Elements of Statistical Learning*, 2nd ed., §3.4.1, eq. 3.44 for the closed form)::

    y(t0 + h) = x_h(t0, t0 + h) · w_h + b_h + alpha_h · e_1(t0)

The features x_h use only what is known at the issue time t0:

- calendar at the target time: hour-of-day one-hot, day-of-week one-hot, a day-off flag (weekend or a
  holiday from config) times hour-of-day, and whether the days the lagged loads come from were days off;
- weather: heating degrees ``max(0, T_base - T)`` at the target time times hour-of-day (the daily shape
  of a heat load scales with the cold), its square, and the 24-hour mean temperature before the target
  time (building inertia) — from the measured temperature up to t0 and the temperature *forecast* after;
- lagged load: the same hour on the latest day known at t0 (t - 24 h · ceil(h/24)), the same hour one
  week earlier (t - 168 h), the last three values at t0.

``e_1(t0)`` is the recent error of the one-step model (exponentially weighted over the last few steps);
``alpha_h`` is fitted on the training residuals, so the correction decays over the horizon as far as the
data say it does. Features are standardised; rows are weighted by 1/load so squared errors are roughly
relative (the score that matters is MAPE, and low summer loads would otherwise count for nothing); the
ridge penalty is picked per step by blocked 5-fold cross-validation over the training span (every season
votes), then the model is refitted on all of it.

Why not something heavier: on the measured NTNU year (9 months train, 3 test) this model's 24 h MAPE
is 27 % against 54 % for persistence and 107 % for same-hour-last-week (``benchmarks/forecast_backtest.py``);
44 % of its remaining error sum sits in the 6 % of hours below 0.5 MW, where the load is near its floor.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
CalendarArrays = tuple[IntArray, IntArray, FloatArray]
# weather(issue_idx (rows,), cols (rows, k)) -> forecast temperature [K] (rows, k) issued at issue_idx
WeatherFn = Callable[[IntArray, IntArray], FloatArray]

MODEL_FORMAT = "symtwin.forecast.ridge/1"
HOURS_PER_DAY = 24
LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


class ForecastModelError(Exception):
    """Base of the forecaster's errors."""


class NotFitted(ForecastModelError):
    """predict() before fit() or load."""


class InsufficientHistory(ForecastModelError):
    """The history given does not cover what the features need (lags up to a week before issue time)."""


class HorizonTooLong(ForecastModelError):
    """More steps were asked for than the model was trained for; the caller fills the rest elsewhere."""


@dataclass(frozen=True)
class History:
    """Equally spaced measurements: times [s, epoch UTC], load [W], outdoor temperature [K].

    NaN marks a missing value; the forecaster skips rows whose features need it (fit) or refuses to
    predict (predict) when a needed value is missing.
    """

    times_s: FloatArray
    load_w: FloatArray
    t_out_k: FloatArray

    def __post_init__(self) -> None:
        n = len(self.times_s)
        if len(self.load_w) != n or len(self.t_out_k) != n:
            raise ValueError("times_s, load_w and t_out_k must have the same length")
        if n >= 2:
            steps = np.diff(self.times_s)
            if not np.allclose(steps, steps[0]) or steps[0] <= 0:
                raise ValueError("history must be equally spaced and increasing (use History.regular)")

    @property
    def step_s(self) -> float:
        if len(self.times_s) < 2:
            raise InsufficientHistory("a history needs at least two samples to have a step")
        return float(self.times_s[1] - self.times_s[0])

    @staticmethod
    def regular(
        times_s: Sequence[float] | FloatArray,
        load_w: Sequence[float] | FloatArray,
        t_out_k: Sequence[float] | FloatArray,
        step_s: float,
    ) -> History:
        """Put irregular samples on a grid of ``step_s`` [s]: each sample goes to its nearest grid time
        (the last one wins), grid times without a sample are NaN."""
        t = np.asarray(times_s, dtype=float)
        order = np.argsort(t, kind="stable")
        t = t[order]
        y = np.asarray(load_w, dtype=float)[order]
        w = np.asarray(t_out_k, dtype=float)[order]
        t0 = math.floor(t[0] / step_s) * step_s
        idx = np.rint((t - t0) / step_s).astype(int)
        n = int(idx[-1]) + 1
        grid = t0 + step_s * np.arange(n)
        load = np.full(n, np.nan)
        temp = np.full(n, np.nan)
        load[idx] = y
        temp[idx] = w
        return History(grid, load, temp)


@dataclass(frozen=True)
class Calendar:
    """Where calendar features come from: the site's IANA timezone and its holidays (local dates)."""

    timezone: str = "UTC"
    holidays: frozenset[dt.date] = frozenset()

    def features(self, times_s: FloatArray) -> CalendarArrays:
        """Local hour of day (0–23), ISO weekday (0 = Monday … 6 = Sunday), day-off flag (1.0/0.0)."""
        tz = zoneinfo.ZoneInfo(self.timezone)
        hours = np.empty(len(times_s), dtype=np.int64)
        days = np.empty(len(times_s), dtype=np.int64)
        off = np.empty(len(times_s), dtype=float)
        for i, t in enumerate(times_s):
            local = dt.datetime.fromtimestamp(float(t), tz)
            hours[i] = local.hour
            days[i] = local.weekday()
            off[i] = 1.0 if (days[i] >= 5 or local.date() in self.holidays) else 0.0
        return hours, days, off


@dataclass(frozen=True)
class ForecasterParams:
    """Settings of the forecaster.

    max_steps: longest horizon trained [steps of the history's step].
    t_base_k: base temperature of the heating degrees [K] (17 °C is usual for buildings in the Nordics).
    error_halflife_steps: half-life of the exponential weights of the recent one-step error [steps].
    error_window_steps: how many recent one-step errors are weighted.
    floor_w: lower clamp of predictions [W] (a forecast below zero load is never passed on).
    weight_power: rows are weighted by ``1 / load**weight_power`` (1: about relative errors; 0: plain
        least squares, which lets the large winter loads dominate).
    """

    max_steps: int = 48
    t_base_k: float = 290.15
    error_halflife_steps: float = 2.0
    error_window_steps: int = 6
    floor_w: float = 0.0
    weight_power: float = 1.0


@dataclass
class _StepModel:
    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float
    lam: float
    alpha: float = 0.0


@dataclass
class Forecaster:
    """Ridge forecaster. ``fit`` on a :class:`History`, then ``predict`` from recent history.

    ``to_json``/``from_json`` round-trip the fitted model (numbers only, no pickles).
    """

    params: ForecasterParams = field(default_factory=ForecasterParams)
    calendar: Calendar = field(default_factory=Calendar)
    step_s: float = 3600.0
    steps: list[_StepModel] = field(default_factory=list)
    fit_info: dict[str, Any] = field(default_factory=dict)

    # ---- features -------------------------------------------------------------------------------------

    def _lags(self, h: int) -> tuple[int, int]:
        per_day = round(HOURS_PER_DAY * 3600.0 / self.step_s)
        per_week = 7 * per_day
        lag_day = per_day * max(1, math.ceil(h / per_day))
        lag_week = per_week * max(1, math.ceil(h / per_week))
        return lag_day, lag_week

    def needed_history_steps(self, h: int | None = None) -> int:
        """How many steps of history before the issue time the features need for step ``h``."""
        _, lag_week = self._lags(h or self.params.max_steps)
        per_day = round(HOURS_PER_DAY * 3600.0 / self.step_s)
        return max(lag_week, per_day, 3)

    def _features(
        self,
        h: int,
        target_idx: IntArray,
        load: FloatArray,
        t_meas: FloatArray,
        weather: WeatherFn,
        cal: CalendarArrays,
    ) -> FloatArray:
        """Feature rows for targets at grid indices ``target_idx`` issued ``h`` steps earlier.

        t_meas: measured temperature on the grid [K], used up to the issue index.
        weather: ``weather(issue_idx, cols)`` gives the temperature forecast [K] issued at ``issue_idx``
            (one per row) for the grid indices ``cols`` (rows × k), used after the issue index.
        """
        hours, days, off = cal
        issue = target_idx - h
        lag_day, lag_week = self._lags(h)
        per_day = round(HOURS_PER_DAY * 3600.0 / self.step_s)
        # 24-hour window before the target: measured up to the issue time, forecast after it.
        cols = np.clip(target_idx[:, None] + np.arange(-per_day + 1, 1)[None, :], 0, None)
        known = cols <= issue[:, None]
        t_win = np.where(known, t_meas[cols], weather(issue, cols))
        t_target = t_win[:, -1]
        t_mean = t_win.mean(axis=1)
        hdd = np.maximum(0.0, self.params.t_base_k - t_target)
        hour_1h = np.eye(HOURS_PER_DAY)[hours[target_idx]]
        day_1h = np.eye(7)[days[target_idx]][:, 1:]
        off_t = off[target_idx]
        last = np.stack([load[issue - k] for k in range(3)], axis=1)
        x = np.hstack(
            [
                hour_1h,
                hour_1h * hdd[:, None],
                day_1h,
                hour_1h * off_t[:, None],
                off_t[:, None],
                # whether the lagged days were days off: lets the model tell a holiday from a weekend,
                # whose lagged loads are weekends too
                off[target_idx - lag_day][:, None],
                off[target_idx - lag_week][:, None],
                (hdd**2)[:, None],
                t_mean[:, None],
                t_meas[issue][:, None],
                load[target_idx - lag_day][:, None],
                load[target_idx - lag_week][:, None],
                last,
            ]
        )
        return np.asarray(x, dtype=float)

    # ---- fit ------------------------------------------------------------------------------------------

    def fit(self, history: History, weather: WeatherFn | None = None) -> Forecaster:
        """Fit one ridge regression per step 1 … max_steps on ``history``.

        weather: the temperature forecasts that were available at each issue time (see
        :meth:`_features`); None uses the measured temperature (a perfect forecast, the usual choice
        for training).
        """
        self.step_s = history.step_s
        n = len(history.times_s)
        start = self.needed_history_steps() + 1
        if n - start < 10 * self.params.max_steps:
            raise InsufficientHistory(
                f"fit needs more than {start + 10 * self.params.max_steps} steps of history, got {n}"
            )
        wx = weather or perfect_weather(history.t_out_k)
        cal = self.calendar.features(history.times_s)
        self.steps = []
        for h in range(1, self.params.max_steps + 1):
            idx = np.arange(start, n, dtype=np.int64)
            x = self._features(h, idx, history.load_w, history.t_out_k, wx, cal)
            y = history.load_w[idx]
            ok = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
            self.steps.append(_fit_ridge(x[ok], y[ok], self.params.weight_power))
        # alpha_h: least-squares slope of the step-h residual at t0 + h on the recent error e(t0).
        e = self._recent_error_series(history, cal)
        for h, step in enumerate(self.steps, start=1):
            idx = np.arange(start + h, n, dtype=np.int64)
            rh = history.load_w[idx] - self._raw(h, idx, history.load_w, history.t_out_k, wx, cal)
            eh = e[idx - h]
            ok = np.isfinite(rh) & np.isfinite(eh)
            den = float(np.dot(eh[ok], eh[ok]))
            step.alpha = float(np.dot(eh[ok], rh[ok]) / den) if den > 0 else 0.0
        self.fit_info = {
            "rows": int(n - start),
            "step_s": self.step_s,
            "lambda_per_step": [s.lam for s in self.steps],
            "alpha_per_step": [s.alpha for s in self.steps],
            "trained_from_s": float(history.times_s[0]),
            "trained_to_s": float(history.times_s[-1]),
        }
        return self

    def _raw(
        self,
        h: int,
        idx: IntArray,
        load: FloatArray,
        t_meas: FloatArray,
        weather: WeatherFn,
        cal: CalendarArrays,
    ) -> FloatArray:
        """Step-h regression output for targets ``idx`` (no error correction, no clamp) [W]."""
        m = self.steps[h - 1]
        x = self._features(h, idx, load, t_meas, weather, cal)
        return np.asarray(((x - m.mean) / m.scale) @ m.coef + m.intercept, dtype=float)

    def _recent_error_series(self, history: History, cal: CalendarArrays) -> FloatArray:
        """e(i): exponentially weighted mean of the one-step errors at i, i-1, … i-k+1 [W] (NaN where
        none is known). Past errors use the measured temperature, which is known by then."""
        n = len(history.times_s)
        k = self.params.error_window_steps
        start = self.needed_history_steps(1) + 3
        r1 = np.full(n, np.nan)
        idx = np.arange(start, n, dtype=np.int64)
        r1[idx] = history.load_w[idx] - self._raw(
            1, idx, history.load_w, history.t_out_k, perfect_weather(history.t_out_k), cal
        )
        w = 0.5 ** (np.arange(k) / self.params.error_halflife_steps)
        num = np.zeros(n)
        den = np.zeros(n)
        for j in range(k):
            shifted = np.full(n, np.nan)
            shifted[j:] = r1[: n - j]
            ok = np.isfinite(shifted)
            num[ok] += w[j] * shifted[ok]
            den[ok] += w[j]
        out = np.full(n, np.nan)
        out[den > 0] = num[den > 0] / den[den > 0]
        return out

    # ---- predict --------------------------------------------------------------------------------------

    def predict(
        self,
        history: History,
        issue_time_s: float,
        horizon_steps: int,
        weather_forecast_k: FloatArray | None = None,
        *,
        correct_recent_error: bool = True,
    ) -> FloatArray:
        """Load forecast [W] for the ``horizon_steps`` grid times after the issue time.

        history: recent measurements on this model's step; only samples at or before ``issue_time_s``
            are used. The issue time is the last grid time of the history not after ``issue_time_s``;
            the forecast is for that time + 1, 2, … horizon_steps steps.
        weather_forecast_k: outdoor temperature forecast [K] at those target times. None holds the last
            measured temperature (a persistence weather forecast).
        """
        if not self.steps:
            raise NotFitted("the forecaster has not been fitted or loaded")
        if horizon_steps > len(self.steps):
            raise HorizonTooLong(f"{horizon_steps} steps asked, the model is trained for {len(self.steps)}")
        if not math.isclose(history.step_s, self.step_s):
            raise InsufficientHistory(
                f"history step {history.step_s} s differs from the model's {self.step_s} s"
            )
        i0 = int(np.searchsorted(history.times_s, issue_time_s, side="right")) - 1
        need = self.needed_history_steps(horizon_steps) + self.params.error_window_steps + 4
        if i0 - need < 0:
            raise InsufficientHistory(
                f"predict needs {need} steps of history before the issue time, got {i0 + 1}"
            )
        lo = i0 - need
        times = history.times_s[lo : i0 + 1]
        if weather_forecast_k is None:
            fc = np.full(horizon_steps, history.t_out_k[i0])
        else:
            fc = np.asarray(weather_forecast_k, dtype=float)
            if fc.shape != (horizon_steps,) or not np.all(np.isfinite(fc)):
                raise ValueError("weather_forecast_k must hold horizon_steps finite temperatures [K]")
        sub = History(
            np.concatenate([times, times[-1] + self.step_s * np.arange(1, horizon_steps + 1)]),
            np.concatenate([history.load_w[lo : i0 + 1], np.full(horizon_steps, np.nan)]),
            np.concatenate([history.t_out_k[lo : i0 + 1], np.full(horizon_steps, np.nan)]),
        )
        base = len(times) - 1
        all_fc = np.concatenate([history.t_out_k[lo : i0 + 1], fc])
        per_day = round(HOURS_PER_DAY * 3600.0 / self.step_s)
        if not np.all(np.isfinite(sub.t_out_k[base - per_day + 1 : base + 1])) or not np.isfinite(
            sub.load_w[base]
        ):
            raise InsufficientHistory("the measured temperature (last day) or the last load value is missing")
        out = self.predict_many(
            sub,
            np.array([base], dtype=np.int64),
            horizon_steps,
            lambda i, c: all_fc[c],
            correct_recent_error=correct_recent_error,
        )[0]
        if not np.all(np.isfinite(out)):
            raise InsufficientHistory("a lagged load the forecast needs is missing from the history")
        return out

    def predict_many(
        self,
        history: History,
        issue_idx: IntArray,
        horizon_steps: int,
        weather: WeatherFn | None = None,
        *,
        correct_recent_error: bool = True,
    ) -> FloatArray:
        """Forecasts [W] from many issue times at once (backtests): rows = issue indices into
        ``history``, columns = steps 1 … horizon_steps. Loads after an issue index are never read
        (the features take lags at or before it); NaN where a needed value is missing."""
        wx = weather or perfect_weather(history.t_out_k)
        n = len(history.times_s)
        out = np.full((len(issue_idx), horizon_steps), np.nan)
        e = (
            self._recent_error_series(history, self.calendar.features(history.times_s))
            if correct_recent_error
            else None
        )
        # targets may run past the end of the history (live use): pad so the indices exist.
        pad = max(0, int(issue_idx.max()) + horizon_steps - (n - 1)) if len(issue_idx) else 0
        load = np.concatenate([history.load_w, np.full(pad, np.nan)])
        t_meas = np.concatenate([history.t_out_k, np.full(pad, np.nan)])
        times = np.concatenate([history.times_s, history.times_s[-1] + self.step_s * np.arange(1, pad + 1)])
        cal = self.calendar.features(times)
        for h in range(1, horizon_steps + 1):
            y = self._raw(h, issue_idx + h, load, t_meas, wx, cal)
            if e is not None:
                y = y + np.nan_to_num(e[issue_idx]) * self.steps[h - 1].alpha
            out[:, h - 1] = np.maximum(y, self.params.floor_w)
        return out

    # ---- serialisation --------------------------------------------------------------------------------

    def to_json(self) -> str:
        doc = {
            "format": MODEL_FORMAT,
            "step_s": self.step_s,
            "params": self.params.__dict__,
            "calendar": {
                "timezone": self.calendar.timezone,
                "holidays": sorted(d.isoformat() for d in self.calendar.holidays),
            },
            "fit_info": self.fit_info,
            "steps": [
                {
                    "mean": s.mean.tolist(),
                    "scale": s.scale.tolist(),
                    "coef": s.coef.tolist(),
                    "intercept": s.intercept,
                    "lambda": s.lam,
                    "alpha": s.alpha,
                }
                for s in self.steps
            ],
        }
        return json.dumps(doc)

    @staticmethod
    def from_json(text: str) -> Forecaster:
        doc = json.loads(text)
        if doc.get("format") != MODEL_FORMAT:
            raise ForecastModelError(f"not a {MODEL_FORMAT} model file (format={doc.get('format')!r})")
        cal = doc["calendar"]
        return Forecaster(
            params=ForecasterParams(**doc["params"]),
            calendar=Calendar(cal["timezone"], frozenset(dt.date.fromisoformat(d) for d in cal["holidays"])),
            step_s=float(doc["step_s"]),
            steps=[
                _StepModel(
                    mean=np.asarray(s["mean"], float),
                    scale=np.asarray(s["scale"], float),
                    coef=np.asarray(s["coef"], float),
                    intercept=float(s["intercept"]),
                    lam=float(s["lambda"]),
                    alpha=float(s["alpha"]),
                )
                for s in doc["steps"]
            ],
            fit_info=dict(doc.get("fit_info", {})),
        )

    def explain(self, h: int = 24) -> Mapping[str, float]:
        """Standardised coefficients of step ``h`` grouped by feature family (for reports)."""
        m = self.steps[h - 1]
        groups = _feature_groups()
        return {name: float(np.abs(m.coef[sl]).sum()) for name, sl in groups}


def perfect_weather(t_out_k: FloatArray) -> WeatherFn:
    """The measured temperature used as the forecast (training; the optimistic backtest variant)."""

    def weather(issue: IntArray, cols: IntArray) -> FloatArray:
        # beyond the end of the measurements there is no forecast: NaN makes the row unusable
        padded = np.concatenate([t_out_k, [np.nan]])
        return np.asarray(padded[np.minimum(cols, len(t_out_k))], dtype=float)

    return weather


def noisy_weather(
    t_out_k: FloatArray, sigma_day_k: float, max_lead: int, seed: int, steps_per_day: int = 24
) -> WeatherFn:
    """A forecast = measured temperature + an error that grows with lead time like a random walk:
    standard deviation ``sigma_day_k * sqrt(lead / steps_per_day)`` [K], one independent walk per issue
    time (so errors along one forecast are correlated, as real forecast errors are)."""
    rng = np.random.default_rng(seed)
    n = len(t_out_k)
    steps = rng.normal(0.0, sigma_day_k / math.sqrt(steps_per_day), size=(n, max_lead + 1))
    steps[:, 0] = 0.0
    walk = np.cumsum(steps, axis=1)  # walk[i, L]: error of the forecast issued at i for lead L

    padded = np.concatenate([t_out_k, [np.nan]])

    def weather(issue: IntArray, cols: IntArray) -> FloatArray:
        lead = np.clip(cols - issue[:, None], 0, max_lead)
        truth = padded[np.minimum(cols, n)]
        return np.asarray(truth + walk[np.clip(issue, 0, n - 1)[:, None], lead], dtype=float)

    return weather


def _feature_groups() -> Iterable[tuple[str, slice]]:
    h = HOURS_PER_DAY
    names = [
        ("hour_of_day", h),
        ("hour_x_heating_degrees", h),
        ("day_of_week", 6),
        ("hour_x_day_off", h),
        ("day_off", 1),
        ("lagged_days_off", 2),
        ("heating_degrees_sq", 1),
        ("t_out_mean_24h", 1),
        ("t_out_at_issue", 1),
        ("load_same_hour_last_day", 1),
        ("load_same_hour_last_week", 1),
        ("load_last_3", 3),
    ]
    i = 0
    for name, k in names:
        yield name, slice(i, i + k)
        i += k


def _fit_ridge(x: FloatArray, y: FloatArray, weight_power: float, folds: int = 5) -> _StepModel:
    """Weighted ridge on standardised features; row weights ``1 / max(y, 5 % of mean)**weight_power``
    (power 1 makes squared errors roughly relative, which is what MAPE scores).

    The penalty is chosen by blocked cross-validation: the rows (in time order) are cut into ``folds``
    contiguous blocks, each held out once, so every season votes (a last-20 % hold-out is one season
    only, and on this data picked a penalty that was wrong for the others).
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # constant columns (e.g. a one-hot never seen) carry no information
    z = np.hstack([(x - mean) / scale, np.ones((len(y), 1))])
    w = 1.0 / np.maximum(np.abs(y), 0.05 * float(np.mean(np.abs(y))) + 1e-9) ** weight_power
    w = w / w.mean()
    # Gram matrices are additive over rows: each fold's training Gram is the total minus its block's.
    blocks = np.array_split(np.arange(len(y)), folds)
    grams = [(z[b].T @ (z[b] * w[b, None]), z[b].T @ (w[b] * y[b])) for b in blocks]
    g_all = sum(g for g, _ in grams)
    r_all = sum(r for _, r in grams)
    # all (penalty, fold) systems in one batched solve: far fewer BLAS calls than a loop
    a = np.stack([g_all - g + _penalty(z.shape[1], lam, len(y)) for lam in LAMBDAS for g, _ in grams])
    rhs = np.stack([r_all - r for _ in LAMBDAS for _, r in grams])
    betas = np.linalg.solve(a, rhs[..., None])[..., 0].reshape(len(LAMBDAS), folds, -1)
    errs = [
        sum(float(np.sum(w[b] * (z[b] @ betas[i, j] - y[b]) ** 2)) for j, b in enumerate(blocks))
        for i in range(len(LAMBDAS))
    ]
    best_lam = LAMBDAS[int(np.argmin(errs))]
    beta = np.linalg.solve(g_all + _penalty(z.shape[1], best_lam, len(y)), r_all)
    return _StepModel(mean=mean, scale=scale, coef=beta[:-1], intercept=float(beta[-1]), lam=best_lam)


def _penalty(n_cols: int, lam: float, n_rows: int) -> FloatArray:
    """Ridge penalty λ·n/1000 on every standardised column, none on the intercept (the last column).

    Closed form [Hastie, Tibshirani & Friedman 2009, eq. 3.44]: beta = (ZᵀWZ + P)⁻¹ ZᵀWy.
    """
    p = np.full(n_cols, lam * n_rows * 1e-3)
    p[-1] = 0.0
    return np.diag(p)
