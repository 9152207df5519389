"""Grafana provisioning and dashboards: valid JSON whose queries read only what symtwin really writes.

- Flux (InfluxDB) queries: every ``r.<column>`` and every ``_measurement``/``_field``/tag filter is checked
  against the historian's schema, taken from the historian code itself (a line encoded by
  ``adapters.influx.lineproto.SampleEncoder``), and tag ids against the reference site config.
- PromQL (controller health, from /metrics): every ``symtwin_*`` name must be one the service registers;
  the names are found in ``symtwin/runtime`` and ``symtwin/web`` (calls to ``Metrics.inc/set/observe``) and rendered by the
  real ``Metrics`` class, so counter ``_total`` and histogram suffixes come from the code.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from adapters.base import Quality, Sample
from adapters.influx.lineproto import SAMPLE_MEASUREMENT, SampleEncoder
from symtwin.config import LoadedSite, load_site
from symtwin.config.schema import Direction
from symtwin.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "docker" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
FLUX_BUILTIN_COLUMNS = {"_measurement", "_field", "_value", "_time", "_start", "_stop"}


# ----------------------------------------------------------------------------- what symtwin writes


def historian_schema() -> dict[str, tuple[set[str], set[str]]]:
    """measurement → (field keys, tag keys), parsed from a line the historian's encoder produces."""
    line = SampleEncoder().line(Sample("probe.tag", 1_700_000_000.0, 1.5, Quality.UNCERTAIN))
    head, fields, _ts = line.split(" ")
    measurement, *tags = head.split(",")
    return {measurement: ({f.split("=")[0] for f in fields.split(",")}, {t.split("=")[0] for t in tags})}


def runtime_metric_calls() -> set[tuple[str, str]]:
    """(inc|set|observe, name) of every metric the service registers (symtwin/runtime, symtwin/web)."""
    calls: set[tuple[str, str]] = set()
    sources = [*(REPO / "symtwin" / "runtime").glob("*.py"), *(REPO / "symtwin" / "web").glob("*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            kind = node.func.attr
            recv = node.func.value
            is_metrics = (isinstance(recv, ast.Attribute) and recv.attr == "metrics") or (
                isinstance(recv, ast.Name) and recv.id in {"m", "metrics"}
            )
            if kind in {"inc", "set", "observe"} and is_metrics and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    calls.add((kind, first.value))
    return calls


def feed(registry: Metrics, calls: set[tuple[str, str]], step: int = 1) -> None:
    """Register/advance every metric in ``calls`` on a real registry (``step`` grows counters)."""
    for kind, name in sorted(calls):
        if kind == "inc":
            registry.inc(name, "probe", float(step))
        elif kind == "set":
            registry.set(name, "probe", 1.0)
        else:
            for _ in range(step):
                registry.observe(name, "probe", 0.02, (0.01, 0.05, 0.1))


def runtime_metric_names() -> set[str]:
    """Every series name the service exposes on /metrics, as the real ``Metrics`` class renders it."""
    registry = Metrics()
    feed(registry, runtime_metric_calls())
    return {
        ln.split("{")[0].split(" ")[0]
        for ln in registry.render().splitlines()
        if ln and not ln.startswith("#")
    }


@pytest.fixture(scope="module")
def site() -> LoadedSite:
    return load_site(REPO / "configs" / "kalundborg.yaml")


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        out[path.name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_dashboards", GRAFANA / "make_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], t))
    return out


# ----------------------------------------------------------------------------- query checkers

_R_COLUMN = re.compile(r"\br\.([A-Za-z_][A-Za-z0-9_]*)|\br\[\"([^\"]+)\"\]")
_COMPARE = re.compile(
    r"\br(?:\.([A-Za-z_]\w*)|\[\"([^\"]+)\"\])\s*(==|!=|=~|!~)\s*(\"[^\"]*\"|/(?:[^/\\]|\\.)*/)"
)


