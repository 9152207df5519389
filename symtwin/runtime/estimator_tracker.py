"""The twin as the service runs it, corrected by the measurements: :class:`EstimatorTracker`.

Same :class:`symtwin.runtime.service.TwinPort` interface as the open-loop
:class:`symtwin.runtime.twin_tracker.ParkTracker`, on top of :class:`twin.estimate.Estimator` (a
reduced-rank square-root EKF over the full park model). Estimates carry their standard deviation; each heat
exchanger's ``fouling`` (estimated UA / clean UA) is in ``unit_states()`` and kept as a series for the
fouling report (``fouling_series()``).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.base import Sample
from symtwin.runtime.twin_tracker import exchange_flows, inputs_at
from twin.estimate import Estimator, EstimatorParams, StepReport
from twin.park import Park

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class FoulingPoint:
    """One point of a heat exchanger's fouling series: time [s since epoch], UA/UA_clean [-] and its std,
    and the estimated UA [W/K]."""

    t: float
    ratio: float
    std: float
    ua_w_k: float


def default_estimated_params(park: Park) -> tuple[str, ...]:
    """Slow parameters the estimator tracks by default: every storage tank's and DH pipe's loss
    coefficient. Heat-exchanger UA needs no parameter: each exchanger's ``fouling`` state is estimated."""
    names = [f"{u.name}.loss_coefficient" for u in park.spec.units if u.model in ("storage_tank", "dh_pipe")]
    return tuple(n for n in names if n in park.param_names)


def max_age_by_key(site: object) -> dict[str, float]:
    """Per measured key, the ``max_age`` [s] of its tag (the smallest, if several tags share a key)."""
    out: dict[str, float] = {}
    for tag in getattr(site, "tags").values():  # noqa: B009 - duck-typed LoadedSite
        if getattr(tag.direction, "value", tag.direction) == "measurement":
            out[tag.key] = min(out.get(tag.key, math.inf), float(tag.max_age_s))
    return out


def estimator_params_from_site(
    site: object, params: Iterable[str] = (), **overrides: float
) -> EstimatorParams:
    """Measurement noise per key from the site's measurement tags (``noise_si``), parameters to estimate.

    Two tags on one key: the smaller noise wins (the filter takes one value per key).
    """
    noise: dict[str, float] = {}
    for tag in getattr(site, "tags").values():  # noqa: B009 - duck-typed LoadedSite
        if getattr(tag.direction, "value", tag.direction) != "measurement":
            continue
        n = float(tag.noise_si)
        noise[tag.key] = min(noise.get(tag.key, math.inf), n)
    return EstimatorParams(noise=noise, params=tuple(params), **overrides)  # type: ignore[arg-type]


