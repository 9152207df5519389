"""The live view in a real headless chromium (offline flags) against a running backend.

The page loads and the Sankey values move; an operator switches the mode and overrides a setpoint and
the service obeys; a viewer's attempt is refused; a party's user never receives another party's private
tag, neither in the page nor from the API. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.support.web_demo import LiveViewBackend

PRIVATE_TO_UTILITY = (
    "utility.hx.t_out",
    "utility.storage.top_t",
    "utility.storage.charge_sp",
    "utility.boiler.load_sp",
)


def login(context: Any, backend: LiveViewBackend, user: str) -> Any:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(backend.url + "/")
    page.wait_for_url(backend.url + "/login")
    page.fill("#user", user)
    page.fill("#password", backend.users[user].password)
    page.click("#login-button")
    page.wait_for_url(backend.url + "/")
    page.wait_for_function("() => window.__symtwin && window.__symtwin.frames >= 2", timeout=10_000)
    page.errors = errors  # checked by the tests
    return page


def api(page: Any, path: str, body: dict | None = None) -> dict:
    """Call the API from inside the page (same cookies, same origin) → {status, body}."""
    return page.evaluate(
        """async ([path, body]) => {
            const s = await (await fetch('/api/session')).json();
            const opts = body === null ? {} : {method: 'POST', body: JSON.stringify(body),
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf}};
            const r = await fetch(path, opts);
            return {status: r.status, body: await r.text()};
        }""",
        [path, body],
    )


def flow_labels(page: Any) -> list[str]:
    return page.eval_on_selector_all("#sankey text.flow-label", "ts => ts.map(t => t.textContent)")


def test_page_shows_moving_sankey(live_view: LiveViewBackend, browser_context: Any, artifacts: Path) -> None:
    page = login(browser_context, live_view, "utility_op")
    assert page.title() == "symtwin live view"
    page.wait_for_selector("#sankey .node rect")
    units = page.eval_on_selector_all("#sankey .node", "ns => ns.map(n => n.dataset.unit)")
    assert set(units) == {"factory_heat", "hx"}
    first = flow_labels(page)
    assert first and "MW" in first[0], first
    time.sleep(2.0)
    second = flow_labels(page)
    assert "MW" in second[0] and second != first  # the plant moves
    width = page.get_attribute("#sankey path.link", "stroke-width")
    assert width is not None and float(width) > 1.5
    assert page.text_content("#mode") == "auto"
    rows = page.eval_on_selector_all("#tags tbody tr.clickable", "rs => rs.map(r => r.dataset.tag)")
    assert "factory.heat" in rows and "utility.storage.top_t" in rows and "factory.use_sp" not in rows
    # click through to a unit: measured vs estimate, tank layers, trend, plan vs actual
    page.click('#sankey .node[data-unit="hx"] rect')
    page.wait_for_selector("#unit-tags tbody tr")
    page.click('#tags tbody tr[data-tag="utility.storage.top_t"]')
    page.wait_for_function("() => document.querySelectorAll('#unit-states svg.tank rect').length === 10")
    page.wait_for_selector("#trend path.line")
    page.wait_for_selector("#plans svg[data-plan='utility.storage.charge_sp'] path.planned")
    est = page.text_content('#unit-tags tbody tr[data-tag="utility.storage.top_t"] td:nth-child(3)')
    assert est is not None and "±" in est
    stats = page.evaluate("window.__symtwin")
    assert max(stats["delays"][1:]) < 1.0
    page.screenshot(path=str(artifacts / "live_view_operator.png"), full_page=True)
    assert page.errors == []


def test_operator_switches_mode_and_overrides(
    live_view: LiveViewBackend, browser_context: Any, artifacts: Path
) -> None:
    page = login(browser_context, live_view, "utility_op")
    page.click('#mode-buttons button[data-mode="shadow"]')
    page.wait_for_function("() => document.getElementById('mode').textContent === 'shadow'", timeout=5_000)
    assert json.loads(api(page, "/api/snapshot")["body"])["mode"] == "shadow"

    page.click('#tags tbody tr[data-tag="utility.boiler.load_sp"]')
    page.wait_for_selector('input[data-override="utility.boiler.load_sp"]')
    page.fill('input[data-override="utility.boiler.load_sp"]', "37.5")
    page.click('#unit-tags tr[data-tag="utility.boiler.load_sp"] button[data-action="override"]')
    page.wait_for_function(
        "() => (document.querySelector('#tags tr[data-tag=\"utility.boiler.load_sp\"] td:nth-child(4)') || {})"
        ".textContent?.includes('override 37.50')",
        timeout=5_000,
    )
    snap = json.loads(api(page, "/api/snapshot")["body"])
    assert snap["tags"]["utility.boiler.load_sp"][4] == 37.5  # the service applies the override
    page.screenshot(path=str(artifacts / "live_view_override.png"), full_page=True)

    page.click('#unit-tags tr[data-tag="utility.boiler.load_sp"] button[data-action="release"]')
    page.wait_for_function(
        "() => !document.querySelector('#tags tr[data-tag=\"utility.boiler.load_sp\"] td:nth-child(4)')"
        ".textContent.includes('override')",
        timeout=5_000,
    )
    # another party's setpoint is not the operator's to override (the page offers no input for it either)
    assert api(page, "/api/override", {"tag": "factory.use_sp", "value": 10})["status"] == 403
    assert page.errors == []


def test_viewer_cannot_change_anything(live_view: LiveViewBackend, browser_context: Any) -> None:
    page = login(browser_context, live_view, "utility_vi")
    assert not page.is_visible("#mode-buttons")
    page.click('#tags tbody tr[data-tag="utility.boiler.load_sp"]')
    page.wait_for_selector("#unit-tags tbody tr")
    assert page.query_selector('input[data-override="utility.boiler.load_sp"]') is None
    for path, body in (
        ("/api/mode", {"mode": "off"}),
        ("/api/override", {"tag": "utility.boiler.load_sp", "value": 40}),
        ("/api/release", {"tag": "utility.boiler.load_sp"}),
    ):
        r = api(page, path, body)
        assert r["status"] == 403, (path, r)
    time.sleep(0.7)
    snap = json.loads(api(page, "/api/snapshot")["body"])
    assert snap["mode"] == "auto" and snap["tags"]["utility.boiler.load_sp"][4] is None


def test_party_never_sees_another_partys_private_tags(
    live_view: LiveViewBackend, browser_context: Any, artifacts: Path
) -> None:
    page = login(browser_context, live_view, "factory_op")
    # what the page's own event stream delivers, captured in the page for 2 s
    pushed = page.evaluate(
        """() => new Promise((resolve) => {
            const got = [];
            const es = new EventSource('/api/events');
            const keep = (ev) => got.push(ev.data);
            es.addEventListener('meta', keep);
            es.addEventListener('frame', keep);
            setTimeout(() => { es.close(); resolve(got); }, 2000);
        })"""
    )
    assert len(pushed) >= 3
    bodies = [*pushed, page.content()]
    for path in ("/api/snapshot", "/api/meta", "/api/units/storage", "/api/units/hx", "/api/units/town"):
        r = api(page, path)
        assert r["status"] == 200
        bodies.append(r["body"])
    for tag in PRIVATE_TO_UTILITY:
        assert api(page, f"/api/trend?tag={tag}&hours=1")["status"] == 404
    everything = "\n".join(bodies)
    for tag in PRIVATE_TO_UTILITY:
        assert tag not in everything, tag
    frame = json.loads(pushed[-1])
    assert "utility.town.heat" not in frame["tags"]  # shared with factory only as hourly aggregates
    assert set(frame["tags"]) == {"factory.heat", "factory.use_sp"}
    # the same user's page: its own tags, the aggregated one, nothing else
    rows = page.eval_on_selector_all("#tags tbody tr.clickable", "rs => rs.map(r => r.dataset.tag)")
    assert sorted(rows) == ["factory.heat", "factory.use_sp", "utility.town.heat"]
    status = page.text_content('#tags tr[data-tag="utility.town.heat"] td:nth-child(7)')
    assert status == "aggregated"
    page.screenshot(path=str(artifacts / "live_view_factory.png"), full_page=True)
    assert page.errors == []