def flux_problems(query: str, variables: set[str], tag_ids: set[str]) -> list[str]:
    """What a Flux query references that the historian never writes (empty list: fine)."""
    schema = historian_schema()
    problems = []
    bucket = re.search(r'from\(bucket:\s*"([^"]*)"\)', query)
    if bucket is None:
        problems.append("no from(bucket: ...)")
    elif (m := re.fullmatch(r"\$\{(\w+)\}", bucket.group(1))) and m.group(1) not in variables:
        problems.append(f"bucket variable {m.group(1)} is not defined")
    measurements = set()
    for col, quoted, _op, value in _COMPARE.findall(query):
        key = col or quoted
        literal = value[1:-1]
        if key == "_measurement":
            measurements.add(literal)
    if not measurements:
        problems.append("no _measurement filter: the query would read every series")
    for m in measurements - set(schema):
        problems.append(f"measurement {m!r} is never written (historian writes {sorted(schema)})")
    fields = set().union(*(schema[m][0] for m in measurements if m in schema)) if measurements else set()
    tag_keys = set().union(*(schema[m][1] for m in measurements if m in schema)) if measurements else set()
    for col, quoted in _R_COLUMN.findall(query):
        key = col or quoted
        if key not in FLUX_BUILTIN_COLUMNS | tag_keys:
            problems.append(f"column {key!r} is not written (tags {sorted(tag_keys)})")
    for col, quoted, op, value in _COMPARE.findall(query):
        key = col or quoted
        literal = value[1:-1]
        if key == "_field":
            if op in ("==", "!=") and literal not in fields:
                problems.append(f"field {literal!r} is never written (fields {sorted(fields)})")
        elif key == "tag":
            if op in ("==", "!="):
                if literal not in tag_ids:
                    problems.append(f"tag id {literal!r} is not a measured tag of the site")
            elif not any(re.search(literal, t) for t in tag_ids):
                problems.append(f"tag regex /{literal}/ matches no tag")
    keep = re.search(r"keep\(columns:\s*\[([^\]]*)\]\)", query)
    if keep:
        for col in re.findall(r'"([^"]+)"', keep.group(1)):
            if col not in FLUX_BUILTIN_COLUMNS | tag_keys:
                problems.append(f"keep() of unknown column {col!r}")
    return problems


_PROM_FUNCS = {
    "sum", "rate", "irate", "increase", "deriv", "histogram_quantile", "by", "without", "avg", "max", "min",
    "count", "le", "on", "ignoring", "and", "or", "unless", "offset", "abs", "clamp_min", "clamp_max",
}  # fmt: skip


def prom_problems(expr: str, names: set[str]) -> list[str]:
    problems = []
    stripped = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
    stripped = re.sub(r"\{[^}]*\}", "", stripped)  # nor label matchers
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # nor range durations
    for ident in re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b", stripped):
        if ident in _PROM_FUNCS or ident in ("status", "result"):
            continue
        if ident == "up":  # added by the scraper for every target
            continue
        if ident not in names:
            problems.append(f"metric {ident!r} is not exposed by symtwin/runtime")
    return problems


# ----------------------------------------------------------------------------- tests


def test_historian_schema_is_what_the_readme_documents() -> None:
    schema = historian_schema()
    assert schema == {SAMPLE_MEASUREMENT: ({"value", "quality"}, {"tag"})}


def test_runtime_metric_names_are_found() -> None:
    names = runtime_metric_names()
    assert {"symtwin_mode", "symtwin_solves_total", "symtwin_cycle_seconds_bucket"} <= names, sorted(names)


def test_dashboards_are_valid_and_committed_as_generated(
    site: LoadedSite, dashboards: dict[str, dict[str, Any]]
) -> None:
    gen = _generator()
    expected = gen.build(site)
    assert set(dashboards) == set(expected) == set(gen.FILES)
    for name, dash in expected.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == gen.render(dash), (
            f"{name} is stale: run .venv/bin/python docker/grafana/make_dashboards.py configs/kalundborg.yaml"
        )
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, d in dashboards.items():
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        assert d["title"] and d["panels"], name


