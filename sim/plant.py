"""The virtual plant: the twin's park physics with plant-model mismatch, sensor noise, actuator lag and faults.

The service's estimator and controller are built from the site config's nominal parameters; the plant
runs the same park with perturbed parameters (:data:`DEFAULT_MISMATCH`), so the estimator has real work to
do. Setpoints reach the physics through a first-order actuator lag; measurements carry Gaussian noise with
the tag's configured standard deviation. Faults (``sim.faults``) act on sensors, actuators, supplies,
demands, forecasts and the communication link.

Time: every method takes clock time [s since the Unix epoch]; profiles are read at ``t - origin`` [s]
(``origin`` is the time the site's profiles start, normally the site's ``start``).

Units: SI inside and at every interface here; the OPC UA server (``sim.server``) converts to engineering
units at its edge.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from adapters.base import Quality, Sample
from sim.faults import Fault, FaultKind, FaultSchedule
from twin.spec import ParkSpec

log = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

#: Plant-model mismatch used when none is given: ``"<unit>.<param>"`` or ``"*.<param>"`` → factor [1].
#: Chosen to be what commissioning typically finds against design data: exchangers fouled since their
#: datasheet (UA −20 %), heat losses of pipes and tanks underestimated (+30 %), heat-pump and boiler
#: efficiencies a little below nameplate (−5 %, −3 %), unit dynamics slower than assumed (+20 %).
DEFAULT_MISMATCH: dict[str, float] = {
    "*.ua": 0.8,
    "*.loss_coefficient": 1.3,
    "*.carnot_efficiency": 0.95,
    "*.efficiency": 0.97,
    "*.time_constant": 1.2,
}

#: Steam condensation energy used when a consumer draws no steam to take the ratio from [J/kg]
#: (latent heat at 10 bar, IAPWS-IF97: 2015 kJ/kg).
_H_FG_10BAR = 2.015e6


class PlantError(ValueError):
    """The plant cannot be built as asked (unknown tag, unknown parameter in a mismatch)."""


class PlantPhysicsError(RuntimeError):
    """The plant's physics could not be advanced (the integrator gave up); ``time`` is the clock time."""

    def __init__(self, time: float, message: str) -> None:
        super().__init__(f"plant physics failed at t = {time:.0f} s: {message}")
        self.time = time


@dataclass(frozen=True)
class PlantTag:
    """A tag as the plant sees it (plain values; built from the site config by :meth:`VirtualPlant.from_site`).

    key: the twin name ``"<unit>.<quantity>"``; measurement: False for setpoint tags.
    noise_si: standard deviation of the measurement noise [SI]; safe_value_si: initial actuator position.
    eng = (si - eng_offset) / eng_factor converts to the engineering unit on the wire.
    """

    id: str
    key: str
    measurement: bool
    noise_si: float = 0.0
    safe_value_si: float | None = None
    bounds_si: tuple[float, float] | None = None
    eng_factor: float = 1.0
    eng_offset: float = 0.0
    node_id: str | None = None
    data_type: str = "Double"
    mqtt_topic: str | None = None
    mqtt_pointer: str = "/value"
    mqtt_timestamp_pointer: str | None = "/ts"

    def to_eng(self, value_si: float) -> float:
        return (value_si - self.eng_offset) / self.eng_factor

    def to_si(self, value_eng: float) -> float:
        return value_eng * self.eng_factor + self.eng_offset


@dataclass(frozen=True)
class PlantParams:
    """mismatch: ``"<unit>.<param>"`` or ``"*.<param>"`` → factor (None: :data:`DEFAULT_MISMATCH`; {}: none).
    noise: add each tag's measurement noise. actuator_lag_s: time constant of every actuator [s].
    max_step_s: longest integration interval with inputs held [s]. settle_s: start-up run before t0 [s].
    keep_writes: accepted writes kept in ``VirtualPlant.writes`` (None: all, for a scenario's record; the
    default bounds a long ``symtwin sim`` run, which otherwise grew by about 0.5 MB per minute at speed 60).
    """

    mismatch: Mapping[str, float] | None = None
    noise: bool = True
    actuator_lag_s: float = 30.0
    seed: int = 0
    max_step_s: float = 60.0
    settle_s: float = 6 * 3600.0
    keep_writes: int | None = 10_000


