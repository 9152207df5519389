"""Live view with 1,000 tags: push delay, frame handling time in the page, server cost per frame.

A real chromium (headless, offline flags) shows the live view served by the real web app, fed by the
demo snapshot source (tests/support/web_demo.py) with 1,000 synthetic tags on top of configs/demo.yaml,
one snapshot every 0.5 s. The page records, per pushed frame, the delay from the snapshot's publication
(wall clock, same machine) to its arrival in the page, and the time its handler spends updating the DOM.
Side by side in the same run: the same page with only the demo's own 7 tags (baseline), reported as
ratios. Chromium's own counters give the page's main-thread time per frame (script, style, layout,
paint). Server side: time to filter and serialise one party's frame, and its size.

Usage: .venv/bin/python benchmarks/live_view.py [--seconds 20] [--tags 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result
from tests.e2e.conftest import CHROMIUM, OFFLINE_FLAGS
from tests.support.web_demo import serve_demo

USER = "utility_vi"  # the synthetic tags belong to utility


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))] if s else float("nan")


def run_page(n_tags: int, seconds: float, workdir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with (
        serve_demo(workdir=workdir, extra_tags=n_tags, extra_owner="utility", period_s=0.5) as b,
        sync_playwright() as p,
    ):
        ctx = p.chromium.launch_persistent_context(
            str(workdir / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=OFFLINE_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = ctx.new_page()
            page.goto(b.url + "/login")
            page.fill("#user", USER)
            page.fill("#password", b.users[USER].password)
            page.click("#login-button")
            page.wait_for_url(b.url + "/")
            page.wait_for_function("() => window.__symtwin && window.__symtwin.frames >= 2", timeout=30_000)
            page.evaluate(
                """() => { window.__long = []; new PerformanceObserver((l) => { for (const e of l.getEntries())
                   window.__long.push(e.duration); }).observe({type: 'longtask', buffered: false});
                   window.__symtwin.delays.length = 0; window.__symtwin.handleMs.length = 0;
                   window.__f0 = window.__symtwin.frames; }"""
            )
            cdp = ctx.new_cdp_session(page)
            cdp.send("Performance.enable")
            m0 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            t0 = time.monotonic()
            time.sleep(seconds / 2)
            # an operator action while frames stream in: filter the table, open a unit from a row
            c0 = time.perf_counter()
            page.fill("#tag-filter", "storage")
            page.click('#tags tbody tr[data-tag="utility.storage.top_t"]')
            page.wait_for_selector("#unit-tags tbody tr")
            click_ms = (time.perf_counter() - c0) * 1000
            time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
            elapsed = time.monotonic() - t0
            m1 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            st = page.evaluate(
                "() => ({d: window.__symtwin.delays, h: window.__symtwin.handleMs, "
                "n: window.__symtwin.frames - window.__f0, long: window.__long, "
                "rows: parseInt(document.getElementById('tag-count').textContent)})"
            )
        finally:
            ctx.close()
    delays_ms = [d * 1000 for d in st["d"]]
    n = max(1, st["n"])
    return {
        # all main-thread work of the page (script, style, layout, paint) per received frame
        "browser_task_ms_per_frame": (m1["TaskDuration"] - m0["TaskDuration"]) * 1000 / n,
        "browser_layout_ms_per_frame": (m1["LayoutDuration"] - m0["LayoutDuration"]) * 1000 / n,
        "rows": st["rows"],
        "frames_per_s": st["n"] / elapsed,
        "delay_ms_p50": pct(delays_ms, 0.5),
        "delay_ms_p95": pct(delays_ms, 0.95),
        "delay_ms_max": max(delays_ms),
        "handle_ms_p50": pct(st["h"], 0.5),
        "handle_ms_p95": pct(st["h"], 0.95),
        "handle_ms_max": max(st["h"]),
        "long_tasks": len(st["long"]),
        "long_task_ms_max": max(st["long"], default=0.0),
        "unit_open_ms": click_ms,
    }


def server_frame_cost(n_tags: int, workdir: Path) -> dict[str, float]:
    """Filter + serialise one party's frame for fresh snapshots (what the pump does per snapshot)."""
    from symtwin.web.view import PartyView

    with serve_demo(workdir=workdir, extra_tags=n_tags, extra_owner="utility", period_s=0.0) as b:
        assert b.source is not None
        policy = b.source.site  # noqa: F841  (the app's policy is internal; rebuild the same one)
        from tests.support.web_demo import demo_policy

        view = PartyView("utility", demo_policy(b.site, b.source.tags), b.source.info)
        times, sizes = [], []
        for _ in range(60):
            snap = b.source.snapshot()
            t = time.perf_counter()
            view.update(snap)
            data = view.frame_event(snap)
            times.append((time.perf_counter() - t) * 1000)
            sizes.append(len(data))
    return {
        "server_frame_ms_p50": statistics.median(times),
        "server_frame_ms_max": max(times),
        "frame_bytes": statistics.median(sizes),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tags", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        base = run_page(0, args.seconds, Path(d) / "base")
        big = run_page(args.tags, args.seconds, Path(d) / "big")
        server = server_frame_cost(args.tags, Path(d) / "server")
    figures: dict[str, Any] = {
        "tags": args.tags,
        "seconds": args.seconds,
        "snapshot_period_s": 0.5,
        "note": "taken on a shared 2-core machine under load from other work",
    }
    figures.update({f"big_{k}": v for k, v in big.items()})
    figures.update({f"base_{k}": v for k, v in base.items()})
    figures.update(server)
    figures["ratio_handle_p50_big_vs_base"] = big["handle_ms_p50"] / base["handle_ms_p50"]
    figures["ratio_delay_p50_big_vs_base"] = big["delay_ms_p50"] / base["delay_ms_p50"]
    write_result("live_view", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
