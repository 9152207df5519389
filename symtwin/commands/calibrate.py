"""Fit twin parameters (heat-exchanger UA, loss coefficients) to recorded history; fouling report.

``symtwin calibrate CONFIG --history FILE`` simulates the park over the history with the recorded setpoints
and compares it with the measurement tags (weighted by each tag's ``noise``); it prints the residuals per
tag and the fitted values with 95 % confidence intervals, and with ``--overlay-out`` writes them as a
config overlay (``units: {id: {param: "value unit"}}``). ``--fouling-report FILE.csv`` runs the online
estimator over the same history and writes each heat exchanger's estimated UA relative to its clean value.

History: CSV in long format ``time,tag,value`` (ISO 8601 or epoch seconds, a tag id, SI value; see
``twin.calibrate``), or a local history store (``.sqlite`` / ``.db``, ``adapters.store.history``).
``--make-example-history FILE`` writes a CSV from a "plant" that is the twin with UA -20 % and loss
coefficients +30 %, with each tag's noise and 2 % of samples missing.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symtwin.commands._common import add_config_argument, load_or_exit

if TYPE_CHECKING:
    from symtwin.config import LoadedSite
    from twin.calibrate import History
    from twin.park import Park

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FIT_FAILED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--history", metavar="FILE", help="history: CSV (time,tag,value) or a .sqlite/.db store"
    )
    parser.add_argument(
        "--params",
        default=None,
        help="comma-separated park parameters to fit, e.g. surplus_hx.ua,transmission.loss_coefficient "
        "(default: every heat exchanger's ua and every tank and pipe loss_coefficient)",
    )
    parser.add_argument(
        "--overlay-out", metavar="FILE.yaml", help="write the fitted values as a config overlay"
    )
    parser.add_argument(
        "--fouling-report", metavar="FILE.csv", help="write estimated UA / clean UA over time"
    )
    parser.add_argument(
        "--grid",
        default="auto",
        help="model sampling interval for the fit, e.g. 300s; default: the sample spacing",
    )
    parser.add_argument("--settle", default="6h", help="settling run before the history starts; default 6h")
    parser.add_argument(
        "--skip",
        default="0s",
        help="leave the first part of the history out of the fit (burn-in while the start-state error decays)",
    )
    parser.add_argument(
        "--start-state",
        choices=("settle", "estimate"),
        default="settle",
        help="settle: the park settled on the first inputs (--settle); estimate: the online estimator's "
        "state at the end of --skip, reconstructed from the measurements (for a plant that was not steady)",
    )
    parser.add_argument(
        "--make-example-history", metavar="FILE", help="write a synthetic history CSV and exit"
    )
    parser.add_argument("--hours", type=float, default=24.0, help="length of the example history [h]")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the example history")


def _default_params(park: Park) -> list[str]:
    out = []
    for u in park.spec.units:
        if u.model == "heat_exchanger":
            out.append(f"{u.name}.ua")
        if u.model in ("storage_tank", "dh_pipe"):
            out.append(f"{u.name}.loss_coefficient")
    return [p for p in out if p in park.param_names]


def _epoch(site: LoadedSite) -> float:
    from symtwin.runtime.twin_tracker import site_epoch

    return site_epoch(site.config.site.start, 0.0)


def _measurement_tags(site: LoadedSite) -> dict[str, str]:
    return {t.id: t.key for t in site.tags.values() if t.direction.value == "measurement"}


def _noise(site: LoadedSite) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in site.tags.values():
        if t.direction.value == "measurement":
            out[t.key] = min(out.get(t.key, math.inf), t.noise_si)
    return out


def _make_example(site: LoadedSite, park: Park, path: Path, hours: float, seed: int) -> int:
    from twin.calibrate import synthetic_history, write_history_csv

    p_true = park.params.copy()
    for name in _default_params(park):
        i = park.param_names.index(name)
        p_true[i] *= 0.8 if name.endswith(".ua") else 1.3
    inputs: dict[str, Any] = {}
    u0 = park.u_default
    for t in site.tags.values():
        if t.direction.value != "setpoint" or t.key not in park.input_names:
            continue
        base = float(u0[park.input_names.index(t.key)])
        if t.quantity == "charge_setpoint" and t.bounds_si is not None:
            amp = 0.5 * max(abs(t.bounds_si[0]), abs(t.bounds_si[1]))
            # discharge then charge, 4 h each: moves the tank layers past its sensors
            inputs[t.key] = lambda s, a=amp: -a if (s // (4 * 3600)) % 2 == 0 else a
        else:
            inputs[t.key] = lambda s, b=base: b
    hist = synthetic_history(park, p_true, _noise(site), hours * 3600.0, 60.0, inputs, 0.02, seed)
    key_tags: dict[str, str] = {}
    for t in site.tags.values():
        key_tags.setdefault(t.key, t.id)
    n = write_history_csv(path, hist, key_tags, _epoch(site))
    truth = {name: float(p_true[park.param_names.index(name)]) for name in _default_params(park)}
    print(f"wrote {n} samples over {hours:g} h to {path}")
    for name, value in truth.items():
        print(f"  plant {name} = {value:.6g}")
    return EXIT_OK


def _load_history(site: LoadedSite, path: Path) -> History:
    from twin.calibrate import history_from_store, read_history_csv

    keys = {t.id: t.key for t in site.tags.values()}
    if path.suffix.lower() in (".sqlite", ".db", ".sqlite3"):
        from adapters.store.history import HistoryParams, LocalHistory

        store = LocalHistory(HistoryParams(path=path, retention_s=math.inf))
        try:
            return history_from_store(store, keys, _epoch(site), 0.0, 1e11)
        finally:
            store.close()
    hist: History = read_history_csv(path, keys, _epoch(site))
    return hist


def _fouling_report(site: LoadedSite, park: Park, hist: History, path: Path, step_s: float = 60.0) -> int:
    import numpy as np

    from symtwin.runtime.estimator_tracker import estimator_params_from_site
    from twin.calibrate import input_schedule_from_history
    from twin.estimate import Estimator

    sched = input_schedule_from_history(park, hist)
    settings = estimator_params_from_site(site)
    t0, t1 = hist.span()
    est = Estimator(park, settings, x0=park.settle(sched(t0)))
    grid = np.arange(t0, t1 + 1e-9, step_s)
    meas = {k: v for k, v in hist.series.items() if k in settings.noise}
    clean = {hx: float(park.params[park.param_names.index(f"{hx}.ua")]) for hx in est.fouling()}
    epoch = _epoch(site)
    rows = 0
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "exchanger", "ua_ratio", "ua_ratio_std", "ua_w_k", "clean_ua_w_k"])
        for k, t in enumerate(grid):
            now: dict[str, float] = {}
            for key, (ts, vs) in meas.items():
                j = int(np.searchsorted(ts, t, side="right")) - 1
                if j >= 0 and t - ts[j] < step_s:
                    now[key] = float(vs[j])
            if k == 0:
                est.correct(sched(float(t)), now, float(t))
            else:
                est.step(float(t), sched(float(grid[k - 1])), step_s, now)
            if k % 10 == 0 or k == grid.size - 1:
                iso = dt.datetime.fromtimestamp(float(t) + epoch, tz=dt.UTC).isoformat()
                for hx, (ratio, sd) in est.fouling().items():
                    w.writerow(
                        [iso, hx, f"{ratio:.5f}", f"{sd:.5f}", f"{ratio * clean[hx]:.6g}", f"{clean[hx]:.6g}"]
                    )
                    rows += 1
    rejected = {k: v for k, v in est.rejected_counts().items() if v}
    print(f"fouling report: {rows} rows to {path}; gate rejections per tag: {rejected or 'none'}")
    for hx, (ratio, sd) in est.fouling().items():
        print(f"  {hx}: UA at the end = {100 * ratio:.1f} % of clean (std {100 * sd:.1f} %)")
    return rows


def run(args: argparse.Namespace) -> int:
    from symtwin.units import parse_duration
    from twin.calibrate import CalibrationError, calibrate
    from twin.catalog import UNIT_MODELS
    from twin.park import Park

    site = load_or_exit(args.config)
    park = Park.from_config(site)
    if args.make_example_history:
        return _make_example(site, park, Path(args.make_example_history), args.hours, args.seed)
    if not args.history:
        print("calibrate: give --history FILE (or --make-example-history FILE)", file=sys.stderr)
        return EXIT_USAGE
    params = (
        [p.strip() for p in args.params.split(",") if p.strip()] if args.params else _default_params(park)
    )
    try:
        hist = _load_history(site, Path(args.history))
        x0 = None
        if args.start_state == "estimate":
            from twin.calibrate import estimate_start_state

            x0 = estimate_start_state(
                park, hist, _noise(site), parse_duration(args.skip), 60.0, parse_duration(args.settle)
            )
        res = calibrate(
            park,
            hist,
            params,
            _noise(site),
            dt_grid=None if args.grid == "auto" else parse_duration(args.grid),
            settle_s=parse_duration(args.settle),
            skip_s=parse_duration(args.skip),
            x0=x0,
        )
    except (CalibrationError, OSError) as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    tag_of = {t.key: t.id for t in site.tags.values() if t.direction.value == "measurement"}
    print(
        f"fit: {'converged' if res.success else 'NOT converged'} ({res.message}); {res.evaluations} simulations, "
        f"{res.n_residuals} residuals, reduced chi-square {res.reduced_chi2:.3f}"
    )
    print(f"{'tag':32} {'samples':>8} {'rms':>12} {'bias':>12} {'noise':>12}")
    for f in res.tags:
        print(f"{tag_of.get(f.key, f.key):32} {f.n:8d} {f.rms:12.4g} {f.bias:12.4g} {f.noise:12.4g}")
    units: dict[str, str] = {}
    spec_units = {u.name: u.model for u in park.spec.units}
    for name in res.names:
        unit_id, _, pname = name.partition(".")
        par = UNIT_MODELS[spec_units[unit_id]].param(pname)
        if par is not None:
            units[name] = par.unit
    print(f"{'parameter':36} {'initial':>12} {'fitted':>12} {'95 % interval':>27} unit")
    for k, (name, v0, v, (lo, hi)) in enumerate(
        zip(res.names, res.initial, res.values, res.ci95, strict=True)
    ):
        if res.identifiable and not res.identifiable[k]:
            print(
                f"{name:36} {v0:12.5g} {'-':>12} {'not identifiable from these tags':>29} {units.get(name, '')}"
            )
            continue
        flag = (
            "  AT SEARCH BOUND: suspect (start state? wrong model?)"
            if res.at_bound and res.at_bound[k]
            else ""
        )
        print(f"{name:36} {v0:12.5g} {v:12.5g} [{lo:12.5g}, {hi:12.5g}] {units.get(name, '')}{flag}")
    if args.overlay_out:
        import yaml

        Path(args.overlay_out).write_text(
            "# calibrated by `symtwin calibrate` from "
            + str(args.history)
            + "\n"
            + yaml.safe_dump(res.overlay(units), sort_keys=False),
            encoding="utf-8",
        )
        print(f"overlay written to {args.overlay_out}")
    if args.fouling_report:
        _fouling_report(site, park, hist, Path(args.fouling_report))
    return EXIT_OK if res.success else EXIT_FIT_FAILED