@dataclass
class PlantTotals:
    """What the plant delivered badly, integrated over the run.

    unmet_j: heat demand not met plus steam demand not met (as condensing energy) [J];
    violation_ks: supply temperature outside each heat demand's band [K·s];
    pressure_violation_pa_s: steam header pressure outside its band [Pa·s].
    """

    unmet_j: float = 0.0
    violation_ks: float = 0.0
    pressure_violation_pa_s: float = 0.0

    @property
    def unmet_mwh(self) -> float:
        return self.unmet_j / 3.6e9

    @property
    def violation_kh(self) -> float:
        return self.violation_ks / 3600.0

    @property
    def pressure_violation_bar_h(self) -> float:
        return self.pressure_violation_pa_s / 1e5 / 3600.0


@dataclass
class _Now:
    unmet_w: float = 0.0
    violation_k: float = 0.0
    pressure_violation_pa: float = 0.0
    detail: dict[str, float] = field(default_factory=dict)


def apply_mismatch(
    names: Sequence[str], values: Array, mismatch: Mapping[str, float]
) -> tuple[Array, dict[str, float]]:
    """Multiply parameters by their mismatch factors; return the new values and what changed (name → factor).

    A key ``"<unit>.<param>"`` must name a parameter; ``"*.<param>"`` applies to every unit that has it.
    """
    out = np.array(values, dtype=float)
    applied: dict[str, float] = {}
    for key, factor in mismatch.items():
        if not (math.isfinite(factor) and factor > 0):
            raise PlantError(f"mismatch {key!r}: factor must be finite and positive, got {factor}")
        unit, _, param = key.partition(".")
        if not param:
            raise PlantError(f"mismatch key {key!r}: write '<unit>.<param>' or '*.<param>'")
        hits = [
            i
            for i, n in enumerate(names)
            if n.partition(".")[2] == param and (unit == "*" or n.partition(".")[0] == unit)
        ]
        if not hits and unit != "*":
            raise PlantError(f"mismatch key {key!r} names no parameter of the park")
        for i in hits:
            out[i] *= factor
            applied[names[i]] = applied.get(names[i], 1.0) * factor
    return out, applied


