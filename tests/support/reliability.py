"""Shared helpers of the reliability suite (tests/reliability, issue 12).

- :func:`record`: every reliability test prints its figure and appends it, as one JSON line, to
  ``test-artifacts/reliability.jsonl`` (``SYMTWIN_RELIABILITY_LOG`` overrides the path);
  ``benchmarks/reliability.py`` merges those lines into ``benchmarks/results/reliability.json``.
- Toy controllers for :class:`controllers.deadline.DeadlineRunner` workers (module level, so the
  forkserver can pickle them): infeasible, non-converging (loops until killed), NaN, raising, late.
- :class:`RunnerPort`: the service's ``ControllerPort`` over a ``DeadlineRunner``.
- ``python -m tests.support.reliability sigterm-child ...``: the process of the SIGTERM test (item 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from controllers.types import ControlRequest, ControlResult, FloatArray, ResultError, SolveStatus

REPO = Path(__file__).resolve().parents[2]


def log_path() -> Path:
    return Path(os.environ.get("SYMTWIN_RELIABILITY_LOG", REPO / "test-artifacts" / "reliability.jsonl"))


def record(
    item: int,
    name: str,
    figure: Mapping[str, Any],
    passed: bool,
    variant: str,
    duration_s: float | None = None,
    test: str | None = None,
) -> dict[str, Any]:
    """Print one figure and append it to the reliability log; returns the entry.

    Call it before the test's asserts, with ``passed`` computed from the same conditions, so a failing
    test still leaves its figure.
    """
    entry: dict[str, Any] = {
        "item": item,
        "name": name,
        "figure": dict(figure),
        "pass": bool(passed),
        "variant": variant,
        "duration_s": None if duration_s is None else round(duration_s, 3),
        "test": test or os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(
        f"\n[reliability item {item} {variant}] {name}: {json.dumps(entry['figure'], default=str)} "
        f"-> {'PASS' if passed else 'FAIL'}"
    )
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    return entry


# ------------------------------------------------------------------------ toy controllers (worker side)

FAILED_ITERATE = 77.7  # a value the infeasible toy puts in its failed iterate: it must never be written


class ToyController:
    """Misbehaves as told; counts steps since its warm start was last reset (reported in ``message``).

    setpoints: what "ok" proposes, per setpoint tag [SI].
    behaviour: "ok", "infeasible" (INFEASIBLE with a failed iterate
    of FAILED_ITERATE), "nonconverging" (busy loop until the runner kills the worker), "nan" (OPTIMAL
    with NaN setpoints), "raise". A request's ``state["behaviour"]`` (index in BEHAVIOURS) overrides it.
    """

    BEHAVIOURS = ("ok", "infeasible", "nonconverging", "nan", "raise")

    def __init__(self, setpoints: Mapping[str, float], behaviour: str = "ok") -> None:
        self.setpoints, self.behaviour = dict(setpoints), behaviour
        self.tags = tuple(self.setpoints)
        self.warm_steps = 0

    def reset_warm_start(self) -> None:
        self.warm_steps = 0

    def step(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float
    ) -> ControlResult:
        self.warm_steps += 1
        b = self.BEHAVIOURS[int(state["behaviour"])] if "behaviour" in state else self.behaviour
        msg = f"warm_steps={self.warm_steps}"
        if b == "infeasible":
            # A solver wrapper that tried to hand back its failed iterate is refused by the result type
            # (ResultError); what remains is a bare failure.
            try:
                return ControlResult(
                    SolveStatus.INFEASIBLE,
                    setpoints=dict.fromkeys(self.tags, FAILED_ITERATE),
                    message=f"forced infeasible; {msg}",
                )
            except ResultError:
                return ControlResult.failure(
                    SolveStatus.INFEASIBLE, f"forced infeasible (iterate refused); {msg}"
                )
        if b == "nonconverging":
            while True:  # IPOPT stuck in its linear solver: only a kill ends it
                pass
        if b == "nan":
            return ControlResult(
                SolveStatus.OPTIMAL, setpoints=dict.fromkeys(self.tags, math.nan), message=msg
            )
        if b == "raise":
            raise RuntimeError(f"forced error; {msg}")
        # A constant plan over 8 steps of 15 min: between solves the supervisor follows it.
        times = now + 900.0 * np.arange(8)
        plan = {t: np.full(8, v) for t, v in self.setpoints.items()}
        return ControlResult(
            SolveStatus.OPTIMAL, setpoints=self.setpoints, plan=plan, plan_times=times, message=msg
        )


HARD_CASES = ("hang", "late", "raise", "nan", "crash", "ok")


class HardCaseController:
    """Item 7: the case is ``state["case"]`` (index in HARD_CASES); ``state["deadline"]`` [s]."""

    def __init__(self, tags: tuple[str, ...]) -> None:
        self.tags = tags

    def step(
        self, state: Mapping[str, float], forecasts: Mapping[str, FloatArray], now: float
    ) -> ControlResult:
        case = HARD_CASES[int(state["case"])]
        if case == "hang":
            while True:
                pass
        if case == "late":
            time.sleep(2.0 * state["deadline"])
        elif case == "raise":
            raise RuntimeError("forced")
        elif case == "nan":
            return ControlResult(SolveStatus.OPTIMAL, setpoints=dict.fromkeys(self.tags, math.nan))
        elif case == "crash":
            os._exit(3)
        return ControlResult(SolveStatus.OPTIMAL, setpoints=dict.fromkeys(self.tags, 1.0))


class RunnerPort:
    """The service's ``ControllerPort`` over a :class:`controllers.deadline.DeadlineRunner`.

    extra_state: values merged into every request's state (e.g. the toy's behaviour index), settable
    between cycles.
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.extra_state: dict[str, float] = {}
        self.resets = 0

    async def solve(self, request: Any, deadline_s: float) -> ControlResult:
        state = {**dict(request.state), **self.extra_state}
        forecasts = {k: np.asarray(v, dtype=float) for k, v in request.forecasts.items()}
        result: ControlResult = await self.runner.solve_async(
            ControlRequest(state, forecasts, request.now), deadline_s
        )
        return result

    def reset_warm_start(self) -> None:
        self.resets += 1
        self.runner.reset_warm_start()


