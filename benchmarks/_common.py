"""Shared by the benchmark scripts: where results go and how they are written; a park set up for closed-loop
MPC benchmarks."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Print the figures and write them with machine facts to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    print(f"-> {path}")
    return path


@dataclass
class ParkLoop:
    """A site set up for closed-loop MPC benchmarks: its park twin as the plant, the controller's problem,
    the setpoints, the profile forecasts on the plan grid and the start time [s into the profiles]."""

    site: Any
    spec: Any
    park: Any
    setpoints: Any
    start: float
    forecasts: Callable[[float, np.ndarray], dict[str, np.ndarray]]

    def warm_up(self) -> Any:
        """The park settled on safe setpoints, then two hours under the baseline up to ``start``: the state
        and setpoints a benchmark's closed loop begins from (``.x_end``, ``.current_end``)."""
        from controllers import baseline
        from controllers import evaluate as ev

        safe = {s.key: s.safe for s in self.setpoints}
        u = np.asarray(self.park.input_schedule(safe)(self.start - 7200.0), dtype=float)
        warm, _ = ev.closed_loop(
            self.park,
            baseline.from_site(self.site).step,
            self.forecasts,
            self.setpoints,
            t_start=self.start - 7200.0,
            duration_s=7200.0,
            x0=self.park.settle(u, 6 * 3600.0),
            horizon_steps=self.spec.n_horizon,
        )
        return warm

    def run(self, step: Any, hours: float, warm: Any) -> Any:
        """``hours`` of closed loop under the controller ``step`` from ``start``, continuing ``warm``
        (:meth:`warm_up`): (trace, results) as ``controllers.evaluate.closed_loop`` returns them."""
        from controllers import evaluate as ev

        return ev.closed_loop(
            self.park,
            step,
            self.forecasts,
            self.setpoints,
            t_start=self.start,
            duration_s=hours * 3600.0,
            horizon_steps=self.spec.n_horizon,
            x0=warm.x_end,
            current0=warm.current_end,
        )


def park_loop(config: str, start: str) -> ParkLoop:
    """:class:`ParkLoop` for the site ``config`` from ``start`` (a duration, e.g. ``150d``)."""
    from controllers import evaluate as ev
    from controllers.mpc import problem_from_site
    from symtwin.config import load_site
    from symtwin.runtime.wiring import ProfileForecasts
    from symtwin.units import parse_duration
    from twin.park import Park

    site = load_site(config)
    pf = ProfileForecasts(site, 0.0)

    def forecasts(now: float, times: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float) for k, v in pf(now, list(times)).items()}

    return ParkLoop(
        site,
        problem_from_site(site),
        Park.from_config(site),
        ev.setpoints_from_site(site),
        parse_duration(start),
        forecasts,
    )