class VirtualPlant:
    """The park's physics as a plant: setpoints in, noisy (and possibly faulty) measurements out."""

    def __init__(
        self,
        spec: ParkSpec,
        tags: Sequence[PlantTag],
        *,
        start: float,
        origin: float | None = None,
        params: PlantParams | None = None,
        faults: FaultSchedule | None = None,
    ) -> None:
        from twin.park import Park

        self.params = params or PlantParams()
        self.faults = faults if faults is not None else FaultSchedule()
        self.origin = start if origin is None else origin
        self.park = Park.from_spec(spec)
        self.nominal_params = self.park.params.copy()
        self._pi = {n: i for i, n in enumerate(self.park.param_names)}
        mismatch = DEFAULT_MISMATCH if self.params.mismatch is None else self.params.mismatch
        perturbed, self.mismatch_applied = apply_mismatch(self.park.param_names, self.park.params, mismatch)
        self.park.params[:] = perturbed  # in place: the park's integrator holds this array
        self._rng = np.random.default_rng(self.params.seed)
        self.tags = {t.id: t for t in tags}
        self.measurement_tags = [t for t in tags if t.measurement]
        self.setpoint_tags = [t for t in tags if not t.measurement]
        self._in = {n: i for i, n in enumerate(self.park.input_names)}
        self._out = {n: i for i, n in enumerate(self.park.output_names)}
        self._st = {n: i for i, n in enumerate(self.park.state_names)}
        for t in tags:
            if t.measurement and not (t.key in self._out or t.key in self._st or t.key in self._in):
                raise PlantError(f"tag {t.id}: the park has no output, state or input {t.key!r}")
            if not t.measurement and t.key not in self._in:
                raise PlantError(f"setpoint tag {t.id}: the park has no input {t.key!r}")
        self._sched = self.park.input_schedule()
        self.commanded: dict[str, float] = {}
        self.position: dict[str, float] = {}
        for t in self.setpoint_tags:
            v = (
                t.safe_value_si
                if t.safe_value_si is not None
                else float(self.park.u_default[self._in[t.key]])
            )
            self.commanded[t.id] = self.position[t.id] = v
        # (time, tag, value) of every accepted write, the last keep_writes of them
        self.writes: deque[tuple[float, str, float]] = deque(maxlen=self.params.keep_writes)
        self._frozen: dict[tuple[int, str], float] = {}
        self._last_reported: dict[str, float] = {}
        self.totals = PlantTotals()
        self.now_kpi = _Now()
        self._units_by_model: dict[str, list[str]] = {}
        for u in spec.units:
            self._units_by_model.setdefault(u.model, []).append(u.name)
        self.time = float(start)
        self.u = self.inputs(self.time)
        self.x = (
            self.park.settle(self.u, duration=self.params.settle_s)
            if self.params.settle_s > 0
            else self.park.x0.copy()
        )
        self.y = self.park.outputs(self.x, self.u)
        self._kpis()
        log.info(
            "virtual plant %s: %d states, mismatch %s", spec.name, self.park.n_states, self.mismatch_applied
        )

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_site(
        cls,
        site: Any,
        *,
        start: float | None = None,
        origin: float | None = None,
        params: PlantParams | None = None,
        faults: FaultSchedule | None = None,
    ) -> VirtualPlant:
        """Build from a loaded site config (anything with ``park_spec()`` and ``tags`` of TagSpec).

        start: clock time of the plant's first instant (default: the site's start, else 0);
        origin: clock time at which the profiles start (default: the site's start, else ``start``).
        """
        site_start = _site_start(site)
        if origin is None:
            origin = site_start if site_start is not None else start
        if start is None:
            start = origin if origin is not None else 0.0
        return cls(
            site.park_spec(), plant_tags(site), start=start, origin=origin, params=params, faults=faults
        )

    # ------------------------------------------------------------------------------ inputs and physics
    def inputs(self, t: float) -> Array:
        """Park inputs at clock time ``t``: profiles, actuator positions, then faults on supplies and demands."""
        u = self._sched(t - self.origin)
        for tag in self.setpoint_tags:
            u[self._in[tag.key]] = self.position[tag.id]
        for f in self.faults.active(t, FaultKind.DEMAND_STEP):
            for name in self._demand_inputs(f.unit):
                u[self._in[name]] *= f.factor
        for f in self.faults.active(t, FaultKind.SUPPLIER_TRIP):
            for name in self._trip_inputs(f.unit):
                u[self._in[name]] = 0.0
        return u

    def _demand_inputs(self, unit: str | None) -> list[str]:
        if unit is not None:
            name = f"{unit}.demand"
            return [name] if name in self._in else []
        return [n for n in self._in if n.endswith(".demand")]

    def _trip_inputs(self, unit: str | None) -> list[str]:
        units = [unit] if unit is not None else self._units_by_model.get("chp_boiler", [])
        out = []
        for u in units:
            for q in ("available", "load_setpoint"):
                if f"{u}.{q}" in self._in:
                    out.append(f"{u}.{q}")
                    break
        return out

    def step(self, dt: float) -> None:
        """Advance the plant by ``dt`` [s] from :attr:`time` (sub-steps of at most ``max_step_s``)."""
        self.advance_to(self.time + dt)

    def advance_to(self, t_end: float) -> None:
        """Advance the plant to clock time ``t_end`` [s]; inputs are held over each sub-step."""
        while self.time < t_end - 1e-9:
            h = min(self.params.max_step_s, t_end - self.time)
            self._move_actuators(h)
            self.u = self.inputs(self.time)
            try:
                self.x = self.park.step(self.x, self.u, h)
            except Exception as exc:  # the integrator's own error types; the run cannot go on either way
                raise PlantPhysicsError(self.time, f"{type(exc).__name__}: {exc}") from exc
            self.time += h
            self.y = self.park.outputs(self.x, self.u)
            k = self._kpis()
            self.totals.unmet_j += k.unmet_w * h
            self.totals.violation_ks += k.violation_k * h
            self.totals.pressure_violation_pa_s += k.pressure_violation_pa * h

    def _move_actuators(self, h: float) -> None:
        stuck = {f.tag for f in self.faults.active(self.time, FaultKind.ACTUATOR_STUCK)}
        tau = self.params.actuator_lag_s
        a = 1.0 if tau <= 0 else 1.0 - math.exp(-h / tau)  # exact first-order lag over a held command
        for tag in self.setpoint_tags:
            if tag.id not in stuck:
                p = self.position[tag.id]
                self.position[tag.id] = p + a * (self.commanded[tag.id] - p)

    def _kpis(self) -> _Now:
        """Unmet demand [W], supply temperature band violation [K] and header pressure violation [Pa] now."""
        y, u, p, pi = self.y, self.u, self.nominal_params, self._pi
        k = _Now()
        for d in self._units_by_model.get("heat_demand", []):
            unmet = max(0.0, float(y[self._out[f"{d}.unmet"]]))
            ts = float(y[self._out[f"{d}.supply_temperature"]])
            lo, hi = p[pi[f"{d}.min_supply_temperature"]], p[pi[f"{d}.max_supply_temperature"]]
            viol = max(0.0, lo - ts, ts - hi)
            k.unmet_w += unmet
            k.violation_k += viol
            k.detail[f"{d}.unmet"] = unmet
            k.detail[f"{d}.supply_temperature"] = ts
        for c in self._units_by_model.get("steam_consumer", []):
            want = float(u[self._in[f"{c}.demand"]]) * p[pi[f"{c}.design_flow"]]
            got = float(y[self._out[f"{c}.steam_flow"]])
            q = float(y[self._out[f"{c}.heat_flow"]])
            per_kg = q / got if got > 1e-6 else _H_FG_10BAR
            short = max(0.0, want - got) * per_kg
            k.unmet_w += short
            k.detail[f"{c}.unmet"] = short
        for h in self._units_by_model.get("steam_header", []):
            pr = float(y[self._out[f"{h}.pressure"]])
            lo, hi = p[pi[f"{h}.min_pressure"]], p[pi[f"{h}.max_pressure"]]
            k.pressure_violation_pa += max(0.0, lo - pr, pr - hi)
            k.detail[f"{h}.pressure"] = pr
        self.now_kpi = k
        return k

    # ------------------------------------------------------------------------------ the interface
    def true_value(self, key: str) -> float:
        """Noise- and fault-free value of a park output, state or input [SI]."""
        if key in self._out:
            return float(self.y[self._out[key]])
        if key in self._st:
            return float(self.x[self._st[key]])
        return float(self.u[self._in[key]])

    def measurements(self, now: float | None = None) -> list[Sample]:
        """One sample per measurement tag at ``now`` (default: plant time): SI, noisy, faults applied."""
        t = self.time if now is None else now
        active = [f for f in self.faults.active(t) if f.tag is not None]
        out = []
        for tag in self.measurement_tags:
            v = self.true_value(tag.key)
            if self.params.noise and tag.noise_si > 0:
                v += float(self._rng.normal(0.0, tag.noise_si))
            for f in active:
                if f.tag != tag.id:
                    continue
                if f.kind is FaultKind.SENSOR_FREEZE:
                    v = self._frozen.setdefault((id(f), tag.id), self._last_reported.get(tag.id, v))
                elif f.kind is FaultKind.SENSOR_DRIFT:
                    v += f.rate_si_per_s * (t - f.start)
                elif f.kind is FaultKind.SENSOR_NAN:
                    v = math.nan
            self._last_reported[tag.id] = v
            out.append(Sample(tag.id, t, v, Quality.GOOD))
        return out

    def readbacks(self, now: float | None = None) -> list[Sample]:
        """Read-back of every setpoint tag: the value last written to it (what its node holds) [SI]."""
        t = self.time if now is None else now
        return [Sample(tag.id, t, self.commanded[tag.id], Quality.GOOD) for tag in self.setpoint_tags]

    def apply(self, setpoints: Mapping[str, float]) -> dict[str, bool]:
        """Accept setpoint values [SI] by tag id; unknown tags and non-finite values are refused (False)."""
        ok: dict[str, bool] = {}
        for tag_id, value in setpoints.items():
            tag = self.tags.get(tag_id)
            if tag is None or tag.measurement or not math.isfinite(value):
                ok[tag_id] = False
                continue
            self.commanded[tag_id] = float(value)
            self.writes.append((self.time, tag_id, float(value)))
            ok[tag_id] = True
        return ok

    def comms_down(self, now: float | None = None) -> bool:
        """True while a ``comms_loss`` fault is active: no samples leave the plant and writes fail."""
        return bool(self.faults.active(self.time if now is None else now, FaultKind.COMMS_LOSS))

    def forecast_overrides(self, now: float, at: float | None = None) -> dict[str, float]:
        """Multipliers for forecast series, {series name (profile id): factor}, known at ``now`` for time
        ``at`` (default ``now``): every ``price_spike`` active at ``now`` whose window covers ``at``.

        The runtime's forecast source calls this hook and multiplies the series values by the factor; a spike
        is not known before it starts.
        """
        at = now if at is None else at
        out: dict[str, float] = {}
        for f in self.faults.active(now, FaultKind.PRICE_SPIKE):
            if f.active(at) and f.series is not None:
                out[f.series] = out.get(f.series, 1.0) * f.factor
        return out

    def inject(self, fault: Fault) -> None:
        self.faults.add(fault)


