"""MQTT-bound tags served by the runtime: JSON and Sparkplug in → Service; setpoints out as QoS 1 commands.

Real mosquitto, the example config `configs/examples/mqtt_site.yaml`, the Service on a manual clock.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import queue
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.mqtt.sparkplug import DataType, Metric, Payload, encode_payload
from controllers.supervisor import Mode
from controllers.types import ControlResult, SolveStatus
from symtwin.config import LoadedSite, load_site
from symtwin.governance.from_site import policy_from_site
from symtwin.governance.mosquitto import password_env_var, write_broker_config
from symtwin.runtime.clock import ManualClock
from symtwin.runtime.mqtt_wiring import MqttWiring, RoutingWriter, mqtt_wiring
from symtwin.runtime.service import Service, SolveRequest
from symtwin.runtime.wiring import service_params
from tests.support.servers import Mosquitto

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "examples" / "mqtt_site.yaml"
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a whole hour


class FixedController:
    """Proposes the same setpoints every solve (the decision path is the service's and supervisor's)."""

    def __init__(self, setpoints: dict[str, float]) -> None:
        self.setpoints = setpoints
        self.solves = 0

    async def solve(self, request: SolveRequest, deadline_s: float) -> ControlResult:
        self.solves += 1
        plan = {t: [v] * len(request.times) for t, v in self.setpoints.items()}
        return ControlResult(
            SolveStatus.OPTIMAL,
            setpoints=dict(self.setpoints),
            plan=plan,
            plan_times=list(request.times),
            solve_time_s=0.001,
        )

    def reset_warm_start(self) -> None:
        pass


class Plant:
    """The plant side: a paho client publishing measurements and collecting the commands it receives."""

    def __init__(self, port: int) -> None:
        self.commands: queue.Queue[tuple[str, dict[str, float], int]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="plant")
        self.c.on_message = lambda c, u, m: self.commands.put((m.topic, json.loads(m.payload), m.qos))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def subscribe(self, topic: str) -> None:
        done = queue.Queue[int]()
        self.c.on_subscribe = lambda c, u, mid, rcs, p: done.put(mid)
        self.c.subscribe(topic, qos=1)
        done.get(timeout=5)

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def site() -> LoadedSite:
    return load_site(EXAMPLE)


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    # the example resolves adapters.mqtt.password from this variable; the anonymous test broker ignores it
    monkeypatch.setenv("SYMTWIN_MQTT_PASSWORD_UTILITY", "utility-secret")
    return "utility-secret"


def _wiring(site: LoadedSite, port: int, client_id: str = "svc") -> MqttWiring:
    w = mqtt_wiring(site, port=port, client_id=client_id)
    assert w is not None
    return w


async def _until(cond: object, timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def _publish_measurements(plant: Plant, t: float, k: int = 0) -> None:
    plant.publish("plant/factory/heat", json.dumps({"heat": 2.5 + 0.1 * k, "mass_flow": 12.0, "ts": t}))
    plant.publish("plant/utility/town", json.dumps({"value": 5.0, "ts": t}))
    plant.publish("plant/utility/storage", json.dumps({"top_t": 80.0}))  # no timestamp: receive time
    ms = int(t * 1000)
    if k == 0:
        birth = Payload(
            timestamp=ms,
            seq=0,
            metrics=[
                Metric(name="bdSeq", datatype=DataType.INT64, value=0),
                Metric(name="hx/t_out", alias=1, datatype=DataType.DOUBLE, value=70.0, timestamp=ms),
            ],
        )
        plant.publish("spBv1.0/demo/NBIRTH/utility-edge", encode_payload(birth))
    else:
        data = Payload(
            timestamp=ms,
            seq=k % 256,
            metrics=[Metric(alias=1, datatype=DataType.DOUBLE, value=70.0 + k, timestamp=ms)],
        )
        plant.publish("spBv1.0/demo/NDATA/utility-edge", encode_payload(data))


def test_example_config_is_valid_and_every_tag_is_mqtt_bound(
    site: LoadedSite, password: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "symtwin", "validate", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert all(t.binding.mqtt is not None for t in site.tags.values())
    w = _wiring(site, 1883)
    assert w.measurement_tags == {
        "factory.heat",
        "factory.mass_flow",
        "utility.hx.t_out",
        "utility.storage.top_t",
        "utility.town.heat",
    }
    assert w.setpoint_tags == {"factory.use_sp", "utility.storage.charge_sp", "utility.boiler.load_sp"}
    assert sorted(w.json_topics) == ["plant/factory/heat", "plant/utility/storage", "plant/utility/town"]
    assert len(w.json_topics["plant/factory/heat"]) == 2  # two tags in one message
    assert w.config.username == "utility" and w.config.password == password and w.config.keepalive_s == 30
    assert sorted(w.router().subscriptions()) == sorted([*w.json_topics, "spBv1.0/demo/#"])
    # the broker config for the park is generated from the same file
    policy = policy_from_site(site)
    files = write_broker_config(
        policy,
        tmp_path / "broker",
        port=1883,
        environ={password_env_var(p): f"pw-{p}" for p in policy.party_ids},
        run_as_user=getpass.getuser(),
    )
    acl = files.acl.read_text()
    assert "topic read park/factory/raw/factory.heat" in acl
    assert "factory.mass_flow" not in acl and "storage.top_t" not in acl


async def test_mqtt_tags_reach_the_service_and_setpoints_go_out_confirmed(
    site: LoadedSite, password: str, mosquitto: Mosquitto
) -> None:
    clock = ManualClock(T0)
    targets = {"factory.use_sp": 0.9, "utility.storage.charge_sp": 10.0, "utility.boiler.load_sp": 0.2}
    ctrl = FixedController(targets)
    params = service_params(site)
    assert params.heartbeat_tag is None  # no OPC UA in this site
    service = Service(site, clock=clock, params=params, controller=ctrl, mode=Mode.AUTO)
    wiring = _wiring(site, mosquitto.port)
    adapter = wiring.adapter(service, clock=clock.now)
    service.writer = RoutingWriter([(adapter, wiring.setpoint_tags)])
    plant = Plant(mosquitto.port)
    try:
        plant.subscribe("plant/+/cmd/#")
        await adapter.start()
        _publish_measurements(plant, clock.now())

        def have_all() -> bool:
            service.latest.drain()
            return wiring.measurement_tags <= set(service.latest.table)

        await _until(have_all)
        table = service.latest.table
        assert table["factory.heat"].value == pytest.approx(2.5e6)  # MW → W
        assert table["factory.heat"].timestamp == T0  # from the payload's /ts
        assert table["factory.mass_flow"].value == pytest.approx(12.0)
        assert table["utility.town.heat"].value == pytest.approx(5.0e6)
        assert table["utility.storage.top_t"].value == pytest.approx(353.15)  # degC → K
        assert table["utility.storage.top_t"].timestamp == T0  # receive time on the injected clock
        assert table["utility.hx.t_out"].value == pytest.approx(343.15)  # Sparkplug metric, degC → K
        assert adapter.stats().get("samples") == 5

        for k in range(1, 9):
            await service.cycle()
            await asyncio.sleep(0)  # let the finished solve deliver
            clock.advance(params.cycle_s)
            _publish_measurements(plant, clock.now(), k)
        await _until(
            lambda: (
                service.latest.drain() is not None
                and service.latest.table["utility.hx.t_out"].value == pytest.approx(343.15 + 8)
            )
        )
        await service.cycle()
        assert ctrl.solves >= 1
        assert service.counters.writes_failed == 0
        assert service.counters.writes_ok >= 3 * 8

        received: dict[str, list[dict[str, float]]] = {}
        while True:
            try:
                topic, body, qos = plant.commands.get(timeout=0.5)
            except queue.Empty:
                break
            assert qos == 1
            received.setdefault(topic, []).append(body)
        snap = service.snapshot()
        for tag in targets:
            topic = site.tags[tag].binding.mqtt.topic  # type: ignore[union-attr]
            bodies = received[topic]
            assert [b["seq"] for b in bodies] == sorted(b["seq"] for b in bodies)
            # the last command carries what the service decided and recorded as written, in the eng unit
            written = snap.tags[tag].value
            assert written is not None
            assert bodies[-1]["value"] == pytest.approx(site.tags[tag].from_si(written))
            assert bodies[-1]["ts"] == clock.now()  # stamped on the service clock
    finally:
        await adapter.stop()
        plant.close()


async def test_routing_writer_sends_each_tag_to_its_adapter(
    site: LoadedSite, password: str, mosquitto: Mosquitto
) -> None:
    clock = ManualClock(T0)
    service = Service(site, clock=clock, params=service_params(site))
    wiring = _wiring(site, mosquitto.port)
    up = wiring.adapter(service)
    down = _wiring(site, mosquitto.port, client_id="never-started").adapter(service)  # never connected
    writer = RoutingWriter([(up, {"factory.use_sp"}), (down, {"utility.boiler.load_sp"})])
    plant = Plant(mosquitto.port)
    try:
        plant.subscribe("plant/+/cmd/#")
        await up.start()
        ok = await writer.write_setpoints(
            {"factory.use_sp": 0.4, "utility.boiler.load_sp": 0.5, "symtwin.heartbeat": 3.0}
        )
        assert ok == {"factory.use_sp": True, "utility.boiler.load_sp": False, "symtwin.heartbeat": False}
        topic, body, _ = plant.commands.get(timeout=5)
        assert topic == "plant/factory/cmd/use_sp" and body["value"] == pytest.approx(40.0)  # fraction → %
        with pytest.raises(queue.Empty):
            plant.commands.get(timeout=0.3)
        with pytest.raises(ValueError, match="two writers"):
            RoutingWriter([(up, {"factory.use_sp"}), (down, {"factory.use_sp"})])
    finally:
        await up.stop()
        plant.close()


def test_config_errors_name_the_file_and_tag(tmp_path: Path, password: str) -> None:
    from symtwin.runtime.mqtt_wiring import MqttWiringError

    text = EXAMPLE.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("topic: spBv1.0/demo/NDATA/utility-edge", "topic: plant/utility/hx"))
    with pytest.raises(MqttWiringError, match=r"bad\.yaml: tag utility\.hx\.t_out binding\.mqtt: Sparkplug"):
        mqtt_wiring(load_site(bad))
    bad.write_text(text.replace("pointer: /heat,", "pointer: heat,"))  # not a JSON pointer
    with pytest.raises(MqttWiringError, match=r"tag factory\.heat"):
        mqtt_wiring(load_site(bad))
    no_section = tmp_path / "no_section.yaml"
    no_section.write_text(text[: text.index("adapters:")])
    with pytest.raises(MqttWiringError, match=r"no adapters\.mqtt section"):
        mqtt_wiring(load_site(no_section))
