"""A real mosquitto started from the files generated from the sharing policy."""

from __future__ import annotations

import getpass
import os
import queue
import stat
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.base import Sample
from symtwin.governance.mosquitto import (
    BrokerTls,
    Republisher,
    password_env_var,
    raw_topic,
    write_broker_config,
)
from symtwin.governance.policy import Party, Resolution, SharingRule, TagGroup, TagInfo, build_policy
from tests.support.servers import Mosquitto, free_port
from tests.support.tls import make_test_pki

POLICY = build_policy(
    [Party("powerco"), Party("pharma"), Party("utility")],
    [
        TagInfo("pc.steam_flow", "powerco"),
        TagInfo("pc.boiler_load", "powerco"),
        TagInfo("pc.fuel_cost", "powerco"),
        TagInfo("ph.steam_demand", "pharma"),
    ],
    [TagGroup("exchange", ("pc.steam_flow",)), TagGroup("ops", ("pc.boiler_load",))],
    [
        SharingRule("exchange", "pharma", Resolution.raw()),
        SharingRule("ops", "pharma", Resolution.aggregated(900)),
        SharingRule("exchange", "utility", Resolution.aggregated(3600)),
    ],
)


class Client:
    """A paho client (MQTT 5) that collects what it receives and the broker's answers."""

    def __init__(self, port: int, user: str | None, password: str | None, ca: Path | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: queue.Queue[object] = queue.Queue()
        self.puback: dict[int, object] = {}
        self.acked = threading.Event()
        # no automatic reconnect: a refused client must stay refused (and leave no sockets behind)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        if user is not None:
            self.c.username_pw_set(user, password)
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca))
        self.c.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_publish(self, c, u, mid, rc, props) -> None:
        self.puback[mid] = rc
        self.acked.set()

    def connected(self) -> bool:
        rc = self.connack.get(timeout=5)
        return not rc.is_failure  # type: ignore[attr-defined]

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, rcs, p: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(5)

    def publish(self, topic: str, payload: str) -> object:
        self.acked.clear()
        info = self.c.publish(topic, payload, qos=1)
        assert self.acked.wait(5)
        return self.puback[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


@pytest.fixture
def broker(tmp_path: Path):
    out = tmp_path / "generated"
    env = {password_env_var("pharma"): "pharma-secret-from-env"}
    port = free_port()
    # Tests run as root, and mosquitto drops root to user 'mosquitto' before reading the files.
    files = write_broker_config(POLICY, out, port=port, environ=env, run_as_user=getpass.getuser())
    server = Mosquitto(tmp_path, port, files.conf.read_text())
    server.start()
    try:
        yield server, files
    finally:
        server.stop()


def _passwords(files) -> dict[str, str]:
    pw = {"pharma": "pharma-secret-from-env"}
    for line in files.secrets.read_text().splitlines():
        key, _, value = line.partition("=")
        pw[key.removeprefix("SYMTWIN_MQTT_PASSWORD_").lower()] = value
    return pw


def test_generated_files_are_private_and_hashed(broker):
    _, files = broker
    assert set(files.generated_for) == {"powerco", "utility"}  # pharma's came from the environment
    for path in (files.passwd, files.secrets, files.acl):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = files.passwd.read_text()
    assert "pharma-secret-from-env" not in text
    assert all(
        line.split(":", 1)[1].startswith("$7$") for line in text.splitlines()
    )  # mosquitto's PBKDF2 hash
    assert "allow_anonymous false" in files.conf.read_text()


def _drain(client: Client, sentinel: bytes) -> list[str]:
    """Topics received before a sentinel payload (one publisher: everything before it has arrived)."""
    topics = []
    while True:
        topic, payload = client.messages.get(timeout=5)
        if payload == sentinel:
            return topics
        topics.append(topic)


def test_party_gets_what_policy_grants_and_nothing_private(broker):
    server, files = broker
    pw = _passwords(files)
    powerco = Client(server.port, "powerco", pw["powerco"])
    pharma = Client(server.port, "pharma", pw["pharma"])
    utility = Client(server.port, "utility", pw["utility"])
    try:
        assert powerco.connected() and pharma.connected() and utility.connected()
        pharma.subscribe("park/#")
        utility.subscribe("park/#")
        powerco.subscribe("park/powerco/#")

        # powerco's service publishes through the enforcement layer ...
        rep = Republisher(POLICY, "powerco")
        samples = [Sample("pc.steam_flow", 10.0 * k, 50.0 + k) for k in range(3)]
        samples += [Sample("pc.boiler_load", 10.0 * k, 0.5) for k in range(3)]
        samples += [Sample("pc.fuel_cost", 10.0 * k, 31.0) for k in range(3)]
        out = rep.push(samples) + rep.flush(3600.0)
        assert not any("fuel_cost" in topic for topic, _ in out)
        for topic, s in out:
            powerco.publish(topic, str(s.value))
        # ... and keeps private data in its own namespace, where no rule lets anyone read
        for topic in (
            raw_topic("powerco", "pc.fuel_cost"),
            "park/powerco/private/cost",
            "park/powerco/agg/15min/pc.fuel_cost/mean",
        ):
            powerco.publish(topic, "secret")
        powerco.publish("park/powerco/agg/15min/pc.steam_flow/mean", "secret")  # pharma has raw, not this
        powerco.publish("park/powerco/raw/pc.steam_flow", "end-pharma")
        powerco.publish("park/powerco/agg/1h/pc.steam_flow/max", "end-utility")

        pharma_topics = _drain(pharma, b"end-pharma")
        utility_topics = _drain(utility, b"end-utility")
        assert sorted(pharma_topics) == sorted(
            ["park/powerco/raw/pc.steam_flow"] * 3
            + [f"park/powerco/agg/15min/pc.boiler_load/{s}" for s in ("mean", "min", "max")]
        )
        assert sorted(utility_topics) == sorted(
            f"park/powerco/agg/1h/pc.steam_flow/{s}" for s in ("mean", "min", "max")
        )
        assert pharma.messages.empty()  # nothing private slipped in after the sentinel either

        # pharma cannot publish into powerco's namespace; powerco (subscribed to all of it) sees nothing
        _drain(powerco, b"end-utility")
        for topic in ("park/powerco/raw/pc.steam_flow", "park/powerco/cmd/boiler", "park/utility/raw/x"):
            assert pharma.publish(topic, "forged").is_failure  # type: ignore[attr-defined]
        powerco.publish("park/powerco/status", "end-powerco")
        assert _drain(powerco, b"end-powerco") == []
        # pharma still writes its own namespace
        assert not pharma.publish("park/pharma/raw/ph.steam_demand", "1.0").is_failure  # type: ignore[attr-defined]
    finally:
        for c in (powerco, pharma, utility):
            c.close()


def test_anonymous_and_wrong_password_are_refused(broker):
    server, _ = broker
    anonymous = Client(server.port, None, None)
    wrong = Client(server.port, "pharma", "not-the-password")
    unknown = Client(server.port, "intruder", "x")
    try:
        assert not anonymous.connected()
        assert not wrong.connected()
        assert not unknown.connected()
    finally:
        for c in (anonymous, wrong, unknown):
            c.close()


def test_tls_listener_from_generated_config(tmp_path: Path):
    pki = make_test_pki(tmp_path / "pki")
    port = free_port()
    files = write_broker_config(
        POLICY,
        tmp_path / "generated",
        port=port,
        environ={password_env_var(p): f"pw-{p}" for p in POLICY.party_ids},
        run_as_user=getpass.getuser(),
        tls=BrokerTls(pki.ca, pki.server_cert, pki.server_key),
    )
    assert files.secrets is None  # every password came from the environment
    server = Mosquitto(tmp_path, port, files.conf.read_text())
    server.start()
    pharma = powerco = plain = None
    try:
        pharma = Client(port, "pharma", "pw-pharma", ca=pki.ca)
        powerco = Client(port, "powerco", "pw-powerco", ca=pki.ca)
        assert pharma.connected() and powerco.connected()
        pharma.subscribe("park/powerco/#")
        powerco.publish("park/powerco/private/x", "secret")
        powerco.publish(raw_topic("powerco", "pc.steam_flow"), "end")
        assert _drain(pharma, b"end") == []
        # the same port without TLS gets no MQTT session
        plain = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        plain.username_pw_set("pharma", "pw-pharma")
        accepted = threading.Event()
        plain.on_connect = lambda c, u, f, rc, p: None if rc.is_failure else accepted.set()
        try:
            plain.connect("127.0.0.1", port)
            plain.loop(timeout=1.0)
            plain.loop(timeout=1.0)
        except OSError:
            pass
        assert not accepted.is_set()
    finally:
        for c in (pharma, powerco):
            if c is not None:
                c.close()
        if plain is not None:
            sock = plain.socket()
            if sock is not None:
                sock.close()
        server.stop()
