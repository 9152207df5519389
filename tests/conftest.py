from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Mosquitto, VictoriaMetrics, running_mosquitto, running_victoria_metrics

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh anonymous mosquitto broker on a free loopback port (``.host``, ``.port``, ``.restart()``)."""
    with running_mosquitto(tmp_path) as broker:
        yield broker


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh victoria-metrics store (``.url`` accepts ``/api/v2/write``; ``.count_points(match)``)."""
    with running_victoria_metrics(tmp_path) as store:
        yield store


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The tier is the folder: tests/unit, tests/integration, tests/e2e.
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in ("unit", "integration", "e2e"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
