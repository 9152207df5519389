"""Soak (slow): the store is stopped for 10 minutes while samples keep coming; afterwards every sample is
in the store exactly once and the backlog drained at ≥ 5× the ingest rate.

Run: ``.venv/bin/pytest tests/integration/test_influx_soak.py -m slow``. Knobs (environment):
SYMTWIN_SOAK_OUTAGE_S (600), SYMTWIN_SOAK_RATE (samples/s, 5000: e.g. 5,000 tags at 1 Hz).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from adapters.base import Sample
from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
from adapters.store import DeadLetterStore
from tests.support.servers import VictoriaMetrics

pytestmark = pytest.mark.slow

OUTAGE_S = float(os.environ.get("SYMTWIN_SOAK_OUTAGE_S", "600"))
RATE = int(os.environ.get("SYMTWIN_SOAK_RATE", "5000"))
PER_MESSAGE = 10


def stored_points(vm: VictoriaMetrics, window_s: float) -> int:
    """Points of ``soak_value`` in the last ``window_s`` (query API: cheaper than exporting millions)."""
    urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10).read()
    q = f"sum(count_over_time(soak_value[{int(window_s) + 60}s]))"
    data = urllib.parse.urlencode({"query": q, "time": f"{time.time():.3f}"}).encode()
    with urllib.request.urlopen(f"{vm.url}/api/v1/query", data=data, timeout=60) as r:
        result = json.loads(r.read())["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    # Skip before the store fixture starts when the run did not select -m slow.
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("soak test: run with -m slow")


def test_ten_minute_outage_loses_nothing_and_drains_fast(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    dl = DeadLetterStore(tmp_path / "dead.sqlite")
    hist = InfluxHistorian(
        InfluxParams(victoria_metrics.url, "park", "park"),
        OutboxParams(tmp_path / "outbox.sqlite", max_bytes=8 << 30),
        dl,
        sender=SenderParams(backoff_max_s=2.0),
        measurement="soak",
    )
    stop = threading.Event()
    written = [0]

    period = PER_MESSAGE / RATE
    assert period >= 0.001, "victoria-metrics keeps one sample per series and millisecond"
    t0 = time.time() - 3600

    def produce() -> None:
        # RATE samples/s in messages of 10, each tag once per message. Timestamps advance by exactly one
        # period per message (a producer catching up after a stall would otherwise repeat a millisecond).
        next_t = time.monotonic()
        k = 0
        while not stop.is_set():
            ts = t0 + k * period
            hist.write([Sample(f"tag{j}", ts, float(k)) for j in range(PER_MESSAGE)])
            written[0] += PER_MESSAGE
            k += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(5)
    victoria_metrics.stop()
    time.sleep(OUTAGE_S)
    hist.flush()
    backlog = hist.metrics().depth
    victoria_metrics.start()
    t_up = time.monotonic()
    # Drained: the queue is back to what steady state holds (less than one batch).
    while hist.metrics().depth > 5000 and time.monotonic() - t_up < OUTAGE_S:
        time.sleep(0.05)
    drain_s = time.monotonic() - t_up
    time.sleep(5)
    stop.set()
    producer.join()
    assert hist.wait_sent(60)
    m = hist.metrics()
    hist.close()
    dl.close()
    drain_rate = backlog / drain_s + RATE  # ingest continued while the backlog drained
    print(
        f"backlog {backlog} samples drained in {drain_s:.1f} s: {drain_rate:.0f} samples/s = {drain_rate / RATE:.1f}x ingest"
    )
    assert (m.dropped, m.dead_lettered) == (0, 0)
    assert m.sent == written[0]
    assert stored_points(victoria_metrics, time.time() - t0) == written[0]
    assert backlog >= 0.9 * RATE * OUTAGE_S
    assert drain_rate >= 5 * RATE