# ------------------------------------------------------------------------ item 3: the SIGTERM child


async def _sigterm_child(args: argparse.Namespace) -> int:
    """Write sequence-numbered samples to the historian outbox and the local history until SIGTERM, then
    shut down as ``symtwin.runtime.app.serve`` does (stop, close the historian from a thread, close the
    history) and print how many samples were written. Flush intervals are long, so at SIGTERM a partial
    batch sits in memory in both sinks."""
    from adapters.base import Sample
    from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
    from adapters.store import DeadLetterStore
    from adapters.store.history import HistoryParams, LocalHistory

    state = Path(args.state)
    dead = DeadLetterStore(state / "dead.sqlite")
    hist = InfluxHistorian(
        InfluxParams(args.url, "park", "park"),
        OutboxParams(state / "outbox.sqlite", flush_interval_s=60.0, chunk_lines=100_000),
        dead,
        sender=SenderParams(batch_lines=100_000, backoff_max_s=1.0),
        measurement="sigterm",
    )
    local = LocalHistory(HistoryParams(state / "history.sqlite", flush_interval_s=60.0), dead_letters=dead)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    t0 = time.time() - 600.0
    n = 0
    print("ready", flush=True)
    while not stop.is_set():
        batch = [Sample("seq", t0 + (n + i) * 1e-3, float(n + i)) for i in range(10)]
        hist.write(batch)
        local.write(batch)
        n += len(batch)
        await asyncio.sleep(0.005)
    buffered = hist.metrics().buffered
    await asyncio.to_thread(hist.close, args.drain_s)
    local.close()
    dead.close()
    print(json.dumps({"written": n, "buffered_at_sigterm": buffered, "t0": t0}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.support.reliability")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sigterm-child")
    s.add_argument("--state", required=True)
    s.add_argument("--url", required=True)
    s.add_argument("--drain-s", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.cmd == "sigterm-child":
        return asyncio.run(_sigterm_child(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
