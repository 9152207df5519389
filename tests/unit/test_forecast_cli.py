"""`symtwin forecast train/backtest`: scores per horizon next to both baselines, a model file that loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from symtwin.cli import main


@pytest.fixture
def history_csv(tmp_path: Path) -> Path:
    """45 days in the measured file's layout (Time [s] since start, Day 1 = Monday … 7, Hour, Toa, qload)."""
    rng = np.random.default_rng(2)
    n = 45 * 24
    k = np.arange(n)
    toa = 2 + 6 * np.sin(2 * np.pi * k / 240) + rng.normal(0, 0.3, n)
    day = (k // 24 + 6) % 7 + 1  # starts on a Sunday, like the measured year
    q = 0.5e6 + 0.25e6 * np.maximum(0, 17 - toa) * np.where(day >= 6, 0.8, 1.0) * (1 + rng.normal(0, 0.02, n))
    lines = ["Time,Day,Hour,Toa,qload"] + [f"{i * 3600},{day[i]},{i % 24},{toa[i]:.2f},{q[i]:.0f}" for i in k]
    path = tmp_path / "history.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_prints_scores_against_both_baselines_and_writes_a_model(
    history_csv: Path, tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.json"
    scores = tmp_path / "scores.json"
    config = str(repo_root / "configs" / "demo.yaml")
    common = ["--history", str(history_csv), "--max-steps", "6", "--json", str(scores)]
    assert main(["forecast", "train", config, *common, "--model-out", str(model)]) == 0
    out = capsys.readouterr().out
    assert "persist." in out and "last wk" in out and "noisy temperature forecast" in out
    assert json.loads(model.read_text())["format"] == "symtwin.forecast.ridge/1"
    rows = json.loads(scores.read_text())["measured temperature as a perfect forecast"]
    assert [r["horizon_h"] for r in rows] == [1.0, 6.0]
    assert rows[1]["mape_model"] < min(rows[1]["mape_persistence"], rows[1]["mape_last_week"])
    assert main(["forecast", "backtest", config, *common, "--model", str(model)]) == 0
    assert "Backtest on the last" in capsys.readouterr().out


def test_a_missing_history_column_is_a_usage_error(
    history_csv: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(repo_root / "configs" / "demo.yaml")
    code = main(["forecast", "backtest", config, "--history", str(history_csv), "--load-column", "nope"])
    assert code == 2 and "no column 'nope'" in capsys.readouterr().err
