"""Calibration from history: fit chosen park parameters to recorded measurements (nonlinear least squares).

The park is simulated over the history with the recorded setpoints as inputs (step-held) and the spec's
profiles for everything else, from a state settled on the first inputs; residuals are (model - measured) /
noise per measurement sample (missing samples simply absent). ``scipy.optimize.least_squares`` (trust
region reflective, bounds) fits relative multipliers r of the parameters (p = p_nominal r), so all
unknowns are O(1). The covariance is the Gauss-Newton one, (J^T J)^-1 s^2 with s^2 = 2 cost / (n - m) (the
reduced chi-square: 1 when the stated noise is right), and confidence intervals use Student's t.

History format (CSV, long): a header ``time,tag,value`` and one sample per row; ``time`` is ISO 8601
(``2021-08-01T00:10:00+00:00``; no zone: UTC) or seconds since the Unix epoch, ``tag`` a tag id of the
site config, ``value`` in SI units (as the adapters deliver them). Rows with an empty or non-numeric value
are skipped (a dropped sample). :func:`read_history_csv`, :func:`write_history_csv`.

Reference: J. Nocedal, S. Wright, Numerical Optimization (2006), 10.3; G. A. F. Seber, C. J. Wild,
Nonlinear Regression (1989), 5.1 (linearisation confidence intervals).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from twin.park import InputSchedule, Park

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]


class CalibrationError(ValueError):
    """Calibration cannot run as asked: unknown parameter, no usable measurement, bad history file."""


@dataclass
class History:
    """Recorded data by twin key (``<unit>.<quantity>``): (times [s of profile time], values [SI])."""

    series: dict[str, tuple[Array, Array]] = field(default_factory=dict)

    def span(self) -> tuple[float, float]:
        ts = [t for t, _ in self.series.values() if t.size]
        if not ts:
            raise CalibrationError("the history holds no samples")
        return float(min(t[0] for t in ts)), float(max(t[-1] for t in ts))


@dataclass(frozen=True)
class TagFit:
    """Residual statistics of one measured key at the fitted parameters [SI unit of the quantity]."""

    key: str
    n: int
    rms: float
    bias: float
    noise: float


@dataclass(frozen=True)
class CalibrationResult:
    """Fitted parameters [SI], standard errors and 95 % confidence intervals, and the fit per key."""

    names: list[str]
    initial: list[float]
    values: list[float]
    std: list[float]
    ci95: list[tuple[float, float]]
    tags: list[TagFit]
    reduced_chi2: float
    n_residuals: int
    success: bool
    message: str
    evaluations: int
    identifiable: list[bool] = field(default_factory=list)  # False: the tags carry no information on it
    at_bound: list[bool] = field(default_factory=list)  # True: stopped at a search bound, the fit is suspect

    def overlay(self, units: Mapping[str, str] | None = None) -> dict[str, dict[str, dict[str, str | float]]]:
        """A config overlay ``{"units": {unit_id: {param: value}}}``; with ``units`` (param name -> SI unit
        symbol) values are written as quantity strings such as ``"320000 W/K"``. Parameters that are not
        identifiable from the history are left out."""
        out: dict[str, dict[str, str | float]] = {}
        for k, (name, value) in enumerate(zip(self.names, self.values, strict=True)):
            if self.identifiable and not self.identifiable[k]:
                continue  # nothing was learnt about it: keep the config's value
            unit_id, _, param = name.partition(".")
            sym = (units or {}).get(name)
            out.setdefault(unit_id, {})[param] = (
                f"{value:.6g} {sym}" if sym and sym != "1" else float(f"{value:.6g}")
            )
        return {"units": out}


def input_schedule_from_history(park: Park, history: History) -> InputSchedule:
    """The spec's profiles and defaults, overridden by every recorded input key (held between samples)."""
    from twin.spec import Profile

    sched = park.input_schedule()
    for key, (t, v) in history.series.items():
        if key in sched.names and t.size:
            sched.set(key, Profile(key, t, v, interpolation="step"))
    return sched


