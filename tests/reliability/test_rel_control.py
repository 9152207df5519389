"""Items 5, 6 and 7: the control path under input and solver faults.

The service (``symtwin.runtime.service.Service``, reference demo site, ``ManualClock``) runs real toy
controllers in a ``DeadlineRunner`` worker process (``tests.support.reliability.ToyController``).

5. A frozen sensor (zero variance over ``freeze_window`` = 3 samples) and a silent one (age over its
   ``max_age``) are flagged within 3 cycles; the setpoints ramp to their safe values within their rate
   limits; an alarm is raised.
6. Infeasible, non-converging (busy loop until killed) and NaN solves: a failed iterate is never written;
   after 3 consecutive failures the controller is degraded and its warm start reset (seen inside the
   worker: the next good step reports ``warm_steps=1``).
7. Deadline: 1,000 hard cases (hang, late, raise, NaN, crash, ok) through ``DeadlineRunner.solve`` +
   ``Supervisor.decide``; no control cycle exceeds its period. CI: period 0.3 s (deadline 0.24 s) with 10 %
   hang/late cases; slow: period 1 s with 35 % hang/late cases.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adapters.base import Sample
from controllers.deadline import DeadlineRunner
from controllers.supervisor import Decision, Mode, Supervisor, SupervisorConfig
from controllers.types import ControlRequest, SetpointLimits
from symtwin.config import LoadedSite, load_site
from symtwin.runtime.clock import ManualClock
from symtwin.runtime.service import Service, ServiceParams
from tests.support.reliability import (
    FAILED_ITERATE,
    HARD_CASES,
    REPO,
    HardCaseController,
    RunnerPort,
    ToyController,
    record,
)

T0 = 1_700_000_000.0


def proposal(site: LoadedSite) -> dict[str, float]:
    """The toy's setpoints: 20 % into each tag's range, away from the safe values [SI]."""
    out = {}
    for t in site.tags.values():
        if t.direction.value == "setpoint" and t.bounds_si is not None:
            lo, hi = t.bounds_si
            out[t.id] = lo + 0.2 * (hi - lo)
    return out


class RecordingWriter:
    """The setpoint writer at the service's edge: keeps every write (a real writer would send them)."""

    def __init__(self) -> None:
        self.writes: list[dict[str, float]] = []

    async def write_setpoints(self, values: dict[str, float]) -> dict[str, bool]:
        self.writes.append(dict(values))
        return dict.fromkeys(values, True)


@pytest.fixture(scope="module")
def site() -> LoadedSite:
    return load_site(REPO / "configs" / "demo.yaml")


@pytest.fixture(scope="module")
def runner(site: LoadedSite) -> Iterator[DeadlineRunner]:
    r = DeadlineRunner(functools.partial(ToyController, proposal(site)))
    r.start()
    yield r
    r.close()


class Rig:
    """Service + clock + feed: one call to :meth:`step` is one supervision cycle."""

    def __init__(self, site: LoadedSite, port: RunnerPort, params: ServiceParams) -> None:
        self.site, self.port = site, port
        self.clock = ManualClock(T0)
        self.writer = RecordingWriter()
        self.service = Service(
            site, clock=self.clock, params=params, controller=port, writer=self.writer, mode=Mode.AUTO
        )
        self.rng = random.Random(1)
        self.proposal = proposal(site)
        self.frozen: dict[str, float] = {}  # tag → value it is stuck at (timestamp keeps advancing)
        self.silent: set[str] = set()  # tags that stopped reporting

    def feed(self) -> None:
        now = self.clock.now()
        samples = []
        for t in self.site.tags.values():
            if t.id in self.silent:
                continue
            if t.direction.value == "setpoint":
                last = self.writer.writes[-1].get(t.id) if self.writer.writes else None
                samples.append(Sample(t.id, now, self.proposal[t.id] if last is None else last))
            else:
                v = self.frozen.get(t.id, 1.0 + self.rng.random())
                samples.append(Sample(t.id, now, v))
        self.service.write(samples)

    async def step(self) -> Decision:
        self.feed()
        d = await self.service.cycle()
        # Let this cycle's solve finish (wall time) so the next cycle judges its result.
        task = self.service._solve.task
        if task is not None:
            await asyncio.wait({task}, timeout=10.0)
        self.clock.advance(self.service.params.cycle_s)
        return d


def _rates_ok(site: LoadedSite, writes: list[dict[str, float]], cycle_s: float) -> tuple[bool, float]:
    """Every consecutive pair of written values within the tag's rate limit; worst use of the limit."""
    worst = 0.0
    for tag, spec in site.tags.items():
        if spec.rate_limit_si_per_s is None:
            continue
        values = [w[tag] for w in writes if tag in w]
        for a, b in itertools.pairwise(values):
            worst = max(worst, abs(b - a) / (spec.rate_limit_si_per_s * cycle_s))
    return worst <= 1.0 + 1e-9, worst


