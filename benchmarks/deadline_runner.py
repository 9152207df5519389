"""Deadline runner: 1,000 hard control cycles, each within its period; restart cost; per-step overhead.

Hard cases (drawn with a fixed seed): hung solver (busy loop forever), late solver (sleeps twice the
deadline), near-deadline solver (0.9 x deadline), exception, NaN result, crashed worker (os._exit),
and normal steps doing a few ms of work. Each cycle is solve (deadline 0.8 x period) + supervisor
decision; the figure is the longest cycle against the period.

Figures: cycles, period_s, max_cycle_s, p99_cycle_s, cycles_over_period, timeouts, restarts,
worker-not-ready cycles; restart cost (worker start until the controller is built) for forkserver and
spawn; per-step round-trip overhead of the runner against calling ``step`` in-process (the baseline,
same controller, same process run), reported as a ratio and in microseconds.

Run: .venv/bin/python benchmarks/deadline_runner.py [--cycles N] [--period S]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._common import write_result  # noqa: E402
from controllers.deadline import DeadlineRunner  # noqa: E402
from controllers.supervisor import Mode, Supervisor, SupervisorConfig  # noqa: E402
from controllers.types import ControlRequest, ControlResult, FloatArray, SetpointLimits, SolveStatus  # noqa: E402

CASES = {"hung": 0.25, "late": 0.10, "near": 0.10, "raise": 0.08, "nan": 0.08, "crash": 0.04, "ok": 0.35}
TAGS = ("a", "b")


class HardCase:
    """A controller that misbehaves as the request says (``state["case"]`` indexes CASES)."""

    def step(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float
    ) -> ControlResult:
        case = list(CASES)[int(state["case"])]
        deadline = state["deadline"]
        if case == "hung":
            while True:
                pass
        if case == "late":
            time.sleep(2.0 * deadline)
        elif case == "near":
            time.sleep(0.9 * deadline)
        elif case == "raise":
            raise RuntimeError("forced")
        elif case == "nan":
            return ControlResult(SolveStatus.OPTIMAL, setpoints=dict.fromkeys(TAGS, math.nan))
        elif case == "crash":
            os._exit(7)
        else:
            t_end = time.perf_counter() + 0.003
            while time.perf_counter() < t_end:  # a few ms of solver work
                pass
        return ControlResult(
            SolveStatus.OPTIMAL,
            setpoints={t: 0.5 for t in TAGS},
            plan={t: np.full(4, 0.5) for t in TAGS},
            plan_times=now + np.arange(4.0),
        )


def hard_cycles(cycles: int, period: float, seed: int = 7) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    names, weights = list(CASES), np.array(list(CASES.values()))
    draws = rng.choice(len(names), size=cycles, p=weights / weights.sum())
    deadline = 0.8 * period
    limits = [SetpointLimits(t, 0.0, 1.0, 0.01, 0.3) for t in TAGS]
    sup = Supervisor(SupervisorConfig(limits, control_period_s=period), mode=Mode.AUTO)
    durations, solve_times, over, not_ready = [], [], [], 0
    # workers import this script as __main__ (forkserver preload) to find HardCase
    with DeadlineRunner(HardCase, preload=["__main__", "numpy"]) as runner:
        t_next = time.monotonic()
        for k, case in enumerate(draws):
            t0 = time.monotonic()
            req = ControlRequest({"case": float(case), "deadline": deadline}, {}, float(k) * period)
            res = runner.solve(req, deadline)
            t_solve = time.monotonic() - t0
            sup.decide(float(k) * period, res, True, {t: 0.3 for t in TAGS})
            durations.append(time.monotonic() - t0)
            solve_times.append(t_solve)
            if durations[-1] > period:
                over.append(
                    f"{names[case]}: cycle {durations[-1]:.3f} s, solve {t_solve:.3f} s, {res.status.value}"
                )
            not_ready += "no controller worker ready" in res.message
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        stats = runner.stats
    d = np.array(durations)
    return {
        "cycles": cycles,
        "period_s": period,
        "deadline_s": deadline,
        "max_cycle_s": float(d.max()),
        "p99_cycle_s": float(np.quantile(d, 0.99)),
        "median_cycle_s": float(np.median(d)),
        "cycles_over_period": int((d > period).sum()),
        "max_solve_call_s": float(max(solve_times)),
        "over_period_detail": over,
        "case_counts": {n: int((draws == i).sum()) for i, n in enumerate(names)},
        "timeouts": stats.timeouts,
        "errors": stats.errors,
        "restarts": stats.restarts,
        "worker_not_ready_cycles": not_ready,
        "forkserver_worker_start_median_s": statistics.median(runner.worker_start_times),
        "forkserver_worker_start_max_s": stats.max_restart_s,
    }


def spawn_restart_cost(n: int = 5) -> dict[str, float]:
    starts = []
    for _ in range(n):
        runner = DeadlineRunner(HardCase, start_method="spawn", spare=False)
        runner.start()
        starts.append(runner.stats.last_restart_s)
        runner.close()
    return {"spawn_worker_start_median_s": statistics.median(starts), "spawn_worker_start_max_s": max(starts)}


def overhead(n: int = 500) -> dict[str, float]:
    ok = float(list(CASES).index("ok"))
    req = ControlRequest({"case": ok, "deadline": 1.0}, {}, 0.0)
    direct = HardCase()
    t0 = time.perf_counter()
    for _ in range(n):
        direct.step(req.state, req.forecasts, req.now)
    inline = (time.perf_counter() - t0) / n
    with DeadlineRunner(HardCase, preload=["__main__"]) as runner:
        t0 = time.perf_counter()
        for _ in range(n):
            runner.solve(req, 1.0)
        remote = (time.perf_counter() - t0) / n
    return {
        "step_inline_s": inline,
        "step_via_runner_s": remote,
        "runner_overhead_us": (remote - inline) * 1e6,
        "runner_over_inline_ratio": remote / inline,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--period", type=float, default=0.1)
    args = ap.parse_args()
    figures: dict[str, object] = {"note": "shared 2-core machine under load from other jobs"}
    figures.update(hard_cycles(args.cycles, args.period))
    figures.update(spawn_restart_cost())
    figures.update(overhead())
    write_result("deadline_runner", figures)  # type: ignore[arg-type]
    return 0 if figures["cycles_over_period"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
