"""Assembling the complete horizon the MPC gets, from forecasts of mixed quality.

A :class:`Forecast` is a series issued at a time: ``issued_at`` and values at ``times_s``. Providers are
asked in priority order (e.g. MQTT, then a CSV file, then the built-in model, then the config profile
as the last resort); each step of the horizon takes its value from the first provider whose forecast
passes validation and covers that step. The result, :class:`ForecastHorizon`, says for every step which
source it came from, and carries the alarms raised while assembling it.

Validation and repair rules (applied in this order; every rule that fires is counted, per source):

1. ``issued_in_future``: issued more than ``future_tolerance_s`` after now → rejected.
2. ``expired``: older than ``max_age_s`` at assembly time → rejected, alarm; the next source is used.
3. ``length_mismatch``: different numbers of times and values, or no values at all → rejected.
4. ``wrong_length``: ``expected_points`` is set and the count differs → a longer forecast is cut to the
   expected count; a shorter one is used where it reaches and the rest comes from the next source.
5. ``reordered``: timestamps out of order → sorted (values follow their timestamps);
   ``duplicate_times``: two values for one time → rejected (no rule can say which is right).
6. ``not_finite`` / ``out_of_bounds``: NaN, ±inf or values outside ``bounds`` → dropped from the series.
7. ``gap_interpolated``: a horizon step between two remaining points at most ``max_gap_s`` apart is
   linearly interpolated; ``gap_uncovered``: steps in a longer gap, or outside the forecast's span, are
   taken from the next source (never extrapolated).

A rejected forecast or a dropped value never reaches the MPC. The last provider should be one that
always answers (a config profile); if even it leaves steps uncovered, :class:`HorizonIncomplete` is
raised rather than handing over a horizon with holes.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

log = logging.getLogger(__name__)

# Epoch seconds are ~1.8e9: relative tolerances (np.isclose) would match times hours apart.
TIME_TOLERANCE_S = 1e-3


class HorizonIncomplete(Exception):
    """No provider, not even the last resort, covered some steps of the horizon."""


@dataclass(frozen=True)
class Forecast:
    """A series issued at ``issued_at`` [s, epoch UTC]: ``values`` [SI] at ``times_s`` [s, epoch UTC]."""

    source: str
    issued_at: float
    times_s: FloatArray
    values: FloatArray


@dataclass(frozen=True)
class ValidationRules:
    """Rules one provider's forecasts are held to (see the module docstring).

    max_age_s: oldest acceptable forecast at assembly time [s].
    max_gap_s: longest span between two valid points that is interpolated across [s].
    bounds: (low, high) a value must lie within [SI unit of the quantity].
    expected_points: the number of values a complete forecast has, or None if it may vary.
    future_tolerance_s: clock skew allowed for ``issued_at`` ahead of now [s].
    """

    max_age_s: float = math.inf
    max_gap_s: float = 3 * 3600.0
    bounds: tuple[float, float] = (-math.inf, math.inf)
    expected_points: int | None = None
    future_tolerance_s: float = 60.0


class AlarmKind(enum.StrEnum):
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Alarm:
    """Something the operator should know about the forecast the MPC got."""

    source: str
    kind: AlarmKind
    message: str
    at: float


@dataclass(frozen=True)
class ForecastHorizon:
    """What the controller gets: a value for every step, and where each came from.

    issued_at: assembly time [s, epoch UTC]; times_s: the horizon steps [s, epoch UTC];
    values: one finite value per step [SI]; sources: the provider name per step;
    alarms: raised while assembling; repairs: rule → count for this assembly ("source:rule").
    """

    issued_at: float
    times_s: FloatArray
    values: FloatArray
    sources: tuple[str, ...]
    alarms: tuple[Alarm, ...] = ()
    repairs: Mapping[str, int] = field(default_factory=dict)

    def share_from(self, source: str) -> float:
        """Fraction of the steps taken from ``source`` (0 … 1)."""
        return sum(s == source for s in self.sources) / len(self.sources) if self.sources else 0.0


class ForecastProvider(Protocol):
    """Anything that can offer a forecast for given horizon times (a topic, a file, the model, a profile)."""

    @property
    def name(self) -> str: ...

    def forecast(self, now: float, times_s: FloatArray) -> Forecast | None: ...


@dataclass(frozen=True)
class _Checked:
    """A forecast after rules 1–6: sorted, finite, in bounds."""

    times_s: FloatArray
    values: FloatArray


class Rejected(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def check(fc: Forecast, now: float, rules: ValidationRules, counts: Counter[str]) -> _Checked:
    """Apply rules 1–6 to ``fc``; raise :class:`Rejected` or return the repaired series.

    ``counts`` receives one increment per rule that fired (``wrong_length``, ``reordered``,
    ``not_finite``, ``out_of_bounds`` count affected values or messages; rejections count messages).
    """
    if not math.isfinite(fc.issued_at) or fc.issued_at > now + rules.future_tolerance_s:
        counts["issued_in_future"] += 1
        raise Rejected("issued_in_future", f"issued at {fc.issued_at}, after now ({now})")
    age = now - fc.issued_at
    if age > rules.max_age_s:
        counts["expired"] += 1
        raise Rejected("expired", f"issued {age:.0f} s ago, max age {rules.max_age_s:.0f} s")
    times = np.asarray(fc.times_s, dtype=float)
    values = np.asarray(fc.values, dtype=float)
    if times.ndim != 1 or times.shape != values.shape or len(times) == 0:
        counts["length_mismatch"] += 1
        raise Rejected("length_mismatch", f"{times.size} times and {values.size} values")
    if rules.expected_points is not None and len(values) != rules.expected_points:
        counts["wrong_length"] += 1
        if len(values) > rules.expected_points:
            times, values = times[: rules.expected_points], values[: rules.expected_points]
    if not np.all(np.isfinite(times)):
        counts["length_mismatch"] += 1
        raise Rejected("length_mismatch", "a timestamp is not a finite number")
    if np.any(np.diff(times) <= 0):
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
        if np.any(np.diff(times) == 0):
            counts["duplicate_times"] += 1
            raise Rejected("duplicate_times", "two values for the same time")
        counts["reordered"] += 1
    finite = np.isfinite(values)
    if not finite.all():
        counts["not_finite"] += int((~finite).sum())
    low, high = rules.bounds
    inside = finite & (values >= low) & (values <= high)
    if (finite & ~inside).any():
        counts["out_of_bounds"] += int((finite & ~inside).sum())
    if not inside.any():
        raise Rejected("not_finite", "no usable value left")
    return _Checked(times[inside], values[inside])


def cover(checked: _Checked, grid: FloatArray, rules: ValidationRules, counts: Counter[str]) -> FloatArray:
    """Values of ``checked`` on ``grid`` (NaN where not covered, rule 7)."""
    t, v = checked.times_s, checked.values
    out = np.full(len(grid), np.nan)
    if len(t) == 1:
        out[np.abs(grid - t[0]) <= TIME_TOLERANCE_S] = v[0]
        return out
    j = np.searchsorted(t, grid, side="left")
    exact = (j < len(t)) & (np.abs(t[np.minimum(j, len(t) - 1)] - grid) <= TIME_TOLERANCE_S)
    out[exact] = v[np.minimum(j, len(t) - 1)][exact]
    inner = ~exact & (j > 0) & (j < len(t))
    jj = j[inner]
    lo_t, hi_t = t[jj - 1], t[jj]
    ok = (hi_t - lo_t) <= rules.max_gap_s
    frac = (grid[inner] - lo_t) / (hi_t - lo_t)
    vals = np.where(ok, v[jj - 1] + frac * (v[jj] - v[jj - 1]), np.nan)
    out[inner] = vals
    # an interpolated step counts as a repair when its neighbours are further apart than the series' usual step
    typical = float(np.median(np.diff(t)))
    for rule, k in (
        ("gap_interpolated", np.sum(ok & ((hi_t - lo_t) > 1.5 * typical))),
        ("gap_uncovered", np.sum(~ok)),
    ):
        if k:
            counts[rule] += int(k)
    return out


@dataclass
class HorizonAssembler:
    """Builds a :class:`ForecastHorizon` from providers in priority order, each with its rules.

    The last provider is the last resort (a config profile). ``counters`` accumulates, over the
    assembler's life, "source:rule" → count for the metrics endpoint and tests.
    """

    chain: Sequence[tuple[ForecastProvider, ValidationRules]]
    counters: Counter[str] = field(default_factory=Counter)
    _failing: dict[str, str] = field(default_factory=dict)

    def assemble(self, now: float, times_s: npt.ArrayLike) -> ForecastHorizon:
        """The horizon at ``times_s`` [s, epoch UTC] as known at ``now`` [s, epoch UTC]."""
        grid = np.asarray(times_s, dtype=np.float64)
        values = np.full(len(grid), np.nan)
        sources: list[str] = [""] * len(grid)
        alarms: list[Alarm] = []
        repairs: Counter[str] = Counter()
        for rank, (provider, rules) in enumerate(self.chain):
            missing = np.isnan(values)
            if not missing.any():
                break
            name = provider.name
            counts: Counter[str] = Counter()
            problem: tuple[AlarmKind, str] | None = None
            try:
                fc = provider.forecast(now, grid)
                if fc is None:
                    problem = (AlarmKind.UNAVAILABLE, "no forecast received")
                else:
                    covered = cover(check(fc, now, rules, counts), grid, rules, counts)
                    take = missing & np.isfinite(covered)
                    values[take] = covered[take]
                    for i in np.flatnonzero(take):
                        sources[i] = name
                    if rank > 0 and take.any():
                        alarms.append(
                            Alarm(
                                name,
                                AlarmKind.FALLBACK,
                                f"{int(take.sum())} of {len(grid)} steps from {name}",
                                now,
                            )
                        )
            except Rejected as exc:
                kind = AlarmKind.EXPIRED if exc.rule == "expired" else AlarmKind.REJECTED
                problem = (kind, str(exc))
            except Exception as exc:  # a provider failing must not stop the control loop
                counts["provider_error"] += 1
                problem = (AlarmKind.UNAVAILABLE, f"{type(exc).__name__}: {exc}")
            for rule, k in counts.items():
                repairs[f"{name}:{rule}"] += k
            if problem is not None:
                alarms.append(Alarm(name, problem[0], problem[1], now))
                if self._failing.get(name) != problem[0]:
                    log.warning("forecast source %s: %s (%s)", name, problem[0].value, problem[1])
                self._failing[name] = problem[0]
            elif name in self._failing:
                log.info("forecast source %s recovered", name)
                del self._failing[name]
        self.counters.update(repairs)
        if np.isnan(values).any():
            raise HorizonIncomplete(
                f"{int(np.isnan(values).sum())} of {len(grid)} steps not covered by any forecast source "
                "(the last source in the chain should be a config profile, which always answers)"
            )
        return ForecastHorizon(now, grid, values, tuple(sources), tuple(alarms), dict(repairs))
