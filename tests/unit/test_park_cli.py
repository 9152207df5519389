"""`symtwin simulate`: writes every named state, input and output with units in the header."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from symtwin.cli import main

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def test_simulate_writes_csv_with_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.csv"
    code = main(
        ["simulate", DEMO, "--duration", "1h", "--dt-out", "10 min", "--out", str(out), "--no-progress"]
    )
    assert code == 0
    with out.open() as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header[0] == "time [s]"
    assert "town.supply_temperature [K]" in header
    assert "storage.layer_temperature[0] [K]" in header
    assert "town.demand [1]" in header
    assert len(rows) == 1 + 7
    assert float(rows[-1][0]) == pytest.approx(3600.0)
    assert "energy balance error" in capsys.readouterr().err


def test_simulate_writes_parquet(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "run.parquet"
    assert (
        main(
            [
                "simulate",
                DEMO,
                "--duration",
                "30min",
                "--dt-out",
                "5min",
                "--out",
                str(out),
                "--no-progress",
                "--set",
                "boiler.load_setpoint=0.8",
            ]
        )
        == 0
    )
    table = pq.read_table(out)
    assert table.num_rows == 7
    assert "boiler.load_setpoint [1]" in table.column_names
    assert table.column("boiler.load_setpoint [1]").to_pylist() == [0.8] * 7


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", DEMO, "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["simulate", DEMO, "--out", str(tmp_path / "x.csv"), "--set", "nope=1"]) == 2
    assert "INPUT one of" in capsys.readouterr().err
