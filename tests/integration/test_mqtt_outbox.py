"""MQTT adapter into the real historian: mosquitto QoS 1 → MqttAdapter → InfluxHistorian outbox →
victoria-metrics, dead letters into the real DeadLetterStore; and the persistent session."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from adapters.base import Sample
from adapters.influx import InfluxHistorian, InfluxParams, OutboxParams, SenderParams
from adapters.mqtt.bench_helpers import json_bindings, json_messages, publish
from adapters.mqtt.client import MqttAdapter
from adapters.mqtt.config import MqttConfig
from adapters.mqtt.router import MqttRouter
from adapters.store import DeadLetterStore
from tests.support.servers import Mosquitto, VictoriaMetrics

T0 = time.time() - 600  # victoria-metrics refuses points older than its retention (1 month)
SERIES = '{__name__="symtwin_sample_value"}'


async def wait_until(cond: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return bool(cond())  # type: ignore[operator]


async def test_mqtt_to_victoria_metrics_through_the_outbox(
    mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    dead = DeadLetterStore(tmp_path / "dead.sqlite", flush_interval_s=0.02)
    historian = InfluxHistorian(
        InfluxParams(victoria_metrics.url, org="symtwin", bucket="test"),
        OutboxParams(tmp_path / "outbox.sqlite"),
        dead,
        sender=SenderParams(backoff_initial_s=0.05, idle_poll_s=0.05),
    )
    router = MqttRouter(json_bindings("bench/json", 10))
    adapter = MqttAdapter(
        MqttConfig(mosquitto.host, mosquitto.port, client_id="outbox-test"),
        router,
        historian,
        dead_letter=dead.add,
    )
    await adapter.start()
    try:
        msgs = [
            *json_messages("bench/json", 300, 10, T0),
            ("bench/json", b"{broken"),
            ("bench/json", f'{{"ts": {T0}, "v": [NaN]}}'.encode()),
        ]
        await asyncio.to_thread(publish, mosquitto.host, mosquitto.port, msgs)
        assert await wait_until(lambda: adapter.stats().get("samples", 0) >= 3000, 10)
        assert await asyncio.to_thread(historian.wait_sent, 15.0)
        assert await wait_until(lambda: victoria_metrics.count_points(SERIES) >= 3000, 15)
        assert victoria_metrics.count_points(SERIES) == 3000
        dead.flush()
        counts = dead.counts()
        assert counts.get("malformed_json") == 1
        assert counts.get("non_finite") == 1
        assert counts.get("missing_pointer") == 9  # the NaN message has no /v/1 .. /v/9
    finally:
        await adapter.stop()
        historian.close()
        dead.close()


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._lock = threading.Lock()

    def write(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            self.samples.extend(samples)


async def test_messages_published_while_away_arrive_on_return(mosquitto: Mosquitto) -> None:
    """A fixed client id + clean_start=False + session expiry: the broker queues QoS 1 messages for us."""
    sink = ListSink()
    cfg = MqttConfig(
        mosquitto.host, mosquitto.port, client_id="persistent-1", clean_start=False, session_expiry_s=600
    )
    first = MqttAdapter(cfg, MqttRouter(json_bindings("bench/json", 10)), sink)
    await first.start()
    await first.stop()
    await asyncio.to_thread(
        publish, mosquitto.host, mosquitto.port, list(json_messages("bench/json", 50, 10, T0))
    )
    assert sink.samples == []
    again = MqttAdapter(cfg, MqttRouter(json_bindings("bench/json", 10)), sink)
    await again.start()
    try:
        assert await wait_until(lambda: len(sink.samples) >= 500, 5)
        assert len({(s.tag, s.timestamp) for s in sink.samples}) == len(sink.samples) == 500
    finally:
        await again.stop()
