"""Scenario files: schema and checks with file/line errors (runs: tests/integration/test_commission.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.faults import FaultKind
from sim.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "configs" / "scenarios").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"config: {REPO / 'configs' / 'demo.yaml'}\n" + text, encoding="utf-8")
    return path


def test_there_are_five_reference_scenarios_and_a_demo_one() -> None:
    loaded = [load_scenario(p) for p in SCENARIOS]
    kalundborg = [s for s in loaded if s.config_path.name == "kalundborg.yaml"]
    assert len(kalundborg) >= 5
    assert any(s.config_path.name == "demo.yaml" for s in loaded)
    kinds = {f.kind for s in loaded for f in s.faults}
    assert kinds == set(FaultKind)  # every fault kind is exercised by some scenario
    for s in loaded:
        assert s.duration_s > 0 and s.cycle_s % s.plant_step_s == 0


def test_times_are_seconds_and_events_are_relative_to_the_start(tmp_path: Path) -> None:
    s = load_scenario(
        write(
            tmp_path,
            "name: x\nduration: 2 h\ncycle: 1 min\nplant_step: 20 s\nwarmup: 10 min\nevents:\n"
            "  - {at: 30 min, fault: sensor_drift, tag: utility.hx.t_out, rate_per_h: 1.8, duration: 10 min}\n"
            "  - {at: 1 h, fault: price_spike, series: price.natural_gas, factor: 3}\n",
        )
    )
    assert (s.duration_s, s.cycle_s, s.plant_step_s, s.warmup_s) == (7200.0, 60.0, 20.0, 600.0)
    drift, spike = s.faults
    assert (drift.start, drift.duration, drift.rate_si_per_s) == (1800.0, 600.0, pytest.approx(0.0005))
    assert (spike.start, spike.duration, spike.series, spike.factor) == (
        3600.0,
        None,
        "price.natural_gas",
        3.0,
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: x\nduration: 1 h\ncolour: red\n", 4, "unknown key 'colour'"),
        (
            "name: x\nduration: 1 h\nevents:\n  - {at: 1 min, fault: sensor_freeze, tag: nope}\n",
            5,
            "measurement tag",
        ),
        (
            "name: x\nduration: 1 h\nevents:\n  - {at: 1 min, fault: actuator_stuck, tag: factory.heat}\n",
            5,
            "setpoint tag",
        ),
        ("name: x\nduration: 1 h\nevents:\n  - {at: 2 h, fault: comms_loss}\n", 5, "after the end"),
        ("name: x\nduration: 1 h\nevents:\n  - {at: 1 min, fault: brownout}\n", 5, "fault"),
        (
            "name: x\nduration: 1 h\nevents:\n  - {at: 1 min, fault: price_spike, series: gold}\n",
            5,
            "forecast series",
        ),
        (
            "name: x\nduration: 1 h\nevents:\n  - {at: 1 min, fault: demand_step, unit: mars, factor: 2}\n",
            5,
            "unknown unit",
        ),
        ("name: x\nduration: 1 h\ncycle: 60 s\nplant_step: 25 s\n", 5, "divide the cycle"),
        ("name: x\nduration: ten\n", 3, "duration"),
        ("duration: 1 h\n", 1, "'name' is missing"),
    ],
)
def test_problems_name_file_line_and_field(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    rendered = err.value.render()
    assert f"{path}:{line}:" in rendered
    assert message in rendered


def test_a_missing_site_config_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nconfig: nowhere.yaml\nduration: 1 h\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="site config not found"):
        load_scenario(path)