class EstimatorTracker:
    """Twin with measurement correction (EKF), for the service.

    t0_epoch: clock time of profile time 0 [s since epoch].
    max_step_s: longest single prediction [s]; a longer gap is predicted in pieces, corrected once.
    max_age: per measured key, the age [s] beyond which a sample is stale (``update_samples``).
    fouling_every_s: spacing of the kept fouling series [s]; fouling_keep: points kept per exchanger.
    """

    def __init__(
        self,
        park: Park,
        t0_epoch: float,
        settings: EstimatorParams,
        exchanges: Mapping[str, tuple[str, str, str]] | None = None,
        max_step_s: float = 900.0,
        x0: np.ndarray | None = None,
        max_age: Mapping[str, float] | None = None,
        fouling_every_s: float = 600.0,
        fouling_keep: int = 10_000,
    ) -> None:
        self.park = park
        self.t0 = t0_epoch
        self.max_step_s = max_step_s
        self.schedule = park.input_schedule()
        self._inputs = {name: i for i, name in enumerate(park.input_names)}
        self._applied: dict[str, float] = {}
        self.est = Estimator(park, settings, x0=park.settle(self.schedule(0.0)) if x0 is None else x0)
        self.exchanges = dict(exchanges or {})
        self.max_age = dict(max_age or {})
        self._last: float | None = None
        self._cache: Mapping[str, tuple[float, float]] | None = None
        self._clean_ua = {
            hx: float(park.params[park.param_names.index(f"{hx}.ua")])
            for hx in self.est.fouling()
            if f"{hx}.ua" in park.param_names
        }
        self._fouling_every = fouling_every_s
        self._fouling_next = -math.inf
        self._fouling: dict[str, deque[FoulingPoint]] = {
            hx: deque(maxlen=fouling_keep) for hx in self._clean_ua
        }
        self.last_report: StepReport | None = None
        self.failures = 0  # updates that failed and fell back to the open-loop step

    @classmethod
    def from_site(
        cls,
        site: object,
        park: Park,
        t0_epoch: float,
        exchanges: Mapping[str, tuple[str, str, str]] | None = None,
        params: Iterable[str] | None = None,
        **kw: Any,
    ) -> EstimatorTracker:
        """Noise and max age per key from the site's measurement tags; ``params`` default
        :func:`default_estimated_params`."""
        settings = estimator_params_from_site(
            site, default_estimated_params(park) if params is None else params
        )
        return cls(park, t0_epoch, settings, exchanges, max_age=max_age_by_key(site), **kw)

    def _u(self, now: float) -> np.ndarray:
        return inputs_at(self.schedule, self.t0, self._inputs, self._applied, now)

    def update(self, now: float, measured: Mapping[str, float], applied: Mapping[str, float]) -> None:
        """Predict from the last update to ``now`` and correct with ``measured`` (key -> value [SI])."""
        self._applied.update(applied)
        if self._last is None:
            self._last = now
        saved = (self.est.x.copy(), self.est.S.copy(), self.est.r.copy(), self._last)
        try:
            self._advance(now, measured)
            if not (np.isfinite(self.est.x).all() and np.isfinite(self.est.S).all()):
                raise FloatingPointError("estimate is not finite")
        except Exception as exc:  # keep the twin alive: last good estimate, advanced open loop
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning(
                    "estimator update failed (%s, %d times); advancing the last good estimate open loop",
                    exc,
                    self.failures,
                )
            x, sq, r, last = saved
            self.est.x, self.est.S, self.est.r = x, sq, r
            self.est.x = self.park.step(x, self._u(now), max(now - last, 0.0)) if now > last else x
            self._last = now
        self._cache = None
        if now >= self._fouling_next:
            self._fouling_next = now + self._fouling_every
            for hx, (ratio, std) in self.est.fouling().items():
                if hx in self._fouling:
                    self._fouling[hx].append(FoulingPoint(now, ratio, std, ratio * self._clean_ua[hx]))

    def _advance(self, now: float, measured: Mapping[str, float]) -> None:
        assert self._last is not None
        gap = now - self._last
        while gap > self.max_step_s + 1e-9:  # a pause: predict in pieces, correct only at the end
            self.est.predict(self._u(self._last + self.max_step_s), self.max_step_s)
            self._last += self.max_step_s
            gap -= self.max_step_s
        u = self._u(now)
        self.est.predict(u, max(gap, 0.0))
        self._last = now
        self.last_report = self.est.correct(u, measured, now)

    def update_samples(
        self, now: float, samples: Iterable[Sample], tag_keys: Mapping[str, str], applied: Mapping[str, float]
    ) -> None:
        """Like :meth:`update` from raw samples: bad-quality and stale samples (older than the key's
        ``max_age``) are skipped; ``tag_keys`` maps tag id -> ``<unit>.<quantity>``; the newest sample wins."""
        measured: dict[str, tuple[float, float]] = {}
        for s in samples:
            key = tag_keys.get(s.tag)
            if key is None or not s.is_usable():
                continue
            if now - s.timestamp > self.max_age.get(key, math.inf):
                continue
            if key not in measured or s.timestamp >= measured[key][0]:
                measured[key] = (s.timestamp, s.value)
        self.update(now, {k: v for k, (_, v) in measured.items()}, applied)

    def estimates(self) -> Mapping[str, tuple[float, float]]:
        """Every output and scalar state, plus estimated parameters: ``name -> (value, std)`` [SI]."""
        if self._cache is None:
            t = self._last if self._last is not None else self.t0
            allv = self.est.output_std(self._u(t))
            out = {k: v for k, v in allv.items() if "[" not in k}
            for name, value in self.est.params.items():
                out[name] = (value, self.est.param_std[name])
            for hx, (ratio, std) in self.est.fouling().items():
                if hx in self._clean_ua:
                    out[f"{hx}.ua"] = (ratio * self._clean_ua[hx], std * self._clean_ua[hx])
            self._cache = out
        return self._cache

    def unit_states(self) -> Mapping[str, Mapping[str, float]]:
        """Unmeasured distributed states, per unit: tank layers, pipe and exchanger profiles, fouling."""
        units: dict[str, dict[str, float]] = {}
        for name, v in zip(self.park.state_names, self.est.x, strict=True):
            unit, _, qty = name.partition(".")
            if "[" in qty or qty in ("fouling", "load"):
                units.setdefault(unit, {})[qty] = float(v)
        for hx, (_, std) in self.est.fouling().items():
            units.setdefault(hx, {})["fouling_std"] = std
        return units

    def flows(self) -> Mapping[str, tuple[float, float | None]]:
        return exchange_flows({k: v for k, (v, _) in self.estimates().items()}, self.exchanges)

    def fouling_series(self) -> Mapping[str, list[FoulingPoint]]:
        """Per heat exchanger, the estimated UA relative to its clean value over time (for maintenance)."""
        return {hx: list(points) for hx, points in self._fouling.items()}

    def rejected_counts(self) -> Mapping[str, int]:
        """Measurements refused by the innovation gate, per key, since start."""
        return self.est.rejected_counts()
