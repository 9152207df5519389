"""Simulation-only mode: a virtual plant on loopback OPC UA, the service against it, and the live view.

Runs on embedded defaults (local history store, no external server). The virtual plant is the twin with
plant-model mismatch, sensor noise and actuator lags; the service talks to it over real OPC UA exactly
as it would to a plant's DCS.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from symtwin.commands._common import add_config_argument, load_or_exit
from symtwin.units import UnitError, parse_duration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--speed", type=float, default=60.0,
                        help="simulated seconds per wall-clock second (default 60: an hour a minute)")
    parser.add_argument("--duration", default=None,
                        help="stop after this much simulated time, e.g. 24h, 90min (default: run until Ctrl-C)")
    parser.add_argument("--start", default="0d",
                        help="where in the profile year to start, e.g. 160d for mid-winter (default 0d)")
    parser.add_argument("--port", type=int, default=8080, help="live view and /metrics port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="address the live view listens on")
    parser.add_argument("--controller", choices=("mpc", "baseline", "none"), default=None,
                        help="controller to run (default: the config's controller.kind)")
    parser.add_argument("--state-dir", type=Path, default=Path("var/sim"),
                        help="where history and dead letters are kept (default var/sim)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def run(args: argparse.Namespace) -> int:
    from symtwin.runtime.app import RunOptions, serve

    site = load_or_exit(args.config)
    try:
        duration = parse_duration(args.duration) if args.duration else None
        start = parse_duration(args.start)
    except UnitError as exc:
        raise SystemExit(f"symtwin sim: {exc}") from None
    if args.speed <= 0:
        raise SystemExit("symtwin sim: --speed must be positive")
    opts = RunOptions(simulate=True, host=args.host, port=args.port, speed=args.speed, duration_s=duration,
                      start_offset_s=start, state_dir=args.state_dir, controller=args.controller,
                      progress=not args.no_progress)
    return asyncio.run(serve(site, opts))
