"""Write the Grafana dashboards for a site config: park overview, one row per unit, controller health.

    .venv/bin/python docker/grafana/make_dashboards.py /etc/symtwin/site.yaml --out docker/grafana/dashboards

The park overview and unit dashboards read InfluxDB (Flux) and use only what the historian writes:
measurement ``symtwin_sample`` (``adapters.influx.lineproto.SAMPLE_MEASUREMENT``), field ``value``
(SI unit of the tag, converted here to the tag's engineering unit) and ``quality`` (0 good,
1 uncertain, 2 bad), tag key ``tag`` (the tag id). Controller health reads the service's ``/metrics``
(Prometheus text, names ``symtwin_*``) through a Prometheus-compatible store (VictoriaMetrics in the
compose file): the runtime keeps mode, solve outcomes and cycle times only in /metrics, not in the
historian. tests/unit/test_deploy_grafana.py checks every query against those two sources.
The committed dashboards are generated from configs/kalundborg.yaml; regenerate them for your site.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from adapters.influx.lineproto import SAMPLE_MEASUREMENT
from symtwin.config import ConfigError, LoadedSite, TagSpec, load_site
from symtwin.config.schema import Direction, InfluxAdapter
from symtwin.units import UNITS

INFLUX_DS = {"type": "influxdb", "uid": "symtwin-influx"}
METRICS_DS = {"type": "prometheus", "uid": "symtwin-metrics"}
FILES = ("park-overview.json", "units.json", "controller-health.json")

# Grafana's unit ids for the engineering units that have one; others are shown as a suffix.
_GRAFANA_UNITS = {
    "%": "percent",
    "degC": "celsius",
    "°C": "celsius",
    "C": "celsius",
    "K": "kelvin",
    "W": "watt",
    "kW": "kwatt",
    "MW": "megwatt",
    "bar": "pressurebar",
    "Pa": "pressurepa",
    "kPa": "pressurekpa",
    "s": "s",
}
# Quantities that carry an exchange's flow, by medium of its connection (first match wins).
_FLOW_QUANTITIES = {
    "steam": ("steam_flow", "heat_flow", "mass_flow"),
    "": ("heat_flow", "mass_flow", "steam_flow"),
}


def grafana_unit(eng_unit: str) -> str:
    return _GRAFANA_UNITS.get(eng_unit, f"suffix: {eng_unit}")


def flux_float(x: float) -> str:
    """A Flux float literal: Flux has no exponent notation, and ``2`` would be an int (type error)."""
    text = f"{x:.12f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def flux_sample_query(
    bucket_var: str, tags: Sequence[TagSpec], field: str = "value", fn: str = "mean", convert: bool = True
) -> str:
    """Flux for ``field`` of some tags' samples, windowed; ``value`` converted SI → engineering unit.

    All tags must share one engineering unit when ``convert`` is set (one affine map per query).
    """
    match = " or ".join(f'r.tag == "{t.id}"' for t in tags)
    lines = [
        f'from(bucket: "${{{bucket_var}}}")',
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
        f'  |> filter(fn: (r) => r._measurement == "{SAMPLE_MEASUREMENT}" and r._field == "{field}")',
        f"  |> filter(fn: (r) => {match})",
        f"  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)",
    ]
    if convert and field == "value":
        units = {t.eng_unit for t in tags}
        if len(units) != 1:
            raise ValueError(f"tags {[t.id for t in tags]} have different engineering units {sorted(units)}")
        d = UNITS[units.pop()]
        scale, shift = 1.0 / d.factor, -d.offset / d.factor  # eng = (si - offset) / factor
        expr = "r._value" if scale == 1.0 else f"r._value * {flux_float(scale)}"
        if shift != 0.0:
            expr += f" {'+' if shift > 0 else '-'} {flux_float(abs(shift))}"
        if expr != "r._value":
            lines.append(f"  |> map(fn: (r) => ({{r with _value: {expr}}}))")
    lines.append('  |> keep(columns: ["_time", "_value", "tag"])')
    return "\n".join(lines)


class _Layout:
    """Panel ids and grid positions, left to right, top to bottom (24 columns)."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def new_row(self) -> dict[str, int]:
        self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": 1, "w": 24, "x": 0, "y": self.y}
        self.y += 1
        return pos

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _flux_panel(
    lay: _Layout, kind: str, title: str, query: str, unit: str, w: int = 12, h: int = 8, description: str = ""
) -> dict[str, Any]:
    options: dict[str, Any]
    if kind == "timeseries":
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        }
    else:
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    return {
        "id": lay.take_id(),
        "type": kind,
        "title": title,
        "description": description,
        "gridPos": lay.place(w, h),
        "datasource": INFLUX_DS,
        "fieldConfig": {"defaults": {"unit": unit, "decimals": 2}, "overrides": []},
        "options": options,
        "targets": [{"refId": "A", "datasource": INFLUX_DS, "query": query}],
    }


