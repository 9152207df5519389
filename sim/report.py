"""The commissioning report: a folder with an HTML page, PNG plots, JSON verdicts and the event log.

    <out>/index.html       summary, criteria table, faults, plots
    <out>/verdicts.json    machine-readable verdicts and run figures
    <out>/events.jsonl     the event log, one JSON object per line (time, kind, message, data)
    <out>/timeseries.csv   one row per cycle: fallback, setpoints written, actuator positions,
                           measured and true values (engineering units), unmet demand, violations
    <out>/*.png            setpoints.png, measurements.png, kpis.png

Plots use matplotlib's Agg back end (no display needed). Values are shown in the tags' engineering units.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim.scenario import RunRecord, Verdict


def write_report(rec: RunRecord, verdicts: Sequence[Verdict], out: Path) -> Path:
    """Write the report folder ``out`` (created if needed); return the path of ``index.html``."""
    out.mkdir(parents=True, exist_ok=True)
    passed = all(v.passed for v in verdicts)
    _write_json(rec, verdicts, passed, out / "verdicts.json")
    _write_events(rec, out / "events.jsonl")
    _write_csv(rec, out / "timeseries.csv")
    figures = _plots(rec, out)
    index = out / "index.html"
    index.write_text(_html(rec, verdicts, passed, figures), encoding="utf-8")
    return index


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _write_json(rec: RunRecord, verdicts: Sequence[Verdict], passed: bool, path: Path) -> None:
    sc = rec.scenario
    doc = {
        "scenario": sc.name,
        "file": str(sc.path),
        "config": str(sc.config_path),
        "passed": passed,
        "criteria": [
            {
                "criterion": v.criterion,
                "passed": v.passed,
                "value": _num(v.value),
                "limit": _num(v.limit),
                "detail": v.detail,
            }
            for v in verdicts
        ],
        "run": {
            "start": _iso(rec.t0),
            "duration_s": sc.duration_s,
            "cycle_s": sc.cycle_s,
            "plant_step_s": sc.plant_step_s,
            "controller": sc.controller,
            "mode": sc.mode,
            "cycles": rec.cycles,
            "wall_s": round(rec.wall_s, 3),
            "speed": round(sc.duration_s / rec.wall_s, 1) if rec.wall_s > 0 else None,
            "solves": rec.solves,
        },
        "figures": {
            "unmet_demand_mwh": rec.unmet_mwh,
            "violation_kh": rec.violation_kh,
            "pressure_violation_bar_h": rec.pressure_violation_bar_h,
            "samples_produced": rec.samples_produced,
            "samples_stored": rec.samples_stored,
            "samples_dropped": rec.samples_dropped,
            "setpoint_writes": len(rec.plant_writes),
            "cycles_in_fallback": int(sum(1 for f in rec.fallback if f > 0)),
        },
        "mismatch": rec.mismatch,
        "faults": [
            {
                "kind": f.kind.value,
                "at_s": f.start,
                "duration_s": f.duration,
                "tag": f.tag,
                "unit": f.unit,
                "series": f.series,
                "factor": f.factor,
            }
            for f in sc.faults
        ],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _write_events(rec: RunRecord, path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for e in rec.events:
            line = {"time": _iso(e.t), "t_s": round(e.t - rec.t0, 3), "kind": e.kind, "message": e.message}
            if e.data:
                line["data"] = e.data
            fh.write(json.dumps(line) + "\n")


def _write_csv(rec: RunRecord, path: Path) -> None:
    site = rec.scenario.site
    cols: list[tuple[str, Sequence[float]]] = [("fallback", rec.fallback)]
    for tag, vals in rec.written.items():
        spec = site.tags[tag]
        cols.append((f"written:{tag} [{spec.eng_unit}]", [spec.from_si(v) for v in vals]))
        cols.append((f"position:{tag} [{spec.eng_unit}]", [spec.from_si(v) for v in rec.position[tag]]))
    for tag, vals in rec.measured.items():
        spec = site.tags[tag]
        cols.append((f"measured:{tag} [{spec.eng_unit}]", [spec.from_si(v) for v in vals]))
        cols.append((f"true:{tag} [{spec.eng_unit}]", [spec.from_si(v) for v in rec.truth[tag]]))
    cols += [
        ("unmet [MW]", [v / 1e6 for v in rec.unmet_w]),
        ("violation [K]", rec.violation_k),
        ("pressure_violation [bar]", [v / 1e5 for v in rec.pressure_violation_pa]),
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "t_s", *[c[0] for c in cols]])
        for i, t in enumerate(rec.times):
            w.writerow([_iso(t), round(t - rec.t0, 3), *[f"{c[1][i]:.6g}" for c in cols]])


def _plots(rec: RunRecord, out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    site = rec.scenario.site
    h = (np.asarray(rec.times) - rec.t0) / 3600.0
    end_h = rec.scenario.duration_s / 3600.0

    def shade(ax: Any) -> None:
        for f in rec.scenario.faults:
            a = f.start / 3600.0
            b = min(end_h, (f.start + f.duration) / 3600.0) if f.duration is not None else end_h
            ax.axvspan(a, max(b, a + end_h / 400), color="tab:red", alpha=0.12, lw=0)

    figures: list[tuple[str, str]] = []

    def grid(tags: list[str], name: str, title: str, draw: Any) -> None:
        if not tags:
            return
        ncol = 3 if len(tags) > 4 else max(1, len(tags))
        nrow = math.ceil(len(tags) / ncol)
        fig, axes = plt.subplots(
            nrow, ncol, figsize=(4.2 * ncol, 2.0 * nrow + 0.6), squeeze=False, sharex=True
        )
        for ax, tag in zip(axes.flat, tags, strict=False):
            spec = site.tags[tag]
            draw(ax, tag, spec)
            shade(ax)
            ax.set_title(f"{tag} [{spec.eng_unit}]", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(tags) :]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("time [h]", fontsize=7)
        fig.suptitle(title, fontsize=10)
        # Fixed margins: tight_layout measures every tick label and costs more than the drawing.
        fig.subplots_adjust(
            left=0.06,
            right=0.98,
            top=1 - 0.45 / fig.get_figheight(),
            bottom=0.45 / fig.get_figheight(),
            hspace=0.45,
            wspace=0.2,
        )
        fig.savefig(out / name, dpi=72)
        plt.close(fig)
        figures.append((name, title))

    def draw_sp(ax: Any, tag: str, spec: Any) -> None:
        w = np.array([spec.from_si(v) for v in rec.written[tag]])
        p = np.array([spec.from_si(v) for v in rec.position[tag]])
        ax.step(h, w, where="post", lw=1.0, label="service")
        ax.plot(h, p, lw=0.8, ls="--", label="actuator")
        if spec.bounds_si:
            for b in spec.bounds_si:
                ax.axhline(spec.from_si(b), color="grey", lw=0.6, ls=":")
        ax.legend(fontsize=6, loc="best")

    def draw_meas(ax: Any, tag: str, spec: Any) -> None:
        ax.plot(h, [spec.from_si(v) for v in rec.measured[tag]], lw=0.6, label="measured")
        ax.plot(h, [spec.from_si(v) for v in rec.truth[tag]], lw=0.8, label="true")
        ax.legend(fontsize=6, loc="best")

    grid(
        list(rec.written),
        "setpoints.png",
        "Setpoints written and actuator positions (faults shaded)",
        draw_sp,
    )
    grid(
        list(rec.measured), "measurements.png", "Measurements: as received by the service and true", draw_meas
    )

    fig, axes = plt.subplots(4, 1, figsize=(10, 7.5), sharex=True)
    series = [
        (np.asarray(rec.unmet_w) / 1e6, "unmet demand [MW]"),
        (np.asarray(rec.violation_k), "T outside band [K]"),
        (np.asarray(rec.pressure_violation_pa) / 1e5, "p outside band [bar]"),
        (np.asarray(rec.fallback, dtype=float), "fallback level"),
    ]
    for ax, (y, label) in zip(axes, series, strict=True):
        _light(ax)
        if label.startswith("fallback"):
            ax.step(h, y, where="post", lw=1.0)
            ax.set_ylim(-0.2, 2.2)
            ax.set_yticks([0, 1, 2], ["none", "last plan", "safe"])
        else:
            ax.plot(h, y, lw=1.0)
        shade(ax)
        ax.set_ylabel(label, fontsize=7)
    axes[-1].set_xlabel("time [h]", fontsize=8)
    fig.suptitle("Demand met, constraints and fallback (faults shaded)", fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.94, bottom=0.07, hspace=0.25)
    fig.savefig(out / "kpis.png", dpi=72)
    plt.close(fig)
    figures.insert(0, ("kpis.png", "Demand met, constraints and fallback"))
    return figures


def _light(ax: Any) -> None:
    """Few ticks, small labels: most of a plot's cost is tick layout."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _html(rec: RunRecord, verdicts: Sequence[Verdict], passed: bool, figures: list[tuple[str, str]]) -> str:
    sc = rec.scenario
    e = html.escape

    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.4g}"

    rows = (
        "\n".join(
            f"<tr class={'pass' if v.passed else 'fail'}><td>{e(v.criterion)}</td><td>{'PASS' if v.passed else 'FAIL'}</td>"
            f"<td>{fmt(v.value)}</td><td>{fmt(v.limit)}</td><td>{e(v.detail)}</td></tr>"
            for v in verdicts
        )
        or "<tr><td colspan=5>no criteria set</td></tr>"
    )
    faults = (
        "\n".join(f"<li>+{f.start / 3600:.2f} h: {e(f.describe())}</li>" for f in sc.faults)
        or "<li>none</li>"
    )
    events = "\n".join(
        f"<tr><td>+{(ev.t - rec.t0) / 3600:.3f} h</td><td>{e(ev.kind)}</td><td>{e(ev.message)}</td></tr>"
        for ev in rec.events[:400]
    )
    more = f"<p>{len(rec.events) - 400} more in events.jsonl</p>" if len(rec.events) > 400 else ""
    imgs = "\n".join(
        f'<figure><img src="{e(n)}" alt="{e(t)}"><figcaption>{e(t)}</figcaption></figure>' for n, t in figures
    )
    mismatch = ", ".join(f"{e(k)} ×{v:g}" for k, v in sorted(rec.mismatch.items())) or "none"
    speed = f"{sc.duration_s / rec.wall_s:,.0f}× real time" if rec.wall_s > 0 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(sc.name)}: {"PASS" if passed else "FAIL"}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1300px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; font-size: 0.9em; text-align: left; vertical-align: top; }}
