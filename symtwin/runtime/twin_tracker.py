"""The twin as the service runs it: the park model advanced on the service's clock.

:class:`ParkTracker` integrates the park from the setpoints actually written and the profile inputs, and
reports every named output and state as an estimate. It is the open-loop tracker; the estimator (EKF on
the same model) plugs in through the same :class:`symtwin.runtime.service.TwinPort` interface and adds
measurement correction and covariance.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.park import Park

# Outputs that say how much heat or steam an exchange carries, by the model of the unit on each side.
_HEAT = "heat_flow"
_MASS = "steam_flow"


def inputs_at(schedule: Any, t0: float, index: Mapping[str, int], applied: Mapping[str, float],
              now: float) -> np.ndarray:
    """Park inputs at clock time ``now``: profiles (time since ``t0``), then the setpoints actually applied."""
    u = np.asarray(schedule(now - t0), dtype=float).copy()
    for key, value in applied.items():
        i = index.get(key)
        if i is not None and math.isfinite(value):
            u[i] = value
    return u


def exchange_map(site: Any) -> dict[str, tuple[str, str, str]]:
    """Exchange id -> (source unit, target unit, medium) of a loaded site, what :func:`exchange_flows` takes."""
    exchanges = {}
    for e in site.config.exchanges:
        conn = site.connection_by_id[e.connection]
        medium = next(c.medium for c in site.park_spec().connections if f"{c.source}.{c.source_port}" == conn.source)
        exchanges[e.id] = (conn.source.split(".")[0], conn.target.split(".")[0], medium)
    return exchanges


def exchange_flows(values: Mapping[str, float],
                   exchanges: Mapping[str, tuple[str, str, str]]) -> dict[str, tuple[float, float | None]]:
    """Heat [W] and, for steam, mass flow [kg/s] of each exchange from named outputs.

    A distribution node (steam header) has no heat output of its own: the consumer's side is used.
    """
    out: dict[str, tuple[float, float | None]] = {}
    for exchange, (source, target, medium) in exchanges.items():
        side = source if f"{source}.{_HEAT}" in values else target
        heat = float(values.get(f"{side}.{_HEAT}", 0.0))
        mass = values.get(f"{side}.{_MASS}") if medium == "steam" else None
        out[exchange] = (heat, None if mass is None else float(mass))
    return out


def site_epoch(start: str | None, fallback: float) -> float:
    """The clock time [s since epoch] of profile time 0: the config's ``site.start``, else ``fallback``."""
    if not start:
        return fallback
    t = dt.datetime.fromisoformat(start)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


class ParkTracker:
    """Open-loop twin: x(t) from the park model with profiles and written setpoints as inputs.

    t0_epoch: clock time of profile time 0 [s since epoch].
    max_step_s: longest single integration call [s]; a longer gap (a pause) is integrated in pieces.
    """

    def __init__(self, park: Park, t0_epoch: float, exchanges: Mapping[str, tuple[str, str, str]] | None = None,
                 max_step_s: float = 900.0, x0: np.ndarray | None = None) -> None:
        self.park = park
        self.t0 = t0_epoch
        self.max_step_s = max_step_s
        self.schedule = park.input_schedule()
        self._inputs = {name: i for i, name in enumerate(park.input_names)}
        self._outputs = park.output_names
        self._states = park.state_names
        self.x = park.settle(self.schedule(0.0)) if x0 is None else np.asarray(x0, dtype=float).copy()
        self._last: float | None = None
        self._applied: dict[str, float] = {}
        self._y = park.outputs(self.x, self._u(t0_epoch))
        self.exchanges = dict(exchanges or {})  # exchange id → (source unit, target unit, medium)

    def _u(self, now: float) -> np.ndarray:
        return inputs_at(self.schedule, self.t0, self._inputs, self._applied, now)

    def update(self, now: float, measured: Mapping[str, float], applied: Mapping[str, float]) -> None:
        self._applied.update(applied)
        if self._last is None:
            self._last = now
        gap = now - self._last
        while gap > 1e-9:
            h = min(gap, self.max_step_s)
            t_mid = self._last + h
            self.x = self.park.step(self.x, self._u(t_mid), h)
            self._last = t_mid
            gap -= h
        self._y = self.park.outputs(self.x, self._u(now))

    def estimates(self) -> Mapping[str, tuple[float, float]]:
        out = {name: (float(v), math.nan) for name, v in zip(self._outputs, self._y, strict=True)}
        for name, v in zip(self._states, self.x, strict=True):
            if "[" not in name:
                out[name] = (float(v), math.nan)
        return out

    def unit_states(self) -> Mapping[str, Mapping[str, float]]:
        """Unmeasured distributed states, per unit: tank layers, pipe and exchanger profiles, fouling."""
        units: dict[str, dict[str, float]] = {}
        for name, v in zip(self._states, self.x, strict=True):
            unit, _, qty = name.partition(".")
            if "[" in qty or qty in ("fouling", "load"):
                units.setdefault(unit, {})[qty] = float(v)
        return units

    def flows(self) -> Mapping[str, tuple[float, float | None]]:
        return exchange_flows(dict(zip(self._outputs, self._y, strict=True)), self.exchanges)
