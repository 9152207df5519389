"""The control service on a manual clock with fake edges (controller, writer): logic only."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path

import pytest

from adapters.base import Quality, Sample
from controllers.supervisor import Mode
from controllers.types import ControlResult, SolveStatus
from symtwin.config import LoadedSite, load_site
from symtwin.runtime.clock import ManualClock
from symtwin.runtime.service import Service, ServiceParams, SolveRequest

T0 = 1_700_000_000.0


class RecordingWriter:
    def __init__(self, fail: bool = False) -> None:
        self.writes: list[dict[str, float]] = []
        self.fail = fail

    async def write_setpoints(self, values: dict[str, float]) -> dict[str, bool]:
        if self.fail:
            raise ConnectionError("link down")
        self.writes.append(dict(values))
        return {t: True for t in values}


class FixedController:
    """Proposes fixed setpoints; or fails, raises or hangs, as told."""

    def __init__(self, setpoints: dict[str, float], behaviour: str = "ok") -> None:
        self.setpoints = setpoints
        self.behaviour = behaviour
        self.requests: list[SolveRequest] = []
        self.resets = 0

    async def solve(self, request: SolveRequest, deadline_s: float) -> ControlResult:
        self.requests.append(request)
        if self.behaviour == "raise":
            raise RuntimeError("solver crashed")
        if self.behaviour == "infeasible":
            return ControlResult(SolveStatus.INFEASIBLE, message="infeasible")
        plan = {t: [v] * len(request.times) for t, v in self.setpoints.items()}
        return ControlResult(SolveStatus.OPTIMAL, setpoints=dict(self.setpoints), plan=plan,
                             plan_times=list(request.times) if plan else [], solve_time_s=0.01)

    def reset_warm_start(self) -> None:
        self.resets += 1


@pytest.fixture(scope="module")
def site() -> LoadedSite:
    return load_site(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def _feed(service: Service, site: LoadedSite, now: float, quality: Quality = Quality.GOOD) -> None:
    samples = []
    for t in site.tags.values():
        value = t.safe_value_si if t.safe_value_si is not None else 1.0
        samples.append(Sample(t.id, now, float(value), quality))
    service.write(samples)


async def _run(service: Service, clock: ManualClock, site: LoadedSite, cycles: int, feed: bool = True) -> None:
    for _ in range(cycles):
        if feed:
            _feed(service, site, clock.now())
        await service.cycle()
        await asyncio.sleep(0)  # let a finished solve task deliver
        clock.advance(service.params.cycle_s)


def _service(site: LoadedSite, controller: FixedController | None, writer: RecordingWriter, mode: Mode,
             clock: ManualClock) -> Service:
    params = ServiceParams(cycle_s=5.0, control_period_s=60.0, horizon_steps=4, step_s=900.0,
                           heartbeat_tag="symtwin.heartbeat")
    return Service(site, clock=clock, params=params, controller=controller, writer=writer, mode=mode)


async def test_auto_mode_writes_ramped_values_within_bounds(site: LoadedSite) -> None:
    clock = ManualClock(T0)
    boiler = site.tags["utility.boiler.load_sp"]
    writer = RecordingWriter()
    ctrl = FixedController({t: s.bounds_si[1] for t, s in site.tags.items() if s.bounds_si})  # type: ignore[index]
    service = _service(site, ctrl, writer, Mode.AUTO, clock)
    await _run(service, clock, site, 30)
    assert ctrl.requests, "the controller was asked"
    values = [w[boiler.id] for w in writer.writes if boiler.id in w]
    assert values[-1] > values[0], "moved towards the proposal"
    max_step = boiler.rate_limit_si_per_s * 5.0  # type: ignore[operator]
    assert all(abs(b - a) <= max_step + 1e-12 for a, b in itertools.pairwise(values))
    lo, hi = boiler.bounds_si  # type: ignore[misc]
    assert all(lo <= v <= hi and math.isfinite(v) for v in values)
    beats = [w["symtwin.heartbeat"] for w in writer.writes]
    assert beats == sorted(beats) and len(set(beats)) == len(beats), "heartbeat changes every cycle"


async def test_shadow_mode_writes_no_setpoint(site: LoadedSite) -> None:
    clock = ManualClock(T0)
    writer = RecordingWriter()
    service = _service(site, FixedController({}), writer, Mode.SHADOW, clock)
    await _run(service, clock, site, 5)
    assert all(set(w) == {"symtwin.heartbeat"} for w in writer.writes)


async def test_failing_controller_falls_back_to_safe_values(site: LoadedSite) -> None:
    clock = ManualClock(T0)
    writer = RecordingWriter()
    ctrl = FixedController({}, behaviour="raise")
    service = _service(site, ctrl, writer, Mode.AUTO, clock)
    await _run(service, clock, site, 40)
    snap = service.snapshot()
    assert snap.fallback == "safe"
    assert service.counters.solves.get("error", 0) >= 1
    for tag, spec in service.setpoint_tags.items():
        assert writer.writes[-1][tag] == pytest.approx(spec.safe_value_si)


async def test_stale_inputs_start_no_solve(site: LoadedSite) -> None:
    clock = ManualClock(T0)
    writer = RecordingWriter()
    ctrl = FixedController({})
    service = _service(site, ctrl, writer, Mode.AUTO, clock)
    _feed(service, site, clock.now())
    clock.advance(3600.0)  # every measurement is now older than its max age
    await _run(service, clock, site, 3, feed=False)
    assert ctrl.requests == []
    assert service.counters.solves.get("skipped_bad_inputs") == 1
    snap = service.snapshot()
    assert any(a.key.startswith("stale:") for a in snap.alarms)
    assert snap.tags["utility.town.heat"].status.value == "stale"


async def test_writer_failure_is_an_alarm_not_a_crash(site: LoadedSite) -> None:
    clock = ManualClock(T0)
    service = _service(site, FixedController({}), RecordingWriter(fail=True), Mode.AUTO, clock)
    await _run(service, clock, site, 3)
    assert service.counters.writes_failed > 0
    assert any(a.key == "writer" for a in service.snapshot().alarms)
    assert "symtwin_setpoint_writes_total" in service.metrics.render()


async def test_operator_override_wins_and_is_ramped(site: LoadedSite) -> None:
    clock = ManualClock(T0)
    writer = RecordingWriter()
    service = _service(site, None, writer, Mode.AUTO, clock)
    tag = "utility.storage.charge_sp"
    service.override(tag, 10.0, user="op", reason="test")
    await _run(service, clock, site, 40)
    assert writer.writes[-1][tag] == pytest.approx(10.0)
    assert service.snapshot().tags[tag].override == 10.0


async def test_shutdown_steps_towards_safe_values_within_the_rate_limit(site: LoadedSite) -> None:
    clock = ManualClock(T0)
    writer = RecordingWriter()
    tag = "utility.storage.charge_sp"
    spec = site.tags[tag]
    service = _service(site, None, writer, Mode.AUTO, clock)
    service.override(tag, 12.0, user="op", reason="test")
    await _run(service, clock, site, 60)
    before = writer.writes[-1][tag]
    assert before == pytest.approx(12.0)
    await service.shutdown()
    last = writer.writes[-1][tag]
    assert last < before, "moves towards the safe value (0 kg/s)"
    assert before - last <= spec.rate_limit_si_per_s * service.params.cycle_s + 1e-12  # type: ignore[operator]
