"""Broker outage during sustained QoS 1 ingestion: nothing missing, duplicates removed, quick reconnect.

mosquitto with persistence is stopped for 2 s (60 s in the slow variant, the reliability issue's case)
while a publisher keeps going at 500 messages/s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.base import Sample
from adapters.mqtt.bench_helpers import json_bindings, json_messages, publish
from adapters.mqtt.client import MqttAdapter
from adapters.mqtt.config import MqttConfig
from adapters.mqtt.router import MqttRouter
from tests.support.servers import free_port, running_mosquitto

T0 = 1_700_000_000.0


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._lock = threading.Lock()

    def write(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            self.samples.extend(samples)


@pytest.mark.parametrize(
    "outage_s",
    [2.0, pytest.param(60.0, marks=pytest.mark.slow, id="60s")],  # 60 s: the reliability issue's case
)
async def test_broker_outage_loses_nothing(tmp_path: Path, outage_s: float) -> None:
    port = free_port()
    conf = (
        "user root\n"  # as root mosquitto would drop to a user that cannot write pytest's tmp dir
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {tmp_path}/\nmax_queued_messages 0\n"
    )
    with running_mosquitto(tmp_path, conf, port) as broker:
        sink = ListSink()
        cfg = MqttConfig(broker.host, port, client_id="outage-sub", clean_start=False, session_expiry_s=600)
        adapter = MqttAdapter(cfg, MqttRouter(json_bindings("plant/json", 10)), sink)
        await adapter.start()
        rate = 500.0
        n = int(rate * (outage_s + 1.0))  # the publisher keeps going (paho queues) through the outage
        pub = asyncio.create_task(
            asyncio.to_thread(
                publish,
                broker.host,
                port,
                json_messages("plant/json", n, 10, T0),
                rate_hz=500.0,
                client_id="outage-pub",
            )
        )
        try:
            await asyncio.sleep(1.0)
            broker.stop()  # SIGTERM: mosquitto writes its persistence file on the way out
            await asyncio.sleep(outage_s)
            broker.start()
            back = time.monotonic()
            while not adapter.connected:
                assert time.monotonic() - back < 5.0, (
                    "adapter not reconnected within 5 s of the broker's return"
                )
                await asyncio.sleep(0.05)
            await pub
            deadline = time.monotonic() + 10 + outage_s
            while len(sink.samples) < n * 10 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            keys = [(s.tag, s.timestamp) for s in sink.samples]
            expected = {(f"bench_{i}", T0 + k * 1e-3) for k in range(n) for i in range(10)}
            assert set(keys) == expected  # nothing missing ...
            assert len(keys) == len(expected)  # ... and redeliveries removed
            assert adapter.stats()["reconnects"] == 1
        finally:
            await adapter.stop()