def test_dashboard_datasources_are_provisioned(dashboards: dict[str, dict[str, Any]]) -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "symtwin.yaml").read_text())
    by_uid = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    for name, d in dashboards.items():
        for title, target in _targets(d):
            ds = target["datasource"]
            assert by_uid.get(ds["uid"]) == ds["type"], f"{name} / {title}: datasource {ds} not provisioned"


def test_flux_queries_read_only_what_the_historian_writes(
    site: LoadedSite, dashboards: dict[str, dict[str, Any]]
) -> None:
    measured = {t.id for t in site.tags.values() if t.direction is Direction.MEASUREMENT}
    checked = 0
    for name, d in dashboards.items():
        variables = {v["name"] for v in d["templating"]["list"]}
        for title, target in _targets(d):
            if target["datasource"]["type"] != "influxdb":
                continue
            assert flux_problems(target["query"], variables, measured) == [], f"{name} / {title}"
            checked += 1
    assert checked >= 10
    # the exchanges of the park overview each have a panel
    overview = dashboards["park-overview.json"]
    titles = " ".join(p["title"] for p in overview["panels"])
    for e in site.config.exchanges:
        assert e.id in titles, e.id


def test_flux_checker_catches_wrong_names(site: LoadedSite) -> None:
    measured = {t.id for t in site.tags.values() if t.direction is Direction.MEASUREMENT}
    good = (
        'from(bucket: "${bucket}") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "symtwin_sample"'
        ' and r._field == "value" and r.tag == "powerco.chp.load")'
    )
    assert flux_problems(good, {"bucket"}, measured) == []
    bad_cases = {
        "measurement": good.replace('"symtwin_sample"', '"symtwin_samples"'),
        "field": good.replace('r._field == "value"', 'r._field == "val"'),
        "tag id": good.replace("powerco.chp.load", "powerco.chp.lod"),
        "column": good.replace("r.tag ==", "r.unit =="),
        "variable": good.replace("${bucket}", "${bkt}"),
        "no _measurement": good.replace('r._measurement == "symtwin_sample" and ', ""),
    }
    for what, query in bad_cases.items():
        assert flux_problems(query, {"bucket"}, measured), f"a wrong {what} was not caught"


def test_controller_health_reads_metrics_the_runtime_exposes(dashboards: dict[str, dict[str, Any]]) -> None:
    names = runtime_metric_names()
    exprs = [
        (title, t["expr"])
        for d in dashboards.values()
        for title, t in _targets(d)
        if t["datasource"]["type"] == "prometheus"
    ]
    assert len(exprs) >= 10
    for title, expr in exprs:
        assert prom_problems(expr, names) == [], f"{title}: {expr}"
    assert prom_problems("rate(symtwin_solve_total[5m])", names), "a misspelt metric was not caught"


def test_provisioning_matches_the_compose_mounts() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "symtwin.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert mounts["./grafana/dashboards"] == path
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    text = (GRAFANA / "provisioning" / "datasources" / "symtwin.yaml").read_text()
    for secret in re.findall(r"\$__file\{/run/secrets/([^}]+)\}", text):
        assert secret in grafana["secrets"], secret
    assert "token:" not in text.replace("token: $__file{", ""), "a token value in the provisioning file"
    datasources = yaml.safe_load(text)["datasources"]
    for ds in datasources:
        host = re.match(r"https?://([^:/]+)", ds["url"])
        assert host and host.group(1) in compose["services"], ds["url"]
        assert "backend" in compose["services"][host.group(1)]["networks"]
    for var in re.findall(r"\$([A-Z_]+)\b", text):
        assert var in grafana["environment"], f"${var} is not set in Grafana's environment"
