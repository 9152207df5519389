"""Run a commissioning scenario against the virtual plant, faster than real time, and write a pass/fail report.

  symtwin commission CONFIG --scenario configs/scenarios/kalundborg_chp_trip.yaml [--out DIR]

The service (supervisor, input health, controller) runs on a manual clock coupled in process to the
virtual plant (the site's park with plant-model mismatch, noise, actuator lags and the scenario's
faults). The report folder holds index.html (plots as PNG), verdicts.json and events.jsonl.

On the manual clock a controller's solve takes no plant time: the run waits for it (the MPC still has its
wall-clock deadline; its worker process takes a few tens of seconds to start).

Exit codes: 0 every criterion passed, 1 a criterion failed, 2 the site config or the scenario is invalid.
CONFIG is the site config; when the scenario names another one, CONFIG wins (a note says so).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EXIT_FAILED = 1
EXIT_INVALID = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n", 1)[1].strip()
    parser.add_argument("config", metavar="CONFIG", help="site config (YAML), e.g. configs/kalundborg.yaml")
    parser.add_argument(
        "--scenario", required=True, type=Path, help="scenario file (YAML), see configs/scenarios/"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: reports/<scenario name>)"
    )
    parser.add_argument(
        "--controller",
        choices=("none", "baseline", "mpc"),
        default=None,
        help="run with this controller instead of the scenario's",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import time

    from sim.report import write_report
    from sim.scenario import ScenarioError, evaluate, load_scenario, run_scenario
    from symtwin.config import ConfigError

    # The event log records every fallback and alarm; the per-cycle warnings would drown the progress lines.
    for name in ("controllers.supervisor", "symtwin.runtime.service"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        scenario = load_scenario(args.scenario, config=Path(args.config))
    except (ScenarioError, ConfigError) as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    if scenario.note:
        print(scenario.note, file=sys.stderr)
    if args.controller is not None:
        scenario = dataclasses.replace(scenario, controller=args.controller)
    out = args.out or Path("reports") / args.scenario.stem
    started = time.perf_counter()
    shown = [0.0]

    def progress(fraction: float, wall_s: float) -> None:
        # Short runs stay silent; a run that takes more than a second reports every 5 %.
        if args.quiet or wall_s < 1.0 or (fraction < 1.0 and wall_s - shown[0] < 0.5):
            return
        shown[0] = wall_s
        sim_h = fraction * (scenario.warmup_s + scenario.duration_s) / 3600.0  # warm-up included
        eta = wall_s / fraction * (1.0 - fraction) if fraction > 0 else 0.0
        print(
            f"commission {scenario.name}: {fraction:4.0%}  {sim_h:6.2f} h simulated  {wall_s:6.1f} s wall"
            f"  ~{eta:4.0f} s left",
            file=sys.stderr,
            flush=True,
        )

    try:
        record = asyncio.run(run_scenario(scenario, progress))
    except ScenarioError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    verdicts = evaluate(record)
    index = write_report(record, verdicts, out)
    passed = all(v.passed for v in verdicts)
    for v in verdicts:
        mark = "PASS" if v.passed else "FAIL"
        value = "" if v.value is None else f" {v.value:.4g}"
        limit = "" if v.limit is None else f" (limit {v.limit:.4g})"
        print(f"  {mark}  {v.criterion}:{value}{limit}", file=sys.stderr)
    print(
        f"{'PASS' if passed else 'FAIL'}: {scenario.name} — {scenario.duration_s / 3600:g} h in "
        f"{record.wall_s:.1f} s wall ({time.perf_counter() - started:.1f} s with report); report: {index}"
    )
    return 0 if passed else EXIT_FAILED
