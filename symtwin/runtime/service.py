"""The control service: one asyncio loop on an injected clock.

Each cycle (``cycle_s`` of clock time):

1. drain the samples the adapters delivered into the latest-value table (sources never wait for us);
2. judge the inputs (staleness, quality, frozen sensors) — the controller never acts on bad inputs;
3. advance the twin with the measurements (estimates of every quantity, unmeasured states too);
4. every ``control_period_s`` start a solve in the background with a deadline; a late or failed solve
   is never written (the supervisor falls back to the last good plan, then to safe values);
5. let the supervisor decide the setpoints (mode, override, clamp, rate limit) and write them;
6. write the heartbeat, publish a snapshot for the live view and update the metrics.

Failure is handled here, in one place: an adapter that raises marks its tags stale and is logged once
when it fails and once when it recovers; nothing else in the cycle depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from adapters.base import Sample, SetpointWriter, Sink
from controllers.input_health import InputHealth, InputLimits, InputMonitor
from controllers.supervisor import Decision, Mode, Supervisor, SupervisorConfig
from controllers.types import ControlResult, SetpointLimits, SolveStatus
from symtwin.config import LoadedSite, TagSpec
from symtwin.config.schema import Direction
from symtwin.runtime.clock import Clock
from symtwin.runtime.latest import LatestValues
from symtwin.runtime.metrics import Metrics
from symtwin.runtime.state import Alarm, Flow, PlanView, Snapshot, TagStatus, TagView

log = logging.getLogger(__name__)

CYCLE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SOLVE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class SolveRequest:
    """Everything a controller gets for one step; plain values only (it may cross a process boundary).

    state: twin estimates by ``<unit>.<quantity>`` and measured values by tag id [SI].
    forecasts: per series name, values on ``times`` [SI].
    current: current (last written or measured) value per setpoint tag [SI].
    """

    now: float
    state: Mapping[str, float]
    forecasts: Mapping[str, Sequence[float]]
    times: Sequence[float]
    current: Mapping[str, float]


class ControllerPort(Protocol):
    """A controller as the service runs it: asynchronous, with a deadline it must respect."""

    async def solve(self, request: SolveRequest, deadline_s: float) -> ControlResult: ...

    def reset_warm_start(self) -> None: ...


class TwinPort(Protocol):
    """The twin as the service runs it: advance with measurements, give estimates and hidden states."""

    def update(self, now: float, measured: Mapping[str, float], applied: Mapping[str, float]) -> None: ...

    def estimates(self) -> Mapping[str, tuple[float, float]]:
        """``<unit>.<quantity>`` → (value, standard deviation) [SI]."""
        ...

    def unit_states(self) -> Mapping[str, Mapping[str, float]]: ...

    def flows(self) -> Mapping[str, tuple[float, float | None]]:
        """Exchange id → (heat [W], mass flow [kg/s] or None)."""
        ...


ForecastFn = Callable[[float, Sequence[float]], Mapping[str, Sequence[float]]]


@dataclass(frozen=True)
class ServiceParams:
    cycle_s: float = 5.0  # supervision cycle [s of clock time]: inputs judged, setpoints ramped and written
    control_period_s: float = 900.0  # a new solve this often [s]
    deadline_fraction: float = 0.8  # a solve must finish within this share of the control period
    horizon_steps: int = 96
    step_s: float = 900.0
    write_timeout_s: float = 5.0
    heartbeat_tag: str | None = None
    freeze_window: int | None = None  # samples of identical value that mark a sensor frozen (None: off)

    def __post_init__(self) -> None:
        if not (self.cycle_s > 0 and self.control_period_s >= self.cycle_s):
            raise ValueError("need 0 < cycle_s <= control_period_s")


@dataclass
class _SolveState:
    task: asyncio.Task[ControlResult] | None = None
    started: float = 0.0
    next_at: float = -math.inf
    last: ControlResult | None = None
    last_at: float | None = None
    new_result: bool = False
    consecutive_failures: int = 0


@dataclass
class ServiceCounters:
    cycles: int = 0
    overruns: int = 0  # cycles that took longer than cycle_s of wall time
    writes_ok: int = 0
    writes_failed: int = 0
    samples_in: int = 0  # samples the adapters delivered to write() (each was handed to history too)
    solves: dict[str, int] = field(default_factory=dict)


class Service:
    """Wires latest values → health → twin → controller → supervisor → writer, on ``clock``."""

    def __init__(
        self,
        site: LoadedSite,
        *,
        clock: Clock,
        params: ServiceParams,
        controller: ControllerPort | None = None,
        writer: SetpointWriter | None = None,
        history: Sink | None = None,
        twin: TwinPort | None = None,
        forecasts: ForecastFn | None = None,
        metrics: Metrics | None = None,
        mode: Mode | None = None,
        dead_letter_count: Callable[[], int] = lambda: 0,
        alarm_sources: Sequence[Callable[[], Iterable[tuple[str, str, str]]]] = (),
    ) -> None:
        self.site = site
        self.clock = clock
        self.params = params
        self.controller = controller
        self.writer = writer
        self.history = history
        self.twin = twin
        self.forecasts = forecasts
        self.metrics = metrics or Metrics()
        self.dead_letter_count = dead_letter_count
        self.alarm_sources = list(alarm_sources)  # further (key, severity, message) alarms, e.g. forecasts
        self.latest = LatestValues()
        self.counters = ServiceCounters()
        self.setpoint_tags: dict[str, TagSpec] = {
            t.id: t for t in site.tags.values() if t.direction is Direction.SETPOINT
        }
        self.measurement_tags: dict[str, TagSpec] = {
            t.id: t for t in site.tags.values() if t.direction is Direction.MEASUREMENT
        }
        limits = [
            SetpointLimits(t.id, t.bounds_si[0], t.bounds_si[1], float(t.rate_limit_si_per_s), float(t.safe_value_si))
            for t in self.setpoint_tags.values()
            if t.bounds_si and t.rate_limit_si_per_s and t.safe_value_si is not None
        ]
        self.supervisor = Supervisor(
            SupervisorConfig(limits, control_period_s=params.cycle_s,
                             failures_to_degrade=site.config.controller.max_consecutive_failures),
            mode=Mode(mode or site.config.controller.mode.value),
        )
        self.monitor = InputMonitor([
            InputLimits(t.id, t.max_age_s, freeze_window=params.freeze_window) for t in self.measurement_tags.values()
        ])
        self._solve = _SolveState()
        self._health = InputHealth(ok=False, detail={"*": "not started"})
        self._decision: Decision | None = None
        self._written: dict[str, tuple[float, float]] = {}  # tag → (value, time) last written
        self._writer_down_since: float | None = None
        self._heartbeat = 0
        self._alarm_since: dict[str, float] = {}
        self._actual: dict[str, deque[tuple[float, float]]] = {t: deque(maxlen=2000) for t in self.setpoint_tags}
        self._snapshot = Snapshot(time=clock.now(), mode=self.supervisor.mode.value, tags={})
        self._stop = asyncio.Event()
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._plans_stamp: tuple[float | None, int] | None = None
        self._plans_cache: Mapping[str, PlanView] = {}

    # ------------------------------------------------------------------ ingestion (Sink protocol)

    def write(self, samples: Sequence[Sample]) -> None:
        """Adapters deliver samples here (any thread); history gets them at once, the cycle at its tick."""
        self.counters.samples_in += len(samples)
        self.latest.write(samples)
        if self.history is not None:
            self.history.write(samples)

    # ------------------------------------------------------------------ operator commands

    def set_mode(self, mode: str, user: str, reason: str = "") -> None:
        self.supervisor.set_mode(self.clock.now(), Mode(mode), user, reason or "operator request")

    def override(self, tag: str, value_si: float, user: str, reason: str = "") -> None:
        self.supervisor.set_override(self.clock.now(), tag, value_si, user, reason or "operator override")

    def release(self, tag: str, user: str, reason: str = "") -> None:
        self.supervisor.release_override(self.clock.now(), tag, user, reason or "operator release")

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def on_snapshot(self, listener: Callable[[Snapshot], None]) -> None:
        self._listeners.append(listener)

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        self._stop.set()

    async def run(self, until: float | None = None) -> None:
        """Run cycles until :meth:`stop` or clock time ``until``; then write safe values if in auto."""
        next_t = self.clock.now()
        try:
            while not self._stop.is_set() and (until is None or next_t <= until):
                await self.clock.sleep_until(next_t)
                if self._stop.is_set():
                    break
                await self.cycle()
                next_t += self.params.cycle_s
                now = self.clock.now()
                if now > next_t + self.params.cycle_s:  # fell behind: skip, never burst
                    missed = int((now - next_t) // self.params.cycle_s)
                    self.counters.overruns += missed
                    next_t += missed * self.params.cycle_s
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel a running solve; in auto, take one last step towards the safe values within the rate limits.

        The service never jumps: each setpoint moves from its last written value towards its safe value by at
        most one cycle's rate. Then the heartbeat stops changing and the PLC's own logic takes over.
        """
        task = self._solve.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.writer is None or self.supervisor.mode is not Mode.AUTO:
            return
        last: dict[str, float] = {}
        for t in self.setpoint_tags.values():
            if t.safe_value_si is None or t.id not in self._written or not t.rate_limit_si_per_s:
                continue
            v = self._written[t.id][0]
            step = t.rate_limit_si_per_s * self.params.cycle_s
            last[t.id] = min(max(t.safe_value_si, v - step), v + step)
        if last:
            log.warning("shutdown: last step towards the safe setpoints %s", last)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.write_setpoints(last), self.params.write_timeout_s)

    async def cycle(self) -> Decision:
        t_wall = time.perf_counter()
        now = self.clock.now()
        fresh = self.latest.drain()
        table = self.latest.table
        self._health = self.monitor.check(now, table)
        measured = {t: s.value for t, s in table.items() if s.is_usable()}
        if self.twin is not None:
            applied = {self.setpoint_tags[t].key: v for t, (v, _) in self._written.items()}
            keyed = {self.site.tags[t].key: v for t, v in measured.items()
                     if t in self.measurement_tags and t not in self._health.problems}
            try:
                self.twin.update(now, keyed, applied)
            except Exception:  # the twin must never stop the control loop
                log.exception("twin update failed; estimates hold their last values")
        self._maybe_start_solve(now, measured)
        proposal = self._take_proposal()
        current = {t: table[t].value for t in self.setpoint_tags if t in table and table[t].is_usable()}
        decision = self.supervisor.decide(now, proposal, self._health, current)
        if decision.reset_warm_start and self.controller is not None:
            self.controller.reset_warm_start()
        self._decision = decision
        await self._write(now, decision)
        self.counters.cycles += 1
        self._publish(now, fresh, decision, time.perf_counter() - t_wall)
        return decision

    # ------------------------------------------------------------------ solving

    def _maybe_start_solve(self, now: float, measured: Mapping[str, float]) -> None:
        s = self._solve
        if self.controller is None or self.supervisor.mode is Mode.OFF:
            return
        if s.task is not None and s.task.done():
            s.task = None
        if s.task is not None or now < s.next_at:
            return
        if not self._health.ok:
            # No MPC action on stale or bad inputs: skip this period, the supervisor falls back.
            s.last, s.last_at, s.new_result = ControlResult(SolveStatus.ERROR, message=self._health.summary()), now, True
            s.next_at = now + self.params.control_period_s
            self._count_solve("skipped_bad_inputs")
            return
        times = [now + k * self.params.step_s for k in range(self.params.horizon_steps)]
        # Estimates by "<unit>.<quantity>", then healthy measurements by the same key (the truth where it is
        # measured, with or without an estimator), and by tag id.
        state: dict[str, float] = {}
        if self.twin is not None:
            state.update({k: v for k, (v, _) in self.twin.estimates().items()})
            # Distributed states too (pipe and tank profiles): the MPC predicts what reaches the town
            # over the next hour from the pipe's temperature profile, which no sensor measures.
            for unit, values in self.twin.unit_states().items():
                state.update({f"{unit}.{q}": v for q, v in values.items()})
        state.update({self.site.tags[t].key: v for t, v in measured.items()
                      if t in self.measurement_tags and t not in self._health.problems})
        state.update(measured)
        forecasts = self.forecasts(now, times) if self.forecasts is not None else {}
        current = {t: v for t, (v, _) in self._written.items()}
        for t in self.setpoint_tags:
            if t not in current and t in measured:
                current[t] = measured[t]
        request = SolveRequest(now, state, forecasts, times, current)
        deadline = self.params.deadline_fraction * self.params.control_period_s
        s.task = asyncio.create_task(self._run_solve(request, deadline))
        s.started = now
        s.next_at = now + self.params.control_period_s

    async def _run_solve(self, request: SolveRequest, deadline_s: float) -> ControlResult:
        assert self.controller is not None
        t0 = time.perf_counter()
        try:
            result = await self.controller.solve(request, deadline_s)
        except Exception as exc:  # a controller bug is a failed solve, not a dead service
            log.exception("controller raised")
            result = ControlResult(SolveStatus.ERROR, message=f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - t0
        self.metrics.observe("solve_seconds", "wall time of controller solves", elapsed, SOLVE_BUCKETS,
                             {"status": result.status.value})
        s = self._solve
        s.last, s.last_at, s.new_result = result, self.clock.now(), True
        self._count_solve(result.status.value)
        if result.status.usable:
            s.consecutive_failures = 0
        else:
            s.consecutive_failures += 1
            log.warning("solve %s: %s", result.status.value, result.message)
        return result

    def _count_solve(self, status: str) -> None:
        self.counters.solves[status] = self.counters.solves.get(status, 0) + 1
        self.metrics.inc("solves", "controller solves by outcome", labels={"status": status})

    def _take_proposal(self) -> ControlResult | None:
        """A result that arrived since the last cycle, else None: between solves the supervisor follows the
        accepted plan shifted in time, and a failure is counted once per solve, not once per cycle."""
        s = self._solve
        if s.last is None or not s.new_result:
            return None
        s.new_result = False
        return s.last

    # ------------------------------------------------------------------ writing

    async def _write(self, now: float, decision: Decision) -> None:
        values = dict(decision.written)
        if self.params.heartbeat_tag is not None:
            self._heartbeat = (self._heartbeat + 1) % 32768
        if self.writer is None or (not values and self.params.heartbeat_tag is None):
            return
        to_write = dict(values)
        if self.params.heartbeat_tag is not None:
            to_write[self.params.heartbeat_tag] = float(self._heartbeat)
        for tag, v in values.items():
            # The supervisor guarantees this; the service refuses to be the place where it breaks.
            spec = self.setpoint_tags[tag]
            assert math.isfinite(v) and spec.bounds_si is not None and spec.bounds_si[0] <= v <= spec.bounds_si[1]
        try:
            ok = await asyncio.wait_for(self.writer.write_setpoints(to_write), self.params.write_timeout_s)
        except Exception as exc:
            ok = {t: False for t in to_write}
            if self._writer_down_since is None:
                self._writer_down_since = now
                log.error("setpoint write failed: %s (tags go on ramping from the last confirmed value)", exc)
        else:
            if self._writer_down_since is not None and all(ok.values()):
                log.warning("setpoint writes work again after %.0f s", now - self._writer_down_since)
                self._writer_down_since = None
        for tag, v in values.items():
            if ok.get(tag):
                self._written[tag] = (v, now)
                self._actual[tag].append((now, v))
                self.counters.writes_ok += 1
            else:
                self.counters.writes_failed += 1
        self.metrics.inc("setpoint_writes", "setpoint writes", sum(1 for t in values if ok.get(t)), {"result": "ok"})
        self.metrics.inc("setpoint_writes", "setpoint writes", sum(1 for t in values if not ok.get(t)),
                         {"result": "failed"})

    # ------------------------------------------------------------------ snapshot and metrics

    def _publish(self, now: float, fresh: list[Sample], decision: Decision, cycle_wall_s: float) -> None:
        m = self.metrics
        m.observe("cycle_seconds", "wall time of one control cycle", cycle_wall_s, CYCLE_BUCKETS)
        m.set("cycles", "control cycles run", self.counters.cycles)
        m.set("cycle_overruns", "cycles skipped because the loop fell behind", self.counters.overruns)
        m.set("stale_tags", "measurement tags that are stale, frozen, bad or missing", len(self._health.problems))
        m.set("fallback_engaged", "0 none, 1 last good plan, 2 safe values", int(decision.fallback))
        m.set("mode", "controller mode (0 off, 1 shadow, 2 auto)", ("off", "shadow", "auto").index(decision.mode.value))
        m.set("degraded", "1 when the controller is degraded after consecutive failures", int(decision.degraded))
        m.inc("samples", "samples received by the control cycle", len(fresh))
        m.set("samples_delivered", "samples the adapters delivered (each also handed to history)",
              self.counters.samples_in)
        m.set("samples_dropped", "samples dropped because the cycle fell behind", self.latest.dropped)
        m.set("dead_letters", "inputs set aside with a reason", self.dead_letter_count())
        if self._solve.last is not None:
            m.set("solve_status", "last solve usable (1) or not (0)", int(self._solve.last.status.usable))
        estimates = self.twin.estimates() if self.twin is not None else {}
        tags: dict[str, TagView] = {}
        table = self.latest.table
        for t in self.site.tags.values():
            s = table.get(t.id)
            problem = self._health.problems.get(t.id)
            if t.direction is Direction.SETPOINT:
                w = self._written.get(t.id)
                value, ts = (w[0], w[1]) if w else ((s.value, s.timestamp) if s else (None, None))
                status = TagStatus.OK if value is not None else TagStatus.MISSING
            else:
                value, ts = (s.value, s.timestamp) if s else (None, None)
                status = TagStatus(problem.value) if problem and problem.value in TagStatus._value2member_map_ else (
                    TagStatus.BAD if problem else TagStatus.OK)
            est = estimates.get(t.key)
            ov = self.supervisor.overrides.get(t.id)
            tags[t.id] = TagView(
                t.id, t.owner, t.unit, t.quantity, t.direction.value, t.si_unit, t.eng_unit, value,
                t.from_si(value) if value is not None else None, ts, status,
                est[0] if est else None, est[1] if est else None, ov.value if ov else None,
            )
        self._snapshot = Snapshot(
            time=now,
            mode=decision.mode.value,
            tags=tags,
            flows=self._flows(),
            unit_states=self.twin.unit_states() if self.twin is not None else {},
            plans=self._plans(),
            solve_status=self._solve.last.status.value if self._solve.last else "none",
            solve_time_s=self._solve.last.solve_time_s if self._solve.last else None,
            solve_at=self._solve.last_at,
            fallback=decision.fallback.name.lower(),
            alarms=self._alarms(now, decision),
            dead_letters=self.dead_letter_count(),
            cycle=self.counters.cycles,
            wall_time=time.time(),
        )
        for listener in self._listeners:
            try:
                listener(self._snapshot)
            except Exception:
                log.exception("snapshot listener failed")

    def _flows(self) -> tuple[Flow, ...]:
        if self.twin is None:
            return ()
        values = self.twin.flows()
        out = []
        for e in self.site.config.exchanges:
            conn = self.site.connection_by_id[e.connection]
            supplier, receiver = self.site.exchange_parties(e)
            heat, mass = values.get(e.id, (0.0, None))
            medium = next(c.medium for c in self.site.park_spec().connections
                          if f"{c.source}.{c.source_port}" == conn.source and f"{c.target}.{c.target_port}" == conn.target)
            out.append(Flow(e.id, supplier, receiver, conn.source.split(".")[0], conn.target.split(".")[0], medium,
                            heat, mass))
        return tuple(out)

    def _plans(self) -> Mapping[str, PlanView]:
        """Plan versus actual per setpoint; rebuilt when a solve lands or once a minute of clock time
        (copying every setpoint's history each 5-s cycle was most of a fast simulation's CPU)."""
        stamp = (self._solve.last_at, int(self.clock.now() // 60.0))
        if stamp == self._plans_stamp:
            return self._plans_cache
        last = self._solve.last
        out: dict[str, PlanView] = {}
        for tag in self.setpoint_tags:
            actual = self._actual[tag]
            if last is not None and last.status.usable and tag in last.plan:
                times = tuple(float(x) for x in last.plan_times)
                planned = tuple(float(x) for x in last.plan[tag])
            else:
                times, planned = (), ()
            out[tag] = PlanView(tag, times, planned, tuple(a[0] for a in actual), tuple(a[1] for a in actual))
        self._plans_stamp, self._plans_cache = stamp, out
        return out

    def _alarms(self, now: float, decision: Decision) -> tuple[Alarm, ...]:
        current: list[tuple[str, str, str, tuple[str, ...]]] = []
        for tag, problem in self._health.problems.items():
            current.append((f"{problem.value}:{tag}", "warning", f"{tag}: {self._health.detail.get(tag, problem.value)}",
                            (tag,)))
        for a in decision.alarms:
            current.append((f"supervisor:{a.code.value}", "alarm", a.message, ()))
        if self._writer_down_since is not None:
            current.append(("writer", "alarm", "setpoint writes are failing", tuple(decision.written)))
        if self.dead_letter_count():
            current.append(("dead_letters", "warning", f"{self.dead_letter_count()} inputs dead-lettered", ()))
        for source in self.alarm_sources:
            try:
                current.extend((key, severity, message, ()) for key, severity, message in source())
            except Exception:
                log.exception("alarm source failed")
        keys = {c[0] for c in current}
        for k in list(self._alarm_since):
            if k not in keys:
                del self._alarm_since[k]
        return tuple(Alarm(k, sev, msg, self._alarm_since.setdefault(k, now), tags) for k, sev, msg, tags in current)
