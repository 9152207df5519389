"""The MQTT adapter against a real mosquitto: JSON and Sparkplug B in, commands out, bad input, TLS."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.base import ConnectionLost, DeadLetter, Sample
from adapters.mqtt.bench_helpers import json_bindings, json_messages, publish
from adapters.mqtt.client import ConnectRefused, MqttAdapter
from adapters.mqtt.config import MqttConfig, SetpointBinding
from adapters.mqtt.jsonpayload import JsonField
from adapters.mqtt.router import MqttRouter
from adapters.mqtt.sparkplug import (
    REBIRTH_METRIC,
    DataType,
    Metric,
    MetricKey,
    Payload,
    decode_payload,
    encode_payload,
)
from adapters.tagmap import TagBinding
from tests.support.servers import Mosquitto, free_port, running_mosquitto
from tests.support.tls import TestPki, make_test_pki

T0 = 1_700_000_000.0


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._lock = threading.Lock()

    def write(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            self.samples.extend(samples)


class Watcher:
    """A plain paho subscriber that records what arrives on a topic filter."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, int]] = []
        self._ready = threading.Event()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.c.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: self._ready.set()
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload), m.qos))
        self.c.connect(host, port)
        self.c.loop_start()
        assert self._ready.wait(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


async def wait_until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def pub(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    publish(broker.host, broker.port, messages, client_id=f"test-pub-{time.monotonic_ns()}")


SP_BINDINGS = {
    MetricKey("park", "chp", None, "Steam/Pressure"): TagBinding(
        "p_header", factor=1e5, lower=0.0, upper=50e5
    ),
    MetricKey("park", "chp", "boiler1", "Load"): TagBinding("q_boiler", factor=1e6),
}
HX = {"site/hx1": [JsonField.of(TagBinding("t_hx1", offset=273.15, lower=250, upper=450), "/t", "/ts")]}


@pytest.fixture
async def adapter(mosquitto: Mosquitto) -> AsyncIterator[tuple[MqttAdapter, ListSink, list[DeadLetter]]]:
    sink = ListSink()
    dead: list[DeadLetter] = []
    router = MqttRouter(
        {**HX, **json_bindings("bench/json", 10)},
        SP_BINDINGS,
        extra_subscriptions=["site/#"],
        max_payload_bytes=2048,
    )
    cfg = MqttConfig(
        mosquitto.host, mosquitto.port, client_id="symtwin-test", connect_timeout_s=5.0, command_timeout_s=2.0
    )
    setpoints = {
        "t_supply_sp": SetpointBinding(
            "site/cmd/t_supply", TagBinding("t_supply_sp", offset=273.15, lower=300, upper=400)
        )
    }
    a = MqttAdapter(cfg, router, sink, dead_letter=dead.append, setpoints=setpoints)
    await a.start()
    yield a, sink, dead
    await a.stop()


async def test_json_messages_arrive_in_si_without_loss(
    adapter: tuple[MqttAdapter, ListSink, list[DeadLetter]], mosquitto: Mosquitto
) -> None:
    a, sink, dead = adapter
    await asyncio.to_thread(pub, mosquitto, list(json_messages("bench/json", 200, 10, T0)))
    await wait_until(lambda: len(sink.samples) >= 2000)
    assert len(sink.samples) == 2000 and dead == []
    assert {(s.tag, s.timestamp) for s in sink.samples} == {
        (f"bench_{i}", T0 + k * 1e-3) for i in range(10) for k in range(200)
    }
    await asyncio.to_thread(pub, mosquitto, [("site/hx1", json.dumps({"t": 80.0, "ts": T0}).encode())])
    await wait_until(lambda: any(s.tag == "t_hx1" for s in sink.samples))
    assert [s.value for s in sink.samples if s.tag == "t_hx1"] == [pytest.approx(353.15)]
    assert a.stats()["samples"] == 2001


async def test_bad_inputs_are_dead_lettered_and_the_adapter_keeps_going(
    adapter: tuple[MqttAdapter, ListSink, list[DeadLetter]], mosquitto: Mosquitto
) -> None:
    a, sink, dead = adapter
    bad = [
        ("site/hx1", b"{not json"),
        ("site/hx1", b'{"t": "hot", "ts": 1700000000}'),
        ("site/hx1", b'{"t": NaN, "ts": 1700000000}'),
        ("site/hx1", b'{"t": 1e400, "ts": 1700000000}'),
        ("site/hx1", b'{"t": 500, "ts": 1700000000}'),
        ("site/hx1", b"{" + b" " * 4096 + b"}"),
        ("site/unbound", b"{}"),
        ("spBv1.0/park/NDATA/chp", b"\x12\x10truncated"),
    ]
    await asyncio.to_thread(pub, mosquitto, [*bad, ("site/hx1", json.dumps({"t": 20.0, "ts": T0}).encode())])
    await wait_until(lambda: any(s.tag == "t_hx1" for s in sink.samples))
    reasons = sorted(d.reason.split(":")[0] for d in dead)
    assert reasons == sorted(
        [
            "malformed_json",
            "wrong_type",
            "non_finite",
            "non_finite",
            "out_of_range",
            "oversized_payload",
            "unknown_topic",
            "sparkplug_undecodable",
        ]
    )
    assert all(d.source.startswith("mqtt:") and d.payload for d in dead)
    stats = a.stats()
    assert stats["non_finite"] == 2 and stats["connected"] == 1
    assert len(list(a.dead_letters())) == len(bad)


async def test_sparkplug_births_data_and_rebirth_on_seq_gap(
    adapter: tuple[MqttAdapter, ListSink, list[DeadLetter]], mosquitto: Mosquitto
) -> None:
    a, sink, dead = adapter
    watcher = Watcher(mosquitto.host, mosquitto.port, "spBv1.0/park/NCMD/#")
    try:
        ms = int(T0 * 1000)
        birth = Payload(
            timestamp=ms,
            seq=0,
            metrics=[
                Metric(name="bdSeq", datatype=DataType.INT64, value=1),
                Metric(name="Steam/Pressure", alias=1, datatype=DataType.FLOAT, value=10.0),
            ],
        )
        dbirth = Payload(
            timestamp=ms, seq=1, metrics=[Metric(name="Load", alias=2, datatype=DataType.DOUBLE, value=20.0)]
        )
        ddata = Payload(
            timestamp=ms + 1000, seq=2, metrics=[Metric(alias=2, datatype=DataType.DOUBLE, value=21.0)]
        )
        gap = Payload(
            timestamp=ms + 2000, seq=7, metrics=[Metric(alias=1, datatype=DataType.FLOAT, value=11.0)]
        )
        await asyncio.to_thread(
            pub,
            mosquitto,
            [
                ("spBv1.0/park/NBIRTH/chp", encode_payload(birth)),
                ("spBv1.0/park/DBIRTH/chp/boiler1", encode_payload(dbirth)),
                ("spBv1.0/park/DDATA/chp/boiler1", encode_payload(ddata)),
                ("spBv1.0/park/NDATA/chp", encode_payload(gap)),
            ],
        )
        await wait_until(lambda: len(sink.samples) >= 4 and len(watcher.messages) >= 1)
        assert [(s.tag, s.timestamp, s.value) for s in sink.samples] == [
            ("p_header", T0, 10e5),
            ("q_boiler", T0, 20e6),
            ("q_boiler", T0 + 1, 21e6),
            ("p_header", T0 + 2, 11e5),
        ]
        topic, payload, qos = watcher.messages[0]
        assert topic == "spBv1.0/park/NCMD/chp" and qos == 1
        m = decode_payload(payload).metrics[0]
        assert (m.name, m.value) == (REBIRTH_METRIC, True)
        assert a.stats()["sparkplug_seq_gap"] == 1 and dead == []
    finally:
        watcher.close()


async def test_setpoints_go_out_as_confirmed_qos1_commands(
    adapter: tuple[MqttAdapter, ListSink, list[DeadLetter]], mosquitto: Mosquitto
) -> None:
    a, _, _ = adapter
    watcher = Watcher(mosquitto.host, mosquitto.port, "site/cmd/#")
    try:
        ok = await a.write_setpoints({"t_supply_sp": 353.15, "unknown": 1.0})
        assert ok == {"t_supply_sp": True, "unknown": False}
        assert await a.write_setpoints({"t_supply_sp": math.nan}) == {"t_supply_sp": False}
        assert await a.write_setpoints({"t_supply_sp": 500.0}) == {"t_supply_sp": False}  # outside bounds
        await a.write_setpoints({"t_supply_sp": 343.15})
        await wait_until(lambda: len(watcher.messages) >= 2)
        bodies = [json.loads(p) for _, p, _ in watcher.messages]
        assert [round(b["value"], 6) for b in bodies] == [80.0, 70.0]  # engineering unit (degC) on the wire
        assert bodies[1]["seq"] == bodies[0]["seq"] + 1 and all(q == 1 for _, _, q in watcher.messages)
    finally:
        watcher.close()


async def test_broker_restart_reconnects_and_resubscribes(
    adapter: tuple[MqttAdapter, ListSink, list[DeadLetter]], mosquitto: Mosquitto
) -> None:
    a, sink, _ = adapter
    mosquitto.kill()
    await wait_until(lambda: not a.connected, 5)
    assert await a.write_setpoints({"t_supply_sp": 353.15}) == {
        "t_supply_sp": False
    }  # never queued while down
    mosquitto.start()
    back = time.monotonic()
    await wait_until(lambda: a.connected, 10)
    assert time.monotonic() - back <= 5.0
    await asyncio.sleep(0.2)  # the SUBACK follows the CONNACK
    await asyncio.to_thread(pub, mosquitto, [("site/hx1", json.dumps({"t": 20.0, "ts": T0}).encode())])
    await wait_until(lambda: len(sink.samples) == 1)
    assert a.stats()["reconnects"] == 1


# ------------------------------------------------------------------ TLS and credentials


async def test_tls_with_test_ca_and_password(tls_broker: tuple[Mosquitto, TestPki]) -> None:
    broker, pki = tls_broker
    sink = ListSink()
    cfg = MqttConfig(
        "localhost",
        broker.port,
        client_id="tls-ok",
        username="plant",
        password="s3cret",
        tls_ca=pki.ca,
        connect_timeout_s=5,
    )
    a = MqttAdapter(cfg, MqttRouter(HX), sink)
    await a.start()
    try:
        # a plain publisher over the same TLS listener
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.tls_set(ca_certs=str(pki.ca))
        c.username_pw_set("plant", "s3cret")
        c.connect("localhost", broker.port)
        c.loop_start()
        c.publish("site/hx1", json.dumps({"t": 20.0, "ts": T0}), qos=1).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
        await wait_until(lambda: len(sink.samples) == 1)
    finally:
        await a.stop()


async def test_wrong_password_is_refused(tls_broker: tuple[Mosquitto, TestPki]) -> None:
    broker, pki = tls_broker
    cfg = MqttConfig(
        "localhost",
        broker.port,
        client_id="tls-bad",
        username="plant",
        password="wrong",
        tls_ca=pki.ca,
        connect_timeout_s=5,
    )
    a = MqttAdapter(cfg, MqttRouter(HX), ListSink())
    with pytest.raises(ConnectRefused, match=r"(?i)user name or password|not authori"):
        await a.start()


# paho leaves the socket of a failed TLS handshake for the garbage collector (a ResourceWarning, not ours).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_untrusted_server_certificate_never_connects(tls_broker: tuple[Mosquitto, TestPki]) -> None:
    broker, pki = tls_broker
    cfg = MqttConfig(
        "localhost",
        broker.port,
        client_id="tls-untrusted",
        username="plant",
        password="s3cret",
        tls_ca=pki.other_ca,
        connect_timeout_s=1.5,
    )
    a = MqttAdapter(cfg, MqttRouter(HX), ListSink())
    with pytest.raises(ConnectionLost):
        await a.start()
    gc.collect()  # collect paho's leaked socket here, under this test's filter


async def test_client_certificate_required_by_the_broker(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    port = free_port()
    conf = (
        "user root\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
    )
    with running_mosquitto(tmp_path, conf, port) as broker:
        cfg = MqttConfig(
            "localhost",
            broker.port,
            client_id="mtls",
            tls_ca=pki.ca,
            tls_cert=pki.client_cert,
            tls_key=pki.client_key,
        )
        a = MqttAdapter(cfg, MqttRouter(HX), ListSink())
        await a.start()
        assert a.connected
        await a.stop()
