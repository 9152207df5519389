"""Scenario files: a site config, a run length, timed faults and pass criteria; and the runner.

A scenario (YAML, see ``configs/scenarios/``)::

    name: chp trip in winter
    config: ../kalundborg.yaml        # relative to the scenario file
    start_offset: 160 d               # where in the site's profiles the run starts (default 0)
    warmup: 6 h                       # service and plant run this long first, not scored (default 0)
    duration: 24 h
    cycle: 60 s                       # the service's supervision cycle
    plant_step: 30 s                  # plant samples this often (divides the cycle)
    controller: baseline              # none | baseline | mpc
    twin: estimator                   # the service's twin: estimator (default, as symtwin run) | open_loop | none
    plant: {noise: true, actuator_lag: 30 s, seed: 1, mismatch: {"*.ua": 0.8}}
    events:
      - {at: 2 h, fault: sensor_freeze, tag: utility.dh.supply_t, duration: 30 min}
    criteria:
      max_unmet_demand_mwh: 5
      max_violation_kh: 10
      setpoints_within_limits: true
      fallback_within_cycles: 3
      no_samples_lost: true

The runner couples the virtual plant to the service IN PROCESS (no OPC UA: deterministic and fast): the
plant's samples go to ``Service.write`` every plant step, a :class:`DirectLink` writes the service's
setpoints into the plant, and a :class:`~symtwin.runtime.clock.ManualClock` moves time as fast as the CPU
allows. It records everything the criteria and the report need.

This module depends on ``symtwin`` (config loader, runtime); the plant, faults and server do not.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.base import ConnectionLost, Sample
from sim.faults import FALLBACK_FAULTS, Fault, FaultKind, FaultSchedule
from sim.plant import PlantParams, PlantPhysicsError, PlantTotals, VirtualPlant

# ----------------------------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Duration = str | float | int


class EventModel(_Strict):
    at: Duration = Field(description="when the fault starts, from the start of the run, e.g. '2 h'")
    fault: FaultKind
    duration: Duration | None = Field(default=None, description="how long it lasts (default: to the end)")
    tag: str | None = Field(default=None, description="tag id (sensor_* and actuator_stuck)")
    unit: str | None = Field(default=None, description="unit id (supplier_trip, demand_step); default: all")
    series: str | None = Field(default=None, description="forecast series / profile id (price_spike)")
    factor: float = Field(default=1.0, description="multiplier (price_spike, demand_step)")
    rate_per_h: float = Field(default=0.0, description="drift rate in the tag's engineering unit per hour")


class PlantModel(_Strict):
    noise: bool = True
    actuator_lag: Duration = "30 s"
    seed: int = 0
    mismatch: dict[str, float] | None = Field(
        default=None, description="'<unit>.<param>' or '*.<param>' -> factor"
    )
    settle: Duration = "6 h"


class CriteriaModel(_Strict):
    max_unmet_demand_mwh: float | None = None
    max_violation_kh: float | None = None
    max_pressure_violation_bar_h: float | None = None
    setpoints_within_limits: bool = False
    fallback_within_cycles: int | None = Field(default=None, ge=1)
    no_samples_lost: bool = False


class ScenarioModel(_Strict):
    name: str
    description: str = ""
    config: str
    start_offset: Duration = 0
    warmup: Duration = Field(
        default=0, description="run service and plant this long before the start, unrecorded"
    )
    duration: Duration
    cycle: Duration = "60 s"
    plant_step: Duration = "30 s"
    control_period: Duration = "15 min"
    controller: Literal["none", "baseline", "mpc"] = "none"
    mode: Literal["off", "shadow", "auto"] = "auto"
    freeze_window: int | None = Field(default=3, ge=2)
    twin: Literal["estimator", "open_loop", "none"] = Field(
        default="estimator",
        description="the service's twin, as in `symtwin run`: the estimator (EKF), the open-loop tracker, or none",
    )
    plant: PlantModel = PlantModel()
    events: list[EventModel] = []
    criteria: CriteriaModel = CriteriaModel()


# ----------------------------------------------------------------------------------------------- loading


class ScenarioError(Exception):
    """The scenario cannot be used; ``str()`` lists every problem with file, line and field."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        return "\n".join([f"{self.file}: {n} problem{'s' if n != 1 else ''} in the scenario", *self.problems])


