"""The last word before a setpoint reaches the plant: mode, override, fallback, clamp and rate limit.

Every control cycle the runtime hands the supervisor the controller's proposal (or None when the solve
timed out), the health of the inputs and, if it has them, the read-back values of the setpoints. The
supervisor decides per setpoint tag:

1. where the target comes from, in this order: operator override → the proposal, if usable (status
   optimal/suboptimal, every value finite, every tag present, inputs healthy) → the last good plan
   shifted to ``now`` (only while inputs are healthy: stale inputs mean no action based on old
   assumptions either) → the configured safe value. A cycle without a new result (None: the solve
   runs less often than the supervision cycle) follows the current plan and is not a failure;
2. the written value: target clamped to [lo, hi], then moved from the reference value by at most
   ``max_rate_per_s × dt``, then clamped again (bounds win over the rate when a read-back value lies
   outside the bounds). The reference is the last written value when this tag was written last cycle;
   on entering auto (from off or shadow, bumpless transfer) it is the measured current value if given;
   with dt = 0 in the first cycle, the first write equals the current value. Overrides are ramped too,
   so "manual value wins" means the target, and returning from an override is bumpless for free.

NaN and ±inf never pass: a non-finite proposal is a failed proposal. After ``failures_to_degrade``
consecutive failed results (or results refused for bad inputs) the supervisor is *degraded*: it raises an alarm and
signals ``reset_warm_start`` once, so the MPC drops its (possibly poisoned) warm start.

The supervisor is plain deterministic logic: the clock is the ``now`` argument, there is no I/O, and
every decision comes back as a :class:`Decision` with a reason per setpoint (also logged).
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from controllers.input_health import InputHealth
from controllers.types import ControlResult, SetpointLimits

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    OFF = "off"  # compute nothing, write nothing
    SHADOW = "shadow"  # compute and log as if in auto, write nothing
    AUTO = "auto"  # write


class Source(enum.StrEnum):
    """Where a setpoint's target came from."""

    NONE = "none"  # mode off: nothing computed
    OVERRIDE = "override"
    MPC = "mpc"
    PLAN = "plan"  # the current plan shifted to now, between solves (normal operation)
    LAST_PLAN = "last_plan"  # the last good plan after a failed solve (first fallback)
    SAFE = "safe"


class FallbackLevel(enum.IntEnum):
    """How far down the fallback chain this cycle went (overridden tags aside)."""

    NONE = 0  # the proposal is used
    LAST_PLAN = 1
    SAFE = 2


class AlarmCode(enum.StrEnum):
    INPUT_BAD = "input_bad"
    SOLVE_FAILED = "solve_failed"
    NON_FINITE_PROPOSAL = "non_finite_proposal"
    INCOMPLETE_PROPOSAL = "incomplete_proposal"
    SAFE_FALLBACK = "safe_fallback"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class Alarm:
    code: AlarmCode
    message: str


class CommandError(ValueError):
    """An operator command that cannot be accepted (unknown tag, value outside bounds, no reason)."""


@dataclass(frozen=True)
class Override:
    """Operator's manual value for one setpoint [unit of the tag]."""

    tag: str
    value: float
    user: str
    reason: str
    since: float


@dataclass(frozen=True)
class Command:
    """An operator command as recorded: mode change, override set or released."""

    time: float
    kind: str  # "mode", "override", "release"
    user: str
    reason: str
    detail: str


@dataclass(frozen=True)
class SetpointDecision:
    """What happened to one setpoint this cycle.

    value: the output [unit]; written in auto, only logged in shadow, None in off.
    target: the requested value before clamp and rate limit (may be NaN if that is what was asked).
    reference: the value the rate limit was measured from, None when there was none.
    reference_dt: time allowed for the move from the reference [s] (at most one control period).
    """

    tag: str
    value: float | None
    source: Source
    target: float
    reference: float | None
    reference_dt: float
    clamped: bool
    rate_limited: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """The outcome of one cycle. ``written`` is what the runtime must write (empty unless mode is auto)."""

    now: float
    mode: Mode
    written: Mapping[str, float]
    setpoints: Mapping[str, SetpointDecision]
    fallback: FallbackLevel
    degraded: bool
    reset_warm_start: bool
    consecutive_failures: int
    alarms: tuple[Alarm, ...]
    reason: str

    def values(self) -> dict[str, float]:
        """Computed values (also in shadow), for logging and comparison with the plant."""
        return {tag: d.value for tag, d in self.setpoints.items() if d.value is not None}