def simulate_outputs(
    park: Park,
    p: Array,
    sched: InputSchedule,
    times: Array,
    settle_s: float = 6 * 3600.0,
    x0: Array | None = None,
) -> Array:
    """Outputs and states ``[outputs, states]`` at ``times`` [s] with parameters ``p``; the start state is
    ``x0`` or the park settled for ``settle_s`` [s] on the inputs at ``times[0]`` (with ``p``)."""
    from twin.integrate import Sdirk2

    solver = Sdirk2(park)
    solver.p = p
    u0 = sched(float(times[0]))
    x = park.x0.copy() if x0 is None else np.array(x0, dtype=float)
    if x0 is None and settle_s > 0:
        x = solver.advance(x, 0.0, settle_s, lambda _t, left=False: u0, 60.0, ())
    out = np.empty((times.size, park.n_outputs + park.n_states))
    out[0] = np.concatenate([park.outputs(x, u0, p), x])
    for k in range(1, times.size):
        a, z = float(times[k - 1]), float(times[k])
        x = solver.advance(x, a, z, sched, 30.0, sched.breakpoints(a, z))
        out[k] = np.concatenate([park.outputs(x, sched(z), p), x])
    return out


def calibrate(
    park: Park,
    history: History,
    params: Sequence[str],
    noise: Mapping[str, float],
    *,
    dt_grid: float | None = None,
    settle_s: float = 6 * 3600.0,
    bounds: tuple[float, float] = (0.05, 20.0),
    max_nfev: int = 60,
    skip_s: float = 0.0,
    x0: Array | None = None,
) -> CalibrationResult:
    """Fit ``params`` (park parameter names) to the measured keys of ``history`` weighted by ``noise``
    (key -> std [SI]). The model is sampled on a grid of ``dt_grid`` [s] (default: the median sample
    spacing) and interpolated linearly to the sample times; a coarser grid is faster but its interpolation
    error biases the fit where outputs move fast. The start state is the park settled on the first inputs
    for ``settle_s`` [s]; a real plant was not, so samples in the first ``skip_s`` [s] are left out of the
    fit (a burn-in while the start-state error decays). With ``x0`` (the state at the first time after
    ``skip_s``, e.g. from the estimator run over the burn-in, :func:`estimate_start_state`) the simulation
    starts there instead, for every trial parameter set."""
    from scipy.optimize import least_squares
    from scipy.stats import t as student_t

    unknown = [k for k in params if k not in park.param_names]
    if unknown or not params:
        raise CalibrationError(f"unknown or no parameters {list(unknown)}; the park's are {park.param_names}")
    names_all = park.output_names + park.state_names
    col = {n: i for i, n in enumerate(names_all)}
    t_first = history.span()[0] + skip_s
    series = {k: (t[t >= t_first], v[t >= t_first]) for k, (t, v) in history.series.items()}
    keys = [k for k in noise if k in col and k in series and series[k][0].size]
    if not keys:
        raise CalibrationError("no measured key of the history is an output or state of the park")
    t0, t1 = history.span()
    t0 = max(t0, t_first)
    if dt_grid is None:
        gaps = np.concatenate([np.diff(series[k][0]) for k in keys])
        dt_grid = max(float(np.median(gaps)) if gaps.size else 60.0, 1.0)
    n_grid = max(2, math.ceil((t1 - t0) / dt_grid) + 1)
    grid = np.linspace(t0, t0 + (n_grid - 1) * dt_grid, n_grid)
    sched = input_schedule_from_history(park, history)
    idx = np.array([park.param_names.index(k) for k in params], dtype=np.int64)
    p_nom = park.params.copy()
    sig = {k: max(float(noise[k]), 1e-12) for k in keys}
    nfev = 0

    def residuals(r: Array) -> Array:
        nonlocal nfev
        nfev += 1
        p = p_nom.copy()
        p[idx] = p_nom[idx] * r
        ys = simulate_outputs(park, p, sched, grid, settle_s, x0)
        parts = []
        for k in keys:
            t, v = series[k]
            parts.append((np.interp(t, grid, ys[:, col[k]]) - v) / sig[k])
        return np.concatenate(parts)

    r0 = np.ones(len(params))
    sol = least_squares(
        residuals,
        r0,
        bounds=(np.full_like(r0, bounds[0]), np.full_like(r0, bounds[1])),
        diff_step=1e-4,
        x_scale=1.0,
        max_nfev=max_nfev,
    )
    n_res = sol.fun.size
    dof = max(n_res - len(params), 1)
    s2 = 2.0 * float(sol.cost) / dof
    # Gauss-Newton covariance from the SVD of J; a parameter with a share in J's null space is not
    # identifiable from these tags: its std is infinite (pinv would report 0, falsely exact).
    _, sv, vt = np.linalg.svd(np.atleast_2d(sol.jac), full_matrices=False)
    good = sv > 1e-8 * max(float(sv.max(initial=0.0)), 1e-300)
    cov_r = (vt[good].T / sv[good] ** 2) @ vt[good] * s2
    sd_r = np.sqrt(np.maximum(np.diag(cov_r), 0.0))
    null = np.vstack([vt[~good], np.eye(len(params))[: len(params) - vt.shape[0]]])
    identifiable = ~np.any(np.abs(null) > 1e-3, axis=0) if null.size else np.ones(len(params), dtype=bool)
    sd_r[~identifiable] = math.inf
    tq = float(student_t.ppf(0.975, dof))
    values = (p_nom[idx] * sol.x).tolist()
    std = [
        float(abs(p) * sd) if math.isfinite(sd) else math.inf for p, sd in zip(p_nom[idx], sd_r, strict=True)
    ]
    ci = [(v - tq * s, v + tq * s) for v, s in zip(values, std, strict=True)]
    fits = []
    offset = 0
    for k in keys:
        n = series[k][0].size
        res = sol.fun[offset : offset + n] * sig[k]
        offset += n
        fits.append(TagFit(k, n, float(np.sqrt(np.mean(res**2))), float(np.mean(res)), sig[k]))
    return CalibrationResult(
        names=list(params),
        initial=p_nom[idx].tolist(),
        values=values,
        std=std,
        ci95=ci,
        tags=fits,
        reduced_chi2=s2,
        n_residuals=n_res,
        success=bool(sol.success),
        message=str(sol.message),
        evaluations=nfev,
        identifiable=identifiable.tolist(),
        at_bound=[bool(v <= bounds[0] * 1.0001 or v >= bounds[1] * 0.9999) for v in sol.x],
    )


