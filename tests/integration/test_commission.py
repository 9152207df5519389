"""Commissioning runs: every scenario file runs accelerated, the verdicts, and ``symtwin commission``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
from pathlib import Path

import pytest

from sim.scenario import RunRecord, evaluate, fallback_delay, load_scenario, run_scenario, setpoint_breaches
from symtwin.commands import commission

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "configs" / "scenarios").glob("*.yaml"))
DEMO = REPO / "configs" / "scenarios" / "demo_smoke.yaml"


@pytest.fixture(autouse=True)
def _quiet() -> None:
    for name in ("controllers.supervisor", "symtwin.runtime.service"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_scenario_passes_its_criteria(path: Path) -> None:
    """Each scenario file is a commissioning test: the service's guarantees (limits, fallback, no loss) and
    the controller's result (unmet demand within the scenario's bound) with the scenario's controller."""
    scenario = load_scenario(path)
    rec = asyncio.run(run_scenario(scenario))
    verdicts = {v.criterion: v for v in evaluate(rec)}
    print(
        f"{path.stem}: {scenario.duration_s / 3600:g} h in {rec.wall_s:.1f} s wall;",
        "; ".join(f"{v.criterion}={'PASS' if v.passed else 'FAIL'} ({v.value})" for v in verdicts.values()),
    )
    for verdict in verdicts.values():
        assert verdict.passed, verdict
    if not rec.aborted:
        assert len(rec.times) == round(scenario.duration_s / scenario.cycle_s)
    assert rec.samples_produced == rec.samples_stored


@pytest.fixture(scope="module")
def demo_run() -> RunRecord:
    return asyncio.run(run_scenario(load_scenario(DEMO)))


def test_the_demo_scenario_passes_and_records_every_cycle(demo_run: RunRecord) -> None:
    rec = demo_run
    verdicts = evaluate(rec)
    assert [v.criterion for v in verdicts] == [
        "setpoints_within_limits",
        "fallback_within_cycles",
        "no_samples_lost",
    ]
    assert all(v.passed for v in verdicts), verdicts
    assert len(rec.times) == 120 and rec.times[1] - rec.times[0] == 60.0
    kinds = [e.kind for e in rec.events]
    assert kinds.count("fault_start") == 2 and kinds.count("fault_end") == 2
    assert "write_failed" in kinds and "write_ok" in kinds  # the comms loss and the recovery
    # during the 5-minute comms loss the plant sends nothing: 10 plant steps of 7 samples fewer
    assert rec.samples_produced == rec.samples_stored == (240 + 1 - 10) * 7


def test_a_rate_limit_or_bounds_breach_is_caught(demo_run: RunRecord) -> None:
    t0 = demo_run.t0
    rec = dataclasses.replace(
        demo_run,
        plant_writes=sorted(
            [*demo_run.plant_writes, (t0 + 60.0, "utility.boiler.load_sp", 1.0)], key=lambda w: w[0]
        ),
    )
    assert any("utility.boiler.load_sp moved" in b for b in setpoint_breaches(rec))
    rec = dataclasses.replace(demo_run, plant_writes=[(t0 + 60.0, "utility.storage.charge_sp", 99.0)])
    assert any("outside" in b for b in setpoint_breaches(rec))
    assert not next(v for v in evaluate(rec) if v.criterion == "setpoints_within_limits").passed


def test_a_fallback_that_never_engages_fails(demo_run: RunRecord) -> None:
    rec = dataclasses.replace(demo_run, fallback=[0] * len(demo_run.fallback))
    worst, detail = fallback_delay(rec)
    assert worst is None and "never engaged" in detail
    assert not next(v for v in evaluate(rec) if v.criterion == "fallback_within_cycles").passed


def test_lost_samples_fail_the_criterion(demo_run: RunRecord) -> None:
    rec = dataclasses.replace(demo_run, samples_stored=demo_run.samples_stored - 1)
    verdict = next(v for v in evaluate(rec) if v.criterion == "no_samples_lost")
    assert not verdict.passed and verdict.value == 1.0


def _args(scenario: Path, out: Path, config: str = "configs/demo.yaml") -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commission.add_arguments(parser)
    return parser.parse_args([str(REPO / config), "--scenario", str(scenario), "--out", str(out), "--quiet"])


def test_commission_writes_the_report_and_exits_0_when_every_criterion_passes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert commission.run(_args(DEMO, out)) == 0
    for name in (
        "index.html",
        "verdicts.json",
        "events.jsonl",
        "timeseries.csv",
        "kpis.png",
        "setpoints.png",
        "measurements.png",
    ):
        assert (out / name).stat().st_size > 0, name
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert verdicts["passed"] is True and len(verdicts["criteria"]) == 3
    assert verdicts["figures"]["samples_produced"] == verdicts["figures"]["samples_stored"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {"fault_start", "fault_end", "fallback", "run"} <= {e["kind"] for e in events}
    html = (out / "index.html").read_text()
    assert "PASS" in html and 'src="kpis.png"' in html
    assert (out / "kpis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commission_exits_1_when_a_criterion_fails(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("config: ../demo.yaml", f"config: {REPO / 'configs' / 'demo.yaml'}")
    text = text.replace("criteria:\n", "criteria:\n  max_unmet_demand_mwh: -1\n")
    scenario = tmp_path / "failing.yaml"
    scenario.write_text(text)
    out = tmp_path / "report"
    assert commission.run(_args(scenario, out)) == 1
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert verdicts["passed"] is False
    failed = [c["criterion"] for c in verdicts["criteria"] if not c["passed"]]
    assert failed == ["max_unmet_demand_mwh"]
    assert "FAIL" in (out / "index.html").read_text()


def test_commission_exits_2_on_an_invalid_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(f"name: x\nconfig: {REPO / 'configs' / 'demo.yaml'}\nduration: 1 h\nspeed: 10\n")
    assert commission.run(_args(scenario, tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert f"{scenario}:4:" in err and "unknown key 'speed'" in err
    assert not (tmp_path / "r").exists()
