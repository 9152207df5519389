"""Types every controller speaks: the result of one control step, its status, and setpoint limits.

A controller (economic MPC, rule-based baseline, a test toy) is anything with
``step(state, forecasts, now) -> ControlResult``. The supervisor decides what, if anything, of a result
is written. A result whose status is not usable carries no setpoints and no plan: the failed iterate of
a solver is never passed on, so it cannot be written by mistake (do-mpc's ``make_step`` returns its input
even when IPOPT failed; this type makes that impossible).

Units: SI inside. Times are seconds on the injected clock's axis (the same axis as ``now``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]


class SolveStatus(enum.StrEnum):
    """How a control step ended."""

    OPTIMAL = "optimal"  # converged to the requested tolerance
    SUBOPTIMAL = (
        "suboptimal"  # acceptable point (e.g. IPOPT "acceptable level", iteration limit at a feasible point)
    )
    INFEASIBLE = "infeasible"  # no point meets the constraints (even with slack)
    TIMEOUT = "timeout"  # deadline passed; the worker was stopped
    ERROR = "error"  # exception, non-finite output, crashed worker

    @property
    def usable(self) -> bool:
        """True when the result's setpoints may be considered for writing."""
        return self in (SolveStatus.OPTIMAL, SolveStatus.SUBOPTIMAL)


class ResultError(ValueError):
    """A ControlResult was built inconsistently (e.g. a failed status that carries setpoints)."""


def _frozen_array(values: object) -> FloatArray:
    arr = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class ControlResult:
    """The outcome of one control step.

    status: how the step ended; only ``status.usable`` results carry setpoints or a plan.
    setpoints: value for the first control interval, per setpoint tag [SI unit of the tag].
    plan: per setpoint tag, the planned values over the horizon, one per entry of ``plan_times``
        (zero-order hold: ``plan[tag][k]`` applies from ``plan_times[k]`` until ``plan_times[k+1]``).
    plan_times: start time of each plan interval [s, clock axis], strictly increasing. Empty when there
        is no plan.
    objective_terms: cost terms of the objective (e.g. "fuel", "electricity", "co2") [currency or
        as documented by the controller].
    slack: slack used per soft constraint [unit of the constraint]; all zero means no constraint relaxed.
    solve_time_s: wall time of the step [s].
    message: human-readable detail (solver return status, exception text).
    """

    status: SolveStatus
    setpoints: Mapping[str, float] = field(default_factory=dict)
    plan: Mapping[str, FloatArray] = field(default_factory=dict)
    plan_times: FloatArray = field(default_factory=lambda: np.zeros(0))
    objective_terms: Mapping[str, float] = field(default_factory=dict)
    slack: Mapping[str, float] = field(default_factory=dict)
    solve_time_s: float = 0.0
    message: str = ""

    def __post_init__(self) -> None:
        status = SolveStatus(self.status)
        object.__setattr__(self, "status", status)
        times = _frozen_array(self.plan_times)
        plan = {str(k): _frozen_array(v) for k, v in self.plan.items()}
        setpoints = {str(k): float(v) for k, v in self.setpoints.items()}
        if not status.usable and (setpoints or plan):
            raise ResultError(f"a {status.value} result must not carry setpoints or a plan")
        for tag, values in plan.items():
            if values.shape != times.shape:
                raise ResultError(f"plan for {tag!r} has {values.size} values for {times.size} plan times")
        with np.errstate(over="ignore", invalid="ignore"):  # huge or NaN times: judged, not warned
            increasing = bool(np.all(np.diff(times) > 0))
        if times.size > 1 and not increasing:
            raise ResultError("plan_times must be strictly increasing")
        object.__setattr__(self, "plan_times", times)
        object.__setattr__(self, "plan", MappingProxyType(plan))
        object.__setattr__(self, "setpoints", MappingProxyType(setpoints))
        object.__setattr__(
            self, "objective_terms", MappingProxyType({k: float(v) for k, v in self.objective_terms.items()})
        )
        object.__setattr__(self, "slack", MappingProxyType({k: float(v) for k, v in self.slack.items()}))

    def __reduce__(self) -> tuple[object, ...]:
        # MappingProxyType cannot be pickled; results cross a process boundary (deadline runner).
        return (
            _rebuild_result,
            (
                self.status.value,
                dict(self.setpoints),
                {k: np.array(v) for k, v in self.plan.items()},
                np.array(self.plan_times),
                dict(self.objective_terms),
                dict(self.slack),
                self.solve_time_s,
                self.message,
            ),
        )

    @classmethod
    def failure(cls, status: SolveStatus, message: str, solve_time_s: float = 0.0) -> ControlResult:
        """A result that carries nothing to write (infeasible, timeout, error)."""
        if status.usable:
            raise ResultError(f"failure() needs a failed status, got {status.value}")
        return cls(status=status, solve_time_s=solve_time_s, message=message)

    @property
    def usable(self) -> bool:
        """Status is usable and every setpoint and plan value is finite."""
        if not self.status.usable:
            return False
        if not all(math.isfinite(v) for v in self.setpoints.values()):
            return False
        return all(bool(np.all(np.isfinite(v))) for v in self.plan.values())

    def plan_value(self, tag: str, t: float) -> float | None:
        """Planned value of ``tag`` at time ``t`` [s] (zero-order hold), or None outside the plan.

        The last interval is taken to be as long as the one before it; a one-point plan gives None (a
        single point says nothing about how long it holds).
        """
        values = self.plan.get(tag)
        end = self.plan_end()
        if values is None or end is None or not math.isfinite(t):
            return None
        if t < float(self.plan_times[0]) or t >= end:
            return None
        k = int(np.searchsorted(self.plan_times, t, side="right")) - 1
        return float(values[k])

    def plan_end(self) -> float | None:
        """End of the last plan interval [s], or None when there is no usable plan grid."""
        times = self.plan_times
        if times.size < 2:
            return None
        last, before = float(times[-1]), float(times[-2])  # Python floats: overflow gives inf, no warning
        return last + (last - before)


