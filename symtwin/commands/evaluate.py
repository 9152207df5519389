"""Run a controller in closed loop on the twin and report cost, CO2, unmet demand, violations and surplus share.

  symtwin evaluate CONFIG --controller mpc|baseline|both --days 7 [--start 200d] [--storage both|on|off]
                   [--out FILE.json]

The controller runs every control period on the twin (``controllers.evaluate``: perfect forecasts from
the profiles, setpoints ramped at the tags' rate limits, a failed solve follows the last good plan, then
the safe values). Each run starts from the same state: the twin settled for 6 h at the tags' safe values.
"Without storage" forces the tank's charge setpoint to zero (and tells the controller the tank is out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from symtwin.commands._common import add_config_argument, load_or_exit

WARMUP_S = 6 * 3600.0  # [s] baseline operation before every run, so all runs start from one state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--controller", choices=("mpc", "baseline", "both"), default="both")
    parser.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    parser.add_argument(
        "--start",
        default="200d",
        help="time into the profiles to start at (default 200d: mid-February in the reference year, town "
        "load ~30 MW; 150d is the campus's Christmas week, where surplus heat alone covers the town)",
    )
    parser.add_argument(
        "--storage", choices=("both", "on", "off"), default="both", help="runs with/without storage"
    )
    parser.add_argument(
        "--horizon-steps", type=int, default=None, help="override the controller horizon (steps)"
    )
    parser.add_argument("--out", default=None, help="KPIs as JSON (default: evaluate-<site>.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--trace", default=None, help="also write each run's 15-min trace as CSV (FILE prefix)"
    )


def _no_storage_spec(spec: Any) -> Any:
    from twin.spec import ParkSpec

    tanks = {u.name for u in spec.units if u.model == "storage_tank"}
    return ParkSpec(
        spec.name,
        tuple(u for u in spec.units if u.name not in tanks),
        tuple(c for c in spec.connections if c.source not in tanks and c.target not in tanks),
        spec.profiles,
    )


def run_one(
    site: Any,
    controller: str,
    *,
    days: float,
    start_s: float,
    storage: bool,
    horizon_steps: int | None = None,
    quiet: bool = True,
    trace_path: str | None = None,
) -> dict[str, Any]:
    """One closed-loop run; returns the KPI dict (plus the run's settings)."""
    import numpy as np

    from controllers import evaluate as ev
    from symtwin.runtime.wiring import ProfileForecasts
    from symtwin.units import parse_duration
    from twin.park import Park

    c = site.config.controller
    step_s = parse_duration(c.step)
    period_s = parse_duration(c.period)
    n = horizon_steps or max(1, round(parse_duration(c.horizon) / step_s))
    park = Park.from_config(site)
    setpoints = ev.setpoints_from_site(site)
    forced = {}
    if not storage:
        forced = {s.key: 0.0 for s in setpoints if s.key.endswith(".charge_setpoint")}
        for u in park.input_names:
            if u.endswith(".charge_setpoint"):
                forced[u] = 0.0
    if controller == "mpc":
        from controllers.mpc import MpcController, Variant, problem_from_site

        spec = problem_from_site(site, horizon_steps=n)
        if not storage:
            spec = dataclasses.replace(
                spec,
                storage=tuple(
                    dataclasses.replace(st, setpoint=dataclasses.replace(st.setpoint, lo=0.0, hi=0.0))
                    for st in spec.storage
                ),
            )
        ctl: Any = MpcController(spec, Variant.FAST, int(c.max_consecutive_failures))
    else:
        from controllers import baseline

        keys = {t.key: t.id for t in site.tags.values() if str(t.direction.value) == "setpoint"}
        pspec = site.park_spec() if storage else _no_storage_spec(site.park_spec())
        ctl = baseline.from_park_spec(pspec, keys, step_s)
    pf = ProfileForecasts(site, 0.0)

    def forecasts(now: float, times: Any) -> dict[str, Any]:
        return {k: np.asarray(v, dtype=float) for k, v in pf(now, list(times)).items()}

    # same start for every run: settled at the safe setpoints, then 6 h of the baseline (with storage)
    from controllers import baseline as bl

    u_start = np.asarray(
        park.input_schedule({s.key: s.safe for s in setpoints})(start_s - WARMUP_S), dtype=float
    )
    x_settled = park.settle(u_start, 6 * 3600.0)
    warm = bl.from_site(site, step_s=step_s)
    warm_trace, _ = ev.closed_loop(
        park,
        warm.step,
        forecasts,
        setpoints,
        t_start=start_s - WARMUP_S,
        duration_s=WARMUP_S,
        period_s=period_s,
        horizon_steps=n,
        x0=x_settled,
    )
    assert warm_trace.x_end is not None
    x0 = warm_trace.x_end

    def progress(i: int, total: int) -> None:
        if not quiet and (i % 96 == 0 or i == total):
            print(f"  {controller} storage={'on' if storage else 'off'}: {i}/{total}", file=sys.stderr)

    trace, results = ev.closed_loop(
        park,
        ctl.step,
        forecasts,
        setpoints,
        t_start=start_s,
        duration_s=days * 86400.0,
        period_s=period_s,
        horizon_steps=n,
        x0=x0,
        forced=forced,
        current0=warm_trace.current_end,
        progress=progress,
    )
    k = ev.kpis(trace, ev.kpi_spec_from_site(site), forecasts, results)
    if trace_path:
        t = trace.times()
        names = sorted(trace.cols)
        rows = np.column_stack([t] + [trace.column(nm) for nm in names])[::15]
        header = ",".join(["t_s", *names])
        np.savetxt(trace_path, rows, delimiter=",", header=header, comments="", fmt="%.6g")
    out = k.as_dict()
    out.update(controller=controller, storage=storage, days=days, start_s=start_s, horizon_steps=n)
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("controller", "{}"),
        ("storage", "{}"),
        ("cost_eur", "{:,.0f}"),
        ("cost_with_unmet_eur", "{:,.0f}"),
        ("co2_t", "{:,.1f}"),
        ("unmet_mwh", "{:,.2f}"),
        ("band_violation_kh", "{:,.2f}"),
        ("surplus_share", "{:.3f}"),
        ("solve_s_median", "{:.3f}"),
    ]
    head = " ".join(f"{name:>18}" for name, _ in cols)
    lines = [head]
    for r in rows:
        lines.append(" ".join(f"{fmt.format(r[name]):>18}" for name, fmt in cols))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from symtwin.units import parse_duration

    site = load_or_exit(args.config)
    kinds = ["mpc", "baseline"] if args.controller == "both" else [args.controller]
    stores = [True, False] if args.storage == "both" else [args.storage == "on"]
    rows = []
    for kind in kinds:
        for storage in stores:
            rows.append(
                run_one(
                    site,
                    kind,
                    days=args.days,
                    start_s=parse_duration(args.start),
                    storage=storage,
                    horizon_steps=args.horizon_steps,
                    quiet=args.quiet,
                    trace_path=f"{args.trace}-{kind}-{'storage' if storage else 'nostorage'}.csv"
                    if args.trace
                    else None,
                )
            )
    print(_table(rows))
    by = {(r["controller"], r["storage"]): r for r in rows}
    for storage in stores:
        m, b = by.get(("mpc", storage)), by.get(("baseline", storage))
        if m and b:
            saving = b["cost_eur"] - m["cost_eur"]
            pct = saving / abs(b["cost_eur"]) * 100 if abs(b["cost_eur"]) > 1.0 else float("nan")
            print(
                f"storage={'on' if storage else 'off'}: MPC operating cost {m['cost_eur']:,.0f} vs baseline "
                f"{b['cost_eur']:,.0f} EUR (saves {saving:,.0f} EUR, {pct:.1f} %); with unmet demand at the "
                f"penalty {m['cost_with_unmet_eur']:,.0f} vs {b['cost_with_unmet_eur']:,.0f} EUR; unmet "
                f"{m['unmet_mwh']:.2f} vs {b['unmet_mwh']:.2f} MWh"
            )
    out = Path(args.out or f"evaluate-{site.name}.json")
    out.write_text(json.dumps({"config": str(args.config), "runs": rows}, indent=2))
    print(f"wrote {out}")
    return 0
