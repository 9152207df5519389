"""The virtual plant on MQTT (the sim's second interface, next to OPC UA): JSON measurements out, commands in."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage

from sim.mqtt import PlantMqttPublisher
from sim.plant import PlantParams, VirtualPlant
from symtwin.config import load_site
from symtwin.runtime.clock import RealClock
from tests.support.servers import Mosquitto

REPO = Path(__file__).resolve().parents[2]


def mqtt_site(tmp_path: Path) -> Path:
    """The demo park with one measurement and one setpoint bound to MQTT JSON topics instead of OPC UA."""
    text = (REPO / "configs" / "demo.yaml").read_text()
    text = text.replace("path: profiles/", f"path: {REPO / 'configs' / 'profiles'}/")
    text = text.replace(
        'binding: {opcua: {node_id: "ns=2;s=factory.heat"}}',
        'binding: {mqtt: {topic: "park/factory/heat", pointer: "/data/mw", timestamp_pointer: "/ts"}}',
    )
    text = text.replace(
        'binding: {opcua: {node_id: "ns=2;s=factory.use_sp", data_type: Float}}',
        'binding: {mqtt: {topic: "park/factory/use_sp/set", pointer: "/value"}}',
    )
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


async def test_measurements_are_published_as_json_and_commands_set_the_plant(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site = load_site(mqtt_site(tmp_path))
    clock = RealClock()
    plant = VirtualPlant.from_site(site, start=clock.now(), params=PlantParams(settle_s=600.0, noise=False))
    got: list[dict[str, Any]] = []
    ready = threading.Event()
    sub = Client(CallbackAPIVersion.VERSION2, client_id="test-sub")

    def on_connect(client: Client, *_: Any) -> None:
        client.subscribe("park/#", qos=1)
        ready.set()

    def on_message(_client: Client, _userdata: Any, msg: MQTTMessage) -> None:
        if msg.topic == "park/factory/heat":
            got.append(json.loads(msg.payload))

    sub.on_connect = on_connect
    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    publisher = PlantMqttPublisher(
        plant, clock=clock, host=mosquitto.host, port=mosquitto.port, step_s=0.2, step=True
    )
    try:
        assert ready.wait(5)
        await publisher.start()
        t0 = time.monotonic()
        while len(got) < 3 and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        assert len(got) >= 3
        msg = got[-1]
        assert abs(msg["ts"] - time.time()) < 2.0
        truth_mw = plant.true_value("factory_heat.heat_flow") / 1e6
        assert msg["data"]["mw"] == pytest.approx(truth_mw, rel=0.05)
        # a command on the setpoint topic (engineering unit: %) sets the plant's setpoint (SI: fraction)
        sub.publish("park/factory/use_sp/set", json.dumps({"value": 80.0}), qos=1)
        t0 = time.monotonic()
        while plant.commanded["factory.use_sp"] != 0.8 and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        assert plant.commanded["factory.use_sp"] == 0.8
    finally:
        await publisher.close()
        sub.loop_stop()
        sub.disconnect()
    assert publisher.published >= 3