def estimate_start_state(
    park: Park,
    history: History,
    noise: Mapping[str, float],
    until_s: float,
    step_s: float = 60.0,
    settle_s: float = 6 * 3600.0,
) -> Array:
    """The park state at ``history start + until_s`` as the online estimator (nominal parameters, fouling
    tracked) reconstructs it from the measurements of the burn-in: a start for :func:`calibrate` that
    does not assume the plant was settled (a tank's layers remember days)."""
    from twin.estimate import Estimator, EstimatorParams

    sched = input_schedule_from_history(park, history)
    t0 = history.span()[0]
    keys = {k: v for k, v in noise.items() if k in history.series}
    est = Estimator(park, EstimatorParams(noise=keys), x0=park.settle(sched(t0), settle_s))
    grid = np.arange(t0, t0 + until_s + 1e-9, step_s)
    for k, t in enumerate(grid):
        now: dict[str, float] = {}
        for key in keys:
            ts, vs = history.series[key]
            j = int(np.searchsorted(ts, t, side="right")) - 1
            if j >= 0 and t - ts[j] < step_s:
                now[key] = float(vs[j])
        if k == 0:
            est.correct(sched(float(t)), now, float(t))
        else:
            est.step(float(t), sched(float(grid[k - 1])), step_s, now)
    x = est.x.copy()
    x[est.fouling_index] = 1.0  # the fit's UA is the exchanger's whole UA: no estimated fouling on top
    return x


