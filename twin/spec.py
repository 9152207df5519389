"""Plain, typed description of a park that the twin is built from.

The application's site config (``symtwin.config``) produces a :class:`ParkSpec`; the twin never sees
the config itself. All values are SI (see ``twin.catalog`` for each parameter's unit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Profile:
    """A time series: ``times`` [s since the start of the run], ``values`` [SI unit of the quantity].

    interpolation: "linear" or "step" (hold the previous value). Beyond the last time the series repeats
    with ``period`` [s] when given, else holds its last value.
    """

    name: str
    times: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    unit: str = "1"
    interpolation: str = "linear"
    period: float | None = None

    def at(self, t: float | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        tt = np.asarray(t, dtype=float)
        if self.period:
            tt = self.times[0] + np.mod(tt - self.times[0], self.period)
        if self.interpolation == "step":
            idx = np.clip(np.searchsorted(self.times, tt, side="right") - 1, 0, len(self.times) - 1)
            return np.asarray(self.values[idx], dtype=float)
        return np.asarray(np.interp(tt, self.times, self.values), dtype=float)


@dataclass(frozen=True)
class UnitSpec:
    """One unit: ``model`` is a key of ``twin.catalog.UNIT_MODELS``; ``params`` are SI and complete
    (defaults filled in); ``profiles`` maps the model's profile inputs (e.g. "demand") to profile names."""

    name: str
    model: str
    owner: str
    params: Mapping[str, float]
    profiles: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectionSpec:
    """A directed link from one unit's out-port to another unit's in-port."""

    source: str
    source_port: str
    target: str
    target_port: str
    medium: str


@dataclass(frozen=True)
class ParkSpec:
    name: str
    units: tuple[UnitSpec, ...]
    connections: tuple[ConnectionSpec, ...]
    profiles: Mapping[str, Profile] = field(default_factory=dict)

    def unit(self, name: str) -> UnitSpec:
        for u in self.units:
            if u.name == name:
                return u
        raise KeyError(name)