@dataclass(frozen=True)
class SupervisorConfig:
    """limits: one entry per supervised setpoint.
    control_period_s: nominal cycle [s]; the rate limit never allows more than one period's move
        per cycle, even after a pause (a late or first cycle cannot jump).
    failures_to_degrade: consecutive cycles without a usable proposal before the degraded state.
    max_plan_age_s: how long after it was accepted the last good plan may still be followed [s];
        None: as long as the plan's own horizon lasts.
    """

    limits: Sequence[SetpointLimits]
    control_period_s: float
    failures_to_degrade: int = 3
    max_plan_age_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", tuple(self.limits))
        tags = [lim.tag for lim in self.limits]
        if len(set(tags)) != len(tags):
            raise ValueError("duplicate setpoint tag in supervisor limits")
        if not (math.isfinite(self.control_period_s) and self.control_period_s > 0):
            raise ValueError(f"control_period_s must be finite and > 0, got {self.control_period_s}")
        if self.failures_to_degrade < 1:
            raise ValueError("failures_to_degrade must be >= 1")


@dataclass
class _Ref:
    value: float
    time: float


@dataclass
class _State:
    mode: Mode = Mode.OFF
    prev_mode: Mode | None = None  # mode of the previous decide()
    prev_time: float | None = None
    written: dict[str, _Ref] = field(default_factory=dict)  # last value actually written (auto)
    shadow: dict[str, _Ref] = field(default_factory=dict)  # last value computed in shadow
    last_good: ControlResult | None = None
    last_good_time: float = -math.inf
    failures: int = 0
    degraded: bool = False