async def test_frozen_and_silent_sensor_flagged_ramped_to_safe_alarmed(
    site: LoadedSite, runner: DeadlineRunner
) -> None:
    started = time.monotonic()
    params = ServiceParams(cycle_s=5.0, control_period_s=60.0, horizon_steps=4, step_s=900.0, freeze_window=3)
    rig = Rig(site, RunnerPort(runner), params)
    setpoints = {t.id: t for t in site.tags.values() if t.direction.value == "setpoint"}
    measured = [t for t in site.tags.values() if t.direction.value == "measurement"]
    for _ in range(24):
        d = await rig.step()
    assert not d.fallback, "healthy warm-up should follow the controller"
    assert rig.writer.writes[-1] == pytest.approx(rig.proposal)

    figure: dict[str, object] = {"cycle_s": params.cycle_s, "freeze_window": params.freeze_window}
    results = {}
    for fault, tag in (("frozen", measured[0].id), ("stale", measured[1].id)):
        rig.frozen.clear()
        rig.silent.clear()
        for _ in range(30):  # back to healthy and to the controller's values
            await rig.step()
        n_writes = len(rig.writer.writes)
        if fault == "frozen":
            rig.frozen[tag] = 1.2345
            fault_at = rig.clock.now()  # first frozen sample: flagged once freeze_window samples agree
        else:
            rig.silent.add(tag)
            fault_at = rig.clock.now() - params.cycle_s + site.tags[tag].max_age_s  # age passes max_age
        flagged_after = None
        alarm = False
        for k in range(200):
            d = await rig.step()
            snap = rig.service.snapshot()
            if flagged_after is None and snap.tags[tag].status.value in ("frozen", "stale"):
                # frozen: cycles since the first frozen sample; stale: since the first cycle at which the
                # sample's age exceeds max_age (that cycle counts as 1)
                flagged_after = (
                    k + 1 if fault == "frozen" else math.ceil((snap.time - fault_at) / params.cycle_s)
                )
            alarm = alarm or any(a.key.startswith(f"{fault}:{tag}") for a in snap.alarms)
        writes = rig.writer.writes[n_writes:]
        final = {t: writes[-1][t] for t in setpoints}
        at_safe = all(final[t] == pytest.approx(s.safe_value_si) for t, s in setpoints.items())
        rates_ok, worst = _rates_ok(site, rig.writer.writes[n_writes - 1 :], params.cycle_s)
        results[fault] = (flagged_after, alarm, at_safe, rates_ok, d.fallback.name.lower())
        figure[fault] = {
            "tag": tag,
            "flagged_within_cycles": flagged_after,
            "alarm_raised": alarm,
            "fallback": d.fallback.name.lower(),
            "setpoints_reached_safe": at_safe,
            "rate_limits_kept": rates_ok,
            "worst_step_over_rate_limit": round(worst, 4),
        }
    ok = all(f is not None and f <= 3 and a and s and r for f, a, s, r, _ in results.values())
    record(
        5,
        "frozen / stale sensor: flagged, ramped to safe, alarmed",
        figure,
        ok,
        "ci",
        time.monotonic() - started,
    )
    for flagged_after, alarm, at_safe, rates_ok, _ in results.values():
        assert flagged_after is not None and flagged_after <= 3
        assert alarm and at_safe and rates_ok