def _prom_panel(
    lay: _Layout,
    kind: str,
    title: str,
    exprs: Iterable[tuple[str, str]],
    unit: str,
    w: int = 8,
    h: int = 7,
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    targets = [
        {"refId": chr(ord("A") + i), "datasource": METRICS_DS, "expr": expr, "legendFormat": legend}
        for i, (expr, legend) in enumerate(exprs)
    ]
    options: dict[str, Any] = (
        {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        }
        if kind == "timeseries"
        else {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
        }
    )
    return {
        "id": lay.take_id(),
        "type": kind,
        "title": title,
        "description": description,
        "gridPos": lay.place(w, h),
        "datasource": METRICS_DS,
        "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or []}, "overrides": []},
        "options": options,
        "targets": targets,
    }


def _row(lay: _Layout, title: str) -> dict[str, Any]:
    return {
        "id": lay.take_id(),
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": lay.new_row(),
        "panels": [],
    }


def _dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]], templating: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["symtwin"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": templating},
        "panels": panels,
    }


def _bucket_variable(bucket: str) -> dict[str, Any]:
    return {
        "name": "bucket",
        "label": "InfluxDB bucket",
        "type": "textbox",
        "query": bucket,
        "hide": 0,
        "current": {"text": bucket, "value": bucket},
        "options": [{"selected": True, "text": bucket, "value": bucket}],
    }


def bucket_of(site: LoadedSite) -> str:
    influx = site.config.adapters.influx
    return influx.bucket if influx is not None else str(InfluxAdapter.model_fields["bucket"].default)


def exchange_flow_tags(site: LoadedSite) -> dict[str, TagSpec | None]:
    """For each exchange, the measured tag carrying its flow: on the supplying unit, else the receiving one."""
    media = {
        (f"{c.source}.{c.source_port}", f"{c.target}.{c.target_port}"): c.medium
        for c in site.park_spec().connections
    }
    measured = [t for t in site.tags.values() if t.direction is Direction.MEASUREMENT]
    out: dict[str, TagSpec | None] = {}
    for e in site.config.exchanges:
        conn = site.connection_by_id[e.connection]
        medium = media.get((conn.source, conn.target), "")
        quantities = _FLOW_QUANTITIES["steam" if "steam" in medium else ""]
        found: TagSpec | None = None
        for unit in (conn.source.split(".")[0], conn.target.split(".")[0]):
            for q in quantities:
                found = next((t for t in measured if t.unit == unit and t.quantity == q), None)
                if found:
                    break
            if found:
                break
        out[e.id] = found
    return out


