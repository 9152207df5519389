"""Browser fixtures for the live view: Debian chromium driven by Playwright, offline flags, fresh profile.

``live_view`` starts the backend the tests run against. Today that is the demo harness
(tests/support/web_demo.py: the real web app fed by a moving snapshot source); to run the same tests
against the real service, make this fixture start ``symtwin sim`` and return a
:class:`~tests.support.web_demo.LiveViewBackend` with its URL and users — the tests only use the
page and the HTTP API, never the harness internals.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.web_demo import LiveViewBackend, serve_demo

CHROMIUM = "/usr/bin/chromium"
OFFLINE_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def live_view(tmp_path: Path) -> Iterator[LiveViewBackend]:
    with serve_demo(workdir=tmp_path) as backend:
        yield backend


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[object]:
    """A persistent chromium context with a fresh --user-data-dir (Playwright's sync API)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    playwright_sync = pytest.importorskip("playwright.sync_api")
    profile = tmp_path / "chromium-profile"
    with playwright_sync.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=OFFLINE_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield ctx
        finally:
            ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