def plant_tags(site: Any) -> list[PlantTag]:
    """Plain :class:`PlantTag` records from a loaded site's ``tags`` (TagSpec objects)."""
    out = []
    for t in site.tags.values():
        offset = t.to_si(0.0)
        factor = t.to_si(1.0) - offset
        opc = getattr(t.binding, "opcua", None)
        mqtt = getattr(t.binding, "mqtt", None)
        out.append(
            PlantTag(
                id=t.id,
                key=t.key,
                measurement=t.direction.value == "measurement",
                noise_si=float(t.noise_si or 0.0),
                safe_value_si=t.safe_value_si,
                bounds_si=t.bounds_si,
                eng_factor=factor,
                eng_offset=offset,
                node_id=opc.node_id if opc is not None else None,
                data_type=opc.data_type if opc is not None else "Double",
                mqtt_topic=mqtt.topic if mqtt is not None and mqtt.format == "json" else None,
                mqtt_pointer=mqtt.pointer if mqtt is not None else "/value",
                mqtt_timestamp_pointer=mqtt.timestamp_pointer if mqtt is not None else "/ts",
            )
        )
    return out


def _site_start(site: Any) -> float | None:
    try:
        start = site.config.site.start
    except AttributeError:
        return None
    if start is None:
        return None
    if isinstance(start, str):
        import datetime as dt

        return dt.datetime.fromisoformat(start).timestamp()
    return float(start.timestamp())
