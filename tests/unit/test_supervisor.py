"""Supervisor: fallback chain, modes, overrides, bumpless transfer, degraded state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controllers.input_health import InputHealth, InputLimits, InputMonitor, InputProblem
from controllers.supervisor import (
    AlarmCode,
    CommandError,
    FallbackLevel,
    Mode,
    Source,
    Supervisor,
    SupervisorConfig,
)
from controllers.types import ControlResult, SetpointLimits, SolveStatus

PERIOD = 10.0
LOAD = SetpointLimits("hp.load_setpoint", lo=0.0, hi=1.0, max_rate_per_s=0.01, safe_value=0.5)
CHARGE = SetpointLimits("tank.charge_setpoint", lo=-50.0, hi=50.0, max_rate_per_s=1.0, safe_value=0.0)


def make(mode: Mode = Mode.AUTO, **kw: object) -> Supervisor:
    sup = Supervisor(SupervisorConfig([LOAD, CHARGE], control_period_s=PERIOD, **kw))  # type: ignore[arg-type]
    if mode is not Mode.OFF:
        sup.set_mode(0.0, mode, "test", "start")
    return sup


def ok(load: float, charge: float, now: float = 0.0, steps: int = 6) -> ControlResult:
    times = now + PERIOD * np.arange(steps)
    return ControlResult(
        SolveStatus.OPTIMAL,
        setpoints={LOAD.tag: load, CHARGE.tag: charge},
        plan={LOAD.tag: np.full(steps, load), CHARGE.tag: np.linspace(charge, charge + 5 * steps, steps)},
        plan_times=times,
    )


def failed(status: SolveStatus = SolveStatus.INFEASIBLE) -> ControlResult:
    return ControlResult.failure(status, "forced")


def test_failed_result_cannot_carry_setpoints() -> None:
    with pytest.raises(ValueError):
        ControlResult(SolveStatus.INFEASIBLE, setpoints={"a": 1.0})
    with pytest.raises(ValueError):
        ControlResult(SolveStatus.TIMEOUT, plan={"a": np.zeros(2)}, plan_times=np.arange(2.0))


def test_usable_proposal_is_written_within_rate() -> None:
    sup = make()
    d = sup.decide(0.0, ok(0.4, 10.0), True, measured={LOAD.tag: 0.3, CHARGE.tag: 0.0})
    # Entering auto: first write equals the measured current value (bumpless), dt = 0.
    assert d.written == {LOAD.tag: 0.3, CHARGE.tag: 0.0}
    d = sup.decide(PERIOD, ok(0.4, 10.0), True)
    assert d.written[LOAD.tag] == pytest.approx(0.4)  # 0.1 step allowed (0.01/s × 10 s)
    assert d.written[CHARGE.tag] == pytest.approx(10.0)
    d = sup.decide(2 * PERIOD, ok(1.7, 80.0), True)
    assert d.written[LOAD.tag] == pytest.approx(0.5) and d.setpoints[LOAD.tag].rate_limited
    assert d.written[CHARGE.tag] == pytest.approx(20.0)
    assert d.setpoints[CHARGE.tag].clamped and d.setpoints[CHARGE.tag].source is Source.MPC
    assert d.fallback is FallbackLevel.NONE


def test_fallback_chain_last_plan_then_safe() -> None:
    sup = make()
    sup.decide(0.0, ok(0.5, 0.0), True, measured={LOAD.tag: 0.5, CHARGE.tag: 0.0})
    d = sup.decide(PERIOD, failed(), True)
    assert d.fallback is FallbackLevel.LAST_PLAN
    # shifted plan: the value planned for t = PERIOD, not the first step
    assert d.setpoints[CHARGE.tag].source is Source.LAST_PLAN
    assert d.setpoints[CHARGE.tag].target == pytest.approx(6.0)
    assert d.written[CHARGE.tag] == pytest.approx(6.0)
    # beyond the plan's horizon (6 steps) the safe value takes over
    t = 7 * PERIOD
    d = sup.decide(t, None, True)
    assert d.fallback is FallbackLevel.SAFE
    assert d.setpoints[LOAD.tag].source is Source.SAFE
    assert any(a.code is AlarmCode.SAFE_FALLBACK for a in d.alarms)


def test_stale_inputs_skip_plan_and_ramp_to_safe() -> None:
    sup = make()
    sup.decide(0.0, ok(1.0, 50.0), True, measured={LOAD.tag: 1.0, CHARGE.tag: 50.0})
    health = InputHealth(ok=False, problems={"t.x": InputProblem.STALE}, detail={"t.x": "age 99 s"})
    values = []
    for k in range(1, 8):
        # a perfectly good proposal computed from stale inputs must not be acted on
        d = sup.decide(k * PERIOD, ok(1.0, 50.0), health)
        assert d.setpoints[LOAD.tag].source is Source.SAFE
        assert any(a.code is AlarmCode.INPUT_BAD for a in d.alarms)
        values.append(d.written[LOAD.tag])
    assert values[:5] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])  # ramps at the rate limit
    assert values[-1] == pytest.approx(0.5)


def test_non_finite_and_incomplete_proposals_are_failures() -> None:
    sup = make()
    sup.decide(0.0, ok(0.5, 0.0), True, measured={LOAD.tag: 0.5, CHARGE.tag: 0.0})
    d = sup.decide(PERIOD, ok(math.nan, 1.0), True)
    assert d.setpoints[LOAD.tag].source is Source.LAST_PLAN
    assert any(a.code is AlarmCode.NON_FINITE_PROPOSAL for a in d.alarms)
    partial = ControlResult(SolveStatus.OPTIMAL, setpoints={LOAD.tag: 0.6})
    d = sup.decide(2 * PERIOD, partial, True)
    assert d.setpoints[LOAD.tag].source is Source.LAST_PLAN
    assert any(a.code is AlarmCode.INCOMPLETE_PROPOSAL for a in d.alarms)


def test_degraded_after_three_failures_resets_warm_start_once() -> None:
    sup = make()
    sup.decide(0.0, ok(0.5, 0.0), True, measured={LOAD.tag: 0.5, CHARGE.tag: 0.0})
    flags = []
    for k in range(1, 6):
        d = sup.decide(k * PERIOD, failed(SolveStatus.ERROR), True)
        flags.append((d.degraded, d.reset_warm_start))
    assert flags == [(False, False), (False, False), (True, True), (True, False), (True, False)]
    assert any(a.code is AlarmCode.DEGRADED for a in d.alarms)
    d = sup.decide(5.5 * PERIOD, None, True)  # between solves the alarm stays up
    assert d.degraded and any(a.code is AlarmCode.DEGRADED for a in d.alarms)
    d = sup.decide(6 * PERIOD, ok(0.5, 0.0, now=6 * PERIOD), True)
    assert not d.degraded and d.consecutive_failures == 0 and d.fallback is FallbackLevel.NONE


def test_shadow_computes_but_writes_nothing_and_off_computes_nothing() -> None:
    sup = make(Mode.SHADOW)
    d = sup.decide(0.0, ok(0.4, 3.0), True, measured={LOAD.tag: 0.4, CHARGE.tag: 3.0})
    assert d.written == {} and d.values() == {LOAD.tag: 0.4, CHARGE.tag: 3.0}
    sup.set_mode(1.0, Mode.OFF, "op", "maintenance")
    d = sup.decide(PERIOD, ok(0.4, 3.0), True)
    assert d.written == {} and d.values() == {}
    assert all(s.source is Source.NONE for s in d.setpoints.values())
    assert [c.kind for c in sup.commands] == ["mode", "mode"]


def test_off_to_auto_is_bumpless_from_measured_value() -> None:
    sup = make(Mode.OFF)
    sup.decide(0.0, None, True)
    sup.set_mode(5.0, Mode.AUTO, "op", "commissioned")
    d = sup.decide(PERIOD, ok(1.0, 40.0), True, measured={LOAD.tag: 0.2, CHARGE.tag: -10.0})
    # dt since the previous cycle is 10 s: one period's move from the measured value
    assert d.written[LOAD.tag] == pytest.approx(0.3)
    assert d.written[CHARGE.tag] == pytest.approx(0.0)
    assert d.setpoints[LOAD.tag].reference == 0.2


def test_override_wins_ramps_and_returns_bumplessly() -> None:
    sup = make()
    sup.decide(0.0, ok(0.5, 0.0), True, measured={LOAD.tag: 0.5, CHARGE.tag: 0.0})
    sup.set_override(1.0, LOAD.tag, 0.8, "alice", "testing heat pump")
    d = sup.decide(PERIOD, ok(0.5, 0.0, now=PERIOD), True)
    assert d.setpoints[LOAD.tag].source is Source.OVERRIDE
    assert d.written[LOAD.tag] == pytest.approx(0.6)  # ramps towards the manual value
    d = sup.decide(2 * PERIOD, failed(), True)  # overrides hold through solver failures
    assert d.written[LOAD.tag] == pytest.approx(0.7)
    d = sup.decide(3 * PERIOD, ok(0.5, 0.0, now=3 * PERIOD), True)
    assert d.written[LOAD.tag] == pytest.approx(0.8)
    sup.release_override(31.0, LOAD.tag, "alice", "done")
    d = sup.decide(4 * PERIOD, ok(0.2, 0.0, now=4 * PERIOD), True)
    assert d.written[LOAD.tag] == pytest.approx(0.7)  # bumpless: from 0.8, not a jump to 0.2
    assert d.setpoints[LOAD.tag].source is Source.MPC


def test_commands_are_validated() -> None:
    sup = make()
    with pytest.raises(CommandError):
        sup.set_override(0.0, LOAD.tag, 1.5, "alice", "too high")
    with pytest.raises(CommandError):
        sup.set_override(0.0, LOAD.tag, math.nan, "alice", "nan")
    with pytest.raises(CommandError):
        sup.set_override(0.0, "nope", 0.1, "alice", "unknown")
    with pytest.raises(CommandError):
        sup.set_mode(0.0, Mode.AUTO, "alice", " ")
    with pytest.raises(CommandError):
        sup.release_override(0.0, LOAD.tag, "alice", "none set")
    with pytest.raises(ValueError):
        sup.decide(math.inf, None, True)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        SetpointLimits("x", lo=1.0, hi=0.0, max_rate_per_s=1.0, safe_value=0.5)
    with pytest.raises(ValueError):
        SetpointLimits("x", lo=0.0, hi=1.0, max_rate_per_s=0.0, safe_value=0.5)
    with pytest.raises(ValueError):
        SetpointLimits("x", lo=0.0, hi=1.0, max_rate_per_s=1.0, safe_value=2.0)
    with pytest.raises(ValueError):
        SetpointLimits("x", lo=0.0, hi=math.nan, max_rate_per_s=1.0, safe_value=0.5)


class _S:
    def __init__(self, t: float, v: float, q: int = 0) -> None:
        self.timestamp, self.value, self.quality = t, v, q


def test_frozen_sensor_flagged_within_three_cycles_and_setpoints_ramp_to_safe() -> None:
    mon = InputMonitor([InputLimits("t.supply", max_age_s=25.0, freeze_window=3)])
    sup = make()
    flagged_at = None
    load = []
    for k in range(12):
        now = k * PERIOD
        # healthy, noisy until cycle 4; from cycle 4 the sensor repeats 350.0 with fresh timestamps
        value = 350.0 + (0.1 * (k % 3) if k < 4 else 0.0)
        if k == 3:
            value = 350.0
        health = mon.check(now, {"t.supply": _S(now, value)})
        if not health.ok and flagged_at is None:
            flagged_at = k
            assert health.problems["t.supply"] is InputProblem.FROZEN
        d = sup.decide(now, ok(1.0, 0.0, now=now), health, measured={LOAD.tag: 1.0, CHARGE.tag: 0.0})
        load.append(d.written[LOAD.tag])
        if not health.ok:
            assert any(a.code is AlarmCode.INPUT_BAD for a in d.alarms)
    assert flagged_at == 5  # the frozen value first appeared at cycle 3: flagged on its 3rd sample
    steps = np.diff(load)
    assert np.all(np.abs(steps) <= LOAD.max_rate_per_s * PERIOD + 1e-12)
    assert load[-1] == pytest.approx(LOAD.safe_value)


def test_input_monitor_age_quality_non_finite_missing() -> None:
    mon = InputMonitor([InputLimits("a", max_age_s=5.0, lo=0.0, hi=10.0), InputLimits("b", max_age_s=5.0)])
    h = mon.check(10.0, {"a": _S(4.0, 1.0)})
    assert h.problems == {"a": InputProblem.STALE, "b": InputProblem.MISSING}
    h = mon.check(10.0, {"a": _S(9.0, 1.0, q=2), "b": _S(9.0, math.inf)})
    assert h.problems == {"a": InputProblem.BAD_QUALITY, "b": InputProblem.NON_FINITE}
    h = mon.check(10.0, {"a": _S(9.0, 11.0), "b": _S(9.0, 1.0)})
    assert h.problems == {"a": InputProblem.IMPLAUSIBLE}
    assert mon.check(10.0, {"a": _S(9.0, 1.0), "b": _S(9.0, 1.0)}).ok
    assert "inputs bad" in h.summary()


def test_between_solves_the_plan_is_followed_and_none_is_not_a_failure() -> None:
    sup = make()
    sup.decide(0.0, ok(0.5, 0.0), True, measured={LOAD.tag: 0.5, CHARGE.tag: 0.0})
    for k in range(1, 6):  # five supervision cycles without a new result
        d = sup.decide(k * PERIOD, None, True)
        assert d.fallback is FallbackLevel.NONE and d.consecutive_failures == 0 and not d.degraded
        assert d.setpoints[CHARGE.tag].source is Source.PLAN
        assert d.setpoints[CHARGE.tag].target == pytest.approx(6.0 * k)  # plan values, shifted in time
        assert d.alarms == ()
    # one failed result: from now on the same plan is a fallback, and None cycles do not add failures
    d = sup.decide(5.5 * PERIOD, failed(), True)
    assert d.fallback is FallbackLevel.LAST_PLAN and d.consecutive_failures == 1
    d = sup.decide(5.8 * PERIOD, None, True)
    assert d.setpoints[CHARGE.tag].source is Source.LAST_PLAN and d.consecutive_failures == 1