def park_overview(site: LoadedSite) -> dict[str, Any]:
    lay = _Layout()
    panels: list[dict[str, Any]] = []
    flows = exchange_flow_tags(site)
    panels.append(_row(lay, "Exchanges: measured flow (supplier → receiver)"))
    for e in site.config.exchanges:
        tag = flows[e.id]
        supplier, receiver = site.exchange_parties(e)
        if tag is None:
            continue
        panels.append(
            _flux_panel(
                lay,
                "stat",
                f"{e.id}: {supplier} → {receiver}",
                flux_sample_query("bucket", [tag], fn="last"),
                grafana_unit(tag.eng_unit),
                w=6,
                h=5,
                description=f"tag {tag.id} ({tag.quantity}, contract {e.contract})",
            )
        )
    for e in site.config.exchanges:
        tag = flows[e.id]
        if tag is None:
            continue
        panels.append(
            _flux_panel(
                lay,
                "timeseries",
                f"{e.id} [{tag.eng_unit}]",
                flux_sample_query("bucket", [tag]),
                grafana_unit(tag.eng_unit),
                description=f"tag {tag.id}",
            )
        )
    missing = [e.id for e in site.config.exchanges if flows[e.id] is None]
    if missing:
        panels.append(
            {
                "id": lay.take_id(),
                "type": "text",
                "title": "Exchanges without a measured flow tag",
                "gridPos": lay.place(24, 3),
                "options": {
                    "mode": "markdown",
                    "content": ", ".join(missing)
                    + ": the twin estimates these flows; see the live view's Sankey.",
                },
            }
        )
    panels.append(_row(lay, "Data quality"))
    measured = [t for t in site.tags.values() if t.direction is Direction.MEASUREMENT]
    panels.append(
        _flux_panel(
            lay,
            "timeseries",
            "Samples not good (quality ≥ 1) per tag",
            flux_sample_query("bucket", measured, field="quality", fn="max", convert=False),
            "none",
            w=24,
            description="0 good, 1 uncertain, 2 bad (adapters.base.Quality); max per window",
        )
    )
    return _dashboard(
        "symtwin-park",
        f"symtwin — {site.name}: park overview",
        "Exchanges between the parties and the quality of the measured data.",
        panels,
        [_bucket_variable(bucket_of(site))],
    )


def units_dashboard(site: LoadedSite) -> dict[str, Any]:
    lay = _Layout()
    panels: list[dict[str, Any]] = []
    for unit in site.units:
        tags = [t for t in site.tags.values() if t.unit == unit.id and t.direction is Direction.MEASUREMENT]
        if not tags:
            continue
        panels.append(_row(lay, f"{unit.id} ({unit.model}, {unit.owner})"))
        for t in tags:
            panels.append(
                _flux_panel(
                    lay,
                    "timeseries",
                    f"{t.id} — {t.quantity} [{t.eng_unit}]",
                    flux_sample_query("bucket", [t]),
                    grafana_unit(t.eng_unit),
                    w=8,
                    h=7,
                )
            )
    return _dashboard(
        "symtwin-units",
        f"symtwin — {site.name}: units",
        "Every measured tag, one row per unit.",
        panels,
        [_bucket_variable(bucket_of(site))],
    )


