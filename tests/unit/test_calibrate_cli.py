"""`symtwin calibrate`: example history, fit, overlay and fouling report through the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from symtwin.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs" / "demo.yaml")


def test_example_history_then_fit_overlay_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist = tmp_path / "h.csv"
    assert main(["calibrate", DEMO, "--make-example-history", str(hist), "--hours", "1"]) == 0
    with open(hist) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time", "tag", "value"]
    assert {r[1] for r in rows[1:]} >= {"utility.hx.t_out", "utility.storage.charge_sp"}
    ov, rep = tmp_path / "ov.yaml", tmp_path / "foul.csv"
    code = main(
        [
            "calibrate",
            DEMO,
            "--history",
            str(hist),
            "--params",
            "storage.loss_coefficient",
            "--settle",
            "1h",
            "--overlay-out",
            str(ov),
            "--fouling-report",
            str(rep),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "utility.storage.top_t" in out and "95 % interval" in out
    units = yaml.safe_load(ov.read_text())["units"]
    assert units["storage"]["loss_coefficient"].endswith(" W/K")
    with open(rep) as fh:
        report = list(csv.DictReader(fh))
    assert report and report[0]["exchanger"] == "hx" and float(report[-1]["clean_ua_w_k"]) == 4e5


def test_unknown_parameter_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hist = tmp_path / "h.csv"
    hist.write_text("time,tag,value\n0,utility.hx.t_out,340\n60,utility.hx.t_out,340\n")
    assert main(["calibrate", DEMO, "--history", str(hist), "--params", "hx.nope"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_missing_history_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", DEMO]) == 2
    assert "--history" in capsys.readouterr().err
