"""Item 1: mosquitto killed (SIGKILL) during sustained QoS 1 ingestion.

Sequence-numbered JSON messages go through the real MqttAdapter into the real historian outbox and on to
victoria-metrics. The broker (``persistence true``, ``autosave_interval 1`` so a kill -9 keeps the
persistent session's queue) is killed, stays away, and comes back on the same port. Checked at the store:
every sequence number of every tag present exactly once; the adapter is reconnected ≤ 5 s after the
broker is back. CI variant: 10 s outage at 200 messages/s × 5 tags; slow: 60 s at 500/s × 10 tags.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.base import Sample
from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
from adapters.mqtt.bench_helpers import json_bindings, json_messages, publish
from adapters.mqtt.client import MqttAdapter
from adapters.mqtt.config import MqttConfig
from adapters.mqtt.router import MqttRouter
from adapters.store import DeadLetterStore
from tests.support.reliability import record
from tests.support.servers import VictoriaMetrics, free_port, running_mosquitto


class Tee:
    """Counts what reaches the store's sink (duplicates that passed the adapter's dedupe) and passes on."""

    def __init__(self, sink: InfluxHistorian) -> None:
        self.sink = sink
        self.seen: collections.Counter[tuple[str, float]] = collections.Counter()
        self._lock = threading.Lock()

    def write(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            self.seen.update((s.tag, s.value) for s in samples)
        self.sink.write(samples)


@pytest.mark.parametrize(
    ("outage_s", "rate_hz", "tags"),
    [(10.0, 200.0, 5), pytest.param(60.0, 500.0, 10, marks=pytest.mark.slow, id="full-60s")],
)
async def test_broker_sigkill_loses_nothing(
    tmp_path: Path, victoria_metrics: VictoriaMetrics, outage_s: float, rate_hz: float, tags: int
) -> None:
    variant = "full" if outage_s >= 60 else "ci"
    started = time.monotonic()
    port = free_port()
    conf = (
        "user root\n"
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {tmp_path}/\nautosave_interval 1\nmax_queued_messages 0\n"
    )
    dead = DeadLetterStore(tmp_path / "dead.sqlite")
    hist = InfluxHistorian(
        InfluxParams(victoria_metrics.url, "park", "park"),
        OutboxParams(tmp_path / "outbox.sqlite"),
        dead,
        sender=SenderParams(backoff_max_s=1.0),
        measurement="rel1",
    )
    tee = Tee(hist)
    n = int(rate_hz * (outage_s + 6.0))
    t0 = float(int(time.time()) - 3600)  # message k: timestamp t0 + k ms, value k (its sequence number)
    with running_mosquitto(tmp_path, conf, port) as broker:
        cfg = MqttConfig(broker.host, port, client_id="rel1-sub", clean_start=False, session_expiry_s=3600)
        adapter = MqttAdapter(cfg, MqttRouter(json_bindings("plant/json", tags)), tee)
        await adapter.start()
        msgs = list(json_messages("plant/json", n, tags, t0))
        pub = asyncio.create_task(
            asyncio.to_thread(
                publish,
                broker.host,
                port,
                msgs,
                rate_hz=rate_hz,
                client_id="rel1-pub",
                timeout_s=120 + outage_s,
            )
        )
        try:
            await asyncio.sleep(2.0)
            broker.kill()  # SIGKILL: no chance to save anything on the way out
            killed_at = time.monotonic()
            await asyncio.sleep(outage_s)
            broker.start()
            back = time.monotonic()
            while not adapter.connected and time.monotonic() - back < 30.0:
                await asyncio.sleep(0.02)
            reconnect_s = time.monotonic() - back
            await pub
            end = time.monotonic() + 30 + outage_s
            while sum(tee.seen.values()) < n * tags and time.monotonic() < end:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # late redeliveries, if any, would show up now
            stats = adapter.stats()
        finally:
            await adapter.stop()
    sent_ok = hist.wait_sent(60)
    hist.close()
    dead.close()
    stored: dict[str, list[float]] = {}
    for series in victoria_metrics.export('{__name__="rel1_value"}'):
        labels = series["metric"]
        assert isinstance(labels, dict)
        values = series["values"]
        assert isinstance(values, list)
        stored[str(labels["tag"])] = [float(v) for v in values]
    expected = set(range(n))
    missing = sum(len(expected - {int(v) for v in stored.get(f"bench_{i}", [])}) for i in range(tags))
    dup_store = sum(len(v) - len(set(v)) for v in stored.values())
    dup_sink = sum(c - 1 for c in tee.seen.values() if c > 1)
    figure = {
        "outage_s": outage_s,
        "kill": "SIGKILL",
        "rate_msg_s": rate_hz,
        "tags_per_msg": tags,
        "samples_expected": n * tags,
        "samples_in_store": sum(len(v) for v in stored.values()),
        "missing_in_store": missing,
        "duplicates_in_store": dup_store,
        "duplicates_reaching_sink": dup_sink,
        "redeliveries_removed_by_adapter": stats.get("duplicates", 0),
        "reconnect_after_broker_back_s": round(reconnect_s, 3),
        "reconnects": stats["reconnects"],
        "broker_down_s": round(back - killed_at, 2),
    }
    ok = sent_ok and missing == 0 and dup_store == 0 and dup_sink == 0 and reconnect_s <= 5.0
    record(1, "MQTT broker SIGKILL during QoS 1 ingestion", figure, ok, variant, time.monotonic() - started)
    assert sent_ok, "historian did not deliver everything to the store"
    assert missing == 0
    assert dup_store == 0 and dup_sink == 0
    assert reconnect_s <= 5.0
