"""The live-view checks of test_live_view.py against the real service: a `symtwin sim` child process.

The same tests (imported below) run with ``live_view`` swapped for the virtual plant on loopback OPC UA, the
baseline controller, the supervisor and the SQLite history behind the page. Users come from a temporary
copy of configs/demo.yaml with ``web.users`` (an operator and a viewer per party); the sim's own generated
logins are used when a config has none (checked by tests/integration/test_service_process.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from symtwin.config import load_site
from symtwin.web.auth import hash_password
from tests.e2e.test_live_view import (
    test_operator_switches_mode_and_overrides,
    test_page_shows_moving_sankey,
    test_party_never_sees_another_partys_private_tags,
    test_viewer_cannot_change_anything,
)
from tests.support.service_process import ROOT, ServiceProcess
from tests.support.web_demo import DemoUser, LiveViewBackend

__all__ = [
    "test_operator_switches_mode_and_overrides",
    "test_page_shows_moving_sankey",
    "test_party_never_sees_another_partys_private_tags",
    "test_viewer_cannot_change_anything",
]


def site_with_users(tmp: Path, users: list[DemoUser]) -> Path:
    doc = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for p in doc["profiles"]:
        if "csv" in p:
            p["csv"]["path"] = str(ROOT / "configs" / p["csv"]["path"])
    doc["web"] = {
        "users": [
            {
                "name": u.name,
                "party": u.party,
                "role": u.role,
                "password_hash": hash_password(u.password, n=2**12),
            }
            for u in users
        ]
    }
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def live_view(tmp_path: Path) -> Iterator[LiveViewBackend]:
    users = [
        DemoUser(f"{party}_{role[:2]}", party, role, f"pw-{party}-{role}")
        for party in ("factory", "utility")
        for role in ("operator", "viewer")
    ]
    config = site_with_users(tmp_path, users)
    args = [
        "sim",
        str(config),
        "--speed",
        "300",
        "--start",
        "160d",
        "--controller",
        "baseline",
        "--port",
        "0",
        "--no-progress",
    ]
    with ServiceProcess(args, tmp_path / "state") as svc:
        svc.wait_for(lambda: (svc.metric("symtwin_cycles") or 0) >= 3, 30, "a few cycles")
        yield LiveViewBackend(svc.url, load_site(config), {u.name: u for u in users})
