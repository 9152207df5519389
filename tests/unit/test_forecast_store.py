"""Training the forecaster from the service's own history store (SQLite), not only from CSV."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from adapters.base import Sample
from adapters.store.history import HistoryParams, LocalHistory
from symtwin.forecasting.sources import ForecastDecodeError, read_history_store

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600.0)


def _store(path: Path, hours: int, gap: range = range(0)) -> None:
    h = LocalHistory(HistoryParams(path, retention_s=math.inf))
    samples = []
    for k in range(hours * 4):  # every 15 min
        t = T0 + k * 900.0
        if k // 4 in gap:
            continue
        samples.append(Sample("town.load", t, 1e6 + 1e5 * (k % 4)))
        samples.append(Sample("outdoor.t", t, 270.0 + (k // 4)))
    h.write(samples)
    h.close()


def test_hourly_means_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    _store(path, 48)
    hist = read_history_store(path, "town.load", "outdoor.t")
    assert hist.step_s == 3600.0
    assert len(hist.times_s) == 48
    np.testing.assert_allclose(hist.load_w, 1e6 + 1.5e5)  # mean of the four quarter-hours
    np.testing.assert_allclose(hist.t_out_k, 270.0 + np.arange(48))


def test_a_gap_stays_missing(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    _store(path, 24, gap=range(10, 13))
    hist = read_history_store(path, "town.load", "outdoor.t")
    assert np.isnan(hist.load_w[10:13]).all() and np.isfinite(hist.load_w[:10]).all()


def test_unknown_tag_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    _store(path, 2)
    with pytest.raises(ForecastDecodeError, match=r"no tag 'town\.heat'"):
        read_history_store(path, "town.heat", "outdoor.t")