async def test_failed_solves_never_written_degraded_after_three_warm_start_reset(
    site: LoadedSite, runner: DeadlineRunner
) -> None:
    started = time.monotonic()
    # A solve every cycle; the deadline is 0.3 s of wall time (the manual clock does not move during it).
    params = ServiceParams(
        cycle_s=1.0, control_period_s=1.0, deadline_fraction=0.3, horizon_steps=4, step_s=900.0
    )
    port = RunnerPort(runner)
    rig = Rig(site, port, params)
    figure: dict[str, object] = {"deadline_s": params.deadline_fraction * params.control_period_s}
    checks = []
    for behaviour in ("infeasible", "nonconverging", "nan"):
        port.extra_state = {"behaviour": float(ToyController.BEHAVIOURS.index("ok"))}
        for _ in range(5):
            d = await rig.step()
        assert not d.degraded and not d.fallback
        resets_before = port.resets
        port.extra_state = {"behaviour": float(ToyController.BEHAVIOURS.index(behaviour))}
        n_writes = len(rig.writer.writes)
        degraded_at = None
        for _ in range(6):
            d = await rig.step()
            if d.degraded and degraded_at is None:
                degraded_at = d.consecutive_failures
        written = [v for w in rig.writer.writes[n_writes:] for t, v in w.items() if t != "symtwin.heartbeat"]
        iterate_written = sum(1 for v in written if not math.isfinite(v) or v == FAILED_ITERATE)
        reset = port.resets - resets_before
        # Back to good solves: the first reports the worker's warm-start counter after the reset.
        port.extra_state = {"behaviour": float(ToyController.BEHAVIOURS.index("ok"))}
        await rig.step()
        last = rig.service._solve.last  # the first good result after the failures
        warm_after = (
            int(last.message.split("warm_steps=")[1]) if last is not None and last.status.usable else -1
        )
        await rig.step()
        recovered = not (await rig.step()).degraded
        status = rig.service.counters.solves
        figure[behaviour] = {
            "failed_values_written": iterate_written,
            "degraded_after_failures": degraded_at,
            "warm_start_resets": reset,
            # steps since the worker's last warm-start reset, at the first good step: ≤ 6 failed steps + 1
            # means the reset happened during the fault (without it the count runs through the whole test)
            "warm_steps_at_first_good_step": warm_after,
            "recovered": recovered,
        }
        checks.append(
            iterate_written == 0 and degraded_at == 3 and reset == 1 and 1 <= warm_after <= 7 and recovered
        )
    figure["solve_outcomes"] = dict(status)
    figure["runner"] = {
        "timeouts": runner.stats.timeouts,
        "errors": runner.stats.errors,
        "restarts": runner.stats.restarts,
    }
    ok = all(checks)
    record(6, "infeasible / non-converging / NaN solves", figure, ok, "ci", time.monotonic() - started)
    assert ok, figure


def _hard_cases(n: int, weights: dict[str, float], seed: int) -> list[int]:
    rng = random.Random(seed)
    names = list(weights)
    return [HARD_CASES.index(c) for c in rng.choices(names, [weights[c] for c in names], k=n)]


@pytest.mark.parametrize(
    ("period_s", "weights"),
    [
        # CI: 0.3 s leaves the 20 % margin (60 ms) above what a shared 2-core runner adds to a kill + takeover.
        (0.3, {"hang": 0.05, "late": 0.05, "raise": 0.2, "nan": 0.2, "crash": 0.1, "ok": 0.4}),
        pytest.param(
            1.0,
            {"hang": 0.25, "late": 0.10, "raise": 0.1, "nan": 0.1, "crash": 0.05, "ok": 0.4},
            marks=pytest.mark.slow,
            id="full-1s",
        ),
    ],
)
def test_thousand_hard_cycles_within_period(
    period_s: float, weights: dict[str, float], tmp_path: Path
) -> None:
    variant = "full" if period_s >= 1.0 else "ci"
    started = time.monotonic()
    tags = ("a", "b")
    deadline = 0.8 * period_s
    sup = Supervisor(
        SupervisorConfig([SetpointLimits(t, 0.0, 10.0, 1.0, 5.0) for t in tags], period_s), mode=Mode.AUTO
    )
    cycles: list[float] = []
    over: list[str] = []
    with DeadlineRunner(functools.partial(HardCaseController, tags)) as runner:
        for i, case in enumerate(_hard_cases(1000, weights, seed=12)):
            now = T0 + i * period_s
            t0 = time.perf_counter()
            req = ControlRequest({"case": float(case), "deadline": deadline}, {"p": np.zeros(4)}, now)
            result = runner.solve(req, deadline)
            d = sup.decide(now, result, True, {t: 5.0 for t in tags})
            elapsed = time.perf_counter() - t0
            cycles.append(elapsed)
            assert all(math.isfinite(v) and 0.0 <= v <= 10.0 for v in d.written.values())
            if elapsed > period_s:
                over.append(f"{HARD_CASES[case]}: {elapsed:.3f} s ({result.status.value})")
            # the rest of the period: the loop would sleep here; a short pause keeps the test quick
            time.sleep(0.002)
        stats = runner.stats
    counts = {c: 0 for c in HARD_CASES}
    for c in _hard_cases(1000, weights, seed=12):
        counts[HARD_CASES[c]] += 1
    cycles.sort()
    figure = {
        "cycles": len(cycles),
        "period_s": period_s,
        "deadline_s": deadline,
        "max_cycle_s": round(cycles[-1], 4),
        "p99_cycle_s": round(cycles[int(0.99 * len(cycles)) - 1], 4),
        "median_cycle_s": round(cycles[len(cycles) // 2], 4),
        "cycles_over_period": len(over),
        "over_period_detail": over[:10],
        "cases": counts,
        "timeouts": stats.timeouts,
        "errors": stats.errors,
        "restarts": stats.restarts,
    }
    ok = not over
    record(
        7, "deadline: 1,000 hard cycles within the period", figure, ok, variant, time.monotonic() - started
    )
    assert not over, over
