"""Train or backtest the built-in demand forecaster and compare it with persistence and last week.

``symtwin forecast train CONFIG --history FILE [--model-out MODEL.json]``: fits on the first part of the
history (``--train-fraction``), prints MAPE / RMSE per horizon on the rest next to both baselines, then
refits on the whole history and writes the model file.
``symtwin forecast backtest CONFIG --history FILE [--model MODEL.json]``: the same scores, for the
model given or one fitted on the training part; also with a noisy temperature forecast.

From CONFIG only three things are read (see :func:`forecast_settings`): the site timezone, the site
start (t = 0 of relative times in the history file) and holiday dates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from symtwin.commands._common import add_config_argument, load_or_exit


@dataclass(frozen=True)
class ForecastSettings:
    """What the forecast commands take from a site config.

    timezone: IANA name for calendar features (``site.timezone``).
    start_s: epoch time [s] of t = 0 (``site.start``), for history files with relative times.
    holidays: local dates treated as days off (``site.holidays`` once the schema has it; until then
        only ``--holiday`` on the command line).
    load_column: the history column holding the demand: the CSV value column of the ``--demand``
        profile, if given.
    """

    timezone: str
    start_s: float | None
    holidays: frozenset[dt.date]
    load_column: str | None


def forecast_settings(config_path: str, demand_profile: str | None = None) -> ForecastSettings:
    """Read the forecast settings from a site config (validated by ``symtwin.config.load_site``)."""
    site = load_or_exit(config_path)
    cfg = site.config
    start_s = None
    if cfg.site.start:
        start_s = dt.datetime.fromisoformat(cfg.site.start.replace("Z", "+00:00")).timestamp()
    holidays = frozenset(dt.date.fromisoformat(str(d)) for d in getattr(cfg.site, "holidays", None) or ())
    load_column = None
    if demand_profile is not None:
        prof = next((p for p in cfg.profiles if p.id == demand_profile), None)
        if prof is None or prof.csv is None:
            ids = ", ".join(p.id for p in cfg.profiles if p.csv is not None)
            raise SystemExit(f"{config_path}: no CSV profile {demand_profile!r} (CSV profiles: {ids})")
        load_column = prof.csv.value_column
    return ForecastSettings(cfg.site.timezone, start_s, holidays, load_column)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="fit, score on the held-out part, refit on all and write the model")
    backtest = sub.add_parser("backtest", help="score a model (given or fitted) on the held-out part")
    for p in (train, backtest):
        add_config_argument(p)
        p.add_argument(
            "--history",
            required=True,
            type=Path,
            help="CSV with time, load and outdoor temperature, or the service's history store (.sqlite)",
        )
        p.add_argument("--load-tag", help="with a .sqlite history: the tag of the load [W]")
        p.add_argument("--temperature-tag", help="with a .sqlite history: the tag of the outdoor temperature [K]")
        p.add_argument("--demand", help="profile id whose CSV column is the demand (default: --load-column)")
        p.add_argument(
            "--load-column", default="qload", help="history column of the load [W] (default qload)"
        )
        p.add_argument("--load-scale", type=float, default=1.0, help="factor from the load column to W")
        p.add_argument(
            "--temperature-column", default="Toa", help="history column of the outdoor temperature [degC]"
        )
        p.add_argument("--time-column", default="Time", help="history time column (default Time)")
        p.add_argument(
            "--start", help="ISO date-time of t = 0 for relative times (default: site.start, else 2024-01-01)"
        )
        p.add_argument(
            "--holiday", action="append", default=[], help="a holiday date YYYY-MM-DD (repeatable)"
        )
        p.add_argument(
            "--train-fraction",
            type=float,
            default=0.75,
            help="share of the history to train on (default 0.75)",
        )
        p.add_argument(
            "--max-steps", type=int, default=24, help="longest horizon trained [steps] (default 24)"
        )
        p.add_argument(
            "--noise",
            type=float,
            default=1.5,
            help="temperature forecast error at 24 h [K] for the noisy variant",
        )
        p.add_argument("--seed", type=int, default=1, help="seed of the noisy temperature forecast")
        p.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    train.add_argument("--model-out", type=Path, help="write the model refitted on the whole history here")
    backtest.add_argument("--model", type=Path, help="a model file from `forecast train` (default: fit one)")


def run(args: argparse.Namespace) -> int:
    from symtwin.forecasting.evaluate import backtest, format_table, noisy_variant
    from symtwin.forecasting.model import (
        Calendar,
        Forecaster,
        ForecasterParams,
        ForecastModelError,
        History,
    )
    from symtwin.forecasting.sources import ForecastDecodeError, read_history_csv, read_history_store

    settings = forecast_settings(args.config, args.demand)
    # relative history times need a t = 0; without one from the config, a synthetic Monday (the
    # history's weekday column then moves it; holiday dates are meaningless in that case)
    start_s = settings.start_s or dt.datetime(2024, 1, 1, tzinfo=ZoneInfo(settings.timezone)).timestamp()
    if args.start:
        start_s = dt.datetime.fromisoformat(args.start.replace("Z", "+00:00")).timestamp()
    holidays = settings.holidays | {dt.date.fromisoformat(d) for d in args.holiday}
    calendar = Calendar(settings.timezone, frozenset(holidays))
    try:
        if args.history.suffix in (".sqlite", ".db"):
            if not (args.load_tag and args.temperature_tag):
                print("a .sqlite history needs --load-tag and --temperature-tag", file=sys.stderr)
                return 2
            history = read_history_store(args.history, args.load_tag, args.temperature_tag)
        else:
            history = read_history_csv(
                args.history,
                settings.load_column or args.load_column,
                args.temperature_column,
                time_column=args.time_column,
                start_s=start_s,
                load_scale=args.load_scale,
                timezone=settings.timezone,
            )
    except (OSError, ForecastDecodeError) as exc:
        print(f"cannot read the history: {exc}", file=sys.stderr)
        return 2
    if not 0.1 <= args.train_fraction < 1.0:
        print("--train-fraction must be in [0.1, 1)", file=sys.stderr)
        return 2
    split = int(len(history.times_s) * args.train_fraction)
    train = History(history.times_s[:split], history.load_w[:split], history.t_out_k[:split])
    try:
        if args.action == "backtest" and args.model:
            forecaster = Forecaster.from_json(args.model.read_text(encoding="utf-8"))
        else:
            params = ForecasterParams(max_steps=args.max_steps)
            forecaster = Forecaster(params, calendar).fit(train)
    except (OSError, ForecastModelError, ValueError) as exc:
        print(f"cannot build the model: {exc}", file=sys.stderr)
        return 2
    horizons = [h for h in (1, 6, 24) if h <= len(forecaster.steps)]
    step = forecaster.step_s
    hours = (len(history.times_s) - split) * step / 3600.0
    result: dict[str, object] = {"train_rows": split, "test_rows": len(history.times_s) - split}
    variants = {
        "measured temperature as a perfect forecast": None,
        f"noisy temperature forecast (error {args.noise:g} K at 24 h, growing with lead time)": noisy_variant(
            history, args.noise, max(horizons), args.seed
        ),
    }
    for title, weather in variants.items():
        rows = backtest(forecaster, history, split, horizons, weather)
        print(
            format_table(rows, step, f"Backtest on the last {hours:.0f} h of {args.history.name}, {title}:")
        )
        print()
        result[title] = [
            {
                "horizon_h": r.horizon_steps * step / 3600.0,
                "n": r.n,
                "mape_model": r.model.mape_pct,
                "mape_persistence": r.persistence.mape_pct,
                "mape_last_week": r.last_week.mape_pct,
                "rmse_model": r.model.rmse,
                "rmse_persistence": r.persistence.rmse,
                "rmse_last_week": r.last_week.rmse,
            }
            for r in rows
        ]
    if args.action == "train" and args.model_out:
        full = Forecaster(ForecasterParams(max_steps=args.max_steps), calendar).fit(history)
        args.model_out.write_text(full.to_json(), encoding="utf-8")
        print(f"model fitted on all {len(history.times_s)} rows written to {args.model_out}")
    elif args.action == "train":
        print("no model file written (give --model-out FILE to keep the model fitted on all rows)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0