def _rebuild_result(
    status: str,
    setpoints: dict[str, float],
    plan: dict[str, FloatArray],
    plan_times: FloatArray,
    objective_terms: dict[str, float],
    slack: dict[str, float],
    solve_time_s: float,
    message: str,
) -> ControlResult:
    return ControlResult(
        SolveStatus(status), setpoints, plan, plan_times, objective_terms, slack, solve_time_s, message
    )


@runtime_checkable
class Controller(Protocol):
    """Anything that proposes setpoints.

    state: current (estimated) values by name, ``"<unit>.<quantity>"`` [SI].
    forecasts: series over the horizon by name [SI], sampled on the controller's own grid.
    now: current time [s, clock axis].
    Implementations return a failed ControlResult instead of raising for solver trouble; an exception
    is treated by the caller as ``SolveStatus.ERROR``.
    """

    def step(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float
    ) -> ControlResult: ...


@dataclass(frozen=True)
class ControlRequest:
    """One step's inputs, as sent to a controller running in another process."""

    state: Mapping[str, float]
    forecasts: Mapping[str, FloatArray]
    now: float


class LimitsError(ValueError):
    """Setpoint limits that cannot be honoured (lo > hi, safe value outside the bounds, ...)."""


@dataclass(frozen=True)
class SetpointLimits:
    """Hard limits the supervisor enforces on one setpoint.

    tag: setpoint tag id.
    lo, hi: bounds [SI unit of the tag]; every written value lies in [lo, hi].
    max_rate_per_s: largest change per second between two written values [unit/s], > 0.
    safe_value: value to ramp to when nothing better is known [unit], within [lo, hi].
    """

    tag: str
    lo: float
    hi: float
    max_rate_per_s: float
    safe_value: float

    def __post_init__(self) -> None:
        for name in ("lo", "hi", "max_rate_per_s", "safe_value"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise LimitsError(f"{self.tag}: {name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        if self.lo > self.hi:
            raise LimitsError(f"{self.tag}: lo {self.lo} > hi {self.hi}")
        if self.max_rate_per_s <= 0.0:
            raise LimitsError(f"{self.tag}: max_rate_per_s must be > 0, got {self.max_rate_per_s}")
        if not self.lo <= self.safe_value <= self.hi:
            raise LimitsError(f"{self.tag}: safe_value {self.safe_value} outside [{self.lo}, {self.hi}]")

    def clamp(self, value: float) -> float:
        return min(max(value, self.lo), self.hi)
