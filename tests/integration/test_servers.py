"""The real-server fixtures work: messages pass through mosquitto, points reach victoria-metrics."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from tests.support.servers import Mosquitto, VictoriaMetrics


def test_mosquitto_publish_subscribe(mosquitto: Mosquitto) -> None:
    received: list[bytes] = []
    subscribed = threading.Event()
    got = threading.Event()

    def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        client.subscribe("symtwin/test", qos=1)

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int, rcs: object, props: object) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.payload)
        got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_connect, sub.on_subscribe, sub.on_message = on_connect, on_subscribe, on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        pub.publish("symtwin/test", b'{"v": 1.5}', qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        assert got.wait(5)
        assert received == [b'{"v": 1.5}']
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_victoria_metrics_accepts_influx_v2_write(victoria_metrics: VictoriaMetrics) -> None:
    t0 = int(time.time()) - 60
    with InfluxDBClient(url=victoria_metrics.url, token="unused", org="park") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        lines = [f"fixture_check,tag=t1 value={i * 0.5},quality=0i {(t0 + i) * 10**9}" for i in range(20)]
        write.write(bucket="park", record=lines)
    deadline = time.monotonic() + 10
    n = 0
    while time.monotonic() < deadline:
        n = victoria_metrics.count_points('{__name__="fixture_check_value"}')
        if n == 20:
            break
        time.sleep(0.3)
    assert n == 20
    series = victoria_metrics.export('{__name__="fixture_check_value"}')
    assert series[0]["metric"]["tag"] == "t1"  # type: ignore[index]
    assert sorted(series[0]["values"]) == [i * 0.5 for i in range(20)]  # type: ignore[arg-type]
