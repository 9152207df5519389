"""Load generation for benchmarks and tests: publish N QoS 1 messages (JSON or Sparkplug B) at a rate.

For ``benchmarks/ingest.py`` (and ``benchmarks/mqtt_ingest.py``):

    bindings = json_bindings("bench/json", tags_per_message=10)          # → MqttRouter(json_topics=...)
    msgs = json_messages("bench/json", n_messages=5000, tags_per_message=10, t0_s=1.7e9)
    publish(host, port, msgs, rate_hz=None)                               # blocks until every PUBACK

Every sample has tag ``bench_<i>`` and a unique timestamp ``t0_s + k * 1e-3`` (message k), and value ``k``,
so a consumer can check for gaps and duplicates. Run ``publish`` in another process when measuring the
consumer (both are Python and would otherwise share one GIL): ``publish_in_process``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from collections.abc import Iterable, Iterator

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from adapters.mqtt.jsonpayload import JsonField
from adapters.mqtt.sparkplug import DataType, Metric, MetricKey, Payload, encode_payload
from adapters.tagmap import TagBinding

BENCH_GROUP, BENCH_EDGE = "bench", "edge1"


def tag_name(i: int) -> str:
    return f"bench_{i}"


def json_bindings(topic: str, tags_per_message: int) -> dict[str, list[JsonField]]:
    """One topic carrying ``tags_per_message`` values at ``/v/<i>`` with a shared timestamp ``/ts`` [s]."""
    return {topic: [JsonField.of(TagBinding(tag_name(i)), f"/v/{i}", "/ts") for i in range(tags_per_message)]}


def json_messages(
    topic: str, n_messages: int, tags_per_message: int, t0_s: float
) -> Iterator[tuple[str, bytes]]:
    for k in range(n_messages):
        body = {"ts": t0_s + k * 1e-3, "v": [float(k)] * tags_per_message}
        yield topic, json.dumps(body, separators=(",", ":")).encode()


def sparkplug_bindings(tags_per_message: int) -> dict[MetricKey, TagBinding]:
    return {
        MetricKey(BENCH_GROUP, BENCH_EDGE, None, f"m{i}"): TagBinding(tag_name(i))
        for i in range(tags_per_message)
    }


def sparkplug_messages(n_messages: int, tags_per_message: int, t0_s: float) -> Iterator[tuple[str, bytes]]:
    """An NBIRTH (seq 0, aliases 0..n-1) then NDATA messages with aliased double metrics, seq wrapping at 256."""
    base = f"spBv1.0/{BENCH_GROUP}/{{}}/{BENCH_EDGE}"
    t0_ms = int(t0_s * 1000)
    birth = Payload(
        timestamp=t0_ms,
        seq=0,
        metrics=[Metric(name="bdSeq", datatype=DataType.INT64, value=0)]
        + [
            Metric(name=f"m{i}", alias=i, datatype=DataType.DOUBLE, value=0.0)
            for i in range(tags_per_message)
        ],
    )
    yield base.format("NBIRTH"), encode_payload(birth)
    for k in range(1, n_messages + 1):
        p = Payload(
            timestamp=t0_ms + k,
            seq=k % 256,
            metrics=[
                Metric(alias=i, datatype=DataType.DOUBLE, value=float(k)) for i in range(tags_per_message)
            ],
        )
        yield base.format("NDATA"), encode_payload(p)


def publish(
    host: str,
    port: int,
    messages: Iterable[tuple[str, bytes]],
    *,
    rate_hz: float | None = None,
    client_id: str = "symtwin-bench-pub",
    max_inflight: int = 1000,
    timeout_s: float = 120.0,
) -> float:
    """Publish every message at QoS 1 (at ``rate_hz`` messages/s, or as fast as possible) and wait for
    every PUBACK. Returns the elapsed time [s]; raises TimeoutError if acks are missing after ``timeout_s``.

    Survives broker outages: paho keeps QoS 1 messages published while disconnected and (re)sends them
    after it reconnects; completion is counted from PUBACKs (``on_publish``), not from publish() results.
    """
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.max_inflight_messages_set(max_inflight)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(1, 1)
    connected = threading.Event()
    acked = [0]  # PUBACKs; mids wrap at 65535, so count rather than match them
    lock = threading.Lock()

    def on_publish(client: paho.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        with lock:
            acked[0] += 1

    c.on_connect = lambda *a: connected.set()
    c.on_publish = on_publish
    c.connect(host, port)
    c.loop_start()
    try:
        if not connected.wait(10):
            raise TimeoutError(f"publisher could not connect to {host}:{port}")
        sent = 0
        t0 = time.perf_counter()
        for k, (topic, payload) in enumerate(messages):
            if rate_hz is not None:
                delay = t0 + k / rate_hz - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            c.publish(topic, payload, qos=1)
            sent += 1
        deadline = time.monotonic() + timeout_s
        while True:
            with lock:
                if acked[0] >= sent:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"publisher: {sent - acked[0]} PUBACKs missing after {timeout_s} s")
            time.sleep(0.01)
        return time.perf_counter() - t0
    finally:
        c.disconnect()
        c.loop_stop()


def _publish_child(
    host: str, port: int, kind: str, n: int, per: int, t0_s: float, rate: float | None
) -> None:
    msgs = json_messages("bench/json", n, per, t0_s) if kind == "json" else sparkplug_messages(n, per, t0_s)
    publish(host, port, list(msgs), rate_hz=rate)


def publish_in_process(
    host: str,
    port: int,
    kind: str,
    n_messages: int,
    tags_per_message: int,
    t0_s: float,
    rate_hz: float | None = None,
) -> mp.process.BaseProcess:
    """Start a separate process publishing ``kind`` ("json" on topic ``bench/json``, or "sparkplug")."""
    ctx = mp.get_context("spawn")
    p = ctx.Process(
        target=_publish_child,
        args=(host, port, kind, n_messages, tags_per_message, t0_s, rate_hz),
        daemon=True,
    )
    p.start()
    return p