class Supervisor:
    """Stateful wrapper around the per-cycle decision; commands change mode and overrides."""

    def __init__(self, config: SupervisorConfig, mode: Mode = Mode.OFF) -> None:
        self._config = config
        self._limits = {lim.tag: lim for lim in config.limits}
        self._state = _State(mode=mode)
        self._overrides: dict[str, Override] = {}
        self.commands: deque[Command] = deque(maxlen=1000)
        self._last_logged: tuple[Mode, FallbackLevel] | None = None

    # -- commands -------------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._state.mode

    @property
    def overrides(self) -> Mapping[str, Override]:
        return MappingProxyType(self._overrides)

    @property
    def degraded(self) -> bool:
        return self._state.degraded

    def set_mode(self, now: float, mode: Mode, user: str, reason: str) -> Command:
        mode = Mode(mode)
        cmd = self._record(now, "mode", user, reason, f"{self._state.mode.value} -> {mode.value}")
        self._state.mode = mode
        return cmd

    def set_override(self, now: float, tag: str, value: float, user: str, reason: str) -> Command:
        lim = self._limits.get(tag)
        if lim is None:
            raise CommandError(f"override: unknown setpoint tag {tag!r}")
        value = float(value)
        if not math.isfinite(value) or not lim.lo <= value <= lim.hi:
            raise CommandError(f"override {tag}: value {value} outside [{lim.lo}, {lim.hi}]")
        cmd = self._record(now, "override", user, reason, f"{tag} = {value:.6g}")
        self._overrides[tag] = Override(tag, value, user, reason, now)
        return cmd

    def release_override(self, now: float, tag: str, user: str, reason: str) -> Command:
        if tag not in self._overrides:
            raise CommandError(f"release: no override on {tag!r}")
        cmd = self._record(now, "release", user, reason, tag)
        del self._overrides[tag]
        return cmd

    def _record(self, now: float, kind: str, user: str, reason: str, detail: str) -> Command:
        if not user.strip() or not reason.strip():
            raise CommandError(f"{kind} command needs a user and a reason")
        cmd = Command(float(now), kind, user, reason, detail)
        self.commands.append(cmd)
        log.warning("operator command %s by %s (%s): %s", kind, user, reason, detail)
        return cmd

    # -- the decision ---------------------------------------------------------------------------------

    def decide(
        self,
        now: float,
        proposal: ControlResult | None,
        inputs: InputHealth | bool,
        measured: Mapping[str, float] | None = None,
    ) -> Decision:
        """Decide this cycle's setpoints.

        now: current time [s, clock axis]; must be finite.
        proposal: the controller's new result, or None when no new result arrived this cycle (between
            solves: the current plan is followed, shifted to ``now``). A missed deadline must come as a
            TIMEOUT result (``DeadlineRunner`` returns one), so that it counts as a failure.
        inputs: health of the inputs the proposal was computed from (a bool is accepted).
        measured: read-back current values of the setpoints [unit], used for bumpless transfer.
        """
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"decide: now must be finite, got {now}")
        st, cfg = self._state, self._config
        health = inputs if isinstance(inputs, InputHealth) else InputHealth(ok=bool(inputs))
        mode = st.mode
        alarms: list[Alarm] = []

        failure = self._judge(proposal, health, alarms)
        reset_warm_start = False
        if mode is not Mode.OFF:
            if failure is None:
                assert proposal is not None
                if st.degraded:
                    log.warning("supervisor recovered after %d failed cycles", st.failures)
                st.failures, st.degraded = 0, False
                st.last_good, st.last_good_time = proposal, now
            elif proposal is not None:  # None: no new result this cycle, not a failure
                st.failures += 1
                if st.failures >= cfg.failures_to_degrade and not st.degraded:
                    st.degraded, reset_warm_start = True, True
                    log.error("supervisor degraded after %d consecutive failures: %s", st.failures, failure)
            if st.degraded:  # raised every cycle while it lasts, so it does not flicker between solves
                alarms.append(Alarm(AlarmCode.DEGRADED, f"{st.failures} consecutive failures: {failure}"))

        # Between solves (no new result, none failed since the last good one) following the plan is
        # normal operation; after a failure it is the first fallback.
        following = proposal is None and st.failures == 0 and health.ok
        plan_ok = (
            failure is not None
            and health.ok
            and st.last_good is not None
            and (cfg.max_plan_age_s is None or now - st.last_good_time <= cfg.max_plan_age_s)
        )
        continuous = st.prev_mode is mode and st.prev_time is not None
        dt = 0.0 if st.prev_time is None else min(max(now - st.prev_time, 0.0), cfg.control_period_s)
        refs = st.written if mode is Mode.AUTO else st.shadow

        decisions: dict[str, SetpointDecision] = {}
        fallback = FallbackLevel.NONE
        for tag, lim in self._limits.items():
            if mode is Mode.OFF:
                decisions[tag] = SetpointDecision(
                    tag, None, Source.NONE, math.nan, None, 0.0, False, False, "mode off"
                )
                continue
            source, target, why = self._target(tag, lim, now, proposal, failure, plan_ok, following)
            if source is Source.LAST_PLAN:
                fallback = max(fallback, FallbackLevel.LAST_PLAN)
            elif source is Source.SAFE:
                fallback = FallbackLevel.SAFE
            ref, ref_dt, ref_why = self._reference(tag, now, dt, continuous, refs, measured)
            decisions[tag] = _limit(lim, source, target, ref, ref_dt, f"{why}; {ref_why}")

        if fallback is FallbackLevel.SAFE:
            alarms.append(Alarm(AlarmCode.SAFE_FALLBACK, f"safe setpoints in use: {failure}"))
        for tag, d in decisions.items():
            if d.value is not None:
                refs[tag] = _Ref(d.value, now)
        written = (
            {t: d.value for t, d in decisions.items() if d.value is not None} if mode is Mode.AUTO else {}
        )
        st.prev_mode, st.prev_time = mode, now

        if mode is Mode.OFF:
            reason = "mode off"
        elif following and fallback is FallbackLevel.NONE:
            reason = "following the current plan between solves"
        else:
            reason = failure or "proposal accepted"
        decision = Decision(
            now=now,
            mode=mode,
            written=MappingProxyType(written),
            setpoints=MappingProxyType(decisions),
            fallback=fallback,
            degraded=st.degraded,
            reset_warm_start=reset_warm_start,
            consecutive_failures=st.failures,
            alarms=tuple(alarms),
            reason=reason,
        )
        self._log(decision)
        return decision

    def _judge(self, proposal: ControlResult | None, health: InputHealth, alarms: list[Alarm]) -> str | None:
        """Why the proposal cannot be used, or None when it can."""
        if not health.ok:
            why = health.summary()
            alarms.append(Alarm(AlarmCode.INPUT_BAD, why))
            return why
        if proposal is None:
            return "no new result"
        if not proposal.status.usable:
            first_line = proposal.message.splitlines()[0] if proposal.message else ""
            why = f"solve {proposal.status.value}: {first_line}"
            alarms.append(Alarm(AlarmCode.SOLVE_FAILED, why))
            return why
        if not proposal.usable:
            alarms.append(Alarm(AlarmCode.NON_FINITE_PROPOSAL, "proposal has NaN or infinite values"))
            return "proposal has non-finite values"
        missing = sorted(set(self._limits) - set(proposal.setpoints))
        if missing:
            why = f"proposal lacks {', '.join(missing)}"
            alarms.append(Alarm(AlarmCode.INCOMPLETE_PROPOSAL, why))
            return why
        return None

    def _target(
        self,
        tag: str,
        lim: SetpointLimits,
        now: float,
        proposal: ControlResult | None,
        failure: str | None,
        plan_ok: bool,
        following: bool,
    ) -> tuple[Source, float, str]:
        ov = self._overrides.get(tag)
        if ov is not None:
            return Source.OVERRIDE, ov.value, f"override by {ov.user} ({ov.reason})"
        if failure is None and proposal is not None:
            return Source.MPC, proposal.setpoints[tag], f"proposal ({proposal.status.value})"
        if plan_ok and self._state.last_good is not None:
            v = self._state.last_good.plan_value(tag, now)
            if v is not None and math.isfinite(v):
                age = now - self._state.last_good_time
                if following:
                    return Source.PLAN, v, f"current plan ({age:.3g} s old), between solves"
                return Source.LAST_PLAN, v, f"last good plan ({age:.3g} s old) because {failure}"
        return Source.SAFE, lim.safe_value, f"safe value because {failure}"

    def _reference(
        self,
        tag: str,
        now: float,
        dt: float,
        continuous: bool,
        refs: dict[str, _Ref],
        measured: Mapping[str, float] | None,
    ) -> tuple[float | None, float, str]:
        """Value the rate limit starts from, the time allowed for the move [s], and why."""
        prev = refs.get(tag)
        if continuous and prev is not None:
            return prev.value, dt, "from last output"
        m = None if measured is None else measured.get(tag)
        if m is not None and math.isfinite(m):
            # Bumpless transfer: start from where the plant is; dt counts from the previous cycle.
            return float(m), dt, "from measured value (transfer)"
        last = self._state.written.get(tag)
        if last is not None:
            step_dt = min(max(now - last.time, 0.0), self._config.control_period_s)
            return last.value, step_dt, "from last written value"
        return None, 0.0, "no reference (first output)"

    def _log(self, d: Decision) -> None:
        if d.mode is Mode.OFF:
            log.debug("t=%.3f mode off", d.now)
            return
        # Every decision is logged with its reason; a change of fallback level is a warning once, the
        # cycles that merely continue it are info (a 5-s cycle must not flood the journal).
        changed = (d.mode, d.fallback) != self._last_logged
        self._last_logged = (d.mode, d.fallback)
        level = logging.WARNING if changed and d.fallback is not FallbackLevel.NONE else logging.INFO
        log.log(level, "t=%.3f mode %s fallback %s: %s", d.now, d.mode.value, d.fallback.name, d.reason)
        for s in d.setpoints.values():
            log.debug(
                "t=%.3f %s = %s (target %s, %s%s%s)",
                d.now,
                s.tag,
                s.value,
                s.target,
                s.reason,
                ", clamped" if s.clamped else "",
                ", rate limited" if s.rate_limited else "",
            )


def _limit(
    lim: SetpointLimits, source: Source, target: float, ref: float | None, dt: float, why: str
) -> SetpointDecision:
    """Clamp ``target`` to the bounds and move from ``ref`` by at most max_rate × dt."""
    desired = lim.clamp(target) if math.isfinite(target) else (lim.safe_value if ref is None else ref)
    clamped = desired != target
    if ref is None:
        value = desired
        rate_limited = False
    else:
        step = lim.max_rate_per_s * dt
        value = min(max(desired, ref - step), ref + step)
        rate_limited = value != desired
        value = lim.clamp(value)
    return SetpointDecision(lim.tag, value, source, target, ref, dt, clamped, rate_limited, why)
