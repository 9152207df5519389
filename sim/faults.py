"""Faults the virtual plant can suffer, each active over a time window on the clock axis.

A :class:`Fault` is a plain record; the plant (``sim.plant``) and the OPC UA server (``sim.server``)
ask a :class:`FaultSchedule` which faults are active at a time and apply them:

* ``sensor_freeze`` (tag): the tag repeats the value it had when the fault began, with fresh timestamps.
* ``sensor_drift`` (tag, rate_si_per_s): the tag reads high by ``rate * (t - start)``.
* ``sensor_nan`` (tag): the tag reads NaN (quality stays GOOD: the service must catch it itself).
* ``actuator_stuck`` (tag): the actuator behind a setpoint tag stops moving; writes are still accepted.
* ``supplier_trip`` (unit, or every CHP when None): the unit's steam/heat output is lost (its
  ``load_setpoint`` or ``available`` input is forced to 0).
* ``comms_loss``: the plant's interface is unreachable (no samples; writes fail; the OPC UA server is
  stopped and started again on the same port).
* ``price_spike`` (series, factor): the named forecast series (as the runtime names them, e.g.
  ``price.electricity``) is multiplied by ``factor`` over the window (see ``VirtualPlant.forecast_overrides``).
* ``demand_step`` (unit, or every demand when None; factor): the unit's ``demand`` input is multiplied.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class FaultKind(enum.StrEnum):
    SENSOR_FREEZE = "sensor_freeze"
    SENSOR_DRIFT = "sensor_drift"
    SENSOR_NAN = "sensor_nan"
    ACTUATOR_STUCK = "actuator_stuck"
    SUPPLIER_TRIP = "supplier_trip"
    COMMS_LOSS = "comms_loss"
    PRICE_SPIKE = "price_spike"
    DEMAND_STEP = "demand_step"


#: faults after which the service is expected to leave normal operation (fallback engaged)
FALLBACK_FAULTS = frozenset({FaultKind.SENSOR_FREEZE, FaultKind.SENSOR_NAN, FaultKind.COMMS_LOSS})
#: faults that name a tag
TAG_FAULTS = frozenset(
    {FaultKind.SENSOR_FREEZE, FaultKind.SENSOR_DRIFT, FaultKind.SENSOR_NAN, FaultKind.ACTUATOR_STUCK}
)


@dataclass(frozen=True)
class Fault:
    """One fault from ``start`` for ``duration`` [s on the clock axis]; ``duration`` None: to the end.

    tag: tag id (sensor and actuator faults); unit: unit id (supplier_trip, demand_step; None: all that fit);
    series: forecast series (price_spike); factor: multiplier (price_spike, demand_step) [1];
    rate_si_per_s: drift rate (sensor_drift) [SI unit of the tag per s].
    """

    kind: FaultKind
    start: float
    duration: float | None = None
    tag: str | None = None
    unit: str | None = None
    series: str | None = None
    factor: float = 1.0
    rate_si_per_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"{self.kind.value}: duration must be positive, got {self.duration}")
        if self.kind in TAG_FAULTS and not self.tag:
            raise ValueError(f"{self.kind.value} needs a tag")
        if self.kind is FaultKind.PRICE_SPIKE and not self.series:
            raise ValueError("price_spike needs a series")
        if not math.isfinite(self.factor) or self.factor < 0:
            raise ValueError(f"{self.kind.value}: factor must be finite and >= 0, got {self.factor}")

    @property
    def end(self) -> float:
        return math.inf if self.duration is None else self.start + self.duration

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def describe(self) -> str:
        what = self.tag or self.unit or self.series or ""
        extra = f" x{self.factor:g}" if self.kind in (FaultKind.PRICE_SPIKE, FaultKind.DEMAND_STEP) else ""
        span = "until the end" if self.duration is None else f"for {self.duration:g} s"
        return f"{self.kind.value}{' ' + what if what else ''}{extra} {span}"


class FaultSchedule:
    """The faults of one run; faults may be added while it runs (tests, the live view)."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._faults: list[Fault] = sorted(faults, key=lambda f: f.start)

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)
        self._faults.sort(key=lambda f: f.start)

    def __iter__(self) -> Iterator[Fault]:
        return iter(self._faults)

    def __len__(self) -> int:
        return len(self._faults)

    def active(self, t: float, kind: FaultKind | None = None) -> list[Fault]:
        return [f for f in self._faults if f.active(t) and (kind is None or f.kind is kind)]

    def transitions(self, t0: float, t1: float) -> list[tuple[float, Fault, bool]]:
        """(time, fault, started?) for every start and end in [t0, t1), in time order."""
        out = [(f.start, f, True) for f in self._faults if t0 <= f.start < t1]
        out += [(f.end, f, False) for f in self._faults if t0 <= f.end < t1]
        return sorted(out, key=lambda e: (e[0], e[2]))
