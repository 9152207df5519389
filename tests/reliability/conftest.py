"""The reliability suite (issue 12): real servers on loopback, so every test here is integration tier.

Long variants carry ``slow`` (deselected by default); ``benchmarks/reliability.py`` runs the suite and
writes ``benchmarks/results/reliability.json`` from the figures the tests record
(``tests.support.reliability.record``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
