"""Simulate the park's twin over a period and write every named state, input and output to CSV or Parquet.

Boundary inputs (demands, surplus availability) follow the profiles referenced in the config; setpoints come
from a simple feed-forward dispatch of those profiles (``--dispatch none``: the twin's defaults), and
``--set unit.quantity=value`` holds any input constant. Column headers carry the SI unit,
e.g. ``town.supply_temperature [K]``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path
from typing import Any

from symtwin.commands._common import add_config_argument, load_or_exit

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--duration", default="24h", help="simulated time, e.g. 24h, 90 min, 3600 (s); default 24h"
    )
    parser.add_argument("--dt-out", default="60s", help="output interval, e.g. 60s, 5 min; default 60s")
    parser.add_argument(
        "--start", default="0s", help="time into the profiles to start at, e.g. 40d; default 0"
    )
    parser.add_argument("--out", required=True, help="output file: .csv or .parquet")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="INPUT=VALUE",
        help="hold an input constant (SI units), e.g. --set chp.load_setpoint=0.7; repeatable",
    )
    parser.add_argument(
        "--dispatch",
        choices=("feedforward", "none"),
        default="feedforward",
        help="setpoints: feed-forward from the demand profiles (default) or the twin's defaults",
    )
    parser.add_argument(
        "--settle",
        default="0s",
        help="first run this long with the start inputs held, for a consistent initial state",
    )
    parser.add_argument(
        "--max-step",
        default="300s",
        help="largest integrator step; default 300s (steps adapt to the accuracy below it)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class _Progress:
    """A percentage bar on stderr, redrawn at most four times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.start = time.monotonic()

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.25 and fraction < 1.0):
            return
        self.last = now
        width = 40
        filled = round(width * fraction)
        sys.stderr.write(
            f"\rsimulating [{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}% "
            f"{now - self.start:6.1f} s"
        )
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _write(path: Path, header: list[str], rows: Any) -> None:
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise SystemExit(
                "writing .parquet needs pyarrow (pip install pyarrow); or use a .csv file"
            ) from None
        table = pa.table({name: rows[:, j] for j, name in enumerate(header)})
        pq.write_table(table, path)
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow([repr(float(v)) for v in row])


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from symtwin.units import UnitError, parse_duration
    from twin.park import Park, ParkBuildError

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        print(f"--out {args.out}: the file must end in .csv or .parquet", file=sys.stderr)
        return 2
    try:
        duration = parse_duration(args.duration)
        dt_out = parse_duration(args.dt_out)
        start = parse_duration(args.start)
        settle = parse_duration(args.settle)
        h_max = parse_duration(args.max_step)
    except (UnitError, ValueError) as exc:
        print(f"bad duration: {exc}", file=sys.stderr)
        return 2
    if duration <= 0 or dt_out <= 0 or dt_out > duration:
        print("--duration and --dt-out must be positive, and --dt-out at most --duration", file=sys.stderr)
        return 2
    site = load_or_exit(args.config)
    t0 = time.monotonic()
    try:
        park = Park.from_config(site)
    except ParkBuildError as exc:
        print(f"{args.config}: cannot assemble the twin: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, float] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in park.input_names:
            print(
                f"--set {item!r}: expected INPUT=VALUE with INPUT one of: {', '.join(park.input_names)}",
                file=sys.stderr,
            )
            return 2
        try:
            overrides[name] = float(value)
        except ValueError:
            print(f"--set {item!r}: {value!r} is not a number (SI units)", file=sys.stderr)
            return 2
    inputs: dict[str, Any] = {}
    if args.dispatch == "feedforward":
        from twin._dispatch import feedforward_setpoints

        inputs.update(feedforward_setpoints(park, start, start + duration + 300.0))
    inputs.update(overrides)
    sched = park.input_schedule(inputs)
    x0 = park.settle(sched(start), settle) if settle > 0 else None
    log.info(
        "twin of %s: %d states, %d inputs, %d outputs, built in %.1f s",
        park.spec.name,
        park.n_states,
        park.n_inputs,
        park.n_outputs,
        time.monotonic() - t0,
    )
    progress = _Progress(not args.no_progress)
    t1 = time.monotonic()
    res = park.simulate(
        start + duration, sched, dt_out=dt_out, x0=x0, t0=start, h_max=h_max, progress=progress
    )
    wall = time.monotonic() - t1
    header = ["time [s]"]
    header += [f"{s.name} [{s.unit}]" for s in park.state_signals]
    header += [f"{s.name} [{s.unit}]" for s in park.input_signals]
    header += [f"{s.name} [{s.unit}]" for s in park.output_signals]
    rows = np.column_stack([res.t, res.x, res.u, res.y])
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, header, rows)
    print(
        f"simulated {duration:g} s of {park.spec.name!r} ({park.n_states} states) in {wall:.2f} s "
        f"({duration / max(wall, 1e-9):,.0f}x real time); energy balance error {res.energy_error:.1e}, "
        f"steam mass balance error {res.mass_error:.1e}; wrote {len(res.t)} rows x {len(header)} columns to {out}",
        file=sys.stderr,
    )
    return 0