@dataclass(frozen=True)
class Scenario:
    """A validated scenario, times in seconds, the site config resolved."""

    path: Path
    name: str
    description: str
    config_path: Path
    start_offset_s: float
    warmup_s: float
    duration_s: float
    cycle_s: float
    plant_step_s: float
    control_period_s: float
    controller: str
    mode: str
    freeze_window: int | None
    plant: PlantParams
    faults: tuple[Fault, ...]
    criteria: CriteriaModel
    site: Any = field(repr=False)
    note: str = ""
    twin: str = "estimator"


def load_scenario(path: str | Path, config: str | Path | None = None) -> Scenario:
    """Read and check a scenario and its site config; raise :class:`ScenarioError` (or the site's
    ``ConfigError``) listing every problem with file and line.

    config: use this site config instead of the scenario's ``config:`` (``Scenario.note`` says so).
    """
    from symtwin.config import load_site
    from symtwin.config.yamlpos import YamlError, load_yaml
    from symtwin.units import UnitError, parse_duration

    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(file, [f"{file}: cannot read: {exc}"]) from None
    try:
        located = load_yaml(text, file)
    except YamlError as exc:
        where = f"{file}:{exc.position.line}:{exc.position.column}" if exc.position else file
        raise ScenarioError(file, [f"{where}: {exc.message}"]) from None

    def at(loc: tuple[str | int, ...], message: str) -> str:
        pos = located.where(loc)
        where = f"{file}:{pos.line}:{pos.column}" if pos else file
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
        return f"{where}: {dotted or '(top level)'}: {message}"

    if not isinstance(located.data, dict):
        raise ScenarioError(
            file, [at((), "the top level must be a mapping (name:, config:, duration:, ...)")]
        )
    try:
        model = ScenarioModel.model_validate(located.data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = tuple(
                p for p in e["loc"] if isinstance(p, int) or not p.startswith(("str", "float", "int"))
            )
            if e["type"] == "extra_forbidden":
                problems.append(at(loc, f"unknown key {loc[-1]!r}; remove it or correct its spelling"))
            elif e["type"] == "missing":
                problems.append(at(loc[:-1], f"required field {loc[-1]!r} is missing"))
            else:
                problems.append(at(loc, f"{e['msg']} (got {e.get('input')!r})"))
        raise ScenarioError(file, sorted(set(problems))) from None

    issues: list[str] = []

    def dur(loc: tuple[str | int, ...], value: Duration, positive: bool = True) -> float:
        try:
            s = parse_duration(value)
        except UnitError as exc:
            issues.append(at(loc, str(exc)))
            return math.nan
        if (positive and not s > 0) or s < 0:
            issues.append(at(loc, f"must be {'positive' if positive else 'zero or more'}, got {value!r}"))
        return s

    duration = dur(("duration",), model.duration)
    cycle = dur(("cycle",), model.cycle)
    plant_step = dur(("plant_step",), model.plant_step)
    period = dur(("control_period",), model.control_period)
    offset = dur(("start_offset",), model.start_offset, positive=False)
    warmup = dur(("warmup",), model.warmup, positive=False)
    if cycle > 0 and warmup > 0 and abs(warmup / cycle - round(warmup / cycle)) > 1e-9:
        issues.append(at(("warmup",), f"must be a whole number of cycles ({cycle:g} s)"))
    lag = dur(("plant", "actuator_lag"), model.plant.actuator_lag, positive=False)
    settle = dur(("plant", "settle"), model.plant.settle, positive=False)
    if cycle > 0 and plant_step > 0 and abs(cycle / plant_step - round(cycle / plant_step)) > 1e-9:
        issues.append(at(("plant_step",), f"must divide the cycle ({cycle:g} s) into whole steps"))
    if cycle > 0 and period > 0 and period < cycle:
        issues.append(at(("control_period",), "must be at least one cycle"))

    config_path = (path.parent / model.config).resolve()
    note = ""
    if config is not None and Path(config).resolve() != config_path:
        note = f"note: using site config {config} instead of the scenario's {model.config}"
        config_path = Path(config).resolve()
    if not config_path.exists():
        raise ScenarioError(
            file, [at(("config",), f"site config not found: {config_path} (relative to the scenario)")]
        )
    site = load_site(config_path)  # ConfigError carries its own file and lines
    setpoints = {t.id for t in site.tags.values() if t.direction.value == "setpoint"}
    measurements = {t.id for t in site.tags.values() if t.direction.value == "measurement"}
    units = {u.id for u in site.config.units}
    series = set(forecast_series(site))

    faults: list[Fault] = []
    for i, ev in enumerate(model.events):
        base: tuple[str | int, ...] = ("events", i)
        t0 = dur((*base, "at"), ev.at, positive=False)
        d = dur((*base, "duration"), ev.duration) if ev.duration is not None else None
        if duration > 0 and t0 >= duration:
            issues.append(at((*base, "at"), f"starts after the end of the run ({duration:g} s)"))
        kind = ev.fault
        rate = 0.0
        if kind in (FaultKind.SENSOR_FREEZE, FaultKind.SENSOR_DRIFT, FaultKind.SENSOR_NAN):
            if ev.tag not in measurements:
                issues.append(at((*base, "tag"), f"{kind.value} needs a measurement tag; got {ev.tag!r}"))
                continue
            spec = site.tags[ev.tag]
            rate = ev.rate_per_h * (spec.to_si(1.0) - spec.to_si(0.0)) / 3600.0
        elif kind is FaultKind.ACTUATOR_STUCK and ev.tag not in setpoints:
            issues.append(at((*base, "tag"), f"actuator_stuck needs a setpoint tag; got {ev.tag!r}"))
            continue
        elif ev.tag is not None and kind not in (FaultKind.ACTUATOR_STUCK,):
            issues.append(at((*base, "tag"), f"{kind.value} takes no tag"))
        if ev.unit is not None and ev.unit not in units:
            issues.append(
                at((*base, "unit"), f"unknown unit {ev.unit!r}; units are: {', '.join(sorted(units))}")
            )
            continue
        if kind is FaultKind.PRICE_SPIKE and ev.series not in series:
            issues.append(
                at(
                    (*base, "series"),
                    f"price_spike needs a forecast series; one of: {', '.join(sorted(series))}",
                )
            )
            continue
        if any(math.isnan(v) for v in (t0, d if d is not None else 0.0)):
            continue
        try:
            faults.append(Fault(kind, t0, d, ev.tag, ev.unit, ev.series, ev.factor, rate))
        except ValueError as exc:
            issues.append(at(base, str(exc)))
    if issues:
        raise ScenarioError(file, issues)
    plant = PlantParams(
        mismatch=model.plant.mismatch,
        noise=model.plant.noise,
        actuator_lag_s=lag,
        seed=model.plant.seed,
        max_step_s=min(plant_step, 60.0),
        settle_s=settle,
        keep_writes=None,  # the record and the criteria need every write
    )
    return Scenario(
        path,
        model.name,
        model.description,
        config_path,
        offset,
        warmup,
        duration,
        cycle,
        plant_step,
        period,
        model.controller,
        model.mode,
        model.freeze_window,
        plant,
        tuple(faults),
        model.criteria,
        site,
        note,
        model.twin,
    )


# ----------------------------------------------------------------------------------------------- coupling


class DirectLink:
    """The service's setpoint writer, wired straight into the plant (``SetpointWriter``).

    While a ``comms_loss`` fault is active every write fails with ``ConnectionLost``, as over a dead link.
    """

    def __init__(self, plant: VirtualPlant) -> None:
        self.plant = plant
        self.failed = 0

    async def write_setpoints(self, values: dict[str, float]) -> dict[str, bool]:
        if self.plant.comms_down():
            self.failed += len(values)
            raise ConnectionLost("virtual plant unreachable (comms_loss)")
        return self.plant.apply(values)


class CountingSink:
    """The service's history sink: counts what reaches it (``Sink``)."""

    def __init__(self) -> None:
        self.count = 0
        self.by_tag: dict[str, int] = {}

    def write(self, samples: Sequence[Sample]) -> None:
        self.count += len(samples)
        for s in samples:
            self.by_tag[s.tag] = self.by_tag.get(s.tag, 0) + 1


class _Forecasts:
    """The service's ``forecasts(now, times)`` hook: the site's profiles (``symtwin.runtime.wiring``, perfect
    foresight of the nominal series) times the plant's ``forecast_overrides`` active at ``now`` (price
    spikes), applied over the whole horizon."""

    def __init__(self, site: Any, origin: float, plant: VirtualPlant) -> None:
        from symtwin.runtime.wiring import ProfileForecasts

        self.profiles = ProfileForecasts(site, origin)
        self.plant = plant

    def __call__(self, now: float, times: Sequence[float]) -> Mapping[str, Sequence[float]]:
        self.profiles.overrides = self.plant.forecast_overrides(now)
        return self.profiles(now, times)


def forecast_series(site: Any) -> list[str]:
    """Names of the forecast series a ``price_spike`` may name (``price.<name>``, ``<unit>.<input>``)."""
    from symtwin.runtime.wiring import ProfileForecasts

    return sorted(ProfileForecasts(site, 0.0).series)


class InlineController:
    """A ``ControllerPort`` around a plain controller with ``step(state, forecasts, now)``, run inline.

    The state it gets holds every measured value twice: by tag id and by the twin name of its quantity
    (``<unit>.<quantity>``), so a controller can read either without a twin in the loop.
    """

    def __init__(self, controller: Any, keys: Mapping[str, str]) -> None:
        self.controller = controller
        self.keys = dict(keys)

    async def solve(self, request: Any, deadline_s: float) -> Any:
        state = dict(request.state)
        for tag, key in self.keys.items():
            if tag in state and key not in state:
                state[key] = state[tag]
        forecasts = {k: np.asarray(v, dtype=float) for k, v in request.forecasts.items()}
        return self.controller.step(state, forecasts, request.now)

    def reset_warm_start(self) -> None:
        reset = getattr(self.controller, "reset_warm_start", None)
        if callable(reset):
            reset()


class SettledPort:
    """Wraps a ControllerPort so the runner can wait for a solve in flight: on a manual clock a solve takes
    no plant time, whatever wall time it needs (the port still enforces its own wall-clock deadline)."""

    def __init__(self, port: Any) -> None:
        self.port = port
        self.busy = 0

    async def solve(self, request: Any, deadline_s: float) -> Any:
        self.busy += 1
        try:
            return await self.port.solve(request, deadline_s)
        finally:
            self.busy -= 1

    def reset_warm_start(self) -> None:
        self.port.reset_warm_start()

    async def settle(self) -> None:
        await asyncio.sleep(0)  # let a solve the cycle just started begin
        while self.busy:
            await asyncio.sleep(0.001)
        for _ in range(3):  # and let the service book its result
            await asyncio.sleep(0)

    def close(self) -> None:
        close = getattr(self.port, "close", None)
        if callable(close):
            close()


def make_controller(kind: str, site: Any, step_s: float = 900.0) -> Any:
    """The ControllerPort for a scenario's ``controller:`` (None for "none")."""
    if kind == "none":
        return None
    keys = {t.id: t.key for t in site.tags.values()}
    if kind == "baseline":
        try:
            from controllers import baseline
        except ImportError as exc:
            raise ScenarioError(str(site.path), [f"controller 'baseline' is not available: {exc}"]) from None
        return InlineController(baseline.from_site(site, step_s=step_s), keys)
    if kind == "mpc":
        try:
            from controllers.mpc import MpcPort
        except ImportError as exc:
            raise ScenarioError(str(site.path), [f"controller 'mpc' is not available: {exc}"]) from None
        return MpcPort.from_site(site)
    raise ScenarioError(str(site.path), [f"unknown controller {kind!r} (use none, baseline or mpc)"])


def make_twin(kind: str, site: Any, origin: float, t_start: float) -> Any:
    """The service's twin for a scenario, built as ``symtwin run`` builds it (None for "none").

    Without a twin the MPC sees only measured values: the district-heating pipe's temperature profile, which
    it needs to predict what reaches the town over the next hour, is then unknown. The twin starts settled
    at the profiles of ``t_start`` and follows the plant through the warm-up.
    """
    if kind == "none":
        return None
    from symtwin.runtime.estimator_tracker import EstimatorTracker
    from symtwin.runtime.twin_tracker import ParkTracker, exchange_map
    from twin.park import Park

    park = Park.from_config(site)
    # As the virtual plant starts: settled for six hours on the profiles with every setpoint at its safe value.
    u = np.asarray(park.input_schedule()(t_start - origin), dtype=float).copy()
    names = {n: i for i, n in enumerate(park.input_names)}
    for t in site.tags.values():
        if t.key in names and getattr(t, "safe_value_si", None) is not None:
            u[names[t.key]] = t.safe_value_si
    x0 = park.settle(u, duration=6 * 3600.0)
    exchanges = exchange_map(site)
    if kind == "open_loop":
        return ParkTracker(park, origin, exchanges, x0=x0)
    return EstimatorTracker.from_site(site, park, origin, exchanges, x0=x0)


# ----------------------------------------------------------------------------------------------- running


@dataclass
class Event:
    """One line of the event log."""

    t: float  # clock time [s since epoch]
    kind: str  # fault_start | fault_end | fallback | alarm | alarm_cleared | write_failed | mode | run
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """Everything recorded during a run, one row per cycle (times on the clock axis [s])."""

    scenario: Scenario
    t0: float
    times: list[float] = field(default_factory=list)
    fallback: list[int] = field(default_factory=list)
    written: dict[str, list[float]] = field(default_factory=dict)  # NaN where nothing was written
    measured: dict[str, list[float]] = field(default_factory=dict)  # latest sample per measurement tag
    truth: dict[str, list[float]] = field(default_factory=dict)  # true value per measurement tag
    position: dict[str, list[float]] = field(default_factory=dict)  # actuator positions
    unmet_w: list[float] = field(default_factory=list)
    violation_k: list[float] = field(default_factory=list)
    pressure_violation_pa: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    plant_writes: list[tuple[float, str, float]] = field(default_factory=list)
    initial_setpoints: dict[str, float] = field(default_factory=dict)
    end: float = math.inf  # clock time the run ended; writes from then on are the service's shutdown
    aborted: str = ""  # why the run stopped before its end (plant physics failed), else empty
    samples_produced: int = 0
    samples_stored: int = 0
    samples_dropped: int = 0
    unmet_mwh: float = 0.0
    violation_kh: float = 0.0
    pressure_violation_bar_h: float = 0.0
    wall_s: float = 0.0
    cycles: int = 0
    solves: dict[str, int] = field(default_factory=dict)
    mismatch: dict[str, float] = field(default_factory=dict)


async def run_scenario(
    scenario: Scenario, progress: Callable[[float, float], None] | None = None
) -> RunRecord:
    """Run ``scenario`` as fast as the CPU allows; ``progress(fraction, wall_s)`` is called as it goes."""
    from controllers.supervisor import FallbackLevel, Mode
    from symtwin.runtime.clock import ManualClock
    from symtwin.runtime.service import Service, ServiceParams

    site = scenario.site
    origin = _origin(site)
    t0 = origin + scenario.start_offset_s
    faults = FaultSchedule(
        Fault(f.kind, t0 + f.start, f.duration, f.tag, f.unit, f.series, f.factor, f.rate_si_per_s)
        for f in scenario.faults
    )
    # The warm-up lets the controller take the plant from its start-up state (settled at the safe values)
    # to its own operating point; nothing before t0 counts towards the criteria except lost samples and
    # setpoint limits, which must hold throughout.
    t_start = t0 - scenario.warmup_s
    plant = VirtualPlant.from_site(site, start=t_start, origin=origin, params=scenario.plant, faults=faults)
    clock = ManualClock(t_start)
    link = DirectLink(plant)
    sink = CountingSink()
    port = make_controller(scenario.controller, site, scenario.control_period_s)
    controller = SettledPort(port) if port is not None else None
    twin = make_twin(scenario.twin, site, origin, t_start) if controller is not None else None
    params = ServiceParams(
        cycle_s=scenario.cycle_s,
        control_period_s=scenario.control_period_s,
        step_s=scenario.control_period_s,
        freeze_window=scenario.freeze_window,
    )
    service = Service(
        site,
        clock=clock,
        params=params,
        controller=controller,
        writer=link,
        history=sink,
        twin=twin,
        forecasts=_Forecasts(site, origin, plant) if controller is not None else None,
        mode=Mode(scenario.mode),
    )
    rec = RunRecord(scenario, t0, mismatch=dict(plant.mismatch_applied))
    rec.initial_setpoints = dict(plant.commanded)
    meas = [t for t in plant.measurement_tags]
    for t in plant.setpoint_tags:
        rec.written[t.id] = []
        rec.position[t.id] = []
    for t in meas:
        rec.measured[t.id] = []
        rec.truth[t.id] = []
    rec.events.append(
        Event(
            t_start,
            "run",
            f"scenario {scenario.name!r} starts ({scenario.duration_s / 3600:g} h, "
            f"controller {scenario.controller}, mode {scenario.mode})",
        )
    )

    n_cycles = round((scenario.warmup_s + scenario.duration_s) / scenario.cycle_s)
    n_warm = round(scenario.warmup_s / scenario.cycle_s)
    sub = max(1, round(scenario.cycle_s / scenario.plant_step_s))
    wall0 = time.perf_counter()
    last_fallback = -1
    alarms: set[str] = set()
    link_down = False
    next_report = 0.0

    def deliver() -> None:
        if plant.comms_down():
            return
        samples = plant.measurements() + plant.readbacks()
        rec.samples_produced += len(samples)
        service.write(samples)

    async def _one_cycle(c: int, now: float) -> None:
        nonlocal last_fallback, alarms, link_down
        for when, f, started in faults.transitions(now - scenario.cycle_s if c else -math.inf, now):
            if started:
                rec.events.append(Event(when, "fault_start", f.describe(), {"fault": f.kind.value}))
            else:
                rec.events.append(Event(when, "fault_end", f.describe(), {"fault": f.kind.value}))
        failed_before = link.failed
        decision = await service.cycle()
        if controller is not None:
            await controller.settle()  # a solve started this cycle ends before plant time moves on
        if c < n_warm:
            _advance(plant, clock, sub, scenario.plant_step_s, deliver)
            return
        if c == n_warm and n_warm > 0:
            plant.totals = PlantTotals()
            rec.events.append(
                Event(now, "run", f"warm-up of {scenario.warmup_s / 3600:g} h done; recording starts")
            )
        level = int(decision.fallback)
        if level != last_fallback:
            rec.events.append(
                Event(
                    now,
                    "fallback",
                    f"fallback {FallbackLevel(level).name.lower()}: {decision.reason}",
                    {"level": level},
                )
            )
            last_fallback = level
        if link.failed > failed_before and not link_down:
            rec.events.append(Event(now, "write_failed", "setpoint writes fail (link down)"))
            link_down = True
        elif link.failed == failed_before and link_down and decision.written:
            rec.events.append(Event(now, "write_ok", "setpoint writes work again"))
            link_down = False
        snap_alarms = {a.key: a.message for a in service.snapshot().alarms}
        for k in snap_alarms.keys() - alarms:
            rec.events.append(Event(now, "alarm", snap_alarms[k], {"key": k}))
        for k in alarms - snap_alarms.keys():
            rec.events.append(Event(now, "alarm_cleared", k, {"key": k}))
        alarms = set(snap_alarms)
        rec.times.append(now)
        rec.fallback.append(level)
        for tag in rec.written:
            rec.written[tag].append(decision.written.get(tag, math.nan))
            rec.position[tag].append(plant.position[tag])
        table = service.latest.table
        for t in meas:
            s = table.get(t.id)
            rec.measured[t.id].append(s.value if s is not None else math.nan)
            rec.truth[t.id].append(plant.true_value(t.key))
        kpi = plant.now_kpi
        rec.unmet_w.append(float(kpi.unmet_w))
        rec.violation_k.append(float(kpi.violation_k))
        rec.pressure_violation_pa.append(float(kpi.pressure_violation_pa))
        _advance(plant, clock, sub, scenario.plant_step_s, deliver)

    deliver()
    for c in range(n_cycles):
        now = clock.now()
        try:
            await _one_cycle(c, now)
        except PlantPhysicsError as exc:
            rec.aborted = str(exc)
            rec.events.append(Event(exc.time, "plant_failed", f"run stopped: {exc}"))
            break
        if progress is not None and (c + 1) / n_cycles >= next_report:
            progress((c + 1) / n_cycles, time.perf_counter() - wall0)
            next_report += 0.05
    rec.end = clock.now()
    n_before = len(plant.writes)
    await service.shutdown()
    if controller is not None:
        controller.close()
    jumps = [f"{tag} -> {v:.6g}" for _, tag, v in list(plant.writes)[n_before:]]
    if jumps:
        rec.events.append(
            Event(rec.end, "shutdown", "service stopped; wrote safe values: " + ", ".join(jumps))
        )
    rec.events.append(Event(clock.now(), "run", "scenario ends"))
    rec.events.sort(key=lambda e: e.t)
    rec.wall_s = time.perf_counter() - wall0
    rec.cycles = service.counters.cycles
    rec.solves = dict(service.counters.solves)
    rec.plant_writes = list(plant.writes)
    rec.samples_stored = sink.count
    rec.samples_dropped = int(service.latest.dropped)
    rec.unmet_mwh = float(plant.totals.unmet_mwh)
    rec.violation_kh = float(plant.totals.violation_kh)
    rec.pressure_violation_bar_h = float(plant.totals.pressure_violation_bar_h)
    return rec


def _advance(plant: VirtualPlant, clock: Any, sub: int, step_s: float, deliver: Callable[[], None]) -> None:
    """One cycle of plant time: ``sub`` plant steps, each followed by its samples."""
    for _ in range(sub):
        plant.advance_to(clock.now() + step_s)
        clock.advance(step_s)
        deliver()


def _origin(site: Any) -> float:
    from sim.plant import _site_start

    start = _site_start(site)
    return 0.0 if start is None else start


# ----------------------------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    criterion: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str


def evaluate(rec: RunRecord) -> list[Verdict]:
    """Judge a run against its scenario's criteria (only those the scenario sets)."""
    crit = rec.scenario.criteria
    out: list[Verdict] = []
    if rec.aborted:
        # Not a criterion anyone sets: a run that could not reach its end has failed whatever else holds.
        out.append(
            Verdict(
                "run_completed",
                False,
                (rec.end - rec.t0) / 3600.0,
                rec.scenario.duration_s / 3600.0,
                f"stopped after the hours shown, of the hours planned: {rec.aborted}",
            )
        )
    if crit.max_unmet_demand_mwh is not None:
        out.append(
            Verdict(
                "max_unmet_demand_mwh",
                rec.unmet_mwh <= crit.max_unmet_demand_mwh,
                rec.unmet_mwh,
                crit.max_unmet_demand_mwh,
                "heat and steam demand not met over the run [MWh]",
            )
        )
    if crit.max_violation_kh is not None:
        out.append(
            Verdict(
                "max_violation_kh",
                rec.violation_kh <= crit.max_violation_kh,
                rec.violation_kh,
                crit.max_violation_kh,
                "supply temperature outside the demand's band, integrated [K·h]",
            )
        )
    if crit.max_pressure_violation_bar_h is not None:
        out.append(
            Verdict(
                "max_pressure_violation_bar_h",
                rec.pressure_violation_bar_h <= crit.max_pressure_violation_bar_h,
                rec.pressure_violation_bar_h,
                crit.max_pressure_violation_bar_h,
                "steam header pressure outside its band, integrated [bar·h]",
            )
        )
    if crit.setpoints_within_limits:
        bad = setpoint_breaches(rec)
        out.append(
            Verdict(
                "setpoints_within_limits",
                not bad,
                float(len(bad)),
                0.0,
                "every written setpoint within its bounds and rate limit"
                + (f"; first breaches: {'; '.join(bad[:3])}" if bad else ""),
            )
        )
    if crit.fallback_within_cycles is not None:
        worst, detail = fallback_delay(rec)
        ok = worst is not None and worst <= crit.fallback_within_cycles
        out.append(
            Verdict(
                "fallback_within_cycles",
                ok,
                None if worst is None else float(worst),
                float(crit.fallback_within_cycles),
                detail,
            )
        )
    if crit.no_samples_lost:
        lost = rec.samples_produced - rec.samples_stored + rec.samples_dropped
        out.append(
            Verdict(
                "no_samples_lost",
                lost == 0,
                float(lost),
                0.0,
                f"{rec.samples_produced} samples produced by the plant, {rec.samples_stored} reached the "
                f"history sink, {rec.samples_dropped} dropped by the cycle",
            )
        )
    return out


def setpoint_breaches(rec: RunRecord) -> list[str]:
    """Every write the plant received that broke its tag's bounds or rate limit (from the previous value).

    The safe values the service writes when it stops (``Service.shutdown``) are checked against the bounds
    only: jumping to them is that path's documented behaviour (the event log lists them).
    """
    site = rec.scenario.site
    t_start = rec.t0 - rec.scenario.warmup_s
    last: dict[str, tuple[float, float]] = {t: (t_start, v) for t, v in rec.initial_setpoints.items()}
    bad = []
    for t, tag, v in rec.plant_writes:
        spec = site.tags[tag]
        lo, hi = spec.bounds_si if spec.bounds_si else (-math.inf, math.inf)
        if not (lo - 1e-9 <= v <= hi + 1e-9):
            bad.append(f"{tag} = {v:.6g} outside [{lo:.6g}, {hi:.6g}] at +{t - rec.t0:.0f} s")
        t_prev, v_prev = last.get(tag, (t, v))
        rate = spec.rate_limit_si_per_s
        if rate and t_prev <= t < rec.end:
            allowed = rate * max(t - t_prev, rec.scenario.cycle_s) * (1 + 1e-9) + 1e-9
            if abs(v - v_prev) > allowed:
                bad.append(
                    f"{tag} moved {v - v_prev:+.6g} in {t - t_prev:.0f} s (limit {allowed:.6g}) at +{t - rec.t0:.0f} s"
                )
        last[tag] = (t, v)
    return bad


def fallback_delay(rec: RunRecord) -> tuple[int | None, str]:
    """Worst number of cycles from a fault that must engage the fallback to the first cycle that did."""
    faults = [f for f in rec.scenario.faults if f.kind in FALLBACK_FAULTS]
    if not faults:
        return 0, "no fault in this scenario calls for the fallback"
    times = np.asarray(rec.times)
    worst = 0
    parts = []
    for f in faults:
        start = rec.t0 + f.start
        i0 = int(np.searchsorted(times, start))
        hit = next(
            (
                j
                for j in range(i0, len(times))
                if rec.fallback[j] > 0 and times[j] < start + (f.duration or math.inf) + rec.scenario.cycle_s
            ),
            None,
        )
        if hit is None:
            return None, f"{f.describe()}: fallback never engaged"
        n = hit - i0 + 1
        worst = max(worst, n)
        parts.append(f"{f.kind.value}{' ' + f.tag if f.tag else ''}: {n} cycle{'s' if n != 1 else ''}")
    return worst, "; ".join(parts)