tr.pass td:nth-child(2) {{ color: #17692b; font-weight: bold; }}
tr.fail td:nth-child(2) {{ color: #b00020; font-weight: bold; }}
.verdict {{ font-size: 1.4em; font-weight: bold; color: {"#17692b" if passed else "#b00020"}; }}
img {{ max-width: 100%; }} figure {{ margin: 1em 0; }}
</style></head><body>
<h1>{e(sc.name)}</h1>
<p class="verdict">{"PASS" if passed else "FAIL"}</p>
<p>{e(sc.description)}</p>
<p>Scenario <code>{e(str(sc.path))}</code>, site <code>{e(str(sc.config_path))}</code>; start {_iso(rec.t0)},
{sc.duration_s / 3600:g} h, cycle {sc.cycle_s:g} s, plant step {sc.plant_step_s:g} s, controller
<b>{e(sc.controller)}</b>, mode {e(sc.mode)}. {rec.cycles} cycles in {rec.wall_s:.1f} s wall ({speed}).</p>
<p>Plant-model mismatch: {mismatch}.</p>
<h2>Criteria</h2>
<table><tr><th>criterion</th><th>verdict</th><th>value</th><th>limit</th><th>detail</th></tr>
{rows}
</table>
<h2>Figures</h2>
<table>
<tr><td>unmet demand</td><td>{rec.unmet_mwh:.4g} MWh</td></tr>
<tr><td>supply temperature outside band</td><td>{rec.violation_kh:.4g} K·h</td></tr>
<tr><td>header pressure outside band</td><td>{rec.pressure_violation_bar_h:.4g} bar·h</td></tr>
<tr><td>samples produced / stored / dropped</td><td>{rec.samples_produced} / {rec.samples_stored} / {rec.samples_dropped}</td></tr>
<tr><td>setpoint writes received by the plant</td><td>{len(rec.plant_writes)}</td></tr>
<tr><td>cycles in fallback</td><td>{sum(1 for f in rec.fallback if f > 0)} of {len(rec.fallback)}</td></tr>
</table>
<h2>Faults</h2>
<ul>{faults}</ul>
<h2>Plots</h2>
{imgs}
<h2>Event log</h2>
<table><tr><th>time</th><th>kind</th><th>message</th></tr>
{events}
</table>{more}
</body></html>
"""