# ------------------------------------------------------------------------------------ synthetic history
def synthetic_history(
    park: Park,
    p_true: Array,
    noise: Mapping[str, float],
    duration_s: float,
    dt_s: float = 60.0,
    inputs: Mapping[str, Callable[[float], float]] | None = None,
    drop_fraction: float = 0.02,
    seed: int = 0,
    settle_s: float = 6 * 3600.0,
) -> History:
    """A "plant" history: the twin with parameters ``p_true``, measured keys of ``noise`` sampled every
    ``dt_s`` [s] with Gaussian noise (std from ``noise``) and ``drop_fraction`` of samples missing; the
    inputs named in ``inputs`` (callables of t [s]) are recorded as well, sampled on the same grid."""
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, duration_s + 1e-9, dt_s)
    sched = park.input_schedule()
    hist = History()
    for name, fn in (inputs or {}).items():
        values = np.array([fn(float(t)) for t in times])
        hist.series[name] = (times.copy(), values)
    sched = input_schedule_from_history(park, hist)
    ys = simulate_outputs(park, p_true, sched, times, settle_s)
    col = {n: i for i, n in enumerate(park.output_names + park.state_names)}
    for key, sd in noise.items():
        if key not in col:
            continue
        keep = rng.random(times.size) >= drop_fraction
        v = ys[:, col[key]] + sd * rng.standard_normal(times.size)
        hist.series[key] = (times[keep], v[keep])
    return hist


# ------------------------------------------------------------------------------------ CSV
def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        t = dt.datetime.fromisoformat(text)
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return t.timestamp()


def read_history_csv(path: str | Path, tag_keys: Mapping[str, str], epoch: float) -> History:
    """Read a long-format history CSV (``time,tag,value``; see the module doc) into twin keys.

    tag_keys: tag id -> ``<unit>.<quantity>``; tags not listed are ignored. epoch: clock time of profile
    time 0 [s since epoch]. Raises :class:`CalibrationError` naming the file and line on a bad row.
    """
    rows: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:3]] != ["time", "tag", "value"]:
            raise CalibrationError(f"{path}:1: expected the header 'time,tag,value', got {header}")
        for line, row in enumerate(reader, start=2):
            if len(row) < 3:
                raise CalibrationError(f"{path}:{line}: expected 3 columns, got {len(row)}")
            key = tag_keys.get(row[1].strip())
            if key is None:
                continue
            try:
                t = _parse_time(row[0].strip())
            except ValueError:
                raise CalibrationError(
                    f"{path}:{line}: time {row[0]!r} is neither ISO 8601 nor seconds"
                ) from None
            try:
                v = float(row[2])
            except ValueError:
                continue  # a dropped sample
            if math.isfinite(v):
                rows.setdefault(key, []).append((t - epoch, v))
    hist = History()
    for key, pts in rows.items():
        pts.sort()
        arr = np.asarray(pts, dtype=float)
        hist.series[key] = (arr[:, 0], arr[:, 1])
    return hist


def write_history_csv(path: str | Path, history: History, key_tags: Mapping[str, str], epoch: float) -> int:
    """Write ``history`` as long-format CSV (ISO 8601 UTC times); key_tags: key -> tag id. Returns rows."""
    rows: list[tuple[float, str, float]] = []
    for key, (t, v) in history.series.items():
        tag = key_tags.get(key)
        if tag is None:
            continue
        rows.extend((float(ti) + epoch, tag, float(vi)) for ti, vi in zip(t, v, strict=True))
    rows.sort(key=lambda r: (r[0], r[1]))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "tag", "value"])
        for ts, tag, value in rows:
            iso = dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat()
            w.writerow([iso, tag, repr(value)])
    return len(rows)


def history_from_store(
    store: object,
    tag_keys: Mapping[str, str],
    epoch: float,
    start: float,
    end: float,
    max_points: int = 100_000,
) -> History:
    """Read a history from a store with ``query(tag, start, end, max_points) -> [Sample]`` (e.g.
    ``adapters.store.history.LocalHistory``); bad-quality samples are left out. start, end [s since epoch]."""
    hist = History()
    for tag, key in tag_keys.items():
        samples = [s for s in store.query(tag, start, end, max_points) if s.is_usable()]  # type: ignore[attr-defined]
        if samples:
            t = np.array([s.timestamp - epoch for s in samples])
            v = np.array([s.value for s in samples])
            hist.series[key] = (t, v)
    return hist