def controller_health() -> dict[str, Any]:
    lay = _Layout()
    mode_map = [
        {
            "type": "value",
            "options": {
                "0": {"text": "off", "color": "red"},
                "1": {"text": "shadow", "color": "yellow"},
                "2": {"text": "auto", "color": "green"},
            },
        }
    ]
    fallback_map = [
        {
            "type": "value",
            "options": {
                "0": {"text": "none", "color": "green"},
                "1": {"text": "last good plan", "color": "yellow"},
                "2": {"text": "safe values", "color": "red"},
            },
        }
    ]
    yes_no = [
        {
            "type": "value",
            "options": {"0": {"text": "no", "color": "green"}, "1": {"text": "yes", "color": "red"}},
        }
    ]
    usable = [
        {
            "type": "value",
            "options": {"0": {"text": "failed", "color": "red"}, "1": {"text": "usable", "color": "green"}},
        }
    ]
    up = [
        {
            "type": "value",
            "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}},
        }
    ]
    panels = [
        _row(lay, "State"),
        _prom_panel(
            lay, "stat", "Service scraped", [('up{job="symtwin"}', "up")], "none", w=4, h=4, mappings=up
        ),
        _prom_panel(lay, "stat", "Mode", [("symtwin_mode", "mode")], "none", w=4, h=4, mappings=mode_map),
        _prom_panel(
            lay,
            "stat",
            "Fallback",
            [("symtwin_fallback_engaged", "fallback")],
            "none",
            w=4,
            h=4,
            mappings=fallback_map,
        ),
        _prom_panel(
            lay, "stat", "Degraded", [("symtwin_degraded", "degraded")], "none", w=4, h=4, mappings=yes_no
        ),
        _prom_panel(
            lay,
            "stat",
            "Last solve",
            [("symtwin_solve_status", "last solve")],
            "none",
            w=4,
            h=4,
            mappings=usable,
        ),
        _prom_panel(lay, "stat", "Stale input tags", [("symtwin_stale_tags", "stale")], "none", w=4, h=4),
        _row(lay, "Solver"),
        _prom_panel(
            lay,
            "timeseries",
            "Solves per minute by outcome",
            [("sum by (status) (rate(symtwin_solves_total[5m])) * 60", "{{status}}")],
            "none",
            w=12,
            h=8,
        ),
        _prom_panel(
            lay,
            "timeseries",
            "Solve time (p50, p95)",
            [
                ("histogram_quantile(0.5, sum by (le) (rate(symtwin_solve_seconds_bucket[15m])))", "p50"),
                ("histogram_quantile(0.95, sum by (le) (rate(symtwin_solve_seconds_bucket[15m])))", "p95"),
            ],
            "s",
            w=12,
            h=8,
        ),
        _row(lay, "Control loop"),
        _prom_panel(
            lay,
            "timeseries",
            "Cycle time (p95) and mean",
            [
                ("histogram_quantile(0.95, sum by (le) (rate(symtwin_cycle_seconds_bucket[5m])))", "p95"),
                ("rate(symtwin_cycle_seconds_sum[5m]) / rate(symtwin_cycle_seconds_count[5m])", "mean"),
            ],
            "s",
            w=8,
            h=8,
        ),
        _prom_panel(
            lay,
            "timeseries",
            "Cycle overruns (cumulative)",
            [("symtwin_cycle_overruns", "overruns")],
            "none",
            w=8,
            h=8,
        ),
        _prom_panel(
            lay,
            "timeseries",
            "Samples per second",
            [
                ("rate(symtwin_samples_total[5m])", "received"),
                ("deriv(symtwin_samples_dropped[5m])", "dropped"),
            ],
            "none",
            w=8,
            h=8,
        ),
        _row(lay, "Outputs"),
        _prom_panel(
            lay,
            "timeseries",
            "Setpoint writes per minute",
            [("sum by (result) (rate(symtwin_setpoint_writes_total[5m])) * 60", "{{result}}")],
            "none",
            w=12,
            h=8,
        ),
        _prom_panel(
            lay,
            "timeseries",
            "Dead letters (inputs set aside)",
            [("symtwin_dead_letters", "dead letters")],
            "none",
            w=12,
            h=8,
        ),
    ]
    return _dashboard(
        "symtwin-controller",
        "symtwin — controller health",
        "From symtwin's /metrics, scraped every 15 s.",
        panels,
        [],
    )


def build(site: LoadedSite) -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON object."""
    return {FILES[0]: park_overview(site), FILES[1]: units_dashboard(site), FILES[2]: controller_health()}


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("config", type=Path, help="site config (YAML)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "dashboards",
        help="folder for the dashboard JSON files (default: next to this script)",
    )
    args = parser.parse_args(argv)
    try:
        site = load_site(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, dashboard in build(site).items():
        (args.out / name).write_text(render(dashboard), encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
