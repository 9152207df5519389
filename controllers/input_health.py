"""Is the controller's input fit to act on? Staleness, quality and frozen-sensor detection per tag.

A frozen sensor shows up in one of two ways: it stops sending (its latest value ages past ``max_age_s``)
or it keeps sending the same value with fresh timestamps (zero spread over a window of samples). The
first is caught in the first check after the age limit passes; the second once ``freeze_window``
consecutive fresh samples are identical, so a window of 3 or less flags it within 3 control cycles when
the tag is sampled once per cycle. Zero-spread detection is off by default because many signals (a
valve at its end stop, a unit switched off) are legitimately constant.

The monitor is plain logic with the clock passed in; the runtime calls :meth:`InputMonitor.check` once
per control cycle with its latest-value table.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol


class Reading(Protocol):
    """What the monitor needs from a sample (``adapters.base.Sample`` fits: quality 0 means good)."""

    @property
    def timestamp(self) -> float: ...

    @property
    def value(self) -> float: ...

    @property
    def quality(self) -> int: ...


class InputProblem(enum.StrEnum):
    MISSING = "missing"  # no value seen yet
    STALE = "stale"  # latest value older than max_age_s
    FROZEN = "frozen"  # identical values over freeze_window fresh samples
    BAD_QUALITY = "bad_quality"  # source flagged the value uncertain or bad
    NON_FINITE = "non_finite"  # NaN or infinite
    IMPLAUSIBLE = "implausible"  # outside the plausible range


@dataclass(frozen=True)
class InputLimits:
    """Health rules for one measured tag.

    max_age_s: oldest acceptable value [s].
    freeze_window: number of consecutive fresh samples that, all within ``freeze_spread`` of each
        other, mark the sensor frozen; None turns zero-spread detection off. Must be >= 2.
    freeze_spread: largest max-min over the window still counted as "no variation" [unit of the tag].
    lo, hi: plausible range [unit of the tag]; values outside are refused.
    """

    tag: str
    max_age_s: float
    freeze_window: int | None = None
    freeze_spread: float = 0.0
    lo: float = -math.inf
    hi: float = math.inf

    def __post_init__(self) -> None:
        if not (self.max_age_s > 0.0):
            raise ValueError(f"{self.tag}: max_age_s must be > 0, got {self.max_age_s}")
        if self.freeze_window is not None and self.freeze_window < 2:
            raise ValueError(f"{self.tag}: freeze_window must be >= 2 or None, got {self.freeze_window}")
        if not (self.freeze_spread >= 0.0):
            raise ValueError(f"{self.tag}: freeze_spread must be >= 0, got {self.freeze_spread}")


@dataclass(frozen=True)
class InputHealth:
    """Result of one check: ``ok`` when no required tag has a problem; ``problems`` says which and why."""

    ok: bool
    problems: Mapping[str, InputProblem] = field(default_factory=dict)
    detail: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems", MappingProxyType(dict(self.problems)))
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    @classmethod
    def good(cls) -> InputHealth:
        return cls(ok=True)

    @classmethod
    def bad(cls, reason: str) -> InputHealth:
        """Inputs refused for a reason that is not one tag's (e.g. the estimator diverged)."""
        return cls(ok=False, detail={"*": reason})

    def summary(self) -> str:
        if self.ok:
            return "inputs ok"
        parts = [f"{tag}: {self.detail.get(tag, problem.value)}" for tag, problem in self.problems.items()]
        parts += [reason for tag, reason in self.detail.items() if tag not in self.problems]
        return "inputs bad (" + "; ".join(parts) + ")"


class InputMonitor:
    """Checks the latest value of each tag once per cycle; remembers recent values for freeze detection."""

    def __init__(self, limits: Sequence[InputLimits]) -> None:
        self._limits = {lim.tag: lim for lim in limits}
        if len(self._limits) != len(limits):
            raise ValueError("duplicate tag in input limits")
        self._windows: dict[str, deque[float]] = {
            lim.tag: deque(maxlen=lim.freeze_window) for lim in limits if lim.freeze_window is not None
        }
        self._last_ts: dict[str, float] = {}

    def check(self, now: float, latest: Mapping[str, Reading]) -> InputHealth:
        """Judge the latest values at time ``now`` [s, same axis as the sample timestamps]."""
        problems: dict[str, InputProblem] = {}
        detail: dict[str, str] = {}
        for tag, lim in self._limits.items():
            found = self._check_one(now, lim, latest.get(tag))
            if found is not None:
                problems[tag], detail[tag] = found
        return InputHealth(ok=not problems, problems=problems, detail=detail)

    def _check_one(
        self, now: float, lim: InputLimits, reading: Reading | None
    ) -> tuple[InputProblem, str] | None:
        if reading is None:
            return InputProblem.MISSING, "no value received"
        value, ts = float(reading.value), float(reading.timestamp)
        window = self._windows.get(lim.tag)
        # A new sample is one with a timestamp we have not seen; only those count towards the window.
        if window is not None and ts != self._last_ts.get(lim.tag):
            window.append(value)
        self._last_ts[lim.tag] = ts
        if int(reading.quality) != 0:
            return InputProblem.BAD_QUALITY, f"quality {int(reading.quality)}"
        if not math.isfinite(value):
            return InputProblem.NON_FINITE, f"value {value}"
        age = now - ts
        if not math.isfinite(age) or age > lim.max_age_s:
            return InputProblem.STALE, f"age {age:.3g} s > max {lim.max_age_s:.3g} s"
        if not lim.lo <= value <= lim.hi:
            return InputProblem.IMPLAUSIBLE, f"value {value:.6g} outside [{lim.lo:.6g}, {lim.hi:.6g}]"
        if window is not None and len(window) == window.maxlen:
            finite = [v for v in window if math.isfinite(v)]
            if len(finite) == len(window) and max(finite) - min(finite) <= lim.freeze_spread:
                return InputProblem.FROZEN, f"{len(window)} samples within {lim.freeze_spread:.3g}"
        return None
